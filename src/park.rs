//! Closed libraries kept for reopening. A wasmer Store keeps every instance it ever made until
//! the program ends, so a program that opens and closes libraries for ever would grow for ever
//! if every open made new instances. So a library whose file was unloaded before in this
//! process keeps an *image* of its memory as its start function left it, taken when it is
//! loaded; closing it then *parks* it instead of forgetting it: its destructors run, it leaves
//! every scope and handle, its table slots are emptied in every thread, but its id, memory
//! region, slots and every thread's instance stay. Opening the same file again *revives* it
//! when it would be linked exactly as before (the file unchanged, what its instances are
//! bound to still there, the same plan against today's scope): the image copied back, the
//! instances and slots put back, then relocations, TLS blocks and constructors as for a new
//! load — what the program sees is a new load. Otherwise it is forgotten and the file loaded
//! anew. Parked libraries beyond [`MAX_PARKED`] or [`MAX_PARKED_BYTES`] are forgotten, oldest
//! first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmer::{AsStoreMut, AsStoreRef, FunctionEnvMut, Value};

use crate::catchup;
use crate::describe::Description;
use crate::error::Error;
use crate::group::InstanceGroup;
use crate::init::{self, ToInit};
use crate::linker::{self, Linker};
use crate::load;
use crate::open::{self, lock, DlState, ProcessState};
use crate::plan;
use crate::scope::ModuleId;
use crate::sync::LinkOp;

/// At most this many libraries stay parked...
const MAX_PARKED: usize = 32;
/// ... holding at most this much guest memory (their regions and images).
const MAX_PARKED_BYTES: u64 = 64 << 20;

/// Copies `len` bytes within guest memory with the program's own `memcpy` (`memory.copy`:
/// a copy from the host goes through wasmer's volatile byte copy, ten times slower).
fn guest_memcpy(
    ctx: &mut FunctionEnvMut<DlState>,
    group: &InstanceGroup,
    dst: u32,
    src: u32,
    len: u32,
) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    let main = group.instances[0].clone().expect("main is instantiated");
    let memcpy = main
        .exports
        .get_typed_function::<(i32, i32, i32), i32>(&ctx.as_store_ref(), "memcpy")
        .map_err(|e| Error::Dl {
            message: format!("the main module exports no usable memcpy: {e}"),
        })?;
    memcpy
        .call(&mut ctx.as_store_mut(), dst as i32, src as i32, len as i32)
        .map(drop)
        .map_err(|e| Error::Dl {
            message: format!("memcpy trapped: {}", e.message()),
        })
}

/// The value of `instance`'s i32 global `name` (0 if it has none).
fn global_i32(store: &mut impl AsStoreMut, instance: &wasmer::Instance, name: &str) -> u32 {
    match instance.exports.get_global(name).map(|g| g.get(store)) {
        Ok(Value::I32(v)) => v as u32,
        _ => 0,
    }
}

/// Keeps an image of each of `ids` (just instantiated in `group`: their start functions have
/// run, their relocations and constructors not yet) whose file was unloaded before in this
/// process, so that it can be parked when it is closed. One that cannot have the memory for
/// it is simply not parked.
pub fn take_images(
    ctx: &mut FunctionEnvMut<DlState>,
    linker: &Mutex<Linker>,
    group: &InstanceGroup,
    ids: &[ModuleId],
) {
    let wanted: Vec<(ModuleId, u32, u32, u32)> = {
        let linker = lock(linker);
        let reopened = |id: ModuleId| {
            let module = &linker.modules[id];
            let path = module.path.as_ref();
            !module.interposed && path.is_some_and(|p| linker.unloaded_paths.contains(p))
        };
        (ids.iter().copied().filter(|&id| reopened(id)))
            .map(|id| {
                let info = &linker.modules[id].info;
                let base = linker.regions[id].memory_base;
                (id, base, info.memory_size, info.memory_align_log2)
            })
            .collect()
    };
    for (id, base, size, align_log2) in wanted {
        let image = match size {
            0 => 0,
            _ => match open::allocate_uncleared(ctx, group, size, align_log2) {
                Ok(image) => image,
                Err(_) => continue,
            },
        };
        if guest_memcpy(ctx, group, image, base, size).is_err() {
            open::free_all(ctx, group, &[image]);
            continue;
        }
        let Some(Some(instance)) = group.instances.get(id).cloned() else {
            continue;
        };
        let tls_base = global_i32(ctx, &instance, "__tls_base");
        lock(linker).modules[id].image = Some((image, tls_base));
    }
}

