//! Shared by the integration tests: the fixtures (built on demand by fixtures/build.py) and the
//! `wasix-dl` binary under test.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory with the built fixtures. Builds what is missing or stale; panics with the
/// build's own message (e.g. "run toolchain/setup.sh") when that fails.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target").join("fixtures");
        let out = Command::new("python3")
            .arg(root().join("fixtures").join("build.py"))
            .arg(&dir)
            .output()
            .expect("python3 is needed to build the fixtures");
        assert!(
            out.status.success(),
            "building the fixtures failed (set up the toolchain with toolchain/setup.sh):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(
        path.exists(),
        "fixture {name} was not built by fixtures/build.py"
    );
    path
}

pub fn wasix_dl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasix-dl"))
}

/// Runs `wasix-dl run ARGS...` with stdin from `input`, in `cwd`.
pub fn run_in(cwd: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = wasix_dl();
    cmd.arg("run").args(args).current_dir(cwd);
    output_within(cmd, input, Duration::from_secs(120))
}

/// Runs `cmd` with stdin from `input` and returns its output; a run longer than `limit` is
/// killed and fails the test (a hang is a bug, not a slow test).
pub fn output_within(cmd: Command, input: &[u8], limit: Duration) -> Output {
    interact(cmd, None, input, limit)
}

/// Every command a test starts has a deadline: `cmd.output_in_time()` is `output()` that
/// kills the program and fails the test after two minutes (a hang is a bug, not a slow test).
pub trait Deadline {
    fn output_in_time(&mut self) -> Output;
}

impl Deadline for Command {
    fn output_in_time(&mut self) -> Output {
        let cmd = std::mem::replace(self, Command::new("false"));
        output_within(cmd, b"", Duration::from_secs(120))
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh scratch directory under target/ (removed at the start of the next run of the test).
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd`, waits until its stdout has printed a line starting with `marker` (stdin held
/// open meanwhile), then writes `input` to its stdin and closes it. Returns everything it
/// printed and its status; a run longer than `limit` is killed and fails the test.
pub fn output_after_marker(cmd: Command, marker: &str, input: &[u8], limit: Duration) -> Output {
    interact(cmd, Some(marker), input, limit)
}

/// Runs `cmd`, writes `input` to its stdin (once its stdout printed a line starting with
/// `marker`, if given) and closes it; kills it and fails if a step takes longer than `limit`.
fn interact(mut cmd: Command, marker: Option<&str>, input: &[u8], limit: Duration) -> Output {
    use std::io::{BufRead, Read, Write};
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (mut stdin, stdout, mut stderr) = (
        child.stdin.take().unwrap(),
        child.stdout.take().unwrap(),
        child.stderr.take().unwrap(),
    );
    let (marked, seen_marker) = std::sync::mpsc::channel();
    let wanted = marker.map(str::to_string);
    let reader = std::thread::spawn(move || {
        let mut printed = Vec::new();
        let mut lines = std::io::BufReader::new(stdout);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if wanted.as_deref().is_some_and(|w| line.starts_with(w)) {
                let _ = marked.send(());
            }
            printed.extend_from_slice(line.as_bytes());
            line.clear();
        }
        printed
    });
    let errors = std::thread::spawn(move || {
        let mut printed = Vec::new();
        let _ = stderr.read_to_end(&mut printed);
        printed
    });
    let kill = |why: &str| -> ! {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("{cmd:?}: {why}: killed");
    };
    if marker.is_some() && seen_marker.recv_timeout(limit).is_err() {
        kill(&format!(
            "no line starting with {marker:?} within {limit:?}"
        ));
    }
    // A program that exits without reading its input closes the pipe: not an error.
    let _ = stdin.write_all(input);
    drop(stdin);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait()));
    let status = match finished.recv_timeout(limit) {
        Ok(status) => status.expect("wait for the child"),
        Err(_) => kill(&format!("did not finish within {limit:?}")),
    };
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: errors.join().unwrap(),
    }
}
