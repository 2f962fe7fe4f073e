//! Property tests of the address parsers: the runtime's endpoint lists and modifiers
//! ([`split_endpoints`], [`join_endpoints`]), `tcp://` parsing and resolution ([`TcpAddress`],
//! [`resolve_endpoints`]), the channel checks ([`validate_sub_channel`],
//! [`classify_sub_channel`]), and the transports' single-endpoint parser
//! ([`fairmq_transport::address::parse_endpoint`]), which every transport calls on bind and
//! connect (tested here, where both layers can be checked against each other).
//!
//! Inputs: arbitrary text, and addresses built from scheme × host × port pieces with the edge
//! cases (empty host, brackets, `*`, ports 0, 65535, 65536, signs, spaces, huge numbers).
//! Properties: no panic and no hang; errors name the address in one line; what was built from
//! valid pieces parses back to them; an address the channel check accepts is one every
//! transport accepts.
//!
//! Cases per test: `PROPTEST_CASES` (default [`CASES`]). A long local run:
//! `PROPTEST_CASES=100000 cargo test -p fairmq --release --test prop_address`.

use std::net::Ipv4Addr;

use fairmq::channel_config::{
    classify_sub_channel, join_endpoints, resolve_endpoints, split_endpoints, validate_sub_channel,
    ConnectionMethod, Endpoint, SubChannelSpec, TcpAddress, Validation, SOCKET_TYPES,
};
use fairmq_test_support::{prop_cases, within, PARSE_DEADLINE};
use fairmq_transport::address::{parse_endpoint, Scheme};
use proptest::prelude::*;

/// Default cases per property.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: prop_cases(CASES),
        ..ProptestConfig::default()
    }
}

fn one_line(message: &str, input: &str) -> Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "empty error message");
    if !input.contains(['\n', '\r']) {
        prop_assert!(!message.contains(['\n', '\r']), "spans lines: {message:?}");
    }
    Ok(())
}

// ---- strategies -------------------------------------------------------------------------

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(vec!["tcp", "ipc", "inproc"]).prop_map(String::from),
        1 => proptest::sample::select(vec!["", "TCP", "foo", "udp", "tcp ", " tcp", "epgm"])
            .prop_map(String::from),
        1 => "[a-z]{0,6}",
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("://"), 1 => proptest::sample::select(vec!["", ":/", "//", ":///", ":"])]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "127.0.0.1", "*", "localhost", "[::1]", "::1", "0.0.0.0", "", "[", "]", "[]",
            "a b", "host/x", "é", "255.255.255.256", "eth0", "::", "[::ffff:127.0.0.1]",
        ])
        .prop_map(String::from),
        2 => any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        2 => "[a-z0-9.-]{1,20}",
        1 => "\\PC{0,6}",
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u16>().prop_map(|p| p.to_string()),
        2 => proptest::sample::select(vec![
            "*", "", "0", "1", "65535", "65536", "-1", "+80", " 80", "80 ", "080",
            "99999999999999999999", "abc", "5555:6666",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,6}",
    ]
}

/// `scheme` `sep` then, for tcp-like input, `host[:port]`, or a path/name.
fn address() -> impl Strategy<Value = String> {
    (
        scheme(),
        separator(),
        prop_oneof![
            3 => (host(), prop::option::weighted(0.9, port())).prop_map(|(h, p)| match p {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }),
            1 => "[a-zA-Z0-9/._ -]{0,16}",
        ],
    )
        .prop_map(|(s, sep, rest)| format!("{s}{sep}{rest}"))
}

fn modifier() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just(""), 1 => Just("@"), 1 => Just("+"), 1 => Just(">")]
}

