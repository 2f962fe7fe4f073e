//! `fairmq-ex-req-rep-server`: see [`fairmq_example_req_rep::server`].

use fairmq_example_req_rep::server::Server;

fn main() -> std::process::ExitCode {
    fairmq::run(|o, h| Ok(Server::new(o, h)))
}
