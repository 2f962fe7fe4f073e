//! `fairmq-bsampler`: the built-in benchmark sampler device.

use fairmq_devices::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Sampler::new(o))
}
