//! The [`DeviceRunner`]: the launch sequence of spec §2.1 for a device executable.
//!
//! ```no_run
//! use fairmq::{run_device, Device, DeviceContext, HookResult, Options};
//!
//! struct Hello;
//! impl Device for Hello {
//!     fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
//!         tracing::info!("hello from {}", ctx.id());
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     run_device(|_opts: &mut Options| {}, |_config| Ok(Box::new(Hello)))
//! }
//! ```
//!
//! Exit codes: 0 after EXITING and for `--help`, `--version`, `--print-options`,
//! `--print-channels`; 1 after ERROR or for any startup error (bad command line, plugin that
//! cannot be loaded, no device). Startup errors are one line on stderr (`error: ...`).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Duration;

use crate::device::{ChannelEndpoints, Device, DeviceContext, DeviceShared};
use crate::error::{HookResult, RuntimeError};
use crate::logging::{logger, LogConfig};
use crate::options::{
    format_print_options, parse_options, render_help, scan_multitoken, Options, ParsedOptions,
    OPTIONS_FILE,
};
use crate::plugin::dynamic::FAIRMQ_VERSION;
use crate::plugin::PluginManager;
use crate::properties::{Properties, PropertyType, PropertyValue};
use crate::worker::{panic_message, run_state_machine};

// Link the transports so that they register themselves.
#[cfg(feature = "shmem")]
use fairmq_shmem as _;
#[cfg(feature = "zeromq")]
use fairmq_zeromq as _;

fn link_transports() {
    #[cfg(feature = "zeromq")]
    {
        // A reference to a function of the crate keeps its registration in the binary.
        let f: fn() -> String = fairmq_zeromq::generated_id;
        std::hint::black_box(f);
    }
}

/// Declares the base options (spec §2.2, group "FairMQ Command Line Options").
pub fn base_options(o: &mut Options) {
    o.group("FairMQ Command Line Options");
    o.add_flag("help", "Print help").short('h');
    o.add_flag("version", "Print version").short('v');
    o.add(
        "severity",
        String::new(),
        "Log severity level (console): trace, debug, info, state, warn, error, fatal, nolog",
    );
    o.add(
        "file-severity",
        "debug".to_owned(),
        "Log severity level (file): trace, debug, info, state, warn, error, fatal, nolog",
    );
    o.add(
        "verbosity",
        "medium".to_owned(),
        "Log verbosity level: veryhigh, high, medium, low",
    );
    o.add("color", true, "Log color (true/false)");
    o.add(
        "log-to-file",
        String::new(),
        "Log output to a file (the name prefix); disables console output.",
    );
    o.add(
        "print-options",
        false,
        "Print options in machine-readable format (<option>:<computed-value>:<type>:<description>)",
    )
    .implicit_value("true");
    o.add_without_default(
        OPTIONS_FILE,
        PropertyType::String,
        "JSON file with option values ({\"<option>\": <value>, ...}). Precedence: defaults < this file < FAIRMQ_<OPTION> environment variables < command line.",
    );
}

/// Declares the plugin manager options `-S` and `-P`.
pub fn plugin_manager_options(o: &mut Options) {
    o.group("Plugin Manager");
    o.add_without_default(
        "plugin-search-path",
        PropertyType::Strings,
        "Search path for plugins: plain entries replace the path, '<dir' prepends, '>dir' appends.",
    )
    .short('S');
    o.add_without_default(
        "plugin",
        PropertyType::Strings,
        "Plugins to load in order: <name> or d:<name> (dynamic), p:<name> (prelinked), s:<name> (static).",
    )
    .short('P');
}

/// Runs one device: parses the command line, loads plugins, runs the state machine.
pub struct DeviceRunner {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    extra_plugins: Vec<String>,
}

impl std::fmt::Debug for DeviceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRunner")
            .field("args", &self.args)
            .finish()
    }
}

fn startup_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("error: {message}");
    1
}

impl DeviceRunner {
    /// A runner for `args` (program name first) and the process environment.
    pub fn new(args: impl IntoIterator<Item = String>) -> Self {
        DeviceRunner {
            args: args.into_iter().collect(),
            env: std::env::vars().collect(),
            extra_plugins: Vec::new(),
        }
    }

