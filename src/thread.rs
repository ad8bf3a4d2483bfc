//! Threads (DESIGN decisions 7–8): `thread_spawn_v2` and wasi-threads' `thread-spawn`, served
//! by us because a new thread needs an instance of every loaded module, not only main's.
//! The new thread gets its own Store with the shared memory, a new table, stack pointer and
//! tags, every live module instantiated from its plan in [`Linker::order`], main's TLS block
//! from the spawn record, each library's TLS block, and a WASI environment registered with
//! wasmer-wasix's process as one of its threads; then it enters main's `wasi_thread_start`.
//!
//! Libraries' TLS blocks in a new thread: a library that exports `__tls_size`, `__tls_align`
//! and `__wasm_init_tls` gets its block at the top of the thread's stack, placed by the runtime
//! (no guest allocation; it goes with the stack): the record's `stack_upper` and `stack_size`
//! are lowered to match before `wasi_thread_start` reads them. Others get theirs from their
//! own `__wasix_init_tls` (the program's `aligned_alloc`), freed after the thread ends.

use std::sync::Arc;

use wasmer::{
    AsStoreMut, AsStoreRef, FunctionEnv, FunctionEnvMut, Imports, Instance, Store, Value, WasmPtr,
};
use wasmer_wasix::wasmer_wasix_types::wasi::{Errno, ExitCode};
use wasmer_wasix::wasmer_wasix_types::wasix::{ThreadStartType, WasiMemoryLayout};
use wasmer_wasix::{WasiError, WasiFunctionEnv, WasiModuleInstanceHandles, WasiModuleTreeHandles};

use crate::catchup;
use crate::diagnose;
use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::open::{lock, DlState, Loaded, ProcessState};
use crate::run::{self, TRAP_EXIT_CODE};
use crate::sync::{self, ThreadSync};

/// Byte offsets in WASIX's `ThreadStart` record (wasm32: sixteen u32).
const STACK_UPPER: u32 = 0;
const TLS_BASE: u32 = 4;
const STACK_SIZE: u32 = 56;
const RECORD_SIZE: u32 = 64;

/// How a thread was asked for.
#[derive(Clone, Copy)]
enum Start {
    /// `thread_spawn_v2(start)`: a `ThreadStart` record at this address.
    Record(u32),
    /// wasi-threads `thread-spawn(arg)`: an argument the guest interprets itself.
    Arg(u32),
}

impl Start {
    fn argument(self) -> u32 {
        match self {
            Start::Record(ptr) | Start::Arg(ptr) => ptr,
        }
    }
}

/// Replaces wasmer-wasix's thread creation in `imports` with ours.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for name in ["thread_spawn", "thread_spawn_v2"] {
        imports.define(
            "wasix_32v1",
            name,
            wasmer::Function::new_typed_with_env(store, env, thread_spawn_v2),
        );
    }
    for ns in ["wasi", "wasi_snapshot_preview1"] {
        imports.define(
            ns,
            "thread-spawn",
            wasmer::Function::new_typed_with_env(store, env, wasi_thread_spawn),
        );
    }
}

/// `thread_spawn_v2(start: *ThreadStart, out_tid: *u32) -> errno`.
fn thread_spawn_v2(mut ctx: FunctionEnvMut<DlState>, start: u32, out_tid: u32) -> i32 {
    match spawn(&mut ctx, Start::Record(start)) {
        Ok(tid) => {
            let Some(loaded) = ctx.data().loaded.as_ref() else {
                return Errno::Noexec as i32;
            };
            let view = loaded.group.memory.view(&ctx);
            match WasmPtr::<u32>::new(out_tid).write(&view, tid) {
                Ok(()) => Errno::Success as i32,
                Err(_) => Errno::Fault as i32,
            }
        }
        Err(errno) => errno as i32,
    }
}

/// wasi-threads `thread-spawn(arg) -> tid`, or a negative errno.
fn wasi_thread_spawn(mut ctx: FunctionEnvMut<DlState>, arg: u32) -> i32 {
    match spawn(&mut ctx, Start::Arg(arg)) {
        Ok(tid) => tid as i32,
        Err(errno) => -(errno as i32),
    }
}