/// A channel's address field: endpoints with modifiers, joined by ','.
fn address_list() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec((modifier(), address()), 1..4).prop_map(|eps| {
            eps.iter()
                .map(|(m, a)| format!("{m}{a}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
        1 => Just("unspecified".to_owned()),
        1 => "\\PC{0,24}",
    ]
}

fn spec() -> impl Strategy<Value = SubChannelSpec> {
    (
        prop_oneof![
            4 => proptest::sample::select(SOCKET_TYPES.to_vec()).prop_map(String::from),
            1 => "\\PC{0,6}",
        ],
        prop_oneof![
            Just("bind".to_owned()),
            Just("connect".to_owned()),
            Just("unspecified".to_owned()),
            "\\PC{0,6}"
        ],
        address_list(),
        prop::array::uniform5(prop_oneof![3 => 0..100_000i32, 1 => any::<i32>()]),
    )
        .prop_map(|(t, method, address, n)| SubChannelSpec {
            socket_type: t,
            method,
            address,
            snd_buf_size: n[0],
            rcv_buf_size: n[1],
            snd_kernel_size: n[2],
            rcv_kernel_size: n[3],
            rate_logging: n[4],
            ..SubChannelSpec::default()
        })
}

/// A resolver that knows names of even length (answering with an address made from it) and
/// no others: no DNS in a test.
fn fake_resolve(host: &str) -> Option<Ipv4Addr> {
    host.len()
        .is_multiple_of(2)
        .then(|| Ipv4Addr::new(10, 0, 0, (host.len() % 256) as u8))
}

fn is_canonical_u16(port: &str) -> bool {
    port.parse::<u16>().is_ok_and(|p| p.to_string() == port)
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// The transports' parser on anything: no panic, and an error names the address in one
    /// line.
    #[test]
    fn endpoint_arbitrary_text(text in prop_oneof![any::<String>(), address()]) {
        let input = text.clone();
        let parsed = within(PARSE_DEADLINE, &text, move || {
            parse_endpoint(&input).map_err(|e| e.to_string())
        });
        if let Err(message) = parsed {
            one_line(&message, &text)?;
            prop_assert!(message.contains(&format!("'{text}'")), "{message:?} names the address");
        }
    }

    /// Built from pieces, the transports' parser accepts exactly the valid combinations and
    /// gives back the pieces.
    #[test]
    fn endpoint_from_pieces(
        scheme in scheme(),
        sep in separator(),
        host in host(),
        port in prop::option::weighted(0.9, port()),
    ) {
        let rest = match &port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let address = format!("{scheme}{sep}{rest}");
        let input = address.clone();
        let parsed = within(PARSE_DEADLINE, &address, move || parse_endpoint(&input));
        // The oracle, for the inputs it covers (a trimmed address with "://" once).
        let clean = address.trim() == address && sep == "://";
        let known = match scheme.as_str() {
            "tcp" => Some(Scheme::Tcp),
            "ipc" => Some(Scheme::Ipc),
            "inproc" => Some(Scheme::Inproc),
            _ => None,
        };
        match (clean, known) {
            (true, Some(Scheme::Tcp)) if !rest.contains("://") => {
                let (h, p) = match rest.rsplit_once(':') {
                    Some(hp) => hp,
                    None => (rest.as_str(), ""),
                };
                let valid = rest.contains(':')
                    && !h.is_empty()
                    && (p == "*" || p.parse::<u16>().is_ok());
                prop_assert_eq!(parsed.is_ok(), valid, "{:?} gave {:?}", address, parsed);
                if let Ok(e) = parsed {
                    prop_assert_eq!(e.scheme, Scheme::Tcp);
                    prop_assert_eq!(e.tcp_host_port(), Some((h, p)));
                    prop_assert_eq!(&e.rest, &rest);
                }
            }
            (true, Some(s)) if !rest.contains("://") => {
                prop_assert_eq!(parsed.is_ok(), !rest.is_empty(), "{:?} gave {:?}", address, parsed);
                if let Ok(e) = parsed {
                    prop_assert_eq!(e.scheme, s);
                    prop_assert_eq!(&e.rest, &rest);
                    prop_assert_eq!(e.tcp_host_port(), None);
                }
            }
            (true, None) if !scheme.contains(char::is_whitespace) && !scheme.is_empty() => {
                prop_assert!(parsed.is_err(), "{:?} is no known scheme", scheme);
            }
            _ => {}
        }
    }

    /// `tcp://` parsing in the runtime: no panic on anything; built from a host and a port it
    /// gives them back and prints the input again.
    #[test]
    fn tcp_address(host in host(), port in port(), junk in any::<String>()) {
        for text in [junk.clone(), format!("tcp://{junk}"), format!("tcp://{host}:{port}")] {
            let input = text.clone();
            let parsed = within(PARSE_DEADLINE, &text, move || TcpAddress::parse(&input));
            if let Err(e) = &parsed {
                one_line(&e.to_string(), &text)?;
            }
        }
        let text = format!("tcp://{host}:{port}");
        let parsed = TcpAddress::parse(&text);
        // The port is what follows the last ':' (a port piece may hold one itself).
        let (h, p) = text["tcp://".len()..].rsplit_once(':').unwrap();
        let valid = !h.is_empty() && p.parse::<u16>().is_ok();
        prop_assert_eq!(parsed.is_ok(), valid, "{:?} gave {:?}", text, parsed);
        if let Ok(tcp) = parsed {
            prop_assert_eq!(&tcp.host, h);
            prop_assert_eq!(tcp.port, p.parse::<u16>().unwrap());
            if is_canonical_u16(p) {
                prop_assert_eq!(tcp.to_string(), text);
            }
        }
    }

    /// Endpoint lists: splitting never panics, joining prints each modifier canonically
    /// ('>' as '+'), and split ∘ join ∘ split = split.
    #[test]
    fn endpoint_lists(list in prop_oneof![address_list(), any::<String>()]) {
        let input = list.clone();
        let eps = within(PARSE_DEADLINE, &list, move || split_endpoints(&input));
        prop_assert_eq!(eps.len(), list.split(',').count());
        let joined = join_endpoints(&eps);
        prop_assert_eq!(split_endpoints(&joined), eps.clone());
        let canonical: Vec<String> = list
            .split(',')
            .map(|e| match e.strip_prefix('>') {
                Some(rest) => format!("+{rest}"),
                None => e.to_owned(),
            })
            .collect();
        prop_assert_eq!(joined, canonical.join(","));
        for (ep, text) in eps.iter().zip(list.split(',')) {
            let want = match text.as_bytes().first() {
                Some(b'@') => Some(ConnectionMethod::Bind),
                Some(b'+' | b'>') => Some(ConnectionMethod::Connect),
                _ => None,
            };
            prop_assert_eq!(ep.modifier, want);
            prop_assert_eq!(&Endpoint::parse(text), ep);
        }
    }

    /// Resolution: no panic; an address whose host needs no lookup comes back unchanged;
    /// an unknown host is an error naming it.
    #[test]
    fn resolution(list in address_list()) {
        let input = list.clone();
        let resolved = within(PARSE_DEADLINE, &list, move || {
            resolve_endpoints(&input, &fake_resolve).map_err(|e| e.to_string())
        });
        match resolved {
            Ok(out) => {
                let before = split_endpoints(&list);
                let after = split_endpoints(&out);
                prop_assert_eq!(before.len(), after.len());
                for (b, a) in before.iter().zip(&after) {
                    prop_assert_eq!(b.modifier, a.modifier);
                    let unchanged = !b.address.starts_with("tcp://")
                        || TcpAddress::parse(&b.address).is_ok_and(|t| t.is_literal());
                    if unchanged {
                        prop_assert_eq!(&a.address, &b.address);
                    } else {
                        prop_assert!(TcpAddress::parse(&a.address).is_ok_and(|t| t.is_literal()), "{:?}", a);
                    }
                }
            }
            Err(message) => one_line(&message, &list)?,
        }
    }

    /// The channel checks: no panic; a refusal is one line naming the channel's problem; an
    /// address they accept is accepted by the transports' parser too (no channel that passes
    /// validation fails later at bind or connect for its syntax).
    #[test]
    fn validation_agrees_with_the_transports(spec in spec(), index in 0usize..4) {
        let name = format!("data[{index}]");
        let (n, s) = (name.clone(), spec.clone());
        let outcome = within(PARSE_DEADLINE, &spec, move || validate_sub_channel(&n, &s));
        match &outcome {
            Validation::Valid => {
                for ep in split_endpoints(&spec.address) {
                    prop_assert!(
                        parse_endpoint(&ep.address).is_ok(),
                        "validation accepts {:?}, the transports refuse it: {:?}",
                        ep.address,
                        parse_endpoint(&ep.address)
                    );
                    prop_assert!(ep.method(&spec.method).is_some());
                }
            }
            Validation::NotYetValid(message) => one_line(message, &spec.address)?,
            Validation::Invalid(e) => {
                one_line(&e.to_string(), &format!("{}{}{}", spec.address, spec.socket_type, spec.method))?
            }
        }
        let _ = classify_sub_channel("data", index, &spec);
    }
}
