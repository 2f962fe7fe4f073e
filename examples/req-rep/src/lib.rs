//! FairMQ's `req-rep` example, ported: a client sends a request (`--text`) on `data` and waits
//! for the server's reply, `Thank you for the "<text>"!`; both ways over one REQ-REP socket pair.
//!
//! ```text
//!  client ◀── data ──▶ server
//!  (req, connect)      (rep, bind)
//! ```
//!
//! The binaries, options and channel name are FairMQ's (`fairmq-ex-req-rep-client --text
//! --max-iterations`, `fairmq-ex-req-rep-server --max-iterations`), so FairMQ's start script
//! runs them unchanged.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod server;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;
