//! Channel configuration (spec §3): what a channel is, where its settings come from, and
//! whether they make sense. Pure and I/O-free except for reading a JSON file and the
//! network-interface lookup in [`network`].
//!
//! * [`SubChannelSpec`] / [`ChannelSpec`]: the 15 settings of a sub-channel (§3.1) with their
//!   defaults; [`ChannelProperty`] names them.
//! * [`json`]: the `--mq-config` parser (§3.2); [`subopt`]: the `--channel-config` parser (§3.3).
//! * Conversion to and from the `chans.<name>.<i>.<prop>` properties of a
//!   [`Properties`] store: [`channel_properties`], [`store_channels`], [`add_channel`],
//!   [`read_sub_channel`], [`read_channels`].
//! * [`validate`]: the checks of §3.4 with FairMQ's messages.
//! * [`address`]: endpoints, `@`/`+`/`>` modifiers, TCP parsing and resolution (§3.5), and the
//!   bind/connect classification of a sub-channel (§1.6).
//! * [`network`]: the IPv4 address of `--network-interface`.

pub mod address;
pub mod json;
pub mod network;
pub mod subopt;
pub mod validate;

use std::path::PathBuf;

use crate::properties::{Properties, PropertyError, PropertyKind, PropertyType, PropertyValue};

pub use address::{
    classify_sub_channel, default_bind_address, join_endpoints, resolve_endpoint,
    resolve_endpoints, split_endpoints, ConnectionMethod, Endpoint, Resolver, SystemResolver,
    TcpAddress,
};
pub use json::{parse_json_file, parse_json_str};
pub use network::NetworkError;
pub use subopt::{parse_channel_config, parse_channel_config_token};
pub use validate::{validate_sub_channel, Validation};

/// The socket types FairMQ accepts for a channel (§3.4 check 2).
pub const SOCKET_TYPES: [&str; 11] = [
    "sub", "pub", "pull", "push", "req", "rep", "xsub", "xpub", "dealer", "router", "pair",
];

