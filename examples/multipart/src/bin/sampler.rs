//! `fairmq-ex-multipart-sampler`: see [`fairmq_example_multipart::sampler`].

use fairmq_example_multipart::sampler::Sampler;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sampler::new(o)))
}
