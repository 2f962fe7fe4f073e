//! `fairmq-ex-multiple-channels-sink`: see [`fairmq_example_multiple_channels::sink`].

use fairmq_example_multiple_channels::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Sink::new(o, h)))
}
