//! The plugin manager (spec §7.3): load specifiers, the search path, dynamic lookup, option
//! collection and instantiation in load order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    dynamic, find_prelinked, prelinked_plugins, Plugin, PluginError, PluginRegistration,
    PluginServices,
};
use crate::device::DeviceShared;
use crate::options::Options;

/// File name prefixes tried for a dynamic plugin `<name>`: `lib<prefix><name>.so`.
/// The last one is what cargo names a `cdylib` whose lib name is `fairmq_plugin_<name>`.
pub const FILE_PREFIXES: [&str; 3] = ["fairmq-plugin-", "FairMQPlugin_", "fairmq_plugin_"];

/// The file names tried for plugin `name`, in order.
pub fn library_file_names(name: &str) -> Vec<String> {
    FILE_PREFIXES
        .iter()
        .map(|p| format!("lib{p}{name}.so"))
        .collect()
}

/// Applies `-S` values (spec §7.3): plain entries form the base list, then every `<dir` is
/// prepended (so a later `<` entry ends up first) and every `>dir` appended. Empty entries and
/// existing non-directories are errors; paths that do not exist are accepted.
pub fn search_path_from_specs(specs: &[String]) -> Result<Vec<PathBuf>, PluginError> {
    let mut base = Vec::new();
    let mut prepend = Vec::new();
    let mut append = Vec::new();
    for spec in specs {
        if let Some(p) = spec.strip_prefix('<') {
            prepend.push(p);
        } else if let Some(p) = spec.strip_prefix('>') {
            append.push(p);
        } else {
            base.push(spec.as_str());
        }
    }
    let check = |p: &str| -> Result<PathBuf, PluginError> {
        if p.is_empty() {
            return Err(PluginError::EmptySearchPath);
        }
        let path = PathBuf::from(p);
        if path.exists() && !path.is_dir() {
            return Err(PluginError::NotADirectory(p.to_owned()));
        }
        Ok(path)
    };
    let mut paths = base.into_iter().map(check).collect::<Result<Vec<_>, _>>()?;
    for p in prepend {
        paths.insert(0, check(p)?);
    }
    for p in append {
        paths.push(check(p)?);
    }
    Ok(paths)
}

/// Loads plugins in order and instantiates them.
pub struct PluginManager {
    search_paths: Vec<PathBuf>,
    builtins: Vec<&'static PluginRegistration>,
    loaded: Vec<&'static PluginRegistration>,
    instances: Vec<(String, Box<dyn Plugin>)>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("search_paths", &self.search_paths)
            .field("loaded", &self.loaded_names())
            .finish()
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginManager {
    /// A manager with an empty search path that knows the built-in plugins `config` and
    /// `control` (loadable as `s:config`, `s:control`).
    pub fn new() -> Self {
        PluginManager {
            search_paths: Vec::new(),
            builtins: vec![&super::config::REGISTRATION, &super::control::REGISTRATION],
            loaded: Vec::new(),
            instances: Vec::new(),
        }
    }

    /// Sets the search path from `-S` values (see [`search_path_from_specs`]).
    pub fn set_search_path_specs(&mut self, specs: &[String]) -> Result<(), PluginError> {
        self.search_paths = search_path_from_specs(specs)?;
        Ok(())
    }

    /// The search path.
    pub fn search_paths(&self) -> &[PathBuf] {
        &self.search_paths
    }

    /// Prepends one directory.
    pub fn prepend_search_path(&mut self, path: impl Into<PathBuf>) {
        self.search_paths.insert(0, path.into());
    }

    /// Appends one directory.
    pub fn append_search_path(&mut self, path: impl Into<PathBuf>) {
        self.search_paths.push(path.into());
    }

    /// Names of the loaded plugins, in load order.
    pub fn loaded_names(&self) -> Vec<&'static str> {
        self.loaded.iter().map(|r| r.name).collect()
    }

    /// The loaded plugins' registrations, in load order.
    pub fn loaded(&self) -> &[&'static PluginRegistration] {
        &self.loaded
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.loaded.iter().any(|r| r.name == name)
    }

    /// Loads one plugin by specifier: `p:<name>` prelinked, `s:<name>` built in (or else
    /// prelinked), `d:<name>` or `<name>` dynamic. Loading a loaded name again is a no-op.
    pub fn load(&mut self, spec: &str) -> Result<(), PluginError> {
        let (kind, name) = match spec.split_once(':') {
            Some((k, n)) => (k, n),
            None => ("d", spec),
        };
        if name.is_empty() {
            return Err(PluginError::BadSpecifier(spec.to_owned()));
        }
        if self.is_loaded(name) {
            return Ok(());
        }
        let registration = match kind {
            "p" => find_prelinked(name).ok_or_else(|| PluginError::NotLinked {
                kind: "prelinked",
                name: name.to_owned(),
                available: list(&prelinked_plugins()),
            })?,
            "s" => match self.builtins.iter().find(|r| r.name == name) {
                Some(r) => *r,
                None => find_prelinked(name).ok_or_else(|| PluginError::NotLinked {
                    kind: "static",
                    name: name.to_owned(),
                    available: list(
                        &self
                            .builtins
                            .iter()
                            .map(|r| r.name)
                            .chain(prelinked_plugins())
                            .collect::<Vec<_>>(),
                    ),
                })?,
            },
            "d" => self.load_dynamic(name)?,
            _ => return Err(PluginError::BadSpecifier(spec.to_owned())),
        };
        if registration.name != name {
            tracing::warn!(
                "plugin loaded as '{}' calls itself '{}'",
                name,
                registration.name
            );
        }
        self.loaded.push(registration);
        Ok(())
    }

