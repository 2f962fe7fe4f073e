//! A device's options as one typed struct with clap's derive, declared once and read back
//! typed (FairMQ declares them in `addCustomOptions` and reads each back by its string key).
//!
//! ```
//! #[derive(clap::Args, Debug)]
//! struct SamplerOptions {
//!     /// Text to send out
//!     #[arg(long, default_value = "Hello")]
//!     text: String,
//!     /// Maximum number of iterations (0 - infinite)
//!     #[arg(long, default_value_t = 0)]
//!     max_iterations: u64,
//! }
//! ```
//!
//! [`declare`] turns every field into an [`OptionSpec`] (long name, short form, FairMQ type,
//! default, help), so the options take part in `--help`, `--print-options`, `--options-file`,
//! `FAIRMQ_<OPTION>` variables and the property store like FairMQ's own. [`read`] builds the
//! struct back from the property store, through clap, so clap's parsers and validations
//! (value enums, ranges, required options) apply to every source alike.
//!
//! A `bool` field (clap's `SetTrue` flag) also takes FairMQ's spelling with a value:
//! `--multipart`, `--multipart true` and `--multipart false` all work.

use std::any::TypeId;

use clap::{Arg, ArgAction, Args, Command, FromArgMatches};

use crate::error::RuntimeError;
use crate::options::{one_line_clap_error, OptionSpec, Options};
use crate::properties::{Properties, PropertyType, PropertyValue};

/// For devices without options of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct NoOptions {}

fn command<T: Args>() -> Command {
    T::augment_args(
        Command::new("device")
            .no_binary_name(true)
            .disable_help_flag(true)
            .disable_version_flag(true),
    )
}

fn property_type(arg: &Arg) -> PropertyType {
    if matches!(arg.get_action(), ArgAction::Append) {
        return PropertyType::Strings;
    }
    let id = arg.get_value_parser().type_id();
    let is = |t: TypeId| id == t;
    if is(TypeId::of::<bool>()) {
        PropertyType::Bool
    } else if is(TypeId::of::<i8>()) || is(TypeId::of::<i16>()) || is(TypeId::of::<i32>()) {
        PropertyType::I32
    } else if is(TypeId::of::<i64>()) || is(TypeId::of::<isize>()) {
        PropertyType::I64
    } else if is(TypeId::of::<u8>()) || is(TypeId::of::<u16>()) {
        PropertyType::U16
    } else if is(TypeId::of::<u32>()) {
        PropertyType::U32
    } else if is(TypeId::of::<u64>()) || is(TypeId::of::<usize>()) {
        PropertyType::U64
    } else if is(TypeId::of::<f32>()) {
        PropertyType::F32
    } else if is(TypeId::of::<f64>()) {
        PropertyType::F64
    } else {
        // Strings, paths and value enums: kept as text, parsed by clap when read back.
        PropertyType::String
    }
}

fn bad_field(arg: &Arg, problem: &str) -> RuntimeError {
    RuntimeError::CommandLine(format!(
        "the device's option field '{}' {problem}",
        arg.get_id()
    ))
}

/// Declares the fields of `T` as options (in field order), in the current help group of `o`.
///
/// Fails for a field FairMQ's command line cannot express: a positional argument (add
/// `#[arg(long)]`), or a counted flag (`ArgAction::Count`).
pub fn declare<T: Args>(o: &mut Options) -> Result<(), RuntimeError> {
    let cmd = command::<T>();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            return Err(bad_field(
                arg,
                "is positional; FairMQ options are named: add #[arg(long)]",
            ));
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let ty = property_type(arg);
        let spec: &mut OptionSpec = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let default = matches!(arg.get_action(), ArgAction::SetFalse);
                o.add(long, default, &help)
                    .implicit_value(if default { "false" } else { "true" })
            }
            ArgAction::Set | ArgAction::Append => {
                let defaults: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                let default = match ty {
                    PropertyType::Strings if !defaults.is_empty() => {
                        Some(PropertyValue::Strings(defaults))
                    }
                    _ => match defaults.first() {
                        Some(text) => Some(ty.parse_value(text).map_err(|e| {
                            bad_field(arg, &format!("has a default that is not a {ty}: {e}"))
                        })?),
                        None => None,
                    },
                };
                let spec = o.add_without_default(long, ty, &help);
                spec.default = default;
                spec
            }
            other => {
                return Err(bad_field(
                    arg,
                    &format!("uses {other:?}, which FairMQ options cannot express; use a value"),
                ))
            }
        };
        if let Some(c) = arg.get_short() {
            spec.short(c);
        }
    }
    Ok(())
}

/// Builds `T` from the property store: each field from the property of its long name (absent
/// properties leave clap's default or `None`). Errors name the option and the problem, with
/// clap's error as the source.
pub fn read<T: Args + FromArgMatches>(config: &Properties) -> Result<T, RuntimeError> {
    let cmd = command::<T>();
    let mut argv: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        let Ok(value) = config.get_value(long) else {
            continue;
        };
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, PropertyValue::Bool(on))
            | (ArgAction::SetFalse, PropertyValue::Bool(on))
                if on == matches!(arg.get_action(), ArgAction::SetTrue) =>
            {
                argv.push(format!("--{long}"));
            }
            (ArgAction::SetTrue | ArgAction::SetFalse, _) => {}
            (ArgAction::Append, PropertyValue::Strings(items)) => {
                argv.extend(items.iter().map(|v| format!("--{long}={v}")));
            }
            (_, value) => argv.push(format!("--{long}={value}")),
        }
    }
    let matches = cmd
        .try_get_matches_from(&argv)
        .map_err(|source| RuntimeError::TypedOptions {
            message: one_line_clap_error(&source),
            source,
        })?;
    T::from_arg_matches(&matches).map_err(|source| RuntimeError::TypedOptions {
        message: one_line_clap_error(&source),
        source,
    })
}

