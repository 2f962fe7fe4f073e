//! The topology file: which devices run (executable, options, how many instances), on which
//! group of nodes, and which of their channels are connected.
//!
//! ```json
//! {
//!   "name": "sampler-processors-sink",
//!   "groups": [ { "name": "input", "nodes": 1 }, { "name": "processing", "nodes": 2 } ],
//!   "devices": [
//!     { "name": "sampler", "executable": "fairmq-bsampler", "group": "input", "finite": true,
//!       "options": ["--msg-size", "1000", "--max-iterations", "100000"],
//!       "channels": [ { "name": "data", "type": "push" } ] },
//!     { "name": "processor", "executable": "fairmq-proxy", "group": "processing", "instances": 4,
//!       "channels": [ { "name": "data-in", "type": "pull" }, { "name": "data-out", "type": "push" } ] },
//!     { "name": "sink", "executable": "fairmq-sink", "group": "input", "finite": true,
//!       "options": ["--max-iterations", "100000"],
//!       "channels": [ { "name": "data", "type": "pull" } ] }
//!   ],
//!   "connections": [
//!     { "from": "sampler.data", "to": "processor.data-in" },
//!     { "from": "processor.data-out", "to": "sink.data" }
//!   ]
//! }
//! ```
//!
//! * `groups`: in order, each takes the next `nodes` nodes (with Slurm: of the allocation; the
//!   local launcher puts every group on this machine).
//! * `devices[]`: `name` (instances are `<name>-<i>`), `executable` (a name looked up next to
//!   `fairmq-topology`, in `--bin-dir` and in `PATH`, or a path), `group`, `instances`
//!   (default 1, spread in blocks over the group's nodes: 4 on 2 nodes = 2 + 2), `options`
//!   (passed to every instance), `finite` (the device leaves RUNNING by itself, e.g. with
//!   `--max-iterations`: the run ends when every finite device has, and the controller then
//!   stops the others), and `channels`: FairMQ's JSON channel objects (`name`, `type`,
//!   `sndBufSize`, `rcvBufSize`, `rateLogging`, `linger`, … as in `--mq-config`), without
//!   `address` (the controller assigns it); `method` and `transport` are optional.
//! * `connections[]`: `from` and `to` name a channel as `<device>.<channel>`; optional
//!   `transport` (`shmem` or `zeromq`; default: shmem over ipc if every pair of peers is on
//!   the same node, else zeromq over tcp) and `scope` (`all`, the default: every connecting
//!   instance connects to every binding one; `node`: only to those on its own node).
//!   The side whose channel says `"method": "bind"` binds; without one, the side with fewer
//!   instances binds (`from` on a tie).
//!
//! Every channel belongs to exactly one connection. Validation errors name the device and
//! channel (or the connection, by number and ends) and say what to change.

mod validate;

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Errors of reading and validating a topology file.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file cannot be read.
    #[error("cannot read topology file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON or not shaped like a topology.
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde found.
        message: String,
    },
    /// The topology is well-formed JSON but wrong; the message names the device, channel or
    /// connection and says what to do.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// zeromq over tcp (or ipc if the file says so).
    Zeromq,
    /// shmem over ipc (peers on the same node only).
    Shmem,
}

impl Transport {
    /// The FairMQ transport name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Zeromq => "zeromq",
            Transport::Shmem => "shmem",
        }
    }

    fn parse(s: &str) -> Option<Transport> {
        match s {
            "zeromq" => Some(Transport::Zeromq),
            "shmem" => Some(Transport::Shmem),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which connecting instances connect to which binding ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every connecting instance connects to every binding instance.
    #[default]
    All,
    /// A connecting instance connects only to the binding instances on its own node.
    Node,
}

/// Bind or connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Bind (the controller assigns the address; TCP ports are auto-bound).
    Bind,
    /// Connect to the binding peers' actual addresses.
    Connect,
}

impl Method {
    /// FairMQ's name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Bind => "bind",
            Method::Connect => "connect",
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// `from`.
    From,
    /// `to`.
    To,
}