/// After the destructors of `unload` (an unload set, see [`Linker::unload_set`]) ran: parks
/// those that have an image and whose instances are bound only to modules that stay or are
/// parked with them, forgets the others, then forgets the oldest parked beyond the budget.
pub fn close(ctx: &mut FunctionEnvMut<DlState>, linker_arc: &Mutex<Linker>, unload: &[ModuleId]) {
    let park: Vec<ModuleId> = {
        let linker = lock(linker_arc);
        let mut park: Vec<ModuleId> = (unload.iter().copied())
            .filter(|&id| linker.modules[id].image.is_some())
            .collect();
        loop {
            let kept: Vec<ModuleId> = (park.iter().copied())
                .filter(|&id| {
                    let module = &linker.modules[id];
                    (module.needed.iter().chain(&module.bound_to))
                        .all(|m| !unload.contains(m) || park.contains(m))
                })
                .collect();
            if kept.len() == park.len() {
                break park;
            }
            park = kept;
        }
    };
    let forget: Vec<ModuleId> = (unload.iter().copied())
        .filter(|id| !park.contains(id))
        .collect();
    if !park.is_empty() {
        park_modules(ctx, linker_arc, &park);
    }
    if !forget.is_empty() {
        open::release(ctx, linker_arc, &forget);
    }
    loop {
        let oldest = {
            let linker = lock(linker_arc);
            let bytes: u64 = (linker.parked.iter())
                .map(|&id| 2 * u64::from(linker.modules[id].info.memory_size))
                .sum();
            if linker.parked.len() <= MAX_PARKED && bytes <= MAX_PARKED_BYTES {
                return;
            }
            linker.parked[0]
        };
        open::release(ctx, linker_arc, &[oldest]);
    }
}

/// Parks `ids` in the link state and in this thread's group, and publishes it for the others.
fn park_modules(ctx: &mut FunctionEnvMut<DlState>, linker_arc: &Mutex<Linker>, ids: &[ModuleId]) {
    let Ok((_, mut group, _)) = open::loaded(ctx) else {
        return;
    };
    let modules = {
        let mut linker = lock(linker_arc);
        let modules: Vec<((ModuleId, u64), Vec<u32>)> = (ids.iter())
            .map(|&id| (linker.current(id), linker.park(id)))
            .collect();
        linker.publish(LinkOp::Park {
            modules: modules.clone(),
        });
        modules
    };
    group.park(ctx, &modules);
    open::set_instances(ctx, &group);
    let process = ctx.data().process.clone();
    catchup::give_back_tls(ctx, &process, ids);
    open::take_back_prepared_tls(ctx, &process, ids);
    crate::thread::free_dead_tls_blocks(ctx);
}

/// The parked modules that reviving `root` takes (it and the parked modules its instances
/// are bound to), or `None` if one of the modules they are bound to is gone since.
fn bound_set(linker: &Linker, root: ModuleId) -> Option<Vec<ModuleId>> {
    let mut set = vec![root];
    let mut next = 0;
    while next < set.len() {
        for &(id, incarnation) in &linker.modules[set[next]].links {
            let module = &linker.modules[id];
            if module.incarnation != incarnation || !(module.alive || linker.parked.contains(&id)) {
                return None;
            }
            if !module.alive && !set.contains(&id) {
                set.push(id);
            }
        }
        next += 1;
    }
    Some(set)
}

/// Library files (guest path) as a load found them.
type Files = Vec<(PathBuf, Arc<Description>)>;
/// Images to copy back: (region, image, size).
type Images = Vec<(u32, u32, u32)>;

