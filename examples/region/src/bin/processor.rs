//! `fairmq-ex-region-processor`: see [`fairmq_example_region::processor`].

use fairmq_example_region::processor::Processor;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Processor::new(o)))
}
