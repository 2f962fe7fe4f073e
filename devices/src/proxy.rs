//! `fairmq-proxy` (spec §8.3): forwards everything from sub-channel 0 of `--in-channel` to
//! sub-channel 0 of `--out-channel`.

use fairmq::{Device, DeviceContext, HookResult, Options, Parts, Properties};

use crate::{on_transfer_error, Flow};

/// Declares the in/out channel and multipart options shared by proxy, splitter and merger.
pub fn add_options(o: &mut Options) {
    o.add(
        "in-channel",
        "data-in".to_owned(),
        "Name of the input channel",
    );
    o.add(
        "out-channel",
        "data-out".to_owned(),
        "Name of the output channel",
    );
    o.add("multipart", true, "Handle multipart payloads");
}

/// The proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    in_channel: String,
    out_channel: String,
    multipart: bool,
}

impl Proxy {
    /// A proxy configured from the options.
    pub fn new(config: &Properties) -> HookResult<Self> {
        Ok(Proxy {
            in_channel: config.get("in-channel")?,
            out_channel: config.get("out-channel")?,
            multipart: config.get("multipart")?,
        })
    }
}

impl Device for Proxy {
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let input = ctx.channel(&self.in_channel, 0)?;
        let output = ctx.channel(&self.out_channel, 0)?;
        let mut msg = input.new_message();
        while !ctx.new_state_pending() {
            let result = if self.multipart {
                let mut parts = Parts::new();
                input
                    .receive_parts(&mut parts)
                    .and_then(|_| output.send_parts(&mut parts))
            } else {
                input.receive(&mut msg).and_then(|_| output.send(&mut msg))
            };
            if let Err(e) = result {
                match on_transfer_error(e)? {
                    Flow::Retry => continue,
                    Flow::Stop => break,
                }
            }
        }
        Ok(())
    }
}
