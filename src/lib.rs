//! wasix-dl: a dynamic linker for WebAssembly and a WASIX-compatible runtime on wasmer.
//!
//! It runs WASI/WASIX programs, including PIE main modules built by the toolchain's
//! `wasix-cc` (modules with a `dylink.0` section) with the shared libraries they need, and
//! serves `dlopen`/`dlsym` at run time with ELF's rules (see DESIGN.md).
//!
//! # Phases, one file each
//!
//! `dylink` (reading dylink.0) → `search` (where a library is looked for) → `load` (reading,
//! `describe` (imports and exports from the bytes), `rewrite` (the form a module is compiled
//! in: fixed table, direct calls made indirect) and compiling through `cache`) → `layout`
//! (memory and table regions) → `scope` (symbol lookup) → `plan` (deciding, once per module,
//! what each import is bound to: providers, table slots, GOT values, `trampoline` stubs) →
//! `group` (instantiating plans in one thread's instance group) → `init` (relocations,
//! constructors). `linker` holds the process-wide state and the start-up sequence, `open` is
//! dlopen/dlsym/dlclose at run time, `sync` the protocol that makes them reach every thread
//! and `catchup` a thread applying them, `thread`
//! thread creation, `wasix` the host functions of the DL ABI, `poll` WASI's meaning of a zero
//! `poll_oneoff` timeout, `fs` the guest's file system, `run` one program run, `tools` ldd and
//! inspect, `error` what can go wrong.
//!
//! # Locks, in the order they are taken
//!
//! 1. `ProcessState::load_lock` (re-entrant): held for a whole `dlopen` or `dlclose`, guest
//!    allocation, constructors, destructors and the wait for other threads (the rendezvous)
//!    included, like glibc's `dl_load_lock`; a constructor that calls `dlopen` takes it again
//!    on the same thread. Catching up never takes it, so a thread the rendezvous waits for
//!    never waits for the load lock.
//! 2. `Mutex<Linker>`: the process-wide link state (modules, plans, regions, scopes, table
//!    slots, handles, the log). Held only for short stretches of host work: planning,
//!    instantiating (the only guest code then is modules' start functions, which initialise
//!    memory and call nothing), catching up. Never held while guest code that can make host
//!    calls runs, nor during the rendezvous.
//! 3. Leaf locks, nothing is taken while they are held: `ProcessState::cwd`,
//!    `ProcessState::dead_tls_blocks`, the thread registry of the sync protocol
//!    (`sync::Threads`), each thread's prepared TLS blocks (`ThreadSync::prepared_tls`), the
//!    state of the membarrier registration (`sync::membarrier::Barrier`), the libraries
//!    compiled earlier in the process (`Compiler::opened`, taken while the linker is held),
//!    the inode table (`ProcessState::inodes`), the preopened directories' names
//!    (`ProcessState::preopen_names`), the compiled modules kept in memory
//!    (`Compiler::compiled`) and a run's interruption (`limits::Interrupt`: its reason and
//!    target, taken by the watcher task and by catching up).
//!
//! wasmer-wasix's own locks (its process, thread and futex tables) are taken inside its host
//! functions and when a thread is registered with its process; none of ours is held then.
//!
//! A thread running the linker (loading, unloading, catching up, starting) is marked busy:
//! host calls made by the guest code it runs do not catch up, so catching up never re-enters
//! itself. The atomics of the sync protocol and their orderings are documented in `sync`.
//!
//! # Embedding
//!
//! [`Program`] describes a run: its module, arguments, environment, directories, standard
//! streams ([`Input`], [`Output`]) and limits. [`Program::run`] runs it on a runtime of its
//! own; a service makes one [`Runtime`] and runs every program on it, from async code with
//! [`Program::output_async`], which returns a [`RunOutput`].
//!
//! ```
//! use wasix_dl::Program;
//!
//! // A tiny WASI command that exits with status 7.
//! let wasm = wasmer::wat2wasm(br#"
//!     (module
//!       (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
//!       (memory (export "memory") 1)
//!       (func (export "_start") (call $exit (i32.const 7))))
//! "#).unwrap();
//! let dir = std::env::temp_dir().join(format!("wasix-dl-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("exit7.wasm");
//! std::fs::write(&path, &wasm).unwrap();
//!
//! let status = Program::new(&path).arg("hello").env("KEY", "value").run().unwrap();
//! assert_eq!(status, 7);
//! ```

mod addr;
mod cache;
mod catchup;
mod describe;
mod diagnose;
mod dylink;
mod error;
mod fs;
mod group;
mod guest;
mod hostdir;
mod hostfs;
mod init;
mod inodes;
mod layout;
mod limits;
mod linker;
mod load;
mod open;
mod park;
mod pipes;
mod plan;
mod poll;
mod rewrite;
mod run;
mod runtime;
mod scope;
mod search;
mod stdio;
mod sync;
mod thread;
mod tools;
mod trampoline;
mod wasix;

