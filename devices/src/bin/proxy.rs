//! `fairmq-proxy`: the built-in proxy device.

use fairmq_devices::proxy::Proxy;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Proxy::new(o)))
}