impl Options {
    /// Declares the fields of the typed options struct `T` (see [`declare`]).
    pub fn add_args<T: Args>(&mut self) -> Result<&mut Self, RuntimeError> {
        declare::<T>(self)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::parse_options;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum Mode {
        Fast,
        Safe,
    }

    #[derive(Debug, clap::Args)]
    struct Opts {
        /// Text to send out
        #[arg(long, default_value = "Hello")]
        text: String,
        /// Number of messages (0 - infinite)
        #[arg(long, default_value_t = 0)]
        max_iterations: u64,
        /// Delay in ms
        #[arg(long, short = 'd', default_value_t = -3)]
        delta: i32,
        /// Handle multipart payloads
        #[arg(long)]
        multipart: bool,
        /// How to go
        #[arg(long, value_enum, default_value_t = Mode::Safe)]
        mode: Mode,
        /// Optional output file
        #[arg(long)]
        out: Option<String>,
        /// Channels
        #[arg(long)]
        names: Vec<String>,
    }

    fn parse(args: &[&str]) -> Result<Opts, RuntimeError> {
        let mut o = Options::new();
        o.add_args::<Opts>()?;
        let args: Vec<String> = std::iter::once("dev")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        let parsed = parse_options(&args, &o, &BTreeMap::new())?;
        let config = Properties::new();
        for (k, (v, origin)) in parsed.values {
            config.set_with_origin(k, v, origin);
        }
        read::<Opts>(&config)
    }

    #[test]
    fn fields_become_fairmq_options_with_types_and_defaults() {
        let mut o = Options::new();
        o.add_args::<Opts>().unwrap();
        let ty = |n: &str| o.get(n).unwrap().ty;
        assert_eq!(ty("text"), PropertyType::String);
        assert_eq!(ty("max-iterations"), PropertyType::U64);
        assert_eq!(ty("delta"), PropertyType::I32);
        assert_eq!(ty("multipart"), PropertyType::Bool);
        assert_eq!(ty("names"), PropertyType::Strings);
        assert_eq!(
            o.get("text").unwrap().default,
            Some(PropertyValue::String("Hello".into()))
        );
        assert_eq!(
            o.get("max-iterations").unwrap().default,
            Some(PropertyValue::U64(0))
        );
        assert_eq!(o.get("out").unwrap().default, None);
        assert_eq!(o.get("delta").unwrap().short, Some('d'));
        assert_eq!(o.get("text").unwrap().help, "Text to send out");
    }

    #[test]
    fn defaults_read_back() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.text, "Hello");
        assert_eq!(o.max_iterations, 0);
        assert_eq!(o.delta, -3);
        assert!(!o.multipart);
        assert_eq!(o.mode, Mode::Safe);
        assert_eq!(o.out, None);
        assert!(o.names.is_empty());
    }

    #[test]
    fn command_line_values_read_back_typed() {
        let o = parse(&[
            "--text",
            "x -y",
            "--max-iterations",
            "7",
            "-d",
            "-9",
            "--multipart",
            "true",
            "--mode",
            "fast",
            "--out",
            "f.bin",
            "--names",
            "a",
            "b",
        ])
        .unwrap();
        assert_eq!(o.text, "x -y");
        assert_eq!(o.max_iterations, 7);
        assert_eq!(o.delta, -9);
        assert!(o.multipart);
        assert_eq!(o.mode, Mode::Fast);
        assert_eq!(o.out.as_deref(), Some("f.bin"));
        assert_eq!(o.names, ["a", "b"]);
    }

    #[test]
    fn bool_flags_take_fairmq_values() {
        assert!(parse(&["--multipart"]).unwrap().multipart);
        assert!(!parse(&["--multipart", "false"]).unwrap().multipart);
        assert!(parse(&["--multipart", "1"]).unwrap().multipart);
    }

    #[test]
    fn bad_values_are_errors_naming_the_option() {
        let e = parse(&["--mode", "bogus"]).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(e.to_string().contains("--mode"), "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "clap's error is kept"
        );
        let e = parse(&["--max-iterations", "-1"]).unwrap_err();
        assert!(e.to_string().contains("--max-iterations"), "{e}");
    }

    #[test]
    fn values_set_later_are_read_back() {
        let mut o = Options::new();
        o.add_args::<Opts>().unwrap();
        let config = Properties::new();
        config.set("max-iterations", 42u64);
        config.set("text", "later".to_owned());
        let opts = read::<Opts>(&config).unwrap();
        assert_eq!(opts.max_iterations, 42);
        assert_eq!(opts.text, "later");
    }

    #[derive(Debug, clap::Args)]
    struct Positional {
        input: String,
    }

    #[test]
    fn positional_fields_are_refused_with_the_fix() {
        let mut o = Options::new();
        let e = o.add_args::<Positional>().unwrap_err();
        assert!(e.to_string().contains("#[arg(long)]"), "{e}");
    }
}
