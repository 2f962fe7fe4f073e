//! `fairmq-multiplier` (spec §8.6): every input from `--in-channel` goes to every sub-channel
//! of every `--out-channel` (zero-copy copies; the original goes to the last one).

use clap::ArgAction;
use fairmq::{Device, DeviceContext, Handlers, HookResult, MessagePtr, Parts};

use crate::copy_parts;

/// The multiplier's options.
#[derive(Debug, Clone, clap::Args)]
pub struct MultiplierOptions {
    /// Name of the input channel
    #[arg(long, default_value = "data-in")]
    pub in_channel: String,
    /// Names of the output channels (required; several may follow)
    #[arg(long)]
    pub out_channel: Vec<String>,
    /// Handle multipart payloads
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub multipart: bool,
}

/// The multiplier.
#[derive(Debug, Clone)]
pub struct Multiplier {
    out_channels: Vec<String>,
    /// (channel, number of sub-channels), filled in InitTask.
    outputs: Vec<(String, usize)>,
}

impl Multiplier {
    /// A multiplier configured from the options, handling `--in-channel`.
    pub fn new(o: MultiplierOptions, h: &mut Handlers<Self>) -> HookResult<Self> {
        if o.out_channel.is_empty() {
            return Err(
                "--out-channel is required: give the names of one or more output channels".into(),
            );
        }
        if o.multipart {
            h.on_data_parts(&o.in_channel, Self::handle_parts);
        } else {
            h.on_data(&o.in_channel, Self::handle_data);
        }
        Ok(Multiplier {
            out_channels: o.out_channel,
            outputs: Vec::new(),
        })
    }

    /// All output sub-channels, last one last.
    fn targets(&self) -> Vec<(String, usize)> {
        self.outputs
            .iter()
            .flat_map(|(name, n)| (0..*n).map(move |i| (name.clone(), i)))
            .collect()
    }

    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        mut msg: MessagePtr,
        _: usize,
    ) -> HookResult<bool> {
        let targets = self.targets();
        let Some((last, rest)) = targets.split_last() else {
            return Ok(true);
        };
        for (name, i) in rest {
            let ch = ctx.channel((name, *i))?;
            let mut copy = ch.new_message();
            copy.copy_from(msg.as_ref())?;
            let _ = ch.send(&mut copy);
        }
        let _ = ctx.send(&mut msg, (&last.0, last.1));
        Ok(true)
    }

    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        mut parts: Parts,
        _: usize,
    ) -> HookResult<bool> {
        let targets = self.targets();
        let Some((last, rest)) = targets.split_last() else {
            return Ok(true);
        };
        for (name, i) in rest {
            let ch = ctx.channel((name, *i))?;
            let mut copy = copy_parts(&ch, &parts)?;
            let _ = ch.send_parts(&mut copy);
        }
        let _ = ctx.send_parts(&mut parts, (&last.0, last.1));
        Ok(true)
    }
}

impl Device for Multiplier {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.outputs.clear();
        for name in &self.out_channels {
            let n = ctx.num_sub_channels(name);
            if n == 0 {
                return Err(format!("the output channel '{name}' does not exist").into());
            }
            self.outputs.push((name.clone(), n));
        }
        Ok(())
    }
}
