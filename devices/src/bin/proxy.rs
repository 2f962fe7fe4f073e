//! `fairmq-proxy`: the built-in proxy device.

use std::process::ExitCode;

fn main() -> ExitCode {
    fairmq::run_device(fairmq_devices::proxy::add_options, |config| {
        Ok(Box::new(fairmq_devices::proxy::Proxy::new(config)?))
    })
}
