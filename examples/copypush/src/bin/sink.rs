//! `fairmq-ex-copypush-sink`: see [`fairmq_example_copypush::sink`].

use fairmq_example_copypush::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Sink::new(o, h)))
}
