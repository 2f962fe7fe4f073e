//! Plugins with the real `fairmq-testdevice`: dynamic loading along `-S`, from the
//! executable's directory, prelinked (`p:`), load order, plugin options, an ABI-mismatched
//! plugin refused, search-path errors, and control ownership.
//!
//! The plugin libraries are built by cargo because this package depends on the plugin crates
//! (cargo builds a dependency's `cdylib` too): `libfairmq_plugin_example.so` and
//! `libfairmq_plugin_badabi.so` are in `target/<profile>/deps`, the directory of this test
//! executable.

mod common;

use common::{assert_clean_error, run};
use std::path::PathBuf;

fn deps_dir() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    assert!(
        dir.join("libfairmq_plugin_example.so").is_file(),
        "plugin library missing in {}",
        dir.display()
    );
    dir.display().to_string()
}

fn device(args: &[&str]) -> (i32, String) {
    let mut all = vec!["--id", "t", "--control", "static"];
    all.extend_from_slice(args);
    run("fairmq-testdevice", &all)
}

#[test]
fn dynamic_plugin_from_search_path_with_its_option() {
    let deps = deps_dir();
    let (code, out) = device(&["-S", &deps, "-P", "example", "--example-greeting", "servus"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("example plugin: instantiated (greeting 'servus', control false)"),
        "{out}"
    );
    assert!(
        out.contains("example plugin: servus, device is in state RUNNING"),
        "{out}"
    );
    assert!(out.contains("example plugin: unloaded"), "{out}");
    // `d:` is the explicit form of the same.
    let (code, out) = device(&["-S", &format!("<{deps}"), "-P", "d:example"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("example plugin: hello, device is in state EXITING"),
        "{out}"
    );
}

#[test]
fn plugin_options_are_unknown_without_the_plugin() {
    let (code, out) = device(&["--example-greeting", "servus"]);
    assert_clean_error(code, &out, "unknown option '--example-greeting'");
}

#[test]
fn prelinked_plugin() {
    let (code, out) = device(&["-P", "p:example", "--example-greeting", "grüezi"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("example plugin: grüezi, device is in state RUNNING"),
        "{out}"
    );
    let (code, out) = device(&["-P", "p:nosuch"]);
    assert_clean_error(code, &out, "no prelinked plugin named 'nosuch'");
    assert!(out.contains("available: example"), "{out}");
}

#[test]
fn load_order_is_p_plugins_then_config_then_control() {
    let deps = deps_dir();
    let (code, out) = device(&["--severity", "debug", "-S", &deps, "-P", "example"]);
    assert_eq!(code, 0, "{out}");
    let pos = |name: &str| {
        out.find(&format!("Loaded plugin: '{name}'"))
            .unwrap_or_else(|| panic!("'{name}' not loaded:\n{out}"))
    };
    assert!(pos("example") < pos("config"), "{out}");
    assert!(pos("config") < pos("control"), "{out}");
    // Unloaded in reverse order.
    let unload = |name: &str| {
        out.find(&format!("Unloaded plugin: '{name}'"))
            .unwrap_or_else(|| panic!("'{name}' not unloaded:\n{out}"))
    };
    assert!(unload("control") < unload("config"), "{out}");
    assert!(unload("config") < unload("example"), "{out}");
}

#[test]
fn abi_mismatched_plugin_is_refused() {
    let deps = deps_dir();
    let (code, out) = device(&["-S", &deps, "-P", "badabi"]);
    assert_clean_error(code, &out, "plugin 'badabi'");
    assert!(
        out.contains("is incompatible: it declares plugin ABI version 999, this executable uses ABI version 1"),
        "{out}"
    );
}

#[test]
fn plugin_not_found_names_the_search_path_in_fairmq_order() {
    let (code, out) = device(&[
        "-S",
        ">/lib",
        "</home/user/lib",
        "/usr/local/lib",
        "/usr/lib",
        "-P",
        "nosuch",
    ]);
    assert_clean_error(code, &out, "Could not load dynamic plugin nosuch");
    assert!(
        out.contains("search path: /home/user/lib, /usr/local/lib, /usr/lib, /lib"),
        "{out}"
    );
}

#[test]
fn bad_search_paths() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let f = file.path().display().to_string();
    let (code, out) = device(&["-S", &f, "-P", "example"]);
    assert_clean_error(code, &out, &format!("{f} is not a directory."));
    let (code, out) = device(&["-S", "<", "-P", "example"]);
    assert_clean_error(code, &out, "Specified path is empty.");
}

#[test]
fn dynamic_plugin_from_the_executables_directory() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("fairmq-testdevice");
    std::fs::copy(common::bin("fairmq-testdevice"), &exe).unwrap();
    std::fs::copy(
        PathBuf::from(deps_dir()).join("libfairmq_plugin_example.so"),
        dir.path().join("libfairmq_plugin_example.so"),
    )
    .unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--id",
            "t",
            "--control",
            "static",
            "--color",
            "false",
            "-P",
            "example",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("example plugin: instantiated"), "{text}");
}

#[test]
fn a_plugin_can_take_control_from_the_control_plugin() {
    let (code, out) = device(&[
        "--severity",
        "debug",
        "-P",
        "p:example",
        "--example-control",
        "true",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Plugin 'control' is not allowed to take over control. Currently, plugin 'example' has taken control."),
        "{out}"
    );
    assert!(
        out.contains("example plugin: releasing device control"),
        "{out}"
    );
    assert!(out.contains("IDLE ---> EXITING"), "{out}");
}
