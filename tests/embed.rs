//! Embedding wasix-dl: programs on a shared `Runtime`, from async code.

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use wasix_dl::{Input, MappedDir, Output, Program, Runtime};

/// A program that a hang cannot keep for more than two minutes (it then fails with
/// `DeadlineExceeded`); tests that set their own deadline replace this one.
fn bounded(module: impl Into<std::path::PathBuf>) -> Program {
    Program::new(module).deadline(std::time::Duration::from_secs(120))
}

fn fixtures_dir() -> MappedDir {
    MappedDir::parse(&fixtures().display().to_string()).unwrap()
}

#[test]
fn programs_run_concurrently_from_async_code_on_one_runtime() {
    // A service's own tokio runtime, eight dynamically linked programs at once.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::on(tokio.handle().clone(), None);
    let program = bounded(fixture("dl_basic.wasm"))
        .dir(fixtures_dir())
        .stdout(Output::Capture);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let (program, runtime) = (program.clone(), runtime.clone());
            tokio.spawn(async move { program.output_async(&runtime).await })
        })
        .collect();
    let deadline = std::time::Duration::from_secs(120);
    for run in runs {
        let out = tokio
            .block_on(async { tokio::time::timeout(deadline, run).await })
            .expect("a run did not end within two minutes")
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status, 0);
        assert!(
            stdout.starts_with("side_add(2, 3) = 47\nside_value = 42\n"),
            "{stdout}"
        );
    }
}

/// The `wasix_dl::libs` debug events of `f`, made on this thread.
fn library_events(f: impl FnOnce()) -> String {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("wasix_dl::libs=debug")
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn a_program_run_again_on_its_runtime_reads_no_compiled_module_from_disk() {
    // Another process fills a disk cache of this test's own: the first run in this one
    // loads from it.
    let cache = scratch("embed_cache");
    let mut cmd = wasix_dl();
    cmd.args(["run", "--dir", ".", "uses_side.wasm"])
        .current_dir(fixtures())
        .env("WASIX_DL_CACHE", &cache)
        .env_remove("WASIX_DL_NO_CACHE");
    assert!(output_within(cmd, b"", std::time::Duration::from_secs(120))
        .status
        .success());
    let runtime = Runtime::builder()
        .cache_dir(Some(cache.join("modules")))
        .build()
        .unwrap();
    let program = bounded(fixture("uses_side.wasm"))
        .dir(fixtures_dir())
        .stdout(Output::Capture);
    let first = library_events(|| assert_eq!(program.run_on(&runtime).unwrap(), 0));
    let again = library_events(|| assert_eq!(program.run_on(&runtime).unwrap(), 0));
    assert!(
        first.contains("compiled module loaded from the cache"),
        "first run: {first}"
    );
    assert!(
        !again.contains("loaded from the cache")
            && again.contains("compiled earlier in this process"),
        "second run: {again}"
    );
}

#[test]
fn concurrent_programs_output_is_captured_each_its_own() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let runtime = Runtime::on(tokio.handle().clone(), None);
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let program = bounded(fixture("hello.wasm"))
                .arg(format!("run{i}"))
                .env("GREETING", format!("from {i}"))
                .stdout(Output::Capture)
                .stderr(Output::Capture);
            let runtime = runtime.clone();
            tokio.spawn(async move { program.output_async(&runtime).await })
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let out = tokio.block_on(run).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello run{i}\nGREETING=from {i}\n")
        );
        assert_eq!((out.status, out.stderr.len()), (0, 0));
    }
}

#[test]
fn a_trap_is_reported_in_the_captured_standard_error() {
    let runtime = Runtime::new().unwrap();
    let out = bounded(fixture("trap.wasm"))
        .stdout(Output::Capture)
        .stderr(Output::Capture)
        .output_on(&runtime)
        .unwrap();
    assert_eq!(out.status, wasix_dl::TRAP_EXIT_CODE);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before the trap\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("wasix-dl: ") && stderr.contains("crash"),
        "{stderr}"
    );
}

#[test]
fn captured_and_null_streams_are_a_pipe_and_a_device_not_the_host_s() {
    // Under the test harness the host's streams are pipes: a null stderr must read as
    // /dev/null does (a character device that is not a terminal), not as the host's pipe.
    let dir = scratch("embed_isatty");
    std::fs::copy(fixture("isatty.wasm"), dir.join("isatty.wasm")).unwrap();
    let out = bounded(dir.join("isatty.wasm"))
        .dir(MappedDir::parse(&dir.display().to_string()).unwrap())
        .stdin(Input::Bytes(Vec::new()))
        .stdout(Output::Capture)
        .stderr(Output::Null)
        .output_on(&Runtime::new().unwrap())
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "fd 0: isatty 0\nfd 1: isatty 0, other\nfd 2: isatty 0, character device\n"
        ),
        "{stdout}"
    );
}