/// Errors of channel configuration: parsing, conversion, validation and addresses.
#[derive(Debug, thiserror::Error)]
pub enum ChannelConfigError {
    /// The `--mq-config` file could not be read.
    #[error("cannot read channel configuration file '{}': {source}; check the path given to --mq-config", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON text is not valid JSON.
    #[error("{origin}:{line}:{column}: invalid JSON: {message}; fix the syntax at line {line}, column {column}")]
    JsonSyntax {
        /// The file (or other source) name.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser found.
        message: String,
    },
    /// The JSON is valid, but not shaped like a FairMQ channel configuration.
    #[error("{origin}: {message}")]
    JsonStructure {
        /// The file (or other source) name.
        origin: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No device entry's `key` (or else `id`) equals the parser id.
    #[error("{origin}: no device entry with key or id '{id}' in fairMQOptions.devices (entries present: {available}); pass --id or --config-key naming one of them, or add an entry with \"id\": \"{id}\"", available = list_or_none(.available))]
    NoDeviceEntry {
        /// The file (or other source) name.
        origin: String,
        /// The parser id that was looked up (`--config-key`, else `--id`).
        id: String,
        /// The lookup keys of the device entries present.
        available: Vec<String>,
    },
    /// A channel has no (or an empty) `name`, or one that cannot be used in property keys.
    #[error("{origin}: channel #{index} of device '{device}' {problem}")]
    BadChannelName {
        /// The file (or other source) name.
        origin: String,
        /// The device entry's lookup key.
        device: String,
        /// Position of the channel in the `channels` array (0-based).
        index: usize,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A channel field has a value that cannot be converted to the field's type.
    #[error(
        "{origin}: channel '{channel}': invalid value {value} for '{field}': expected {expected}"
    )]
    InvalidValue {
        /// The file (or other source) name.
        origin: String,
        /// The channel name.
        channel: String,
        /// The field (`linger`, `autoBind`, `numSockets`, …).
        field: String,
        /// The offending value, as written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A `--channel-config` token names no channel.
    #[error("missing channel name in argument of option --channel-config: '{token}'; start the token with '<name>:' or add 'name=<name>'")]
    MissingChannelName {
        /// The token as given.
        token: String,
    },
    /// A `--channel-config` key has no `=value`.
    #[error("--channel-config: key '{key}' has no value in '{token}'; write '{key}=<value>'")]
    MissingValue {
        /// The token as given.
        token: String,
        /// The key without a value.
        key: String,
    },
    /// A sub-channel fails validation with an error that retrying cannot fix (§3.4
    /// checks 2, 4, 10–14). The display is FairMQ's message exactly.
    #[error("{message}")]
    InvalidChannel {
        /// The sub-channel's full name (`data[0]`).
        channel: String,
        /// FairMQ's message, e.g. `Invalid channel type: 'foo'`.
        message: String,
    },
    /// Neither the method nor the address says whether a sub-channel binds or connects.
    #[error("Cannot update configuration. Socket method (bind/connect) for channel {channel} not specified.")]
    MethodNotSpecified {
        /// The sub-channel's full name (`data[0]`).
        channel: String,
    },
    /// A channel property in the store has the wrong type.
    #[error("channel property: {0}")]
    Property(#[from] PropertyError),
    /// A `tcp://` address cannot be parsed.
    #[error("invalid TCP address '{address}': {reason}")]
    InvalidTcpAddress {
        /// The address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TCP host name could not be resolved to an IPv4 address.
    #[error("could not resolve host '{host}' of address '{address}' to an IPv4 address")]
    Unresolvable {
        /// The host part.
        host: String,
        /// The full address.
        address: String,
    },
    /// The network interface lookup failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The 15 settings of a sub-channel, by their config/JSON names (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelProperty {
    /// `type` (string): socket pattern.
    Type,
    /// `method` (string): `bind` / `connect`.
    Method,
    /// `address` (string): endpoint(s).
    Address,
    /// `transport` (string): `default`, `zeromq`, `shmem`.
    Transport,
    /// `sndBufSize` (int): send high-water mark in messages.
    SndBufSize,
    /// `rcvBufSize` (int): receive high-water mark in messages.
    RcvBufSize,
    /// `sndKernelSize` (int): kernel send buffer bytes, 0 = not set.
    SndKernelSize,
    /// `rcvKernelSize` (int): kernel receive buffer bytes, 0 = not set.
    RcvKernelSize,
    /// `sndTimeoutMs` (int): default send timeout, -1 = forever.
    SndTimeoutMs,
    /// `rcvTimeoutMs` (int): default receive timeout, -1 = forever.
    RcvTimeoutMs,
    /// `linger` (int): ms to keep unsent messages on close.
    Linger,
    /// `rateLogging` (int): rate log interval in seconds, 0 = off.
    RateLogging,
    /// `portRangeMin` (int): auto-bind port range start.
    PortRangeMin,
    /// `portRangeMax` (int): auto-bind port range end (inclusive).
    PortRangeMax,
    /// `autoBind` (bool): try random ports when a TCP bind fails.
    AutoBind,
}

impl ChannelProperty {
    /// All 15 properties in the order of §3.1.
    pub const ALL: [ChannelProperty; 15] = [
        ChannelProperty::Type,
        ChannelProperty::Method,
        ChannelProperty::Address,
        ChannelProperty::Transport,
        ChannelProperty::SndBufSize,
        ChannelProperty::RcvBufSize,
        ChannelProperty::SndKernelSize,
        ChannelProperty::RcvKernelSize,
        ChannelProperty::SndTimeoutMs,
        ChannelProperty::RcvTimeoutMs,
        ChannelProperty::Linger,
        ChannelProperty::RateLogging,
        ChannelProperty::PortRangeMin,
        ChannelProperty::PortRangeMax,
        ChannelProperty::AutoBind,
    ];

    /// The config/JSON name, e.g. `sndBufSize`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelProperty::Type => "type",
            ChannelProperty::Method => "method",
            ChannelProperty::Address => "address",
            ChannelProperty::Transport => "transport",
            ChannelProperty::SndBufSize => "sndBufSize",
            ChannelProperty::RcvBufSize => "rcvBufSize",
            ChannelProperty::SndKernelSize => "sndKernelSize",
            ChannelProperty::RcvKernelSize => "rcvKernelSize",
            ChannelProperty::SndTimeoutMs => "sndTimeoutMs",
            ChannelProperty::RcvTimeoutMs => "rcvTimeoutMs",
            ChannelProperty::Linger => "linger",
            ChannelProperty::RateLogging => "rateLogging",
            ChannelProperty::PortRangeMin => "portRangeMin",
            ChannelProperty::PortRangeMax => "portRangeMax",
            ChannelProperty::AutoBind => "autoBind",
        }
    }

    /// The property named `name` (case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<ChannelProperty> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The value type in the property store: string, int (`i32`) or bool.
    pub fn value_type(self) -> PropertyType {
        match self {
            ChannelProperty::Type
            | ChannelProperty::Method
            | ChannelProperty::Address
            | ChannelProperty::Transport => PropertyType::String,
            ChannelProperty::AutoBind => PropertyType::Bool,
            _ => PropertyType::I32,
        }
    }

    /// The default value (§3.1).
    pub fn default_value(self) -> PropertyValue {
        SubChannelSpec::default().value(self)
    }
}

/// The settings of one sub-channel (one socket), with FairMQ's defaults (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubChannelSpec {
    /// `type`: socket pattern (`push`, `pull`, …); default `unspecified`.
    pub socket_type: String,
    /// `method`: `bind` / `connect`; default `unspecified`.
    pub method: String,
    /// `address`: endpoint(s), comma separated; default `unspecified`.
    pub address: String,
    /// `transport`: `default`, `zeromq` or `shmem`; default `default`.
    pub transport: String,
    /// `sndBufSize`: send HWM in messages; default 1000.
    pub snd_buf_size: i32,
    /// `rcvBufSize`: receive HWM in messages; default 1000.
    pub rcv_buf_size: i32,
    /// `sndKernelSize`: kernel send buffer bytes; default 0 (not set).
    pub snd_kernel_size: i32,
    /// `rcvKernelSize`: kernel receive buffer bytes; default 0 (not set).
    pub rcv_kernel_size: i32,
    /// `sndTimeoutMs`: default send timeout; default -1 (forever).
    pub snd_timeout_ms: i32,
    /// `rcvTimeoutMs`: default receive timeout; default -1 (forever).
    pub rcv_timeout_ms: i32,
    /// `linger`: ms; default 500.
    pub linger: i32,
    /// `rateLogging`: seconds; default 1.
    pub rate_logging: i32,
    /// `portRangeMin`: default 22000.
    pub port_range_min: i32,
    /// `portRangeMax`: default 23000.
    pub port_range_max: i32,
    /// `autoBind`: default true.
    pub auto_bind: bool,
}

