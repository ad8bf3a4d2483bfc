//! `dlopen` and `dlsym` at run time (glibc's `dl-open.c` and `dl-sym.c` in spirit): find and
//! load a library with what it needs, place it, bind it, initialise it — or, on any failure,
//! leave no trace (DESIGN decision 5) — and look symbols up in a handle's scope.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use parking_lot::ReentrantMutex;
use wasmer::{AsStoreMut, AsStoreRef, FunctionEnv, FunctionEnvMut, Imports, Value};
use wasmer_wasix::WasiEnv;

use crate::cache::Compiler;
use crate::catchup::{self, busy};
use crate::error::Error;
use crate::group::{self, InstanceGroup};
use crate::init::{self, ToInit};
use crate::layout::{Region, TABLE_CAPACITY};
use crate::linker::{handle_of, Linker};
use crate::load::{self, GuestFs};
use crate::plan;
use crate::scope::{ModuleId, SymbolKind};
use crate::search::{Requester, SearchContext};
use crate::sync::{self, LinkOp, ThreadSync, Threads, Wrappers};

/// dlopen flags (wasix-libc's `<dlfcn.h>`).
pub const RTLD_GLOBAL: u32 = 4;
pub const RTLD_NOLOAD: u32 = 8;
pub const RTLD_NODELETE: u32 = 16;

/// What the DL host functions of one thread work with (the data of their `FunctionEnv`).
pub struct DlState {
    pub process: Arc<ProcessState>,
    /// This thread's instance group; set once the thread's modules are instantiated.
    pub loaded: Option<Loaded>,
    /// wasmer-wasix's `chdir`, which ours wraps (see [`crate::wasix`]).
    pub runtime_chdir: Option<wasmer::Function>,
    /// This thread's WASI environment (a new thread's is made from its parent's).
    pub wasi_env: Option<FunctionEnv<WasiEnv>>,
    /// A plain WASI module's (no instance group) memory and where its scratch space is: what
    /// the host functions that wrap WASI calls work with.
    pub plain: Option<(wasmer::Memory, crate::guest::Scratch)>,
}

impl DlState {
    /// A thread's state before its instance group exists.
    pub fn new(process: Arc<ProcessState>, wasi: &wasmer_wasix::WasiFunctionEnv) -> Self {
        DlState {
            process,
            loaded: None,
            runtime_chdir: None,
            wasi_env: Some(wasi.env.clone()),
            plain: None,
        }
    }
}

/// What every thread of the program shares besides the link state.
pub struct ProcessState {
    pub fs: GuestFs,
    pub compiler: Compiler,
    /// Working directory for relative paths from programs whose libc passes them as is:
    /// the start-up directory, then wherever the guest's `chdir` calls took it.
    pub cwd: Mutex<PathBuf>,
    /// Held for a whole `dlopen`/`dlclose`, constructors and destructors included, as
    /// glibc's `dl_load_lock`; re-entrant for a constructor that calls `dlopen`.
    pub load_lock: ReentrantMutex<()>,
    /// TLS blocks of threads that have ended, freed by the next thread that loads, unloads
    /// or starts a thread (a thread cannot run `free` once its stack may be gone).
    pub dead_tls_blocks: Mutex<Vec<u32>>,
    /// The host-call wrapper module (see [`crate::sync::wrap_imports`]), compiled once.
    pub wrappers: std::sync::OnceLock<wasmer::Module>,
    /// Every running thread, for the sync protocol.
    pub threads: Threads,
    /// The run's interruption (deadline, cancellation: see [`crate::limits`]).
    pub interrupt: Arc<crate::limits::Interrupt>,
    /// What the guest's standard streams are (the host's, or not).
    pub streams: [crate::run::Stream; 3],
    /// What wasmer-wasix's inode numbers stand for (see [`crate::inodes`]).
    pub inodes: Mutex<crate::inodes::Inodes>,
    /// The guest paths of preopened directories, by descriptor, as asked so far (forgotten
    /// when the descriptor is closed or replaced: see [`crate::hostfs`]).
    pub preopen_names: Mutex<std::collections::HashMap<i32, String>>,
}

