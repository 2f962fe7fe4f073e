//! The `--channel-config` parser (spec §3.3, FairMQ `SuboptParser`).
//!
//! Each token defines one channel as comma-separated `key=value` pairs:
//! `data:type=push,method=bind,address=tcp://*:5555` or
//! `name=data,type=push,method=bind,address=ipc://a,address=ipc://b`.
//!
//! * A `:` before the first `=` makes the text before it the channel name; `name=` also sets it.
//! * Every `address=` starts a new sub-channel holding only that address; all other keys are
//!   channel-level, wherever they appear. `numSockets` works as in JSON.
//! * Unknown keys are warned about (`Ignoring unknown argument in --channel-config: <arg>`)
//!   and skipped; a token ends at the first space (the rest is warned about and ignored).
//! * A missing name is an error (FairMQ only logged it; its source marks the policy as
//!   undecided), as is a known key without `=value`.
//!
//! The result goes through the same channel builder as JSON, so values are converted and
//! checked identically.

use serde_json::{Map, Value};

use super::json::build_channel;
use super::{merge_channels, ChannelConfigError, ChannelProperty, ChannelSpec};

fn is_known_key(key: &str) -> bool {
    key == "name" || key == "numSockets" || ChannelProperty::from_name(key).is_some()
}

/// Parses all `--channel-config` tokens. A channel name given twice is merged with the
/// first definition winning per sub-channel (as for JSON).
pub fn parse_channel_config<S: AsRef<str>>(
    tokens: &[S],
) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    let mut channels = Vec::new();
    for token in tokens {
        merge_channels(&mut channels, parse_channel_config_token(token.as_ref())?);
    }
    Ok(channels)
}