impl Default for SubChannelSpec {
    fn default() -> Self {
        SubChannelSpec {
            socket_type: "unspecified".to_owned(),
            method: "unspecified".to_owned(),
            address: "unspecified".to_owned(),
            transport: "default".to_owned(),
            snd_buf_size: 1000,
            rcv_buf_size: 1000,
            snd_kernel_size: 0,
            rcv_kernel_size: 0,
            snd_timeout_ms: -1,
            rcv_timeout_ms: -1,
            linger: 500,
            rate_logging: 1,
            port_range_min: 22000,
            port_range_max: 23000,
            auto_bind: true,
        }
    }
}

impl SubChannelSpec {
    fn int_field(&mut self, prop: ChannelProperty) -> Option<&mut i32> {
        Some(match prop {
            ChannelProperty::SndBufSize => &mut self.snd_buf_size,
            ChannelProperty::RcvBufSize => &mut self.rcv_buf_size,
            ChannelProperty::SndKernelSize => &mut self.snd_kernel_size,
            ChannelProperty::RcvKernelSize => &mut self.rcv_kernel_size,
            ChannelProperty::SndTimeoutMs => &mut self.snd_timeout_ms,
            ChannelProperty::RcvTimeoutMs => &mut self.rcv_timeout_ms,
            ChannelProperty::Linger => &mut self.linger,
            ChannelProperty::RateLogging => &mut self.rate_logging,
            ChannelProperty::PortRangeMin => &mut self.port_range_min,
            ChannelProperty::PortRangeMax => &mut self.port_range_max,
            _ => return None,
        })
    }

    fn string_field(&mut self, prop: ChannelProperty) -> Option<&mut String> {
        Some(match prop {
            ChannelProperty::Type => &mut self.socket_type,
            ChannelProperty::Method => &mut self.method,
            ChannelProperty::Address => &mut self.address,
            ChannelProperty::Transport => &mut self.transport,
            _ => return None,
        })
    }

