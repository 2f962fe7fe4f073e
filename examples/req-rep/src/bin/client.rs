//! `fairmq-ex-req-rep-client`: see [`fairmq_example_req_rep::client`].

use fairmq_example_req_rep::client::Client;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, _| Ok(Client::new(o)))
}
