//! `fairmq-ex-n-m-sender`: see [`fairmq_example_n_m::sender`].

use fairmq_example_n_m::sender::Sender;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Sender::new(o)))
}