    /// The value of one setting, typed as in the property store.
    pub fn value(&self, prop: ChannelProperty) -> PropertyValue {
        let s = |v: &String| PropertyValue::String(v.clone());
        match prop {
            ChannelProperty::Type => s(&self.socket_type),
            ChannelProperty::Method => s(&self.method),
            ChannelProperty::Address => s(&self.address),
            ChannelProperty::Transport => s(&self.transport),
            ChannelProperty::SndBufSize => PropertyValue::I32(self.snd_buf_size),
            ChannelProperty::RcvBufSize => PropertyValue::I32(self.rcv_buf_size),
            ChannelProperty::SndKernelSize => PropertyValue::I32(self.snd_kernel_size),
            ChannelProperty::RcvKernelSize => PropertyValue::I32(self.rcv_kernel_size),
            ChannelProperty::SndTimeoutMs => PropertyValue::I32(self.snd_timeout_ms),
            ChannelProperty::RcvTimeoutMs => PropertyValue::I32(self.rcv_timeout_ms),
            ChannelProperty::Linger => PropertyValue::I32(self.linger),
            ChannelProperty::RateLogging => PropertyValue::I32(self.rate_logging),
            ChannelProperty::PortRangeMin => PropertyValue::I32(self.port_range_min),
            ChannelProperty::PortRangeMax => PropertyValue::I32(self.port_range_max),
            ChannelProperty::AutoBind => PropertyValue::Bool(self.auto_bind),
        }
    }

    /// Sets one setting. A value of the wrong type is returned back as the error.
    pub fn set_value(
        &mut self,
        prop: ChannelProperty,
        value: PropertyValue,
    ) -> Result<(), PropertyValue> {
        match (prop.value_type(), value) {
            (PropertyType::String, PropertyValue::String(s)) => {
                if let Some(field) = self.string_field(prop) {
                    *field = s;
                }
                Ok(())
            }
            (PropertyType::I32, PropertyValue::I32(v)) => {
                if let Some(field) = self.int_field(prop) {
                    *field = v;
                }
                Ok(())
            }
            (PropertyType::Bool, PropertyValue::Bool(b)) => {
                self.auto_bind = b;
                Ok(())
            }
            (_, other) => Err(other),
        }
    }
}

/// A channel: a name and its sub-channels (index = position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The channel name (no `.`; see §3.1).
    pub name: String,
    /// The sub-channels, index 0..N-1.
    pub sub_channels: Vec<SubChannelSpec>,
}

/// The full name of a sub-channel, `<name>[<index>]` (e.g. `data[0]`).
pub fn sub_channel_name(name: &str, index: usize) -> String {
    format!("{name}[{index}]")
}

/// The property key of one setting: `chans.<name>.<index>.<prop>`.
pub fn channel_property_key(name: &str, index: usize, prop: ChannelProperty) -> String {
    format!("chans.{name}.{index}.{}", prop.name())
}

/// All 15 properties of every sub-channel of `channels`, as `(key, value)` pairs in channel,
/// index and §3.1 order.
pub fn channel_properties(channels: &[ChannelSpec]) -> Vec<(String, PropertyValue)> {
    let mut out = Vec::new();
    for channel in channels {
        for (index, sub) in channel.sub_channels.iter().enumerate() {
            for prop in ChannelProperty::ALL {
                out.push((
                    channel_property_key(&channel.name, index, prop),
                    sub.value(prop),
                ));
            }
        }
    }
    out
}

/// Writes all properties of `channels` into `properties` (one `set_many`, so subscribers are
/// notified after everything is stored).
pub fn store_channels(properties: &Properties, channels: &[ChannelSpec]) {
    properties.set_many(channel_properties(channels));
}

/// Appends `spec` as a new sub-channel of channel `name` (index = the current number of
/// sub-channels, from [`Properties::channel_info`]) and writes all 15 settings. Returns the
/// new index. Unlike FairMQ's `AddChannel`, the timeouts are written too.
pub fn add_channel(properties: &Properties, name: &str, spec: &SubChannelSpec) -> usize {
    let index = properties
        .channel_info()
        .get(name)
        .copied()
        .unwrap_or_default();
    properties.set_many(
        ChannelProperty::ALL
            .into_iter()
            .map(|prop| (channel_property_key(name, index, prop), spec.value(prop))),
    );
    index
}

