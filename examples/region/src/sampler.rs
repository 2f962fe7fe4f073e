//! `fairmq-ex-region-sampler`: sends multipart messages whose parts point into an unmanaged
//! region and counts the region's acknowledgements (released blocks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fairmq::{DeviceContext, HookResult, Outcome, Parts, RateLimiter, TransferResultExt};
use fairmq_transport::{RegionCallback, RegionConfig, RegionPtr};

/// Size of the region the sampler creates, as in FairMQ's example.
pub const REGION_SIZE: usize = 10_000_000;
/// Number of parts of every multipart message.
pub const PARTS_PER_MESSAGE: usize = 64;
/// Region id used with `--external-region true` (the region a keep-alive process created).
pub const EXTERNAL_REGION_ID: u16 = 1;

/// The sampler's options (FairMQ's).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplerOptions {
    /// name of the output channel
    #[arg(long, default_value = "data")]
    pub chan_name: String,
    /// Message size in bytes
    #[arg(long, default_value_t = 1000)]
    pub msg_size: i32,
    /// Sampling rate (Hz).
    #[arg(long, default_value_t = 0.0)]
    pub sampling_rate: f32,
    /// Linger period for regions
    #[arg(long, default_value_t = 100)]
    pub region_linger: u32,
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
    /// Use region created by another process
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub external_region: bool,
    /// Size of the reference count segment for Unamanged Region
    #[arg(long, default_value_t = 10_000_000)]
    pub rc_segment_size: u64,
}

/// The sampler.
pub struct Sampler {
    o: SamplerOptions,
    msg_size: usize,
    region: Option<RegionPtr>,
    /// Parts sent (or attempted) whose blocks the region has not reported released yet.
    unacked: Arc<AtomicU64>,
}

impl Sampler {
    /// A sampler configured from the options.
    pub fn new(o: SamplerOptions) -> Self {
        Sampler {
            o,
            msg_size: 0,
            region: None,
            unacked: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl fairmq::Device for Sampler {
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.o = ctx.options()?;
        self.msg_size = usize::try_from(self.o.msg_size)
            .map_err(|_| format!("--msg-size must not be negative, got {}", self.o.msg_size))?;
        let transport = ctx.channel(self.o.chan_name.as_str())?.transport().clone();
        crate::log_region_events(transport.as_ref());

        let external = self.o.external_region;
        let config = RegionConfig {
            // Delay before the region is destroyed, to collect outstanding acknowledgements.
            linger_ms: self.o.region_linger,
            id: external.then_some(EXTERNAL_REGION_ID),
            remove_on_destruction: !external,
            lock: !external,
            zero: !external,
            rc_segment_size: usize::try_from(self.o.rc_segment_size)
                .map_err(|_| "--rc-segment-size does not fit in memory")?,
            ..RegionConfig::with_size(REGION_SIZE)
        };
        let unacked = self.unacked.clone();
        let log_acks = self.o.max_iterations > 0;
        // Called (from a transport thread) with the blocks no message needs any more.
        let callback = RegionCallback::bulk(move |blocks| {
            unacked.fetch_sub(blocks.len() as u64, Ordering::AcqRel);
            if log_acks {
                tracing::info!("Received {} acks", blocks.len());
            }
        });
        self.region = Some(transport.new_unmanaged_region(config, callback)?);
        Ok(())
    }

    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let region = self
            .region
            .clone()
            .ok_or("the region was not created in InitTask")?;
        let transport = ctx.channel(self.o.chan_name.as_str())?.transport().clone();
        let chan = self.o.chan_name.as_str();
        let mut rate = RateLimiter::new(f64::from(self.o.sampling_rate));
        let mut iterations = 0u64;

        while !ctx.new_state_pending() {
            let mut parts = Parts::new();
            for _ in 0..PARTS_PER_MESSAGE {
                // Every part refers to the first msg-size bytes of the region (no copy).
                parts.add_part(transport.new_region_message(&region, 0, self.msg_size, 0)?);
            }
            // Counted before sending: a part's acknowledgement can arrive as soon as it is
            // sent, and parts that are not sent are released (and acknowledged) as well.
            self.unacked.fetch_add(parts.len() as u64, Ordering::AcqRel);
            match ctx.send_parts(&mut parts, chan).outcome()? {
                Outcome::Done(_) => {
                    iterations += 1;
                    if self.o.max_iterations > 0 && iterations >= self.o.max_iterations {
                        tracing::info!(
                            "Configured maximum number of iterations reached. Stopping sending."
                        );
                        break;
                    }
                    if self.o.sampling_rate > 0.001 {
                        rate.maybe_sleep(Some(ctx.state_machine()));
                    }
                }
                Outcome::TimedOut => {}
                Outcome::Interrupted => break,
            }
        }

        // Wait for all acknowledgements to arrive.
        while !ctx.new_state_pending() && self.unacked.load(Ordering::Acquire) != 0 {
            ctx.wait_for(Duration::from_millis(25));
        }
        match self.unacked.load(Ordering::Acquire) {
            0 => tracing::info!("All acknowledgements received."),
            n => tracing::info!("Done, still not acknowledged: {n}"),
        }
        Ok(())
    }

    fn reset_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        // Dropping the region keeps collecting acknowledgements for --region-linger ms.
        self.region = None;
        ctx.channel(self.o.chan_name.as_str())?
            .transport()
            .unsubscribe_from_region_events();
        Ok(())
    }
}
