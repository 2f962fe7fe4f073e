//! `fairmq-ex-multiple-transports-sampler2`: see [`fairmq_example_multiple_transports::sampler2`].

use fairmq_example_multiple_transports::{sampler2::Sampler2, MaxIterations};

fn main() -> std::process::ExitCode {
    fairmq::run(|o: MaxIterations, _| Ok(Sampler2::new(o)))
}
