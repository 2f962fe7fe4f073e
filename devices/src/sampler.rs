//! `fairmq-bsampler` (spec §8.1): sends messages of `--msg-size` bytes as fast as possible (or
//! at `--msg-rate`) on sub-channel 0 of `--out-channel`, `--max-iterations` times (0 = until
//! stopped). Every iteration creates a new message with the out-channel's transport, so
//! nothing is copied on the way out.

use std::time::Instant;

use clap::ArgAction;
use fairmq::{Device, DeviceContext, HookResult, Outcome, Parts, RateLimiter, TransferResultExt};

/// The sampler's options (FairMQ's names, types and defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplerOptions {
    /// Name of the output channel
    #[arg(long, default_value = "data")]
    pub out_channel: String,
    /// True if multipart mode is used
    #[arg(long, default_value_t = false, action = ArgAction::Set)]
    pub multipart: bool,
    /// Memset allocated buffers to 0
    #[arg(long, default_value_t = false, action = ArgAction::Set)]
    pub memset: bool,
    /// Number of parts for multipart mode (with --multipart true)
    #[arg(long, default_value_t = 1)]
    pub num_parts: u64,
    /// Message size in bytes
    #[arg(long, default_value_t = 1_000_000)]
    pub msg_size: usize,
    /// Message alignment (0 = none)
    #[arg(long, default_value_t = 0)]
    pub msg_alignment: usize,
    /// Number of run iterations (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
    /// Msg rate limit in maximum number of messages per second (0 - unlimited)
    #[arg(long, default_value_t = 0.0)]
    pub msg_rate: f32,
}

/// The benchmark sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    o: SamplerOptions,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(o: SamplerOptions) -> HookResult<Self> {
        if o.msg_rate < 0.0 || !o.msg_rate.is_finite() {
            return Err(format!("invalid --msg-rate {}: must not be negative", o.msg_rate).into());
        }
        Ok(Sampler { o })
    }
}

/// A new message, or `None` when the allocation failed because the device is being stopped (a
/// full shmem segment makes the allocation wait until memory is freed or a transition
/// interrupts it; that is a stop, not an error).
fn allocate(
    ctx: &DeviceContext,
    out: &fairmq::Channel,
    size: usize,
    alignment: usize,
) -> HookResult<Option<fairmq::MessagePtr>> {
    match out.new_message_aligned(size, alignment) {
        Ok(m) => Ok(Some(m)),
        Err(e) if ctx.new_state_pending() => {
            tracing::debug!("allocation interrupted by the state change: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

impl Device for Sampler {
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let o = &self.o;
        let out = ctx.channel(&o.out_channel)?;
        tracing::info!(
            "Starting the benchmark with message size of {} and {} iterations.",
            o.msg_size,
            o.max_iterations
        );
        let mut limiter = RateLimiter::new(f64::from(o.msg_rate));
        let start = Instant::now();
        let mut sent = 0u64;
        'run: while !ctx.new_state_pending() && (o.max_iterations == 0 || sent < o.max_iterations) {
            let result = if o.multipart {
                let mut parts = Parts::new();
                for _ in 0..o.num_parts.max(1) {
                    let Some(mut m) = allocate(ctx, &out, o.msg_size, o.msg_alignment)? else {
                        break 'run;
                    };
                    if o.memset {
                        m.data_mut().fill(0);
                    }
                    parts.add_part(m);
                }
                out.send_parts(&mut parts)
            } else {
                let Some(mut m) = allocate(ctx, &out, o.msg_size, o.msg_alignment)? else {
                    break;
                };
                if o.memset {
                    m.data_mut().fill(0);
                }
                out.send(&mut m)
            };
            match result.outcome()? {
                Outcome::Done(_) => sent += 1,
                Outcome::TimedOut => continue,
                Outcome::Interrupted => break,
            }
            if !limiter.is_unlimited() {
                limiter.maybe_sleep(Some(ctx.state_machine()));
            }
        }
        tracing::info!(
            "Done {} iterations in {}ms.",
            sent,
            start.elapsed().as_millis()
        );
        Ok(())
    }
}
