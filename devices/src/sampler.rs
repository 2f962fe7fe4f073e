//! `fairmq-bsampler` (spec §8.1): sends messages of `--msg-size` bytes as fast as possible (or
//! at `--msg-rate`) on sub-channel 0 of `--out-channel`, `--max-iterations` times (0 = until
//! stopped). Every iteration creates a new message with the out-channel's transport, so
//! nothing is copied on the way out.

use std::time::Instant;

use fairmq::{Device, DeviceContext, HookResult, Options, Parts, Properties, RateLimiter};

use crate::{on_transfer_error, Flow};

/// Declares the sampler's options.
pub fn add_options(o: &mut Options) {
    o.add(
        "out-channel",
        "data".to_owned(),
        "Name of the output channel",
    );
    o.add("multipart", false, "True if multipart mode is used");
    o.add("memset", false, "Memset allocated buffers to 0");
    o.add(
        "num-parts",
        1u64,
        "Number of parts for multipart mode (with --multipart true)",
    );
    o.add("msg-size", 1_000_000u64, "Message size in bytes");
    o.add("msg-alignment", 0u64, "Message alignment (0 = none)");
    o.add(
        "max-iterations",
        0u64,
        "Number of run iterations (0 - infinite)",
    );
    o.add(
        "msg-rate",
        0.0f32,
        "Msg rate limit in maximum number of messages per second (0 - unlimited)",
    );
}

/// The benchmark sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    out_channel: String,
    multipart: bool,
    memset: bool,
    num_parts: u64,
    msg_size: usize,
    alignment: usize,
    max_iterations: u64,
    msg_rate: f32,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(config: &Properties) -> HookResult<Self> {
        let msg_rate: f32 = config.get("msg-rate")?;
        if msg_rate < 0.0 {
            return Err(format!("invalid --msg-rate {msg_rate}: must not be negative").into());
        }
        Ok(Sampler {
            out_channel: config.get("out-channel")?,
            multipart: config.get("multipart")?,
            memset: config.get("memset")?,
            num_parts: config.get("num-parts")?,
            msg_size: usize::try_from(config.get::<u64>("msg-size")?)?,
            alignment: usize::try_from(config.get::<u64>("msg-alignment")?)?,
            max_iterations: config.get("max-iterations")?,
            msg_rate,
        })
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
        let out = ctx.channel(&self.out_channel, 0)?;
        tracing::info!(
            "Starting the benchmark with message size of {} and {} iterations.",
            self.msg_size,
            self.max_iterations
        );
        let mut limiter = RateLimiter::new(f64::from(self.msg_rate));
        let start = Instant::now();
        let mut sent = 0u64;
        'run: while !ctx.new_state_pending()
            && (self.max_iterations == 0 || sent < self.max_iterations)
        {
            let result = if self.multipart {
                let mut parts = Parts::new();
                for _ in 0..self.num_parts.max(1) {
                    let Some(mut m) = allocate(ctx, &out, self.msg_size, self.alignment)? else {
                        break 'run;
                    };
                    if self.memset {
                        m.data_mut().fill(0);
                    }
                    parts.add_part(m);
                }
                out.send_parts(&mut parts)
            } else {
                let Some(mut m) = allocate(ctx, &out, self.msg_size, self.alignment)? else {
                    break;
                };
                if self.memset {
                    m.data_mut().fill(0);
                }
                out.send(&mut m)
            };
            match result {
                Ok(_) => sent += 1,
                Err(e) => match on_transfer_error(e)? {
                    Flow::Retry => continue,
                    Flow::Stop => break,
                },
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
