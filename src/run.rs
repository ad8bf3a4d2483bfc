//! One program run: the engine and WASI environment, instantiation of the main module (a PIE
//! main module with its libraries through the linker, a plain WASI module on its own; both
//! with the WASI functions the runtime serves itself), the relocations, `_start`, and the
//! exit status.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmer::{AsStoreMut, Engine, Function, FunctionEnv, Imports, Instance, RuntimeError, Store};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::wasmer_wasix_types::wasix::WasiMemoryLayout;
use wasmer_wasix::{
    PluggableRuntime, WasiEnvBuilder, WasiError, WasiFunctionEnv, WasiModuleInstanceHandles,
    WasiModuleTreeHandles, WasiVersion,
};

use crate::cache::Compiler;
use crate::catchup;
use crate::diagnose;
use crate::dylink;
use crate::error::Error;
use crate::fs::{self, MappedDir};
use crate::group::{self, InstanceGroup};
use crate::guest::Scratch;
use crate::hostfs;
use crate::init::{self, ToInit};
use crate::inodes;
use crate::layout::TABLE_CAPACITY;
use crate::limits::{self, Interrupt};
use crate::linker::{self, Linker, SearchEnv};
use crate::load::{GuestFs, LoadedModule};
use crate::open::{self, DlState, Loaded, ProcessState};
use crate::pipes;
use crate::poll;
use crate::runtime::Runtime;
use crate::stdio;
use crate::sync;
use crate::thread;
use crate::wasix;

/// Exit status of a run that ended in a trap (what a shell shows for a native `abort()`).
pub const TRAP_EXIT_CODE: i32 = 134;

/// Everything a run needs to know. Built by the CLI or by [`crate::Program`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub module: PathBuf,
    /// `argv[1..]` of the guest (`argv[0]` is the module's file name).
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub dirs: Vec<MappedDir>,
    /// Host directory mounted read-only at the guest's `/lib` (see [`fs::default_system_libs`]).
    pub system_libs: Option<PathBuf>,
    /// Guest working directory; by default the mapped directory holding the host's cwd, else
    /// the first mapped directory, else `/`.
    pub cwd: Option<PathBuf>,
    pub stack_size: u32,
    /// How long a `dlopen`/`dlclose`/`dlsym` waits for another thread to catch up.
    pub sync_timeout: std::time::Duration,
    /// Whether modules get epoch checks (see [`crate::rewrite`]).
    pub epoch_checks: bool,
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    /// Wall-clock time after which the run is ended (see [`crate::limits`]).
    pub deadline: Option<std::time::Duration>,
    /// Most bytes the program's memory may grow to.
    pub memory_limit: Option<u64>,
}

/// Where the guest's standard input comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Input {
    /// The host process's standard input.
    #[default]
    Inherit,
    /// Nothing: reads see the end at once.
    Null,
    /// These bytes, then the end.
    Bytes(Vec<u8>),
}

/// Where the guest's standard output or error goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    /// The host process's.
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// Kept, and handed back in [`RunOutput`].
    Capture,
}

/// How a program ended, and what it wrote to the streams that were captured (empty for the
/// others). A trap's report goes to the captured standard error, if it is captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit status, or [`TRAP_EXIT_CODE`] after a trap.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What a standard stream of the guest is, for the host functions that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The host process's descriptor of the same number.
    Host,
    /// Like `/dev/null`.
    Null,
    /// A pipe to or from the embedder.
    Pipe,
}

impl RunConfig {
    /// The most 64 KiB pages the program's memory may have.
    fn max_pages(&self) -> u32 {
        let pages = self.memory_limit.map_or(65536, |bytes| bytes / 65536);
        pages.clamp(1, 65536) as u32
    }

    /// What each standard stream of the guest is.
    pub fn streams(&self) -> [Stream; 3] {
        let input = match self.stdin {
            Input::Inherit => Stream::Host,
            Input::Null => Stream::Null,
            Input::Bytes(_) => Stream::Pipe,
        };
        let output = |o: Output| match o {
            Output::Inherit => Stream::Host,
            Output::Null => Stream::Null,
            Output::Capture => Stream::Pipe,
        };
        [input, output(self.stdout), output(self.stderr)]
    }
}

/// The read ends of the guest's captured standard output and error.
#[derive(Default)]
struct Captured {
    stdout: Option<virtual_fs::Pipe>,
    stderr: Option<virtual_fs::Pipe>,
}

