//! `fairmq-ex-copypush-sink`: prints the counter (a native-endian `u64`) of every message
//! from `data`; leaves RUNNING after `--max-iterations` messages (0 = until stopped).

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr};

use crate::MaxIterations;

/// The sink.
#[derive(Debug)]
pub struct Sink {
    max_iterations: u64,
    received: u64,
}

impl Sink {
    /// A sink configured from the options, handling `data`.
    pub fn new(o: MaxIterations, h: &mut Handlers<Self>) -> Self {
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
        let bytes: [u8; 8] = msg.data().try_into().map_err(|_| {
            format!(
                "expected an 8-byte counter on 'data', got {} bytes",
                msg.size()
            )
        })?;
        tracing::info!("Received message: \"{}\"", u64::from_ne_bytes(bytes));
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
