//! How the other threads learn about loads, unloads and new table slots: the link state
//! keeps an append-only log of them ([`crate::linker::Linker::log`]), and every host call a
//! guest makes (through generated wasm wrappers) first brings its thread's instance group up
//! to date ([`catch_up`]): new modules instantiated from their plans with this thread's TLS
//! blocks, new slots filled, unloaded modules' slots nulled. The fast path is one atomic load
//! in wasm. A thread that runs wasm without host calls sees a new library at its next host
//! call (the rendezvous, which makes `dlopen` wait for such threads, is a later step).

use std::sync::atomic::{AtomicU32, Ordering};

use wasmer::{
    AsStoreMut, AsStoreRef, Extern, Function, FunctionEnv, FunctionEnvMut, FunctionType, Global,
    Imports, Instance, Memory, RuntimeError, Value,
};

use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::open::{lock, DlState};
use crate::scope::ModuleId;
use crate::trampoline;

/// One change to the program, as the threads that did not make it must apply it.
#[derive(Debug, Clone)]
pub enum LinkOp {
    /// Modules loaded by `dlopen`, in instantiation order (relocated and constructed).
    Load(Vec<ModuleId>),
    /// A table slot handed out for a function of a loaded module.
    Slot(u32),
    /// Modules unloaded (or a failed load undone) and the table slots they gave back.
    Unload {
        modules: Vec<ModuleId>,
        slots: Vec<u32>,
    },
}

/// Runs `f` with this thread marked busy in the linker: host calls made by the guest code
/// that `f` runs (allocation, constructors, TLS set-up) do not catch up, so catching up never
/// re-enters itself (wasmer's #6674).
pub fn busy<T>(
    ctx: &mut FunctionEnvMut<DlState>,
    f: impl FnOnce(&mut FunctionEnvMut<DlState>) -> T,
) -> T {
    let was = ctx
        .data_mut()
        .loaded
        .as_mut()
        .map(|l| std::mem::replace(&mut l.busy, true));
    let result = f(ctx);
    if let (Some(loaded), Some(was)) = (ctx.data_mut().loaded.as_mut(), was) {
        loaded.busy = was;
    }
    result
}

/// Brings this thread's instance group up to date with the log.
pub fn catch_up(ctx: &mut FunctionEnvMut<DlState>) -> Result<(), Error> {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(());
    };
    if loaded.busy || loaded.published.load(Ordering::Acquire) == loaded.seen {
        return Ok(());
    }
    busy(ctx, apply_log)
}

fn apply_log(ctx: &mut FunctionEnvMut<DlState>) -> Result<(), Error> {
    let loaded = ctx.data().loaded.as_ref().expect("checked by catch_up");
    let (linker_arc, mut group, wasi, seen) = (
        loaded.linker.clone(),
        loaded.group.clone(),
        loaded.wasi.clone(),
        loaded.seen,
    );
    let mut new_modules = Vec::new();
    let result = (|| {
        let linker = lock(&linker_arc);
        for op in &linker.log[seen..] {
            match op {
                LinkOp::Load(ids) => {
                    for &id in ids {
                        let missing = !matches!(group.instances.get(id), Some(Some(_)));
                        if linker.modules[id].alive && missing {
                            group.instantiate(ctx, &linker, id, &wasi)?;
                            new_modules.push(id);
                        }
                    }
                }
                LinkOp::Slot(slot) => group.fill_slot(ctx, &linker, *slot)?,
                LinkOp::Unload { modules, slots } => {
                    group.null_slots(ctx, slots);
                    for &id in modules {
                        if let Some(instance) = group.instances.get_mut(id) {
                            *instance = None;
                        }
                    }
                }
            }
        }
        Ok::<_, Error>(linker.log.len())
    })();
    let seen = result?;
    let blocks = init_tls(ctx, &linker_arc, &group, &new_modules)?;
    group.bind_tls_got(ctx)?;
    let loaded = ctx.data_mut().loaded.as_mut().expect("checked by catch_up");
    loaded.group = group;
    loaded.seen = seen;
    loaded.tls_blocks.extend(blocks);
    Ok(())
}

