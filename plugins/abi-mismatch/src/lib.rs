//! Test fixture: a "plugin" whose declaration carries a wrong ABI version (999) and nothing
//! else (all other fields null). The loader must refuse it after reading only the version; if
//! it touched any other field it would crash, which the tests would notice.

use std::ptr::null;

/// The same first field as `fairmq::plugin::dynamic::PluginDeclaration`, then null pointers.
#[repr(C)]
pub struct BadDeclaration {
    /// A version no fairmq uses.
    pub abi_version: u32,
    /// Null where a real declaration has version strings and its registration.
    pub rest: [*const u8; 4],
}

/// The ABI version this fixture declares.
pub const BAD_ABI_VERSION: u32 = 999;

/// The entry point for `-P badabi`.
#[no_mangle]
pub extern "C" fn fairmq_plugin_declaration_badabi() -> *const BadDeclaration {
    Box::leak(Box::new(BadDeclaration {
        abi_version: BAD_ABI_VERSION,
        rest: [null(); 4],
    }))
}
