//! Property tests of the monitor's command line: its clap parser (the binary's cli.rs,
//! compiled into this test) on arbitrary argv, and the `fairmq-shmmonitor` binary itself run
//! with arbitrary argv.
//!
//! Properties: the parser never panics (clap's own consistency checks of the command run on
//! the first parse of a debug build) and returns within [`PARSE_DEADLINE`]; argv built from
//! valid values parses to them; the binary exits within the deadline with 0 (success or help)
//! or 1 and, on 1, exactly one line on standard error, `fairmq-shmmonitor: error: ...`.
//!
//! The binary is always run with `--get-shmid`, which is dispatched before every mode that
//! acts on shared memory (`--cleanup`, `--cleanup-dead`, `--monitor`, `-i`, `--daemonize`), so
//! the random flags cannot clean up or start anything; it runs in a temporary directory (a
//! daemon's `--verbose` log would be created there).
//!
//! Cases per test: `PROPTEST_CASES` (default [`CASES`], and [`BINARY_CASES`] processes). A
//! long local run: `PROPTEST_CASES=100000 cargo test -p fairmq-shmmonitor --release --test
//! prop_cli` (the binary test then spawns 100000 processes too).

#[allow(dead_code)]
#[path = "../src/bin/fairmq-shmmonitor/cli.rs"]
mod cli;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};

use clap::Parser;
use cli::{Cli, Output};
use fairmq_test_support::{prop_cases, wait_child, within, PARSE_DEADLINE};
use proptest::prelude::*;

/// Default cases of the parser properties.
const CASES: u32 = 256;
/// Default cases of the binary property (one process each).
const BINARY_CASES: u32 = 48;

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: prop_cases(default),
        ..ProptestConfig::default()
    }
}

/// Every option of the monitor, long and short.
const FLAGS: &[&str] = &[
    "-s",
    "--session",
    "--shmid",
    "-c",
    "--cleanup",
    "--cleanup-dead",
    "--force",
    "-r",
    "--reset-content",
    "-x",
    "--self-destruct",
    "-i",
    "--interactive",
    "-v",
    "--view",
    "-t",
    "--timeout",
    "-d",
    "--daemonize",
    "-m",
    "--monitor",
    "-b",
    "--debug",
    "-e",
    "--clean-on-exit",
    "--cleanup-on-exit",
    "--interval",
    "--get-shmid",
    "--list-all",
    "--list-all-path",
    "--verbose",
    "--severity",
    "--user-id",
    "--output",
    "-h",
    "--help",
    "--version",
    "-V",
    "--",
];

