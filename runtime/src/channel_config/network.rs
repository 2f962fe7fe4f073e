//! IPv4 address of a network interface, for `--network-interface` (spec §1.6, §2.2).
//!
//! Linux only, without `unsafe` and without running external tools: the default route's
//! interface comes from `/proc/net/route` (destination `00000000`); an interface's IPv4
//! address is found by matching the local host addresses listed in `/proc/net/fib_trie`
//! (`/32 host LOCAL`) against the subnet routes of that interface in `/proc/net/route`.
//! Loopback interfaces (flag `IFF_LOOPBACK` in `/sys/class/net/<name>/flags`) have no such
//! route and take their local address in 127.0.0.0/8.
//!
//! Limitation: an interface whose only address has no subnet route (e.g. a `/32` point-to-point
//! address) is reported as having no IPv4 address. The parsers are public and pure so that
//! they can be tested on captured text.

use std::net::Ipv4Addr;
use std::path::Path;

/// Errors of the interface lookup. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A `/proc` or `/sys` file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc/net/route` has no default route.
    #[error("no default route found in /proc/net/route; pass --network-interface <name> to choose the interface for bind channels without address")]
    NoDefaultRoute,
    /// No interface of that name exists.
    #[error(
        "network interface '{0}' does not exist (see /sys/class/net); check --network-interface"
    )]
    NoSuchInterface(String),
    /// The interface exists but no IPv4 address could be found for it.
    #[error("network interface '{0}' has no IPv4 address; check --network-interface")]
    NoIpv4Address(String),
}

/// One row of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interface name (`eth0`).
    pub interface: String,
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Gateway (0.0.0.0 for directly connected networks).
    pub gateway: Ipv4Addr,
    /// Network mask.
    pub mask: Ipv4Addr,
}

/// `/proc/net/route` prints addresses as the hex of the 32-bit value in host byte order,
/// i.e. the in-memory (network order) bytes read as a native integer.
fn parse_route_hex(text: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(text, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// Parses the text of `/proc/net/route` (header line skipped, malformed lines ignored).
pub fn parse_routes(route_table: &str) -> Vec<Route> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            Some(Route {
                interface: fields[0].to_owned(),
                destination: parse_route_hex(fields[1])?,
                gateway: parse_route_hex(fields[2])?,
                mask: parse_route_hex(fields[7])?,
            })
        })
        .collect()
}

/// The interface of the first default route (destination 0.0.0.0, mask 0.0.0.0).
pub fn parse_default_route_interface(route_table: &str) -> Option<String> {
    parse_routes(route_table)
        .into_iter()
        .find(|r| r.destination.is_unspecified() && r.mask.is_unspecified())
        .map(|r| r.interface)
}

