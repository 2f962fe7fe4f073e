//! Command-line options: declarations, parsing with `clap`, and layering with the `config`
//! crate (spec §2.2, §2.3).
//!
//! Every option is declared as an [`OptionSpec`] (name, optional short form, FairMQ type,
//! default, help, group) in an [`Options`] list. The runtime declares FairMQ's options, a
//! device adds its own (the Rust equivalent of `addCustomOptions`), and plugins add theirs.
//! [`parse_options`] then builds a `clap` command from the list, parses the arguments, and
//! layers the sources:
//!
//! defaults < `--options-file` (a JSON object `{"<option>": value}`) < `FAIRMQ_<OPTION>`
//! environment variables (`FAIRMQ_MSG_SIZE` for `--msg-size`) < command line.
//!
//! Unlike FairMQ, an unknown option is an error (FairMQ silently keeps it); every parse error
//! is a single line naming the option and what to do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use crate::error::RuntimeError;
use crate::properties::{Origin, PropertyKind, PropertyType, PropertyValue};

/// The name of the option that names a JSON file of option values.
pub const OPTIONS_FILE: &str = "options-file";

/// One declared option.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionSpec {
    /// Long name, without `--` (also the property key).
    pub name: String,
    /// Short form, e.g. `h` for `-h`.
    pub short: Option<char>,
    /// Value type.
    pub ty: PropertyType,
    /// Default value; `None` means the property does not exist unless given.
    pub default: Option<PropertyValue>,
    /// Value used when the option is given without a value (e.g. `--print-options`).
    pub implicit: Option<String>,
    /// A flag takes no value at all (`-h`, `-v`); it is a bool, `true` when given.
    pub flag: bool,
    /// Help text.
    pub help: String,
    /// Help group heading.
    pub group: String,
}

impl OptionSpec {
    /// Sets the short form.
    pub fn short(&mut self, c: char) -> &mut Self {
        self.short = Some(c);
        self
    }

    /// Sets the value used when the option is given without one.
    pub fn implicit_value(&mut self, value: &str) -> &mut Self {
        self.implicit = Some(value.to_owned());
        self
    }

    /// Whether several values may follow one occurrence, and the option may be repeated.
    pub fn is_multitoken(&self) -> bool {
        self.ty == PropertyType::Strings
    }
}

/// An ordered list of option declarations, grouped for `--help`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    specs: Vec<OptionSpec>,
    group: String,
}

impl Options {
    /// An empty list; options go to the group "Options" until [`Options::group`] is called.
    pub fn new() -> Self {
        Options {
            specs: Vec::new(),
            group: "Options".to_owned(),
        }
    }

    /// Options added from now on belong to the help group `name`.
    pub fn group(&mut self, name: &str) -> &mut Self {
        self.group = name.to_owned();
        self
    }

    fn push(&mut self, spec: OptionSpec) -> &mut OptionSpec {
        self.specs.push(spec);
        self.specs.last_mut().expect("just pushed")
    }

    /// Declares an option of type `T` with a default value.
    pub fn add<T: PropertyKind>(&mut self, name: &str, default: T, help: &str) -> &mut OptionSpec {
        let group = self.group.clone();
        self.push(OptionSpec {
            name: name.to_owned(),
            short: None,
            ty: T::TYPE,
            default: Some(default.into_value()),
            implicit: None,
            flag: false,
            help: help.to_owned(),
            group,
        })
    }

    /// Declares an option without a default: the property exists only when given.
    pub fn add_without_default(
        &mut self,
        name: &str,
        ty: PropertyType,
        help: &str,
    ) -> &mut OptionSpec {
        let group = self.group.clone();
        self.push(OptionSpec {
            name: name.to_owned(),
            short: None,
            ty,
            default: None,
            implicit: None,
            flag: false,
            help: help.to_owned(),
            group,
        })
    }

