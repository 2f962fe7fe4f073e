//! `fairmq-merger`: the built-in merger device.

use fairmq_devices::merger::Merger;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Merger::new(o)))
}
