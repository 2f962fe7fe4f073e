//! Sockets of the shmem transport: ZeroMQ sockets (the zeromq transport's machinery) that
//! carry [`MetaHeader`]s; the payloads stay in shared memory.

use super::factory::Shared;
use super::message::ShmMessage;
use super::wire::{self, MetaHeader, META_SIZE};
use fairmq_transport::{
    Message, MessagePtr, Parts, Socket, SocketType, TransferError, TransferResult, TransportError,
};
use fairmq_zmq_core::{Counters, SocketCore};
use std::sync::Arc;

/// A shmem transport socket.
pub struct ShmSocket {
    pub(crate) core: SocketCore,
    counters: Counters,
    shared: Arc<Shared>,
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
        })
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

    fn adopt_into(&self, msg: &mut MessagePtr, meta: MetaHeader) -> Result<(), TransferError> {
        if let Some(m) = msg.as_any_mut().downcast_mut::<ShmMessage>() {
            return m.adopt(meta).map_err(|e| self.error(e));
        }
        let mut m = ShmMessage::empty(self.shared.clone(), None);
        m.adopt(meta).map_err(|e| self.error(e))?;
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
        let mut frame = [0u8; META_SIZE];
        let mut padded = Vec::new();
        let mut converted = None;
        let meta = match msg.as_any().downcast_ref::<ShmMessage>() {
            Some(m) => m.wire_meta(),
            None => converted.insert(self.convert(msg)?).wire_meta(),
        };
        let bytes: &[u8] = if pad > META_SIZE {
            wire::encode_single(&meta, pad, &mut padded);
            &padded
        } else {
            meta.encode(&mut frame);
            &frame
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
        let frames = self.core.receive_frames(timeout_ms)?;
        let meta = wire::decode_single(&frames.first, self.id())?;
        self.adopt_into(msg, meta)?;
        let size = meta.size as usize;
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
                    metas.push(m.wire_meta());
                    converted.push(None);
                }
                None => {
                    let c = self.convert(p)?;
                    metas.push(c.wire_meta());
                    converted.push(Some(c));
                }
            }
        }
        let mut frame = Vec::new();
        wire::encode_multi(&metas, self.shared.metadata_msg_size(), &mut frame);
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
        let frames = self.core.receive_frames(timeout_ms)?;
        let metas = wire::decode_multi(&frames.first, self.id())?;
        let mut size = 0;
        for meta in metas {
            let mut m = ShmMessage::empty(self.shared.clone(), None);
            m.adopt(meta).map_err(|e| self.error(e))?;
            size += m.size();
            parts.add_part(Box::new(m));
        }
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
