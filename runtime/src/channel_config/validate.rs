//! Sub-channel validation (spec §3.4, FairMQ `Channel::Validate`), with FairMQ's messages.
//!
//! The outcome distinguishes "not yet valid" (the address may still arrive, e.g. injected by
//! a plugin while CONNECTING retries) from "invalid" (a configuration error; the device goes
//! to ERROR). One deliberate difference from FairMQ: endpoints are split on `,` here, as the
//! attach step does, instead of on `;` (FairMQ's [quirk] validated comma lists as one string).

use super::address::{split_endpoints, ConnectionMethod};
use super::{ChannelConfigError, SubChannelSpec, SOCKET_TYPES};

/// The outcome of [`validate_sub_channel`].
#[derive(Debug)]
pub enum Validation {
    /// All checks passed.
    Valid,
    /// Not usable yet (bad name, missing or malformed address); the reason is FairMQ's
    /// message. Connecting channels are retried.
    NotYetValid(String),
    /// A configuration error that retrying cannot fix
    /// ([`ChannelConfigError::InvalidChannel`] with FairMQ's message).
    Invalid(ChannelConfigError),
}

impl Validation {
    /// `true` for [`Validation::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, Validation::Valid)
    }

    /// The message of a non-valid outcome.
    pub fn message(&self) -> Option<String> {
        match self {
            Validation::Valid => None,
            Validation::NotYetValid(m) => Some(m.clone()),
            Validation::Invalid(e) => Some(e.to_string()),
        }
    }
}

fn is_allowed_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '[' | ']' | '#')
}

/// Validates one sub-channel. `full_name` is its full name (`data[0]`, see
/// [`super::sub_channel_name`]). Checks run in FairMQ's order:
///
/// 1. name characters → not yet valid;
/// 2. socket type → invalid;
/// 3. address empty or `unspecified` → not yet valid;
/// 4. per `,`-separated endpoint: without `@`/`+`/`>` the method must be bind/connect →
///    invalid;
/// 5. to 9. per endpoint, the address must be well formed: `tcp://host:port` (host and port
///    may be `*` when binding; a connect needs a port from 1 to 65535), `ipc://path`,
///    `inproc://name` → invalid (FairMQ retries a malformed address forever, "not yet valid":
///    a typo then hangs the device in CONNECTING; here it is a configuration error);
/// 10. to 14. send/receive buffer sizes, kernel sizes and rate logging must not be
///     negative → invalid.
pub fn validate_sub_channel(full_name: &str, spec: &SubChannelSpec) -> Validation {
    let outcome = check(full_name, spec);
    tracing::debug!(
        "Validating channel '{}'... {}",
        full_name,
        if outcome.is_valid() {
            "VALID"
        } else {
            "INVALID"
        }
    );
    match &outcome {
        Validation::Valid => {}
        Validation::NotYetValid(m) => tracing::debug!("{}", m),
        Validation::Invalid(e) => {
            tracing::error!("Exception caught in Channel::ValidateChannel: {}", e)
        }
    }
    outcome
}

