//! `fairmq-ex-1-1-sink`: see [`fairmq_example_1_1::sink`].

use fairmq_example_1_1::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Sink::new(o, h)))
}