    /// Declares a flag (no value; `true` when given, otherwise absent).
    pub fn add_flag(&mut self, name: &str, help: &str) -> &mut OptionSpec {
        let group = self.group.clone();
        self.push(OptionSpec {
            name: name.to_owned(),
            short: None,
            ty: PropertyType::Bool,
            default: None,
            implicit: None,
            flag: true,
            help: help.to_owned(),
            group,
        })
    }

    /// Appends all declarations of `other`.
    pub fn extend(&mut self, other: Options) {
        self.specs.extend(other.specs);
    }

    /// The declarations, in order.
    pub fn specs(&self) -> &[OptionSpec] {
        &self.specs
    }

    /// The declaration of `name`.
    pub fn get(&self, name: &str) -> Option<&OptionSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Whether `name` is declared.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The outcome of [`parse_options`]: every option with a value, and where it came from.
#[derive(Debug, Clone, Default)]
pub struct ParsedOptions {
    /// Option name → (typed value, origin).
    pub values: BTreeMap<String, (PropertyValue, Origin)>,
}

impl ParsedOptions {
    /// The value of a bool option (`false` if absent).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some((PropertyValue::Bool(true), _)))
    }

    /// The value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&PropertyValue> {
        self.values.get(name).map(|(v, _)| v)
    }
}

fn program_name(args: &[String]) -> String {
    args.first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| a.clone())
        })
        .unwrap_or_else(|| "fairmq-device".to_owned())
}

/// Builds the `clap` command for `options` (used for parsing and for `--help`).
pub fn build_command(program: &str, options: &Options) -> Result<Command, RuntimeError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut seen_short = std::collections::BTreeSet::new();
    let mut cmd = Command::new(program.to_owned())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_colored_help(true)
        .color(clap::ColorChoice::Never)
        .args_override_self(true)
        .max_term_width(100);
    for spec in options.specs() {
        if !seen.insert(spec.name.clone()) {
            return Err(RuntimeError::CommandLine(format!(
                "option --{} is declared twice (by the device, a plugin or the runtime); rename one of them",
                spec.name
            )));
        }
        let mut arg = Arg::new(spec.name.clone())
            .long(spec.name.clone())
            .help(spec.help.clone())
            .help_heading(spec.group.clone());
        if let Some(c) = spec.short {
            if !seen_short.insert(c) {
                return Err(RuntimeError::CommandLine(format!(
                    "short option -{c} is declared twice; rename one of them"
                )));
            }
            arg = arg.short(c);
        }
        if spec.flag {
            arg = arg.action(ArgAction::SetTrue);
        } else {
            arg = arg.value_name(spec.ty.label().replace(' ', "_"));
            if spec.is_multitoken() {
                arg = arg.num_args(1..).action(ArgAction::Append);
            } else {
                arg = arg.num_args(1).action(ArgAction::Set);
            }
            if let Some(implicit) = &spec.implicit {
                arg = arg.num_args(0..=1).default_missing_value(implicit.clone());
            }
            if matches!(
                spec.ty,
                PropertyType::I32
                    | PropertyType::I64
                    | PropertyType::F32
                    | PropertyType::F64
                    | PropertyType::U16
                    | PropertyType::U32
                    | PropertyType::U64
            ) {
                arg = arg.allow_negative_numbers(true);
            }
            if let Some(default) = &spec.default {
                let shown = default.to_string();
                if !shown.is_empty() {
                    arg = arg.help(format!("{} (default: {shown})", spec.help));
                }
            }
        }
        cmd = cmd.arg(arg);
    }
    Ok(cmd)
}

/// Renders `--help` for `options`.
pub fn render_help(args: &[String], options: &Options) -> String {
    match build_command(&program_name(args), options) {
        Ok(mut cmd) => cmd.render_help().to_string(),
        Err(e) => e.to_string(),
    }
}

pub(crate) fn one_line_clap_error(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind: ContextKind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    match err.kind() {
        ErrorKind::UnknownArgument => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_default();
            format!("unknown option '{arg}'; run with --help to list the options")
        }
        _ => {
            let rendered = err.to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid command line")
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            format!("{first}; run with --help to list the options")
        }
    }
}

