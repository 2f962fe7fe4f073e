//! `fairmq-ex-1-n-1-processor`: receive on `data1`, transform, send on `data2`.

use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr, TransferResultExt};

/// Appends " (modified by <id>)" to every message.
pub struct Processor;

impl fairmq::Device for Processor {}

impl Processor {
    /// The processor, handling `data1`.
    pub fn new(h: &mut Handlers<Self>) -> Self {
        h.on_data("data1", Self::handle_data);
        Processor
    }

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