/// The program as loaded: the process-wide link state and this thread's instance group.
pub struct Loaded {
    pub linker: Arc<Mutex<Linker>>,
    pub group: InstanceGroup,
    /// WASI/WASIX imports (with ours) of this thread, for the modules loaded at run time
    /// (shared: a few hundred named functions, too many to copy on every dlopen).
    pub wasi: Arc<Imports>,
    /// This thread in the sync protocol (how much of the link log its group has applied).
    pub thread: Arc<ThreadSync>,
    /// The length of the link log (shared by every thread).
    pub published: Arc<AtomicUsize>,
    /// The globals of this thread's host-call wrappers.
    pub wrappers: Wrappers,
    /// TLS blocks the program allocated for this thread, by module (freed when the module is
    /// unloaded or the thread ends).
    pub tls_blocks: Vec<(ModuleId, u32)>,
    /// Modules whose TLS block in this thread waits for its next host call (see
    /// [`crate::catchup`]).
    pub tls_deferred: Vec<ModuleId>,
    /// Set while this thread runs the linker (a load, an unload, catching up): host calls
    /// made by guest code it runs then (allocation, constructors) do not catch up.
    pub busy: bool,
}

fn not_loaded() -> Error {
    Error::Dl {
        message: "the program is not loaded yet".into(),
    }
}

pub fn lock(linker: &Mutex<Linker>) -> MutexGuard<'_, Linker> {
    // A panic while holding the lock leaves nothing half-written that matters more than
    // reporting the original panic: keep going with the data.
    linker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a dlopen/dlclose works with: the link state, this thread's group (a copy to modify
/// and publish back) and its WASI imports.
type Working = (Arc<Mutex<Linker>>, InstanceGroup, Arc<Imports>);

/// This thread's [`Working`] set.
pub(crate) fn loaded(ctx: &FunctionEnvMut<DlState>) -> Result<Working, Error> {
    let loaded = ctx.data().loaded.as_ref().ok_or_else(not_loaded)?;
    Ok((
        loaded.linker.clone(),
        loaded.group.clone(),
        loaded.wasi.clone(),
    ))
}

/// Publishes the instances of `group` as this thread's (before guest code runs that may
/// call back into the linker).
pub(crate) fn set_instances(ctx: &mut FunctionEnvMut<DlState>, group: &InstanceGroup) {
    if let Some(loaded) = ctx.data_mut().loaded.as_mut() {
        loaded.group = group.clone();
    }
}

/// Who calls `dlopen`/`dlsym`: the module whose `__dso_handle` the caller passed (its data
/// starts there), or main when unknown.
pub fn caller_module(linker: &Linker, dso_handle: Option<u32>) -> ModuleId {
    dso_handle
        .and_then(|address| {
            (0..linker.modules.len())
                .rev()
                .find(|&id| linker.modules[id].alive && linker.regions[id].memory_base == address)
        })
        .unwrap_or(0)
}

/// Opens `path` (`None`: the program itself) for the module `caller` (whose RUNPATH and
/// `$ORIGIN` a bare name is searched with) and returns its handle.
pub fn dlopen(
    ctx: &mut FunctionEnvMut<DlState>,
    path: Option<&str>,
    flags: u32,
    ld_library_path: &[String],
    caller: Option<u32>,
) -> Result<u32, Error> {
    let Some(path) = path else {
        return Ok(handle_of(0));
    };
    let process = ctx.data().process.clone();
    let _load = process.load_lock.lock();
    // Libraries loaded by other threads first: the new ones may bind to them directly.
    catchup::catch_up(ctx)?;
    crate::thread::free_dead_tls_blocks(ctx);
    let handle = busy(ctx, |ctx| {
        open_locked(ctx, &process, path, flags, ld_library_path, caller)
    })?;
    if let Err(e) = rendezvous(ctx) {
        // Undone like a dlclose; the threads that were behind apply both.
        let _ = busy(ctx, |ctx| close_locked(ctx, handle));
        return Err(Error::Dl {
            message: format!("{path}: {e}"),
        });
    }
    Ok(handle)
}

