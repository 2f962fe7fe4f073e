//! What fairmq-rs's test suites share, written once (a dev-dependency only, never published):
//!
//! * [`Proc`]: a spawned binary (a device, a tool, a peer) with stdout and stderr in one temp
//!   file, killed on drop, waited for with a timeout, signalled with SIGINT / SIGKILL; plus
//!   [`wait_child`], [`kill_child`] and [`Children`] for plain [`std::process::Child`]ren.
//! * [`unique`] names, a [`Session`] of its own per test with the `/dev/shm` leak check for its
//!   shmId (and cleanup after a failed test), [`Ipc`] addresses.
//! * [`wait_until`]: poll a condition with a generous timeout instead of sleeping a fixed time.
//! * [`Rng`]: splitmix64, for randomised tests that print their seed.
//! * [`within`] and [`prop_cases`]: the hang guard and case budget of the property tests.
//! * [`example::Script`]: a run of a ported FairMQ example as FairMQ's test script for it
//!   runs it (its common options, a session, ipc addresses), on each transport
//!   ([`over_each_transport!`]), and [`example::lines_with`] to read its output.
//! * [`pyzmq::python`]: a Python with the pinned pyzmq, in a virtual environment under the
//!   target directory that the first test to need it creates.

mod deadline;
pub mod example;
mod process;
pub mod pyzmq;
mod rng;
mod session;
mod wait;

pub use deadline::{prop_cases, within, PARSE_DEADLINE};
pub use process::{kill_child, process_gone, signal, wait_child, Children, Proc, Signal};
pub use rng::Rng;
pub use session::{monitor_processes, unique, Ipc, Session};
pub use wait::{wait_until, TIMEOUT};
