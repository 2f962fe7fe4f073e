//! `fairmq-splitter` (spec §8.4): an OnData handler on `--in-channel` sends each input to the
//! next sub-channel of `--out-channel`, round robin.

use fairmq::{Device, DeviceContext, Handlers, HookResult, MessagePtr, Parts};

use crate::proxy::InOutOptions;

/// The splitter.
#[derive(Debug, Clone)]
pub struct Splitter {
    out_channel: String,
    next: usize,
    outputs: usize,
}

impl Splitter {
    /// A splitter configured from the options, handling `--in-channel`.
    pub fn new(o: InOutOptions, h: &mut Handlers<Self>) -> Self {
        if o.multipart {
            h.on_data_parts(&o.in_channel, Self::handle_parts);
        } else {
            h.on_data(&o.in_channel, Self::handle_data);
        }
        Splitter {
            out_channel: o.out_channel,
            next: 0,
            outputs: 0,
        }
    }

    fn advance(&mut self) -> usize {
        let d = self.next;
        self.next = (self.next + 1) % self.outputs.max(1);
        d
    }

    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        mut msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        let d = self.advance();
        let _ = ctx.send(&mut msg, (&self.out_channel, d));
        Ok(true)
    }

    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        mut parts: Parts,
        _: usize,
    ) -> HookResult<bool> {
        let d = self.advance();
        let _ = ctx.send_parts(&mut parts, (&self.out_channel, d));
        Ok(true)
    }
}

impl Device for Splitter {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.outputs = ctx.num_sub_channels(&self.out_channel);
        if self.outputs == 0 {
            return Err(format!("the output channel '{}' does not exist", self.out_channel).into());
        }
        self.next = 0;
        Ok(())
    }
}