/// Waits until every thread running wasm has applied the log as it is now (see
/// [`Threads::rendezvous`]), then drops what every thread has applied from the log.
fn rendezvous(ctx: &FunctionEnvMut<DlState>) -> Result<(), Error> {
    let state = ctx.data();
    let loaded = state.loaded.as_ref().ok_or_else(not_loaded)?;
    let target = loaded.published.load(Ordering::Acquire);
    let threads = &state.process.threads;
    threads.rendezvous(&loaded.thread, target, &state.process.fs.tokio)?;
    let mut linker = lock(&loaded.linker);
    linker.log.forget_applied(threads.least_seen());
    Ok(())
}

fn open_locked(
    ctx: &mut FunctionEnvMut<DlState>,
    process: &ProcessState,
    path: &str,
    flags: u32,
    ld_library_path: &[String],
    caller: Option<u32>,
) -> Result<u32, Error> {
    let (linker_arc, _, _) = loaded(ctx)?;
    let cwd = process
        .cwd
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();

    // Find the file; a library already loaded (under any name) is only referenced again.
    let found = {
        let linker = lock(&linker_arc);
        if let Some(id) = (!path.contains('/'))
            .then(|| linker.known(load::Known::Name(path)))
            .flatten()
        {
            drop(linker);
            return Ok(reopen(&linker_arc, id, flags));
        }
        let requester = &linker.modules[caller_module(&linker, caller)];
        let ctx = SearchContext {
            cwd: &cwd,
            ld_library_path,
            requester: requester.path.as_deref().map(|p| Requester {
                path: p,
                runpath: &requester.info.runtime_path,
            }),
        };
        let found = load::find(
            &process.fs,
            path,
            &ctx,
            &format!("dlopen from {}", requester.name),
        )?;
        if let Some(id) = linker.by_path(&found) {
            drop(linker);
            return Ok(reopen(&linker_arc, id, flags));
        }
        found
    };
    if flags & RTLD_NOLOAD != 0 {
        return Err(Error::Dl {
            message: format!("{}: not loaded (RTLD_NOLOAD)", found.display()),
        });
    }
    if let Some(handle) = crate::park::revive(ctx, process, &found, path, flags)? {
        return Ok(handle);
    }

    // Load and compile the library and what it needs (the load lock keeps the set of
    // modules as it is meanwhile).
    let compiler = &process.compiler;
    let mut first = load::library(compiler, &process.fs, &found)?;
    if !path.contains('/') {
        first.requested_as.push(path.to_string());
    }
    // A dependency whose file is parked (closed with a library that needed it) is opened
    // again first, as if by itself (one file is one module): its handle is closed once the
    // new library holds it.
    let mut dependency_handles = Vec::new();
    let (new, ids) = loop {
        let mut new = vec![first.fresh_copy()];
        new[0].requested_as = first.requested_as.clone();
        let parked_too = {
            let linker = lock(&linker_arc);
            let existing = |known: load::Known| linker.known(known);
            let id_of = |p| linker.id_for_new(p);
            load::load_needed(
                compiler,
                &process.fs,
                &mut new,
                &id_of,
                &existing,
                &cwd,
                ld_library_path,
            )?;
            let parked_too: Vec<ModuleId> = (linker.parked.iter().copied())
                .filter(|&id| {
                    (new.iter()).any(|m| m.path.is_some() && m.path == linker.modules[id].path)
                })
                .collect();
            if parked_too.is_empty() {
                let ids: Vec<ModuleId> = (0..new.len()).map(id_of).collect();
                break (new, ids);
            }
            parked_too
        };
        for id in parked_too {
            let path = lock(&linker_arc).modules[id].path.clone();
            if let Some(path) = path {
                let name = path.display().to_string();
                // Revived, or else forgotten (and loaded anew on the next turn).
                dependency_handles.extend(crate::park::revive(ctx, process, &path, &name, 0)?);
            }
        }
    };
    let result = link_new(ctx, process, &linker_arc, new, &ids, path, flags);
    for handle in dependency_handles {
        close_locked(ctx, handle)?;
    }
    result
}

