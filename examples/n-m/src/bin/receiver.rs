//! `fairmq-ex-n-m-receiver`: see [`fairmq_example_n_m::receiver`].

use fairmq_example_n_m::receiver::Receiver;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Receiver::new(o, h)))
}
