//! How the other threads learn about loads, unloads and new table slots: the link state
//! keeps an append-only log of them ([`crate::linker::Linker::log`]) and every host call a
//! guest makes first brings its thread's instance group up to date ([`catch_up`]): new
//! modules instantiated from their plans with this thread's TLS blocks, new slots filled,
//! unloaded modules' slots nulled. The fast path is one atomic load. A thread that runs wasm
//! without host calls sees a new library at its next host call (the rendezvous, which makes
//! `dlopen` wait for such threads, is a later step).

use std::sync::atomic::Ordering;

use wasmer::{AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError};

use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::open::{lock, DlState};
use crate::scope::ModuleId;

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

/// Wraps every function of `imports` so that it catches up before it runs and before it
/// returns to wasm (one atomic load each when nothing changed). A failure to catch up is a trap naming what went wrong.
pub fn wrap_imports(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
) {
    let functions: Vec<(String, String, Function)> = imports
        .iter()
        .filter_map(|(ns, field, ext)| match ext {
            Extern::Function(f) => Some((ns.to_string(), field.to_string(), f.clone())),
            _ => None,
        })
        .collect();
    for (ns, field, inner) in functions {
        let ty = inner.ty(store);
        let wrapper = Function::new_with_env(store, env, ty, move |mut ctx, args| {
            let fail = |e: Error| RuntimeError::new(format!("catching up with the linker: {e}"));
            catch_up(&mut ctx).map_err(fail)?;
            let results = inner.call(&mut ctx, args)?;
            // Again on the way back: the call may have blocked while another thread loaded.
            catch_up(&mut ctx).map_err(fail)?;
            Ok(results.into_vec())
        });
        imports.define(&ns, &field, wrapper);
    }
}