/// Places, binds, instantiates and initialises the new modules `new` (the library `path`
/// asked for first) under `ids`, and returns its handle — or, on any failure, undoes it all.
fn link_new(
    ctx: &mut FunctionEnvMut<DlState>,
    process: &ProcessState,
    linker_arc: &Arc<Mutex<Linker>>,
    new: Vec<load::LoadedModule>,
    ids: &[ModuleId],
    path: &str,
    flags: u32,
) -> Result<u32, Error> {
    let (_, mut group, wasi) = loaded(ctx)?;
    let root = ids[0];

    // Memory from the program's allocator.
    let mut memory = Vec::with_capacity(new.len());
    for module in &new {
        match allocate(
            ctx,
            &group,
            module.info.memory_size,
            module.info.memory_align_log2,
        ) {
            Ok(base) => memory.push(base),
            Err(e) => {
                free_all(ctx, &group, &memory);
                return Err(e);
            }
        }
    }

    // Register, plan and instantiate in this thread. From here on, a failure is undone by
    // `release`, like an unload.
    let result = (|| {
        let mut linker = lock(linker_arc);
        for ((module, memory_base), &id) in new.into_iter().zip(memory).zip(ids) {
            let table_base =
                linker.allocate_slots(module.info.table_size, module.info.table_align_log2);
            let region = Region {
                memory_base,
                table_base,
            };
            linker.place(id, module, region);
        }
        if linker.next_slot > TABLE_CAPACITY {
            return Err(Error::Dl {
                message: format!("{path}: {}", group::table_full()),
            });
        }
        let mut scope = linker.global_scope.clone();
        for id in linker.local_scope(root) {
            if !scope.contains(&id) {
                scope.push(id);
            }
        }
        for &id in ids {
            crate::linker::interpose(&mut linker, &process.fs, id, &scope)?;
        }
        let planned = linker.order.len();
        for &id in ids.iter().rev() {
            plan::plan(&mut linker, id, &scope)?;
        }
        for &id in &linker.order[planned..] {
            group.instantiate(ctx, &linker, id, &wasi)?;
        }
        group.bind_tls_got(ctx)?;
        Ok(ToInit::list(
            &linker,
            &group,
            &linker.init_order(root, |id| ids.contains(&id)),
        ))
    })();
    set_instances(ctx, &group);
    let initialized = result.and_then(|to_init| {
        crate::park::take_images(ctx, linker_arc, &group, ids);
        init::initialize(ctx, &to_init)
    });
    if let Err(e) = initialized {
        release(ctx, linker_arc, ids);
        return Err(e);
    }
    prepare_tls(ctx, process, &group, ids);
    Ok(finish_open(linker_arc, root, ids, flags))
}

/// The last step of a load of `ids` (`root` first), made or revived: the handle, the flags,
/// the change published.
pub(crate) fn finish_open(
    linker: &Mutex<Linker>,
    root: ModuleId,
    ids: &[ModuleId],
    flags: u32,
) -> u32 {
    let mut linker = lock(linker);
    if flags & RTLD_GLOBAL != 0 {
        promote(&mut linker, root);
    }
    if flags & RTLD_NODELETE != 0 {
        linker.nodelete.insert(root);
    }
    linker.handles.insert(handle_of(root), (root, 1));
    let order: Vec<(ModuleId, u64)> = (linker.order.iter())
        .filter(|id| ids.contains(id))
        .map(|&id| linker.current(id))
        .collect();
    linker.publish(LinkOp::Load(order));
    handle_of(root)
}