use std::path::PathBuf;

pub use dylink::{parse as parse_dylink, DylinkInfo};
pub use error::Error;
pub use fs::MappedDir;
pub use layout::DEFAULT_STACK_SIZE;
pub use run::{Input, Output, RunOutput, TRAP_EXIT_CODE};
pub use runtime::{Runtime, RuntimeBuilder};

/// A program to run: the main module, its arguments, environment and mapped directories.
#[derive(Debug, Clone)]
pub struct Program {
    config: run::RunConfig,
}

impl Program {
    /// A program whose main module is the file at `module` (a host path).
    pub fn new(module: impl Into<PathBuf>) -> Self {
        Program {
            config: run::RunConfig {
                module: module.into(),
                args: Vec::new(),
                envs: Vec::new(),
                dirs: Vec::new(),
                system_libs: fs::default_system_libs(),
                cwd: None,
                stack_size: DEFAULT_STACK_SIZE,
                sync_timeout: sync::DEFAULT_TIMEOUT,
                epoch_checks: true,
                stdin: Input::Inherit,
                stdout: Output::Inherit,
                stderr: Output::Inherit,
                deadline: None,
                memory_limit: None,
            },
        }
    }

    /// Appends one argument (after `argv[0]`, which is the module's file name).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.config.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.config.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the guest (the host's environment is not inherited).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.envs.push((key.into(), value.into()));
        self
    }

    /// Makes a host directory visible to the guest (see [`MappedDir::parse`]).
    pub fn dir(mut self, dir: MappedDir) -> Self {
        self.config.dirs.push(dir);
        self
    }

    /// The host directory of the guest's system libraries, mounted read-only at `/lib` (a
    /// directory of the default library search path), or `None` for no such mount. By default
    /// `WASIX_DL_SYSTEM_LIBS`, else the toolchain's (the shared C++ runtime that `wasix-c++`
    /// links against). A directory the program maps at `/lib` itself takes precedence.
    pub fn system_libs(mut self, dir: Option<PathBuf>) -> Self {
        self.config.system_libs = dir;
        self
    }

    /// Sets the guest's working directory (a guest path).
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.config.cwd = Some(cwd.into());
        self
    }

    /// Size of the main thread's stack in bytes (default 8 MiB): the C stack in the guest's
    /// memory, and the engine's stack for wasm frames (at most 100 MiB). The engine's stack
    /// size is a process-wide wasmer setting: the last program started sets it.
    pub fn stack_size(mut self, bytes: u32) -> Self {
        self.config.stack_size = bytes;
        self
    }

    /// How long a `dlopen`, `dlclose` or `dlsym` that changes the program waits for another
    /// thread that runs wasm to catch up with it (default 10 s). Past it the call fails with
    /// an error naming the thread. Threads in host calls are never waited for, and with epoch
    /// checks (the default) a thread running wasm answers within a loop iteration.
    pub fn sync_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.sync_timeout = timeout;
        self
    }

    /// Whether modules are compiled with the sync protocol's epoch checks at loop headers and
    /// function entries (default on; see DESIGN decision 7). Off, a thread that runs wasm
    /// without host calls delays a `dlopen` in another thread until its next host call or
    /// the sync timeout.
    pub fn epoch_checks(mut self, on: bool) -> Self {
        self.config.epoch_checks = on;
        self
    }

    /// Where the guest's standard input comes from (default: the host's).
    pub fn stdin(mut self, input: Input) -> Self {
        self.config.stdin = input;
        self
    }

    /// Where the guest's standard output goes (default: the host's).
    pub fn stdout(mut self, output: Output) -> Self {
        self.config.stdout = output;
        self
    }

    /// Where the guest's standard error goes (default: the host's).
    pub fn stderr(mut self, output: Output) -> Self {
        self.config.stderr = output;
        self
    }

    /// Ends the run after `after` of wall-clock time: every thread of the guest stops (one
    /// blocked in a WASI call at once, one running wasm at its next epoch check), and the
    /// run returns [`Error::DeadlineExceeded`]. (A plain WASI module, which has no epoch
    /// checks, stops at its next WASI call.)
    pub fn deadline(mut self, after: std::time::Duration) -> Self {
        self.config.deadline = Some(after);
        self
    }

    /// The most memory the program may have, in bytes (rounded down to 64 KiB pages): past
    /// it, growing memory fails, as allocating does natively under a memory limit. (Not for a
    /// plain WASI module that defines its own memory.)
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.config.memory_limit = Some(bytes);
        self
    }

    /// Runs the program to its end on a runtime of its own. Returns the guest's exit status,
    /// or [`TRAP_EXIT_CODE`] after reporting a trap on stderr. Errors are failures to load.
    /// Blocks: from async code, use [`Program::run_async`].
    pub fn run(&self) -> Result<i32, Error> {
        self.run_on(&Runtime::new()?)
    }

    /// [`Program::run`] on `runtime`, shared with other programs: what they compiled is not
    /// compiled or read again. Blocks the calling thread until the program ends.
    pub fn run_on(&self, runtime: &Runtime) -> Result<i32, Error> {
        Ok(self.output_on(runtime)?.status)
    }

    /// [`Program::run_on`], with what the program wrote to the streams set to
    /// [`Output::Capture`].
    ///
    /// ```
    /// use wasix_dl::{Input, Output, Program, Runtime};
    ///
    /// # let dir = std::env::temp_dir().join(format!("wasix-dl-doc-cat-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let path = dir.join("cat.wasm");
    /// # std::fs::write(&path, wasmer::wat2wasm(br#"(module
    /// #   (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    /// #   (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    /// #   (memory (export "memory") 1)
    /// #   (func (export "_start")
    /// #     (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 1024))
    /// #     (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    /// #     (i32.store (i32.const 4) (i32.load (i32.const 8)))
    /// #     (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#).unwrap()).unwrap();
    /// let runtime = Runtime::new().unwrap();
    /// // A WASI command that copies (up to 1 KiB of) its input to its output.
    /// let out = Program::new(&path)
    ///     .stdin(Input::Bytes(b"hello".to_vec()))
    ///     .stdout(Output::Capture)
    ///     .output_on(&runtime)
    ///     .unwrap();
    /// assert_eq!((out.status, out.stdout.as_slice()), (0, &b"hello"[..]));
    /// ```
    pub fn output_on(&self, runtime: &Runtime) -> Result<RunOutput, Error> {
        run::run(runtime, &self.config, Default::default())
    }

    /// [`Program::run_on`] from async code: the program runs on a blocking thread of the
    /// runtime's tokio runtime, never on the executor's threads, so many run at once.
    ///
    /// ```
    /// use wasix_dl::{Program, Runtime};
    ///
    /// # let dir = std::env::temp_dir().join(format!("wasix-dl-doc-async-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let path = dir.join("exit7.wasm");
    /// # std::fs::write(&path, wasmer::wat2wasm(br#"(module
    /// #   (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    /// #   (memory (export "memory") 1)
    /// #   (func (export "_start") (call $exit (i32.const 7))))"#).unwrap()).unwrap();
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// let runtime = Runtime::on(tokio.handle().clone(), None);
    /// let program = Program::new(&path); // a WASI command that exits with status 7
    /// let runs: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let (program, runtime) = (program.clone(), runtime.clone());
    ///         tokio.spawn(async move { program.run_async(&runtime).await })
    ///     })
    ///     .collect();
    /// for run in runs {
    ///     assert_eq!(tokio.block_on(run).unwrap().unwrap(), 7);
    /// }
    /// ```
    pub async fn run_async(&self, runtime: &Runtime) -> Result<i32, Error> {
        Ok(self.output_async(runtime).await?.status)
    }

    /// [`Program::output_on`] from async code, as [`Program::run_async`]. Dropping the
    /// future before it is ready cancels the run: the guest is stopped as at a
    /// [`Program::deadline`].
    pub async fn output_async(&self, runtime: &Runtime) -> Result<RunOutput, Error> {
        /// Cancels the run when the future is dropped before its end.
        struct CancelOnDrop(Option<std::sync::Arc<limits::Interrupt>>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                if let Some(interrupt) = self.0.take() {
                    interrupt.cancel();
                }
            }
        }
        let interrupt = std::sync::Arc::new(limits::Interrupt::default());
        let mut guard = CancelOnDrop(Some(interrupt.clone()));
        let (shared, config) = (runtime.clone(), self.config.clone());
        let task = runtime
            .tokio()
            .spawn_blocking(move || run::run(&shared, &config, interrupt));
        let ended = task.await;
        guard.0 = None;
        ended.map_err(|e| Error::Wasi(format!("the program's run ended abnormally: {e}")))?
    }

    /// The libraries the program loads at start-up and where they are found, one per line
    /// as `ldd` prints them (`\tNAME => PATH` or `\tNAME => not found`).
    pub fn ldd(&self) -> Result<String, Error> {
        tools::ldd(&self.config)
    }

    /// A readable account of the main module: its dylink.0 section, imports by namespace and
    /// exports.
    pub fn inspect(&self) -> Result<String, Error> {
        tools::inspect(&self.config)
    }
}