fn convert(
    spec: &OptionSpec,
    texts: &[String],
    source: &str,
) -> Result<PropertyValue, RuntimeError> {
    let bad = |text: &str| {
        RuntimeError::CommandLine(format!(
            "invalid value '{text}' for option --{} ({source}): expected {}",
            spec.name,
            match spec.ty {
                PropertyType::Bool => "true, false, 1 or 0".to_owned(),
                PropertyType::U16 | PropertyType::U32 | PropertyType::U64 =>
                    format!("a non-negative integer ({})", spec.ty.label()),
                PropertyType::I32 | PropertyType::I64 =>
                    format!("an integer ({})", spec.ty.label()),
                PropertyType::F32 | PropertyType::F64 => format!("a number ({})", spec.ty.label()),
                other => other.label().to_owned(),
            }
        ))
    };
    if spec.ty == PropertyType::Strings {
        return Ok(PropertyValue::Strings(texts.to_vec()));
    }
    let text = texts.last().map(String::as_str).unwrap_or("");
    spec.ty.parse_value(text).map_err(|_| bad(text))
}

fn normalize_key(key: &str) -> String {
    key.to_ascii_lowercase().replace('_', "-")
}

fn config_value_texts(value: config::Value) -> Option<Vec<String>> {
    if let Ok(array) = value.clone().into_array() {
        return array
            .into_iter()
            .map(|v| v.into_string().ok())
            .collect::<Option<Vec<_>>>();
    }
    value.into_string().ok().map(|s| vec![s])
}

