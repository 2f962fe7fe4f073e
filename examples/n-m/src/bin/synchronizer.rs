//! `fairmq-ex-n-m-synchronizer`: see [`fairmq_example_n_m::synchronizer`].

use fairmq_example_n_m::synchronizer::Synchronizer;

fn main() -> std::process::ExitCode {
    fairmq::run(|_: fairmq::NoOptions, _| Ok(Synchronizer::new()))
}