/// Opens the parked library at `found` again (requested as `requested`, with dlopen's
/// `flags`) if it would be linked exactly as before. `None` if there is none, or it cannot
/// be (then it is forgotten and the caller loads the file anew).
pub fn revive(
    ctx: &mut FunctionEnvMut<DlState>,
    process: &ProcessState,
    found: &Path,
    requested: &str,
    flags: u32,
) -> Result<Option<u32>, Error> {
    let (linker_arc, mut group, wasi) = open::loaded(ctx)?;
    // The modules to revive, their files as they were, and where their images go.
    let (root, set, files, images): (ModuleId, Vec<ModuleId>, Files, Images) = {
        let linker = lock(&linker_arc);
        let parked = linker.parked.iter().copied();
        let Some(root) = parked
            .clone()
            .find(|&id| linker.modules[id].path.as_deref() == Some(found))
        else {
            return Ok(None);
        };
        let Some(set) = bound_set(&linker, root) else {
            drop(linker);
            open::release(ctx, &linker_arc, &[root]);
            return Ok(None);
        };
        let files = (set.iter())
            .filter_map(|&id| {
                let module = &linker.modules[id];
                Some((module.path.clone()?, module.description.clone()))
            })
            .collect();
        let images = (set.iter())
            .filter_map(|&id| {
                let (image, _) = linker.modules[id].image?;
                let size = linker.modules[id].info.memory_size;
                Some((linker.regions[id].memory_base, image, size))
            })
            .collect();
        (root, set, files, images)
    };
    let unchanged = (files.iter()).all(|(path, description)| {
        load::unchanged(&process.compiler, &process.fs, path, description)
    });
    if !unchanged || images.len() != set.len() {
        open::release(ctx, &linker_arc, &[root]);
        return Ok(None);
    }
    for &(base, image, size) in &images {
        if let Err(e) = guest_memcpy(ctx, &group, base, image, size) {
            open::release(ctx, &linker_arc, &set);
            return Err(e);
        }
    }

    // Planned again against the scope as it is now: revived only if bound as before.
    let result = (|| {
        let mut linker = lock(&linker_arc);
        for &id in &set {
            linker.modules[id].alive = true;
            linker.parked.retain(|&m| m != id);
        }
        if !requested.contains('/')
            && !linker.modules[root]
                .requested_as
                .iter()
                .any(|n| n == requested)
        {
            linker.modules[root]
                .requested_as
                .push(requested.to_string());
        }
        let mut scope = linker.global_scope.clone();
        for id in linker.local_scope(root) {
            if !scope.contains(&id) {
                scope.push(id);
            }
        }
        let planned = linker.order.len();
        for &id in set.iter().rev() {
            if linker::is_interposed(&linker, id, &scope)
                || !plan::unchanged(&mut linker, id, &scope)?
            {
                return Ok(None);
            }
        }
        let revived: Vec<ModuleId> = linker.order[planned..].to_vec();
        for id in revived {
            let instance = group.restore_or_instantiate(ctx, &linker, id, &wasi)?;
            // This thread's TLS block is the one in the module's region, as after a load.
            let tls_base = linker.modules[id].image.map_or(0, |(_, base)| base);
            if let Ok(global) = instance.exports.get_global("__tls_base") {
                let _ = global.set(ctx, Value::I32(tls_base as i32));
            }
        }
        group.bind_tls_got(ctx)?;
        let order = linker.init_order(root, |id| set.contains(&id));
        Ok(Some(ToInit::list(&linker, &group, &order)))
    })();
    open::set_instances(ctx, &group);
    let to_init = match result {
        Ok(Some(to_init)) => to_init,
        Ok(None) => {
            open::release(ctx, &linker_arc, &set);
            return Ok(None);
        }
        Err(e) => {
            open::release(ctx, &linker_arc, &set);
            return Err(e);
        }
    };
    if let Err(e) = init::initialize(ctx, &to_init) {
        open::release(ctx, &linker_arc, &set);
        return Err(e);
    }
    open::prepare_tls(ctx, process, &group, &set);
    tracing::debug!(target: "wasix_dl::libs", "{}: reopened as it was parked", found.display());
    Ok(Some(open::finish_open(&linker_arc, root, &set, flags)))
}