    fn exe_dir() -> Option<PathBuf> {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
    }

    /// Finds and loads dynamic plugin `name`: along the search path, then in the
    /// executable's directory, then through the system loader.
    fn load_dynamic(&self, name: &str) -> Result<&'static PluginRegistration, PluginError> {
        let files = library_file_names(name);
        let dirs = self.search_paths.iter().cloned().chain(Self::exe_dir());
        for dir in dirs {
            for file in &files {
                let candidate = dir.join(file);
                if candidate.is_file() {
                    return dynamic::load_library(&candidate, name);
                }
            }
        }
        let mut last_error = None;
        for file in &files {
            match dynamic::load_library(Path::new(file), name) {
                Ok(r) => return Ok(r),
                Err(e @ PluginError::Incompatible { .. }) => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        tracing::debug!("system lookup of plugin {name} failed: {last_error:?}");
        Err(PluginError::NotFound {
            name: name.to_owned(),
            files: files.join(", "),
            paths: if self.search_paths.is_empty() {
                "(empty)".to_owned()
            } else {
                self.search_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// Adds the options of every loaded plugin, in load order.
    pub fn add_options(&self, options: &mut Options) {
        for registration in &self.loaded {
            if let Some(add) = registration.options {
                add(options);
            }
        }
    }

    /// Instantiates every loaded plugin, in load order.
    pub(crate) fn instantiate(&mut self, shared: &Arc<DeviceShared>) -> Result<(), PluginError> {
        for registration in self.loaded.clone() {
            if self.instances.iter().any(|(n, _)| n == registration.name) {
                continue;
            }
            let services = PluginServices::new(registration.name, Arc::clone(shared));
            let instance =
                (registration.create)(services).map_err(|e| PluginError::Instantiation {
                    name: registration.name.to_owned(),
                    reason: e.to_string(),
                })?;
            tracing::debug!("Loaded plugin: {}", registration.describe());
            self.instances
                .push((registration.name.to_owned(), instance));
        }
        Ok(())
    }

    /// Drops the plugin instances in reverse load order.
    pub fn unload_all(&mut self) {
        while let Some((name, instance)) = self.instances.pop() {
            drop(instance);
            tracing::debug!("Unloaded plugin: '{}'", name);
        }
    }
}

impl Drop for PluginManager {
    fn drop(&mut self) {
        self.unload_all();
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn search_path_example_from_fairmq() {
        let paths = search_path_from_specs(&s(&[
            ">/lib",
            "</home/user/lib",
            "/usr/local/lib",
            "/usr/lib",
        ]))
        .unwrap();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/home/user/lib"),
                PathBuf::from("/usr/local/lib"),
                PathBuf::from("/usr/lib"),
                PathBuf::from("/lib")
            ]
        );
    }

    #[test]
    fn later_prepends_come_first() {
        let paths = search_path_from_specs(&s(&["<a", "<b", "c", ">d", ">e"])).unwrap();
        assert_eq!(paths, ["b", "a", "c", "d", "e"].map(PathBuf::from).to_vec());
    }

    #[test]
    fn search_path_validation() {
        assert!(matches!(
            search_path_from_specs(&s(&[""])),
            Err(PluginError::EmptySearchPath)
        ));
        assert!(matches!(
            search_path_from_specs(&s(&["<"])),
            Err(PluginError::EmptySearchPath)
        ));
        let file = tempfile::NamedTempFile::new().unwrap();
        let p = file.path().display().to_string();
        let e = search_path_from_specs(std::slice::from_ref(&p)).unwrap_err();
        assert_eq!(e.to_string(), format!("{p} is not a directory."));
        assert!(search_path_from_specs(&s(&["/does/not/exist"])).is_ok());
    }

    #[test]
    fn builtin_and_bad_specifiers() {
        let mut m = PluginManager::new();
        m.load("s:control").unwrap();
        m.load("s:config").unwrap();
        m.load("s:control").unwrap();
        assert_eq!(m.loaded_names(), vec!["control", "config"]);
        assert!(matches!(m.load("x:foo"), Err(PluginError::BadSpecifier(_))));
        let e = m.load("p:nope").unwrap_err();
        assert!(
            e.to_string().contains("no prelinked plugin named 'nope'"),
            "{e}"
        );
        let e = m.load("nope").unwrap_err();
        assert!(matches!(e, PluginError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("libfairmq-plugin-nope.so"), "{e}");
    }

    #[test]
    fn file_names() {
        assert_eq!(
            library_file_names("x"),
            vec![
                "libfairmq-plugin-x.so",
                "libFairMQPlugin_x.so",
                "libfairmq_plugin_x.so"
            ]
        );
    }
}
