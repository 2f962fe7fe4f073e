//! `fairmq-ex-1-1-sink`: prints every message from `data`; leaves RUNNING after
//! `--max-iterations` messages (0 = until stopped).

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
    received: u64,
}

impl Sink {
    /// A sink configured from the options, handling `data`.
    pub fn new(o: SinkOptions, h: &mut Handlers<Self>) -> Self {
        h.on_data("data", Self::handle_data);
        Sink {
            max_iterations: o.max_iterations,
            received: 0,
        }
    }

    fn handle_data(
        &mut self,
        _: &mut DeviceContext,
        msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        tracing::info!("Received: \"{}\"", String::from_utf8_lossy(msg.data()));
        self.received += 1;
        if self.max_iterations > 0 && self.received >= self.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        Ok(true)
    }
}

impl fairmq::Device for Sink {}
