//! `fairmq-ex-multiple-channels-sink`: prints what arrives on `data` and on `broadcast`; with
//! `--max-iterations N` (0 = until stopped) it leaves RUNNING after N messages handled once
//! it has had at least one from each channel.

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr};

/// The sink's options (FairMQ's).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct SinkOptions {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The sink.
#[derive(Debug)]
pub struct Sink {
    max_iterations: u64,
    iterations: u64,
    received_data: bool,
    received_broadcast: bool,
}

impl Sink {
    /// A sink configured from the options, handling `broadcast` and `data`.
    pub fn new(o: SinkOptions, h: &mut Handlers<Self>) -> Self {
        h.on_data("broadcast", Self::handle_broadcast);
        h.on_data("data", Self::handle_data);
        Sink {
            max_iterations: o.max_iterations,
            iterations: 0,
            received_data: false,
            received_broadcast: false,
        }
    }

    fn handle_broadcast(
        &mut self,
        _: &mut DeviceContext,
        msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        tracing::info!("Received broadcast: \"{}\"", crate::text(&msg));
        self.received_broadcast = true;
        Ok(self.check_iterations())
    }

    fn handle_data(
        &mut self,
        _: &mut DeviceContext,
        msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        tracing::info!("Received message: \"{}\"", crate::text(&msg));
        self.received_data = true;
        Ok(self.check_iterations())
    }

    /// Whether to stay in RUNNING: iterations count only once both channels delivered.
    fn check_iterations(&mut self) -> bool {
        if self.max_iterations == 0 || !(self.received_data && self.received_broadcast) {
            return true;
        }
        self.iterations += 1;
        if self.iterations >= self.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached & Received messages from both sources. Leaving RUNNING state."
            );
            return false;
        }
        true
    }
}

impl fairmq::Device for Sink {}
