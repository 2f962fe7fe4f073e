//! `fairmq-ex-multiple-transports-sampler1`: see [`fairmq_example_multiple_transports::sampler1`].

use fairmq_example_multiple_transports::{sampler1::Sampler1, MaxIterations};

fn main() -> std::process::ExitCode {
    fairmq::run(|o: MaxIterations, _| Ok(Sampler1::new(o)))
}
