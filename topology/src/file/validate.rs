//! Validation of a topology file: names, groups, devices, FairMQ channel objects (checked by
//! FairMQ's own JSON parser), connections (socket types that talk to each other, one binding
//! side, one transport), and that every channel is connected. Every error names the device and
//! channel, or the connection by number and ends, and says what to change.

use std::collections::{BTreeMap, BTreeSet};

use fairmq::channel_config::json::parse_json_value;
use fairmq::channel_config::ChannelProperty;
use serde_json::{Map, Value};

use super::{
    Connection, Device, DeviceChannel, End, FileSpec, Group, Method, Side, Topology, TopologyError,
    Transport, RESERVED_OPTIONS,
};

/// The socket type that talks to `t` (the first one, for the error message).
fn peer_types(t: &str) -> &'static [&'static str] {
    match t {
        "push" => &["pull"],
        "pull" => &["push"],
        "pub" => &["sub", "xsub"],
        "sub" => &["pub", "xpub"],
        "xpub" => &["sub", "xsub"],
        "xsub" => &["pub", "xpub"],
        "req" => &["rep", "router"],
        "rep" => &["req", "dealer"],
        "dealer" => &["router", "rep", "dealer"],
        "router" => &["dealer", "req", "router"],
        "pair" => &["pair"],
        _ => &[],
    }
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        Some("may contain only letters, digits, '-' and '_'")
    } else {
        None
    }
}