/// Sets up the TLS block of each of `ids` in this thread with the module's own
/// `__wasix_init_tls` (which allocates it with the program's `aligned_alloc`). Runs guest
/// code: the thread must be marked busy and no lock held. Returns the blocks allocated, to
/// be freed when the thread ends.
pub fn init_tls(
    store: &mut impl AsStoreMut,
    linker: &std::sync::Mutex<Linker>,
    group: &InstanceGroup,
    ids: &[ModuleId],
) -> Result<Vec<u32>, Error> {
    let mut blocks = Vec::new();
    for &id in ids {
        let Some(Some(instance)) = group.instances.get(id) else {
            continue;
        };
        let Ok(init) = instance
            .exports
            .get_typed_function::<(), i32>(store, "__wasix_init_tls")
        else {
            continue;
        };
        let block = init.call(store).map_err(|e| Error::Trap {
            module: lock(linker).modules[id].name.clone(),
            function: "__wasix_init_tls".into(),
            reason: e.message(),
        })?;
        if block != 0 {
            blocks.push(block as u32);
        }
    }
    Ok(blocks)
}

/// Where in guest memory the runtime publishes the length of the link log for the host-call
/// wrappers to compare with: inside the layout's null guard, which nothing else uses.
pub const EPOCH_ADDRESS: u32 = 16;

/// The guest memory word at [`EPOCH_ADDRESS`].
pub struct EpochWord(*const AtomicU32);

// SAFETY: the word lies in the program's shared memory, which never moves (a shared wasm
// memory is reserved at its maximum size up front; every thread's instances hold its base)
// and lives as long as the process state that holds this.
unsafe impl Send for EpochWord {}
unsafe impl Sync for EpochWord {}

impl EpochWord {
    pub fn new(store: &impl AsStoreRef, memory: &Memory) -> Self {
        let base = memory.view(store).data_ptr();
        // SAFETY: the layout keeps the first page mapped and unused (null guard).
        EpochWord(unsafe { base.add(EPOCH_ADDRESS as usize) } as *const AtomicU32)
    }

    pub fn publish(&self, log_len: usize) {
        // SAFETY: see the type; 4-byte aligned, inside memory.
        unsafe { (*self.0).store(log_len as u32, Ordering::Release) }
    }
}

/// Wraps every function of `imports` in generated wasm (see
/// [`trampoline::host_call_wrappers`]) that catches up before the call and before returning
/// to the caller: one atomic load and compare each way when nothing changed, no host frame
/// added. Returns the wrappers' `seen` global, which [`catch_up`] keeps current.
pub fn wrap_imports(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    memory: &Memory,
) -> Result<Global, Error> {
    let mut functions: Vec<(String, String, Function)> = imports
        .iter()
        .filter_map(|(ns, field, ext)| match ext {
            Extern::Function(f) => Some((ns.to_string(), field.to_string(), f.clone())),
            _ => None,
        })
        .collect();
    functions.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let process = env.as_ref(store).process.clone();
    let module = match process.wrappers.get() {
        Some(module) => module.clone(),
        None => {
            let types: Vec<FunctionType> = functions.iter().map(|(_, _, f)| f.ty(store)).collect();
            let bytes = trampoline::host_call_wrappers(&types, EPOCH_ADDRESS).ok_or_else(|| {
                Error::Wasi("a WASI function has a type the wrappers cannot express".into())
            })?;
            let module = process.compiler.compile("(host-call wrappers)", &bytes)?;
            process.wrappers.get_or_init(|| module).clone()
        }
    };
    let mut wrapped = Imports::new();
    wrapped.define("env", "memory", memory.clone());
    wrapped.define(
        "sync",
        "catch_up",
        Function::new_typed_with_env(store, env, catch_up_from_wasm),
    );
    for (index, (_, _, f)) in functions.iter().enumerate() {
        wrapped.define("f", &index.to_string(), f.clone());
    }
    let instance = Instance::new(store, &module, &wrapped).map_err(|e| Error::Instantiate {
        module: "(host-call wrappers)".into(),
        reason: e.to_string(),
    })?;
    for (index, (ns, field, _)) in functions.iter().enumerate() {
        let wrapper = instance
            .exports
            .get_function(&format!("w{index}"))
            .map_err(|e| Error::Wasi(e.to_string()))?;
        imports.define(ns, field, wrapper.clone());
    }
    instance
        .exports
        .get_global("seen")
        .cloned()
        .map_err(|e| Error::Wasi(e.to_string()))
}

/// `sync.catch_up`, called by the wrappers when the published log length is not theirs.
fn catch_up_from_wasm(mut ctx: FunctionEnvMut<DlState>) -> Result<(), RuntimeError> {
    catch_up(&mut ctx)
        .map_err(|e| RuntimeError::new(format!("catching up with the linker: {e}")))?;
    if let Some(loaded) = ctx.data().loaded.as_ref() {
        if !loaded.busy {
            let (global, seen) = (loaded.seen_global.clone(), loaded.seen);
            global
                .set(&mut ctx, Value::I32(seen as i32))
                .map_err(|e| RuntimeError::new(e.to_string()))?;
        }
    }
    Ok(())
}
