//! `fairmq-splitter` (spec §8.4): an OnData handler on `--in-channel` sends each input to the
//! next sub-channel of `--out-channel`, round robin.

use fairmq::{Device, DeviceContext, HookResult, MessagePtr, Parts, Properties};

/// The splitter.
#[derive(Debug, Clone)]
pub struct Splitter {
    in_channel: String,
    out_channel: String,
    multipart: bool,
    next: usize,
    outputs: usize,
}

impl Splitter {
    /// A splitter configured from the options (see [`crate::proxy::add_options`]).
    pub fn new(config: &Properties) -> HookResult<Self> {
        Ok(Splitter {
            in_channel: config.get("in-channel")?,
            out_channel: config.get("out-channel")?,
            multipart: config.get("multipart")?,
            next: 0,
            outputs: 0,
        })
    }

    fn advance(&mut self) -> usize {
        let d = self.next;
        self.next = (self.next + 1) % self.outputs.max(1);
        d
    }
}

impl Device for Splitter {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.outputs = ctx.num_sub_channels(&self.out_channel);
        if self.outputs == 0 {
            return Err(format!("the output channel '{}' does not exist", self.out_channel).into());
        }
        self.next = 0;
        if self.multipart {
            ctx.on_data_parts(&self.in_channel);
        } else {
            ctx.on_data(&self.in_channel);
        }
        Ok(())
    }

    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        _: &str,
        mut msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        let d = self.advance();
        let _ = ctx.send(&mut msg, &self.out_channel, d);
        Ok(true)
    }

    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        _: &str,
        mut parts: Parts,
        _: usize,
    ) -> HookResult<bool> {
        let d = self.advance();
        let _ = ctx.send_parts(&mut parts, &self.out_channel, d);
        Ok(true)
    }
}