/// Starts a thread. Errors are what the guest sees; the reason goes to the log.
fn spawn(ctx: &mut FunctionEnvMut<DlState>, start: Start) -> Result<u32, Errno> {
    let state = ctx.data();
    let (Some(loaded), Some(wasi_env)) = (state.loaded.as_ref(), state.wasi_env.clone()) else {
        return Err(Errno::Noexec);
    };
    let process = state.process.clone();
    let linker = loaded.linker.clone();
    let memory = loaded.group.memory.clone();
    let shared = memory.as_shared(ctx).ok_or(Errno::Notsup)?;
    let engine = ctx.as_store_ref().engine().clone();
    free_dead_tls_blocks(ctx);

    let layout = match start {
        Start::Record(ptr) => {
            let view = memory.view(ctx);
            let read = |offset: u32| -> Result<u32, Errno> {
                WasmPtr::<u32>::new(ptr.checked_add(offset).ok_or(Errno::Fault)?)
                    .read(&view)
                    .map_err(|_| Errno::Fault)
            };
            read(RECORD_SIZE - 4)?; // the whole record is inside memory
            let (upper, size) = (read(STACK_UPPER)?, read(STACK_SIZE)?);
            WasiMemoryLayout {
                stack_upper: upper.into(),
                stack_lower: upper.saturating_sub(size).into(),
                guard_size: 0,
                stack_size: size.into(),
                tls_base: Some(read(TLS_BASE)?.into()),
            }
        }
        Start::Arg(_) => WasiMemoryLayout::default(),
    };
    let parent = wasi_env.as_ref(ctx);
    let handle = parent
        .process
        .new_thread(
            layout.clone(),
            ThreadStartType::ThreadSpawn {
                start_ptr: start.argument().into(),
            },
        )
        .map_err(|e| {
            tracing::warn!("cannot create a thread: {e}");
            Errno::Again
        })?;
    let tid = handle.tid().raw();
    let me = process.threads.register(tid).ok_or_else(|| {
        tracing::warn!(
            "cannot create a thread: {} threads run already",
            sync::MAX_THREADS
        );
        Errno::Again
    })?;
    let mut env = parent.clone();
    env.thread = handle.as_thread();
    env.layout = layout;
    env.enable_deep_sleep = false;
    let tokio = process.fs.tokio.clone();
    // wasi-threads gives no stack to run a library's __wasix_init_tls on in the new thread:
    // its blocks are allocated here, in the parent, and only initialised there.
    let blocks = match start {
        Start::Record(_) => Vec::new(),
        Start::Arg(_) => match allocate_tls_blocks(ctx) {
            Ok(blocks) => blocks,
            Err(errno) => {
                process.threads.remove(&me);
                return Err(errno);
            }
        },
    };

    let running = process.clone();
    let (failed, me_if_failed) = (process.clone(), me.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("wasix-dl thread {tid}"))
        .spawn(move || {
            let _runtime = tokio.enter();
            let mut store = Store::new(engine);
            let memory = shared.attach(&mut store);
            let func_env = WasiFunctionEnv::new(&mut store, env);
            let new = NewThread {
                start,
                blocks,
                me: me.clone(),
            };
            let code = match prepare(&mut store, &func_env, process, &linker, memory, new) {
                Ok((entry, dl_env)) => run_thread(&mut store, &dl_env, entry, tid, start),
                Err(e) => {
                    eprintln!("wasix-dl: cannot start thread {tid}: {e}");
                    Some(TRAP_EXIT_CODE)
                }
            };
            if let Some(code) = code {
                // The whole program ends with this thread: like exit() or a crash natively.
                func_env.on_exit(&mut store, Some(ExitCode::from(code.clamp(0, 255) as u16)));
                std::process::exit(code);
            }
            func_env.on_exit(&mut store, None);
            handle.set_status_finished(Ok(Errno::Success.into()));
            drop(store);
            end(&running, &me);
        });
    match spawned {
        Ok(_) => Ok(tid),
        Err(e) => {
            end(&failed, &me_if_failed);
            tracing::warn!("cannot start an OS thread: {e}");
            Err(Errno::Again)
        }
    }
}

/// Takes an ended thread out of the sync protocol; TLS blocks prepared for it and never used
/// are freed by a live thread.
fn end(process: &ProcessState, me: &ThreadSync) {
    let unused = process.threads.remove(me);
    process
        .dead_tls_blocks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(unused);
}

/// What a new thread starts from: how it was asked for, the TLS blocks its parent allocated
/// for it (wasi-threads), and its place in the sync protocol.
struct NewThread {
    start: Start,
    blocks: Vec<(usize, u32)>,
    me: Arc<ThreadSync>,
}

/// A started thread's `wasi_thread_start` and the environment of its DL functions.
type ThreadEntry = (wasmer::TypedFunction<(i32, i32), ()>, FunctionEnv<DlState>);

