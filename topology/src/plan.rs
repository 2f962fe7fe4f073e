//! Planning: a [`Topology`] placed onto hosts, with one [`Instance`] per device instance, the
//! transport and the binding and connecting sides of every connection, and every instance's
//! command line and channel configuration.
//!
//! Placement: the groups take node slots in order (group 0 the first `nodes` slots, …); a
//! device's instances are spread in blocks over its group's slots (4 instances on 2 slots: 2 + 2).
//! A launcher maps slots to hosts: the local launcher puts every slot on this machine, the
//! Slurm launcher slot `i` on the `i`-th node of the allocation.
//!
//! Transports: a connection uses the transport its file entry (or one of its channels) names;
//! otherwise shmem if every binding/connecting pair is on one host, else zeromq. Addresses: a
//! shmem (or same-host) binding channel binds
//! `ipc:///tmp/fmqt-<session>-<host>-<instance>.<channel>`;
//! a zeromq channel between hosts binds `tcp://<host address>:1`, which the device turns into
//! an auto-bind to a free port in `portRangeMin..portRangeMax` (22000..23000). The controller
//! reads the actual addresses after BIND and gives them to the connecting side before CONNECT.
//!
//! Shared memory: every instance uses the session `<session>-<host>`, one per host, so that
//! hosts sharing one `/dev/shm` (as the test cluster's "nodes" do) still keep their sessions
//! apart, and a host's cleanup touches only its own session.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::file::{Method, Scope, Topology, Transport};

/// Errors of planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A device's executable was not found.
    #[error("device '{device}': executable '{executable}' not found (looked in {searched}); build it (cargo build -p fairmq-devices) or pass --bin-dir")]
    ExecutableNotFound {
        /// The device.
        device: String,
        /// As written.
        executable: String,
        /// Where we looked.
        searched: String,
    },
    /// The topology does not fit the hosts, or a connection cannot be planned.
    #[error("{0}")]
    Invalid(String),
}

/// A machine the devices run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name (`local`, or the Slurm node name).
    pub name: String,
    /// IPv4 address other hosts reach it on (`None` until known, e.g. in a dry run outside
    /// an allocation).
    pub address: Option<String>,
}

/// One instance of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `<device>-<i>`.
    pub id: String,
    /// Index into the topology's devices.
    pub device: usize,
    /// Instance number within the device.
    pub number: usize,
    /// Node slot.
    pub slot: usize,
    /// Index into [`Plan::hosts`].
    pub host: usize,
    /// The resolved executable.
    pub executable: PathBuf,
    /// `--transport`: shmem if any channel uses shmem, else zeromq.
    pub transport: Transport,
    /// Channels, in the device's order.
    pub channels: Vec<InstanceChannel>,
}

/// A channel of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceChannel {
    /// Channel name.
    pub name: String,
    /// Index into [`Plan::connections`].
    pub connection: usize,
    /// Bind or connect.
    pub method: Method,
    /// Transport.
    pub transport: Transport,
    /// Binding channels: the address to bind (`tcp://<host>:1` auto-binds).
    pub bind_address: Option<String>,
    /// Connecting channels: the instances whose binding channel this one connects to.
    pub peers: Vec<usize>,
}

/// A planned connection.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedConnection {
    /// Transport.
    pub transport: Transport,
    /// Why this transport.
    pub reason: String,
    /// Instances on the binding side.
    pub binders: Vec<usize>,
    /// Instances on the connecting side.
    pub connectors: Vec<usize>,
}

/// A topology placed onto hosts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The topology.
    pub topology: Topology,
    /// The run's session name (each host's shared memory session is `<session>-<host>`).
    pub session: String,
    /// Group of each node slot.
    pub slots: Vec<usize>,
    /// Host of each node slot.
    pub slot_hosts: Vec<usize>,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Instances, device by device.
    pub instances: Vec<Instance>,
    /// Connections, as in the topology.
    pub connections: Vec<PlannedConnection>,
}

/// Where a launcher puts the node slots.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Every slot on one host.
    OneHost(Host),
    /// Slot `i` on host `i` (at least as many hosts as slots).
    PerSlot(Vec<Host>),
}

