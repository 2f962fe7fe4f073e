//! `fairmq-ex-multiple-channels-sampler`: see [`fairmq_example_multiple_channels::sampler`].

use fairmq_example_multiple_channels::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
