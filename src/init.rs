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

    /// Sets up the module's TLS block in this thread once more, where its start function
    /// put it: wasm-ld applies a module's relocations of its own thread-local addresses
    /// (`__wasm_apply_global_tls_relocs`, not exported) only from `__wasm_init_tls`, which
    /// the start function does not call. Nothing has used the block yet.
    fn init_tls_again(&self, store: &mut impl AsStoreMut) -> Result<(), Error> {
        let base = match self
            .instance
            .exports
            .get_global("__tls_base")
            .map(|g| g.get(store))
        {
            Ok(wasmer::Value::I32(base)) if base != 0 => base,
            _ => return Ok(()),
        };
        let Ok(init) = self
            .instance
            .exports
            .get_typed_function::<i32, ()>(store, "__wasm_init_tls")
        else {
            return Ok(());
        };
        init.call(store, base).map_err(|e| Error::Trap {
            module: self.name.clone(),
            function: "__wasm_init_tls".into(),
            reason: e.message(),
        })
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
        module.init_tls_again(store)?;
    }
    for module in modules.iter().filter(|m| m.id != 0) {
        module.call(store, "__wasm_call_ctors")?;
    }
    Ok(())
}
