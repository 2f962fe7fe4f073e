//! `fairmq-multiplier`: the built-in multiplier device.

use fairmq_devices::multiplier::Multiplier;

fn main() -> std::process::ExitCode {
    fairmq::run(Multiplier::new)
}