pub(super) fn validate(spec: FileSpec, origin: &str) -> Result<Topology, TopologyError> {
    let invalid = |message: String| TopologyError::Invalid {
        origin: origin.to_owned(),
        message,
    };
    if let Some(p) = name_problem(&spec.name) {
        return Err(invalid(format!("the topology's \"name\" {p}")));
    }
    if spec.groups.is_empty() {
        return Err(invalid(
            "\"groups\" is empty; add at least one group of nodes, e.g. {\"name\": \"all\", \"nodes\": 1}"
                .to_owned(),
        ));
    }
    let mut groups: Vec<Group> = Vec::new();
    for g in spec.groups {
        if let Some(p) = name_problem(&g.name) {
            return Err(invalid(format!("group name '{}' {p}", g.name)));
        }
        if groups.iter().any(|x| x.name == g.name) {
            return Err(invalid(format!(
                "group '{}' is declared twice; group names must be unique",
                g.name
            )));
        }
        if g.nodes == 0 {
            return Err(invalid(format!(
                "group '{}' has \"nodes\": 0; a group needs at least one node",
                g.name
            )));
        }
        groups.push(Group {
            name: g.name,
            nodes: g.nodes,
        });
    }
    if spec.devices.is_empty() {
        return Err(invalid(
            "\"devices\" is empty; add at least one device".to_owned(),
        ));
    }

    let mut devices: Vec<Device> = Vec::new();
    for d in spec.devices {
        let dev = &d.name;
        if let Some(p) = name_problem(dev) {
            return Err(invalid(format!("device name '{dev}' {p}")));
        }
        if devices.iter().any(|x| &x.name == dev) {
            return Err(invalid(format!(
                "device '{dev}' is declared twice; device names must be unique"
            )));
        }
        if d.executable.trim().is_empty() {
            return Err(invalid(format!("device '{dev}': \"executable\" is empty")));
        }
        let group = groups
            .iter()
            .position(|g| g.name == d.group)
            .ok_or_else(|| {
                invalid(format!(
                    "device '{dev}': unknown group '{}'; the groups are: {}",
                    d.group,
                    groups
                        .iter()
                        .map(|g| g.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if d.instances == 0 {
            return Err(invalid(format!(
                "device '{dev}': \"instances\": 0; remove the device or give it at least one instance"
            )));
        }
        for o in &d.options {
            let key = o.split('=').next().unwrap_or(o);
            if RESERVED_OPTIONS.contains(&key) {
                return Err(invalid(format!(
                    "device '{dev}': option {key} is set by fairmq-topology for every device; remove it from \"options\""
                )));
            }
        }
        let mut channels: Vec<DeviceChannel> = Vec::new();
        for (i, object) in d.channels.into_iter().enumerate() {
            let ch = parse_channel(dev, i, object, origin).map_err(invalid)?;
            if channels.iter().any(|c| c.name == ch.name) {
                return Err(invalid(format!(
                    "device '{dev}': channel '{}' is declared twice",
                    ch.name
                )));
            }
            channels.push(ch);
        }
        devices.push(Device {
            name: d.name,
            executable: d.executable,
            group,
            instances: d.instances,
            options: d.options,
            finite: d.finite,
            channels,
        });
    }
    for (gi, g) in groups.iter().enumerate() {
        if !devices.iter().any(|d| d.group == gi) {
            return Err(invalid(format!(
                "group '{}' has no devices; remove it or put a device on it",
                g.name
            )));
        }
    }

    let topology = Topology {
        name: spec.name,
        groups,
        devices,
        connections: Vec::new(),
    };
    let mut connections = Vec::new();
    let mut used: BTreeMap<End, usize> = BTreeMap::new();
    for (index, c) in spec.connections.into_iter().enumerate() {
        let from = resolve_end(&topology, &c.from, index, "from").map_err(invalid)?;
        let to = resolve_end(&topology, &c.to, index, "to").map_err(invalid)?;
        let label = format!("connection #{index} ({} -> {})", c.from, c.to);
        for end in [from, to] {
            if let Some(other) = used.insert(end, index) {
                return Err(invalid(format!(
                    "{label}: channel {} is already used by connection #{other}; a channel belongs to one connection",
                    topology.end_name(end)
                )));
            }
        }
        if from.device == to.device {
            return Err(invalid(format!(
                "{label}: both ends are channels of device '{}'; connect different devices",
                topology.devices[from.device].name
            )));
        }
        let fc = &topology.devices[from.device].channels[from.channel];
        let tc = &topology.devices[to.device].channels[to.channel];
        let peers = peer_types(&fc.socket_type);
        if !peers.contains(&tc.socket_type.as_str()) {
            return Err(invalid(format!(
                "{label}: socket types {} and {} do not talk to each other; {} talks to {}",
                fc.socket_type,
                tc.socket_type,
                fc.socket_type,
                peers.join(" or ")
            )));
        }
        let (fi, ti) = (
            topology.devices[from.device].instances,
            topology.devices[to.device].instances,
        );
        if fc.socket_type == "pair" && (fi > 1 || ti > 1) {
            return Err(invalid(format!(
                "{label}: a pair socket has exactly one peer, but the ends have {fi} and {ti} instances"
            )));
        }
        let binder = match (fc.method, tc.method) {
            (Some(Method::Bind), Some(Method::Bind))
            | (Some(Method::Connect), Some(Method::Connect)) => {
                return Err(invalid(format!(
                "{label}: both channels say \"method\": \"{}\"; one side binds, the other connects",
                fc.method.map(Method::name).unwrap_or_default()
            )))
            }
            (Some(Method::Bind), _) | (_, Some(Method::Connect)) => Side::From,
            (_, Some(Method::Bind)) | (Some(Method::Connect), _) => Side::To,
            (None, None) => {
                if ti < fi {
                    Side::To
                } else {
                    Side::From
                }
            }
        };
        let mut transport = c.transport;
        for (ch, end) in [(fc, from), (tc, to)] {
            if let Some(t) = ch.transport {
                match transport {
                    Some(x) if x != t => {
                        return Err(invalid(format!(
                            "{label}: channel {} says \"transport\": \"{t}\" but the connection uses {x}; both ends use one transport",
                            topology.end_name(end)
                        )))
                    }
                    _ => transport = Some(t),
                }
            }
        }
        connections.push(Connection {
            from,
            to,
            transport,
            scope: c.scope,
            binder,
        });
    }
    for (di, d) in topology.devices.iter().enumerate() {
        for (ci, ch) in d.channels.iter().enumerate() {
            if !used.contains_key(&End {
                device: di,
                channel: ci,
            }) {
                return Err(invalid(format!(
                    "device '{}': channel '{}' is not connected; add a connection with \"{}.{}\" or remove the channel",
                    d.name, ch.name, d.name, ch.name
                )));
            }
        }
    }
    Ok(Topology {
        connections,
        ..topology
    })
}

fn resolve_end(t: &Topology, text: &str, index: usize, side: &str) -> Result<End, String> {
    let (dev, chan) = text.split_once('.').ok_or_else(|| {
        format!(
            "connection #{index}: \"{side}\": \"{text}\" must name a channel as <device>.<channel>"
        )
    })?;
    let device = t.device(dev).ok_or_else(|| {
        format!(
            "connection #{index}: \"{side}\": unknown device '{dev}'; the devices are: {}",
            t.devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let d = &t.devices[device];
    let channel = d.channels.iter().position(|c| c.name == chan).ok_or_else(|| {
        format!(
            "connection #{index}: \"{side}\": device '{dev}' has no channel '{chan}'; its channels are: {}",
            if d.channels.is_empty() {
                "(none)".to_owned()
            } else {
                d.channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    })?;
    Ok(End { device, channel })
}

fn parse_channel(
    dev: &str,
    index: usize,
    mut object: Map<String, Value>,
    origin: &str,
) -> Result<DeviceChannel, String> {
    let name = match object.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(format!(
                "device '{dev}': channel #{index} needs a \"name\" (a string)"
            ))
        }
    };
    if let Some(p) = name_problem(&name) {
        return Err(format!("device '{dev}': channel name '{name}' {p}"));
    }
    let here = format!("device '{dev}', channel '{name}'");
    let known: BTreeSet<&str> = ChannelProperty::ALL.iter().map(|p| p.name()).collect();
    for key in object.keys() {
        match key.as_str() {
            "name" => {}
            "address" => {
                return Err(format!(
                    "{here}: \"address\" is assigned by fairmq-topology (ipc on a node, tcp between nodes); remove it"
                ))
            }
            "numSockets" | "sockets" => {
                return Err(format!(
                    "{here}: \"{key}\" is not supported in a topology: a channel has one socket per instance; use more instances"
                ))
            }
            k if known.contains(k) => {}
            k => {
                return Err(format!(
                    "{here}: unknown field \"{k}\"; channel fields are: name, {}",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    // Let FairMQ's own parser check types and values.
    let doc = serde_json::json!({"fairMQOptions": {"devices": [{"id": dev, "channels": [Value::Object(object.clone())]}]}});
    let specs = parse_json_value(&doc, dev, origin).map_err(|e| format!("{here}: {e}"))?;
    let spec = specs
        .first()
        .and_then(|c| c.sub_channels.first())
        .ok_or_else(|| format!("{here}: no channel parsed"))?;
    let socket_type = spec.socket_type.clone();
    if socket_type == "unspecified" {
        return Err(format!(
            "{here}: \"type\" is missing; use push, pull, pub, sub, req, rep, dealer, router, pair, xpub or xsub"
        ));
    }
    let method = match spec.method.as_str() {
        "unspecified" => None,
        "bind" => Some(Method::Bind),
        "connect" => Some(Method::Connect),
        other => {
            return Err(format!(
                "{here}: \"method\": \"{other}\" is not bind or connect"
            ))
        }
    };
    let transport = match spec.transport.as_str() {
        "default" => None,
        t => Some(
            Transport::parse(t)
                .ok_or_else(|| format!("{here}: \"transport\": \"{t}\" is not shmem or zeromq"))?,
        ),
    };
    object.remove("name");
    object.remove("method");
    object.remove("transport");
    object.remove("type");
    Ok(DeviceChannel {
        name,
        socket_type,
        method,
        transport,
        properties: object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"{
      "name": "t",
      "groups": [ { "name": "input", "nodes": 1 }, { "name": "processing", "nodes": 2 } ],
      "devices": [
        { "name": "sampler", "executable": "fairmq-bsampler", "group": "input", "finite": true,
          "channels": [ { "name": "data", "type": "push", "sndBufSize": 100 } ] },
        { "name": "processor", "executable": "fairmq-proxy", "group": "processing", "instances": 4,
          "channels": [ { "name": "data-in", "type": "pull" }, { "name": "data-out", "type": "push" } ] },
        { "name": "sink", "executable": "fairmq-sink", "group": "input", "finite": true,
          "channels": [ { "name": "data", "type": "pull" } ] }
      ],
      "connections": [
        { "from": "sampler.data", "to": "processor.data-in" },
        { "from": "processor.data-out", "to": "sink.data" }
      ]
    }"#;

    fn err(text: &str) -> String {
        Topology::from_str(text, "t.json").unwrap_err().to_string()
    }

    fn edit(from: &str, to: &str) -> String {
        assert!(EXAMPLE.contains(from), "{from}");
        EXAMPLE.replacen(from, to, 1)
    }

    #[test]
    fn example_is_valid() {
        let t = Topology::from_str(EXAMPLE, "t.json").unwrap();
        assert_eq!(t.node_count(), 3);
        assert_eq!(t.devices[1].instances, 4);
        assert_eq!(t.connections.len(), 2);
        // The side with one instance binds.
        assert_eq!(t.connections[0].binder, Side::From);
        assert_eq!(t.connections[1].binder, Side::To);
        assert_eq!(t.devices[0].channels[0].properties["sndBufSize"], 100);
        assert_eq!(t.connection_name(1), "#1 (processor.data-out -> sink.data)");
    }

    #[test]
    fn errors_name_the_device_and_channel() {
        let cases = [
            (
                edit("\"group\": \"processing\"", "\"group\": \"proc\""),
                "device 'processor': unknown group 'proc'; the groups are: input, processing",
            ),
            (
                edit("\"to\": \"sink.data\"", "\"to\": \"sink.input\""),
                "connection #1: \"to\": device 'sink' has no channel 'input'; its channels are: data",
            ),
            (
                edit("\"to\": \"sink.data\"", "\"to\": \"snk.data\""),
                "unknown device 'snk'",
            ),
            (
                edit("{ \"name\": \"data\", \"type\": \"pull\" }", "{ \"name\": \"data\", \"type\": \"push\" }"),
                "connection #1 (processor.data-out -> sink.data): socket types push and push do not talk to each other; push talks to pull",
            ),
            (
                edit("\"sndBufSize\": 100", "\"sndBufSize\": \"many\""),
                "device 'sampler', channel 'data': ",
            ),
            (
                edit("\"sndBufSize\": 100", "\"address\": \"tcp://x:1\""),
                "device 'sampler', channel 'data': \"address\" is assigned by fairmq-topology",
            ),
            (
                edit("\"sndBufSize\": 100", "\"sndbufsize\": 1"),
                "device 'sampler', channel 'data': unknown field \"sndbufsize\"",
            ),
            (
                edit("{ \"from\": \"processor.data-out\", \"to\": \"sink.data\" }", "{ \"from\": \"processor.data-out\", \"to\": \"sampler.data\" }"),
                "channel sampler.data is already used by connection #0",
            ),
            (
                edit(",\n        { \"from\": \"processor.data-out\", \"to\": \"sink.data\" }", ""),
                "device 'processor': channel 'data-out' is not connected",
            ),
            (
                edit("\"instances\": 4", "\"instances\": 0"),
                "device 'processor': \"instances\": 0",
            ),
            (
                edit("\"finite\": true,\n          \"channels\": [ { \"name\": \"data\", \"type\": \"push\"", "\"options\": [\"--id\", \"x\"],\n          \"channels\": [ { \"name\": \"data\", \"type\": \"push\""),
                "device 'sampler': option --id is set by fairmq-topology",
            ),
            (
                edit("{ \"name\": \"data-in\", \"type\": \"pull\" }", "{ \"name\": \"data-in\", \"type\": \"pull\", \"method\": \"bind\" }")
                    .replace("\"sndBufSize\": 100", "\"method\": \"bind\""),
                "both channels say \"method\": \"bind\"",
            ),
            (
                edit("\"nodes\": 2", "\"nodes\": 0"),
                "group 'processing' has \"nodes\": 0",
            ),
            (edit("\"name\": \"t\"", "\"name\": \"t\", \"extra\": 1"), "t.json:2:"),
        ];
        for (text, expected) in cases {
            let e = err(&text);
            assert!(e.contains(expected), "expected {expected:?} in:\n{e}");
        }
    }

    #[test]
    fn explicit_method_and_transport() {
        let t = Topology::from_str(
            &edit(
                "{ \"name\": \"data\", \"type\": \"pull\" }",
                "{ \"name\": \"data\", \"type\": \"pull\", \"method\": \"connect\", \"transport\": \"zeromq\" }",
            ),
            "t.json",
        )
        .unwrap();
        assert_eq!(t.connections[1].binder, Side::From);
        assert_eq!(t.connections[1].transport, Some(Transport::Zeromq));
        let e = err(&edit(
            "{ \"from\": \"processor.data-out\", \"to\": \"sink.data\" }",
            "{ \"from\": \"processor.data-out\", \"to\": \"sink.data\", \"transport\": \"shmem\" }",
        )
        .replace(
            "{ \"name\": \"data\", \"type\": \"pull\" }",
            "{ \"name\": \"data\", \"type\": \"pull\", \"transport\": \"zeromq\" }",
        ));
        assert!(
            e.contains("says \"transport\": \"zeromq\" but the connection uses shmem"),
            "{e}"
        );
    }
}
