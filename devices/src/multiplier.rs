//! `fairmq-multiplier` (spec §8.6): every input from `--in-channel` goes to every sub-channel
//! of every `--out-channel` (zero-copy copies; the original goes to the last one).

use fairmq::{
    Device, DeviceContext, HookResult, MessagePtr, Options, Parts, Properties, PropertyType,
};

use crate::copy_parts;

/// Declares the multiplier's options.
pub fn add_options(o: &mut Options) {
    o.add(
        "in-channel",
        "data-in".to_owned(),
        "Name of the input channel",
    );
    o.add_without_default(
        "out-channel",
        PropertyType::Strings,
        "Names of the output channels (required; several may follow)",
    );
    o.add("multipart", true, "Handle multipart payloads");
}

/// The multiplier.
#[derive(Debug, Clone)]
pub struct Multiplier {
    in_channel: String,
    out_channels: Vec<String>,
    multipart: bool,
    /// (channel, number of sub-channels), filled in InitTask.
    outputs: Vec<(String, usize)>,
}

impl Multiplier {
    /// A multiplier configured from the options.
    pub fn new(config: &Properties) -> HookResult<Self> {
        let out_channels: Vec<String> = config.get("out-channel").map_err(|_| {
            "--out-channel is required: give the names of one or more output channels"
        })?;
        if out_channels.is_empty() {
            return Err(
                "--out-channel is required: give the names of one or more output channels".into(),
            );
        }
        Ok(Multiplier {
            in_channel: config.get("in-channel")?,
            out_channels,
            multipart: config.get("multipart")?,
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
        let targets = self.targets();
        let Some((last, rest)) = targets.split_last() else {
            return Ok(true);
        };
        for (name, i) in rest {
            let ch = ctx.channel(name, *i)?;
            let mut copy = ch.new_message();
            copy.copy_from(msg.as_ref())?;
            let _ = ch.send(&mut copy);
        }
        let _ = ctx.send(&mut msg, &last.0, last.1);
        Ok(true)
    }

    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        _: &str,
        mut parts: Parts,
        _: usize,
    ) -> HookResult<bool> {
        let targets = self.targets();
        let Some((last, rest)) = targets.split_last() else {
            return Ok(true);
        };
        for (name, i) in rest {
            let ch = ctx.channel(name, *i)?;
            let mut copy = copy_parts(&ch, &parts)?;
            let _ = ch.send_parts(&mut copy);
        }
        let _ = ctx.send_parts(&mut parts, &last.0, last.1);
        Ok(true)
    }
}