/// Builds the new thread's instance group and environment.
fn prepare(
    store: &mut Store,
    func_env: &WasiFunctionEnv,
    process: Arc<ProcessState>,
    linker_arc: &Arc<std::sync::Mutex<Linker>>,
    memory: wasmer::Memory,
    new: NewThread,
) -> Result<ThreadEntry, Error> {
    let NewThread { start, blocks, me } = new;
    let dl_env = FunctionEnv::new(store, DlState::new(process, func_env));
    let (wasi, wrappers) = run::thread_imports(
        store,
        func_env,
        &dl_env,
        &memory,
        sync::state_address(me.slot),
    )?;
    let catch_up = wasmer::Function::new_typed_with_env(store, &dl_env, catchup::at_check);
    let mut group = InstanceGroup::new(store, memory.clone(), 0, catch_up)?;
    let (seen, published, builtins, ids) = {
        let linker = lock(linker_arc);
        for &id in &linker.order {
            group.instantiate(store, &linker, id, &wasi)?;
        }
        (
            linker.log.len(),
            linker.published.clone(),
            linker.builtins.clone(),
            linker.order.clone(),
        )
    };
    for ((_, import), slot) in crate::wasix::BUILTINS.iter().zip(builtins) {
        let function = run::builtin(&wasi, import)?;
        let _ = group.table.set(store, slot, Value::FuncRef(Some(function)));
    }
    let main = group.instances[0].clone().expect("main is instantiated");
    let fail = |function: &str, reason: String| Error::Trap {
        module: "(thread start)".into(),
        function: function.into(),
        reason,
    };

    // Main's TLS block (the guest allocated it), then the libraries' blocks.
    let mut tls_blocks = Vec::new();
    if let Start::Record(ptr) = start {
        let (tls_base, mut upper, mut size) = {
            let view = memory.view(store);
            let word = |offset: u32| WasmPtr::<u32>::new(ptr + offset).read(&view).unwrap_or(0);
            (word(TLS_BASE), word(STACK_UPPER), word(STACK_SIZE))
        };
        let init = main
            .exports
            .get_typed_function::<i32, ()>(store, "__wasm_init_tls");
        if let (Ok(init), true) = (init, tls_base != 0) {
            init.call(store, tls_base as i32)
                .map_err(|e| fail("__wasm_init_tls", e.message()))?;
        }
        // Runtime-placed blocks at the top of the stack.
        for &id in ids.iter().filter(|&&id| id != 0) {
            let instance = group.instances[id].clone().expect("instantiated above");
            let global = |name: &str, store: &mut Store| match instance.exports.get_global(name) {
                Ok(g) => match g.get(store) {
                    Value::I32(v) => Some(v as u32),
                    _ => None,
                },
                Err(_) => None,
            };
            let (Some(tls_size), Some(align), Ok(init)) = (
                global("__tls_size", store),
                global("__tls_align", store),
                instance
                    .exports
                    .get_typed_function::<i32, ()>(store, "__wasm_init_tls"),
            ) else {
                continue;
            };
            if tls_size == 0 {
                continue;
            }
            // Clamped: a module's hostile alignment or size cannot overflow the arithmetic.
            let align = align.clamp(1, 1 << 16).next_power_of_two();
            let block = upper.saturating_sub(tls_size) & !(align - 1);
            let used = upper - block;
            if used.saturating_add(1024) > size {
                break; // too little stack left: the rest get allocated blocks below
            }
            init.call(store, block as i32)
                .map_err(|e| fail("__wasm_init_tls", e.message()))?;
            upper = block;
            size -= used;
        }
        let view = memory.view(store);
        for (offset, value) in [(STACK_UPPER, upper), (STACK_SIZE, size)] {
            let _ = WasmPtr::<u32>::new(ptr + offset).write(&view, value);
        }
        group
            .stack_pointer
            .set(store, Value::I32(upper as i32))
            .ok();
        // What remains gets its block from its own __wasix_init_tls (needs the stack set).
        let rest: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&id| id != 0 && group.tls_base(store, id) == 0)
            .collect();
        tls_blocks = catchup::init_tls(store, linker_arc, &group, &rest)?;
    }
    for (id, block) in blocks {
        let Some(Some(instance)) = group.instances.get(id) else {
            continue;
        };
        if let Ok(init) = instance
            .exports
            .get_typed_function::<i32, ()>(store, "__wasm_init_tls")
        {
            init.call(store, block as i32)
                .map_err(|e| fail("__wasm_init_tls", e.message()))?;
        }
        tls_blocks.push((id, block));
    }
    group.bind_tls_got(store)?;

    let handles = WasiModuleTreeHandles::Static(WasiModuleInstanceHandles::new(
        memory,
        store,
        Instance::clone(&main),
        Some(group.table.clone()),
    ));
    let layout = func_env.data(store).layout.clone();
    let mut func_env = func_env.clone();
    func_env
        .initialize_handles_and_layout(store, Instance::clone(&main), handles, Some(layout), false)
        .map_err(|e| fail("(handles)", e.to_string()))?;
    let entry = main
        .exports
        .get_typed_function::<(i32, i32), ()>(store, "wasi_thread_start")
        .map_err(|e| fail("wasi_thread_start", e.to_string()))?;
    me.seen.store(seen, std::sync::atomic::Ordering::Release);
    dl_env.as_mut(store).loaded = Some(Loaded {
        linker: linker_arc.clone(),
        group,
        wasi: Arc::new(wasi),
        thread: me,
        published,
        tls_blocks,
        tls_deferred: Vec::new(),
        busy: false,
        wrappers,
    });
    Ok((entry, dl_env))
}

