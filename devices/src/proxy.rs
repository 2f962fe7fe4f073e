//! `fairmq-proxy` (spec §8.3): forwards everything from sub-channel 0 of `--in-channel` to
//! sub-channel 0 of `--out-channel`.

use clap::ArgAction;
use fairmq::{Device, DeviceContext, HookResult, Outcome, Parts, TransferResultExt};

/// The in/out channel and multipart options shared by proxy, splitter and merger.
#[derive(Debug, Clone, clap::Args)]
pub struct InOutOptions {
    /// Name of the input channel
    #[arg(long, default_value = "data-in")]
    pub in_channel: String,
    /// Name of the output channel
    #[arg(long, default_value = "data-out")]
    pub out_channel: String,
    /// Handle multipart payloads
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub multipart: bool,
}

/// The proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    o: InOutOptions,
}

impl Proxy {
    /// A proxy configured from the options.
    pub fn new(o: InOutOptions) -> Self {
        Proxy { o }
    }
}

impl Device for Proxy {
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let input = ctx.channel(&self.o.in_channel)?;
        let output = ctx.channel(&self.o.out_channel)?;
        let mut msg = input.new_message();
        while !ctx.new_state_pending() {
            let result = if self.o.multipart {
                let mut parts = Parts::new();
                input
                    .receive_parts(&mut parts)
                    .and_then(|_| output.send_parts(&mut parts))
            } else {
                input.receive(&mut msg).and_then(|_| output.send(&mut msg))
            };
            if result.outcome()? == Outcome::Interrupted {
                break;
            }
        }
        Ok(())
    }
}
