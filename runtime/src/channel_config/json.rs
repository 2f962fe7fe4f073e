//! The `--mq-config` JSON parser (spec §3.2).
//!
//! ```json
//! {"fairMQOptions": {"devices": [
//!     {"id": "sampler1", "channels": [
//!         {"name": "data", "type": "push", "method": "bind",
//!          "sockets": [{"address": "tcp://*:5555"}, {"address": "tcp://*:5556"}]}]}]}}
//! ```
//!
//! A device entry is used if its `key` (or, without `key`, its `id`) equals the parser id
//! (`--config-key`, else `--id`); all matching entries are applied, the first one winning for
//! a sub-channel defined twice. Channel-level fields are inherited by each element of
//! `sockets`; `numSockets > 0` makes that many identical sub-channels (and ignores
//! `sockets`); with neither there is one sub-channel. Values may be JSON numbers, booleans or
//! strings (`"linger": "500"`); booleans accept `true`/`false`/`1`/`0`.
//!
//! Unlike FairMQ, errors are returned, not only logged: syntax errors name the line and
//! column, and a missing device entry names the id and the ids present.

use std::path::Path;

use serde_json::{Map, Value};

use super::{merge_channels, ChannelConfigError, ChannelProperty, ChannelSpec, SubChannelSpec};
use crate::properties::{parse_bool, PropertyType, PropertyValue};

/// Reads and parses a `--mq-config` file; `id` is the parser id (`--config-key`, else `--id`).
pub fn parse_json_file(
    path: impl AsRef<Path>,
    id: &str,
) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ChannelConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_json_str(&text, id, &path.display().to_string())
}

/// Parses `--mq-config` JSON text; `origin` (normally the file name) is used in error
/// messages.
pub fn parse_json_str(
    text: &str,
    id: &str,
    origin: &str,
) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_owned(),
            None => full,
        };
        ChannelConfigError::JsonSyntax {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    parse_json_value(&root, id, origin)
}

/// Extracts the channels of device `id` from an already parsed JSON document.
pub fn parse_json_value(
    root: &Value,
    id: &str,
    origin: &str,
) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    let structure = |message: String| ChannelConfigError::JsonStructure {
        origin: origin.to_owned(),
        message,
    };
    let options = root
        .get("fairMQOptions")
        .ok_or_else(|| {
            structure(
                "missing top-level object \"fairMQOptions\"; the file must look like \
                 {\"fairMQOptions\": {\"devices\": [{\"id\": \"<device id>\", \"channels\": [...]}]}}"
                    .to_owned(),
            )
        })?
        .as_object()
        .ok_or_else(|| structure("\"fairMQOptions\" must be a JSON object".to_owned()))?;
    let devices: &[Value] = match options.get("devices") {
        None => &[],
        Some(Value::Array(devices)) => devices,
        Some(_) => {
            return Err(structure(
                "\"fairMQOptions.devices\" must be an array of device objects".to_owned(),
            ))
        }
    };

    let mut available = Vec::new();
    let mut channels: Vec<ChannelSpec> = Vec::new();
    let mut matched = false;
    for (i, device) in devices.iter().enumerate() {
        let device = device.as_object().ok_or_else(|| {
            structure(format!(
                "fairMQOptions.devices[{i}] must be an object with \"id\" (or \"key\") and \"channels\""
            ))
        })?;
        let Some(lookup) = device
            .get("key")
            .or_else(|| device.get("id"))
            .and_then(scalar_text)
        else {
            continue;
        };
        if lookup != id {
            if !available.contains(&lookup) {
                available.push(lookup);
            }
            continue;
        }
        matched = true;
        let list: &[Value] = match device.get("channels") {
            None => &[],
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(structure(format!(
                    "\"channels\" of device '{lookup}' must be an array of channel objects"
                )))
            }
        };
        for (index, channel) in list.iter().enumerate() {
            let channel = channel.as_object().ok_or_else(|| {
                structure(format!(
                    "channel #{index} of device '{lookup}' must be a JSON object"
                ))
            })?;
            let spec = build_channel(channel, &lookup, index, origin)?;
            merge_channels(&mut channels, spec);
        }
    }
    if !matched {
        return Err(ChannelConfigError::NoDeviceEntry {
            origin: origin.to_owned(),
            id: id.to_owned(),
            available,
        });
    }
    Ok(channels)
}

