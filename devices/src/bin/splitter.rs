//! `fairmq-splitter`: the built-in splitter device.

use fairmq_devices::splitter::Splitter;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Splitter::new(o, h)))
}