/// Parses `args` (including the program name at index 0) against `options`, layered over
/// an optional `--options-file` and the `FAIRMQ_*` variables in `env`.
///
/// Returns every option that has a value (default or provided). Errors are one line each.
pub fn parse_options(
    args: &[String],
    options: &Options,
    env: &BTreeMap<String, String>,
) -> Result<ParsedOptions, RuntimeError> {
    let cmd = build_command(&program_name(args), options)?;
    let matches = cmd
        .try_get_matches_from(args)
        .map_err(|e| RuntimeError::CommandLine(one_line_clap_error(&e)))?;

    let mut parsed = ParsedOptions::default();
    for spec in options.specs() {
        if let Some(default) = &spec.default {
            parsed
                .values
                .insert(spec.name.clone(), (default.clone(), Origin::Default));
        }
    }

    // Middle layers through the `config` crate: the options file, then the environment.
    let file = if options.contains(OPTIONS_FILE) {
        matches.get_one::<String>(OPTIONS_FILE).cloned()
    } else {
        None
    };
    let env_source = config::Environment::with_prefix("FAIRMQ")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(false)
        .source(Some(
            env.iter()
                .filter(|(k, _)| k.starts_with("FAIRMQ_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    let mut layers: Vec<(String, config::Config)> = Vec::new();
    if let Some(path) = &file {
        let cfg = config::Config::builder()
            .add_source(config::File::new(path, config::FileFormat::Json).required(true))
            .build()
            .map_err(|e| {
                RuntimeError::CommandLine(format!(
                    "cannot use --{OPTIONS_FILE} '{path}': {}",
                    e.to_string().replace('\n', " ")
                ))
            })?;
        layers.push((format!("from {path}"), cfg));
    }
    let env_cfg = config::Config::builder()
        .add_source(env_source)
        .build()
        .map_err(|e| RuntimeError::CommandLine(format!("FAIRMQ_* environment: {e}")))?;
    layers.push(("from the environment".to_owned(), env_cfg));
    for (source, cfg) in layers {
        let table = cfg
            .try_deserialize::<std::collections::HashMap<String, config::Value>>()
            .map_err(|e| RuntimeError::CommandLine(format!("options {source}: {e}")))?;
        for (key, value) in table {
            let name = normalize_key(&key);
            let Some(spec) = options.get(&name) else {
                if source.starts_with("from the environment") {
                    continue; // other FAIRMQ_* variables are not ours to judge
                }
                return Err(RuntimeError::CommandLine(format!(
                    "unknown option '{key}' {source}; run with --help to list the options"
                )));
            };
            let texts = config_value_texts(value).ok_or_else(|| {
                RuntimeError::CommandLine(format!(
                    "option '{key}' {source} must be a single value or a list of values"
                ))
            })?;
            let value = convert(spec, &texts, &source)?;
            parsed.values.insert(name, (value, Origin::Provided));
        }
    }

    // Top layer: the command line.
    for spec in options.specs() {
        if matches.value_source(&spec.name) != Some(ValueSource::CommandLine) {
            continue;
        }
        let value = if spec.flag {
            PropertyValue::Bool(matches.get_flag(&spec.name))
        } else {
            let texts: Vec<String> = matches
                .get_many::<String>(&spec.name)
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            convert(spec, &texts, "on the command line")?
        };
        parsed
            .values
            .insert(spec.name.clone(), (value, Origin::Provided));
    }
    Ok(parsed)
}

/// The `--print-options` listing: `<option>:<value>:<type>:<description>` per option, in
/// declaration order; options without a value print an empty value and type `<unknown>`.
pub fn format_print_options(options: &Options, parsed: &ParsedOptions) -> String {
    let mut out = String::new();
    for spec in options.specs() {
        let help = spec.help.replace('\n', " ");
        match parsed.get(&spec.name) {
            Some(value) => {
                let _ = writeln!(
                    out,
                    "{}:{}:{}:{}",
                    spec.name,
                    value,
                    value.type_name(),
                    help
                );
            }
            None => {
                let _ = writeln!(out, "{}::<unknown>:{}", spec.name, help);
            }
        }
    }
    out
}

/// Collects the values of a multi-token option (`-S`, `-P`) straight from the raw
/// arguments, before all options are known: every token after `short`/`long` (or its
/// `=value` / sticky form) up to the next token that starts with `-`.
pub fn scan_multitoken(args: &[String], short: &str, long: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        let mut collecting = false;
        if a == short || a == long {
            collecting = true;
        } else if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            values.push(v.to_owned());
            collecting = true;
        } else if a.len() > short.len() && a.starts_with(short) && !a.starts_with("--") {
            values.push(a[short.len()..].to_owned());
            collecting = true;
        }
        i += 1;
        if collecting {
            while i < args.len() && !args[i].starts_with('-') {
                values.push(args[i].clone());
                i += 1;
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        std::iter::once("prog".to_owned())
            .chain(s.split_whitespace().map(str::to_owned))
            .collect()
    }

    fn sample() -> Options {
        let mut o = Options::new();
        o.add_flag("help", "help").short('h');
        o.add("id", String::new(), "device id");
        o.add("io-threads", 1i32, "threads");
        o.add("rate", 0.0f32, "rate");
        o.add("color", true, "colour");
        o.add("msg-size", 1_000_000u64, "size");
        o.add("print-options", false, "print")
            .implicit_value("true");
        o.add_without_default("config-key", PropertyType::String, "key");
        o.add_without_default("plugin", PropertyType::Strings, "plugins")
            .short('P');
        o.add_without_default(OPTIONS_FILE, PropertyType::String, "file");
        o
    }

    #[test]
    fn defaults_and_command_line() {
        let p = parse_options(
            &args("--id s1 --rate 2.5 --color false"),
            &sample(),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            p.values["id"],
            (PropertyValue::String("s1".into()), Origin::Provided)
        );
        assert_eq!(
            p.values["io-threads"],
            (PropertyValue::I32(1), Origin::Default)
        );
        assert_eq!(p.values["rate"].0, PropertyValue::F32(2.5));
        assert_eq!(p.values["color"].0, PropertyValue::Bool(false));
        assert!(!p.values.contains_key("config-key"));
        assert!(!p.flag("help"));
    }

    #[test]
    fn implicit_flag_and_multitoken() {
        let p = parse_options(
            &args("--print-options -P a b -h -P c"),
            &sample(),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(p.flag("print-options"));
        assert!(p.flag("help"));
        assert_eq!(
            p.values["plugin"].0,
            PropertyValue::Strings(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn unknown_option_is_one_line_error() {
        let e = parse_options(&args("--bogus 3"), &sample(), &BTreeMap::new()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown option '--bogus'"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let e = parse_options(&args("--io-threads x"), &sample(), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value 'x' for option --io-threads (on the command line): expected an integer (int)"
        );
        let e = parse_options(&args("--msg-size -5"), &sample(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("non-negative"), "{e}");
        // Negative numbers are values, not options.
        let p = parse_options(&args("--rate -1"), &sample(), &BTreeMap::new()).unwrap();
        assert_eq!(p.values["rate"].0, PropertyValue::F32(-1.0));
    }

    #[test]
    fn layering_file_env_cli() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opts.json");
        std::fs::write(
            &file,
            r#"{"id": "from-file", "io-threads": 3, "msg-size": 10, "plugin": ["x", "y"]}"#,
        )
        .unwrap();
        let mut env = BTreeMap::new();
        env.insert("FAIRMQ_IO_THREADS".to_owned(), "4".to_owned());
        env.insert("FAIRMQ_MSG_SIZE".to_owned(), "20".to_owned());
        env.insert("FAIRMQ_UNRELATED_THING".to_owned(), "whatever".to_owned());
        env.insert("OTHER".to_owned(), "1".to_owned());
        let a = args(&format!(
            "--{OPTIONS_FILE} {} --msg-size 30",
            file.display()
        ));
        let p = parse_options(&a, &sample(), &env).unwrap();
        assert_eq!(p.values["id"].0, PropertyValue::String("from-file".into()));
        assert_eq!(p.values["io-threads"].0, PropertyValue::I32(4));
        assert_eq!(p.values["msg-size"].0, PropertyValue::U64(30));
        assert_eq!(
            p.values["plugin"].0,
            PropertyValue::Strings(vec!["x".into(), "y".into()])
        );
        assert_eq!(p.values["io-threads"].1, Origin::Provided);
    }

    #[test]
    fn options_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opts.json");
        std::fs::write(&file, r#"{"nope": 1}"#).unwrap();
        let a = args(&format!("--{OPTIONS_FILE} {}", file.display()));
        let e = parse_options(&a, &sample(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("unknown option 'nope'"), "{e}");
        let a = args(&format!(
            "--{OPTIONS_FILE} {}/missing.json",
            dir.path().display()
        ));
        let e = parse_options(&a, &sample(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("missing.json"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn duplicate_declaration_is_error() {
        let mut o = sample();
        o.add("id", String::new(), "again");
        assert!(parse_options(&args(""), &o, &BTreeMap::new())
            .unwrap_err()
            .to_string()
            .contains("declared twice"));
    }

    #[test]
    fn print_options_format() {
        let o = sample();
        let p = parse_options(&args("--id x"), &o, &BTreeMap::new()).unwrap();
        let out = format_print_options(&o, &p);
        assert!(out.contains("id:x:string:device id\n"), "{out}");
        assert!(out.contains("io-threads:1:int:threads\n"));
        assert!(out.contains("config-key::<unknown>:key\n"));
    }

    #[test]
    fn scan_plugin_options() {
        let a = args(
            "--id x -S >/lib </home/user/lib /usr/local/lib /usr/lib -P a --plugin=b c --rate 1",
        );
        assert_eq!(
            scan_multitoken(&a, "-S", "--plugin-search-path"),
            vec![">/lib", "</home/user/lib", "/usr/local/lib", "/usr/lib"]
        );
        assert_eq!(scan_multitoken(&a, "-P", "--plugin"), vec!["a", "b", "c"]);
        assert_eq!(
            scan_multitoken(&args("-Pfoo"), "-P", "--plugin"),
            vec!["foo"]
        );
    }
}
