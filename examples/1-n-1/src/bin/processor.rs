//! `fairmq-ex-1-n-1-processor`: see [`fairmq_example_1_n_1::processor`].

use fairmq_example_1_n_1::processor::Processor;

fn main() -> std::process::ExitCode {
    fairmq::run(|_: fairmq::NoOptions, h| Ok(Processor::new(h)))
}
