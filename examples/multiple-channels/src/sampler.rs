//! `fairmq-ex-multiple-channels-sampler`: one loop over a poller of `data` and `broadcast`:
//! prints every broadcast, and whenever `data` can send, waits a second and sends `--text`,
//! until `--max-iterations` messages are sent (0 = until stopped).

use std::time::Duration;

use fairmq::{DeviceContext, HookResult, Outcome, Timeout, TransferResultExt};

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
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let poller = ctx.poller(&["data", "broadcast"])?;
        while !ctx.new_state_pending() {
            let events = poller.poll(Timeout::After(Duration::from_millis(100)))?;

            if events.check_input("broadcast", 0) {
                let mut msg = ctx.new_message()?;
                if ctx.receive(&mut msg, "broadcast").outcome()?.is_done() {
                    tracing::info!("Received broadcast: \"{}\"", crate::text(&msg));
                }
            }

            if events.check_output("data", 0) {
                if !ctx.wait_for(Duration::from_secs(1)) {
                    break;
                }
                let mut msg = ctx.new_message_for_data("data", self.o.text.clone().into_bytes())?;
                match ctx.send(&mut msg, "data").outcome()? {
                    Outcome::Done(_) => {
                        tracing::info!("Sent \"{}\"", self.o.text);
                        self.sent += 1;
                        if self.o.max_iterations > 0 && self.sent >= self.o.max_iterations {
                            tracing::info!(
                                "Configured maximum number of iterations reached. Leaving RUNNING state."
                            );
                            break;
                        }
                    }
                    Outcome::TimedOut => {}
                    Outcome::Interrupted => break,
                }
            }
        }
        Ok(())
    }
}
