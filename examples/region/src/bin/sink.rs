//! `fairmq-ex-region-sink`: see [`fairmq_example_region::sink`].

use fairmq_example_region::sink::Sink;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sink::new(o)))
}
