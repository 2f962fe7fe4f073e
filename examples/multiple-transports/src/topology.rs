//! The topology: which device has which channels with which transport, as `--channel-config`
//! arguments or as the JSON file `multiple-transports.json` (`--mq-config`), and the command
//! lines the launcher starts the devices with.
//!
//! | device | `--transport` | channels |
//! |---|---|---|
//! | sampler1 | shmem | `data1` push/bind (shmem), `ack` sub/bind (zeromq) |
//! | sampler2 | zeromq | `data2` push/bind (zeromq) |
//! | sink | shmem | `data1` pull/connect (shmem), `data2` pull/connect (zeromq), `ack` pub/connect (zeromq) |
//!
//! PUB/SUB drops messages when the subscriber falls behind by more than the high-water marks, so
//! the `ack` channels have none (`sndBufSize=0` on the sink's `pub`, `rcvBufSize=0` on
//! sampler1's `sub`: unlimited in ZeroMQ): no acknowledgement is lost while sampler1 is busy
//! sending, and the backlog holds only empty messages.
//!
//! The shipped JSON file uses fixed tcp ports (5555-5557) so that the devices can be started
//! by hand; the launcher replaces every address with a per-session ipc address
//! ([`rewrite_json_addresses`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The JSON channel configuration shipped with the example (`multiple-transports.json`).
pub const SHIPPED_JSON: &str = include_str!("../multiple-transports.json");

/// The devices in the order the launcher starts them (FairMQ's test does the same).
pub const DEVICES: [&str; 3] = ["sink", "sampler1", "sampler2"];

/// The channels of the topology.
pub const CHANNELS: [&str; 3] = ["data1", "data2", "ack"];

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The JSON configuration is not valid JSON.
    #[error("invalid JSON channel configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON configuration lacks something the example needs.
    #[error("JSON channel configuration: {0}")]
    Structure(String),
    /// An unknown device name.
    #[error("unknown device '{0}' (expected sampler1, sampler2 or sink)")]
    UnknownDevice(String),
}

/// How the devices get their channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `--channel-config` arguments.
    Channel,
    /// `--mq-config <file> --id <device>`.
    Json,
}

/// The main transport (`--transport`) of a device.
pub fn device_transport(device: &str) -> Result<&'static str, TopologyError> {
    match device {
        "sampler1" | "sink" => Ok("shmem"),
        "sampler2" => Ok("zeromq"),
        other => Err(TopologyError::UnknownDevice(other.to_owned())),
    }
}

/// The ipc socket file of `channel` in `session` (`/tmp/fmq_<session>_<channel>`, as in
/// FairMQ's test script).
pub fn ipc_path(session: &str, channel: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/fmq_{session}_{channel}"))
}

/// The address of `channel` in `session`: `ipc:///tmp/fmq_<session>_<channel>`.
pub fn ipc_address(session: &str, channel: &str) -> String {
    format!("ipc://{}", ipc_path(session, channel).display())
}

/// The `--channel-config` values of `device` (one per channel), with ipc addresses of
/// `session`. Every channel logs its rates every second (`rateLogging=1`).
pub fn channel_config(device: &str, session: &str) -> Result<Vec<String>, TopologyError> {
    let a = |c: &str| ipc_address(session, c);
    let list = match device {
        "sampler1" => vec![
            format!(
                "name=data1,type=push,method=bind,address={},rateLogging=1",
                a("data1")
            ),
            format!(
                "name=ack,type=sub,method=bind,address={},transport=zeromq,rcvBufSize=0,rateLogging=1",
                a("ack")
            ),
        ],
        "sampler2" => vec![format!(
            "name=data2,type=push,method=bind,address={},rateLogging=1",
            a("data2")
        )],
        "sink" => vec![
            format!(
                "name=data1,type=pull,method=connect,address={},rateLogging=1",
                a("data1")
            ),
            format!(
                "name=data2,type=pull,method=connect,address={},transport=zeromq,rateLogging=1",
                a("data2")
            ),
            format!(
                "name=ack,type=pub,method=connect,address={},transport=zeromq,sndBufSize=0,rateLogging=1",
                a("ack")
            ),
        ],
        other => return Err(TopologyError::UnknownDevice(other.to_owned())),
    };
    Ok(list)
}

/// Replaces the address of every channel (and of every entry of its `sockets`) in a
/// `--mq-config` JSON text by the ipc address of the channel in `session`; everything else
/// (types, methods, transports) stays as it is. Every channel must have a name that is one of
/// [`CHANNELS`].
pub fn rewrite_json_addresses(text: &str, session: &str) -> Result<String, TopologyError> {
    let mut root: Value = serde_json::from_str(text)?;
    let devices = root
        .pointer_mut("/fairMQOptions/devices")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TopologyError::Structure("no fairMQOptions.devices array".into()))?;
    for device in devices {
        let Some(channels) = device.get_mut("channels").and_then(Value::as_array_mut) else {
            continue;
        };
        for channel in channels {
            let name = channel
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TopologyError::Structure("a channel without a name".into()))?
                .to_owned();
            if !CHANNELS.contains(&name.as_str()) {
                return Err(TopologyError::Structure(format!(
                    "unexpected channel '{name}' (expected data1, data2 or ack)"
                )));
            }
            let address = Value::String(ipc_address(session, &name));
            let obj = channel.as_object_mut().ok_or_else(|| {
                TopologyError::Structure(format!("channel '{name}' is not an object"))
            })?;
            obj.insert("address".to_owned(), address.clone());
            if let Some(sockets) = obj.get_mut("sockets").and_then(Value::as_array_mut) {
                for s in sockets.iter_mut().filter_map(Value::as_object_mut) {
                    s.insert("address".to_owned(), address.clone());
                }
            }
        }
    }
    Ok(serde_json::to_string_pretty(&root)?)
}

