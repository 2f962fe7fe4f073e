//! The device executables allocate with jemalloc, C code included (feature `jemalloc`, on by
//! default): jemalloc reads `MALLOC_CONF` only if the process's `malloc` is its own, and then
//! prints its statistics at exit.

#[cfg(feature = "jemalloc")]
use std::process::Command;

#[cfg(feature = "jemalloc")]
fn jemalloc_stats(bin: &str) -> bool {
    let out = Command::new(bin)
        .arg("--help")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run the device");
    assert_eq!(out.status.code(), Some(0), "{bin}: {out:?}");
    String::from_utf8_lossy(&out.stderr).contains("Begin jemalloc statistics")
}

#[cfg(feature = "jemalloc")]
#[test]
fn device_executables_use_jemalloc_for_malloc() {
    for bin in [
        env!("CARGO_BIN_EXE_fairmq-bsampler"),
        env!("CARGO_BIN_EXE_fairmq-sink"),
        env!("CARGO_BIN_EXE_fairmq-proxy"),
        env!("CARGO_BIN_EXE_fairmq-testdevice"),
    ] {
        assert!(jemalloc_stats(bin), "{bin} does not allocate with jemalloc");
    }
}
