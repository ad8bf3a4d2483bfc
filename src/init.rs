//! Initialising instantiated modules, in dependency order: data relocations of every module
//! (they only read GOT entries, which are final by now), then constructors of the libraries.
//! The main module's constructors run from its `_start` (the toolchain's crt1).

use std::sync::Arc;

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

/// A module to initialise: its id, its name for messages and its instance.
pub struct ToInit {
    pub id: ModuleId,
    pub name: String,
    pub instance: Arc<Instance>,
}

impl ToInit {
    /// `ids` of `linker`, instantiated in `group`, in the given order.
    pub fn list(linker: &Linker, group: &InstanceGroup, ids: &[ModuleId]) -> Vec<ToInit> {
        ids.iter()
            .map(|&id| ToInit {
                id,
                name: linker.modules[id].name.clone(),
                instance: group.instances[id]
                    .clone()
                    .expect("instantiated before init"),
            })
            .collect()
    }

    fn call(&self, store: &mut impl AsStoreMut, function: &str) -> Result<(), Error> {
        let Ok(f) = self.instance.exports.get_function(function) else {
            return Ok(());
        };
        f.call(store, &[]).map(drop).map_err(|e| Error::Trap {
            module: self.name.clone(),
            function: function.to_string(),
            reason: e.message(),
        })
    }
}

/// Applies the relocations of `modules`, then runs the constructors of those that are
/// libraries. Runs guest code: no lock may be held (a constructor may call dlopen).
pub fn initialize(store: &mut impl AsStoreMut, modules: &[ToInit]) -> Result<(), Error> {
    for module in modules {
        for function in RELOCATIONS {
            module.call(store, function)?;
        }
    }
    for module in modules.iter().filter(|m| m.id != 0) {
        module.call(store, "__wasm_call_ctors")?;
    }
    Ok(())
}
