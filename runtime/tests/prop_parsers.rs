//! Property tests ("fuzzing" on the stable toolchain) of the channel-configuration parsers that
//! read outside input: `--mq-config` JSON ([`parse_json_str`]) and `--channel-config`
//! ([`parse_channel_config`], [`parse_channel_config_token`]).
//!
//! Inputs: arbitrary text, and near-valid input built from the real keys (JSON of the right
//! shape with values of random types and missing fields; `--channel-config` tokens of real keys
//! with random values). Properties: every call returns within [`PARSE_DEADLINE`] without a
//! panic; an error's message is one line (when the input has no line break of its own to echo);
//! a configuration built from valid values parses to exactly what was built.
//!
//! Cases per test: `PROPTEST_CASES` (default [`CASES`]). A long local run:
//! `PROPTEST_CASES=100000 cargo test -p fairmq --release --test prop_parsers`.

use fairmq::channel_config::json::MAX_NUM_SOCKETS;
use fairmq::channel_config::{
    parse_channel_config, parse_channel_config_token, parse_json_str, ChannelProperty, ChannelSpec,
    SubChannelSpec, SOCKET_TYPES,
};
use fairmq::ChannelConfigError;
use fairmq_test_support::{prop_cases, within, PARSE_DEADLINE};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Default cases per property (the set stays well under a second per test in a debug build).
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: prop_cases(CASES),
        ..ProptestConfig::default()
    }
}

/// What a parse gave: the channels, or the error's message.
type Outcome = Result<Vec<ChannelSpec>, String>;

fn json_outcome(text: &str, id: &str) -> Outcome {
    let (text, id) = (text.to_owned(), id.to_owned());
    within(PARSE_DEADLINE, &text.clone(), move || {
        parse_json_str(&text, &id, "prop.json").map_err(|e| e.to_string())
    })
}

fn tokens_outcome(tokens: &[String]) -> Outcome {
    let owned = tokens.to_vec();
    within(PARSE_DEADLINE, &tokens.to_vec(), move || {
        parse_channel_config(&owned).map_err(|e| e.to_string())
    })
}

/// An error message is non-empty and one line, unless `input_may_break` (the input holds a
/// line break, or a JSON escape that may decode to one, which a message may quote).
fn check_message(outcome: &Outcome, input_may_break: bool) -> Result<(), TestCaseError> {
    if let Err(message) = outcome {
        prop_assert!(!message.trim().is_empty(), "empty error message");
        if !input_may_break {
            prop_assert!(
                !message.contains(['\n', '\r']),
                "error message spans lines: {message:?}"
            );
        }
    }
    Ok(())
}

fn breaks(text: &str) -> bool {
    text.contains(['\n', '\r', '\\'])
}

// ---- strategies -------------------------------------------------------------------------

/// The keys a channel object or token may hold, real ones first.
fn key() -> impl Strategy<Value = String> {
    let mut real: Vec<String> = ChannelProperty::ALL
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    real.extend(["name", "numSockets", "sockets"].map(String::from));
    prop_oneof![
        8 => proptest::sample::select(real),
        1 => "[a-zA-Z]{0,10}",
        1 => "\\PC{0,6}",
    ]
}

/// Values as a user might mistype them: numbers at and beyond the i32 range, booleans in
/// every spelling, socket types, methods, addresses, junk.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        (-3i32..=MAX_NUM_SOCKETS + 2).prop_map(|v| v.to_string()),
        proptest::sample::select(vec![
            "true",
            "false",
            "1",
            "0",
            "yes",
            "",
            " 1",
            "2147483648",
            "-2147483649",
            "1e3",
            "0x10",
            "bind",
            "connect",
            "@tcp://*:5555",
            "unspecified",
            "shmem",
            "zeromq",
        ])
        .prop_map(String::from),
        proptest::sample::select(SOCKET_TYPES.to_vec()).prop_map(String::from),
        "(tcp|ipc|inproc|foo)://[a-z0-9.*:\\[\\]]{0,12}",
        "[a-zA-Z0-9:=@+>_.-]{0,12}",
        "\\PC{0,8}",
    ]
}