/// The text of a JSON scalar (strings as is, numbers and booleans printed); `None` for
/// null, arrays and objects.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn to_i32(value: &Value) -> Option<i32> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|v| i32::try_from(v).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s.trim()),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Converts a JSON value to the type of `prop`.
fn convert(
    prop: ChannelProperty,
    value: &Value,
    channel: &str,
    origin: &str,
) -> Result<PropertyValue, ChannelConfigError> {
    let (converted, expected) = match prop.value_type() {
        PropertyType::String => (scalar_text(value).map(PropertyValue::String), "a string"),
        PropertyType::Bool => (
            to_bool(value).map(PropertyValue::Bool),
            "true, false, 1 or 0",
        ),
        _ => (
            to_i32(value).map(PropertyValue::I32),
            "a 32-bit integer (number or string)",
        ),
    };
    converted.ok_or_else(|| ChannelConfigError::InvalidValue {
        origin: origin.to_owned(),
        channel: channel.to_owned(),
        field: prop.name().to_owned(),
        value: value.to_string(),
        expected,
    })
}

/// Applies the §3.1 fields of `object` to `spec`; other keys (except those in `skip`) are
/// warned about.
fn apply_fields(
    spec: &mut SubChannelSpec,
    object: &Map<String, Value>,
    skip: &[&str],
    channel: &str,
    origin: &str,
) -> Result<(), ChannelConfigError> {
    for (key, value) in object {
        if skip.contains(&key.as_str()) {
            continue;
        }
        match ChannelProperty::from_name(key) {
            Some(prop) => {
                let converted = convert(prop, value, channel, origin)?;
                // `convert` produced the property's own type, so this cannot fail.
                let _ = spec.set_value(prop, converted);
            }
            None => tracing::warn!(
                "{}: ignoring unknown field '{}' in channel '{}'",
                origin,
                key,
                channel
            ),
        }
    }
    Ok(())
}

/// The largest `numSockets` accepted. Each sub-channel is a socket (libzmq allows 1023 per
/// context by default); without a bound, `numSockets=2147483647` made the parser allocate
/// hundreds of gigabytes and abort (the regression test is in tests/prop_parsers.rs).
pub const MAX_NUM_SOCKETS: i32 = 1024;