/// What is wrong with one endpoint address, if anything (`method` is the endpoint's
/// effective method, when known).
fn endpoint_problem(address: &str, method: Option<ConnectionMethod>) -> Option<String> {
    let Some((scheme, rest)) = address.split_once("://") else {
        return Some("missing protocol specifier".into());
    };
    match scheme {
        "tcp" => {}
        "ipc" | "inproc" => {
            return rest
                .trim()
                .is_empty()
                .then(|| format!("empty {scheme} name"));
        }
        other => return Some(format!("unsupported protocol '{other}://'")),
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Some("missing port".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Some("missing host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Some(format!("bad host '{host}'"));
    }
    let bind = method == Some(ConnectionMethod::Bind);
    if port == "*" {
        return (!bind).then(|| "a connect needs a port number, not '*'".into());
    }
    match port.parse::<u16>() {
        Ok(0) if !bind => Some("port 0 cannot be connected to".into()),
        Ok(_) => None,
        Err(_) => Some(format!("port '{port}' is not a number from 1 to 65535")),
    }
}

fn expected_form(method: Option<ConnectionMethod>) -> &'static str {
    match method {
        Some(ConnectionMethod::Bind) => {
            "tcp://<host|*>:<port|*>, ipc://<path> or inproc://<name> (e.g. tcp://*:5555)"
        }
        _ => "tcp://<host>:<port>, ipc://<path> or inproc://<name> (e.g. tcp://127.0.0.1:5555)",
    }
}

fn check(full_name: &str, spec: &SubChannelSpec) -> Validation {
    let invalid = |message: String| {
        Validation::Invalid(ChannelConfigError::InvalidChannel {
            channel: full_name.to_owned(),
            message,
        })
    };

    // 1. name
    if let Some(c) = full_name.chars().find(|c| !is_allowed_name_char(*c)) {
        return Validation::NotYetValid(format!(
            "channel name contains illegal character: '{c}', allowed characters are: a-z, A-Z, 0-9, -, _, [, ], #"
        ));
    }

    // 2. type
    if !SOCKET_TYPES.contains(&spec.socket_type.as_str()) {
        return invalid(format!("Invalid channel type: '{}'", spec.socket_type));
    }

    // 3. address present
    if spec.address.is_empty() || spec.address == "unspecified" {
        return Validation::NotYetValid(format!("invalid channel address: '{}'", spec.address));
    }

    // 4.–9. each endpoint
    for endpoint in split_endpoints(&spec.address) {
        if endpoint.modifier.is_none() && !matches!(spec.method.as_str(), "bind" | "connect") {
            return invalid(format!(
                "Invalid endpoint connection method: '{}' for {}",
                spec.method, endpoint
            ));
        }
        let method = endpoint.method(&spec.method);
        if let Some(problem) = endpoint_problem(&endpoint.address, method) {
            return invalid(format!(
                "channel {full_name}: invalid address '{}': {problem}; expected {}",
                endpoint.address,
                expected_form(method)
            ));
        }
    }

    // 10.–14. sizes
    let sizes = [
        (spec.snd_buf_size, "invalid channel send buffer size"),
        (spec.rcv_buf_size, "invalid channel receive buffer size"),
        (
            spec.snd_kernel_size,
            "invalid channel send kernel transmit size",
        ),
        (
            spec.rcv_kernel_size,
            "invalid channel receive kernel transmit size",
        ),
        (spec.rate_logging, "invalid socket rate logging interval"),
    ];
    for (value, what) in sizes {
        if value < 0 {
            return invalid(format!("{what} (cannot be negative): '{value}'"));
        }
    }

    Validation::Valid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SubChannelSpec {
        SubChannelSpec {
            socket_type: "push".into(),
            method: "bind".into(),
            address: "tcp://127.0.0.1:5555".into(),
            ..SubChannelSpec::default()
        }
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Valid,
        NotYet(String),
        Invalid(String),
    }

    fn run(name: &str, spec: &SubChannelSpec) -> Kind {
        match validate_sub_channel(name, spec) {
            Validation::Valid => Kind::Valid,
            Validation::NotYetValid(m) => Kind::NotYet(m),
            Validation::Invalid(ChannelConfigError::InvalidChannel { channel, message }) => {
                assert_eq!(channel, name);
                Kind::Invalid(message)
            }
            Validation::Invalid(other) => panic!("unexpected error {other:?}"),
        }
    }

    fn with(f: impl FnOnce(&mut SubChannelSpec)) -> SubChannelSpec {
        let mut s = good();
        f(&mut s);
        s
    }

    #[test]
    fn valid_channel() {
        assert_eq!(run("data[0]", &good()), Kind::Valid);
        assert_eq!(run("a-b_C#9[12]", &good()), Kind::Valid);
        for t in SOCKET_TYPES {
            assert_eq!(
                run("x[0]", &with(|s| s.socket_type = t.into())),
                Kind::Valid
            );
        }
        assert!(validate_sub_channel("x[0]", &good()).is_valid());
        assert_eq!(validate_sub_channel("x[0]", &good()).message(), None);
    }

    #[test]
    fn row1_illegal_name_character() {
        assert_eq!(
            run("da.ta[0]", &good()),
            Kind::NotYet(
                "channel name contains illegal character: '.', allowed characters are: a-z, A-Z, 0-9, -, _, [, ], #"
                    .into()
            )
        );
        assert!(
            matches!(run("da ta[0]", &good()), Kind::NotYet(m) if m.contains("character: ' '"))
        );
    }

    #[test]
    fn row2_invalid_type() {
        assert_eq!(
            run("x[0]", &with(|s| s.socket_type = "pusher".into())),
            Kind::Invalid("Invalid channel type: 'pusher'".into())
        );
        assert_eq!(
            run("x[0]", &with(|s| s.socket_type = "unspecified".into())),
            Kind::Invalid("Invalid channel type: 'unspecified'".into())
        );
    }

    #[test]
    fn row3_missing_address() {
        assert_eq!(
            run("x[0]", &with(|s| s.address = "unspecified".into())),
            Kind::NotYet("invalid channel address: 'unspecified'".into())
        );
        assert_eq!(
            run("x[0]", &with(|s| s.address = String::new())),
            Kind::NotYet("invalid channel address: ''".into())
        );
    }

    #[test]
    fn row4_method_required_without_modifier() {
        assert_eq!(
            run(
                "x[0]",
                &with(|s| {
                    s.method = "unspecified".into();
                    s.address = "tcp://localhost:5555".into()
                })
            ),
            Kind::Invalid(
                "Invalid endpoint connection method: 'unspecified' for tcp://localhost:5555".into()
            )
        );
        // With modifiers, the channel method does not matter.
        assert_eq!(
            run(
                "x[0]",
                &with(|s| {
                    s.method = "unspecified".into();
                    s.address = "@tcp://*:5555,+ipc://a,>inproc://b".into()
                })
            ),
            Kind::Valid
        );
        // Mixed: the endpoint without modifier needs the method; it is named in the message.
        assert_eq!(
            run(
                "x[0]",
                &with(|s| {
                    s.method = "both".into();
                    s.address = "@tcp://*:5555,ipc://a".into()
                })
            ),
            Kind::Invalid("Invalid endpoint connection method: 'both' for ipc://a".into())
        );
    }

    /// The problem and the start of the expected form, for an address on a binding or a
    /// connecting channel (`good()` binds).
    fn bad(address: &str, method: &str) -> Kind {
        run(
            "x[0]",
            &with(|s| {
                s.address = address.into();
                s.method = method.into();
            }),
        )
    }

    fn assert_bad(address: &str, method: &str, problem: &str) {
        let Kind::Invalid(m) = bad(address, method) else {
            panic!("{address} ({method}) should be invalid");
        };
        // The message names the failing endpoint (the last one here) without its modifier.
        let endpoint = address
            .rsplit(',')
            .next()
            .unwrap_or(address)
            .trim_start_matches(['@', '+', '>']);
        assert!(
            m.starts_with(&format!(
                "channel x[0]: invalid address '{endpoint}': {problem}"
            )),
            "{address} ({method}): {m}"
        );
        assert!(m.contains("; expected tcp://"), "{m}");
        assert!(m.contains("ipc://<path> or inproc://<name>"), "{m}");
    }

    #[test]
    fn rows5_to_9_malformed_addresses_are_configuration_errors() {
        // FairMQ reports these as "not yet valid" and retries them forever.
        for method in ["bind", "connect"] {
            assert_bad("tcp://localhost", method, "missing port");
            assert_bad("tcp://127.0.0.1", method, "missing port");
            assert_bad("tcp://:5555", method, "missing host");
            assert_bad(
                "tcp://h:http",
                method,
                "port 'http' is not a number from 1 to 65535",
            );
            assert_bad("tcp://h:70000", method, "port '70000' is not a number");
            assert_bad("tcp://a b:1", method, "bad host 'a b'");
            assert_bad("ipc://", method, "empty ipc name");
            assert_bad("inproc://", method, "empty inproc name");
            assert_bad("foo://bar", method, "unsupported protocol 'foo://'");
            assert_bad("udp://a:1", method, "unsupported protocol 'udp://'");
            assert_bad("verbs://z", method, "unsupported protocol 'verbs://'");
            assert_bad("localhost:5555", method, "missing protocol specifier");
        }
        // The message names the endpoint without its modifier.
        assert_bad("+tcp://host", "bind", "missing port");
        // Wildcards only make sense for a bind.
        assert_eq!(bad("tcp://*:*", "bind"), Kind::Valid);
        assert_eq!(bad("tcp://*:5555", "bind"), Kind::Valid);
        assert_bad(
            "tcp://h:*",
            "connect",
            "a connect needs a port number, not '*'",
        );
        assert_bad("tcp://h:0", "connect", "port 0 cannot be connected to");
        assert!(bad("tcp://h:0", "connect") != Kind::Valid);
        for ok in [
            "ipc://x",
            "inproc://y",
            "tcp://[::1]:5555",
            "tcp://host.example:1",
        ] {
            assert_eq!(bad(ok, "connect"), Kind::Valid, "{ok}");
        }
    }

    #[test]
    fn comma_lists_validate_every_endpoint() {
        // FairMQ split on ';' and so only checked the first scheme of a comma list.
        assert_bad("tcp://a:1,tcp://b", "bind", "missing port");
        assert_eq!(
            run("x[0]", &with(|s| s.address = "tcp://a:1,ipc://b".into())),
            Kind::Valid
        );
        // ';' is no separator: it stays part of one endpoint.
        assert_eq!(
            run("x[0]", &with(|s| s.address = "ipc://a;tcp://b".into())),
            Kind::Valid
        );
    }

    #[test]
    fn rows10_to_14_negative_sizes() {
        type Mutation = fn(&mut SubChannelSpec);
        let cases: [(Mutation, &str); 5] = [
            (
                |s| s.snd_buf_size = -1,
                "invalid channel send buffer size (cannot be negative): '-1'",
            ),
            (
                |s| s.rcv_buf_size = -2,
                "invalid channel receive buffer size (cannot be negative): '-2'",
            ),
            (
                |s| s.snd_kernel_size = -3,
                "invalid channel send kernel transmit size (cannot be negative): '-3'",
            ),
            (
                |s| s.rcv_kernel_size = -4,
                "invalid channel receive kernel transmit size (cannot be negative): '-4'",
            ),
            (
                |s| s.rate_logging = -5,
                "invalid socket rate logging interval (cannot be negative): '-5'",
            ),
        ];
        for (mutate, message) in cases {
            assert_eq!(run("x[0]", &with(mutate)), Kind::Invalid(message.into()));
        }
        // Zero is fine.
        assert_eq!(
            run(
                "x[0]",
                &with(|s| {
                    s.snd_buf_size = 0;
                    s.rate_logging = 0
                })
            ),
            Kind::Valid
        );
    }

    #[test]
    fn check_order() {
        // Name (1) before type (2).
        let bad_all = SubChannelSpec {
            socket_type: "bad".into(),
            method: "bad".into(),
            address: "unspecified".into(),
            snd_buf_size: -1,
            ..SubChannelSpec::default()
        };
        assert!(matches!(run("x.y", &bad_all), Kind::NotYet(m) if m.contains("illegal character")));
        // Type (2) before address (3).
        assert!(
            matches!(run("x[0]", &bad_all), Kind::Invalid(m) if m.starts_with("Invalid channel type"))
        );
        // Address (3) before sizes (10).
        let s = SubChannelSpec {
            socket_type: "push".into(),
            ..bad_all.clone()
        };
        assert_eq!(
            run("x[0]", &s),
            Kind::NotYet("invalid channel address: 'unspecified'".into())
        );
        // Method (4) before sizes (10).
        let s = SubChannelSpec {
            address: "tcp://a:1".into(),
            ..s
        };
        assert!(
            matches!(run("x[0]", &s), Kind::Invalid(m) if m.starts_with("Invalid endpoint connection method"))
        );
    }
}