/// Any JSON value, keys mostly real, to `depth` levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<u64>().prop_map(|v| json!(v)),
        (-4i64..=2000).prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| json!(v)),
        value_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A channel object: real keys with values of random types (fields missing at random).
fn channel_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// A document of FairMQ's shape at a random depth of correctness: anything; the top object
/// with anything inside; the devices with anything; the device entry with random channels.
fn json_document() -> impl Strategy<Value = Value> {
    let device = (
        prop_oneof![Just(json!("dev")), json_value()],
        prop::bool::ANY,
        prop::collection::vec(channel_object(), 0..4),
    )
        .prop_map(|(id, by_key, channels)| {
            let mut d = Map::new();
            d.insert(if by_key { "key" } else { "id" }.to_owned(), id);
            d.insert("channels".to_owned(), Value::Array(channels));
            Value::Object(d)
        });
    prop_oneof![
        1 => json_value(),
        1 => json_value().prop_map(|v| json!({ "fairMQOptions": v })),
        1 => json_value().prop_map(|v| json!({ "fairMQOptions": { "devices": v } })),
        4 => prop::collection::vec(prop_oneof![3 => device, 1 => json_value()], 0..4)
            .prop_map(|devices| json!({ "fairMQOptions": { "devices": devices } })),
    ]
}

/// Valid settings of one sub-channel (no ',', ' ' or line break in the strings, so they also
/// fit a `--channel-config` token).
fn sub_channel() -> impl Strategy<Value = SubChannelSpec> {
    let word = "[a-zA-Z0-9_:/*@+>.-]{1,16}";
    (
        proptest::sample::select(SOCKET_TYPES.to_vec()),
        prop_oneof![Just("bind".to_owned()), Just("connect".to_owned()), word],
        word,
        prop_oneof![
            Just("default".to_owned()),
            Just("zeromq".to_owned()),
            Just("shmem".to_owned())
        ],
        prop::array::uniform10(any::<i32>()),
        any::<bool>(),
    )
        .prop_map(|(t, method, address, transport, ints, auto_bind)| {
            let mut s = SubChannelSpec {
                socket_type: t.to_owned(),
                method,
                address,
                transport,
                auto_bind,
                ..SubChannelSpec::default()
            };
            let int_props = ChannelProperty::ALL
                .into_iter()
                .filter(|p| !matches!(p.value_type(), fairmq::PropertyType::String))
                .filter(|p| *p != ChannelProperty::AutoBind);
            for (prop, v) in int_props.zip(ints) {
                s.set_value(prop, fairmq::PropertyValue::I32(v)).unwrap();
            }
            s
        })
}

/// How a channel's sub-channels are written: `numSockets` copies, or one per address.
#[derive(Debug, Clone)]
enum Shape {
    NumSockets(i32),
    Addresses(Vec<String>),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1..=6i32).prop_map(Shape::NumSockets),
        prop::collection::vec("[a-z]{1,6}://[a-z0-9.*:]{1,12}", 0..4).prop_map(Shape::Addresses),
    ]
}

/// Channel names as a user would write them (no '.', ':' or ',').
fn channel_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,10}"
}

fn expected_channel(name: &str, common: &SubChannelSpec, shape: &Shape) -> ChannelSpec {
    let sub_channels = match shape {
        Shape::NumSockets(n) => {
            let mut s = common.clone();
            s.address = "unspecified".to_owned();
            vec![s; *n as usize]
        }
        Shape::Addresses(a) if a.is_empty() => {
            let mut s = common.clone();
            s.address = "unspecified".to_owned();
            vec![s]
        }
        Shape::Addresses(a) => a
            .iter()
            .map(|addr| SubChannelSpec {
                address: addr.clone(),
                ..common.clone()
            })
            .collect(),
    };
    ChannelSpec {
        name: name.to_owned(),
        sub_channels,
    }
}

