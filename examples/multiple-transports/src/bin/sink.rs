//! `fairmq-ex-multiple-transports-sink`: see [`fairmq_example_multiple_transports::sink`].

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(
        fairmq_example_multiple_transports::add_max_iterations,
        |config| {
            Ok(Box::new(
                fairmq_example_multiple_transports::sink::Sink::new(config)?,
            ))
        },
    )
}