/// Allocates, for every other thread, a TLS block of each module of `ids` that has one and
/// can be set up in a block it is given (`__wasm_init_tls`), so that a thread catching up at
/// an epoch check does not have to run the program's allocator (see [`crate::catchup`]).
pub(crate) fn prepare_tls(
    ctx: &mut FunctionEnvMut<DlState>,
    process: &ProcessState,
    group: &InstanceGroup,
    ids: &[ModuleId],
) {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return;
    };
    let others = process.threads.others(&loaded.thread);
    if others.is_empty() {
        return;
    }
    for &id in ids {
        let Some(Some(instance)) = group.instances.get(id) else {
            continue;
        };
        let global = |ctx: &mut FunctionEnvMut<DlState>, name: &str| match instance
            .exports
            .get_global(name)
            .map(|g| g.get(ctx))
        {
            Ok(Value::I32(v)) => v as u32,
            _ => 0,
        };
        let (size, align) = (global(ctx, "__tls_size"), global(ctx, "__tls_align"));
        if size == 0 || instance.exports.get_function("__wasm_init_tls").is_err() {
            continue;
        }
        let align_log2 = align.max(1).next_power_of_two().trailing_zeros();
        for thread in &others {
            match allocate(ctx, group, size, align_log2) {
                Ok(block) => sync::lock_tls(&thread.prepared_tls).push((id, block)),
                Err(_) => return, // those threads allocate their own at a host call
            }
        }
    }
}

/// Takes `ids` out of the program: out of every scope, their table slots nulled and free
/// again, their instances dropped, their memory given back — the one undo path of a failed
/// `dlopen` and of `dlclose`. Other threads follow through the log.
pub(crate) fn release(ctx: &mut FunctionEnvMut<DlState>, linker: &Mutex<Linker>, ids: &[ModuleId]) {
    let Ok((_, mut group, _)) = loaded(ctx) else {
        return;
    };
    let (slots, memory, modules) = {
        let mut linker = lock(linker);
        // Parked modules bound to these go with them (their instances are bound to these).
        let mut registered: Vec<ModuleId> = (ids.iter().copied())
            .filter(|&id| {
                linker.modules.get(id).is_some_and(|m| m.alive) || linker.parked.contains(&id)
            })
            .collect();
        registered.extend(linker.parked_bound_to(&registered));
        let memory: Vec<u32> = (registered.iter())
            .flat_map(|&id| {
                [
                    Some(linker.regions[id].memory_base),
                    linker.modules[id].image.map(|i| i.0),
                ]
            })
            .flatten()
            .filter(|&address| address != 0)
            .collect();
        let modules: Vec<(ModuleId, u64)> =
            registered.iter().map(|&id| linker.current(id)).collect();
        let slots: Vec<u32> = registered
            .iter()
            .flat_map(|&id| linker.forget(id))
            .collect();
        linker.publish(LinkOp::Unload {
            modules: modules.clone(),
            slots: slots.clone(),
        });
        (slots, memory, modules)
    };
    let ids: Vec<ModuleId> = modules.iter().map(|&(id, _)| id).collect();
    group.null_slots(ctx, &slots);
    group.drop_modules(&modules);
    set_instances(ctx, &group);
    let process = ctx.data().process.clone();
    catchup::give_back_tls(ctx, &process, &ids);
    take_back_prepared_tls(ctx, &process, &ids);
    free_all(ctx, &group, &memory);
    crate::thread::free_dead_tls_blocks(ctx);
}

/// Takes back the TLS blocks prepared for other threads (see [`prepare_tls`]) for the
/// unloaded `ids` that those threads have not used, to be freed: the ids may go to other
/// modules, whose blocks must not be confused with these.
pub(crate) fn take_back_prepared_tls(
    ctx: &FunctionEnvMut<DlState>,
    process: &ProcessState,
    ids: &[ModuleId],
) {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return;
    };
    for thread in process.threads.others(&loaded.thread) {
        let mut prepared = sync::lock_tls(&thread.prepared_tls);
        let (gone, kept): (Vec<_>, Vec<_>) =
            prepared.drain(..).partition(|(id, _)| ids.contains(id));
        *prepared = kept;
        drop(prepared);
        process
            .dead_tls_blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(gone.into_iter().map(|(_, block)| block));
    }
}

