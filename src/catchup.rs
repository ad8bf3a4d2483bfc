//! Applying the link log in one thread (the other half of [`crate::sync`]): new modules
//! instantiated from their plans with this thread's TLS blocks, new table slots filled,
//! unloaded modules' slots nulled and their instances dropped.
//!
//! A thread catches up at two kinds of points:
//! * **at a host call** (the wrappers call [`at_host_call`] on the way in and out), where it
//!   may run any guest code: a library's TLS block can come from its `__wasix_init_tls`;
//! * **at an epoch check** (a loop header or function entry calls [`at_check`] through table
//!   slot [`crate::layout::CATCH_UP_SLOT`]), which can be anywhere, even inside `malloc` with its
//!   lock held: only lock-free guest code runs there (`__wasm_init_tls` on a block the
//!   publisher allocated for this thread). A module that can only set up its TLS through its
//!   own allocation gets it at the thread's next host call.

use std::sync::atomic::Ordering;

use wasmer::{AsStoreMut, FunctionEnvMut, RuntimeError, Value};

use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::open::{lock, DlState};
use crate::rewrite::CHECK_GLOBAL;
use crate::scope::ModuleId;
use crate::sync::{lock_tls, LinkOp};

/// Where a thread catches up: what guest code it may run there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Point {
    HostCall,
    Check,
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

/// Brings this thread's instance group up to date with the log (from host code, where any
/// guest code may run).
pub fn catch_up(ctx: &mut FunctionEnvMut<DlState>) -> Result<(), Error> {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(());
    };
    let current = loaded.published.load(Ordering::Acquire)
        == loaded.thread.seen.load(Ordering::Relaxed)
        && loaded.tls_deferred.is_empty();
    if current {
        return Ok(()); // the common case: one load and a compare
    }
    catch_up_at(ctx, Point::HostCall)
}

/// `sync.catch_up`, called by the host-call wrappers when the epoch is not theirs.
pub fn at_host_call(mut ctx: FunctionEnvMut<DlState>) -> Result<(), RuntimeError> {
    catch_up_at(&mut ctx, Point::HostCall)
        .map_err(|e| RuntimeError::new(format!("catching up with the linker: {e}")))
}

/// The function in every thread's catch-up slot, called by the epoch checks compiled into
/// modules when the epoch is not theirs.
pub fn at_check(mut ctx: FunctionEnvMut<DlState>) -> Result<(), RuntimeError> {
    catch_up_at(&mut ctx, Point::Check)
        .map_err(|e| RuntimeError::new(format!("catching up with the linker: {e}")))
}

fn catch_up_at(ctx: &mut FunctionEnvMut<DlState>, point: Point) -> Result<(), Error> {
    if let Some(reason) = ctx.data().process.interrupt.reason() {
        return Err(reason.error());
    }
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(()); // still starting: the thread catches up before it enters wasm
    };
    let published = loaded.published.clone();
    if loaded.busy {
        // Guest code run by the linker in this thread (a constructor, an allocation): it
        // catches up when the linker is done. Until then its checks stop asking.
        let epoch = published.load(Ordering::Acquire);
        return set_seen_globals(ctx, epoch, false);
    }
    let thread = loaded.thread.clone();
    busy(ctx, |ctx| loop {
        let deferred = ctx
            .data()
            .loaded
            .as_ref()
            .map(|l| !l.tls_deferred.is_empty());
        if point == Point::HostCall && deferred == Some(true) {
            init_deferred_tls(ctx)?;
        }
        if published.load(Ordering::Acquire) == thread.seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        apply_log(ctx, point)?;
    })?;
    let seen = thread.seen.load(Ordering::Relaxed);
    set_seen_globals(ctx, seen, true)
}

