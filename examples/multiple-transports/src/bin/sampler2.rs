//! `fairmq-ex-multiple-transports-sampler2`: see [`fairmq_example_multiple_transports::sampler2`].

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(
        fairmq_example_multiple_transports::add_max_iterations,
        |config| {
            Ok(Box::new(
                fairmq_example_multiple_transports::sampler2::Sampler2::new(config)?,
            ))
        },
    )
}