/// Closes a handle; at its last close the library, and what it needed that nothing else
/// needs, is unloaded (DESIGN decision 6): destructors run (`__cxa_finalize` with the
/// library's `__dso_handle`, which is its `__memory_base`), it leaves every scope, its table
/// slots are nulled and reused, its memory goes back to the program's allocator.
pub fn dlclose(ctx: &mut FunctionEnvMut<DlState>, handle: u32) -> Result<(), Error> {
    let process = ctx.data().process.clone();
    let _load = process.load_lock.lock();
    busy(ctx, |ctx| close_locked(ctx, handle))?;
    rendezvous(ctx)
}

fn close_locked(ctx: &mut FunctionEnvMut<DlState>, handle: u32) -> Result<(), Error> {
    let (linker_arc, group, _) = loaded(ctx)?;
    let unload = {
        let mut linker = lock(&linker_arc);
        let Some(entry) = linker.handles.get_mut(&handle) else {
            return Err(Error::Dl {
                message: format!("invalid handle {handle}"),
            });
        };
        if entry.1 == 0 {
            return Err(Error::Dl {
                message: format!("handle {handle} is already closed"),
            });
        }
        entry.1 -= 1;
        let (id, count) = *entry;
        if count > 0 || id == 0 {
            return Ok(()); // still open, or the program itself (never unloaded)
        }
        linker.handles.remove(&handle);
        linker.unload_set(id)
    };
    if unload.is_empty() {
        return Ok(());
    }
    let main = group.instances[0].clone().expect("main is instantiated");
    let finalize = main
        .exports
        .get_typed_function::<i32, ()>(&ctx.as_store_ref(), "__cxa_finalize")
        .ok();
    let bases: Vec<(u32, String)> = {
        let linker = lock(&linker_arc);
        unload
            .iter()
            .map(|&id| {
                (
                    linker.regions[id].memory_base,
                    linker.modules[id].name.clone(),
                )
            })
            .collect()
    };
    // Destructors first, while everything they may call is still there. No lock held.
    if let Some(finalize) = &finalize {
        for (dso, name) in &bases {
            if *dso != 0 {
                finalize
                    .call(&mut ctx.as_store_mut(), *dso as i32)
                    .map_err(|e| Error::Dl {
                        message: format!("{name}: a destructor trapped: {}", e.message()),
                    })?;
            }
        }
    }
    crate::park::close(ctx, &linker_arc, &unload);
    Ok(())
}

/// A library opened again: one more reference, maybe promoted to the global scope.
fn reopen(linker: &Mutex<Linker>, id: ModuleId, flags: u32) -> u32 {
    let mut linker = lock(linker);
    if flags & RTLD_GLOBAL != 0 {
        promote(&mut linker, id);
    }
    linker.handles.entry(handle_of(id)).or_insert((id, 0)).1 += 1;
    handle_of(id)
}

/// `RTLD_GLOBAL`: the library and its dependencies join the global scope, in order.
pub(crate) fn promote(linker: &mut Linker, root: ModuleId) {
    for id in linker.local_scope(root) {
        if !linker.global_scope.contains(&id) {
            linker.global_scope.push(id);
        }
    }
}

