//! `fairmq-ex-region-processor`: copies every multipart message from `data1` into two new
//! ones, sent on `data2` and `data3`; leaves RUNNING after `--max-iterations` of them
//! (0 = until stopped). Releasing the received parts acknowledges their region blocks.

use fairmq::{DeviceContext, HookResult, Outcome, Parts, TransferResultExt};

/// The processor's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessorOptions {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The processor.
#[derive(Debug)]
pub struct Processor {
    o: ProcessorOptions,
}

impl Processor {
    /// A processor configured from the options.
    pub fn new(o: ProcessorOptions) -> Self {
        Processor { o }
    }
}

/// Sends `parts` on `chan`; false when interrupted by a state change.
fn send(ctx: &DeviceContext, parts: &mut Parts, chan: &str) -> HookResult<bool> {
    loop {
        match ctx.send_parts(parts, chan).outcome()? {
            Outcome::Done(_) => return Ok(true),
            Outcome::TimedOut if !ctx.new_state_pending() => {}
            Outcome::TimedOut | Outcome::Interrupted => return Ok(false),
        }
    }
}

impl fairmq::Device for Processor {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.o = ctx.options()?;
        crate::log_region_events(ctx.channel("data1")?.transport().as_ref());
        Ok(())
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let mut iterations = 0u64;
        while !ctx.new_state_pending() {
            let mut in_parts = Parts::new();
            match ctx.receive_parts(&mut in_parts, "data1").outcome()? {
                Outcome::Done(_) => {}
                Outcome::TimedOut => continue,
                Outcome::Interrupted => break,
            }
            let (mut out1, mut out2) = (Parts::new(), Parts::new());
            for part in in_parts.iter() {
                for out in [&mut out1, &mut out2] {
                    let mut copy = ctx.new_message()?;
                    copy.copy_from(part.as_ref())?;
                    out.add_part(copy);
                }
            }
            // The received parts are released here, before the copies are sent.
            drop(in_parts);
            if !send(ctx, &mut out1, "data2")? || !send(ctx, &mut out2, "data3")? {
                break;
            }
            iterations += 1;
            if self.o.max_iterations > 0 && iterations >= self.o.max_iterations {
                tracing::info!(
                    "Configured max number of iterations reached. Leaving RUNNING state."
                );
                break;
            }
        }
        Ok(())
    }

    fn reset_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        ctx.channel("data1")?
            .transport()
            .unsubscribe_from_region_events();
        Ok(())
    }
}
