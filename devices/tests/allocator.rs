//! The device executables allocate with jemalloc, C code included (feature `jemalloc`, on by
//! default): jemalloc reads `MALLOC_CONF` only if the process's `malloc` is its own, and then
//! prints its statistics at exit, with the options it was built with.

#[cfg(feature = "jemalloc")]
use std::process::Command;

#[cfg(feature = "jemalloc")]
fn jemalloc_stats(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("--help")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run the device");
    assert_eq!(out.status.code(), Some(0), "{bin}: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
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
        let stats = jemalloc_stats(bin);
        assert!(
            stats.contains("Begin jemalloc statistics"),
            "{bin} does not allocate with jemalloc"
        );
        // .cargo/config.toml: no dedicated arena for 8 MiB and more (it refaulted every page
        // of every large message libzmq received).
        assert!(
            stats.contains("opt.oversize_threshold: 0\n"),
            "{bin}: jemalloc built without the workspace's malloc_conf"
        );
        // And it splits a merged run of freed pages for a message (RSS at 64 KiB).
        assert!(
            stats.contains("opt.lg_extent_max_active_fit: 12\n"),
            "{bin}: jemalloc built without the workspace's lg_extent_max_active_fit"
        );
    }
}