/// `aligned_alloc` from the program's libc, zeroed.
fn allocate(
    ctx: &mut FunctionEnvMut<DlState>,
    group: &InstanceGroup,
    size: u32,
    align_log2: u32,
) -> Result<u32, Error> {
    let ptr = allocate_uncleared(ctx, group, size, align_log2)?;
    // Cleared by the program's own memset (memory.fill): a copy from the host would go
    // through wasmer's volatile byte copy, ten times slower for a library with 1 MiB of data.
    let size = size.max(16);
    let main = group.instances[0].clone().expect("main is instantiated");
    let memset = main
        .exports
        .get_typed_function::<(i32, i32, i32), i32>(&ctx.as_store_ref(), "memset");
    let cleared = match memset {
        Ok(memset) => memset
            .call(&mut ctx.as_store_mut(), ptr as i32, 0, size as i32)
            .map(|_| ())
            .map_err(|e| e.message()),
        Err(_) => {
            let store = ctx.as_store_ref();
            let view = group.memory.view(&store);
            (view.write(ptr as u64, &vec![0u8; size as usize])).map_err(|e| e.to_string())
        }
    };
    cleared.map_err(|e| Error::Dl {
        message: format!("cannot clear a library's memory: {e}"),
    })?;
    Ok(ptr)
}

/// `aligned_alloc` from the program's libc, as it comes.
pub(crate) fn allocate_uncleared(
    ctx: &mut FunctionEnvMut<DlState>,
    group: &InstanceGroup,
    size: u32,
    align_log2: u32,
) -> Result<u32, Error> {
    // Even a module without data gets a few bytes: its address is the module's __dso_handle,
    // which must be unique and non-null for __cxa_finalize.
    let size = size.max(16);
    let main = group.instances[0].clone().expect("main is instantiated");
    let alloc = main
        .exports
        .get_typed_function::<(i32, i32), i32>(&ctx.as_store_ref(), "aligned_alloc")
        .map_err(|e| Error::Dl {
            message: format!("the main module exports no usable aligned_alloc: {e}"),
        })?;
    let align = (1u32 << align_log2.min(16)).max(16);
    let size_rounded = size.next_multiple_of(align);
    let ptr = alloc
        .call(&mut ctx.as_store_mut(), align as i32, size_rounded as i32)
        .map_err(|e| Error::Dl {
            message: format!(
                "aligned_alloc({align}, {size_rounded}) trapped: {}",
                e.message()
            ),
        })? as u32;
    if ptr == 0 {
        return Err(Error::Dl {
            message: format!("out of memory: cannot allocate {size} bytes for a library"),
        });
    }
    Ok(ptr)
}

/// Gives `allocated` back to the program's allocator.
pub fn free_all(ctx: &mut FunctionEnvMut<DlState>, group: &InstanceGroup, allocated: &[u32]) {
    let Some(main) = group.instances[0].clone() else {
        return;
    };
    let Ok(free) = main
        .exports
        .get_typed_function::<i32, ()>(&ctx.as_store_ref(), "free")
    else {
        return;
    };
    for &ptr in allocated {
        let _ = free.call(&mut ctx.as_store_mut(), ptr as i32);
    }
}

/// `RTLD_NEXT` of `<dlfcn.h>`: the definitions after the caller's module.
pub const RTLD_NEXT: u32 = u32::MAX;

/// Looks `name` up for `dlsym(handle, name)` called from the module whose `__dso_handle` is
/// `caller`: handle 0 (`RTLD_DEFAULT`) and the program's own handle search the global scope,
/// `RTLD_NEXT` the caller's scope after the caller, any other handle its library's local
/// scope. Returns a table index for a function, an address for data (this thread's copy for
/// TLS).
pub fn dlsym(
    ctx: &mut FunctionEnvMut<DlState>,
    handle: u32,
    name: &str,
    caller: Option<u32>,
) -> Result<u32, Error> {
    catchup::catch_up(ctx)?;
    let published = ctx.data().loaded.as_ref().map(|l| l.published.clone());
    let before = published.as_ref().map(|p| p.load(Ordering::Acquire));
    let value = lookup(ctx, handle, name, caller)?;
    // A function's new slot is a change every thread must see before the pointer escapes.
    if published.map(|p| p.load(Ordering::Acquire)) != before {
        rendezvous(ctx)?;
    }
    Ok(value)
}

