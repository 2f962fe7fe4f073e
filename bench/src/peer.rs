//! The `--peer` directory: FairMQ's own `fairmq-bsampler` and `fairmq-sink` (and, if there,
//! `fairmq-shmmonitor`), what they are and how to start them.
//!
//! A peer is called FairMQ only if its `fairmq-bsampler` is FairMQ's: it links
//! `libfairmq.so.<version>` (the version goes into the report) or embeds FairMQ's repository URL
//! (a static build). Anything else, such as our own binaries given as `--peer` to exercise the
//! code path, is labelled `peer (not FairMQ)` in every output. FairMQ v1.10's `--version`
//! prints nothing (it silences the logger before logging the version), so the binary is read.

use std::path::{Path, PathBuf};

use std::io::Read as _;

use anyhow::{bail, Context, Result};

/// The devices a peer directory must hold.
pub const DEVICES: [&str; 2] = ["fairmq-bsampler", "fairmq-sink"];

/// What FairMQ's runs get on top of the common options: a segment large enough for 1000 queued
/// 8 MiB messages, and waiting for memory instead of throwing `MessageBadAlloc` at the first
/// failed allocation (FairMQ's default is one attempt). Our runs use our default segment.
pub const FAIRMQ_ARGS: [&str; 4] = [
    "--shm-segment-size",
    "8589934592",
    "--bad-alloc-max-attempts",
    "1000000",
];

/// A checked `--peer` directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The directory.
    pub dir: PathBuf,
    /// `FairMQ 1.10.0`, `FairMQ`, or `peer (not FairMQ)`.
    pub label: String,
    /// Whether the binaries are FairMQ's.
    pub is_fairmq: bool,
    /// The sibling library directory put first on `LD_LIBRARY_PATH`, if there is one.
    pub lib_dir: Option<PathBuf>,
    /// `fairmq-shmmonitor` of the peer, if there is one.
    pub shmmonitor: Option<PathBuf>,
}

/// Checks that `dir` holds both devices (naming each one missing) and identifies them.
pub fn open(dir: &Path) -> Result<Peer> {
    let missing: Vec<&str> = DEVICES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        let what = match missing.as_slice() {
            [one] => format!("{one} is missing"),
            many => format!("{} are missing", many.join(" and ")),
        };
        bail!(
            "--peer {}: {what} there; give the directory that holds FairMQ's fairmq-bsampler \
             and fairmq-sink (FairMQ's build tree `<build>/fairmq` or `<install>/bin`)",
            dir.display(),
        );
    }
    let exe = dir.join(DEVICES[0]);
    let found = identify_file(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let (is_fairmq, label) = match found {
        Some(Some(v)) => (true, format!("FairMQ {v}")),
        Some(None) => (true, "FairMQ".to_owned()),
        None => (false, "peer (not FairMQ)".to_owned()),
    };
    let lib_dir = ["lib", "lib64"]
        .iter()
        .map(|l| dir.join("..").join(l))
        .find(|l| l.is_dir())
        .and_then(|l| l.canonicalize().ok());
    let shmmonitor = Some(dir.join("fairmq-shmmonitor")).filter(|m| m.is_file());
    Ok(Peer {
        dir: dir.to_path_buf(),
        label,
        is_fairmq,
        lib_dir,
        shmmonitor,
    })
}

/// `Some(Some(version))` if the executable links `libfairmq.so.<version>`, `Some(None)` if it
/// embeds FairMQ's repository URL, `None` if it is not FairMQ.
pub fn identify(exe: &[u8]) -> Option<Option<String>> {
    const SONAME: &[u8] = b"libfairmq.so.";
    if let Some(at) = find(exe, SONAME) {
        let rest = &exe[at + SONAME.len()..];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        if len == rest.len() {
            return None; // cut off (a piece of a file): the version may go on
        }
        let v = String::from_utf8_lossy(&rest[..len])
            .trim_end_matches('.')
            .to_owned();
        return Some((!v.is_empty()).then_some(v));
    }
    find(exe, b"github.com/FairRootGroup/FairMQ").map(|_| None)
}

