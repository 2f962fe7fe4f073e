//! `fairmq-uuid-gen` as FairMQ's (spec §8.8): each option form prints one line of the expected
//! form and exits 0; bad options exit 2. (The hash itself is checked against Boost's values by
//! the binary's unit tests.)

use std::collections::HashSet;
use std::process::{Command, Output};

use regex::Regex;

const BIN: &str = env!("CARGO_BIN_EXE_fairmq-uuid-gen");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run fairmq-uuid-gen")
}

/// The single line printed by a successful run.
fn line(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let line = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{args:?}: no newline at the end of {text:?}"));
    assert!(
        !line.contains('\n'),
        "{args:?}: more than one line: {text:?}"
    );
    line.to_owned()
}

fn uuid_form() -> Regex {
    // Version 4, RFC 4122 variant, lower case.
    Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").unwrap()
}

fn hash_form() -> Regex {
    Regex::new(r"^(0|[1-9][0-9]{0,19})$").unwrap()
}

#[test]
fn without_options_prints_a_random_v4_uuid() {
    let re = uuid_form();
    let mut seen = HashSet::new();
    for _ in 0..5 {
        let l = line(&[]);
        assert!(re.is_match(&l), "{l:?}");
        assert!(seen.insert(l), "the same UUID twice");
    }
}

#[test]
fn hash_forms_print_a_size_t_hash() {
    let re = hash_form();
    let mut seen = HashSet::new();
    for args in [
        &["-h"][..],
        &["--hash"],
        &["--hash=1"],
        &["--hash=true"],
        &["--hash=yes"],
        &["--hash=on"],
        &["--hash=TRUE"],
        &["--hash", "1"],
        &["-h1"],
        &["-h", "true"],
        &["--has"],
        &["--hash=0", "--hash"],
        &["ignored", "--hash"],
    ] {
        let l = line(args);
        assert!(re.is_match(&l), "{args:?}: {l:?}");
        // size_t: the hash is a 64-bit number (this test runs on 64-bit Linux).
        l.parse::<u64>()
            .unwrap_or_else(|e| panic!("{args:?}: {l:?}: {e}"));
        assert!(seen.insert(l), "{args:?}: the same hash twice");
    }
}

#[test]
fn a_false_hash_value_prints_a_uuid() {
    let re = uuid_form();
    for args in [
        &["--hash=0"][..],
        &["--hash=false"],
        &["--hash=no"],
        &["--hash=off"],
        &["--hash", "false"],
        &["-h0"],
        &["-h", "false"],
        &["-hfalse"],
        &["ignored"],
        &["--", "--hash"],
    ] {
        let l = line(args);
        assert!(re.is_match(&l), "{args:?}: {l:?}");
    }
}

#[test]
fn help_is_fairmqs() {
    // FairMQ's, byte for byte (Boost.Program_options ends it with an empty line).
    let want = "UUID generator\nOptions:\n  -h [ --hash ] [=arg(=1)] Generates UUID and returns its hash.\n  --help                   Print help\n\n";
    for args in [
        &["--help"][..],
        &["--he"],
        &["--hash", "--help"],
        &["--help", "x"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, want, "{args:?}");
    }
}

#[test]
fn bad_options_exit_2_with_a_message() {
    for (args, needle) in [
        (&["--foo"][..], "--foo"),
        (&["-x"], "-x"),
        (&["--hash=2"], "'on|off', 'yes|no', '1|0' and 'true|false'"),
        (&["--hash", "maybe"], "maybe"),
        (&["-hh"], "'on|off'"),
        (&["--hash="], "--hash"),
        (&["--HASH"], "--HASH"),
        (&["--h"], "--h"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