/// Everything a device command line depends on.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// The session (`--session`).
    pub session: String,
    /// Where the channels come from.
    pub config: ConfigKind,
    /// The JSON file for [`ConfigKind::Json`].
    pub json_path: PathBuf,
    /// `--shm-segment-size`.
    pub segment_size: u64,
    /// `--shm-monitor`.
    pub shm_monitor: bool,
    /// `--max-iterations` (0 = until stopped).
    pub max_iterations: u64,
}

/// The arguments of `device` (without the program).
pub fn device_args(device: &str, s: &LaunchSettings) -> Result<Vec<String>, TopologyError> {
    let mut args: Vec<String> = [
        "--id",
        device,
        "--transport",
        device_transport(device)?,
        "--session",
        &s.session,
        "--shm-segment-size",
        &s.segment_size.to_string(),
        "--shm-monitor",
        if s.shm_monitor { "true" } else { "false" },
        "--max-iterations",
        &s.max_iterations.to_string(),
        "--control",
        "static",
        "--color",
        "false",
        "--severity",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match s.config {
        ConfigKind::Channel => {
            for c in channel_config(device, &s.session)? {
                args.push("--channel-config".to_owned());
                args.push(c);
            }
        }
        ConfigKind::Json => {
            args.push("--mq-config".to_owned());
            args.push(s.json_path.display().to_string());
        }
    }
    Ok(args)
}

/// The names of the session's objects in `dir` (normally `/dev/shm`): every entry that starts
/// with `fmq_<shmId>_`, including the monitor's marker and spawn lock.
pub fn shm_leftovers_in(dir: &Path, session: &str) -> Vec<String> {
    let prefix = fairmq_shmem::ShmId::from_session(session).prefix();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// [`shm_leftovers_in`] `/dev/shm`.
pub fn shm_leftovers(session: &str) -> Vec<String> {
    shm_leftovers_in(Path::new("/dev/shm"), session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fairmq::channel_config::json::parse_json_str;

    fn find<'a>(specs: &'a [fairmq::ChannelSpec], name: &str) -> &'a fairmq::ChannelSpec {
        specs.iter().find(|s| s.name == name).expect("channel")
    }

    #[test]
    fn shipped_json_sets_every_transport() {
        for (device, channels) in [
            ("sampler1", vec![("data1", "shmem"), ("ack", "zeromq")]),
            ("sampler2", vec![("data2", "zeromq")]),
            (
                "sink",
                vec![("data1", "shmem"), ("data2", "zeromq"), ("ack", "zeromq")],
            ),
        ] {
            let specs = parse_json_str(SHIPPED_JSON, device, "shipped").expect("parses");
            assert_eq!(specs.len(), channels.len(), "{device}");
            for (name, transport) in channels {
                let spec = find(&specs, name);
                assert_eq!(spec.sub_channels[0].transport, transport, "{device}.{name}");
            }
        }
    }

    #[test]
    fn rewritten_json_uses_session_ipc_addresses() {
        let text = rewrite_json_addresses(SHIPPED_JSON, "s1").expect("rewrites");
        let specs = parse_json_str(&text, "sink", "rewritten").expect("parses");
        for name in CHANNELS {
            let spec = find(&specs, name);
            assert_eq!(
                spec.sub_channels[0].address,
                "ipc:///tmp/fmq_s1_".to_owned() + name
            );
        }
        assert_eq!(find(&specs, "ack").sub_channels[0].socket_type, "pub");
        assert!(rewrite_json_addresses("{}", "s").is_err());
        assert!(rewrite_json_addresses("{", "s").is_err());
        let odd = r#"{"fairMQOptions":{"devices":[{"id":"x","channels":[{"name":"other"}]}]}}"#;
        assert!(rewrite_json_addresses(odd, "s").is_err());
    }

    #[test]
    fn channel_config_matches_the_json() {
        assert!(channel_config("nobody", "s").is_err());
        let sink = channel_config("sink", "s").expect("sink");
        assert_eq!(sink.len(), 3);
        assert!(sink[1].contains("transport=zeromq") && sink[1].contains("name=data2"));
        assert!(sink[2].contains("type=pub"));
        let s = LaunchSettings {
            session: "s".into(),
            config: ConfigKind::Json,
            json_path: "/tmp/x.json".into(),
            segment_size: 1000,
            shm_monitor: true,
            max_iterations: 5,
        };
        let args = device_args("sampler2", &s).expect("args");
        let joined = args.join(" ");
        assert!(joined.contains("--transport zeromq"), "{joined}");
        assert!(joined.contains("--mq-config /tmp/x.json"), "{joined}");
        assert!(joined.contains("--shm-monitor true"), "{joined}");
        assert!(joined.contains("--max-iterations 5"), "{joined}");
    }
}