/// Sets the guest's standard streams in `builder` as `config` says; returns the read ends of
/// those captured.
fn set_streams(config: &RunConfig, builder: &mut WasiEnvBuilder) -> Captured {
    use virtual_fs::Pipe;
    type File = Box<dyn virtual_fs::VirtualFile + Send + Sync>;
    let null = || -> File { Box::new(virtual_fs::NullFile::default()) };
    match &config.stdin {
        Input::Inherit => {}
        Input::Null => builder.set_stdin(null()),
        Input::Bytes(bytes) => {
            let (mut tx, rx) = Pipe::new().split();
            let _ = std::io::Write::write_all(&mut tx, bytes);
            tx.close();
            let (unused_tx, _) = Pipe::new().split();
            builder.set_stdin(Box::new(Pipe::combine(unused_tx, rx)));
        }
    }
    let mut captured = Captured::default();
    for (output, slot, is_stdout) in [
        (config.stdout, &mut captured.stdout, true),
        (config.stderr, &mut captured.stderr, false),
    ] {
        let file: File = match output {
            Output::Inherit => continue,
            Output::Null => null(),
            Output::Capture => {
                let (tx, rx) = Pipe::new().split();
                let (_, unused_rx) = Pipe::new().split();
                let (unused_tx, _) = Pipe::new().split();
                *slot = Some(Pipe::combine(unused_tx, rx));
                Box::new(Pipe::combine(tx, unused_rx))
            }
        };
        match is_stdout {
            true => builder.set_stdout(file),
            false => builder.set_stderr(file),
        }
    }
    captured
}

/// Everything in `pipe` so far (its write end is gone).
fn drain(pipe: Option<virtual_fs::Pipe>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(n) = pipe.try_read(&mut buf).filter(|&n| n > 0) {
            out.extend_from_slice(&buf[..n]);
        }
    }
    out
}

/// Runs the program to its end and returns its exit status. Errors are problems of loading;
/// a guest that traps is reported on stderr and yields [`TRAP_EXIT_CODE`].
pub fn run(
    runtime: &Runtime,
    config: &RunConfig,
    interrupt: Arc<Interrupt>,
) -> Result<RunOutput, Error> {
    let name = config.module.display().to_string();
    let bytes = std::fs::read(&config.module).map_err(|source| Error::Read {
        path: config.module.clone(),
        source,
    })?;
    let dylink = dylink::parse(&name, &bytes)?;

    let tokio = runtime.tokio();
    let _entered = tokio.enter();

    // A native thread's one stack holds both kinds of frames; here wasm frames live on the
    // engine's stack (1 MiB unless set, process-wide) and C locals on the guest's. Both get
    // the program's stack size, so deep recursion that fits natively fits here.
    wasmer::sys::vm::set_stack_size(config.stack_size as usize);
    let engine = runtime.engine().clone();
    let mut compiler = runtime.compiler().clone();
    compiler.epoch_checks = config.epoch_checks;
    let mut store = Store::new(engine.clone());
    let tmp = fs::private_tmp(&config.dirs);
    let dirs: Vec<MappedDir> = config
        .dirs
        .iter()
        .chain(tmp.as_ref().map(|t| &t.1))
        .cloned()
        .collect();
    let guest_fs = GuestFs {
        fs: Arc::new(fs::build(&dirs, config.system_libs.as_deref(), tokio)?),
        dirs,
        tokio: tokio.clone(),
    };
    let mut builder = wasi_builder(config, &engine, &guest_fs)?;
    let captured = set_streams(config, &mut builder);
    let watcher = limits::watch(tokio, interrupt.clone(), config.deadline);
    let process = process_state(config, &guest_fs, &compiler, interrupt.clone());

    let instantiated = match dylink {
        None => instantiate_plain(config, &name, &bytes, builder, process, &mut store),
        Some(info) => {
            // Compiled by the linker once it knows main's final form.
            let main = LoadedModule::new(name.clone(), guest_path(config), &bytes, info, None)?;
            instantiate_main(config, main, &bytes, builder, process, &mut store)
        }
    };
    let (instance, func_env, dl_env) = match instantiated {
        Ok(parts) => parts,
        Err(e) => {
            watcher.abort();
            return Err(e);
        }
    };
    let words = dl_env
        .as_ref()
        .and_then(|env| env.as_ref(&store).process.threads.words().cloned());
    interrupt.arm(func_env.data(&store).process.clone(), words);

    let main_thread = dl_env.as_ref().and_then(|env| {
        let state = env.as_ref(&store);
        let thread = state.loaded.as_ref()?.thread.clone();
        state.process.threads.enter_wasm(&thread);
        Some((state.process.clone(), thread))
    });
    let ended = call_start(&name, &instance, dl_env.as_ref(), &mut store);
    if let Some((process, thread)) = &main_thread {
        process.threads.leave_wasm(thread);
    }
    let status = ended.and_then(|ended| match (ended, &dl_env) {
        (Some(code), _) => Ok(code),
        (None, Some(dl_env)) => after_main_thread(&name, &instance, dl_env, &mut store),
        (None, None) => Ok(0),
    });
    let (code, trap) = match status {
        Ok(code) => (code, None),
        Err(trap) => (TRAP_EXIT_CODE, Some(format!("wasix-dl: {trap}\n"))),
    };
    // Flushes and closes the guest's files; the exit code is only recorded here.
    let exit_code =
        wasmer_wasix::wasmer_wasix_types::wasi::ExitCode::from(code.clamp(0, 255) as u16);
    func_env.on_exit(&mut store, Some(exit_code));
    drop((instance, func_env, dl_env, store));
    watcher.abort();
    if let Some(reason) = interrupt.reason() {
        return Err(reason.error());
    }
    let mut output = RunOutput {
        status: code,
        stdout: drain(captured.stdout),
        stderr: drain(captured.stderr),
    };
    if let Some(trap) = trap {
        match config.stderr {
            Output::Capture => output.stderr.extend_from_slice(trap.as_bytes()),
            _ => eprint!("{trap}"),
        }
    }
    Ok(output)
}

