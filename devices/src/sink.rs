//! `fairmq-sink` (spec §8.2): receives messages (or multipart messages) on sub-channel 0 of
//! `--in-channel`, optionally appends their bytes to `--out-filename`, stops after
//! `--max-iterations` messages (0 = until stopped) or `--max-file-size` bytes written, and
//! reports `Received <n> messages in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).` (timed from the
//! first message on).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::time::Instant;

use clap::ArgAction;
use fairmq::{Device, DeviceContext, HookResult, Outcome, Parts, TransferResultExt};

/// The sink's options.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkOptions {
    /// Name of the input channel
    #[arg(long, default_value = "data")]
    pub in_channel: String,
    /// Write incoming data to this file (empty = discard)
    #[arg(long, default_value = "")]
    pub out_filename: String,
    /// Stop after writing this many bytes to --out-filename (0 = unlimited)
    #[arg(long, default_value_t = 2_000_000_000)]
    pub max_file_size: u64,
    /// Number of messages to receive (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
    /// True if multipart mode is used
    #[arg(long, default_value_t = false, action = ArgAction::Set)]
    pub multipart: bool,
}

/// The sink.
#[derive(Debug, Clone)]
pub struct Sink {
    o: SinkOptions,
}

impl Sink {
    /// A sink configured from the options.
    pub fn new(o: SinkOptions) -> Self {
        Sink { o }
    }
}

impl Device for Sink {
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let o = &self.o;
        let input = ctx.channel(&o.in_channel)?;
        let mut file = if o.out_filename.is_empty() {
            None
        } else {
            let f = File::options()
                .create(true)
                .append(true)
                .open(&o.out_filename)
                .map_err(|e| format!("cannot open --out-filename '{}': {e}", o.out_filename))?;
            Some(BufWriter::new(f))
        };
        tracing::info!(
            "Starting sink and expecting to receive {} messages.",
            o.max_iterations
        );
        let mut received = 0u64;
        let mut bytes = 0u64;
        let mut written = 0u64;
        let mut first: Option<Instant> = None;
        let mut msg = input.new_message();
        while !ctx.new_state_pending() {
            let mut parts = Parts::new();
            let result = if o.multipart {
                input.receive_parts(&mut parts)
            } else {
                input.receive(&mut msg)
            };
            match result.outcome()? {
                Outcome::Done(n) => {
                    first.get_or_insert_with(Instant::now);
                    received += 1;
                    bytes += n as u64;
                    if let Some(f) = file.as_mut() {
                        if o.multipart {
                            for p in parts.iter() {
                                f.write_all(p.data())?;
                                written += p.size() as u64;
                            }
                        } else {
                            f.write_all(msg.data())?;
                            written += msg.size() as u64;
                        }
                        if o.max_file_size > 0 && written >= o.max_file_size {
                            tracing::info!("Written {} bytes, stopping...", written);
                            break;
                        }
                    }
                    if o.max_iterations > 0 && received >= o.max_iterations {
                        tracing::info!("Configured maximum number of iterations reached.");
                        break;
                    }
                    // Done with it: give the buffer back now, not when the next message comes
                    // (FairMQ's sink destroys its message here). A shmem sender then reuses
                    // the buffer it wrote last, still in its CPU cache, and one fewer buffer
                    // circulates.
                    msg.rebuild();
                }
                Outcome::TimedOut => continue,
                Outcome::Interrupted => break,
            }
        }
        let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
        let secs = elapsed.as_secs_f64().max(1e-9);
        tracing::info!(
            "Received {} messages in {}ms ({:.0} msg/s, {:.3} GB/s).",
            received,
            elapsed.as_millis(),
            if received > 0 {
                received as f64 / secs
            } else {
                0.0
            },
            if received > 0 {
                bytes as f64 / 1e9 / secs
            } else {
                0.0
            }
        );
        if let Some(mut f) = file {
            f.flush()?;
            tracing::info!(
                "Wrote {} bytes to {} ({:.3} MB/s).",
                written,
                o.out_filename,
                written as f64 / 1e6 / secs
            );
        }
        tracing::info!("Leaving RUNNING state.");
        Ok(())
    }
}
