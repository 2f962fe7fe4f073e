//! `fairmq-ex-1-1-sampler`: sends `--text` on `data` once per `conditional_run` (paced by the
//! device's `--rate`), `--max-iterations` times (0 = until stopped).

use fairmq::{DeviceContext, HookResult, TransferResultExt};

/// The sampler's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplerOptions {
    /// Text to send out
    #[arg(long, default_value = "Hello")]
    pub text: String,
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}

/// The sampler.
#[derive(Debug)]
pub struct Sampler {
    o: SamplerOptions,
    sent: u64,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(o: SamplerOptions) -> Self {
        Sampler { o, sent: 0 }
    }
}

impl fairmq::Device for Sampler {
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        // The message adopts a copy of the text and frees it once the transfer is done.
        let mut msg = ctx.new_message_from(self.o.text.clone().into_bytes())?;
        tracing::info!("Sending \"{}\"", self.o.text);
        // A failure ends in ERROR; an interruption (a state change) leaves RUNNING.
        if !ctx.send(&mut msg, "data").outcome()?.is_done() {
            return Ok(false);
        }
        self.sent += 1;
        if self.o.max_iterations > 0 && self.sent >= self.o.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        Ok(true)
    }
}
