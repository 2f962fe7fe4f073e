//! Sub-channel validation (spec §3.4, FairMQ `Channel::Validate`), with FairMQ's messages.
//!
//! The outcome distinguishes "not yet valid" (the address may still arrive, e.g. injected by
//! a plugin while CONNECTING retries) from "invalid" (a configuration error; the device goes
//! to ERROR). One deliberate difference from FairMQ: endpoints are split on `,` here, as the
//! attach step does, instead of on `;` (FairMQ's [quirk] validated comma lists as one string).

use super::address::split_endpoints;
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
/// 5. to 9. per endpoint, the scheme: `tcp://` needs a `:`; `ipc://`, `inproc://` and
///    `verbs://` need a non-empty rest; other schemes fail → not yet valid;
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
        let address = endpoint.address.as_str();
        let problem = if let Some(rest) = address.strip_prefix("tcp://") {
            (!rest.contains(':')).then_some("missing port?")
        } else if let Some(rest) = address.strip_prefix("ipc://") {
            rest.is_empty().then_some("empty IPC address?")
        } else if let Some(rest) = address.strip_prefix("inproc://") {
            rest.is_empty().then_some("empty inproc address?")
        } else if let Some(rest) = address.strip_prefix("verbs://") {
            rest.is_empty().then_some("empty verbs address?")
        } else {
            Some("missing protocol specifier?")
        };
        if let Some(problem) = problem {
            return Validation::NotYetValid(format!(
                "invalid channel address: '{address}' ({problem})"
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

    #[test]
    fn row5_tcp_missing_port() {
        assert_eq!(
            run("x[0]", &with(|s| s.address = "tcp://localhost".into())),
            Kind::NotYet("invalid channel address: 'tcp://localhost' (missing port?)".into())
        );
        // The message names the endpoint without its modifier.
        assert_eq!(
            run("x[0]", &with(|s| s.address = "+tcp://host".into())),
            Kind::NotYet("invalid channel address: 'tcp://host' (missing port?)".into())
        );
    }

    #[test]
    fn rows6_to_8_empty_addresses() {
        assert_eq!(
            run("x[0]", &with(|s| s.address = "ipc://".into())),
            Kind::NotYet("invalid channel address: 'ipc://' (empty IPC address?)".into())
        );
        assert_eq!(
            run("x[0]", &with(|s| s.address = "inproc://".into())),
            Kind::NotYet("invalid channel address: 'inproc://' (empty inproc address?)".into())
        );
        assert_eq!(
            run("x[0]", &with(|s| s.address = "verbs://".into())),
            Kind::NotYet("invalid channel address: 'verbs://' (empty verbs address?)".into())
        );
        for ok in ["ipc://x", "inproc://y", "verbs://z"] {
            assert_eq!(run("x[0]", &with(|s| s.address = ok.into())), Kind::Valid);
        }
    }

    #[test]
    fn row9_unknown_scheme() {
        assert_eq!(
            run("x[0]", &with(|s| s.address = "udp://a:1".into())),
            Kind::NotYet(
                "invalid channel address: 'udp://a:1' (missing protocol specifier?)".into()
            )
        );
        assert_eq!(
            run("x[0]", &with(|s| s.address = "localhost:5555".into())),
            Kind::NotYet(
                "invalid channel address: 'localhost:5555' (missing protocol specifier?)".into()
            )
        );
    }

    #[test]
    fn comma_lists_validate_every_endpoint() {
        // FairMQ split on ';' and so only checked the first scheme of a comma list.
        assert_eq!(
            run("x[0]", &with(|s| s.address = "tcp://a:1,tcp://b".into())),
            Kind::NotYet("invalid channel address: 'tcp://b' (missing port?)".into())
        );
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