/// Sets the epoch checks' copy of `seen` in every module of this thread, and with
/// `wrappers` the host-call wrappers' copy too (left behind while a module's TLS waits for a
/// host call, so that the next one catches up).
fn set_seen_globals(
    ctx: &mut FunctionEnvMut<DlState>,
    seen: usize,
    wrappers: bool,
) -> Result<(), Error> {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(());
    };
    let mut globals: Vec<wasmer::Global> = loaded
        .group
        .instances
        .iter()
        .flatten()
        .filter_map(|i| i.exports.get_global(CHECK_GLOBAL).ok().cloned())
        .collect();
    let wrapper_seen = if loaded.tls_deferred.is_empty() {
        seen as u32
    } else {
        u32::MAX
    };
    let wrapper_global = loaded.wrappers.seen.clone();
    for global in globals.drain(..) {
        set_i32(ctx, &global, seen as u32)?;
    }
    if wrappers {
        set_i32(ctx, &wrapper_global, wrapper_seen)?;
    }
    Ok(())
}

fn set_i32(store: &mut impl AsStoreMut, global: &wasmer::Global, value: u32) -> Result<(), Error> {
    global
        .set(store, Value::I32(value as i32))
        .map_err(|e| Error::Wasi(format!("cannot set the epoch: {e}")))
}

/// Sets the epoch globals of a thread that is about to enter wasm for the first time.
pub fn start_seen(ctx: &mut FunctionEnvMut<DlState>) -> Result<(), Error> {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(());
    };
    let seen = loaded.thread.seen.load(Ordering::Relaxed);
    set_seen_globals(ctx, seen, true)
}

fn apply_log(ctx: &mut FunctionEnvMut<DlState>, point: Point) -> Result<(), Error> {
    let loaded = ctx.data().loaded.as_ref().expect("checked by catch_up");
    let (linker_arc, mut group, wasi, thread) = (
        loaded.linker.clone(),
        loaded.group.clone(),
        loaded.wasi.clone(),
        loaded.thread.clone(),
    );
    let seen = thread.seen.load(Ordering::Relaxed);
    let process = ctx.data().process.clone();
    let mut new_modules = Vec::new();
    let mut loaded_ids = Vec::new();
    let result = (|| {
        let linker = lock(&linker_arc);
        let ops = linker.log.since(seen).ok_or_else(|| {
            Error::Wasi(format!(
                "thread {} is behind the start of the link log",
                thread.tid
            ))
        })?;
        for op in ops {
            match op {
                LinkOp::Load(modules) => {
                    for &(id, incarnation) in modules {
                        let current = linker.current(id);
                        // Unloaded since (its id maybe given to another)?
                        if !linker.modules[id].alive || current.1 != incarnation {
                            continue;
                        }
                        loaded_ids.push(id);
                        if !group.has(current) {
                            group.restore_or_instantiate(ctx, &linker, id, &wasi)?;
                            new_modules.push(id);
                        }
                    }
                }
                LinkOp::Slot(slot) => group.fill_slot(ctx, &linker, *slot)?,
                LinkOp::Unload { modules, slots } => {
                    // Slots given since to a module this thread has as it is now stay (the
                    // publisher fills its own table at once, before it catches up).
                    let stale: Vec<u32> = (slots.iter().copied())
                        .filter(|&slot| !group.holds_current(&linker, slot))
                        .collect();
                    group.null_slots(ctx, &stale);
                    let dropped = group.drop_modules(modules);
                    gone(ctx, &mut new_modules, &dropped);
                }
                LinkOp::Park { modules } => {
                    let parked = group.park(ctx, modules);
                    gone(ctx, &mut new_modules, &parked);
                }
            }
        }
        Ok::<_, Error>(linker.log.len())
    })();
    let new_seen = result?;

    // TLS blocks: the ones the publisher prepared, else the module's own allocation. Blocks
    // prepared for a load this thread does not need (it had the module already) are kept
    // with the others and freed with them. (The publisher of an unload takes back the blocks
    // it prepared for the modules unloaded: what is here is for the modules as they are.)
    let prepared: Vec<(ModuleId, u32)> = {
        let mut all = lock_tls(&thread.prepared_tls);
        let (ours, later): (Vec<_>, Vec<_>) =
            all.drain(..).partition(|(id, _)| loaded_ids.contains(id));
        *all = later;
        ours
    };
    let mut own_allocation = Vec::new();
    for &id in &new_modules {
        match prepared.iter().find(|(m, _)| *m == id) {
            Some(&(_, block)) => init_tls_at(ctx, &linker_arc, &group, id, block)?,
            None => own_allocation.push(id),
        }
    }
    let mut blocks = prepared;
    // The group as it is now, for the guest code that allocating TLS runs.
    let loaded = ctx.data_mut().loaded.as_mut().expect("checked by catch_up");
    loaded.group = group.clone();
    match point {
        Point::HostCall => blocks.extend(init_tls(ctx, &linker_arc, &group, &own_allocation)?),
        Point::Check => loaded.tls_deferred.extend(own_allocation),
    }
    group.bind_tls_got(ctx)?;

    let loaded = ctx.data_mut().loaded.as_mut().expect("checked by catch_up");
    loaded.group = group;
    loaded.tls_blocks.extend(blocks);
    process.threads.caught_up(&thread, new_seen);
    Ok(())
}

