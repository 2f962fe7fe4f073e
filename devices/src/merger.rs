//! `fairmq-merger` (spec §8.5): polls all sub-channels of `--in-channel` and forwards every
//! input to sub-channel 0 of `--out-channel`.

use std::time::Duration;

use fairmq::{
    ChannelEndpoints, Device, DeviceContext, HookResult, Outcome, Parts, Timeout, TransferResultExt,
};

use crate::proxy::InOutOptions;

/// The merger.
#[derive(Debug, Clone)]
pub struct Merger {
    o: InOutOptions,
}

impl Merger {
    /// A merger configured from the options.
    pub fn new(o: InOutOptions) -> Self {
        Merger { o }
    }
}

impl Device for Merger {
    fn register_channel_endpoints(&self, endpoints: &mut ChannelEndpoints) {
        endpoints.register(&self.o.in_channel, 1, 10000);
        endpoints.register(&self.o.out_channel, 1, 1);
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let poller = ctx.poller(&[&self.o.in_channel])?;
        let output = ctx.channel(&self.o.out_channel)?;
        let inputs = poller.channels().to_vec();
        'run: while !ctx.new_state_pending() {
            let events = poller.poll(Timeout::After(Duration::from_millis(100)))?;
            for (i, input) in inputs.iter().enumerate() {
                if !events.check_input_at(i) {
                    continue;
                }
                let result = if self.o.multipart {
                    let mut parts = Parts::new();
                    input
                        .receive_parts_timeout(&mut parts, Timeout::Immediately)
                        .and_then(|_| output.send_parts(&mut parts))
                } else {
                    let mut msg = input.new_message();
                    input
                        .receive_timeout(&mut msg, Timeout::Immediately)
                        .and_then(|_| output.send(&mut msg))
                };
                if result.outcome()? == Outcome::Interrupted {
                    break 'run;
                }
            }
        }
        Ok(())
    }
}