/// The local host addresses (`/32 host LOCAL` leaves) listed in `/proc/net/fib_trie`,
/// without duplicates, in order of appearance.
pub fn parse_local_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let trimmed = line.trim();
        if let Some(ip) = trimmed.strip_prefix("|-- ") {
            leaf = ip.trim().parse().ok();
        } else if trimmed.starts_with("+-- ") || trimmed.ends_with(':') {
            leaf = None;
        } else if trimmed.starts_with("/32 host LOCAL") {
            if let Some(ip) = leaf {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// Picks the IPv4 address of `interface` from parsed tables: the first local address inside
/// one of the interface's subnet routes (non-zero mask), in route order; for a loopback
/// interface, the first local address in 127.0.0.0/8.
pub fn select_interface_ipv4(
    routes: &[Route],
    local_addresses: &[Ipv4Addr],
    interface: &str,
    is_loopback: bool,
) -> Option<Ipv4Addr> {
    if is_loopback {
        return local_addresses.iter().copied().find(|a| a.is_loopback());
    }
    routes
        .iter()
        .filter(|r| r.interface == interface && !r.mask.is_unspecified())
        .find_map(|r| {
            let mask = u32::from(r.mask);
            let net = u32::from(r.destination) & mask;
            local_addresses
                .iter()
                .copied()
                .find(|a| u32::from(*a) & mask == net && !a.is_loopback())
        })
}

fn read(path: &str) -> Result<String, NetworkError> {
    std::fs::read_to_string(path).map_err(|source| NetworkError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The interface of the default route, from `/proc/net/route`.
pub fn default_route_interface() -> Result<String, NetworkError> {
    parse_default_route_interface(&read("/proc/net/route")?).ok_or(NetworkError::NoDefaultRoute)
}

const IFF_LOOPBACK: u32 = 0x8;

/// The IPv4 address of network interface `name`; `default` means the interface of the
/// default route.
pub fn interface_ipv4(name: &str) -> Result<Ipv4Addr, NetworkError> {
    let interface = if name == "default" {
        default_route_interface()?
    } else {
        name.to_owned()
    };
    if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
        return Err(NetworkError::NoSuchInterface(interface));
    }
    let sys = format!("/sys/class/net/{interface}");
    if !Path::new(&sys).exists() {
        return Err(NetworkError::NoSuchInterface(interface));
    }
    let flags = read(&format!("{sys}/flags"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let routes = parse_routes(&read("/proc/net/route")?);
    let local = parse_local_addresses(&read("/proc/net/fib_trie")?);
    select_interface_ipv4(&routes, &local, &interface, flags & IFF_LOOPBACK != 0)
        .ok_or(NetworkError::NoIpv4Address(interface))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 192.168.0.17
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 127.0.0.1
        /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
";

    #[test]
    fn parses_routes() {
        let routes = parse_routes(ROUTE);
        assert_eq!(routes.len(), 3);
        assert_eq!(
            routes[1],
            Route {
                interface: "eth0".into(),
                destination: Ipv4Addr::UNSPECIFIED,
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                mask: Ipv4Addr::UNSPECIFIED,
            }
        );
        assert_eq!(routes[2].destination, Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(routes[2].mask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(parse_routes("header only\n"), vec![]);
        assert_eq!(parse_routes("h\nbroken line\n"), vec![]);
    }

    #[test]
    fn default_route() {
        assert_eq!(
            parse_default_route_interface(ROUTE).as_deref(),
            Some("eth0")
        );
        let no_default = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\nlo0\t0000007F\t00000000\t1\t0\t0\t0\t000000FF\n";
        assert_eq!(parse_default_route_interface(no_default), None);
    }

    #[test]
    fn local_addresses() {
        assert_eq!(
            parse_local_addresses(FIB_TRIE),
            vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 168, 0, 17)
            ]
        );
    }

    #[test]
    fn selects_interface_address() {
        let routes = parse_routes(ROUTE);
        let local = parse_local_addresses(FIB_TRIE);
        assert_eq!(
            select_interface_ipv4(&routes, &local, "eth0", false),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(
            select_interface_ipv4(&routes, &local, "eth1", false),
            Some(Ipv4Addr::new(192, 168, 0, 17))
        );
        assert_eq!(
            select_interface_ipv4(&routes, &local, "lo", true),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(select_interface_ipv4(&routes, &local, "eth9", false), None);
    }

    #[test]
    fn live_lookup_is_consistent() {
        // Works on any Linux machine: the loopback interface always has 127.0.0.1.
        assert_eq!(interface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert!(matches!(
            interface_ipv4("no-such-if0"),
            Err(NetworkError::NoSuchInterface(n)) if n == "no-such-if0"
        ));
        assert!(matches!(
            interface_ipv4("../etc"),
            Err(NetworkError::NoSuchInterface(_))
        ));
        // The default interface, where there is one, has a non-loopback address.
        // (An address without subnet route is a documented limitation, so tolerated here.)
        if let Ok(name) = default_route_interface() {
            match interface_ipv4("default") {
                Ok(ip) => {
                    assert_eq!(interface_ipv4(&name).unwrap(), ip);
                    assert!(!ip.is_loopback());
                }
                Err(NetworkError::NoIpv4Address(n)) => assert_eq!(n, name),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
}
