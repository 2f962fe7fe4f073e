//! `fairmq-ex-n-m-synchronizer`: publishes time frame ids 0, 1, 2, ... on `sync`, one per
//! ConditionalRun (so `--rate` sets the time frame rate); the id wraps to 0 before
//! `u16::MAX - 1`.

use fairmq::{DeviceContext, HookResult, TransferResultExt};

/// The synchronizer.
#[derive(Debug, Default)]
pub struct Synchronizer {
    timeframe_id: u16,
}

impl Synchronizer {
    /// A synchronizer starting at time frame 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fairmq::Device for Synchronizer {
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        let mut msg = ctx.new_message_for_data("sync", crate::encode_id(self.timeframe_id))?;
        if !ctx.send(&mut msg, "sync").outcome()?.is_done() {
            return Ok(false);
        }
        self.timeframe_id += 1;
        if self.timeframe_id == u16::MAX - 1 {
            self.timeframe_id = 0;
        }
        Ok(true)
    }
}
