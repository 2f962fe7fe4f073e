//! `fairmq-ex-copypush-sampler`: see [`fairmq_example_copypush::sampler`].

use fairmq_example_copypush::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