/// One argv token: a real flag, a value (numbers at the edges, the enum values, junk), a
/// `--flag=value`, a cluster of short flags, or arbitrary bytes.
fn token() -> impl Strategy<Value = OsString> {
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        proptest::sample::select(vec![
            "0",
            "-1",
            "1",
            "18446744073709551616",
            "-9223372036854775809",
            "text",
            "json",
            "JSON",
            "info",
            "trace",
            "nolog",
            "bogus",
            "",
            "default",
            "deadbeef",
            "DEADBEEF",
            "0123456789abcdef0",
            "/dev/shm/",
            "/nonexistent",
        ])
        .prop_map(String::from),
        "\\PC{0,10}",
    ];
    let flag = proptest::sample::select(FLAGS.to_vec()).prop_map(String::from);
    prop_oneof![
        4 => flag.clone().prop_map(OsString::from),
        3 => value.clone().prop_map(OsString::from),
        1 => (flag, value).prop_map(|(f, v)| OsString::from(format!("{f}={v}"))),
        1 => "-[csrxivtdmbeh]{1,4}".prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

fn argv() -> impl Strategy<Value = Vec<OsString>> {
    prop::collection::vec(token(), 0..8)
}

fn parse(args: &[OsString]) -> Result<Cli, String> {
    let argv: Vec<OsString> = std::iter::once(OsString::from("fairmq-shmmonitor"))
        .chain(args.iter().cloned())
        .collect();
    within(PARSE_DEADLINE, &argv.clone(), move || {
        Cli::try_parse_from(argv).map_err(|e| {
            // What the binary prints: the first line of clap's message.
            let text = e.to_string();
            assert!(!text.trim().is_empty(), "clap error without a message");
            text.lines().next().unwrap_or_default().to_owned()
        })
    })
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn parser_on_arbitrary_argv(args in argv()) {
        let _ = parse(&args);
    }

    /// Valid values, each option in one of its spellings, in random order: the parse gives
    /// them back.
    #[test]
    fn parser_gives_back_what_was_built(
        // (a value starting with "-" needs --session=-x: clap takes "-x" for a flag)
        session in "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,11}",
        shmid in "[0-9a-f]{8,16}",
        timeout in any::<u64>(),
        interval in 1..=u64::MAX,
        user_id in any::<i64>(),
        severity in proptest::sample::select(vec!["trace", "debug", "info", "warn", "error", "nolog"]),
        json_out in any::<bool>(),
        // Each at most once (clap refuses a repeated flag).
        flags in prop::sample::subsequence(vec![
            "-c", "--force", "-x", "-i", "-v", "-d", "-m", "-b", "--cleanup-on-exit",
            "--get-shmid", "--list-all", "--verbose", "--cleanup-dead", "-r",
        ], 0..6),
        long in any::<bool>(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut groups: Vec<Vec<String>> = vec![
            if long { vec![format!("--session={session}")] } else { vec!["-s".into(), session.clone()] },
            vec!["--shmid".into(), shmid.clone()],
            if long { vec!["--timeout".into(), timeout.to_string()] } else { vec![format!("-t{timeout}")] },
            vec![format!("--interval={interval}")],
            vec!["--user-id".into(), user_id.to_string()],
            vec!["--severity".into(), severity.to_owned()],
            vec!["--output".into(), if json_out { "json" } else { "text" }.into()],
        ];
        groups.extend(flags.iter().map(|f| vec![f.to_string()]));
        let n = groups.len();
        groups.rotate_left(order.index(n));
        let args: Vec<OsString> = groups.into_iter().flatten().map(OsString::from).collect();
        let cli = parse(&args).map_err(|e| TestCaseError::fail(format!("{args:?}: {e}")))?;
        prop_assert_eq!(&cli.session, &session);
        prop_assert_eq!(&cli.shmid, &shmid);
        prop_assert_eq!(cli.timeout, timeout);
        prop_assert_eq!(cli.interval, interval);
        prop_assert_eq!(cli.user_id, user_id);
        prop_assert_eq!(&cli.severity, severity);
        prop_assert_eq!(cli.output, if json_out { Output::Json } else { Output::Text });
        let has = |f: &str| flags.contains(&f);
        prop_assert_eq!(cli.cleanup, has("-c"));
        prop_assert_eq!(cli.interactive, has("-i"));
        prop_assert_eq!(cli.monitor, has("-m"));
        prop_assert_eq!(cli.clean_on_exit, has("--cleanup-on-exit"));
        prop_assert_eq!(cli.get_shmid, has("--get-shmid"));
        prop_assert_eq!(cli.reset_content, has("-r"));
        prop_assert_eq!(cli.cleanup_dead, has("--cleanup-dead"));
    }
}

proptest! {
    #![proptest_config(config(BINARY_CASES))]

    #[test]
    fn binary_on_arbitrary_argv(args in argv()) {
        // An argument of exec cannot hold a NUL byte.
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| OsString::from_vec(a.into_vec().into_iter().filter(|b| *b != 0).collect()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fairmq-shmmonitor"))
            .args(&args)
            .arg("--get-shmid")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_child(&mut child, PARSE_DEADLINE);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let code = status.code();
        prop_assert!(matches!(code, Some(0 | 1)), "{args:?}: exit {status:?}, stderr {stderr:?}");
        if code == Some(1) {
            prop_assert_eq!(stderr.lines().count(), 1, "{:?}: stderr {:?}", args, stderr);
            prop_assert!(stderr.starts_with("fairmq-shmmonitor: error: "), "{:?}", stderr);
        }
        // Nothing but a daemon's log file may appear in the working directory, and no
        // daemon runs: --get-shmid comes first.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name();
            prop_assert!(name.to_string_lossy().starts_with("fairmq-shmmonitor_"), "{:?} created {:?}", args, name);
        }
    }
}