/// Looks up an executable: a path (with `/`) as is, else in `dirs`, then in `PATH`.
pub fn resolve_executable(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, Vec<String>> {
    if name.contains('/') {
        let p = Path::new(name);
        return if p.is_file() {
            Ok(std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
        } else {
            Err(vec![p.display().to_string()])
        };
    }
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut searched = Vec::new();
    for dir in dirs.iter().chain(path_dirs.iter()) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(dir.display().to_string());
    }
    Err(searched)
}

fn block_slot(instance: usize, instances: usize, slots: usize) -> usize {
    instance * slots / instances
}

/// The shared-memory session of the instances on `host`.
pub fn host_session(session: &str, host: &str) -> String {
    format!("{session}-{host}")
}

/// The prefix of the ipc socket paths of the instances whose shared-memory session is
/// `host_session` (one host of a run): `/tmp/fmqt-<host_session>-`.
pub fn ipc_prefix(host_session: &str) -> String {
    format!("/tmp/fmqt-{host_session}-")
}

impl Plan {
    /// Plans `topology` for `placement`; executables are looked up in `bin_dirs`, then `PATH`.
    pub fn new(
        topology: Topology,
        session: &str,
        placement: Placement,
        bin_dirs: &[PathBuf],
    ) -> Result<Plan, PlanError> {
        let mut slots = Vec::new();
        for (gi, g) in topology.groups.iter().enumerate() {
            slots.extend(std::iter::repeat_n(gi, g.nodes));
        }
        let (hosts, slot_hosts) = match placement {
            Placement::OneHost(h) => (vec![h], vec![0; slots.len()]),
            Placement::PerSlot(hosts) => {
                if hosts.len() < slots.len() {
                    return Err(PlanError::Invalid(format!(
                        "the topology needs {} nodes but only {} are available",
                        slots.len(),
                        hosts.len()
                    )));
                }
                let n = slots.len();
                (hosts.into_iter().take(n).collect(), (0..n).collect())
            }
        };
        let mut instances = Vec::new();
        let mut first_instance = Vec::new();
        for (di, d) in topology.devices.iter().enumerate() {
            first_instance.push(instances.len());
            let group_slots: Vec<usize> =
                (0..slots.len()).filter(|s| slots[*s] == d.group).collect();
            let executable = resolve_executable(&d.executable, bin_dirs).map_err(|searched| {
                PlanError::ExecutableNotFound {
                    device: d.name.clone(),
                    executable: d.executable.clone(),
                    searched: if searched.is_empty() {
                        "(nowhere: no directories)".to_owned()
                    } else {
                        searched.join(", ")
                    },
                }
            })?;
            for i in 0..d.instances {
                let slot = group_slots[block_slot(i, d.instances, group_slots.len())];
                instances.push(Instance {
                    id: format!("{}-{i}", d.name),
                    device: di,
                    number: i,
                    slot,
                    host: slot_hosts[slot],
                    executable: executable.clone(),
                    transport: Transport::Zeromq,
                    channels: Vec::new(),
                });
            }
        }
        let of_device = |d: usize| -> std::ops::Range<usize> {
            first_instance[d]..first_instance[d] + topology.devices[d].instances
        };

        let mut connections = Vec::new();
        for (ci, c) in topology.connections.iter().enumerate() {
            let name = topology.connection_name(ci);
            let binding = c.binding();
            let connecting = c.connecting();
            let binders: Vec<usize> = of_device(binding.device).collect();
            let connectors: Vec<usize> = of_device(connecting.device).collect();
            let mut peers_of = Vec::new();
            for &k in &connectors {
                let peers: Vec<usize> = match c.scope {
                    Scope::All => binders.clone(),
                    Scope::Node => binders
                        .iter()
                        .copied()
                        .filter(|b| instances[*b].host == instances[k].host)
                        .collect(),
                };
                if peers.is_empty() {
                    return Err(PlanError::Invalid(format!(
                        "connection {name} has \"scope\": \"node\", but {} on {} has no {} on its node; put the devices on the same nodes or use \"scope\": \"all\"",
                        instances[k].id, hosts[instances[k].host].name, topology.devices[binding.device].name
                    )));
                }
                peers_of.push(peers);
            }
            let cross_host = connectors
                .iter()
                .zip(&peers_of)
                .any(|(k, ps)| ps.iter().any(|b| instances[*b].host != instances[*k].host));
            let (transport, reason) = match c.transport {
                Some(Transport::Shmem) if cross_host => {
                    return Err(PlanError::Invalid(format!(
                        "connection {name} says \"transport\": \"shmem\", but its peers are on different nodes; shared memory does not cross nodes: use zeromq or \"scope\": \"node\""
                    )))
                }
                Some(t) => (t, "set in the topology file".to_owned()),
                None if cross_host => (Transport::Zeromq, "peers on different nodes".to_owned()),
                None => (Transport::Shmem, "all peers on one node".to_owned()),
            };
            for (&k, peers) in connectors.iter().zip(peers_of) {
                instances[k].channels.push(InstanceChannel {
                    name: topology.devices[connecting.device].channels[connecting.channel]
                        .name
                        .clone(),
                    connection: ci,
                    method: Method::Connect,
                    transport,
                    bind_address: None,
                    peers,
                });
            }
            for &b in &binders {
                let chan = topology.devices[binding.device].channels[binding.channel]
                    .name
                    .clone();
                let address = if transport == Transport::Shmem || !cross_host {
                    let hs = host_session(session, &hosts[instances[b].host].name);
                    format!("ipc://{}{}.{chan}", ipc_prefix(&hs), instances[b].id)
                } else {
                    format!(
                        "tcp://{}:1",
                        hosts[instances[b].host]
                            .address
                            .clone()
                            .unwrap_or_else(|| format!(
                                "<address of {}>",
                                hosts[instances[b].host].name
                            ))
                    )
                };
                instances[b].channels.push(InstanceChannel {
                    name: chan,
                    connection: ci,
                    method: Method::Bind,
                    transport,
                    bind_address: Some(address),
                    peers: Vec::new(),
                });
            }
            connections.push(PlannedConnection {
                transport,
                reason,
                binders,
                connectors,
            });
        }
        // Channels in the device's declared order; the default transport.
        for inst in &mut instances {
            let order: Vec<&str> = topology.devices[inst.device]
                .channels
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            inst.channels
                .sort_by_key(|c| order.iter().position(|n| *n == c.name));
            if inst
                .channels
                .iter()
                .any(|c| c.transport == Transport::Shmem)
            {
                inst.transport = Transport::Shmem;
            }
        }
        Ok(Plan {
            topology,
            session: session.to_owned(),
            slots,
            slot_hosts,
            hosts,
            instances,
            connections,
        })
    }

    /// The shared-memory session of instance `i`.
    pub fn session_of(&self, i: usize) -> String {
        host_session(&self.session, &self.hosts[self.instances[i].host].name)
    }

    /// The instance with id `id`.
    pub fn instance(&self, id: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.id == id)
    }

    /// Whether instance `i` leaves RUNNING by itself.
    pub fn is_finite(&self, i: usize) -> bool {
        self.topology.devices[self.instances[i].device].finite
    }

    /// The command line of instance `i` (program first) for a controller at `controller`.
    pub fn command(&self, i: usize, controller: &str) -> Vec<String> {
        let inst = &self.instances[i];
        let device = &self.topology.devices[inst.device];
        let mut args = vec![
            inst.executable.display().to_string(),
            "--id".to_owned(),
            inst.id.clone(),
            "--session".to_owned(),
            self.session_of(i),
            "--transport".to_owned(),
            inst.transport.name().to_owned(),
            "-P".to_owned(),
            "p:odc".to_owned(),
            "--odc-controller".to_owned(),
            controller.to_owned(),
        ];
        if !device
            .options
            .iter()
            .any(|o| o == "--color" || o.starts_with("--color="))
        {
            args.extend(["--color".to_owned(), "false".to_owned()]);
        }
        args.extend(device.options.iter().cloned());
        args
    }

    /// FairMQ's `--mq-config` JSON with the channels of instance `i`: binding channels with
    /// their bind address, connecting ones without (the controller sets it before CONNECT).
    pub fn channel_config(&self, i: usize) -> Value {
        let inst = &self.instances[i];
        let device = &self.topology.devices[inst.device];
        let channels: Vec<Value> = inst
            .channels
            .iter()
            .map(|c| {
                let declared = device
                    .channels
                    .iter()
                    .find(|d| d.name == c.name)
                    .expect("planned channels are declared");
                let mut o = Map::new();
                o.insert("name".into(), c.name.clone().into());
                o.insert("type".into(), declared.socket_type.clone().into());
                o.insert("method".into(), c.method.name().into());
                o.insert("transport".into(), c.transport.name().into());
                if let Some(a) = &c.bind_address {
                    o.insert("address".into(), a.clone().into());
                }
                for (k, v) in &declared.properties {
                    o.insert(k.clone(), v.clone());
                }
                Value::Object(o)
            })
            .collect();
        serde_json::json!({"fairMQOptions": {"devices": [{"id": inst.id, "channels": channels}]}})
    }

    /// The instances on host `h`.
    pub fn instances_on(&self, h: usize) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|i| self.instances[*i].host == h)
            .collect()
    }

    /// The plan in words (`--dry-run`). `controller` is the control address the devices get.
    pub fn describe(&self, controller: &str) -> String {
        let t = &self.topology;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "topology '{}': {} node slot(s) on {} host(s), {} device instance(s), {} connection(s); session {}",
            t.name,
            self.slots.len(),
            self.hosts.len(),
            self.instances.len(),
            self.connections.len(),
            self.session
        );
        let _ = writeln!(s, "\nnodes:");
        for (slot, g) in self.slots.iter().enumerate() {
            let h = &self.hosts[self.slot_hosts[slot]];
            let ids: Vec<&str> = self
                .instances
                .iter()
                .filter(|i| i.slot == slot)
                .map(|i| i.id.as_str())
                .collect();
            let _ = writeln!(
                s,
                "  slot {slot} (group {}) on {} ({}): {}",
                t.groups[*g].name,
                h.name,
                h.address
                    .as_deref()
                    .unwrap_or("address from Slurm at launch"),
                ids.join(", ")
            );
        }
        let _ = writeln!(s, "\nconnections:");
        for (ci, c) in self.connections.iter().enumerate() {
            let tc = &t.connections[ci];
            let carrier = if c.transport == Transport::Shmem || c.reason == "all peers on one node"
            {
                "ipc"
            } else {
                "tcp"
            };
            let _ = writeln!(
                s,
                "  {}: {} over {carrier} ({}); {} binds ({} instance(s)), {} connects ({} instance(s)){}",
                t.connection_name(ci),
                c.transport,
                c.reason,
                t.devices[tc.binding().device].name,
                c.binders.len(),
                t.devices[tc.connecting().device].name,
                c.connectors.len(),
                if tc.scope == Scope::Node {
                    ", each to the binders on its own node"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(s, "\ndevices:");
        for (i, inst) in self.instances.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {} on {}{} (shm session {})",
                inst.id,
                self.hosts[inst.host].name,
                if self.is_finite(i) { ", finite" } else { "" },
                self.session_of(i)
            );
            for c in &inst.channels {
                let target = match c.method {
                    Method::Bind => c.bind_address.clone().unwrap_or_default(),
                    Method::Connect => format!(
                        "-> {}",
                        c.peers
                            .iter()
                            .map(|p| self.instances[*p].id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                let ty = &t.devices[inst.device]
                    .channels
                    .iter()
                    .find(|d| d.name == c.name)
                    .map(|d| d.socket_type.clone())
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "    {:<12} {:<5} {:<8} {:<7} {}",
                    format!("{}[0]", c.name),
                    ty,
                    c.method.name(),
                    c.transport.name(),
                    target
                );
            }
            let _ = writeln!(s, "    command: {}", self.command(i, controller).join(" "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Side;

    const EXAMPLE: &str = include_str!("../topologies/sampler-processors-sink.json");

    fn bin_dir() -> Vec<PathBuf> {
        // `sh` stands in for every executable: the plan only needs them to exist.
        vec![]
    }

    fn topology() -> Topology {
        let text = EXAMPLE
            .replace("\"fairmq-bsampler\"", "\"/bin/sh\"")
            .replace("\"fairmq-proxy\"", "\"/bin/sh\"")
            .replace("\"fairmq-sink\"", "\"/bin/sh\"");
        Topology::from_str(&text, "t.json").unwrap()
    }

    fn hosts(n: usize) -> Vec<Host> {
        (1..=n)
            .map(|i| Host {
                name: format!("n{i}"),
                address: Some(format!("127.0.0.{}", 10 + i)),
            })
            .collect()
    }

    #[test]
    fn three_nodes_use_tcp_between_them() {
        let p = Plan::new(topology(), "s", Placement::PerSlot(hosts(3)), &bin_dir()).unwrap();
        let on: Vec<(&str, &str)> = p
            .instances
            .iter()
            .map(|i| (i.id.as_str(), p.hosts[i.host].name.as_str()))
            .collect();
        assert_eq!(
            on,
            [
                ("sampler-0", "n1"),
                ("processor-0", "n2"),
                ("processor-1", "n2"),
                ("processor-2", "n3"),
                ("processor-3", "n3"),
                ("sink-0", "n1")
            ]
        );
        assert!(p
            .connections
            .iter()
            .all(|c| c.transport == Transport::Zeromq));
        let sampler = &p.instances[0];
        assert_eq!(
            sampler.channels[0].bind_address.as_deref(),
            Some("tcp://127.0.0.11:1")
        );
        assert_eq!(sampler.transport, Transport::Zeromq);
        let proc3 = &p.instances[4];
        assert_eq!(proc3.channels[0].name, "data-in");
        assert_eq!(proc3.channels[0].peers, vec![0]);
        assert_eq!(proc3.channels[1].peers, vec![5]);
        assert_eq!(p.session_of(4), "s-n3");
        let cmd = p.command(4, "127.0.0.1:5000").join(" ");
        assert!(
            cmd.starts_with("/bin/sh --id processor-3 --session s-n3 --transport zeromq -P p:odc --odc-controller 127.0.0.1:5000"),
            "{cmd}"
        );
        let cfg = p.channel_config(0);
        assert_eq!(
            cfg["fairMQOptions"]["devices"][0]["channels"][0]["address"],
            "tcp://127.0.0.11:1"
        );
        let cfg = p.channel_config(1);
        let ch = &cfg["fairMQOptions"]["devices"][0]["channels"][0];
        assert_eq!(ch["method"], "connect");
        assert!(ch.get("address").is_none());
        // FairMQ's parser accepts what we generate.
        let specs =
            fairmq::channel_config::json::parse_json_value(&cfg, "processor-0", "plan").unwrap();
        assert_eq!(specs.len(), 2);
    }

    #[test]
    fn one_host_uses_shmem_everywhere() {
        let local = Host {
            name: "local".into(),
            address: Some("127.0.0.1".into()),
        };
        let p = Plan::new(topology(), "s", Placement::OneHost(local), &bin_dir()).unwrap();
        assert!(p
            .connections
            .iter()
            .all(|c| c.transport == Transport::Shmem));
        assert_eq!(
            p.instances[0].channels[0].bind_address.as_deref(),
            Some("ipc:///tmp/fmqt-s-local-sampler-0.data")
        );
        assert!(p.instances.iter().all(|i| i.transport == Transport::Shmem));
        let d = p.describe("127.0.0.1:1");
        assert!(d.contains("shmem over ipc (all peers on one node)"), "{d}");
    }

    #[test]
    fn scope_node_and_forced_transports() {
        let mut t = topology();
        t.connections[0].scope = Scope::Node;
        let e = Plan::new(t.clone(), "s", Placement::PerSlot(hosts(3)), &bin_dir()).unwrap_err();
        assert!(
            e.to_string()
                .contains("processor-0 on n2 has no sampler on its node"),
            "{e}"
        );
        let mut t = topology();
        t.connections[1].transport = Some(Transport::Shmem);
        let e = Plan::new(t, "s", Placement::PerSlot(hosts(3)), &bin_dir()).unwrap_err();
        assert!(
            e.to_string().contains("shared memory does not cross nodes"),
            "{e}"
        );
        let e = Plan::new(topology(), "s", Placement::PerSlot(hosts(2)), &bin_dir()).unwrap_err();
        assert!(e.to_string().contains("needs 3 nodes but only 2"), "{e}");
        assert_eq!(topology().connections[1].binder, Side::To);
    }

    #[test]
    fn missing_executable_is_named() {
        let text = EXAMPLE
            .replace("\"fairmq-bsampler\"", "\"/bin/sh\"")
            .replace("\"fairmq-sink\"", "\"/bin/sh\"")
            .replace("\"fairmq-proxy\"", "\"no-such-device-binary\"");
        let t = Topology::from_str(&text, "t.json").unwrap();
        let e = Plan::new(
            t,
            "s",
            Placement::PerSlot(hosts(3)),
            &[PathBuf::from("/nonexistent")],
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("device 'processor': executable 'no-such-device-binary' not found (looked in /nonexistent"), "{m}");
    }
}
