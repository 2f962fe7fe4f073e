//! `fairmq-ex-region-sink`: receives multipart messages on `--chan-name` and releases them
//! (which acknowledges their region blocks to the sampler); leaves RUNNING after
//! `--max-iterations` of them (0 = until stopped).

use fairmq::{DeviceContext, HookResult, Outcome, Parts, TransferResultExt};

/// The sink's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct SinkOptions {
    /// name of the input channel
    #[arg(long, default_value = "data")]
    pub chan_name: String,
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The sink.
#[derive(Debug)]
pub struct Sink {
    o: SinkOptions,
}

impl Sink {
    /// A sink configured from the options.
    pub fn new(o: SinkOptions) -> Self {
        Sink { o }
    }
}

impl fairmq::Device for Sink {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.o = ctx.options()?;
        crate::log_region_events(ctx.channel(self.o.chan_name.as_str())?.transport().as_ref());
        Ok(())
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let chan = self.o.chan_name.as_str();
        let mut iterations = 0u64;
        while !ctx.new_state_pending() {
            let mut parts = Parts::new();
            match ctx.receive_parts(&mut parts, chan).outcome()? {
                Outcome::Done(_) => {}
                Outcome::TimedOut => continue,
                Outcome::Interrupted => break,
            }
            tracing::debug!(
                "Received {} parts, {} bytes",
                parts.len(),
                parts.total_size()
            );
            // `parts` is dropped here: the sampler's region gets its blocks back.
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
        ctx.channel(self.o.chan_name.as_str())?
            .transport()
            .unsubscribe_from_region_events();
        Ok(())
    }
}