/// Where `dlsym` looks: the global scope, one library's local scope, or what follows the
/// caller in its scope (`RTLD_NEXT`).
enum Searched {
    Global,
    Library(ModuleId),
    After(ModuleId),
}

fn lookup(
    ctx: &mut FunctionEnvMut<DlState>,
    handle: u32,
    name: &str,
    caller: Option<u32>,
) -> Result<u32, Error> {
    let loaded = ctx.data().loaded.as_ref().ok_or_else(not_loaded)?;
    let linker_arc = loaded.linker.clone();
    let mut linker = lock(&linker_arc);
    let searched = match handle {
        0 => Searched::Global,
        RTLD_NEXT => Searched::After(caller_module(&linker, caller)),
        h => match linker.handles.get(&h) {
            Some(&(0, _)) => Searched::Global,
            Some(&(id, _)) => Searched::Library(id),
            None => {
                return Err(Error::Dl {
                    message: format!("invalid handle {h}"),
                })
            }
        },
    };
    if let Searched::Global = searched {
        let builtin = crate::wasix::BUILTINS.iter().zip(&linker.builtins);
        if let Some((_, &slot)) = builtin.clone().find(|((n, _), _)| *n == name) {
            return Ok(slot); // provided by the runtime itself (see the toolchain's dlfcn.c)
        }
    }
    let found = match searched {
        Searched::Global => linker.lookup(&linker.global_scope, name),
        Searched::Library(id) => linker.lookup(&linker.local_scope(id), name),
        Searched::After(caller) => {
            // The caller's scope: the global one if it is in it, else its own local scope.
            let scope = if linker.global_scope.contains(&caller) {
                linker.global_scope.clone()
            } else {
                linker.local_scope(caller)
            };
            let after = scope
                .iter()
                .position(|&id| id == caller)
                .map_or(0, |p| p + 1);
            linker.lookup(&scope[after..], name)
        }
    };
    let not_found = || Error::Dl {
        message: match searched {
            Searched::Library(id) => {
                format!("{}: undefined symbol: {name}", linker.modules[id].name)
            }
            Searched::After(id) => format!(
                "undefined symbol: {name} (RTLD_NEXT: after {})",
                linker.modules[id].name
            ),
            Searched::Global => format!("undefined symbol: {name}"),
        },
    };
    let Some((provider, kind)) = found else {
        return Err(not_found());
    };
    let loaded = ctx.data().loaded.as_ref().ok_or_else(not_loaded)?;
    let instance = loaded.group.instances[provider]
        .clone()
        .ok_or_else(not_found)?;
    let global_value = |ctx: &mut FunctionEnvMut<DlState>, global: &str| -> Result<u32, Error> {
        match instance.exports.get_global(global).map(|g| g.get(ctx)) {
            Ok(Value::I32(v)) => Ok(v as u32),
            _ => Err(Error::Dl {
                message: format!(
                    "{}: `{global}` is not an i32 global",
                    linker.modules[provider].name
                ),
            }),
        }
    };
    match kind {
        SymbolKind::Function(_) => {
            let (slot, new) = linker.func_slot_new(provider, name);
            if new {
                let group = loaded.group.clone();
                group.fill_slot(ctx, &linker, slot)?;
            }
            Ok(slot)
        }
        SymbolKind::Data => {
            let offset = global_value(ctx, name)?;
            Ok(linker.regions[provider].memory_base.wrapping_add(offset))
        }
        SymbolKind::Tls => {
            Ok(global_value(ctx, "__tls_base")?.wrapping_add(global_value(ctx, name)?))
        }
    }
}

/// Whether `handle` is an open handle (what libc's `dlclose` asks).
pub fn is_valid_handle(ctx: &FunctionEnvMut<DlState>, handle: u32) -> bool {
    match &ctx.data().loaded {
        Some(loaded) => lock(&loaded.linker).handles.contains_key(&handle),
        None => false,
    }
}