/// One setting as a JSON value, in one of the spellings FairMQ accepts.
fn json_setting(value: fairmq::PropertyValue, spelling: u8) -> Value {
    match value {
        fairmq::PropertyValue::String(s) => Value::String(s),
        fairmq::PropertyValue::I32(v) if spelling.is_multiple_of(2) => json!(v),
        fairmq::PropertyValue::I32(v) => Value::String(v.to_string()),
        fairmq::PropertyValue::Bool(b) => match spelling % 3 {
            0 => json!(b),
            1 => json!(b.to_string()),
            _ => json!(u8::from(b)),
        },
        other => panic!("no channel setting has the type of {other:?}"),
    }
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_arbitrary_text(text in "\\PC{0,200}", id in "[a-z]{0,4}") {
        let outcome = json_outcome(&text, &id);
        check_message(&outcome, breaks(&text))?;
    }

    #[test]
    fn json_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let outcome = json_outcome(&text, "dev");
        check_message(&outcome, breaks(&text))?;
    }

    /// A valid document with one byte changed, dropped or duplicated.
    #[test]
    fn json_mutated_valid_document(
        channels in prop::collection::vec((sub_channel(), shape()), 1..4),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let list: Vec<Value> = channels
            .iter()
            .enumerate()
            .map(|(i, (s, _))| json!({"name": format!("c{i}"), "type": s.socket_type, "address": s.address}))
            .collect();
        let mut bytes = serde_json::to_vec(&json!({"fairMQOptions": {"devices": [{"id": "dev", "channels": list}]}})).unwrap();
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] = byte,
            1 => { bytes.remove(i); }
            _ => bytes.insert(i, bytes[i]),
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let outcome = json_outcome(&text, "dev");
        check_message(&outcome, breaks(&text))?;
    }

    #[test]
    fn json_near_valid_structure(doc in json_document()) {
        let text = doc.to_string();
        let outcome = json_outcome(&text, "dev");
        check_message(&outcome, breaks(&text))?;
        if let Ok(channels) = &outcome {
            for c in channels {
                prop_assert!(!c.name.is_empty() && !c.name.contains('.'), "bad name {:?}", c.name);
                prop_assert!(!c.sub_channels.is_empty());
                prop_assert!(c.sub_channels.len() <= MAX_NUM_SOCKETS as usize + 8);
            }
        }
    }

    /// Channels written with valid values (ints as numbers or strings, booleans in each
    /// spelling, `numSockets` or a `sockets` array) parse to what was written.
    #[test]
    fn json_valid_channels_parse_to_what_was_built(
        channels in prop::collection::vec((sub_channel(), shape(), any::<u8>()), 0..4),
        other_devices in prop::collection::vec("[a-z]{1,5}", 0..3),
    ) {
        let mut list = Vec::new();
        let mut expected = Vec::new();
        for (i, (common, shape, spelling)) in channels.iter().enumerate() {
            let name = format!("ch{i}");
            let mut obj = Map::new();
            obj.insert("name".to_owned(), json!(name));
            for prop in ChannelProperty::ALL {
                if prop != ChannelProperty::Address {
                    obj.insert(prop.name().to_owned(), json_setting(common.value(prop), *spelling));
                }
            }
            match shape {
                Shape::NumSockets(n) => {
                    obj.insert("numSockets".to_owned(), json_setting(fairmq::PropertyValue::I32(*n), *spelling));
                    obj.insert("sockets".to_owned(), json!([{"address": "ignored://x"}]));
                }
                Shape::Addresses(a) if a.is_empty() => {}
                Shape::Addresses(a) => {
                    let sockets: Vec<Value> = a.iter().map(|addr| json!({"address": addr})).collect();
                    obj.insert("sockets".to_owned(), Value::Array(sockets));
                }
            }
            list.push(Value::Object(obj));
            expected.push(expected_channel(&name, common, shape));
        }
        let mut devices: Vec<Value> = other_devices
            .iter()
            .filter(|d| *d != "dev")
            .map(|d| json!({"id": d, "channels": [{"name": "theirs"}]}))
            .collect();
        devices.push(json!({"id": "dev", "channels": list}));
        let text = json!({"fairMQOptions": {"devices": devices}}).to_string();
        let parsed = json_outcome(&text, "dev");
        prop_assert_eq!(parsed, Ok(expected));
    }

    #[test]
    fn channel_config_arbitrary_tokens(tokens in prop::collection::vec(any::<String>(), 0..4)) {
        let outcome = tokens_outcome(&tokens);
        check_message(&outcome, tokens.iter().any(|t| t.contains(['\n', '\r'])))?;
    }

    /// Tokens of real keys with random values, a name given as a prefix, by `name=`, by both,
    /// or not at all.
    #[test]
    fn channel_config_near_valid(
        prefix in prop_oneof![Just(String::new()), channel_name().prop_map(|n| format!("{n}:")), "\\PC{0,4}:"],
        pairs in prop::collection::vec((key(), prop::option::weighted(0.9, value_text())), 0..8),
        tail in prop_oneof![Just(String::new()), " \\PC{0,8}"],
    ) {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        let token = format!("{prefix}{}{tail}", body.join(","));
        let outcome = tokens_outcome(std::slice::from_ref(&token));
        check_message(&outcome, breaks(&token))?;
        if let Ok(channels) = &outcome {
            prop_assert_eq!(channels.len(), 1);
            prop_assert!(channels[0].sub_channels.len() <= MAX_NUM_SOCKETS as usize);
        }
    }

    /// A token written from valid settings parses to them; several tokens merge with
    /// "first wins".
    #[test]
    fn channel_config_valid_token_parses_to_what_was_built(
        name in channel_name(),
        common in sub_channel(),
        shape in shape(),
        by_prefix in any::<bool>(),
        spelling in any::<u8>(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut args: Vec<String> = ChannelProperty::ALL
            .into_iter()
            .filter(|p| *p != ChannelProperty::Address)
            .map(|p| {
                let v = match json_setting(common.value(p), spelling) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                format!("{}={v}", p.name())
            })
            .collect();
        match &shape {
            Shape::NumSockets(n) => {
                args.push(format!("numSockets={n}"));
                args.push("address=ignored://x".to_owned());
            }
            Shape::Addresses(a) => args.extend(a.iter().map(|addr| format!("address={addr}"))),
        }
        // The settings (not the addresses, whose order is the sub-channels' order) in any
        // rotation.
        let settings = ChannelProperty::ALL.len() - 1;
        args[..settings].rotate_left(order.index(settings));
        let token = if by_prefix {
            format!("{name}:{}", args.join(","))
        } else {
            format!("{},name={name}", args.join(","))
        };
        let expected = expected_channel(&name, &common, &shape);
        let parsed = within(PARSE_DEADLINE, &token.clone(), {
            let token = token.clone();
            move || parse_channel_config_token(&token).map_err(|e| e.to_string())
        });
        prop_assert_eq!(parsed, Ok(expected.clone()));

        let other = format!("{name}:type=pair,address=a://1,address=b://2,address=c://3,address=d://4,address=e://5,address=f://6,address=g://7");
        let merged = tokens_outcome(&[token, other]).unwrap();
        prop_assert_eq!(merged.len(), 1);
        let n = expected.sub_channels.len();
        prop_assert_eq!(&merged[0].sub_channels[..n], &expected.sub_channels[..]);
        prop_assert_eq!(merged[0].sub_channels.len(), n.max(7));
    }
}

