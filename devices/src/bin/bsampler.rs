//! `fairmq-bsampler`: the built-in sampler device.

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(fairmq_devices::sampler::add_options, |config| {
        Ok(Box::new(fairmq_devices::sampler::Sampler::new(config)?))
    })
}
