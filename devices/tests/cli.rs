//! Command line, configuration layering and logging through the real binaries.

mod common;

use common::{bin, run, Ipc, Proc};

#[test]
fn version_and_print_channels_are_plain_stdout() {
    let (code, out) = run("fairmq-sink", &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, "FairMQ version: 0.1.0\nUser device version: 0.0.0\n");
    let (code, out) = run(
        "fairmq-merger",
        &["--print-channels", "--in-channel", "inputs"],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "inputs:1:10000\ndata-out:1:1\n");
}

#[test]
fn help_and_print_options() {
    let (code, out) = run("fairmq-bsampler", &["-h"]);
    assert_eq!(code, 0);
    for needle in [
        "--msg-size",
        "--shm-segment-size",
        "--channel-config",
        "-S, --plugin-search-path",
        "--control",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    let (code, out) = run("fairmq-bsampler", &["--print-options", "--msg-size", "42"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\nmsg-size:42:unsigned long:Message size in bytes\n"),
        "{out}"
    );
    assert!(
        out.contains("\nshm-segment-size:2147483648:unsigned long:"),
        "{out}"
    );
    assert!(out.contains("\nconfig-key::<unknown>:"), "{out}");
    assert!(out.contains("\nrate:0:float:"), "{out}");
}

/// defaults < options file < FAIRMQ_* environment < command line.
#[test]
fn option_layers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("opts.json");
    std::fs::write(
        &file,
        r#"{"msg-size": 11, "max-iterations": 22, "num-parts": 33}"#,
    )
    .unwrap();
    let file = file.display().to_string();
    let mut p = Proc::device_with(
        bin("fairmq-bsampler"),
        &[
            "--options-file",
            &file,
            "--msg-size",
            "44",
            "--print-options",
        ],
        |cmd| {
            cmd.env("FAIRMQ_MAX_ITERATIONS", "55");
        },
    );
    let out = p.success();
    assert!(out.contains("\nmsg-size:44:"), "{out}");
    assert!(out.contains("\nmax-iterations:55:"), "{out}");
    assert!(out.contains("\nnum-parts:33:"), "{out}");
    assert!(out.contains("\nmemset:false:"), "{out}");
}

#[test]
fn severity_from_environment_overrides_the_option() {
    let mut p = Proc::device_with(
        bin("fairmq-testdevice"),
        &["--id", "t", "--control", "static", "--severity", "debug"],
        |cmd| {
            cmd.env("FAIRMQ_SEVERITY", "warn");
        },
    );
    let out = p.success();
    assert!(
        !out.contains("---> EXITING"),
        "state lines shown at warn:\n{out}"
    );
    assert!(out.contains("[WARN] No channels created"), "{out}");
    // `state` shows state changes but not info.
    let (code, out) = run(
        "fairmq-testdevice",
        &["--id", "t", "--control", "static", "--severity", "state"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("[STATE] IDLE ---> EXITING"), "{out}");
    assert!(!out.contains("[INFO]"), "{out}");
    let (code, out) = run(
        "fairmq-testdevice",
        &["--id", "t", "--control", "static", "--severity", "nolog"],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "");
}

#[test]
fn log_to_file_replaces_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("device").display().to_string();
    let (code, out) = run(
        "fairmq-testdevice",
        &[
            "--id",
            "t",
            "--control",
            "static",
            "--log-to-file",
            &prefix,
            "--file-severity",
            "state",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(text.contains("[STATE] IDLE ---> EXITING"), "{text}");
    assert!(!text.contains("[INFO]"), "{text}");
}

#[test]
fn verbosity_shapes_the_prefix() {
    let (_, out) = run(
        "fairmq-testdevice",
        &["--id", "t", "--control", "static", "--verbosity", "verylow"],
    );
    assert!(out.lines().any(|l| l == "IDLE ---> EXITING"), "{out}");
    let (_, out) = run(
        "fairmq-testdevice",
        &["--id", "t", "--control", "static", "--verbosity", "low"],
    );
    assert!(
        out.lines().any(|l| l == "[STATE] IDLE ---> EXITING"),
        "{out}"
    );
}

/// Rates are per second also when `rateLogging` is more than one second (FairMQ divides an
/// N-second delta by about one second).
#[test]
fn rate_logging_reports_true_per_second_rates() {
    let ipc = Ipc::new("rates");
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            "1000",
            "--channel-config",
            &format!(
                "name=data,type=pull,method=bind,rateLogging=0,address={}",
                ipc.address()
            ),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            "1000",
            "--msg-rate",
            "200",
            "--msg-size",
            "1000",
            "--channel-config",
            &format!(
                "name=data,type=push,method=connect,rateLogging=2,address={}",
                ipc.address()
            ),
        ],
    );
    let out = sampler.success();
    sink.success();
    let rates: Vec<f64> = out
        .lines()
        .filter_map(|l| {
            let rest = l.split("data[0]: in: 0 (0 MB) out: ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    assert!(!rates.is_empty(), "no rate lines:\n{out}");
    // 200 msg/s; FairMQ would report about 400 with rateLogging=2.
    assert!(
        rates.iter().any(|r| (150.0..260.0).contains(r)),
        "{rates:?}\n{out}"
    );
    assert!(rates.iter().all(|r| *r < 300.0), "{rates:?}\n{out}");
}
