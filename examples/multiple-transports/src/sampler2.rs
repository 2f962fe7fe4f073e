//! `fairmq-ex-multiple-transports-sampler2`: sends 1000-byte messages of its main transport
//! (zeromq in the launcher and in FairMQ's test) on `data2`, `--max-iterations` times (0 =
//! until stopped), and logs `Sent <n> messages of 1000 bytes on data2.` at the end.

use fairmq::{Device, DeviceContext, HookResult, Outcome, TransferResultExt};

use crate::{report, MaxIterations, DATA2_MESSAGE_SIZE};

/// sampler2.
#[derive(Debug)]
pub struct Sampler2 {
    max_iterations: u64,
    sent: u64,
}

impl Sampler2 {
    /// sampler2 configured from the options (`--max-iterations`).
    pub fn new(options: MaxIterations) -> Self {
        Sampler2 {
            max_iterations: options.max_iterations,
            sent: 0,
        }
    }
}

impl Device for Sampler2 {
    fn pre_run(&mut self, _ctx: &mut DeviceContext) -> HookResult {
        self.sent = 0;
        Ok(())
    }

    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        if self.max_iterations > 0 && self.sent >= self.max_iterations {
            return Ok(false);
        }
        // The device's main transport; data2 uses it too, so nothing is copied.
        let mut msg = ctx.new_message_with_size(DATA2_MESSAGE_SIZE)?;
        match ctx.send(&mut msg, "data2").outcome()? {
            Outcome::Done(_) => self.sent += 1,
            Outcome::TimedOut => return Ok(true),
            Outcome::Interrupted => return Ok(false),
        }
        Ok(self.max_iterations == 0 || self.sent < self.max_iterations)
    }

    fn post_run(&mut self, _ctx: &mut DeviceContext) -> HookResult {
        tracing::info!(
            "{}",
            report::sent_line(self.sent, DATA2_MESSAGE_SIZE, "data2")
        );
        Ok(())
    }
}
