//! `fairmq-ex-multiple-transports-sampler1`: see [`fairmq_example_multiple_transports::sampler1`].

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(
        fairmq_example_multiple_transports::add_max_iterations,
        |config| {
            Ok(Box::new(
                fairmq_example_multiple_transports::sampler1::Sampler1::new(config)?,
            ))
        },
    )
}