/// Parses one `--channel-config` token into a channel.
pub fn parse_channel_config_token(token: &str) -> Result<ChannelSpec, ChannelConfigError> {
    let origin = format!("--channel-config '{token}'");
    let mut text = token;
    if let Some(space) = text.find(' ') {
        tracing::warn!(
            "Ignoring the part of --channel-config '{}' after the first space: '{}'",
            token,
            &text[space..]
        );
        text = &text[..space];
    }

    let mut name: Option<String> = None;
    if let Some(colon) = text.find(':') {
        let before_first_eq = match text.find('=') {
            Some(eq) => colon < eq,
            None => true,
        };
        if before_first_eq {
            name = Some(text[..colon].to_owned());
            text = &text[colon + 1..];
        }
    }

    let mut channel = Map::new();
    let mut sockets = Vec::new();
    for argument in text.split(',').filter(|a| !a.is_empty()) {
        let (key, value) = match argument.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (argument, None),
        };
        if !is_known_key(key) {
            tracing::warn!(
                "Ignoring unknown argument in --channel-config: {}",
                argument
            );
            continue;
        }
        let Some(value) = value else {
            return Err(ChannelConfigError::MissingValue {
                token: token.to_owned(),
                key: key.to_owned(),
            });
        };
        match key {
            "name" => name = Some(value.to_owned()),
            "address" => {
                let mut socket = Map::new();
                socket.insert("address".to_owned(), Value::String(value.to_owned()));
                sockets.push(Value::Object(socket));
            }
            _ => {
                channel.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
    }

    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => {
            return Err(ChannelConfigError::MissingChannelName {
                token: token.to_owned(),
            })
        }
    };
    if name.contains('.') {
        return Err(ChannelConfigError::InvalidValue {
            origin,
            channel: name.clone(),
            field: "name".to_owned(),
            value: name,
            expected: "a channel name without '.' (it is part of the keys chans.<name>.<index>.<property>)",
        });
    }
    channel.insert("name".to_owned(), Value::String(name));
    if !sockets.is_empty() {
        channel.insert("sockets".to_owned(), Value::Array(sockets));
    }
    build_channel(&channel, "--channel-config", 0, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_config::SubChannelSpec;

    #[test]
    fn name_prefix_and_single_address() {
        let ch =
            parse_channel_config_token("data:type=push,method=bind,address=tcp://*:5555").unwrap();
        assert_eq!(ch.name, "data");
        assert_eq!(
            ch.sub_channels,
            vec![SubChannelSpec {
                socket_type: "push".into(),
                method: "bind".into(),
                address: "tcp://*:5555".into(),
                ..SubChannelSpec::default()
            }]
        );
    }

    #[test]
    fn every_address_starts_a_sub_channel() {
        let ch = parse_channel_config_token(
            "name=data,address=ipc://a,type=push,address=ipc://b,method=bind,rcvBufSize=5",
        )
        .unwrap();
        assert_eq!(ch.name, "data");
        let addrs: Vec<&str> = ch.sub_channels.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(addrs, vec!["ipc://a", "ipc://b"]);
        // Channel-level keys apply to all sub-channels regardless of position.
        for s in &ch.sub_channels {
            assert_eq!(s.socket_type, "push");
            assert_eq!(s.method, "bind");
            assert_eq!(s.rcv_buf_size, 5);
        }
    }

    #[test]
    fn no_address_gives_one_sub_channel_and_num_sockets_works() {
        let ch = parse_channel_config_token("ctrl:type=pair,method=connect").unwrap();
        assert_eq!(ch.sub_channels.len(), 1);
        assert_eq!(ch.sub_channels[0].address, "unspecified");
        let ch =
            parse_channel_config_token("out:type=push,numSockets=3,address=ipc://ignored").unwrap();
        assert_eq!(ch.sub_channels.len(), 3);
        assert!(ch.sub_channels.iter().all(|s| s.address == "unspecified"));
    }

    #[test]
    fn values_are_converted() {
        let ch = parse_channel_config_token(
            "x:type=sub,linger=0,autoBind=false,sndTimeoutMs=100,portRangeMin=30000,transport=shmem",
        )
        .unwrap();
        let s = &ch.sub_channels[0];
        assert_eq!(s.linger, 0);
        assert!(!s.auto_bind);
        assert_eq!(s.snd_timeout_ms, 100);
        assert_eq!(s.port_range_min, 30000);
        assert_eq!(s.transport, "shmem");
        let err = parse_channel_config_token("x:linger=long").unwrap_err();
        assert!(matches!(
            err,
            ChannelConfigError::InvalidValue { ref field, ref origin, .. }
                if field == "linger" && origin == "--channel-config 'x:linger=long'"
        ));
    }

    #[test]
    fn colon_after_equals_is_not_a_name() {
        // The ':' in the address is after the first '=', so it is no name prefix.
        let err = parse_channel_config_token("address=tcp://localhost:5555,type=push").unwrap_err();
        assert!(matches!(err, ChannelConfigError::MissingChannelName { .. }));
        let ch = parse_channel_config_token("address=tcp://h:1,name=n").unwrap();
        assert_eq!(ch.name, "n");
        assert_eq!(ch.sub_channels[0].address, "tcp://h:1");
        // name= overrides the prefix when both are given (last one wins).
        let ch = parse_channel_config_token("a:name=b,type=push").unwrap();
        assert_eq!(ch.name, "b");
    }

    #[test]
    fn missing_name_is_an_error() {
        let err = parse_channel_config_token("type=push,method=bind").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing channel name in argument of option --channel-config: 'type=push,method=bind'; \
             start the token with '<name>:' or add 'name=<name>'"
        );
        assert!(matches!(
            parse_channel_config_token(":type=push"),
            Err(ChannelConfigError::MissingChannelName { .. })
        ));
        assert!(matches!(
            parse_channel_config_token("name=,type=push"),
            Err(ChannelConfigError::MissingChannelName { .. })
        ));
        // One bad token fails the whole option.
        assert!(parse_channel_config(&["a:type=push", "type=pull"]).is_err());
    }

    #[test]
    fn unknown_keys_are_skipped() {
        let ch = parse_channel_config_token("d:type=push,colour=blue,,method=bind").unwrap();
        assert_eq!(ch.sub_channels[0].socket_type, "push");
        assert_eq!(ch.sub_channels[0].method, "bind");
    }

    #[test]
    fn known_key_without_value_is_an_error() {
        let err = parse_channel_config_token("d:type").unwrap_err();
        assert!(matches!(err, ChannelConfigError::MissingValue { ref key, .. } if key == "type"));
    }

    #[test]
    fn token_stops_at_space() {
        let ch = parse_channel_config_token("d:type=push,method=bind address=ipc://x").unwrap();
        assert_eq!(ch.sub_channels.len(), 1);
        assert_eq!(ch.sub_channels[0].method, "bind");
        assert_eq!(ch.sub_channels[0].address, "unspecified");
    }

    #[test]
    fn dotted_name_is_an_error() {
        assert!(matches!(
            parse_channel_config_token("a.b:type=push"),
            Err(ChannelConfigError::InvalidValue { ref field, .. }) if field == "name"
        ));
    }

    #[test]
    fn several_tokens() {
        let chans = parse_channel_config(&[
            "data:type=push,method=bind,address=tcp://*:5555",
            "name=ack,type=pull,method=connect,address=tcp://localhost:5556",
            "data:type=pull,address=ipc://first-wins,address=ipc://appended",
        ])
        .unwrap();
        assert_eq!(chans.len(), 2);
        assert_eq!(chans[0].name, "data");
        assert_eq!(chans[0].sub_channels.len(), 2);
        assert_eq!(chans[0].sub_channels[0].address, "tcp://*:5555");
        assert_eq!(chans[0].sub_channels[0].socket_type, "push");
        assert_eq!(chans[0].sub_channels[1].address, "ipc://appended");
        assert_eq!(chans[1].name, "ack");
        assert_eq!(chans[1].sub_channels[0].method, "connect");
        assert_eq!(parse_channel_config::<&str>(&[]).unwrap(), vec![]);
    }
}
