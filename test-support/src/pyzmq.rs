//! A Python interpreter with pyzmq, for tests whose foreign peer is a plain ZeroMQ program.
//!
//! [`python`] returns the interpreter of a virtual environment `pyzmq-venv/` in cargo's target
//! directory, with [`PYZMQ`] installed from PyPI. The first test process that needs it creates
//! it with `python3 -m venv` and pip, under an exclusive lock on `pyzmq-venv.lock` (parallel test
//! processes wait for it instead of racing); a file in the environment records what was
//! installed, so later runs reuse it, and a half-made environment (a run killed while
//! installing) is made again. Needs `python3` with its `venv` module (Debian and Ubuntu ship
//! that as the package `python3-venv`) and PyPI reachable on first use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned requirement.
pub const PYZMQ: &str = "pyzmq==27.3.0";

/// The version that `import zmq` must report.
const PYZMQ_VERSION: &str = "27.3.0";

/// The file in the environment that says it is complete, and with what.
const STAMP: &str = "fairmq-rs-installed";

/// The interpreter of the pyzmq environment, created on first use. Panics with what to install
/// when it cannot be created.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = target_dir().join("pyzmq-venv");
            ensure_venv(&dir).unwrap_or_else(|e| panic!("{e}"))
        })
        .clone()
}

/// Cargo's target directory: the ancestor of this test executable that holds cargo's
/// `CACHEDIR.TAG` (target/debug/deps/<test> → target), else `CARGO_TARGET_DIR`, else the
/// workspace's `target/`.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        if dir.is_absolute() {
            return dir;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// Makes sure `dir` is a virtual environment with [`PYZMQ`]; returns its interpreter.
fn ensure_venv(dir: &Path) -> Result<PathBuf, String> {
    let parent = dir.parent().expect("the venv has a parent directory");
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("create the lock file {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;

    let python = dir.join("bin").join("python");
    let stamp = dir.join(STAMP);
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == PYZMQ) {
        return Ok(python);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("remove the incomplete {}: {e}", dir.display()))?;
    }

    eprintln!(
        "creating {} with {PYZMQ} (once; needs python3-venv and PyPI)",
        dir.display()
    );
    run(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        "python3 -m venv",
        "a Python virtual environment for the pyzmq test peer could not be created: install \
         python3 with its venv module (Debian/Ubuntu: apt-get install python3 python3-venv)",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            PYZMQ,
        ]),
        "pip install",
        &format!(
            "pip could not install {PYZMQ} into {} (PyPI must be reachable on the first run)",
            dir.display()
        ),
    )?;
    let version = run(
        Command::new(&python).args(["-c", "import zmq; print(zmq.__version__)"]),
        "import zmq",
        "pyzmq was installed but does not import",
    )?;
    if version.trim() != PYZMQ_VERSION {
        return Err(format!(
            "{} has pyzmq {}, expected {PYZMQ_VERSION}",
            dir.display(),
            version.trim()
        ));
    }
    std::fs::write(&stamp, format!("{PYZMQ}\n"))
        .map_err(|e| format!("write {}: {e}", stamp.display()))?;
    Ok(python)
}

/// Runs `cmd` to completion; its stdout, or an error that says `what` went wrong and `hint`.
fn run(cmd: &mut Command, what: &str, hint: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| {
        let program = cmd.get_program().to_string_lossy().into_owned();
        format!("{hint}\n({what}: cannot run {program}: {e})")
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(format!(
        "{hint}\n({what} exited with {}:\n{}{})",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