/// What goes with modules unloaded or parked in this thread, at once (a later Load in the
/// same batch may give their ids to other modules): their TLS blocks, and their TLS set-up
/// if still to come.
fn gone(ctx: &mut FunctionEnvMut<DlState>, new_modules: &mut Vec<ModuleId>, ids: &[ModuleId]) {
    new_modules.retain(|m| !ids.contains(m));
    let process = ctx.data().process.clone();
    give_back_tls(ctx, &process, ids);
    if let Some(loaded) = ctx.data_mut().loaded.as_mut() {
        loaded.tls_deferred.retain(|id| !ids.contains(id));
    }
}

/// Hands this thread's TLS blocks of `modules` (unloaded) to the process, to be freed by
/// the next thread that runs the program's allocator safely.
pub fn give_back_tls(
    ctx: &mut FunctionEnvMut<DlState>,
    process: &crate::open::ProcessState,
    modules: &[ModuleId],
) {
    let Some(loaded) = ctx.data_mut().loaded.as_mut() else {
        return;
    };
    let (gone, kept): (Vec<_>, Vec<_>) = loaded
        .tls_blocks
        .drain(..)
        .partition(|(id, _)| modules.contains(id));
    loaded.tls_blocks = kept;
    process
        .dead_tls_blocks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(gone.into_iter().map(|(_, block)| block));
}

/// The TLS set-up that waited for a host call (see [`Point::Check`]).
fn init_deferred_tls(ctx: &mut FunctionEnvMut<DlState>) -> Result<(), Error> {
    let loaded = ctx.data_mut().loaded.as_mut().expect("checked by catch_up");
    let ids = std::mem::take(&mut loaded.tls_deferred);
    let (linker, mut group) = (loaded.linker.clone(), loaded.group.clone());
    let blocks = init_tls(ctx, &linker, &group, &ids)?;
    group.bind_tls_got(ctx)?;
    let loaded = ctx.data_mut().loaded.as_mut().expect("checked by catch_up");
    loaded.group = group;
    loaded.tls_blocks.extend(blocks);
    Ok(())
}

/// Initialises module `id`'s TLS block at `block` in this thread (`__wasm_init_tls`: copies
/// the TLS image and applies its relocations; no allocation, no lock).
fn init_tls_at(
    store: &mut impl AsStoreMut,
    linker: &std::sync::Mutex<Linker>,
    group: &InstanceGroup,
    id: ModuleId,
    block: u32,
) -> Result<(), Error> {
    let Some(Some(instance)) = group.instances.get(id) else {
        return Ok(());
    };
    let Ok(init) = instance
        .exports
        .get_typed_function::<i32, ()>(store, "__wasm_init_tls")
    else {
        return Ok(());
    };
    init.call(store, block as i32).map_err(|e| Error::Trap {
        module: lock(linker).modules[id].name.clone(),
        function: "__wasm_init_tls".into(),
        reason: e.message(),
    })
}

/// Sets up the TLS block of each of `ids` in this thread with the module's own
/// `__wasix_init_tls` (which allocates it with the program's `aligned_alloc`). Runs guest
/// code: the thread must be marked busy and no lock held. Returns the blocks allocated, to
/// be freed when the module is unloaded or the thread ends.
pub fn init_tls(
    store: &mut impl AsStoreMut,
    linker: &std::sync::Mutex<Linker>,
    group: &InstanceGroup,
    ids: &[ModuleId],
) -> Result<Vec<(ModuleId, u32)>, Error> {
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
            blocks.push((id, block as u32));
        }
    }
    Ok(blocks)
}
