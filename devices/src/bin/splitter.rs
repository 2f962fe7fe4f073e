//! `fairmq-splitter`: the built-in splitter device.

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(fairmq_devices::proxy::add_options, |config| {
        Ok(Box::new(fairmq_devices::splitter::Splitter::new(config)?))
    })
}
