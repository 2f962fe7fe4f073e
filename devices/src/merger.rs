//! `fairmq-merger` (spec §8.5): polls all sub-channels of `--in-channel` and forwards every
//! input to sub-channel 0 of `--out-channel`.

use fairmq::{ChannelEndpoints, Device, DeviceContext, HookResult, Parts, Properties};

use crate::{on_transfer_error, Flow};

/// The merger.
#[derive(Debug, Clone)]
pub struct Merger {
    in_channel: String,
    out_channel: String,
    multipart: bool,
}

impl Merger {
    /// A merger configured from the options (see [`crate::proxy::add_options`]).
    pub fn new(config: &Properties) -> HookResult<Self> {
        Ok(Merger {
            in_channel: config.get("in-channel")?,
            out_channel: config.get("out-channel")?,
            multipart: config.get("multipart")?,
        })
    }
}

impl Device for Merger {
    fn register_channel_endpoints(&self, endpoints: &mut ChannelEndpoints) {
        endpoints.register(&self.in_channel, 1, 10000);
        endpoints.register(&self.out_channel, 1, 1);
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let poller = ctx.poller(&[&self.in_channel])?;
        let output = ctx.channel(&self.out_channel, 0)?;
        let inputs = poller.channels().to_vec();
        'run: while !ctx.new_state_pending() {
            let events = poller.poll(100)?;
            for (i, input) in inputs.iter().enumerate() {
                if !events.check_input_at(i) {
                    continue;
                }
                let result = if self.multipart {
                    let mut parts = Parts::new();
                    input
                        .receive_parts_timeout(&mut parts, 0)
                        .and_then(|_| output.send_parts(&mut parts))
                } else {
                    let mut msg = input.new_message();
                    input
                        .receive_timeout(&mut msg, 0)
                        .and_then(|_| output.send(&mut msg))
                };
                if let Err(e) = result {
                    match on_transfer_error(e)? {
                        Flow::Retry => continue,
                        Flow::Stop => break 'run,
                    }
                }
            }
        }
        Ok(())
    }
}
