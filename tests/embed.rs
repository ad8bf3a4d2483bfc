//! Embedding wasix-dl: programs on a shared `Runtime`, from async code.

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use wasix_dl::{MappedDir, Program, Runtime};

fn fixtures_dir() -> MappedDir {
    MappedDir::parse(&fixtures().display().to_string()).unwrap()
}

#[test]
fn programs_run_concurrently_from_async_code_on_one_runtime() {
    // A service's own tokio runtime: run_async must not block its executor (a blocked
    // executor thread of a 2-thread runtime would serialise the eight runs, or hang them).
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::on(tokio.handle().clone(), None);
    let program = Program::new(fixture("dl_basic.wasm")).dir(fixtures_dir());
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let (program, runtime) = (program.clone(), runtime.clone());
            tokio.spawn(async move { program.run_async(&runtime).await })
        })
        .collect();
    let deadline = std::time::Duration::from_secs(120);
    for run in runs {
        let status = tokio
            .block_on(async { tokio::time::timeout(deadline, run).await })
            .expect("a run did not end within two minutes")
            .unwrap()
            .unwrap();
        assert_eq!(status, 0);
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
    // Another process fills the disk cache: the first run in this one loads from it.
    run_in(fixtures(), &["--dir", ".", "uses_side.wasm"], b"");
    let runtime = Runtime::new().unwrap();
    let program = Program::new(fixture("uses_side.wasm")).dir(fixtures_dir());
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
