//! Loading dynamic plugins: the versioned C-ABI entry point and the only `unsafe` code of
//! this crate.
//!
//! A dynamic plugin is a `cdylib` that exports, via
//! [`declare_dynamic_plugin!`](crate::declare_dynamic_plugin), the function
//! `fairmq_plugin_declaration_<name>` (`extern "C" fn() -> *const PluginDeclaration`).
//! The declaration starts with [`ABI_VERSION`] as a `u32`, followed by NUL-terminated strings
//! with the compiler version and the `fairmq` version the plugin was built with. The loader
//! reads the `u32` first and refuses any other ABI version before looking at anything else,
//! then compares the two versions with its own, and only then uses the remaining fields.
//! Rust types cross the boundary only after these checks, which is what makes that sound:
//! the same compiler and the same `fairmq` source lay the types out identically.
//!
//! Loaded libraries are never unloaded: callbacks a plugin registered (state and property
//! subscriptions) may run until the process ends.

#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
use std::path::Path;

use super::{PluginError, PluginRegistration};

/// Version of the declaration layout; bump on any change of [`PluginDeclaration`].
pub const ABI_VERSION: u32 = 1;

/// The compiler that built this crate (`rustc --version`).
pub const RUSTC_VERSION: &str = env!("FAIRMQ_RUSTC_VERSION");

/// This crate's version.
pub const FAIRMQ_VERSION: &str = env!("CARGO_PKG_VERSION");

const RUSTC_VERSION_C: &str = concat!(env!("FAIRMQ_RUSTC_VERSION"), "\0");
const FAIRMQ_VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// What a dynamic plugin's entry point returns. The first field is the ABI version and
/// stays first in every future layout.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`ABI_VERSION`] of the `fairmq` the plugin was built with.
    pub abi_version: u32,
    /// NUL-terminated `rustc --version` of the plugin's compiler.
    pub rustc_version: *const c_char,
    /// NUL-terminated `fairmq` version the plugin was built with.
    pub fairmq_version: *const c_char,
    /// The plugin's registration (a Rust type: only read after the checks).
    pub registration: *const PluginRegistration,
    /// Installs the host's log dispatcher in the plugin's copy of `tracing`.
    pub install_logger: fn(&tracing::Dispatch),
}

fn install_logger(dispatch: &tracing::Dispatch) {
    // The plugin's copy of `tracing` has its own global default; point it at the host's.
    let _ = tracing::dispatcher::set_global_default(dispatch.clone());
    // Setting a cloned dispatcher does not register it with this copy's callsites (only
    // `Dispatch::new` does): recompute the interest cache and the max level.
    tracing::callsite::rebuild_interest_cache();
}

impl PluginDeclaration {
    /// A declaration for `registration` with this build's versions, leaked so that the
    /// pointer stays valid for the life of the process (called once per load).
    pub fn leak(registration: &'static PluginRegistration) -> *const PluginDeclaration {
        let declaration = Box::new(PluginDeclaration {
            abi_version: ABI_VERSION,
            rustc_version: RUSTC_VERSION_C.as_ptr().cast(),
            fairmq_version: FAIRMQ_VERSION_C.as_ptr().cast(),
            registration,
            install_logger,
        });
        Box::leak(declaration)
    }
}

/// Checks the versions a plugin declared against this build's; the error says what differs.
pub fn check_versions(abi: u32, rustc: &str, fairmq: &str) -> Result<(), String> {
    if abi != ABI_VERSION {
        return Err(format!(
            "it declares plugin ABI version {abi}, this executable uses ABI version {ABI_VERSION}"
        ));
    }
    if rustc != RUSTC_VERSION {
        return Err(format!(
            "it was built with '{rustc}', this executable with '{RUSTC_VERSION}'"
        ));
    }
    if fairmq != FAIRMQ_VERSION {
        return Err(format!(
            "it was built against fairmq {fairmq}, this executable uses fairmq {FAIRMQ_VERSION}"
        ));
    }
    Ok(())
}

/// The entry point's symbol name for plugin `name`.
pub fn entry_symbol(name: &str) -> String {
    format!("fairmq_plugin_declaration_{name}")
}

type EntryPoint = extern "C" fn() -> *const PluginDeclaration;

