//! Channel addresses (spec §3.5): endpoints, `@`/`+`/`>` modifiers, the per-endpoint
//! bind/connect decision, `tcp://host:port` parsing, host resolution through a [`Resolver`]
//! hook, and the bind/connect classification of a sub-channel (§1.6).
//!
//! An address is a `,`-separated list of endpoints. An endpoint may start with `@` (bind) or
//! `+`/`>` (connect), overriding the channel's method; `>` is normalised to `+` when an
//! endpoint is written back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

use super::network;
use super::{sub_channel_name, ChannelConfigError, SubChannelSpec};

/// Bind or connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionMethod {
    /// Bind the endpoint.
    Bind,
    /// Connect to the endpoint.
    Connect,
}

impl ConnectionMethod {
    /// Parses a channel `method` value: exactly `bind` or `connect`.
    pub fn from_method(method: &str) -> Option<ConnectionMethod> {
        match method {
            "bind" => Some(ConnectionMethod::Bind),
            "connect" => Some(ConnectionMethod::Connect),
            _ => None,
        }
    }

    /// `bind` or `connect`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMethod::Bind => "bind",
            ConnectionMethod::Connect => "connect",
        }
    }
}

impl fmt::Display for ConnectionMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint of an address, with its optional method modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `Some(Bind)` for a leading `@`, `Some(Connect)` for `+` or `>`, else `None`.
    pub modifier: Option<ConnectionMethod>,
    /// The endpoint without its modifier, e.g. `tcp://*:5555`.
    pub address: String,
}

impl Endpoint {
    /// Splits off a leading `@`, `+` or `>`.
    pub fn parse(endpoint: &str) -> Endpoint {
        let (modifier, address) = match endpoint.as_bytes().first() {
            Some(b'@') => (Some(ConnectionMethod::Bind), &endpoint[1..]),
            Some(b'+' | b'>') => (Some(ConnectionMethod::Connect), &endpoint[1..]),
            _ => (None, endpoint),
        };
        Endpoint {
            modifier,
            address: address.to_owned(),
        }
    }

    /// Whether to bind or connect this endpoint: its modifier, else the channel's `method`
    /// (`None` if that is neither `bind` nor `connect`).
    pub fn method(&self, channel_method: &str) -> Option<ConnectionMethod> {
        self.modifier
            .or_else(|| ConnectionMethod::from_method(channel_method))
    }
}

impl fmt::Display for Endpoint {
    /// The endpoint with its modifier, `>` normalised to `+`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.modifier {
            Some(ConnectionMethod::Bind) => write!(f, "@{}", self.address),
            Some(ConnectionMethod::Connect) => write!(f, "+{}", self.address),
            None => f.write_str(&self.address),
        }
    }
}

/// Splits an address into its `,`-separated endpoints.
pub fn split_endpoints(address: &str) -> Vec<Endpoint> {
    address.split(',').map(Endpoint::parse).collect()
}

