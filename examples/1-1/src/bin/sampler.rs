//! `fairmq-ex-1-1-sampler`: see [`fairmq_example_1_1::sampler`].

use fairmq_example_1_1::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