    /// A runner for the process's own arguments.
    pub fn from_env() -> Self {
        Self::new(std::env::args())
    }

    /// Replaces the environment used for `FAIRMQ_*` option values.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// Loads a plugin after `config` and before `control` (FairMQ's `LoadPlugins` hook), e.g.
    /// `s:mycontroller` for a controller linked into the executable.
    pub fn load_plugin(mut self, spec: &str) -> Self {
        self.extra_plugins.push(spec.to_owned());
        self
    }

    /// Runs the device made by `make_device` (called with the configuration once the command
    /// line is parsed). `add_options` declares the device's own options. Returns the exit
    /// code.
    pub fn run<O, F>(self, add_options: O, make_device: F) -> i32
    where
        O: FnOnce(&mut Options),
        F: FnOnce(&Properties) -> HookResult<Box<dyn Device>>,
    {
        link_transports();
        let log = logger();
        let args = self.args;

        // 1. The plugin manager parses -S/-P first and loads (not instantiates) the plugins.
        let mut plugins = PluginManager::new();
        let search = scan_multitoken(&args, "-S", "--plugin-search-path");
        if let Err(e) = plugins.set_search_path_specs(&search) {
            return startup_error(format!("--plugin-search-path: {e}"));
        }
        for spec in scan_multitoken(&args, "-P", "--plugin") {
            if let Err(e) = plugins.load(&spec) {
                return startup_error(e);
            }
        }
        // 2. config, hook-loaded plugins, control.
        let mut builtin = vec!["s:config".to_owned()];
        builtin.extend(self.extra_plugins);
        builtin.push("s:control".to_owned());
        for spec in builtin {
            if let Err(e) = plugins.load(&spec) {
                return startup_error(e);
            }
        }

        // 3. Options: base, device, plugins, plugin manager.
        let mut options = Options::new();
        base_options(&mut options);
        let program = args
            .first()
            .map(|a| {
                std::path::Path::new(a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        options.group(&format!("{program} options"));
        add_options(&mut options);
        plugins.add_options(&mut options);
        plugin_manager_options(&mut options);

        // 4. Parse.
        let parsed = match parse_options(&args, &options, &self.env) {
            Ok(p) => p,
            Err(e) => return startup_error(e),
        };
        let text = |name: &str, default: &str| match parsed.get(name) {
            Some(PropertyValue::String(s)) => s.clone(),
            _ => default.to_owned(),
        };
        let quiet = parsed.flag("version") || parsed.flag("print-channels");

        // 5. General options.
        let log_config = LogConfig {
            severity: if quiet {
                "nolog".to_owned()
            } else {
                text("severity", "")
            },
            verbosity: text("verbosity", "medium"),
            color: !matches!(parsed.get("color"), Some(PropertyValue::Bool(false))),
            log_to_file: if quiet {
                String::new()
            } else {
                text("log-to-file", "")
            },
            file_severity: text("file-severity", "debug"),
        };
        if let Err(e) = log.configure(&log_config) {
            return startup_error(e);
        }
        if quiet {
            let _ = log.set_console_severity("nolog");
        }
        if parsed.flag("help") {
            print!("{}", render_help(&args, &options));
            return 0;
        }
        if parsed.flag("print-options") {
            print!("{}", format_print_options(&options, &parsed));
            return 0;
        }
        if let Err(e) = check_values(&parsed) {
            return startup_error(e);
        }
        // --shm-monitor true: the `shmmonitor` plugin makes sure a monitor daemon watches the
        // session (spec §6.8); prelinked if the executable links it, else dynamic. It adds no
        // options, so loading it after parsing is fine.
        if matches!(parsed.get("shm-monitor"), Some(PropertyValue::Bool(true)))
            && !plugins.loaded_names().contains(&"shmmonitor")
        {
            let spec = if crate::plugin::find_prelinked("shmmonitor").is_some() {
                "p:shmmonitor"
            } else {
                "d:shmmonitor"
            };
            if let Err(e) = plugins.load(spec) {
                return startup_error(format!("--shm-monitor true: {e}"));
            }
        }

        let config = Properties::new();
        for (key, (value, origin)) in &parsed.values {
            config.set_with_origin(key.clone(), value.clone(), *origin);
        }
        subscribe_log_settings(&config);
        tracing::info!(
            "fairmq-rs {} (FairMQ-compatible device runtime), PID {}",
            FAIRMQ_VERSION,
            std::process::id()
        );

        // 7. The device.
        let device = match catch_unwind(AssertUnwindSafe(|| make_device(&config))) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) if crate::handlers::is_options_error(&e) => return startup_error(e),
            Ok(Err(e)) => {
                return startup_error(format!("getDevice(): no valid device provided: {e}"))
            }
            Err(p) => {
                return startup_error(format!(
                    "getDevice(): creating the device panicked: {}",
                    panic_message(p.as_ref())
                ))
            }
        };
        let mut device = device;

        // 8. --print-channels / --version.
        if parsed.flag("print-channels") {
            let mut endpoints = ChannelEndpoints::default();
            device.register_channel_endpoints(&mut endpoints);
            print!("{}", endpoints.format());
            return 0;
        }
        if parsed.flag("version") {
            println!("FairMQ version: {FAIRMQ_VERSION}");
            println!("User device version: {}", device.version());
            return 0;
        }

        // 9. Plugins, configuration printout, the state machine.
        tracing::debug!("PID: {}", std::process::id());
        let shared = DeviceShared::new(config.clone(), log);
        let mut ctx = DeviceContext::new(shared.clone());
        if let Err(e) = plugins.instantiate(&shared) {
            return startup_error(e);
        }
        tracing::debug!("Configuration: \n{}", config.format_configuration());
        let result = run_state_machine(device.as_mut(), &mut ctx);
        let code = match &result {
            Ok(()) => {
                shared.control.wait_for_release();
                0
            }
            Err(e) => {
                match e {
                    RuntimeError::ErrorState => {
                        tracing::error!("Device transitioned to error state")
                    }
                    e => tracing::error!("Device transitioned to error state after: {e}"),
                }
                if !shared
                    .control
                    .wait_for_release_timeout(Duration::from_secs(10))
                {
                    tracing::warn!(
                        "the controlling plugin did not release device control after the error"
                    );
                }
                1
            }
        };
        drop(ctx);
        drop(device);
        plugins.unload_all();
        code
    }
}

fn check_values(parsed: &ParsedOptions) -> Result<(), RuntimeError> {
    if let Some(PropertyValue::F32(rate)) = parsed.get("rate") {
        if *rate < 0.0 || !rate.is_finite() {
            return Err(RuntimeError::CommandLine(format!(
                "invalid value '{rate}' for option --rate: the rate must be a non-negative number of Hz (0 = unlimited)"
            )));
        }
    }
    for key in ["io-threads", "init-timeout"] {
        if let Some(PropertyValue::I32(v)) = parsed.get(key) {
            if *v < 0 {
                return Err(RuntimeError::CommandLine(format!(
                    "invalid value '{v}' for option --{key}: must not be negative"
                )));
            }
        }
    }
    Ok(())
}

/// Re-applies logger settings when plugins change them at run time.
fn subscribe_log_settings(config: &Properties) {
    let log = logger();
    config.subscribe_as_string("logger", move |key, value| {
        let result = match key {
            "severity" if !value.is_empty() => log.set_console_severity(value),
            "verbosity" => log.set_verbosity(value),
            "color" => {
                log.set_color(value == "true" || value == "1");
                Ok(())
            }
            "log-to-file" if !value.is_empty() => log.set_log_file(value),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!("{e}");
        }
    });
}

/// `main` for a device executable: runs [`DeviceRunner`] on the process arguments and turns
/// its result into the exit code.
pub fn run_device<O, F>(add_options: O, make_device: F) -> ExitCode
where
    O: FnOnce(&mut Options),
    F: FnOnce(&Properties) -> HookResult<Box<dyn Device>>,
{
    let code = DeviceRunner::from_env().run(add_options, make_device);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