fn read_prop<T: PropertyKind>(
    properties: &Properties,
    name: &str,
    index: usize,
    prop: ChannelProperty,
    default: T,
) -> Result<T, PropertyError> {
    properties.get_or(&channel_property_key(name, index, prop), default)
}

/// Reads sub-channel `index` of channel `name` from the store. Missing settings take their
/// defaults; a setting stored with the wrong type (e.g. a string `linger`) is an error naming
/// the key and both types.
pub fn read_sub_channel(
    properties: &Properties,
    name: &str,
    index: usize,
) -> Result<SubChannelSpec, ChannelConfigError> {
    let mut spec = SubChannelSpec::default();
    for prop in ChannelProperty::ALL {
        let value = match prop.value_type() {
            PropertyType::String => {
                let default = match spec.value(prop) {
                    PropertyValue::String(s) => s,
                    _ => String::new(),
                };
                PropertyValue::String(read_prop(properties, name, index, prop, default)?)
            }
            PropertyType::Bool => {
                PropertyValue::Bool(read_prop(properties, name, index, prop, spec.auto_bind)?)
            }
            _ => {
                let default = match spec.value(prop) {
                    PropertyValue::I32(i) => i,
                    _ => 0,
                };
                PropertyValue::I32(read_prop(properties, name, index, prop, default)?)
            }
        };
        // The value was read with the property's own type, so this cannot fail.
        let _ = spec.set_value(prop, value);
    }
    Ok(spec)
}

