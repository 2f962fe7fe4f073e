//! `fairmq-ex-1-n-1-sink`: prints every message from `data2`; leaves RUNNING after
//! `--max-iterations` messages (0 = until stopped).

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr};

use crate::MaxIterations;

/// The sink.
#[derive(Debug)]
pub struct Sink {
    max_iterations: u64,
    received: u64,
}

impl Sink {
    /// A sink configured from the options, handling `data2`.
    pub fn new(o: MaxIterations, h: &mut Handlers<Self>) -> Self {
        h.on_data("data2", Self::handle_data);
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
