//! `fairmq-ex-1-n-1-sampler`: see [`fairmq_example_1_n_1::sampler`].

use fairmq_example_1_n_1::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
