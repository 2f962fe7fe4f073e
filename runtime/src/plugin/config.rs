//! The built-in `config` plugin (spec §7.4): declares the device options of spec §2.2 and, on
//! every entry into INITIALIZING DEVICE, parses `--mq-config` (preferred) or
//! `--channel-config` for the parser id (`--config-key`, else `--id`) into `chans.*`
//! properties.
//!
//! Unlike FairMQ, whose parse errors are only logged, a configuration error here is FATAL:
//! it is logged as one line naming the file (and line) or option and the channel, and the
//! device goes to ERROR. Channels from `--mq-config`/`--channel-config` are also checked
//! early for what FairMQ would only notice later (or never): a missing or unknown type, a
//! missing or unknown method, a connecting channel without address, an unknown transport.

use fairmq_transport::available_transports;

use super::{Plugin, PluginRegistration, PluginServices, PluginVersion};
use crate::channel_config::{
    parse_channel_config, parse_json_file, store_channels, sub_channel_name, ChannelConfigError,
    ChannelSpec, SOCKET_TYPES,
};
use crate::error::HookResult;
use crate::logging::FATAL_TARGET;
use crate::options::Options;
use crate::properties::{Properties, PropertyType};
use crate::state::{State, Transition};

/// The registration of the built-in `config` plugin.
pub static REGISTRATION: PluginRegistration = PluginRegistration {
    name: "config",
    version: PluginVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
    maintainer: "fairmq-rs",
    homepage: "https://example.invalid/fairmq-rs",
    options: Some(add_options),
    create,
};

/// Declares the "FairMQ device options" (spec §2.2), shmem options included.
pub fn add_options(o: &mut Options) {
    o.group("FairMQ device options");
    o.add("id", String::new(), "Device ID.");
    o.add("io-threads", 1i32, "Number of I/O threads.");
    o.add(
        "transport",
        "zeromq".to_owned(),
        "Transport ('zeromq'/'shmem').",
    );
    o.add(
        "network-interface",
        "default".to_owned(),
        "Network interface to bind on (e.g. eth0, ib0..., default will try to detect the interface of the default route).",
    );
    o.add(
        "init-timeout",
        120i32,
        "Timeout for the initialization in seconds (when expecting dynamic initialization).",
    );
    o.add("print-channels", false, "Print registered channel endpoints in a machine-readable format (<channel name>:<min num subchannels>:<max num subchannels>)")
        .implicit_value("true");
    o.add(
        "shm-segment-size",
        2_147_483_648u64,
        "Shared memory: size of the shared memory segment (in bytes).",
    );
    o.add(
        "shm-allocation",
        "rbtree_best_fit".to_owned(),
        "Shared memory allocation algorithm: rbtree_best_fit/simple_seq_fit.",
    );
    o.add(
        "shm-segment-id",
        0u16,
        "EXPERIMENTAL: Shared memory segment id for message creation.",
    );
    o.add_without_default(
        "shmid",
        PropertyType::U64,
        "EXPERIMENTAL: Shared memory session id (overrides the id derived from --session).",
    );
    o.add(
        "shm-mlock-segment",
        false,
        "Shared memory: mlock the shared memory segment after initialization.",
    );
    o.add(
        "shm-mlock-segment-on-creation",
        false,
        "Shared memory: mlock the shared memory segment only once when created.",
    );
    o.add(
        "shm-zero-segment",
        false,
        "Shared memory: zero the shared memory segment memory after initialization.",
    );
    o.add(
        "shm-zero-segment-on-creation",
        false,
        "Shared memory: zero the shared memory segment memory only once when created.",
    );
    o.add(
        "shm-throw-bad-alloc",
        true,
        "Throw a fair::mq::MessageBadAlloc if cannot allocate a message (retry if false).",
    );
    o.add(
        "shm-metadata-msg-size",
        0u64,
        "Shared memory: size of the zmq metadata message (values smaller than minimum are clamped to the minimum).",
    );
    o.add_without_default(
        "bad-alloc-max-attempts",
        PropertyType::I32,
        "Maximum number of allocation attempts before throwing MessageBadAlloc. -1 is infinite. There is always at least one attempt, so 0 has same effect as 1.",
    );
    o.add(
        "bad-alloc-attempt-interval",
        50i32,
        "Interval between shared memory allocation attempts in milliseconds.",
    );
    o.add("shm-monitor", false, "Shared memory: run monitor daemon.");
    o.add(
        "shm-no-cleanup",
        false,
        "Shared memory: do not cleanup the memory when last device leaves.",
    );
    o.add_without_default(
        "shm-metadata-path",
        PropertyType::String,
        "Shared memory: how descriptors travel between shmem sockets: 'queue' (bounded queues in shared memory, one per connection, no libzmq call per message; also supports pub/sub; the default) or 'zmq' (over libzmq, as FairMQ). Default from FAIRMQ_SHM_METADATA_PATH, else queue.",
    );
    o.add_without_default(
        "shm-group",
        PropertyType::String,
        "Shared memory: share a session this device creates with a group (name or gid): its objects are created 0660 and owned by that group, instead of 0600 (this user only).",
    );
    o.add("rate", 0.0f32, "Rate for conditional run loop (Hz).");
    o.add(
        "session",
        "default".to_owned(),
        "Session name. All FairMQ devices in the same session share common shared memory.",
    );
    o.add_without_default(
        "config-key",
        PropertyType::String,
        "Use provided value instead of device id for fetching the configuration from JSON file.",
    );
    o.add_without_default("mq-config", PropertyType::String, "JSON input as file.");
    o.add_without_default(
        "channel-config",
        PropertyType::Strings,
        "Configuration of single or multiple channel(s) by comma separated key=value list.",
    );
}

