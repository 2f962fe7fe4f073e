//! `fairmq-sink` (spec §8.2): receives messages (or multipart messages) on sub-channel 0 of
//! `--in-channel`, optionally appends their bytes to `--out-filename`, stops after
//! `--max-iterations` messages (0 = until stopped) or `--max-file-size` bytes written, and
//! reports `Received <n> messages in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).` (timed from the
//! first message on).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::time::Instant;

use fairmq::{Device, DeviceContext, HookResult, Options, Parts, Properties};

use crate::{on_transfer_error, Flow};

/// Declares the sink's options.
pub fn add_options(o: &mut Options) {
    o.add("in-channel", "data".to_owned(), "Name of the input channel");
    o.add(
        "out-filename",
        String::new(),
        "Write incoming data to this file (empty = discard)",
    );
    o.add(
        "max-file-size",
        2_000_000_000u64,
        "Stop after writing this many bytes to --out-filename (0 = unlimited)",
    );
    o.add(
        "max-iterations",
        0u64,
        "Number of messages to receive (0 - infinite)",
    );
    o.add("multipart", false, "True if multipart mode is used");
}

/// The sink.
#[derive(Debug, Clone)]
pub struct Sink {
    in_channel: String,
    out_filename: String,
    max_file_size: u64,
    max_iterations: u64,
    multipart: bool,
}

impl Sink {
    /// A sink configured from the options.
    pub fn new(config: &Properties) -> HookResult<Self> {
        Ok(Sink {
            in_channel: config.get("in-channel")?,
            out_filename: config.get("out-filename")?,
            max_file_size: config.get("max-file-size")?,
            max_iterations: config.get("max-iterations")?,
            multipart: config.get("multipart")?,
        })
    }
}

impl Device for Sink {
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let input = ctx.channel(&self.in_channel, 0)?;
        let mut file = if self.out_filename.is_empty() {
            None
        } else {
            let f = File::options()
                .create(true)
                .append(true)
                .open(&self.out_filename)
                .map_err(|e| format!("cannot open --out-filename '{}': {e}", self.out_filename))?;
            Some(BufWriter::new(f))
        };
        tracing::info!(
            "Starting sink and expecting to receive {} messages.",
            self.max_iterations
        );
        let mut received = 0u64;
        let mut bytes = 0u64;
        let mut written = 0u64;
        let mut first: Option<Instant> = None;
        let mut msg = input.new_message();
        while !ctx.new_state_pending() {
            let mut parts = Parts::new();
            let result = if self.multipart {
                input.receive_parts(&mut parts)
            } else {
                input.receive(&mut msg)
            };
            match result {
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    received += 1;
                    bytes += n as u64;
                    if let Some(f) = file.as_mut() {
                        if self.multipart {
                            for p in parts.iter() {
                                f.write_all(p.data())?;
                                written += p.size() as u64;
                            }
                        } else {
                            f.write_all(msg.data())?;
                            written += msg.size() as u64;
                        }
                        if self.max_file_size > 0 && written >= self.max_file_size {
                            tracing::info!("Written {} bytes, stopping...", written);
                            break;
                        }
                    }
                    if self.max_iterations > 0 && received >= self.max_iterations {
                        tracing::info!("Configured maximum number of iterations reached.");
                        break;
                    }
                }
                Err(e) => match on_transfer_error(e)? {
                    Flow::Retry => continue,
                    Flow::Stop => break,
                },
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
                self.out_filename,
                written as f64 / 1e6 / secs
            );
        }
        tracing::info!("Leaving RUNNING state.");
        Ok(())
    }
}
