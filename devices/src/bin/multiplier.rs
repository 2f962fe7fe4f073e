//! `fairmq-multiplier`: the built-in multiplier device.

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(fairmq_devices::multiplier::add_options, |config| {
        Ok(Box::new(fairmq_devices::multiplier::Multiplier::new(
            config,
        )?))
    })
}