/// Builds one channel from a channel object (shared with the `--channel-config` parser).
pub(crate) fn build_channel(
    channel: &Map<String, Value>,
    device: &str,
    index: usize,
    origin: &str,
) -> Result<ChannelSpec, ChannelConfigError> {
    let bad_name = |problem: &str| ChannelConfigError::BadChannelName {
        origin: origin.to_owned(),
        device: device.to_owned(),
        index,
        problem: problem.to_owned(),
    };
    let name = match channel.get("name") {
        None => {
            return Err(bad_name(
                "has no \"name\"; add \"name\": \"<channel name>\"",
            ))
        }
        Some(v) => scalar_text(v).ok_or_else(|| bad_name("has a \"name\" that is not a string"))?,
    };
    if name.is_empty() {
        return Err(bad_name("has an empty \"name\""));
    }
    if name.contains('.') {
        return Err(bad_name(&format!(
            "has the name '{name}', which contains '.'; channel names cannot contain '.' \
             (they are part of the property keys chans.<name>.<index>.<property>)"
        )));
    }

    let mut common = SubChannelSpec::default();
    apply_fields(
        &mut common,
        channel,
        &["name", "numSockets", "sockets"],
        &name,
        origin,
    )?;

    let num_sockets = match channel.get("numSockets") {
        None => 0,
        Some(v) => to_i32(v).filter(|n| *n <= MAX_NUM_SOCKETS).ok_or_else(|| {
            ChannelConfigError::InvalidValue {
                origin: origin.to_owned(),
                channel: name.clone(),
                field: "numSockets".to_owned(),
                value: v.to_string(),
                expected: "an integer up to 1024 (number or string; one socket per sub-channel)",
            }
        })?,
    };

    let sub_channels = if num_sockets > 0 {
        // `numSockets` > 0 is positive, so the conversion is lossless.
        vec![common; usize::try_from(num_sockets).unwrap_or(0)]
    } else {
        let sockets: &[Value] = match channel.get("sockets") {
            None => &[],
            Some(Value::Array(sockets)) => sockets,
            Some(_) => {
                return Err(ChannelConfigError::JsonStructure {
                    origin: origin.to_owned(),
                    message: format!(
                        "\"sockets\" of channel '{name}' must be an array of socket objects"
                    ),
                })
            }
        };
        if sockets.is_empty() {
            vec![common]
        } else {
            sockets
                .iter()
                .enumerate()
                .map(|(i, socket)| {
                    let socket =
                        socket
                            .as_object()
                            .ok_or_else(|| ChannelConfigError::JsonStructure {
                                origin: origin.to_owned(),
                                message: format!(
                                    "socket #{i} of channel '{name}' must be a JSON object"
                                ),
                            })?;
                    let mut spec = common.clone();
                    apply_fields(&mut spec, socket, &[], &name, origin)?;
                    Ok(spec)
                })
                .collect::<Result<Vec<_>, ChannelConfigError>>()?
        }
    };
    Ok(ChannelSpec { name, sub_channels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_config::{channel_properties, store_channels};
    use crate::properties::Properties;
    use std::io::Write;

    const SPEC_EXAMPLE: &str = r#"{"fairMQOptions":{"devices":[{"id":"sampler1","channels":[{"name":"data",
"type":"push","method":"bind","sockets":[{"address":"tcp://*:5555"},{"address":"tcp://*:5556"}]}]}]}}"#;

    #[test]
    fn spec_example() {
        let channels = parse_json_str(SPEC_EXAMPLE, "sampler1", "ex.json").unwrap();
        assert_eq!(channels.len(), 1);
        let p = Properties::new();
        store_channels(&p, &channels);
        assert_eq!(
            p.get::<String>("chans.data.0.address").unwrap(),
            "tcp://*:5555"
        );
        assert_eq!(
            p.get::<String>("chans.data.1.address").unwrap(),
            "tcp://*:5556"
        );
        for i in 0..2 {
            assert_eq!(
                p.get::<String>(&format!("chans.data.{i}.type")).unwrap(),
                "push"
            );
            assert_eq!(
                p.get::<String>(&format!("chans.data.{i}.method")).unwrap(),
                "bind"
            );
            assert_eq!(
                p.get::<i32>(&format!("chans.data.{i}.linger")).unwrap(),
                500
            );
        }
        assert_eq!(p.channel_info().get("data"), Some(&2));
        assert_eq!(channel_properties(&channels).len(), 30);
    }

    #[test]
    fn inheritance_and_overrides() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{
            "name":"data","type":"pull","method":"connect","linger":100,"rateLogging":0,
            "transport":"shmem",
            "sockets":[
                {"address":"tcp://a:1"},
                {"address":"tcp://b:2","linger":7,"type":"sub","autoBind":false}
            ]}]}]}}"#;
        let ch = &parse_json_str(json, "d", "f").unwrap()[0];
        assert_eq!(ch.name, "data");
        let s0 = &ch.sub_channels[0];
        let s1 = &ch.sub_channels[1];
        assert_eq!(
            *s0,
            SubChannelSpec {
                socket_type: "pull".into(),
                method: "connect".into(),
                address: "tcp://a:1".into(),
                transport: "shmem".into(),
                linger: 100,
                rate_logging: 0,
                ..SubChannelSpec::default()
            }
        );
        assert_eq!(
            *s1,
            SubChannelSpec {
                socket_type: "sub".into(),
                address: "tcp://b:2".into(),
                linger: 7,
                auto_bind: false,
                ..s0.clone()
            }
        );
    }

    #[test]
    fn num_sockets_copies_common_and_ignores_sockets() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{
            "name":"out","type":"push","method":"connect","address":"ipc://x","numSockets":3,
            "sockets":[{"address":"ipc://ignored"}]}]}]}}"#;
        let ch = &parse_json_str(json, "d", "f").unwrap()[0];
        assert_eq!(ch.sub_channels.len(), 3);
        for s in &ch.sub_channels {
            assert_eq!(s.address, "ipc://x");
            assert_eq!(s.socket_type, "push");
        }
        // numSockets as a string, and 0 / negative fall back to sockets.
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[
            {"name":"a","numSockets":"2"},
            {"name":"b","numSockets":0,"sockets":[{"address":"ipc://1"}]},
            {"name":"c","numSockets":-1}]}]}}"#;
        let chans = parse_json_str(json, "d", "f").unwrap();
        assert_eq!(chans[0].sub_channels.len(), 2);
        assert_eq!(chans[1].sub_channels.len(), 1);
        assert_eq!(chans[1].sub_channels[0].address, "ipc://1");
        assert_eq!(chans[2].sub_channels, vec![SubChannelSpec::default()]);
    }

    #[test]
    fn no_sockets_gives_one_sub_channel() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[
            {"name":"a","type":"pair","address":"ipc://a"},
            {"name":"b","sockets":[]}]}]}}"#;
        let chans = parse_json_str(json, "d", "f").unwrap();
        assert_eq!(chans[0].sub_channels.len(), 1);
        assert_eq!(chans[0].sub_channels[0].socket_type, "pair");
        assert_eq!(chans[1].sub_channels, vec![SubChannelSpec::default()]);
    }

    #[test]
    fn string_typed_values_are_converted() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{
            "name":"x","sndBufSize":"123","rcvBufSize":" 45 ","linger":"-1",
            "autoBind":"0","rateLogging":"5","portRangeMin":"1","portRangeMax":2,
            "address":5555,"type":"push"}]}]}}"#;
        let s = &parse_json_str(json, "d", "f").unwrap()[0].sub_channels[0];
        assert_eq!(s.snd_buf_size, 123);
        assert_eq!(s.rcv_buf_size, 45);
        assert_eq!(s.linger, -1);
        assert!(!s.auto_bind);
        assert_eq!(s.rate_logging, 5);
        assert_eq!((s.port_range_min, s.port_range_max), (1, 2));
        assert_eq!(s.address, "5555");
        for (v, expected) in [
            ("true", true),
            ("false", false),
            ("1", true),
            ("\"true\"", true),
        ] {
            let json = format!(
                r#"{{"fairMQOptions":{{"devices":[{{"id":"d","channels":[{{"name":"x","autoBind":{v}}}]}}]}}}}"#
            );
            assert_eq!(
                parse_json_str(&json, "d", "f").unwrap()[0].sub_channels[0].auto_bind,
                expected,
                "{v}"
            );
        }
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let cases = [
            (r#""linger":"abc""#, "linger", "\"abc\""),
            (r#""linger":1.5"#, "linger", "1.5"),
            (r#""sndBufSize":3000000000"#, "sndBufSize", "3000000000"),
            (r#""autoBind":"yes""#, "autoBind", "\"yes\""),
            (r#""autoBind":2"#, "autoBind", "2"),
            (r#""type":["push"]"#, "type", "[\"push\"]"),
            (r#""numSockets":"many""#, "numSockets", "\"many\""),
        ];
        for (field_json, field, value) in cases {
            let json = format!(
                r#"{{"fairMQOptions":{{"devices":[{{"id":"d","channels":[{{"name":"x",{field_json}}}]}}]}}}}"#
            );
            match parse_json_str(&json, "d", "conf.json") {
                Err(ChannelConfigError::InvalidValue {
                    origin,
                    channel,
                    field: f,
                    value: v,
                    ..
                }) => {
                    assert_eq!(origin, "conf.json");
                    assert_eq!(channel, "x");
                    assert_eq!(f, field);
                    assert_eq!(v, value);
                }
                other => panic!("{field_json}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn bad_values_in_sockets_are_errors() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{"name":"x",
            "sockets":[{"address":"ipc://a"},{"rcvTimeoutMs":"soon"}]}]}]}}"#;
        let err = parse_json_str(json, "d", "f.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.json: channel 'x': invalid value \"soon\" for 'rcvTimeoutMs': expected a 32-bit integer (number or string)"
        );
    }

    #[test]
    fn key_takes_precedence_over_id() {
        let json = r#"{"fairMQOptions":{"devices":[
            {"id":"a","key":"shared","channels":[{"name":"k"}]},
            {"id":"shared","channels":[{"name":"i"}]},
            {"id":"b","channels":[{"name":"b"}]}]}}"#;
        let names = |id: &str| -> Vec<String> {
            parse_json_str(json, id, "f")
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        // Both the entry keyed "shared" and the one with id "shared" (and no key) match.
        assert_eq!(names("shared"), vec!["k", "i"]);
        assert_eq!(names("b"), vec!["b"]);
        // "a" has a key, so its id is not used for lookup.
        assert!(matches!(
            parse_json_str(json, "a", "f"),
            Err(ChannelConfigError::NoDeviceEntry { .. })
        ));
    }

    #[test]
    fn multiple_matching_entries_first_wins() {
        let json = r#"{"fairMQOptions":{"devices":[
            {"id":"d","channels":[{"name":"data","address":"ipc://first"}]},
            {"id":"d","channels":[{"name":"data","sockets":[{"address":"ipc://second0"},{"address":"ipc://second1"}]},{"name":"more"}]}]}}"#;
        let chans = parse_json_str(json, "d", "f").unwrap();
        assert_eq!(chans.len(), 2);
        let addrs: Vec<&str> = chans[0]
            .sub_channels
            .iter()
            .map(|s| s.address.as_str())
            .collect();
        assert_eq!(addrs, vec!["ipc://first", "ipc://second1"]);
        assert_eq!(chans[1].name, "more");
    }

    #[test]
    fn missing_device_names_id_and_available_ids() {
        let err = parse_json_str(SPEC_EXAMPLE, "sink1", "ex.json").unwrap_err();
        match &err {
            ChannelConfigError::NoDeviceEntry {
                origin,
                id,
                available,
            } => {
                assert_eq!(origin, "ex.json");
                assert_eq!(id, "sink1");
                assert_eq!(available, &vec!["sampler1".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("'sink1'") && msg.contains("'sampler1'"),
            "{msg}"
        );
        let two = r#"{"fairMQOptions":{"devices":[{"id":"a"},{"id":"b"},{"id":"a"}]}}"#;
        assert!(matches!(
            parse_json_str(two, "c", "t.json"),
            Err(ChannelConfigError::NoDeviceEntry { ref available, .. })
                if *available == vec!["a".to_string(), "b".to_string()]
        ));
        let empty = r#"{"fairMQOptions":{"devices":[]}}"#;
        let msg = parse_json_str(empty, "x", "e.json")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("entries present: none"), "{msg}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let text = "{\"fairMQOptions\": {\n  \"devices\": [\n    {\"id\": \"a\",, }\n  ]\n}}";
        let err = parse_json_str(text, "a", "bad.json").unwrap_err();
        match &err {
            ChannelConfigError::JsonSyntax {
                origin,
                line,
                column,
                message,
            } => {
                assert_eq!(origin, "bad.json");
                assert_eq!(*line, 3);
                assert_eq!(*column, 16);
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.starts_with("bad.json:3:16: invalid JSON: "), "{msg}");
        assert!(msg.contains("line 3, column 16"), "{msg}");
    }

    #[test]
    fn structural_errors() {
        let cases = [
            ("{}", "fairMQOptions"),
            (r#"{"fairMQOptions": 1}"#, "must be a JSON object"),
            (r#"{"fairMQOptions": {"devices": {}}}"#, "must be an array"),
            (r#"{"fairMQOptions": {"devices": [1]}}"#, "devices[0]"),
            (
                r#"{"fairMQOptions": {"devices": [{"id":"d","channels":{}}]}}"#,
                "\"channels\" of device 'd'",
            ),
            (
                r#"{"fairMQOptions": {"devices": [{"id":"d","channels":[{"name":"x","sockets":{}}]}]}}"#,
                "\"sockets\" of channel 'x'",
            ),
            (
                r#"{"fairMQOptions": {"devices": [{"id":"d","channels":[{"name":"x","sockets":[1]}]}]}}"#,
                "socket #0 of channel 'x'",
            ),
        ];
        for (json, needle) in cases {
            let msg = parse_json_str(json, "d", "s.json").unwrap_err().to_string();
            assert!(msg.starts_with("s.json: "), "{msg}");
            assert!(msg.contains(needle), "{json}: {msg}");
        }
    }

    #[test]
    fn channel_name_required() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{"name":"ok"},{"type":"push"}]}]}}"#;
        let err = parse_json_str(json, "d", "n.json").unwrap_err();
        assert!(matches!(
            err,
            ChannelConfigError::BadChannelName { index: 1, ref device, .. } if device == "d"
        ));
        assert_eq!(
            err.to_string(),
            "n.json: channel #1 of device 'd' has no \"name\"; add \"name\": \"<channel name>\""
        );
        let dotted = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{"name":"a.b"}]}]}}"#;
        assert!(parse_json_str(dotted, "d", "n")
            .unwrap_err()
            .to_string()
            .contains("cannot contain '.'"));
        let empty = r#"{"fairMQOptions":{"devices":[{"id":"d","channels":[{"name":""}]}]}}"#;
        assert!(matches!(
            parse_json_str(empty, "d", "n"),
            Err(ChannelConfigError::BadChannelName { .. })
        ));
    }

    #[test]
    fn device_without_channels_is_empty() {
        let json = r#"{"fairMQOptions":{"devices":[{"id":"d"}]}}"#;
        assert_eq!(parse_json_str(json, "d", "f").unwrap(), vec![]);
    }

    #[test]
    fn reads_files() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(SPEC_EXAMPLE.as_bytes()).unwrap();
        let chans = parse_json_file(file.path(), "sampler1").unwrap();
        assert_eq!(chans[0].sub_channels.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = parse_json_file(&missing, "x").unwrap_err();
        assert!(matches!(err, ChannelConfigError::Io { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("missing.json") && msg.contains("--mq-config"),
            "{msg}"
        );

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        bad.write_all(b"{\n\"fairMQOptions\": ]").unwrap();
        let msg = parse_json_file(bad.path(), "x").unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:2:18:", bad.path().display())),
            "{msg}"
        );
    }
}