/// Cranelift with the proposals the toolchain's modules use: threads (shared memory, atomics),
/// bulk memory, and exnref exceptions.
pub fn new_engine() -> Engine {
    let mut features = wasmer::sys::Features::new();
    features.exceptions(true).threads(true).bulk_memory(true);
    wasmer::sys::EngineBuilder::new(wasmer::sys::Cranelift::default())
        .set_features(Some(features))
        .engine()
        .into()
}

fn wasi_builder(
    config: &RunConfig,
    engine: &Engine,
    guest_fs: &GuestFs,
) -> Result<WasiEnvBuilder, Error> {
    let program = config
        .module
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main.wasm".into());
    let mut runtime =
        PluggableRuntime::new(Arc::new(TokioTaskManager::new(guest_fs.tokio.clone())));
    runtime.set_engine(engine.clone());

    let mut builder = WasiEnvBuilder::new(program)
        .args(&config.args)
        .envs(config.envs.iter().map(|(k, v)| (k.clone(), v.clone())))
        .runtime(Arc::new(runtime));
    builder.set_fs(guest_fs.fs.clone());
    builder
        .add_preopen_dir("/")
        .map_err(|e| Error::Wasi(e.to_string()))?;
    builder.set_current_dir(guest_cwd(config));
    Ok(builder)
}