struct ConfigPlugin {
    services: PluginServices,
}

impl Plugin for ConfigPlugin {}

impl Drop for ConfigPlugin {
    fn drop(&mut self) {
        self.services.unsubscribe_from_device_state_change();
    }
}

fn create(services: PluginServices) -> HookResult<Box<dyn Plugin>> {
    let s = services.clone();
    services.subscribe_to_device_state_change(move |state| {
        if state != State::InitializingDevice {
            return;
        }
        if let Err(e) = configure_channels(s.properties()) {
            tracing::error!(target: FATAL_TARGET, "{e}");
            let _ = s.change_device_state(Transition::ErrorFound);
        }
    });
    Ok(Box::new(ConfigPlugin { services }))
}

/// The id used to look up the device in `--mq-config`: `--config-key`, else `--id`.
pub fn parser_id(properties: &Properties) -> String {
    match properties.get::<String>("config-key") {
        Ok(k) if !k.is_empty() => k,
        _ => properties.get_or("id", String::new()).unwrap_or_default(),
    }
}

/// Parses the channel configuration given by `--mq-config` / `--channel-config`, checks it
/// and stores it as `chans.*` properties. Returns the channels found (none if neither
/// option was given).
pub fn configure_channels(properties: &Properties) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    let id = parser_id(properties);
    let mq_config = properties
        .get::<String>("mq-config")
        .ok()
        .filter(|s| !s.is_empty());
    let channel_config = properties
        .get::<Vec<String>>("channel-config")
        .ok()
        .filter(|v| !v.is_empty());
    if id.is_empty() && (mq_config.is_some() || channel_config.is_some()) {
        tracing::warn!("No device ID or config-key provided for the configuration parser.");
    }
    let (channels, origin) = if let Some(path) = mq_config {
        if channel_config.is_some() {
            tracing::warn!("--mq-config is given, so --channel-config is ignored");
        }
        (parse_json_file(&path, &id)?, path)
    } else if let Some(tokens) = channel_config {
        (
            parse_channel_config(&tokens)?,
            "--channel-config".to_owned(),
        )
    } else {
        tracing::info!(
            "fair::mq::plugins::Config: no channels configuration provided via --mq-config or --channel-config"
        );
        return Ok(Vec::new());
    };
    check_channels(&channels, &origin)?;
    store_channels(properties, &channels);
    Ok(channels)
}

