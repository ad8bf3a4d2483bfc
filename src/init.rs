//! Initialising instantiated modules, in dependency order: data relocations of every module
//! (they only read GOT entries, which are final by now), then constructors of the libraries.
//! The main module's constructors run from its `_start` (the toolchain's crt1).

use wasmer::{AsStoreMut, Instance};

use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::scope::ModuleId;

/// Entry points run after instantiation, in this order, where a module exports them.
const RELOCATIONS: [&str; 3] = [
    "__wasm_apply_data_relocs",
    "__wasm_apply_tls_relocs",
    "__wasm_apply_global_tls_relocs",
];

fn call(
    store: &mut impl AsStoreMut,
    linker: &Linker,
    instance: &Instance,
    id: ModuleId,
    function: &str,
) -> Result<(), Error> {
    let Ok(f) = instance.exports.get_function(function) else {
        return Ok(());
    };
    f.call(store, &[]).map(drop).map_err(|e| Error::Trap {
        module: linker.modules[id].name.clone(),
        function: function.to_string(),
        reason: e.message(),
    })
}

/// Applies relocations of `ids`, then runs the constructors of those that are libraries.
pub fn initialize(
    store: &mut impl AsStoreMut,
    linker: &Linker,
    group: &InstanceGroup,
    ids: &[ModuleId],
) -> Result<(), Error> {
    for &id in ids {
        let instance = group.instances[id]
            .as_ref()
            .expect("instantiated before init");
        for function in RELOCATIONS {
            call(store, linker, instance, id, function)?;
        }
    }
    for &id in ids.iter().filter(|&&id| id != 0) {
        let instance = group.instances[id]
            .as_ref()
            .expect("instantiated before init");
        call(store, linker, instance, id, "__wasm_call_ctors")?;
    }
    Ok(())
}