// ---- regressions ------------------------------------------------------------------------

/// `numSockets` near `i32::MAX` made the parser allocate that many sub-channels (hundreds of
/// gigabytes) and abort the process; now it is a one-line error naming the channel and field.
#[test]
fn huge_num_sockets_is_an_error_not_an_abort() {
    for n in ["2147483647", "1025", "100000000"] {
        let err = parse_channel_config_token(&format!("data:type=push,numSockets={n}"))
            .expect_err("too many sockets");
        assert!(
            matches!(err, ChannelConfigError::InvalidValue { ref field, ref channel, .. }
                if field == "numSockets" && channel == "data"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("up to 1024"), "{message}");

        let text = format!(
            r#"{{"fairMQOptions":{{"devices":[{{"id":"dev","channels":[{{"name":"data","numSockets":{n}}}]}}]}}}}"#
        );
        let err = parse_json_str(&text, "dev", "f.json").expect_err("too many sockets");
        assert!(err.to_string().contains("'numSockets'"), "{err}");
    }
    let ok = parse_channel_config_token("data:type=push,numSockets=1024").unwrap();
    assert_eq!(ok.sub_channels.len(), 1024);
    let ok = parse_channel_config_token("data:type=push,numSockets=-5").unwrap();
    assert_eq!(
        ok.sub_channels.len(),
        1,
        "a negative count means none given"
    );
}
