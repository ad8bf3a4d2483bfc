//! Which module, and which of its symbols, an address belongs to: `dladdr`. An address inside
//! a module's data region is data (the nearest data symbol at or below it); otherwise a
//! function pointer, which is a table slot (the function exported at that slot).

use std::cmp::Reverse;

use crate::linker::Linker;
use crate::scope::SymbolKind;

/// What `dladdr` reports.
#[derive(Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// The module's path (`dli_fname`).
    pub file: String,
    /// The start of its data (`dli_fbase`; where its `__dso_handle` is).
    pub base: u32,
    /// The symbol and its address (`dli_sname`, `dli_saddr`), if one is known.
    pub symbol: Option<(String, u32)>,
}

pub fn dladdr(linker: &Linker, addr: u32) -> Option<AddrInfo> {
    let alive = || (0..linker.modules.len()).filter(|&id| linker.modules[id].alive);
    let in_data = alive().find(|&id| {
        let base = linker.regions[id].memory_base;
        addr >= base && addr - base < linker.modules[id].info.memory_size
    });
    if let Some(id) = in_data {
        let module = &linker.modules[id];
        let base = linker.regions[id].memory_base;
        let symbol = (module.description.global_values.iter())
            .filter(|(name, _)| {
                matches!(
                    module.symbols.get(name).map(|s| &s.kind),
                    Some(SymbolKind::Data)
                )
            })
            .map(|(name, &offset)| (name, base.wrapping_add(offset)))
            .filter(|&(_, at)| at <= addr)
            .max_by_key(|&(name, at)| (at, Reverse(name)))
            .map(|(name, at)| (name.clone(), at));
        return Some(AddrInfo {
            file: file_of(linker, id),
            base,
            symbol,
        });
    }
    let (id, exported) = linker.slot_or_region_owner(addr)?;
    let module = &linker.modules[id];
    let name = exported.map(str::to_string).or_else(|| {
        let relative = addr - linker.regions[id].table_base;
        (module.description.own_slots.iter())
            .filter(|&(_, &slot)| slot == relative)
            .map(|(name, _)| name)
            .min()
            .cloned()
    });
    Some(AddrInfo {
        file: file_of(linker, id),
        base: linker.regions[id].memory_base,
        symbol: name.map(|name| (name, addr)),
    })
}

fn file_of(linker: &Linker, id: usize) -> String {
    let module = &linker.modules[id];
    match &module.path {
        Some(path) => path.display().to_string(),
        None => module.name.clone(),
    }
}
