//! `fairmq-sink`: the built-in sink device.

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(fairmq_devices::sink::add_options, |config| {
        Ok(Box::new(fairmq_devices::sink::Sink::new(config)?))
    })
}