/// Loads plugin `name` from the library at `path` (a file path, or a bare file name for the
/// system loader's search), checks its declaration and returns its registration.
pub fn load_library(path: &Path, name: &str) -> Result<&'static PluginRegistration, PluginError> {
    let shown = path.display().to_string();
    let load_err = |reason: String| PluginError::Load {
        name: name.to_owned(),
        path: shown.clone(),
        reason,
    };
    let incompatible = |reason: String| PluginError::Incompatible {
        name: name.to_owned(),
        path: shown.clone(),
        reason,
    };
    // SAFETY: loading runs the library's initialisers. The user asked for this plugin with
    // -P and the file carries a fairmq plugin name; that is the trust FairMQ requires too.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
    let symbol = entry_symbol(name);
    // SAFETY: the symbol is defined by `declare_dynamic_plugin!` with exactly this signature
    // (`extern "C" fn() -> *const PluginDeclaration`); a library that exports the name with
    // another signature is not a fairmq plugin and outside what can be checked.
    let entry: EntryPoint = unsafe { library.get::<EntryPoint>(symbol.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| {
            load_err(format!(
                "no entry point '{symbol}' ({e}); is it a fairmq plugin named '{name}'?"
            ))
        })?;
    let declaration = entry();
    if declaration.is_null() {
        return Err(load_err(format!(
            "entry point '{symbol}' returned no declaration"
        )));
    }
    // SAFETY: every declaration layout, of any ABI version, starts with the `u32` ABI version
    // (the field is first in a `#[repr(C)]` struct), and the pointer is non-null and points to
    // a leaked, live declaration. Nothing else is read before the version matches.
    let abi = unsafe { declaration.cast::<u32>().read() };
    if abi != ABI_VERSION {
        return Err(incompatible(format!(
            "it declares plugin ABI version {abi}, this executable uses ABI version {ABI_VERSION}"
        )));
    }
    // SAFETY: the ABI version matches, so the pointee has exactly our `PluginDeclaration`
    // layout and was leaked by `PluginDeclaration::leak` (valid for the process lifetime).
    let declaration: &'static PluginDeclaration = unsafe { &*declaration };
    let text = |p: *const c_char, what: &str| -> Result<String, PluginError> {
        if p.is_null() {
            return Err(incompatible(format!("it declares no {what}")));
        }
        // SAFETY: non-null, and in this ABI version a pointer to a NUL-terminated static
        // string (see `PluginDeclaration::leak`).
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let rustc = text(declaration.rustc_version, "compiler version")?;
    let fairmq = text(declaration.fairmq_version, "fairmq version")?;
    check_versions(abi, &rustc, &fairmq).map_err(incompatible)?;
    if declaration.registration.is_null() {
        return Err(incompatible(
            "it declares no plugin registration".to_owned(),
        ));
    }
    // SAFETY: versions match, so this points to the plugin's `static PluginRegistration`,
    // laid out as ours; the library is never unloaded (forgotten below), so it lives forever.
    let registration: &'static PluginRegistration = unsafe { &*declaration.registration };
    tracing::dispatcher::get_default(|d| (declaration.install_logger)(d));
    // Never unload: the plugin's callbacks may be called until the process exits.
    std::mem::forget(library);
    Ok(registration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_checks() {
        assert!(check_versions(ABI_VERSION, RUSTC_VERSION, FAIRMQ_VERSION).is_ok());
        let e = check_versions(ABI_VERSION + 1, RUSTC_VERSION, FAIRMQ_VERSION).unwrap_err();
        assert!(e.contains("ABI version"), "{e}");
        let e = check_versions(ABI_VERSION, "rustc 0.0.1", FAIRMQ_VERSION).unwrap_err();
        assert!(e.contains("rustc 0.0.1"), "{e}");
        let e = check_versions(ABI_VERSION, RUSTC_VERSION, "0.0.0-x").unwrap_err();
        assert!(e.contains("fairmq 0.0.0-x"), "{e}");
        assert!(RUSTC_VERSION.starts_with("rustc "), "{RUSTC_VERSION}");
    }

    #[test]
    fn missing_library_is_a_load_error() {
        let e = load_library(Path::new("/nonexistent/libfairmq-plugin-x.so"), "x").unwrap_err();
        assert!(matches!(e, PluginError::Load { .. }), "{e}");
    }
}