pub fn guest_cwd(config: &RunConfig) -> PathBuf {
    if let Some(cwd) = &config.cwd {
        return cwd.clone();
    }
    let host_cwd = std::env::current_dir().ok();
    let containing = config.dirs.iter().find_map(|d| {
        let rel = host_cwd.as_deref()?.strip_prefix(&d.host).ok()?;
        Some(d.guest.join(rel))
    });
    containing
        .or_else(|| config.dirs.first().map(|d| d.guest.clone()))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Instantiates a PIE main module (one with `dylink.0`) with the libraries it needs: loads and
/// lays them out, binds every import, hands main's instance to wasmer-wasix, then applies
/// relocations and runs the libraries' constructors in dependency order.
fn instantiate_main(
    config: &RunConfig,
    main: LoadedModule,
    main_bytes: &[u8],
    builder: WasiEnvBuilder,
    process: Arc<ProcessState>,
    store: &mut Store,
) -> Result<(Instance, WasiFunctionEnv, Option<FunctionEnv<DlState>>), Error> {
    let name = main.name.clone();
    let mut func_env = builder
        .finalize(store)
        .map_err(|e| Error::Wasi(e.to_string()))?;
    let cwd = guest_cwd(config);
    let (guest_fs, compiler) = (&process.fs.clone(), &process.compiler.clone());
    let dl_env = FunctionEnv::new(store, DlState::new(process.clone(), &func_env));
    let tid = func_env.data(store).thread.tid().raw();
    let ld_library_path = ld_library_path(config);
    let search = SearchEnv {
        fs: guest_fs,
        cwd: &cwd,
        ld_library_path: &ld_library_path,
    };
    let mut wrappers = None;
    let mut thread = None;
    let (mut linker, group, wasi_imports) = linker::start(
        store,
        compiler,
        main,
        main_bytes,
        &search,
        linker::MemorySizes {
            stack_size: config.stack_size,
            max_pages: config.max_pages(),
        },
        |store, memory| {
            process
                .threads
                .set_words(sync::RuntimeWords::new(store, memory)?);
            let me = process
                .threads
                .register(tid)
                .ok_or_else(|| Error::Wasi("no thread slot for the main thread".into()))?;
            let (imports, globals) = thread_imports(
                store,
                &func_env,
                &dl_env,
                memory,
                sync::state_address(me.slot),
            )?;
            wrappers = Some(globals);
            thread = Some(me);
            Ok(linker::ThreadImports {
                wasi: imports,
                catch_up: Function::new_typed_with_env(store, &dl_env, catchup::at_check),
            })
        },
    )?;
    let (wrappers, thread) = (
        wrappers.expect("start makes the imports"),
        thread.expect("start registers the thread"),
    );
    install_builtins(store, &wasi_imports, &mut linker, &group)?;
    let instance = Instance::clone(group.instances[0].as_ref().expect("main is instantiated"));

    let handles = WasiModuleTreeHandles::Static(WasiModuleInstanceHandles::new(
        group.memory.clone(),
        store,
        instance.clone(),
        Some(group.table.clone()),
    ));
    let stack = WasiMemoryLayout {
        stack_upper: linker.layout.stack_high.into(),
        stack_lower: linker.layout.stack_low.into(),
        guard_size: 0,
        stack_size: (linker.layout.stack_high - linker.layout.stack_low).into(),
        tls_base: None,
    };
    func_env
        .initialize_handles_and_layout(store, instance.clone(), handles, Some(stack), true)
        .map_err(|e| Error::Instantiate {
            module: name.to_string(),
            reason: e.to_string(),
        })?;
    let to_init = ToInit::list(&linker, &group, &linker.init_order(0, |_| true));
    dl_env.as_mut(store).loaded = Some(Loaded {
        thread,
        published: linker.published.clone(),
        linker: Arc::new(Mutex::new(linker)),
        group,
        wasi: Arc::new(wasi_imports),
        tls_blocks: Vec::new(),
        tls_deferred: Vec::new(),
        busy: false,
        wrappers,
    });
    init::initialize(store, &to_init)?;
    Ok((instance, func_env, Some(dl_env)))
}

/// What every thread of the program shares besides the link state.
fn process_state(
    config: &RunConfig,
    guest_fs: &GuestFs,
    compiler: &Compiler,
    interrupt: Arc<Interrupt>,
) -> Arc<ProcessState> {
    Arc::new(ProcessState {
        interrupt,
        streams: config.streams(),
        fs: guest_fs.clone(),
        compiler: compiler.clone(),
        cwd: Mutex::new(guest_cwd(config)),
        load_lock: Default::default(),
        dead_tls_blocks: Default::default(),
        wrappers: Default::default(),
        threads: sync::Threads::new(config.sync_timeout),
        inodes: Default::default(),
        preopen_names: Default::default(),
    })
}

/// Instantiates a plain WASI module (no `dylink.0`: no libraries, its own memory or one it
/// imports) with wasmer-wasix's WASI and the functions the runtime serves itself for every
/// program (`poll_oneoff`, the standard streams, the host file system, pipes), as
/// `WasiEnvBuilder::instantiate` would otherwise. Threads it starts are wasmer-wasix's own.
fn instantiate_plain(
    config: &RunConfig,
    name: &str,
    bytes: &[u8],
    builder: WasiEnvBuilder,
    process: Arc<ProcessState>,
    store: &mut Store,
) -> Result<(Instance, WasiFunctionEnv, Option<FunctionEnv<DlState>>), Error> {
    let fail = |reason: String| Error::Instantiate {
        module: name.to_string(),
        reason,
    };
    let module = process.compiler.compile(name, bytes)?;
    let mut func_env = builder
        .finalize(store)
        .map_err(|e| Error::Wasi(e.to_string()))?;
    let dl_env = FunctionEnv::new(store, DlState::new(process, &func_env));
    let mut imports = func_env
        .import_object_for_all_wasi_versions(store, &module)
        .map_err(|e| fail(e.to_string()))?;
    let imported_memory = module.imports().find_map(|i| match i.ty() {
        wasmer::ExternType::Memory(ty) => Some((i.module().to_string(), i.name().to_string(), *ty)),
        _ => None,
    });
    let imported_memory = match imported_memory {
        Some((ns, field, ty)) => {
            let max = ty
                .maximum
                .map_or(config.max_pages(), |m| m.0.min(config.max_pages()));
            let ty = wasmer::MemoryType::new(ty.minimum, Some(wasmer::Pages(max)), ty.shared);
            let memory = wasmer::Memory::new(store, ty).map_err(|e| fail(e.to_string()))?;
            imports.define(&ns, &field, memory.clone());
            Some(memory)
        }
        None => None,
    };
    poll::define(store, &dl_env, &mut imports);
    stdio::define(store, &dl_env, &mut imports);
    hostfs::define(store, &dl_env, &mut imports);
    inodes::define(store, &dl_env, &mut imports);
    pipes::define(store, &dl_env, &mut imports);
    let instance = Instance::new(store, &module, &imports).map_err(|e| fail(e.to_string()))?;
    let memory = match imported_memory {
        Some(memory) => memory,
        None => (instance.exports.iter())
            .find_map(|(_, export)| match export {
                wasmer::Extern::Memory(memory) => Some(memory.clone()),
                _ => None,
            })
            .ok_or_else(|| fail("it neither imports nor exports a memory".into()))?,
    };
    let scratch = match instance.exports.get_global("__stack_pointer") {
        Ok(global) => Scratch::StackPointer(global.clone()),
        Err(_) => match memory.grow(store, 1) {
            Ok(pages) => Scratch::Page((pages.0 + 1).saturating_mul(65536)),
            Err(_) => Scratch::None,
        },
    };
    dl_env.as_mut(store).plain = Some((memory.clone(), scratch));
    let handles = WasiModuleTreeHandles::Static(WasiModuleInstanceHandles::new(
        memory,
        store,
        instance.clone(),
        None,
    ));
    func_env
        .initialize_handles_and_layout(store, instance.clone(), handles, None, true)
        .map_err(|e| fail(e.to_string()))?;
    if let Ok(initialize) = instance.exports.get_function("_initialize") {
        initialize
            .call(store, &[])
            .map_err(|e| fail(format!("_initialize: {}", e.message())))?;
    }
    Ok((instance, func_env, Some(dl_env)))
}

/// The imports a thread's modules get besides each other: WASI of every 32-bit version (libraries,
/// also dlopen'ed ones, may import another than main's) from the thread's environment, with
/// the DL ABI, threads and `poll_oneoff` served by us, each wrapped to catch up with loads
/// made by other threads (see [`crate::sync`]).
pub fn thread_imports(
    store: &mut impl AsStoreMut,
    func_env: &WasiFunctionEnv,
    dl_env: &FunctionEnv<DlState>,
    memory: &wasmer::Memory,
    state_address: u32,
) -> Result<(Imports, sync::Wrappers), Error> {
    let mut imports = Imports::new();
    for version in [
        WasiVersion::Snapshot0,
        WasiVersion::Snapshot1,
        WasiVersion::Wasix32v1,
    ] {
        let generated =
            wasmer_wasix::generate_import_object_from_env(store, &func_env.env, version);
        for ((ns, field), value) in generated.into_iter() {
            imports.define(&ns, &field, value);
        }
    }
    wasix::define(store, dl_env, &mut imports);
    poll::define(store, dl_env, &mut imports);
    stdio::define(store, dl_env, &mut imports);
    hostfs::define(store, dl_env, &mut imports);
    inodes::define(store, dl_env, &mut imports);
    pipes::define(store, dl_env, &mut imports);
    thread::define(store, dl_env, &mut imports);
    let wrappers = sync::wrap_imports(store, dl_env, &mut imports, memory)?;
    wrappers
        .state
        .set(store, wasmer::Value::I32(state_address as i32))
        .map_err(|e| Error::Wasi(e.to_string()))?;
    Ok((imports, wrappers))
}

/// Puts the runtime's own functions that the guest finds through dlsym into the table.
fn install_builtins(
    store: &mut Store,
    wasi: &Imports,
    linker: &mut Linker,
    group: &InstanceGroup,
) -> Result<(), Error> {
    for (name, import) in wasix::BUILTINS {
        let slot = linker.allocate_slots(1, 0);
        if slot >= TABLE_CAPACITY {
            return Err(Error::Layout {
                module: "(table)".into(),
                reason: group::table_full(),
            });
        }
        group
            .table
            .set(
                store,
                slot,
                wasmer::Value::FuncRef(Some(builtin(wasi, import)?)),
            )
            .map_err(|e| Error::Layout {
                module: "(table)".into(),
                reason: format!("cannot place the runtime's {name}: {e}"),
            })?;
        linker.builtins.push(slot);
    }
    Ok(())
}

/// A runtime function the guest finds through dlsym, as a thread's modules call it: the
/// wrapped import, so a call through the table is a host call like any other for the sync
/// protocol.
pub fn builtin(wasi: &Imports, import: &str) -> Result<wasmer::Function, Error> {
    match wasi.get_export("wasix_32v1", import) {
        Some(wasmer::Extern::Function(f)) => Ok(f),
        _ => Err(Error::Wasi(format!(
            "no {import} among the thread's imports"
        ))),
    }
}

/// The guest's `LD_LIBRARY_PATH`, split.
pub fn ld_library_path(config: &RunConfig) -> Vec<String> {
    config
        .envs
        .iter()
        .filter(|(k, _)| k == "LD_LIBRARY_PATH")
        .flat_map(|(_, v)| v.split(':').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The main module's path in the guest, if it lies inside a mapped directory.
pub fn guest_path(config: &RunConfig) -> Option<PathBuf> {
    let host = std::fs::canonicalize(&config.module).ok()?;
    config.dirs.iter().find_map(|d| {
        let rel = host.strip_prefix(&d.host).ok()?;
        Some(d.guest.join(rel))
    })
}

/// Calls `_start` and turns its outcome into an exit status (`None`: the main thread ended
/// alone, with `pthread_exit`) or a readable trap.
fn call_start(
    name: &str,
    instance: &Instance,
    dl_env: Option<&FunctionEnv<DlState>>,
    store: &mut Store,
) -> Result<Option<i32>, Error> {
    let start = instance
        .exports
        .get_function("_start")
        .map_err(|_| Error::Instantiate {
            module: name.to_string(),
            reason: "the module exports no `_start` function".into(),
        })?;
    match start.call(store, &[]) {
        Ok(_) => Ok(Some(0)),
        Err(err) => exit_status(name, "_start", err, dl_env, store),
    }
}

/// The main thread ended with `pthread_exit`: as POSIX says, the program goes on until its
/// last thread ends, then exits with status 0 as if that thread had called `exit(0)` — which
/// the main module's `exit` does here, on the main thread's stack, now free.
fn after_main_thread(
    name: &str,
    instance: &Instance,
    dl_env: &FunctionEnv<DlState>,
    store: &mut Store,
) -> Result<i32, Error> {
    let state = dl_env.as_ref(store);
    state.process.threads.wait_until_none();
    let Some(loaded) = state.loaded.as_ref() else {
        return Ok(0);
    };
    let stack_high = open::lock(&loaded.linker).layout.stack_high;
    let stack_pointer = loaded.group.stack_pointer.clone();
    stack_pointer
        .set(store, wasmer::Value::I32(stack_high as i32))
        .map_err(|e| Error::Wasi(e.to_string()))?;
    let Ok(exit) = instance
        .exports
        .get_typed_function::<i32, ()>(store, "exit")
    else {
        return Ok(0);
    };
    match exit.call(store, 0) {
        Ok(()) => Ok(0),
        Err(err) => {
            exit_status(name, "exit", err, Some(dl_env), store).map(|code| code.unwrap_or(0))
        }
    }
}

fn exit_status(
    name: &str,
    function: &str,
    err: RuntimeError,
    dl_env: Option<&FunctionEnv<DlState>>,
    store: &mut Store,
) -> Result<Option<i32>, Error> {
    match err.downcast::<WasiError>() {
        Ok(WasiError::Exit(code)) => Ok(Some(code.raw())),
        Ok(WasiError::ThreadExit) => Ok(None),
        Ok(other) => Err(Error::Trap {
            module: name.to_string(),
            function: function.into(),
            reason: other.to_string(),
        }),
        Err(err) => Err(Error::Trap {
            module: name.to_string(),
            function: function.into(),
            reason: diagnose::describe_trap(&err, dl_env.map(|env| (store, env))),
        }),
    }
}
