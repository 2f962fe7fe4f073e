//! `fairmq-ex-multiple-transports-sink`: receives `data1` (shmem) and `data2` (zeromq) through
//! two OnData handlers and publishes an empty acknowledgement on the zeromq `pub` channel
//! `ack` for every `data1` message.
//!
//! Inputs of two transports cannot be polled together, so the runtime runs one OnData thread
//! per transport (the handlers themselves never run at the same time). The acknowledgement is
//! created with `new_message_for("ack", ..)`, i.e. by zeromq, so it is not copied either. With
//! `--max-iterations N` the sink leaves RUNNING once it received N messages on both inputs
//! (`Configured maximum number of iterations reached & Received messages from both sources.
//! Leaving RUNNING state.`). PostRun logs, per input, `Received <n> messages (<bytes> bytes)
//! on <channel> in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).` and then `Sent <n> acknowledgements
//! on ack.`
//!
//! A PUB socket drops what it publishes before the subscriber's subscription reached it, so
//! from PreRun until the first data1 message arrives a thread publishes a probe
//! ([`crate::SUBSCRIPTION_PROBE`], one byte) on `ack` every 10 ms; sampler1 starts sending once
//! it received one, so no acknowledgement is lost to PUB/SUB's late joining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fairmq::TransferResultExt;
use fairmq::{Device, DeviceContext, Handlers, HookResult, MessagePtr, Outcome, Timeout};

use crate::{report, MaxIterations};

#[derive(Debug, Default, Clone, Copy)]
struct Input {
    messages: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Input {
    fn count(&mut self, bytes: usize) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    fn secs(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// The sink.
#[derive(Debug)]
pub struct Sink {
    max_iterations: u64,
    data1: Input,
    data2: Input,
    acks: u64,
    probing: Arc<AtomicBool>,
    prober: Option<JoinHandle<()>>,
}

impl Sink {
    /// The sink configured from the options (`--max-iterations`), with its two OnData
    /// handlers.
    pub fn new(options: MaxIterations, handlers: &mut Handlers<Self>) -> Self {
        handlers
            .on_data("data1", Sink::handle_data1)
            .on_data("data2", Sink::handle_data2);
        Sink {
            max_iterations: options.max_iterations,
            data1: Input::default(),
            data2: Input::default(),
            acks: 0,
            probing: Arc::new(AtomicBool::new(false)),
            prober: None,
        }
    }

    fn done(&self) -> bool {
        self.max_iterations > 0
            && self.data1.messages >= self.max_iterations
            && self.data2.messages >= self.max_iterations
    }

    /// `data1` (shmem): count, free the buffer, acknowledge on `ack`.
    fn handle_data1(
        &mut self,
        ctx: &mut DeviceContext,
        msg: MessagePtr,
        _index: usize,
    ) -> HookResult<bool> {
        if self.data1.messages == 0 {
            self.probing.store(false, Ordering::Release);
        }
        self.data1.count(msg.size());
        drop(msg); // frees the shared-memory buffer
        let mut ack = ctx.new_message_for("ack", 0)?;
        match ctx
            .send(&mut ack, "ack")
            .outcome()
            .map_err(|e| format!("could not send an ack: {e}"))?
        {
            Outcome::Done(_) => self.acks += 1,
            Outcome::Interrupted => return Ok(false),
            Outcome::TimedOut => return Err("could not send an ack: timed out".into()),
        }
        Ok(self.go_on())
    }

    /// `data2` (zeromq): count.
    fn handle_data2(
        &mut self,
        _ctx: &mut DeviceContext,
        msg: MessagePtr,
        _index: usize,
    ) -> HookResult<bool> {
        self.data2.count(msg.size());
        Ok(self.go_on())
    }

    fn go_on(&self) -> bool {
        if self.done() {
            tracing::info!(
                "Configured maximum number of iterations reached & Received messages from both sources. Leaving RUNNING state."
            );
            return false;
        }
        true
    }
}

impl Device for Sink {
    fn pre_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.data1 = Input::default();
        self.data2 = Input::default();
        self.acks = 0;
        let ack = ctx.channel("ack")?;
        let sm = ctx.state_machine().clone();
        self.probing.store(true, Ordering::Release);
        let probing = self.probing.clone();
        self.prober = Some(
            std::thread::Builder::new()
                .name("ack-probe".to_owned())
                .spawn(move || {
                    while probing.load(Ordering::Acquire) {
                        match ack.new_message_from(crate::SUBSCRIPTION_PROBE.to_vec()) {
                            Ok(mut probe) => {
                                let _ = ack.send_timeout(&mut probe, Timeout::Immediately);
                            }
                            Err(e) => {
                                tracing::error!("cannot create a probe message: {e}");
                                break;
                            }
                        }
                        if !sm.wait_for(Duration::from_millis(10)) {
                            break;
                        }
                    }
                })?,
        );
        Ok(())
    }

    fn post_run(&mut self, _ctx: &mut DeviceContext) -> HookResult {
        self.probing.store(false, Ordering::Release);
        if let Some(t) = self.prober.take() {
            if t.join().is_err() {
                return Err("the probe thread panicked".into());
            }
        }
        for (name, input) in [("data1", &self.data1), ("data2", &self.data2)] {
            tracing::info!(
                "{}",
                report::received_line(input.messages, input.bytes, name, input.secs())
            );
        }
        tracing::info!("{}", report::acks_sent_line(self.acks));
        Ok(())
    }
}
