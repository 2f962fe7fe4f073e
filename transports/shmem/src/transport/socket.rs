//! Sockets of the shmem transport: ZeroMQ sockets (the zeromq transport's machinery) that
//! carry [`MetaHeader`]s; the payloads stay in shared memory.

use super::factory::Shared;
use super::message::ShmMessage;
use super::wire::{self, MetaHeader};
use fairmq_transport::{
    Message, MessagePtr, Parts, Socket, SocketType, TransferError, TransferResult, TransportError,
};
use fairmq_zmq_core::{Counters, SocketCore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one warning about refused descriptors per socket in this interval.
const REJECT_WARN_INTERVAL: Duration = Duration::from_secs(5);

/// A shmem transport socket.
pub struct ShmSocket {
    pub(crate) core: SocketCore,
    counters: Counters,
    shared: Arc<Shared>,
    /// Received frames refused (see [`super::wire`], "Sealed frames").
    rejected: AtomicU64,
    /// When the last refusal warning was logged, and how many refusals it covered.
    last_warning: Mutex<(Option<Instant>, u64)>,
}

impl ShmSocket {
    /// A socket over `core`. Its receive queue of metadata is unbounded (receive high-water
    /// mark 0): the segment already bounds the memory in flight, and libzmq 4.3.4 drops messages
    /// still in the kernel buffer of an ipc connection whose sender exits while the receiver's
    /// queue is full (libzmq issue #4660) — an unbounded queue is never full.
    pub(crate) fn new(core: SocketCore, shared: Arc<Shared>) -> Result<Self, TransportError> {
        core.set_option("rcv-hwm", 0)?;
        Ok(ShmSocket {
            core,
            counters: Counters::default(),
            shared,
            rejected: AtomicU64::new(0),
            last_warning: Mutex::new((None, 0)),
        })
    }

    /// Number of received frames this socket refused: frames that are no descriptor of this
    /// session (no or a wrong session secret) or name no live buffer of it. Each was dropped
    /// without touching the memory it names.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Counts and drops a refused frame from `peer` (its address, where libzmq knows it);
    /// warns at most every [`REJECT_WARN_INTERVAL`].
    fn reject(&self, reason: &str, peer: Option<String>) {
        let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let mut w = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.is_some_and(|t| t.elapsed() < REJECT_WARN_INTERVAL) {
            return;
        }
        let since = total - w.1;
        *w = (Some(Instant::now()), total);
        drop(w);
        tracing::warn!(
            "shmem socket {}: dropped a received frame that is no valid descriptor of session '{}'{}: {reason} ({since} dropped since the last warning, {total} in all); is a process outside the session sending to this channel's address?",
            self.core.id(),
            self.shared.session(),
            peer.map(|p| format!(" (from peer {p})")).unwrap_or_default()
        );
    }

    /// Receives frames until one is accepted by `accept` (refused ones are counted and
    /// dropped), within `timeout_ms` in all.
    fn receive_accepted(
        &self,
        timeout_ms: i64,
        mut accept: impl FnMut(&[u8]) -> Result<usize, String>,
    ) -> TransferResult {
        // The clock is read only once a frame was refused: an accepted frame costs nothing.
        let mut start: Option<Instant> = None;
        let mut left = timeout_ms;
        loop {
            let frames = self.core.receive_frames(left)?;
            match accept(&frames.first) {
                Ok(size) => return Ok(size),
                Err(reason) => self.reject(&reason, frames.first.property("Peer-Address")),
            }
            if timeout_ms > 0 {
                let start = *start.get_or_insert_with(Instant::now);
                left = timeout_ms - start.elapsed().as_millis() as i64;
                if left <= 0 {
                    return Err(TransferError::Timeout);
                }
            }
        }
    }

    /// Checks a frame's session secret.
    fn check_secret(&self, secret: u64) -> Result<(), String> {
        if secret != self.shared.secret() {
            return Err("the frame does not carry the session secret".into());
        }
        Ok(())
    }

    /// A message of this transport holding `msg`'s bytes (for messages of other transports).
    fn convert(&self, msg: &MessagePtr) -> Result<ShmMessage, TransferError> {
        let mut m = ShmMessage::allocate(self.shared.clone(), msg.size(), msg.alignment())
            .map_err(|e| self.error(e))?;
        m.data_mut().copy_from_slice(msg.data());
        Ok(m)
    }

    fn error(&self, e: TransportError) -> TransferError {
        TransferError::Other {
            socket: self.core.id().to_string(),
            reason: e.to_string(),
        }
    }

    fn adopt_into(&self, msg: &mut MessagePtr, meta: MetaHeader, tag: u64) -> Result<(), String> {
        if let Some(m) = msg.as_any_mut().downcast_mut::<ShmMessage>() {
            return m.adopt_sealed(meta, Some(tag)).map_err(|e| e.to_string());
        }
        let mut m = ShmMessage::empty(self.shared.clone(), None);
        m.adopt_sealed(meta, Some(tag)).map_err(|e| e.to_string())?;
        *msg = Box::new(m);
        Ok(())
    }
}

impl Socket for ShmSocket {
    fn id(&self) -> &str {
        self.core.id()
    }
    fn socket_type(&self) -> SocketType {
        self.core.socket_type()
    }
    fn transport(&self) -> &'static str {
        super::NAME
    }
    fn bind(&self, endpoint: &str) -> Result<String, TransportError> {
        self.core.bind(endpoint)
    }
    fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        self.core.connect(endpoint)
    }

    fn send(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let size = msg.size();
        let pad = self.shared.metadata_msg_size();
        let mut padded = Vec::new();
        let mut frame = [0u8; wire::SINGLE_SEALED_SIZE];
        let mut converted = None;
        let m = match msg.as_any().downcast_ref::<ShmMessage>() {
            Some(m) => m,
            None => converted.insert(self.convert(msg)?),
        };
        let (meta, tag) = (m.wire_meta(), m.wire_tag());
        // The common frame is built on the stack: no allocation per message.
        let bytes: &[u8] = if pad <= frame.len() {
            wire::seal_single(&meta, self.shared.secret(), tag, &mut frame);
            &frame
        } else {
            wire::encode_single_sealed(&meta, self.shared.secret(), tag, pad, &mut padded);
            &padded
        };
        self.core.send_copies(timeout_ms, &[bytes])?;
        match converted {
            Some(mut c) => {
                c.mark_sent();
                msg.rebuild();
            }
            None => {
                if let Some(m) = msg.as_any_mut().downcast_mut::<ShmMessage>() {
                    m.mark_sent();
                }
            }
        }
        self.counters.sent(size);
        Ok(size)
    }

    fn receive(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let size = self.receive_accepted(timeout_ms, |frame| {
            let (meta, tag) = if wire::is_single_sealed(frame, self.shared.secret()) {
                let (meta, _, tag) = wire::decode_single_sealed(frame)?;
                (meta, tag)
            } else {
                // A multipart frame: one part is a message; more cannot be one.
                let (secret, metas) = wire::decode_multi_sealed(frame)?;
                self.check_secret(secret)?;
                match metas.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(format!(
                            "received a multipart message ({} parts) with a single-message receive; the sender uses send_parts, so receive with receive_parts",
                            metas.len()
                        ))
                    }
                }
            };
            self.adopt_into(msg, meta, tag)?;
            Ok(meta.size as usize)
        })?;
        self.counters.received(size);
        Ok(size)
    }

    fn send_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let size = parts.total_size();
        let mut converted: Vec<Option<ShmMessage>> = Vec::with_capacity(parts.len());
        let mut metas = Vec::with_capacity(parts.len());
        for p in parts.iter() {
            match p.as_any().downcast_ref::<ShmMessage>() {
                Some(m) => {
                    metas.push((m.wire_meta(), m.wire_tag()));
                    converted.push(None);
                }
                None => {
                    let c = self.convert(p)?;
                    metas.push((c.wire_meta(), c.wire_tag()));
                    converted.push(Some(c));
                }
            }
        }
        let mut frame = Vec::new();
        wire::encode_multi_sealed(
            &metas,
            self.shared.secret(),
            self.shared.metadata_msg_size(),
            &mut frame,
        );
        self.core.send_copies(timeout_ms, &[&frame])?;
        for (p, c) in parts.iter_mut().zip(converted) {
            match c {
                Some(mut c) => {
                    c.mark_sent();
                    p.rebuild();
                }
                None => {
                    if let Some(m) = p.as_any_mut().downcast_mut::<ShmMessage>() {
                        m.mark_sent();
                    }
                }
            }
        }
        parts.clear();
        self.counters.sent(size);
        Ok(size)
    }

    fn receive_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let size = self.receive_accepted(timeout_ms, |frame| {
            let metas = if wire::is_single_sealed(frame, self.shared.secret()) {
                // A single message is a multipart message of one part.
                let (meta, _, tag) = wire::decode_single_sealed(frame)?;
                vec![(meta, tag)]
            } else {
                let (secret, metas) = wire::decode_multi_sealed(frame)?;
                self.check_secret(secret)?;
                metas
            };
            // All or nothing: a part that fails drops the parts adopted before it (they were
            // handed to us, so releasing them is right) and leaves `parts` as it was.
            let mut got = Vec::with_capacity(metas.len());
            let mut size = 0;
            for (i, (meta, tag)) in metas.into_iter().enumerate() {
                let mut m = ShmMessage::empty(self.shared.clone(), None);
                m.adopt_sealed(meta, Some(tag))
                    .map_err(|e| format!("part {i}: {e}"))?;
                size += m.size();
                got.push(m);
            }
            for m in got {
                parts.add_part(Box::new(m));
            }
            Ok(size)
        })?;
        self.counters.received(size);
        Ok(size)
    }

    fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError> {
        if name == "rcv-hwm" {
            // The metadata queue stays unbounded (see `ShmSocket::new`); the segment bounds the
            // memory in flight.
            return Ok(());
        }
        self.core.set_option(name, value)
    }
    fn get_option(&self, name: &str) -> Result<i64, TransportError> {
        self.core.get_option(name)
    }
    fairmq_zmq_core::forward_socket_counters!();
}