// ----- the file as written -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    groups: Vec<GroupSpec>,
    devices: Vec<DeviceSpec>,
    #[serde(default)]
    connections: Vec<ConnectionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    nodes: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSpec {
    name: String,
    executable: String,
    group: String,
    #[serde(default = "one")]
    instances: usize,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    finite: bool,
    #[serde(default)]
    channels: Vec<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionSpec {
    from: String,
    to: String,
    #[serde(default)]
    transport: Option<Transport>,
    #[serde(default)]
    scope: Scope,
}

// ----- the validated topology -----

/// A group of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Number of nodes.
    pub nodes: usize,
}

/// A channel of a device, as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceChannel {
    /// Channel name.
    pub name: String,
    /// Socket type (`push`, `pull`, …).
    pub socket_type: String,
    /// `method`, if the file sets it.
    pub method: Option<Method>,
    /// `transport`, if the file sets it.
    pub transport: Option<Transport>,
    /// The other FairMQ channel properties, as written (`sndBufSize`, `rateLogging`, …).
    pub properties: Map<String, Value>,
}

/// A device (all its instances).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Name.
    pub name: String,
    /// Executable, as written.
    pub executable: String,
    /// Index into [`Topology::groups`].
    pub group: usize,
    /// Number of instances.
    pub instances: usize,
    /// Options for every instance.
    pub options: Vec<String>,
    /// Leaves RUNNING by itself.
    pub finite: bool,
    /// Channels.
    pub channels: Vec<DeviceChannel>,
}

/// One end of a connection: a device's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct End {
    /// Index into [`Topology::devices`].
    pub device: usize,
    /// Index into the device's channels.
    pub channel: usize,
}

/// A connection between two device channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// `from`.
    pub from: End,
    /// `to`.
    pub to: End,
    /// Forced transport (from the connection or the channels).
    pub transport: Option<Transport>,
    /// Scope.
    pub scope: Scope,
    /// Which side binds.
    pub binder: Side,
}

impl Connection {
    /// The end on `side`.
    pub fn end(&self, side: Side) -> End {
        match side {
            Side::From => self.from,
            Side::To => self.to,
        }
    }

    /// The binding end.
    pub fn binding(&self) -> End {
        self.end(self.binder)
    }

    /// The connecting end.
    pub fn connecting(&self) -> End {
        self.end(match self.binder {
            Side::From => Side::To,
            Side::To => Side::From,
        })
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Name.
    pub name: String,
    /// Groups of nodes, in order.
    pub groups: Vec<Group>,
    /// Devices.
    pub devices: Vec<Device>,
    /// Connections.
    pub connections: Vec<Connection>,
}

/// Options that the controller sets for every device; the file may not set them.
pub const RESERVED_OPTIONS: [&str; 12] = [
    "--id",
    "--session",
    "--transport",
    "--mq-config",
    "--channel-config",
    "--config-key",
    "--control",
    "-P",
    "--plugin",
    "--odc-controller",
    "--odc-connect-timeout",
    "--odc-stats-interval",
];

impl Topology {
    /// Reads and validates a topology file.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Topology::from_str(&text, &path.display().to_string())
    }

    /// Parses and validates topology JSON; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        let spec: FileSpec = serde_json::from_str(text).map_err(|e| {
            let full = e.to_string();
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_owned(),
                None => full,
            };
            TopologyError::Syntax {
                origin: origin.to_owned(),
                line: e.line(),
                column: e.column(),
                message,
            }
        })?;
        validate::validate(spec, origin)
    }

    /// The device named `name`.
    pub fn device(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }

    /// `<device>.<channel>` of an end.
    pub fn end_name(&self, end: End) -> String {
        let d = &self.devices[end.device];
        format!("{}.{}", d.name, d.channels[end.channel].name)
    }

    /// `#<i> (<from> -> <to>)`, how errors and the plan name a connection.
    pub fn connection_name(&self, index: usize) -> String {
        let c = &self.connections[index];
        format!(
            "#{index} ({} -> {})",
            self.end_name(c.from),
            self.end_name(c.to)
        )
    }

    /// Total number of nodes.
    pub fn node_count(&self) -> usize {
        self.groups.iter().map(|g| g.nodes).sum()
    }
}
