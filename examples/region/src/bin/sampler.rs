//! `fairmq-ex-region-sampler`: see [`fairmq_example_region::sampler`].

use fairmq_example_region::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
