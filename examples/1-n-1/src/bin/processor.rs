//! `fairmq-ex-1-n-1-processor`: receives on `data1`, appends " (modified by <id>)", sends on
//! `data2`.

use fairmq::{DeviceContext, HookResult, MessagePtr, NoOptions, TransferResultExt};
use fairmq_example_1_n_1 as _; // links the prelinked shmmonitor plugin (--shm-monitor true)

struct Processor;

impl fairmq::Device for Processor {}

impl Processor {
    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        tracing::info!("Received data, processing...");
        let text = format!(
            "{} (modified by {})",
            String::from_utf8_lossy(msg.data()),
            ctx.id()
        );
        // The message adopts the string's buffer (no copy) and frees it once sent.
        let mut out = ctx.new_message_from(text.into_bytes())?;
        // A failure ends in ERROR; an interruption (a state change) stops the handler.
        Ok(ctx.send(&mut out, "data2").outcome()?.is_done())
    }
}

fn main() -> std::process::ExitCode {
    fairmq::run(|_: NoOptions, h| {
        h.on_data("data1", Processor::handle_data);
        Ok(Processor)
    })
}