/// Reads every channel found by [`Properties::channel_info`] (sorted by name).
pub fn read_channels(properties: &Properties) -> Result<Vec<ChannelSpec>, ChannelConfigError> {
    properties
        .channel_info()
        .into_iter()
        .map(|(name, count)| {
            let sub_channels = (0..count)
                .map(|i| read_sub_channel(properties, &name, i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ChannelSpec { name, sub_channels })
        })
        .collect()
}

/// Merges `incoming` into `channels` with FairMQ's "first wins per property key" rule:
/// a channel name seen before keeps its existing sub-channels; only sub-channels at indices
/// beyond the existing count are appended.
pub(crate) fn merge_channels(channels: &mut Vec<ChannelSpec>, incoming: ChannelSpec) {
    if let Some(existing) = channels.iter_mut().find(|c| c.name == incoming.name) {
        let have = existing.sub_channels.len();
        existing
            .sub_channels
            .extend(incoming.sub_channels.into_iter().skip(have));
    } else {
        channels.push(incoming);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let expected: [(&str, PropertyValue); 15] = [
            ("type", "unspecified".into()),
            ("method", "unspecified".into()),
            ("address", "unspecified".into()),
            ("transport", "default".into()),
            ("sndBufSize", 1000i32.into()),
            ("rcvBufSize", 1000i32.into()),
            ("sndKernelSize", 0i32.into()),
            ("rcvKernelSize", 0i32.into()),
            ("sndTimeoutMs", (-1i32).into()),
            ("rcvTimeoutMs", (-1i32).into()),
            ("linger", 500i32.into()),
            ("rateLogging", 1i32.into()),
            ("portRangeMin", 22000i32.into()),
            ("portRangeMax", 23000i32.into()),
            ("autoBind", true.into()),
        ];
        for (prop, (name, value)) in ChannelProperty::ALL.into_iter().zip(expected) {
            assert_eq!(prop.name(), name);
            assert_eq!(ChannelProperty::from_name(name), Some(prop));
            assert_eq!(prop.default_value(), value, "{name}");
            assert_eq!(prop.value_type(), value.property_type(), "{name}");
        }
        assert_eq!(ChannelProperty::from_name("numSockets"), None);
        assert_eq!(ChannelProperty::from_name("Linger"), None);
    }

    #[test]
    fn set_value_checks_type() {
        let mut spec = SubChannelSpec::default();
        spec.set_value(ChannelProperty::Linger, 7i32.into())
            .unwrap();
        spec.set_value(ChannelProperty::Type, "push".into())
            .unwrap();
        spec.set_value(ChannelProperty::AutoBind, false.into())
            .unwrap();
        assert_eq!(spec.linger, 7);
        assert_eq!(spec.socket_type, "push");
        assert!(!spec.auto_bind);
        assert_eq!(
            spec.set_value(ChannelProperty::Linger, "7".into()),
            Err(PropertyValue::String("7".into()))
        );
        assert_eq!(spec.linger, 7);
    }

    fn sample() -> Vec<ChannelSpec> {
        let sub = |addr: &str| SubChannelSpec {
            socket_type: "push".into(),
            method: "bind".into(),
            address: addr.into(),
            snd_timeout_ms: 100,
            auto_bind: false,
            ..SubChannelSpec::default()
        };
        vec![ChannelSpec {
            name: "data".into(),
            sub_channels: vec![sub("tcp://*:5555"), sub("tcp://*:5556")],
        }]
    }

    #[test]
    fn to_properties_writes_all_fifteen_with_types() {
        let props = channel_properties(&sample());
        assert_eq!(props.len(), 30);
        let p = Properties::new();
        store_channels(&p, &sample());
        assert_eq!(
            p.get::<String>("chans.data.0.address").unwrap(),
            "tcp://*:5555"
        );
        assert_eq!(
            p.get::<String>("chans.data.1.address").unwrap(),
            "tcp://*:5556"
        );
        assert_eq!(p.get::<String>("chans.data.1.type").unwrap(), "push");
        assert_eq!(
            p.get::<String>("chans.data.0.transport").unwrap(),
            "default"
        );
        assert_eq!(p.get::<i32>("chans.data.0.sndBufSize").unwrap(), 1000);
        assert_eq!(p.get::<i32>("chans.data.0.sndTimeoutMs").unwrap(), 100);
        assert_eq!(p.get::<i32>("chans.data.1.portRangeMax").unwrap(), 23000);
        assert!(!p.get::<bool>("chans.data.1.autoBind").unwrap());
        assert_eq!(p.channel_info().get("data"), Some(&2));
    }

    #[test]
    fn round_trip_through_properties() {
        let p = Properties::new();
        store_channels(&p, &sample());
        assert_eq!(read_channels(&p).unwrap(), sample());
        assert_eq!(
            read_sub_channel(&p, "data", 1).unwrap(),
            sample()[0].sub_channels[1]
        );
    }

    #[test]
    fn read_missing_uses_defaults_and_wrong_type_is_error() {
        let p = Properties::new();
        p.set("chans.x.0.type", "pair");
        let spec = read_sub_channel(&p, "x", 0).unwrap();
        assert_eq!(
            spec,
            SubChannelSpec {
                socket_type: "pair".into(),
                ..SubChannelSpec::default()
            }
        );
        p.set("chans.x.0.linger", "500");
        let err = read_sub_channel(&p, "x", 0).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("chans.x.0.linger"), "{msg}");
        assert!(msg.contains("'string'") && msg.contains("'int'"), "{msg}");
    }

    #[test]
    fn add_channel_appends_index() {
        let p = Properties::new();
        let spec = SubChannelSpec {
            socket_type: "pull".into(),
            rcv_timeout_ms: 250,
            ..SubChannelSpec::default()
        };
        assert_eq!(add_channel(&p, "in", &spec), 0);
        assert_eq!(add_channel(&p, "in", &spec), 1);
        assert_eq!(p.channel_info().get("in"), Some(&2));
        // Timeouts are kept (FairMQ's AddChannel drops them).
        assert_eq!(p.get::<i32>("chans.in.1.rcvTimeoutMs").unwrap(), 250);
    }

    #[test]
    fn merge_first_wins() {
        let mut channels = sample();
        let mut other = sample()[0].clone();
        for s in &mut other.sub_channels {
            s.linger = 1;
        }
        merge_channels(&mut channels, other);
        assert_eq!(channels, sample());
        let extra = ChannelSpec {
            name: "data".into(),
            sub_channels: vec![SubChannelSpec::default(); 3],
        };
        merge_channels(&mut channels, extra);
        assert_eq!(channels[0].sub_channels.len(), 3);
        assert_eq!(channels[0].sub_channels[1], sample()[0].sub_channels[1]);
        assert_eq!(channels[0].sub_channels[2], SubChannelSpec::default());
        merge_channels(
            &mut channels,
            ChannelSpec {
                name: "other".into(),
                sub_channels: vec![SubChannelSpec::default()],
            },
        );
        assert_eq!(channels.len(), 2);
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(sub_channel_name("data", 3), "data[3]");
        assert_eq!(
            channel_property_key("data", 1, ChannelProperty::RcvKernelSize),
            "chans.data.1.rcvKernelSize"
        );
    }
}
