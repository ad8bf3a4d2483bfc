//! What a trap report says: wasmer's message and the wasm backtrace, and for an indirect call
//! whose type does not match its callee, which function the table slot held and both types
//! (wasmer says only "indirect call type mismatch"). The link form records every
//! `call_indirect`'s slot in a global and every call site's type in a custom section
//! (see [`crate::rewrite`]).

use std::sync::Arc;

use wasmer::{FunctionEnv, Instance, RuntimeError, Store, Value};
use wasmer_types::TrapCode;

use crate::linker::Linker;
use crate::open::DlState;
use crate::rewrite::{call_site_type, CALLEE_GLOBAL, CALL_SITES_SECTION};

/// The report of a trap. With the trapping thread's store and state, a type mismatch names
/// the callee.
pub fn describe_trap(
    err: &RuntimeError,
    thread: Option<(&mut Store, &FunctionEnv<DlState>)>,
) -> String {
    let mut out = err.message();
    if let Some((store, env)) = thread {
        if err.clone().to_trap() == Some(TrapCode::BadSignature) {
            if let Some(detail) = type_mismatch(err, store, env) {
                out.push_str(": ");
                out.push_str(&detail);
            }
        }
    }
    for frame in err.trace() {
        let func = frame
            .function_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("<function {}>", frame.func_index()));
        out.push_str(&format!("\n    at {func} ({})", frame.module_name()));
    }
    out
}

/// "the call expects T1, but table slot N holds `f` of M, T2".
fn type_mismatch(
    err: &RuntimeError,
    store: &mut Store,
    env: &FunctionEnv<DlState>,
) -> Option<String> {
    let frame = err.trace().first()?;
    let offset = u32::try_from(frame.module_offset()).ok()?;
    let (instances, table, linker) = {
        let loaded = env.as_ref(store).loaded.as_ref()?;
        let group = &loaded.group;
        (
            group.instances.clone(),
            group.table.clone(),
            loaded.linker.clone(),
        )
    };
    // The trapping module: the instance of that name with a call site at that offset.
    let (instance, type_index) = instances.iter().flatten().find_map(|instance| {
        let module = instance.module();
        if module.name() != Some(frame.module_name()) {
            return None;
        }
        let ty = module
            .custom_sections(CALL_SITES_SECTION)
            .find_map(|section| call_site_type(&section, offset))?;
        Some((instance, ty))
    })?;
    let expected = instance
        .module()
        .info()
        .signatures
        .values()
        .nth(type_index as usize)?;
    let slot = instance
        .exports
        .get_global(CALLEE_GLOBAL)
        .ok()?
        .get(store)
        .i32()? as u32;
    let held = match table.get(store, slot) {
        Some(Value::FuncRef(Some(f))) => {
            // A trap inside dlopen may come while this thread holds the linker: no name then.
            let linker = linker.try_lock();
            let owner = (linker.as_deref())
                .map(|l| owner(l, &instances, slot))
                .unwrap_or_default();
            format!("{owner}{}", f.ty(store))
        }
        _ => "no function".to_string(),
    };
    Some(format!(
        "the call expects {expected}, but table slot {slot} holds {held}"
    ))
}

/// "`name` of MODULE, " for the function in `slot`, as far as the linker knows it.
fn owner(linker: &Linker, instances: &[Option<Arc<Instance>>], slot: u32) -> String {
    let Some((id, exported)) = linker.slot_or_region_owner(slot) else {
        return String::new();
    };
    let module = &linker.modules[id];
    let name = exported.map(str::to_string).or_else(|| {
        // A function the module placed itself: its name from the module's name section.
        let relative = slot - linker.regions[id].table_base;
        let func = *module.description.placed.get(&relative)?;
        let compiled = instances.get(id)?.as_ref()?.module();
        let names = &compiled.info().function_names;
        names
            .iter()
            .find(|(index, _)| index.as_u32() == func)
            .map(|(_, name)| name.clone())
            .or_else(|| Some(format!("function {func}")))
    });
    match name {
        Some(name) => format!("`{name}` of {}, ", module.name),
        None => format!("a function of {}, ", module.name),
    }
}