#[test]
fn programs_run_on_blocking_threads_not_on_the_executor() {
    // One executor thread; each guest waits until a file appears, which an async task on
    // that thread creates when told to, once the guests run. Were a run to occupy the
    // executor, the task could not run: a watchdog thread then creates the file after a
    // minute (so that everything ends) and the test fails.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::on(tokio.handle().clone(), None);
    let dir = scratch("embed_wait");
    let go = dir.join("go");
    let _ = std::fs::remove_file(&go);
    let wat = wait_for_file(&go.display().to_string());
    let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap();
    std::fs::write(dir.join("wait.wasm"), &wasm).unwrap();
    let program =
        bounded(dir.join("wait.wasm")).dir(MappedDir::parse(&dir.display().to_string()).unwrap());

    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (program, runtime) = (program.clone(), runtime.clone());
            tokio.spawn(async move { program.run_async(&runtime).await })
        })
        .collect();
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let by_task = go.clone();
    tokio.spawn(async move {
        if told.await.is_ok() {
            std::fs::write(&by_task, b"task").unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    tell.send(()).unwrap();
    let by_watchdog = go.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if !by_watchdog.exists() {
            std::fs::write(&by_watchdog, b"watchdog").unwrap();
        }
    });
    for run in runs {
        assert_eq!(tokio.block_on(run).unwrap().unwrap(), 0);
    }
    assert_eq!(
        std::fs::read(&go).unwrap(),
        b"task",
        "the executor was blocked"
    );
}

/// A WASI command that checks every 10 ms whether `path` exists and exits 0 once it does.
fn wait_for_file(path: &str) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_filestat_get"
            (func $stat (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 1024) "{path}")
          (func (export "_start")
            ;; a clock subscription at 256: tag 0 at +8, 10 ms at +24
            (i64.store (i32.const 280) (i64.const 10000000))
            (block $found
              (loop $again
                ;; fd 3 is the guest's root, "/"; the path without its leading "/"
                (br_if $found (i32.eqz (call $stat (i32.const 3) (i32.const 0)
                  (i32.const 1025) (i32.const {len}) (i32.const 512))))
                (drop (call $poll (i32.const 256) (i32.const 600) (i32.const 1) (i32.const 700)))
                (br $again)))))"#,
        len = path.len() - 1
    )
}

#[test]
fn a_deadline_ends_a_program_that_computes_or_sleeps_for_ever() {
    let runtime = Runtime::new().unwrap();
    for mode in ["spin", "sleep"] {
        let result = bounded(fixture("limits.wasm"))
            .arg(mode)
            .deadline(std::time::Duration::from_millis(300))
            .output_on(&runtime);
        assert!(
            matches!(result, Err(wasix_dl::Error::DeadlineExceeded { .. })),
            "{mode}: {result:?}"
        );
    }
    // The runtime is still usable.
    let out = bounded(fixture("hello.wasm"))
        .stdout(Output::Capture)
        .output_on(&runtime)
        .unwrap();
    assert_eq!(out.stdout, b"hello\n");
}

#[test]
fn dropping_the_future_of_a_run_cancels_it() {
    // The guest appends to a file every 10 ms; once its run's future is dropped, the file
    // must stop growing.
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let runtime = Runtime::on(tokio.handle().clone(), None);
    let dir = scratch("embed_cancel");
    let ticks = dir.join("ticks");
    let _ = std::fs::remove_file(&ticks);
    let program = bounded(fixture("limits.wasm"))
        .args(["tick", &ticks.display().to_string()])
        .dir(MappedDir::parse(&dir.display().to_string()).unwrap());
    tokio.block_on(async {
        let run = program.output_async(&runtime);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(500), run).await;
        assert!(timed_out.is_err(), "a program that ticks for ever ended");
    });
    let size = || std::fs::metadata(&ticks).map(|m| m.len()).unwrap_or(0);
    assert!(size() > 0, "the program never ticked");
    std::thread::sleep(std::time::Duration::from_millis(300)); // it stops at its next call
    let stopped = size();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        size(),
        stopped,
        "the program still runs after its future was dropped"
    );
}

#[test]
fn a_memory_limit_bounds_what_the_program_can_allocate() {
    let out = bounded(fixture("limits.wasm"))
        .arg("alloc")
        .memory_limit(64 << 20)
        .stdout(Output::Capture)
        .stderr(Output::Capture)
        .output_on(&Runtime::new().unwrap())
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mib: u32 = stdout
        .trim()
        .strip_prefix("allocated ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(out.status == 0 && (40..64).contains(&mib), "{stdout}");
}
