//! `fairmq-ex-multiple-transports-sink`: see [`fairmq_example_multiple_transports::sink`].

use fairmq_example_multiple_transports::{sink::Sink, MaxIterations};

fn main() -> std::process::ExitCode {
    fairmq::run(|o: MaxIterations, h| Ok(Sink::new(o, h)))
}
