//! `fairmq-sink`: the built-in sink device.

use fairmq_devices::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sink::new(o)))
}
