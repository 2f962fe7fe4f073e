//! Plugins (spec §7, DESIGN.md "Plugins").
//!
//! A plugin is described by a [`PluginRegistration`] (name, version, maintainer, homepage,
//! the options it adds, and a factory) and instantiated with [`PluginServices`], its window
//! onto the device: properties, device state and control ownership, channel peers, logging.
//! A plugin acts from its factory (subscribe, start threads) and cleans up when dropped;
//! plugins are dropped in reverse load order after the device has finished.
//!
//! Plugins come from three places (see [`manager::PluginManager`]):
//! * built in: `config` and `control` ([`config`], [`control`]);
//! * prelinked (`-P p:<name>`): linked into the executable and registered with
//!   [`register_plugin!`](crate::register_plugin) through `inventory`;
//! * dynamic (`-P <name>` or `-P d:<name>`): a `cdylib` exporting the entry point declared with
//!   [`declare_dynamic_plugin!`](crate::declare_dynamic_plugin), loaded from the `-S` search
//!   path; its ABI version, compiler version and `fairmq` version must equal the host's
//!   ([`dynamic`]).

pub mod config;
pub mod control;
pub mod dynamic;
pub mod manager;
mod services;

pub use manager::PluginManager;
pub use services::{ControlOwnership, DeviceControlError, PluginServices};

use crate::error::HookError;
use crate::options::Options;

/// Errors of plugin loading and instantiation.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A search path entry is empty.
    #[error("Specified path is empty.")]
    EmptySearchPath,
    /// A search path entry exists but is not a directory.
    #[error("{0} is not a directory.")]
    NotADirectory(String),
    /// A dynamic plugin was not found anywhere.
    #[error("Could not load dynamic plugin {name} from configured search paths (-S) nor with system lookup (system libdirs, RUNPATH, $LD_LIBRARY_PATH); tried file names {files}; search path: {paths}")]
    NotFound {
        /// Plugin name.
        name: String,
        /// The file names tried.
        files: String,
        /// The search path.
        paths: String,
    },
    /// A library was found but could not be loaded or lacks the entry point.
    #[error("cannot load plugin '{name}' from {path}: {reason}")]
    Load {
        /// Plugin name.
        name: String,
        /// The library file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The plugin was built for another ABI, compiler or fairmq version.
    #[error("plugin '{name}' from {path} is incompatible: {reason}; rebuild the plugin with the same compiler and fairmq version as this executable")]
    Incompatible {
        /// Plugin name.
        name: String,
        /// The library file.
        path: String,
        /// What differs.
        reason: String,
    },
    /// No prelinked (or static) plugin of that name is linked into the executable.
    #[error(
        "no {kind} plugin named '{name}' is linked into this executable (available: {available})"
    )]
    NotLinked {
        /// `prelinked` or `static`.
        kind: &'static str,
        /// Plugin name.
        name: String,
        /// The names that are available.
        available: String,
    },
    /// A load specifier with an unknown prefix.
    #[error("invalid plugin specifier '{0}'; use <name>, d:<name>, p:<name> or s:<name>")]
    BadSpecifier(String),
    /// The plugin's factory failed.
    #[error("An error occurred while instantiating plugin {name}: {reason}")]
    Instantiation {
        /// Plugin name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A plugin's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl std::fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A running plugin instance. Dropping it is its cleanup (FairMQ's destructor).
pub trait Plugin: Send {}

/// Everything the runtime needs to know about a plugin.
pub struct PluginRegistration {
    /// Lower-case name, used with `-P`.
    pub name: &'static str,
    /// Version.
    pub version: PluginVersion,
    /// Maintainer.
    pub maintainer: &'static str,
    /// Homepage.
    pub homepage: &'static str,
    /// Adds the plugin's command-line options (`None`: it has none).
    pub options: Option<fn(&mut Options)>,
    /// Creates the plugin instance.
    pub create: fn(PluginServices) -> Result<Box<dyn Plugin>, HookError>,
}

impl PluginRegistration {
    /// FairMQ's display form: `'<name>', version '<v>', maintainer '<m>', homepage '<h>'`.
    pub fn describe(&self) -> String {
        format!(
            "'{}', version '{}', maintainer '{}', homepage '{}'",
            self.name, self.version, self.maintainer, self.homepage
        )
    }
}

impl PartialEq for PluginRegistration {
    /// Plugins are equal if name and version are.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version
    }
}

impl std::fmt::Debug for PluginRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A prelinked plugin's entry in the `inventory` registry; see
/// [`register_plugin!`](crate::register_plugin).
pub struct PrelinkedPlugin(pub &'static PluginRegistration);

inventory::collect!(PrelinkedPlugin);

/// Names of all prelinked plugins, sorted.
pub fn prelinked_plugins() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<PrelinkedPlugin>
        .into_iter()
        .map(|p| p.0.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The prelinked plugin `name`.
pub fn find_prelinked(name: &str) -> Option<&'static PluginRegistration> {
    inventory::iter::<PrelinkedPlugin>
        .into_iter()
        .find(|p| p.0.name == name)
        .map(|p| p.0)
}

/// Registers a `static` [`PluginRegistration`] as a prelinked plugin (`-P p:<name>`).
///
/// ```ignore
/// static MY_PLUGIN: fairmq::plugin::PluginRegistration = /* ... */;
/// fairmq::register_plugin!(MY_PLUGIN);
/// ```
#[macro_export]
macro_rules! register_plugin {
    ($registration:path) => {
        $crate::__private::inventory::submit! {
            $crate::plugin::PrelinkedPlugin(&$registration)
        }
    };
}

/// Declares the dynamic-plugin entry point of a `cdylib` for a `static`
/// [`PluginRegistration`]: an `extern "C"` function `fairmq_plugin_declaration_<name>`
/// returning a [`dynamic::PluginDeclaration`] that starts with the ABI version, then the
/// compiler and `fairmq` versions this plugin was built with.
///
/// ```ignore
/// fairmq::declare_dynamic_plugin!("example", EXAMPLE);
/// ```
#[macro_export]
macro_rules! declare_dynamic_plugin {
    ($name:literal, $registration:path) => {
        /// The dynamic plugin entry point (see `fairmq::plugin::dynamic`).
        #[export_name = concat!("fairmq_plugin_declaration_", $name)]
        pub extern "C" fn __fairmq_plugin_declaration(
        ) -> *const $crate::plugin::dynamic::PluginDeclaration {
            $crate::plugin::dynamic::PluginDeclaration::leak(&$registration)
        }
    };
}