/// [`identify`] over a file, read in pieces (reading a large binary at once would raise the
/// tool's own peak RSS, the floor under the devices' RSS figures: see [`crate::rusage`]).
pub fn identify_file(path: &Path) -> std::io::Result<Option<Option<String>>> {
    const PIECE: usize = 1 << 20;
    const OVERLAP: usize = 128; // longer than any needle plus a version
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; PIECE + OVERLAP];
    let mut kept = 0;
    let mut url = false;
    loop {
        let n = file.read(&mut buf[kept..])?;
        let len = kept + n;
        match identify(&buf[..len]) {
            Some(Some(v)) => return Ok(Some(Some(v))),
            Some(None) => url = true,
            None => {}
        }
        if n == 0 {
            return Ok(url.then_some(None));
        }
        kept = len.min(OVERLAP);
        buf.copy_within(len - kept..len, 0);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `LD_LIBRARY_PATH` with `lib` first.
pub fn library_path(lib: &Path, current: Option<&str>) -> String {
    match current {
        Some(c) if !c.is_empty() => format!("{}:{c}", lib.display()),
        _ => lib.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_fairmq_by_its_library() {
        let mut exe =
            b"\x7fELF....libFairLogger.so.2.2\0libfairmq.so.1.10.0\0libzmq.so.5\0".to_vec();
        assert_eq!(identify(&exe), Some(Some("1.10.0".to_owned())));
        exe = b"\0libfairmq.so.\0".to_vec();
        assert_eq!(identify(&exe), Some(None));
        exe = b"\0libfairmq.so.1.1".to_vec();
        assert_eq!(identify(&exe), None, "cut off");
        exe = b"...https://github.com/FairRootGroup/FairMQ\0".to_vec();
        assert_eq!(identify(&exe), Some(None));
        exe = b"fairmq-rs 0.1.0 (FairMQ-compatible device runtime)\0FairMQ version: ".to_vec();
        assert_eq!(identify(&exe), None);
    }

    #[test]
    fn identifies_a_file_read_in_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exe");
        // The version straddles the boundary of the first piece.
        let mut exe = vec![b'x'; (1 << 20) + 128 - 15];
        exe.extend_from_slice(b"libfairmq.so.1.10.0\0");
        exe.extend(vec![b'y'; 3 << 20]);
        std::fs::write(&path, &exe).expect("w");
        assert_eq!(
            identify_file(&path).expect("read"),
            Some(Some("1.10.0".into()))
        );
        std::fs::write(&path, vec![b'z'; 3 << 20]).expect("w");
        assert_eq!(identify_file(&path).expect("read"), None);
        let mut exe = vec![b'z'; 2 << 20];
        exe.extend_from_slice(b"https://github.com/FairRootGroup/FairMQ");
        std::fs::write(&path, &exe).expect("w");
        assert_eq!(identify_file(&path).expect("read"), Some(None));
    }

    #[test]
    fn names_the_missing_binaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = open(dir.path()).expect_err("empty dir").to_string();
        assert!(
            e.contains("fairmq-bsampler and fairmq-sink are missing"),
            "{e}"
        );
        std::fs::write(dir.path().join("fairmq-bsampler"), b"libfairmq.so.1.10.0\0").expect("w");
        let e = open(dir.path()).expect_err("no sink").to_string();
        assert!(e.contains(": fairmq-sink is missing there"), "{e}");
        assert!(!e.contains("are missing"), "{e}");
        std::fs::write(dir.path().join("fairmq-sink"), b"x").expect("w");
        let p = open(dir.path()).expect("both there");
        assert_eq!(p.label, "FairMQ 1.10.0");
        assert!(p.is_fairmq);
        assert_eq!(p.shmmonitor, None);
    }

    #[test]
    fn finds_the_sibling_lib_dir() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        for b in DEVICES.iter().chain(&["fairmq-shmmonitor"]) {
            std::fs::write(bin.join(b), b"not fairmq").expect("w");
        }
        let p = open(&bin).expect("opened");
        assert_eq!(p.lib_dir, None);
        assert!(!p.is_fairmq);
        assert_eq!(p.label, "peer (not FairMQ)");
        assert_eq!(p.shmmonitor, Some(bin.join("fairmq-shmmonitor")));
        std::fs::create_dir(root.path().join("lib")).expect("lib");
        let p = open(&bin).expect("opened");
        let lib = root.path().join("lib").canonicalize().expect("canonical");
        assert_eq!(p.lib_dir.as_deref(), Some(lib.as_path()));
        assert_eq!(
            library_path(&lib, Some("/a:/b")),
            format!("{}:/a:/b", lib.display())
        );
        assert_eq!(library_path(&lib, Some("")), lib.display().to_string());
    }
}
