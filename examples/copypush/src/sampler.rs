//! `fairmq-ex-copypush-sampler`: once a second, sends a counter (a native-endian `u64`,
//! starting at 0) to every sub-channel of `data`: the last sub-channel gets the message, the
//! others copies sharing its payload. `--max-iterations` rounds (0 = until stopped).

use std::time::Duration;

use fairmq::{DeviceContext, HookResult, TransferResultExt};

use crate::MaxIterations;

/// The sampler.
#[derive(Debug)]
pub struct Sampler {
    max_iterations: u64,
    iterations: u64,
    counter: u64,
    num_data_channels: usize,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(o: MaxIterations) -> Self {
        Sampler {
            max_iterations: o.max_iterations,
            iterations: 0,
            counter: 0,
            num_data_channels: 0,
        }
    }
}

impl fairmq::Device for Sampler {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.num_data_channels = ctx.num_sub_channels("data");
        if self.num_data_channels == 0 {
            return Err("channel 'data' has no sub-channel to send to".into());
        }
        tracing::debug!(
            "Sending to {} sub-channels of 'data'",
            self.num_data_channels
        );
        Ok(())
    }

    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        // A small message: the counter's bytes are copied into it.
        let mut msg = ctx.new_message_from(self.counter.to_ne_bytes().to_vec())?;
        self.counter += 1;

        let last = self.num_data_channels - 1;
        for i in 0..last {
            let mut copy = ctx.new_message()?;
            copy.copy_from(msg.as_ref())?;
            // As in FairMQ, a copy that does not go out (timeout, interruption) is dropped;
            // a failure ends in ERROR.
            ctx.send(&mut copy, ("data", i)).outcome()?;
        }
        ctx.send(&mut msg, ("data", last)).outcome()?;

        self.iterations += 1;
        if self.max_iterations > 0 && self.iterations >= self.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        // Sleeps a second, or less if the device is stopped meanwhile.
        Ok(ctx.wait_for(Duration::from_secs(1)))
    }
}
