//! `fairmq-uuid-gen`: FairMQ's UUID generator (spec §8.8), which scripts use to make unique
//! session names.
//!
//! * no option: a random (version 4) UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` in lower case;
//! * `-h` / `--hash[=BOOL]`: the hash of a random UUID as a decimal number, the one FairMQ's
//!   `UuidHash()` prints: `boost::hash<boost::uuids::uuid>` of Boost 1.74, with which FairMQ
//!   v1.10 is built on Debian 12 (see [`uuid_hash`]). As in FairMQ, `-h` is `--hash`, not help;
//! * `--help`: FairMQ's help text.
//!
//! `--hash` takes an optional value as Boost.Program_options does (`--hash=0`, `--hash false`,
//! `-h1`; `on|off`, `yes|no`, `1|0`, `true|false` in any case), long options may be abbreviated
//! (`--has`), other arguments are ignored, and a bad option exits with 2. One difference: a
//! repeated `--hash=VALUE` takes the last value, where FairMQ refuses a second value.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{ArgAction, Parser};

/// FairMQ's help text, byte for byte once `main` has added the line end.
const HELP: &str = "UUID generator
Options:
  -h [ --hash ] [=arg(=1)] Generates UUID and returns its hash.
  --help                   Print help
";

#[derive(Parser)]
#[command(
    name = "fairmq-uuid-gen",
    disable_help_flag = true,
    infer_long_args = true,
    args_override_self = true
)]
struct Cli {
    /// Generates UUID and returns its hash.
    #[arg(
        short = 'h',
        long,
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = parse_bool
    )]
    hash: bool,

    /// Print help (printed by `main`, as FairMQ prints it).
    #[arg(long, action = ArgAction::SetTrue)]
    help: bool,

    /// Ignored, as FairMQ ignores them.
    #[arg(hide = true)]
    _ignored: Vec<String>,
}

/// A boolean as Boost.Program_options reads one.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "1" | "true" => Ok(true),
        "off" | "no" | "0" | "false" => Ok(false),
        _ => Err("valid choices are 'on|off', 'yes|no', '1|0' and 'true|false'".to_owned()),
    }
}

/// FairMQ's hash of a UUID: Boost 1.74's `hash_value(uuid)`, `hash_combine` over the 16 bytes
/// in order (`seed ^= byte + 0x9e3779b9 + (seed << 6) + (seed >> 2)`, in `size_t` arithmetic).
fn uuid_hash(bytes: &[u8; 16]) -> usize {
    bytes.iter().fold(0usize, |seed, &b| {
        seed ^ usize::from(b)
            .wrapping_add(0x9e37_79b9)
            .wrapping_add(seed << 6)
            .wrapping_add(seed >> 2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let uuid = uuid::Uuid::new_v4();
    let line = if cli.help {
        HELP.to_owned()
    } else if cli.hash {
        uuid_hash(uuid.as_bytes()).to_string()
    } else {
        uuid.hyphenated().to_string()
    };
    match writeln!(std::io::stdout(), "{line}").and_then(|()| std::io::stdout().flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairmq-uuid-gen: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values printed by `boost::hash<boost::uuids::uuid>` (Boost 1.74, x86_64) for
    /// these UUIDs.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn hash_equals_boost() {
        for (text, want) in [
            (
                "00000000-0000-0000-0000-000000000000",
                17_562_157_925_649_023_279usize,
            ),
            (
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
                1_852_565_126_412_026_687,
            ),
            (
                "101f85b0-5ff1-415f-872b-72742e062faa",
                2_130_904_570_341_825_679,
            ),
            (
                "123e4567-e89b-42d3-a456-426614174000",
                17_441_192_403_230_632_003,
            ),
        ] {
            let u = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(uuid_hash(u.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn booleans_as_boost_reads_them() {
        for t in ["on", "yes", "1", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["off", "no", "0", "false", "FALSE"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "2", "y", "t", "h", "enabled"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
