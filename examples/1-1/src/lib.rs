//! FairMQ's `1-1` example, ported (work in progress).

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;