/// Runs the thread to its end. `Some(status)` when the whole program must end with it
/// (`exit` called in this thread, or a trap).
fn run_thread(
    store: &mut Store,
    dl_env: &FunctionEnv<DlState>,
    entry: wasmer::TypedFunction<(i32, i32), ()>,
    tid: u32,
    start: Start,
) -> Option<i32> {
    // Into wasm: the state word cleared first, then what was published meanwhile applied
    // (see crate::sync on why in this order).
    let entered = {
        let mut ctx = dl_env.clone().into_mut(store);
        let state = ctx.data();
        let (process, thread) = (
            state.process.clone(),
            state.loaded.as_ref().map(|l| l.thread.clone()),
        );
        if let Some(thread) = &thread {
            process.threads.enter_wasm(thread);
        }
        catchup::catch_up(&mut ctx).and_then(|()| catchup::start_seen(&mut ctx))
    };
    let result = match entered {
        Ok(()) => entry.call(store, tid as i32, start.argument() as i32),
        Err(e) => {
            eprintln!("wasix-dl: thread {tid} cannot start: {e}");
            return Some(TRAP_EXIT_CODE);
        }
    };
    // Its TLS blocks are freed by a live thread (this one's stack may be gone already).
    let state = dl_env.as_mut(store);
    if let Some(loaded) = state.loaded.as_mut() {
        let blocks = std::mem::take(&mut loaded.tls_blocks);
        state
            .process
            .dead_tls_blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(blocks.into_iter().map(|(_, block)| block));
    }
    match result {
        Ok(()) => None,
        Err(err) => match err.downcast::<WasiError>() {
            Ok(WasiError::ThreadExit) => None,
            Ok(WasiError::Exit(code)) => Some(code.raw()),
            Ok(other) => {
                eprintln!("wasix-dl: thread {tid}: {other}");
                Some(TRAP_EXIT_CODE)
            }
            Err(err) => {
                eprintln!(
                    "wasix-dl: thread {tid} trapped: {}",
                    diagnose::describe_trap(&err, Some((store, dl_env)))
                );
                Some(TRAP_EXIT_CODE)
            }
        },
    }
}

/// Allocates, with the program's `aligned_alloc` in the calling thread, a TLS block for each
/// library of this thread's group that has one.
fn allocate_tls_blocks(ctx: &mut FunctionEnvMut<DlState>) -> Result<Vec<(usize, u32)>, Errno> {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Err(Errno::Noexec);
    };
    let group = loaded.group.clone();
    let Some(Some(main)) = group.instances.first() else {
        return Err(Errno::Noexec);
    };
    let alloc = main
        .exports
        .get_typed_function::<(i32, i32), i32>(ctx, "aligned_alloc")
        .map_err(|_| Errno::Notsup)?;
    let mut blocks = Vec::new();
    for (id, instance) in group.instances.iter().enumerate().skip(1) {
        let Some(instance) = instance else { continue };
        let global = |name: &str, ctx: &mut FunctionEnvMut<DlState>| match instance
            .exports
            .get_global(name)
            .map(|g| g.get(ctx))
        {
            Ok(Value::I32(v)) => v as u32,
            _ => 0,
        };
        let (size, align) = (global("__tls_size", ctx), global("__tls_align", ctx));
        if size == 0 {
            continue;
        }
        let block = catchup::busy(ctx, |ctx| alloc.call(ctx, align.max(1) as i32, size as i32));
        match block {
            Ok(block) if block != 0 => blocks.push((id, block as u32)),
            _ => {
                crate::open::free_all(ctx, &group, &blocks.iter().map(|b| b.1).collect::<Vec<_>>());
                return Err(Errno::Nomem);
            }
        }
    }
    Ok(blocks)
}

/// Frees the TLS blocks of threads that have ended, in the calling thread.
pub fn free_dead_tls_blocks(ctx: &mut FunctionEnvMut<DlState>) {
    let blocks = std::mem::take(
        &mut *ctx
            .data()
            .process
            .dead_tls_blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    if blocks.is_empty() {
        return;
    }
    if let Some(loaded) = ctx.data().loaded.as_ref() {
        let group = loaded.group.clone();
        catchup::busy(ctx, |ctx| crate::open::free_all(ctx, &group, &blocks));
    }
}