/// Early checks of parsed channels, each failure one clear line naming `origin` and the
/// sub-channel.
pub fn check_channels(channels: &[ChannelSpec], origin: &str) -> Result<(), ChannelConfigError> {
    let transports = available_transports();
    for channel in channels {
        for (i, sub) in channel.sub_channels.iter().enumerate() {
            let full = sub_channel_name(&channel.name, i);
            let err = |message: String| ChannelConfigError::InvalidChannel {
                channel: full.clone(),
                message: format!("{origin}: channel {full}: {message}"),
            };
            if sub.socket_type.is_empty() || sub.socket_type == "unspecified" {
                return Err(err(format!(
                    "no socket type given; set type to one of: {}",
                    SOCKET_TYPES.join(", ")
                )));
            }
            if !SOCKET_TYPES.contains(&sub.socket_type.as_str()) {
                return Err(err(format!(
                    "Invalid channel type: '{}'; valid types are: {}",
                    sub.socket_type,
                    SOCKET_TYPES.join(", ")
                )));
            }
            let has_modifiers = sub.address.contains(['@', '+', '>']);
            match sub.method.as_str() {
                "bind" | "connect" => {}
                "" | "unspecified" if has_modifiers => {}
                "" | "unspecified" => {
                    return Err(err(
                        "no method given; set method to bind or connect (or prefix each address with @ to bind or + to connect)"
                            .to_owned(),
                    ))
                }
                other => {
                    return Err(err(format!(
                        "invalid method '{other}'; use bind or connect"
                    )))
                }
            }
            let no_address = sub.address.is_empty() || sub.address == "unspecified";
            if no_address && sub.method != "bind" {
                return Err(err(
                    "no address given; a connecting channel needs one, e.g. tcp://host:port, ipc:///tmp/name or inproc://name"
                        .to_owned(),
                ));
            }
            if sub.transport != "default" && !transports.contains(&sub.transport.as_str()) {
                return Err(err(format!(
                    "unknown transport '{}'; available transports are: {}",
                    sub.transport,
                    transports.join(", ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_config::SubChannelSpec;

    fn chan(f: impl FnOnce(&mut SubChannelSpec)) -> Vec<ChannelSpec> {
        let mut s = SubChannelSpec {
            socket_type: "push".into(),
            method: "bind".into(),
            address: "ipc:///tmp/x".into(),
            ..SubChannelSpec::default()
        };
        f(&mut s);
        vec![ChannelSpec {
            name: "data".into(),
            sub_channels: vec![s],
        }]
    }

    #[test]
    fn checks() {
        assert!(check_channels(&chan(|_| {}), "o").is_ok());
        let e = check_channels(&chan(|s| s.socket_type = "unspecified".into()), "o").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("o: channel data[0]: no socket type given"),
            "{e}"
        );
        let e = check_channels(&chan(|s| s.socket_type = "foo".into()), "o").unwrap_err();
        assert!(e.to_string().contains("Invalid channel type: 'foo'"), "{e}");
        let e = check_channels(&chan(|s| s.method = "unspecified".into()), "o").unwrap_err();
        assert!(e.to_string().contains("no method given"), "{e}");
        assert!(check_channels(
            &chan(|s| {
                s.method = "unspecified".into();
                s.address = "@ipc:///tmp/y".into()
            }),
            "o"
        )
        .is_ok());
        let e = check_channels(&chan(|s| s.method = "sideways".into()), "o").unwrap_err();
        assert!(e.to_string().contains("invalid method 'sideways'"), "{e}");
        let e = check_channels(
            &chan(|s| {
                s.method = "connect".into();
                s.address = "unspecified".into()
            }),
            "o",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no address given"), "{e}");
        // A bind channel without address binds on the default interface.
        assert!(check_channels(&chan(|s| s.address = "unspecified".into()), "o").is_ok());
        let e = check_channels(&chan(|s| s.transport = "carrier-pigeon".into()), "o").unwrap_err();
        assert!(
            e.to_string().contains("unknown transport 'carrier-pigeon'"),
            "{e}"
        );
    }

    #[test]
    fn parser_id_prefers_config_key() {
        let p = Properties::new();
        p.set("id", "dev");
        assert_eq!(parser_id(&p), "dev");
        p.set("config-key", "key");
        assert_eq!(parser_id(&p), "key");
    }

    #[test]
    fn configure_from_channel_config() {
        let p = Properties::new();
        p.set("id", "dev");
        p.set(
            "channel-config",
            vec!["name=data,type=push,method=bind,address=ipc:///tmp/a,address=ipc:///tmp/b"],
        );
        let chans = configure_channels(&p).unwrap();
        assert_eq!(chans[0].sub_channels.len(), 2);
        assert_eq!(
            p.get::<String>("chans.data.1.address").unwrap(),
            "ipc:///tmp/b"
        );
        assert_eq!(p.get::<String>("chans.data.0.type").unwrap(), "push");
        assert_eq!(p.channel_info()["data"], 2);
    }
}
