//! `fairmq-ex-multiple-channels-broadcaster`: publishes "OK" on `broadcast` once a second
//! until stopped.

use std::time::Duration;

use fairmq::{DeviceContext, HookResult, TransferResultExt};

/// The broadcaster.
#[derive(Debug, Default)]
pub struct Broadcaster;

impl fairmq::Device for Broadcaster {
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        // A second between messages, cut short if the device is stopped meanwhile.
        if !ctx.wait_for(Duration::from_secs(1)) {
            return Ok(false);
        }
        let mut msg = ctx.new_message_for_data("broadcast", b"OK".to_vec())?;
        tracing::info!("Sending OK");
        Ok(ctx.send(&mut msg, "broadcast").outcome()?.is_done())
    }
}