/// Joins endpoints back with `,` (modifiers kept, `>` written as `+`).
pub fn join_endpoints(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(Endpoint::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A parsed `tcp://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpAddress {
    /// The host: a name, an IPv4 address, `*` (all interfaces), or a bracketed IPv6 address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl TcpAddress {
    /// Parses `tcp://host:port` (the port is the text after the last `:`).
    pub fn parse(address: &str) -> Result<TcpAddress, ChannelConfigError> {
        let err = |reason: &str| ChannelConfigError::InvalidTcpAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = address
            .strip_prefix("tcp://")
            .ok_or_else(|| err("it does not start with tcp://"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("missing ':<port>'"))?;
        if host.is_empty() {
            return Err(err("empty host; use '*' to bind on all interfaces"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| err("the port must be a number from 0 to 65535"))?;
        Ok(TcpAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// `true` for the host `*` (bind on all interfaces).
    pub fn is_wildcard(&self) -> bool {
        self.host == "*"
    }

    /// `true` if the host is an IP literal (IPv4, or IPv6 in brackets) or `*`, i.e. needs
    /// no resolution.
    pub fn is_literal(&self) -> bool {
        if self.is_wildcard() {
            return true;
        }
        let host = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        host.parse::<IpAddr>().is_ok()
    }
}

impl fmt::Display for TcpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}:{}", self.host, self.port)
    }
}

/// Resolves a host name to an IPv4 address; a hook so that tests and embedders can avoid
/// DNS. Any `Fn(&str) -> Option<Ipv4Addr>` is a resolver.
pub trait Resolver {
    /// The first IPv4 address of `host`, if any.
    fn resolve_ipv4(&self, host: &str) -> Option<Ipv4Addr>;
}

impl<F: Fn(&str) -> Option<Ipv4Addr>> Resolver for F {
    fn resolve_ipv4(&self, host: &str) -> Option<Ipv4Addr> {
        self(host)
    }
}

/// The system resolver ([`ToSocketAddrs`]: `/etc/hosts`, DNS); `localhost` → `127.0.0.1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve_ipv4(&self, host: &str) -> Option<Ipv4Addr> {
        (host, 0u16)
            .to_socket_addrs()
            .ok()?
            .find_map(|addr| match addr.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
    }
}

/// Resolves the host of one endpoint address (without modifier): a `tcp://` endpoint whose
/// host is a name becomes `tcp://<first IPv4>:<port>`. Other schemes, `*` and IP literals are
/// returned unchanged. Fails if the TCP address is malformed or the name does not resolve.
pub fn resolve_endpoint(
    address: &str,
    resolver: &dyn Resolver,
) -> Result<String, ChannelConfigError> {
    if !address.starts_with("tcp://") {
        return Ok(address.to_owned());
    }
    let tcp = TcpAddress::parse(address)?;
    if tcp.is_literal() {
        return Ok(address.to_owned());
    }
    let ip = resolver
        .resolve_ipv4(&tcp.host)
        .ok_or_else(|| ChannelConfigError::Unresolvable {
            host: tcp.host.clone(),
            address: address.to_owned(),
        })?;
    Ok(TcpAddress {
        host: ip.to_string(),
        port: tcp.port,
    }
    .to_string())
}

/// Resolves every endpoint of a `,`-separated address (see [`resolve_endpoint`]), keeping
/// modifiers (`>` becomes `+`), and joins the result with `,`.
pub fn resolve_endpoints(
    address: &str,
    resolver: &dyn Resolver,
) -> Result<String, ChannelConfigError> {
    let endpoints = split_endpoints(address)
        .into_iter()
        .map(|ep| {
            Ok(Endpoint {
                modifier: ep.modifier,
                address: resolve_endpoint(&ep.address, resolver)?,
            })
        })
        .collect::<Result<Vec<_>, ChannelConfigError>>()?;
    Ok(join_endpoints(&endpoints))
}

/// Whether sub-channel `index` of channel `name` goes to the binding or the connecting list
/// in INITIALIZING DEVICE (§1.6): `method` `bind`/`connect` decide; otherwise an address with
/// any `@`, `+` or `>` is connecting (its modifiers decide per endpoint); otherwise it is the
/// error `Cannot update configuration. Socket method (bind/connect) for channel <name[i]> not
/// specified.`
pub fn classify_sub_channel(
    name: &str,
    index: usize,
    spec: &SubChannelSpec,
) -> Result<ConnectionMethod, ChannelConfigError> {
    if let Some(method) = ConnectionMethod::from_method(&spec.method) {
        return Ok(method);
    }
    if spec.address.contains(['@', '+', '>']) {
        return Ok(ConnectionMethod::Connect);
    }
    Err(ChannelConfigError::MethodNotSpecified {
        channel: sub_channel_name(name, index),
    })
}

/// The address synthesised for a bind sub-channel without address: `tcp://<ip>:1`, with the
/// IPv4 address of `network_interface` (`default` = the default route's interface). Port 1
/// makes the first bind fail so that auto-bind picks a port from the channel's range. Without a
/// default route, `default` binds to all interfaces (`tcp://*:1`, logged at debug level); an
/// interface named by the user that does not exist or has no IPv4 address is an error (FairMQ
/// falls back to all interfaces, so a typo silently exposes the channel everywhere).
pub fn default_bind_address(network_interface: &str) -> Result<String, network::NetworkError> {
    match network::interface_ipv4(network_interface) {
        Ok(ip) => Ok(format!("tcp://{ip}:1")),
        Err(e) if network_interface == "default" => {
            tracing::debug!("{e}; binding to all interfaces (tcp://*:1)");
            Ok("tcp://*:1".to_owned())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_modifiers() {
        let eps = split_endpoints("@tcp://*:5555,+ipc://a,>inproc://b,tcp://h:1");
        assert_eq!(
            eps,
            vec![
                Endpoint {
                    modifier: Some(ConnectionMethod::Bind),
                    address: "tcp://*:5555".into()
                },
                Endpoint {
                    modifier: Some(ConnectionMethod::Connect),
                    address: "ipc://a".into()
                },
                Endpoint {
                    modifier: Some(ConnectionMethod::Connect),
                    address: "inproc://b".into()
                },
                Endpoint {
                    modifier: None,
                    address: "tcp://h:1".into()
                },
            ]
        );
        assert_eq!(
            join_endpoints(&eps),
            "@tcp://*:5555,+ipc://a,+inproc://b,tcp://h:1"
        );
        assert_eq!(split_endpoints("ipc://x").len(), 1);
        assert_eq!(
            split_endpoints(""),
            vec![Endpoint {
                modifier: None,
                address: String::new()
            }]
        );
    }

    #[test]
    fn per_endpoint_method() {
        let eps = split_endpoints("@tcp://*:1,+tcp://h:2,tcp://h:3");
        let methods: Vec<_> = eps.iter().map(|e| e.method("connect")).collect();
        assert_eq!(
            methods,
            vec![
                Some(ConnectionMethod::Bind),
                Some(ConnectionMethod::Connect),
                Some(ConnectionMethod::Connect)
            ]
        );
        assert_eq!(eps[2].method("bind"), Some(ConnectionMethod::Bind));
        assert_eq!(eps[2].method("unspecified"), None);
        assert_eq!(eps[0].method("unspecified"), Some(ConnectionMethod::Bind));
    }

    #[test]
    fn tcp_parsing() {
        assert_eq!(
            TcpAddress::parse("tcp://*:5555").unwrap(),
            TcpAddress {
                host: "*".into(),
                port: 5555
            }
        );
        let a = TcpAddress::parse("tcp://localhost:22000").unwrap();
        assert_eq!(a.host, "localhost");
        assert_eq!(a.port, 22000);
        assert!(!a.is_literal());
        assert_eq!(a.to_string(), "tcp://localhost:22000");
        let v6 = TcpAddress::parse("tcp://[::1]:80").unwrap();
        assert_eq!(v6.host, "[::1]");
        assert!(v6.is_literal());
        assert!(TcpAddress::parse("tcp://*:1").unwrap().is_wildcard());
        assert!(TcpAddress::parse("tcp://10.0.0.1:1").unwrap().is_literal());
        for bad in [
            "tcp://host",
            "tcp://:5",
            "tcp://h:x",
            "tcp://h:70000",
            "ipc://a:1",
        ] {
            assert!(
                matches!(
                    TcpAddress::parse(bad),
                    Err(ChannelConfigError::InvalidTcpAddress { .. })
                ),
                "{bad}"
            );
        }
    }

    fn fake(host: &str) -> Option<Ipv4Addr> {
        match host {
            "localhost" => Some(Ipv4Addr::LOCALHOST),
            "node1" => Some(Ipv4Addr::new(10, 1, 2, 3)),
            _ => None,
        }
    }

    #[test]
    fn resolution_with_hook() {
        assert_eq!(
            resolve_endpoint("tcp://localhost:5555", &fake).unwrap(),
            "tcp://127.0.0.1:5555"
        );
        assert_eq!(
            resolve_endpoint("tcp://*:5555", &fake).unwrap(),
            "tcp://*:5555"
        );
        assert_eq!(
            resolve_endpoint("tcp://192.168.0.1:1", &fake).unwrap(),
            "tcp://192.168.0.1:1"
        );
        assert_eq!(resolve_endpoint("ipc://x", &fake).unwrap(), "ipc://x");
        let err = resolve_endpoint("tcp://nowhere:1", &fake).unwrap_err();
        assert!(
            matches!(err, ChannelConfigError::Unresolvable { ref host, .. } if host == "nowhere")
        );
        assert_eq!(
            resolve_endpoints("@tcp://localhost:1,>tcp://node1:2,ipc://a", &fake).unwrap(),
            "@tcp://127.0.0.1:1,+tcp://10.1.2.3:2,ipc://a"
        );
    }

    #[test]
    fn system_resolver_localhost() {
        assert_eq!(
            SystemResolver.resolve_ipv4("localhost"),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            resolve_endpoint("tcp://localhost:7", &SystemResolver).unwrap(),
            "tcp://127.0.0.1:7"
        );
    }

    #[test]
    fn classification() {
        let spec = |method: &str, address: &str| SubChannelSpec {
            method: method.into(),
            address: address.into(),
            ..SubChannelSpec::default()
        };
        assert_eq!(
            classify_sub_channel("d", 0, &spec("bind", "tcp://*:1")).unwrap(),
            ConnectionMethod::Bind
        );
        assert_eq!(
            classify_sub_channel("d", 0, &spec("connect", "@tcp://*:1")).unwrap(),
            ConnectionMethod::Connect
        );
        for addr in ["@tcp://*:1", "+ipc://a", ">ipc://a"] {
            assert_eq!(
                classify_sub_channel("d", 0, &spec("unspecified", addr)).unwrap(),
                ConnectionMethod::Connect
            );
        }
        let err = classify_sub_channel("data", 2, &spec("unspecified", "tcp://h:1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot update configuration. Socket method (bind/connect) for channel data[2] not specified."
        );
    }

    #[test]
    fn a_named_interface_that_does_not_exist_is_an_error() {
        let e = default_bind_address("fmq-no-such-if0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("network interface 'fmq-no-such-if0' does not exist")
                && e.contains("--network-interface"),
            "{e}"
        );
    }

    #[test]
    fn default_bind_address_shape() {
        let a = default_bind_address("default").expect("default never fails");
        assert!(a.starts_with("tcp://") && a.ends_with(":1"), "{a}");
    }
}
