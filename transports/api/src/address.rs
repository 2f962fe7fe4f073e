//! Single-endpoint address parsing shared by all transports.
//!
//! A transport binds or connects one endpoint at a time: `tcp://host:port`, `ipc://path` or
//! `inproc://name`. Lists of endpoints and the `@`/`+`/`>` modifiers are a channel matter and
//! handled by the runtime before the transport sees an endpoint.

use crate::TransportError;

/// The transport protocol of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `tcp://host:port`
    Tcp,
    /// `ipc://path` (a Unix socket file)
    Ipc,
    /// `inproc://name` (same process, same transport factory)
    Inproc,
}

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Protocol.
    pub scheme: Scheme,
    /// Everything after `://`.
    pub rest: String,
}

impl Endpoint {
    /// For TCP: host and port (`*` allowed for either when binding).
    pub fn tcp_host_port(&self) -> Option<(&str, &str)> {
        if self.scheme != Scheme::Tcp {
            return None;
        }
        self.rest.rsplit_once(':')
    }
}

fn invalid(address: &str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidAddress {
        address: address.to_string(),
        reason: reason.into(),
    }
}

/// Parses and checks one endpoint, with an error that names the address and says how to fix it.
pub fn parse_endpoint(address: &str) -> Result<Endpoint, TransportError> {
    let trimmed = address.trim();
    if trimmed.is_empty() || trimmed == "unspecified" {
        return Err(invalid(
            address,
            "empty address; give one like tcp://127.0.0.1:5555, ipc:///tmp/name or inproc://name",
        ));
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(invalid(
            address,
            "missing protocol specifier; use tcp://, ipc:// or inproc://",
        ));
    };
    let scheme = match scheme {
        "tcp" => Scheme::Tcp,
        "ipc" => Scheme::Ipc,
        "inproc" => Scheme::Inproc,
        other => {
            return Err(invalid(
                address,
                format!("unsupported protocol '{other}://'; use tcp://, ipc:// or inproc://"),
            ))
        }
    };
    if rest.is_empty() {
        let what = match scheme {
            Scheme::Tcp => "empty TCP address; use tcp://host:port",
            Scheme::Ipc => "empty IPC address; use ipc:///path/to/socket",
            Scheme::Inproc => "empty inproc address; use inproc://name",
        };
        return Err(invalid(address, what));
    }
    if scheme == Scheme::Tcp {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(invalid(
                address,
                "missing port; use tcp://host:port (or tcp://*:port to bind on all interfaces)",
            ));
        };
        if host.is_empty() {
            return Err(invalid(
                address,
                "missing host; use tcp://host:port or tcp://*:port",
            ));
        }
        if port != "*" && port.parse::<u16>().is_err() {
            return Err(invalid(
                address,
                format!("port '{port}' is not a number from 0 to 65535 (or '*')"),
            ));
        }
    }
    Ok(Endpoint {
        scheme,
        rest: rest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_parse() {
        let e = parse_endpoint("tcp://127.0.0.1:5555").unwrap();
        assert_eq!(e.scheme, Scheme::Tcp);
        assert_eq!(e.tcp_host_port(), Some(("127.0.0.1", "5555")));
        assert_eq!(parse_endpoint("tcp://*:*").unwrap().scheme, Scheme::Tcp);
        assert_eq!(parse_endpoint("ipc:///tmp/x").unwrap().rest, "/tmp/x");
        assert_eq!(parse_endpoint("inproc://a").unwrap().scheme, Scheme::Inproc);
    }

    #[test]
    fn bad_endpoints_name_the_problem() {
        for (addr, needle) in [
            ("", "empty address"),
            ("tcp://localhost", "missing port"),
            ("tcp://:5555", "missing host"),
            ("tcp://h:99999", "not a number"),
            ("foo://x", "unsupported protocol 'foo://'"),
            ("localhost:5555", "missing protocol"),
            ("ipc://", "empty IPC"),
            ("inproc://", "empty inproc"),
        ] {
            let err = parse_endpoint(addr).unwrap_err().to_string();
            assert!(err.contains(needle), "{addr:?} gave {err:?}");
            assert!(
                err.contains(&format!("'{addr}'")),
                "{err:?} names the address"
            );
        }
    }
}
