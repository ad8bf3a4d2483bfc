//! One program run: the engine and WASI environment, instantiation of the main module (plain
//! WASI modules through wasmer-wasix, PIE main modules through our own binding), the
//! relocations, `_start`, and the exit status.

use std::path::PathBuf;
use std::sync::Arc;

use wasmer::{
    Engine, Instance, Memory, MemoryType, Module, Pages, RuntimeError, Store, Table, TableType,
    Type, Value,
};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::wasmer_wasix_types::wasix::WasiMemoryLayout;
use wasmer_wasix::{
    PluggableRuntime, WasiEnvBuilder, WasiError, WasiFunctionEnv, WasiModuleInstanceHandles,
    WasiModuleTreeHandles,
};

use crate::bind::{self, GroupObjects};
use crate::dylink::{self, DylinkInfo};
use crate::error::Error;
use crate::fs::{self, MappedDir};
use crate::layout::{self, MainLayout};

/// Exit status of a run that ended in a trap (what a shell shows for a native `abort()`).
pub const TRAP_EXIT_CODE: i32 = 134;

/// Everything a run needs to know. Built by the CLI or by [`crate::Program`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub module: PathBuf,
    /// argv[1..] of the guest (argv[0] is the module's file name).
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub dirs: Vec<MappedDir>,
    /// Guest working directory; by default the mapped directory holding the host's cwd, else
    /// the first mapped directory, else `/`.
    pub cwd: Option<PathBuf>,
    pub stack_size: u32,
}

/// Runs the program to its end and returns its exit status. Errors are problems of loading;
/// a guest that traps is reported on stderr and yields [`TRAP_EXIT_CODE`].
pub fn run(config: &RunConfig) -> Result<i32, Error> {
    let name = config.module.display().to_string();
    let bytes = std::fs::read(&config.module).map_err(|source| Error::Read {
        path: config.module.clone(),
        source,
    })?;
    let dylink = dylink::parse(&name, &bytes)?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Wasi(format!("cannot start the async runtime: {e}")))?;
    let _entered = tokio.enter();

    let engine = new_engine();
    let module = Module::new(&engine, &bytes).map_err(|e| Error::Compile {
        module: name.clone(),
        reason: e.to_string(),
    })?;
    let mut store = Store::new(engine.clone());
    let builder = wasi_builder(config, &engine, tokio.handle())?;

    let (instance, func_env) = match &dylink {
        None => builder
            .instantiate(module, &mut store)
            .map_err(|e| Error::Instantiate {
                module: name.clone(),
                reason: e.to_string(),
            })?,
        Some(info) => instantiate_main(config, &name, module, info, builder, &mut store)?,
    };

    let status = call_start(&name, &instance, &mut store);
    let code = match &status {
        Ok(code) => *code,
        Err(trap) => {
            eprintln!("wasix-dl: {trap}");
            TRAP_EXIT_CODE
        }
    };
    // Flushes and closes the guest's files; the exit code is only recorded here.
    let exit_code =
        wasmer_wasix::wasmer_wasix_types::wasi::ExitCode::from(code.clamp(0, 255) as u16);
    func_env.on_exit(&mut store, Some(exit_code));
    Ok(code)
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
    tokio: &tokio::runtime::Handle,
) -> Result<WasiEnvBuilder, Error> {
    let program = config
        .module
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main.wasm".into());
    let mut runtime = PluggableRuntime::new(Arc::new(TokioTaskManager::new(tokio.clone())));
    runtime.set_engine(engine.clone());

    let mut builder = WasiEnvBuilder::new(program)
        .args(&config.args)
        .envs(config.envs.iter().map(|(k, v)| (k.clone(), v.clone())))
        .runtime(Arc::new(runtime));
    builder.set_mount_fs(fs::build(&config.dirs, tokio)?);
    builder
        .add_preopen_dir("/")
        .map_err(|e| Error::Wasi(e.to_string()))?;
    builder.set_current_dir(guest_cwd(config));
    Ok(builder)
}

