//! `fairmq-ex-multipart-sink`: see [`fairmq_example_multipart::sink`].

use fairmq_example_multipart::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|_: fairmq::NoOptions, h| Ok(Sink::new(h)))
}
