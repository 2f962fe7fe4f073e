//! `fairmq-ex-multiple-transports-sampler1`: sends 1,000,000-byte messages on `data1` (main
//! transport `shmem`) and counts acknowledgements from the sink on its zeromq `sub` channel
//! `ack`.
//!
//! Every message is created with `new_message_for("data1", ..)`, i.e. by the transport of
//! `data1`: with shmem that allocates the payload directly in the session's segment, and only
//! its 40-byte descriptor travels over the socket. When the segment is full, the allocation
//! waits until the sink frees memory (or the device is stopped), instead of failing as in
//! FairMQ v1.10.
//!
//! PUB/SUB loses what is published before the subscription reached the publisher, so the sink
//! publishes small probes ([`crate::SUBSCRIPTION_PROBE`]) on `ack` until the first data1 message
//! arrives, and sampler1 sends its first message only once a probe came through: from then on
//! every acknowledgement reaches it.
//!
//! PreRun starts the acknowledgement thread: it receives on `ack` until the device is stopped,
//! then takes what is still arriving (until [`ACK_DRAIN_QUIET`] passes without an
//! acknowledgement, or all sent messages are acknowledged) and logs `Acknowledged <n>
//! messages` (empty messages only; probes are not counted). ConditionalRun sends one message per call and ends RUNNING after
//! `--max-iterations` messages (0 = until stopped); Run then waits until all of them are
//! acknowledged (or the device is stopped). PostRun joins the thread and logs `Sent <n>
//! messages of 1000000 bytes on data1.`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fairmq::{
    Channel, Device, DeviceContext, HookResult, Outcome, StateMachine, Timeout, TransferResultExt,
};

use crate::{report, MaxIterations, DATA1_MESSAGE_SIZE};

/// How long the acknowledgement thread keeps receiving after the device was stopped, counted
/// from the last acknowledgement (or from the stop).
pub const ACK_DRAIN_QUIET: Duration = Duration::from_millis(200);

/// sampler1.
#[derive(Debug)]
pub struct Sampler1 {
    max_iterations: u64,
    sent: u64,
    sent_total: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    subscribed: Arc<AtomicBool>,
    ack_thread: Option<JoinHandle<()>>,
}

impl Sampler1 {
    /// sampler1 configured from the options (`--max-iterations`).
    pub fn new(options: MaxIterations) -> Self {
        Sampler1 {
            max_iterations: options.max_iterations,
            sent: 0,
            sent_total: Arc::new(AtomicU64::new(0)),
            acked: Arc::new(AtomicU64::new(0)),
            subscribed: Arc::new(AtomicBool::new(false)),
            ack_thread: None,
        }
    }
}

/// What the acknowledgement thread shares with the device.
#[derive(Debug)]
struct AckCounters {
    acked: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    subscribed: Arc<AtomicBool>,
}

impl AckCounters {
    fn take(&self, msg: &fairmq::MessagePtr) {
        if msg.size() == 0 {
            self.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.subscribed.store(true, Ordering::Release);
        }
    }
}

/// The acknowledgement thread: counts empty messages on `ack` until the device is stopped,
/// then drains what is still on its way.
fn listen_for_acks(ack: &Channel, sm: &StateMachine, c: &AckCounters) {
    let (acked, sent) = (&c.acked, &c.sent);
    let mut msg = ack.new_message();
    loop {
        match ack.receive(&mut msg).outcome() {
            Ok(Outcome::Done(_)) => c.take(&msg),
            Ok(Outcome::TimedOut) => {}
            Ok(Outcome::Interrupted) => break,
            Err(e) => {
                tracing::error!("receiving an acknowledgement failed: {e}");
                break;
            }
        }
        if sm.new_state_pending() {
            break;
        }
    }
    // Stopped: acknowledgements already sent by the sink may still be on their way (a receive
    // of an interrupted transport still returns what is queued).
    let mut last = Instant::now();
    while acked.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed)
        && last.elapsed() < ACK_DRAIN_QUIET
    {
        match ack
            .receive_timeout(&mut msg, Timeout::Immediately)
            .outcome()
        {
            Ok(Outcome::Done(_)) => {
                c.take(&msg);
                last = Instant::now();
            }
            Ok(Outcome::TimedOut | Outcome::Interrupted) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::error!("receiving an acknowledgement failed: {e}");
                break;
            }
        }
    }
    tracing::info!(
        "{}",
        report::acknowledged_line(acked.load(Ordering::Relaxed))
    );
}

impl Device for Sampler1 {
    fn pre_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let ack = ctx.channel("ack")?;
        let sm = ctx.state_machine().clone();
        self.sent = 0;
        self.sent_total.store(0, Ordering::Relaxed);
        self.acked.store(0, Ordering::Relaxed);
        self.subscribed.store(false, Ordering::Relaxed);
        let counters = AckCounters {
            acked: self.acked.clone(),
            sent: self.sent_total.clone(),
            subscribed: self.subscribed.clone(),
        };
        self.ack_thread = Some(
            std::thread::Builder::new()
                .name("ack-listener".to_owned())
                .spawn(move || listen_for_acks(&ack, &sm, &counters))?,
        );
        Ok(())
    }

    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        if self.max_iterations > 0 && self.sent >= self.max_iterations {
            return Ok(false);
        }
        if self.sent == 0 && !self.subscribed.load(Ordering::Acquire) {
            tracing::debug!("Waiting for the sink's subscription probe on ack...");
            while !self.subscribed.load(Ordering::Acquire) {
                if !ctx.wait_for(Duration::from_millis(2)) {
                    return Ok(false);
                }
            }
            tracing::debug!("The sink receives our acknowledgements, starting to send.");
        }
        // Made by data1's transport (shmem): allocated in the segment, never copied.
        let mut msg = match ctx.new_message_for("data1", DATA1_MESSAGE_SIZE) {
            Ok(m) => m,
            // A full segment makes the allocation wait; stopping the device interrupts it.
            Err(e) if ctx.new_state_pending() => {
                tracing::debug!("allocation interrupted by the stop: {e}");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        match ctx.send(&mut msg, "data1").outcome()? {
            Outcome::Done(_) => {
                self.sent += 1;
                self.sent_total.store(self.sent, Ordering::Relaxed);
            }
            Outcome::TimedOut => return Ok(true),
            Outcome::Interrupted => return Ok(false),
        }
        Ok(self.max_iterations == 0 || self.sent < self.max_iterations)
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        if self.max_iterations > 0 && self.sent >= self.max_iterations && !ctx.new_state_pending() {
            tracing::info!(
                "Sent all {} messages, waiting for their acknowledgements.",
                self.sent
            );
            while self.acked.load(Ordering::Relaxed) < self.sent
                && ctx.wait_for(Duration::from_millis(10))
            {}
        }
        Ok(())
    }

    fn post_run(&mut self, _ctx: &mut DeviceContext) -> HookResult {
        if let Some(t) = self.ack_thread.take() {
            if t.join().is_err() {
                return Err("the acknowledgement thread panicked".into());
            }
        }
        tracing::info!(
            "{}",
            report::sent_line(self.sent, DATA1_MESSAGE_SIZE, "data1")
        );
        Ok(())
    }
}
