//! `fairmq-topology`: run a whole topology of FairMQ devices across nodes, as DDS/ODC do for
//! FairMQ, on Slurm or on this machine.
//!
//! * [`file`]: the topology file (devices, instances, groups of nodes, connections with
//!   FairMQ's JSON channel properties) and its validation;
//! * [`plan`]: placing it onto hosts: instances per node, transports (shmem over ipc on a node,
//!   zeromq over tcp between nodes), bind/connect sides, command lines, channel configurations;
//! * [`controller`]: the server the devices' `odc` plugins connect to, and the collective state
//!   changes ("all devices: BIND, wait until all are BOUND");
//! * [`run`]: one run: launch, configure, run, stop, terminate, cleanup, summary;
//! * [`launch`]: the local launcher and the Slurm launcher (one `srun --multi-prog` step);
//! * [`cleanup`]: per-host removal of the run's shared memory and ipc files;
//! * [`progress`]: the progress view and the summary.

#![warn(missing_docs)]

pub mod cleanup;
pub mod controller;
pub mod file;
pub mod launch;
pub mod plan;
pub mod progress;
pub mod run;

pub use file::{Topology, TopologyError};
pub use plan::{Host, Placement, Plan, PlanError};
