//! `fairmq-ex-multipart-sampler`: sends a seven-part message on `data` once a second,
//! `--max-iterations` times (0 = until stopped); the last one's header has stop flag 1.

use std::time::Duration;

use fairmq::{DeviceContext, HookResult, Parts, TransferResultExt};

use crate::header::Header;
use crate::BODY_SIZES;

/// The sampler's options (FairMQ's).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct SamplerOptions {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 5)]
    pub max_iterations: u64,
}

/// The sampler.
#[derive(Debug)]
pub struct Sampler {
    max_iterations: u64,
    sent: u64,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(o: SamplerOptions) -> Self {
        Sampler {
            max_iterations: o.max_iterations,
            sent: 0,
        }
    }

    /// The message of this iteration: the header, then the bodies of [`BODY_SIZES`].
    fn message(&self, ctx: &DeviceContext) -> HookResult<Parts> {
        let last = self.max_iterations > 0 && self.sent + 1 == self.max_iterations;
        let header = Header {
            stop_flag: i32::from(last),
        };
        tracing::info!("Sending header with stopFlag: {}", header.stop_flag);

        let mut parts = Parts::new();
        // The header is copied into its message (small); the bodies are allocated in place.
        parts.add_part(ctx.new_message_for_data("data", header.to_bytes().to_vec())?);
        parts.add_part(ctx.new_message_for("data", BODY_SIZES[0])?);
        // Three more parts, appended as one group, as FairMQ's example does.
        let aux: Vec<_> = BODY_SIZES[1..4]
            .iter()
            .map(|&size| ctx.new_message_for("data", size))
            .collect::<Result<_, _>>()?;
        parts.add_parts(Parts::from(aux));
        // An empty part, then a last one of 100 bytes.
        parts.add_part(ctx.new_message()?);
        parts.add_part(ctx.new_message_for("data", BODY_SIZES[5])?);
        debug_assert_eq!(parts.len(), 1 + BODY_SIZES.len());
        Ok(parts)
    }
}

impl fairmq::Device for Sampler {
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        let mut parts = self.message(ctx)?;
        tracing::info!("Sending body of size: {}", parts[1].size());
        if !ctx.send_parts(&mut parts, "data").outcome()?.is_done() {
            return Ok(false);
        }
        self.sent += 1;
        if self.max_iterations > 0 && self.sent >= self.max_iterations {
            tracing::info!(
                "Configured maximum number of iterations reached. Leaving RUNNING state."
            );
            return Ok(false);
        }
        // Keeps the output readable; a state change ends the wait early.
        Ok(ctx.wait_for(Duration::from_secs(1)))
    }
}