fn guest_cwd(config: &RunConfig) -> PathBuf {
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

/// Instantiates a PIE main module (one with `dylink.0`): lays out memory and table, binds its
/// imports, fills its GOT, hands the instance to wasmer-wasix and applies data relocations.
fn instantiate_main(
    config: &RunConfig,
    name: &str,
    module: Module,
    info: &DylinkInfo,
    builder: WasiEnvBuilder,
    store: &mut Store,
) -> Result<(Instance, WasiFunctionEnv), Error> {
    if !info.needed.is_empty() {
        return Err(Error::LibrariesNotImplemented {
            module: name.to_string(),
            needed: info.needed.join(", "),
        });
    }
    let layout: MainLayout = layout::main_layout(name, info, config.stack_size)?;
    let func_env = builder
        .finalize(store)
        .map_err(|e| Error::Wasi(e.to_string()))?;
    let wasi_imports = func_env
        .import_object_for_all_wasi_versions(store, &module)
        .map_err(|e| Error::Instantiate {
            module: name.to_string(),
            reason: format!("no WASI imports: {e}"),
        })?;

    let layout_err = |reason: String| Error::Layout {
        module: name.to_string(),
        reason,
    };
    let memory = Memory::new(
        store,
        MemoryType::new(Pages(layout.initial_pages), Some(Pages(65536)), true),
    )
    .map_err(|e| layout_err(format!("cannot create the memory: {e}")))?;
    let table = Table::new(
        store,
        TableType::new(Type::FuncRef, layout.table_min, None),
        Value::FuncRef(None),
    )
    .map_err(|e| layout_err(format!("cannot create the table: {e}")))?;
    let objects = GroupObjects {
        memory: memory.clone(),
        table: table.clone(),
        stack_pointer: wasmer::Global::new_mut(store, Value::I32(layout.stack_high as i32)),
        cpp_exception: bind::new_tag(store),
        c_longjmp: bind::new_tag(store),
    };
    let bound = bind::main_imports(store, name, &module, info, &layout, &objects, &wasi_imports)?;
    let instance =
        Instance::new(store, &module, &bound.imports).map_err(|e| Error::Instantiate {
            module: name.to_string(),
            reason: e.to_string(),
        })?;
    bind::resolve_main_got(store, name, &instance, &layout, &table, &bound.pending_got)?;

    let handles = WasiModuleTreeHandles::Static(WasiModuleInstanceHandles::new(
        memory,
        store,
        instance.clone(),
        Some(table),
    ));
    let stack = WasiMemoryLayout {
        stack_upper: layout.stack_high.into(),
        stack_lower: layout.stack_low.into(),
        guard_size: 0,
        stack_size: (layout.stack_high - layout.stack_low).into(),
        tls_base: None,
    };
    let mut func_env = func_env;
    func_env
        .initialize_handles_and_layout(store, instance.clone(), handles, Some(stack), true)
        .map_err(|e| Error::Instantiate {
            module: name.to_string(),
            reason: e.to_string(),
        })?;

    if let Ok(apply) = instance.exports.get_function("__wasm_apply_data_relocs") {
        apply.call(store, &[]).map_err(|e| Error::Trap {
            module: name.to_string(),
            function: "__wasm_apply_data_relocs".into(),
            reason: e.message(),
        })?;
    }
    Ok((instance, func_env))
}

/// Calls `_start` and turns its outcome into an exit status or a readable trap.
fn call_start(name: &str, instance: &Instance, store: &mut Store) -> Result<i32, Error> {
    let start = instance
        .exports
        .get_function("_start")
        .map_err(|_| Error::Instantiate {
            module: name.to_string(),
            reason: "the module exports no `_start` function".into(),
        })?;
    match start.call(store, &[]) {
        Ok(_) => Ok(0),
        Err(err) => exit_status(name, err),
    }
}

fn exit_status(name: &str, err: RuntimeError) -> Result<i32, Error> {
    match err.downcast::<WasiError>() {
        Ok(WasiError::Exit(code)) => Ok(code.raw()),
        Ok(WasiError::ThreadExit) => Ok(0),
        Ok(other) => Err(Error::Trap {
            module: name.to_string(),
            function: "_start".into(),
            reason: other.to_string(),
        }),
        Err(err) => Err(Error::Trap {
            module: name.to_string(),
            function: "_start".into(),
            reason: describe_trap(&err),
        }),
    }
}

fn describe_trap(err: &RuntimeError) -> String {
    let mut out = err.message();
    for frame in err.trace() {
        let func = frame
            .function_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("<function {}>", frame.func_index()));
        out.push_str(&format!("\n    at {func} ({})", frame.module_name()));
    }
    out
}
