//! `fairmq-ex-multiple-channels-broadcaster`: see
//! [`fairmq_example_multiple_channels::broadcaster`].

use fairmq_example_multiple_channels::broadcaster::Broadcaster;

fn main() -> std::process::ExitCode {
    fairmq::run(|_: fairmq::NoOptions, _| Ok(Broadcaster))
}
