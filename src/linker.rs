//! The process-wide link state — loaded modules, their regions, the global scope, and the one
//! table slot of every function whose address was taken (DESIGN decision 3) — and the start-up
//! sequence that loads a main module with its libraries into the first instance group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use wasmer::{AsStoreMut, Imports, Memory, MemoryType, Pages};

use crate::cache::Compiler;
use crate::describe::ImportKind;
use crate::error::Error;
use crate::group::InstanceGroup;
use crate::layout::{self, Layout, Region};
use crate::load::{self, GuestFs, LoadedModule};
use crate::plan;
use crate::rewrite::DirectCalls;
use crate::scope::{self, ModuleId, SymbolKind};
use crate::sync::LinkOp;

pub struct Linker {
    /// Compiles (through the module cache) every module loaded, and the generated ones.
    pub compiler: Compiler,
    /// Every loaded module; index = [`ModuleId`], 0 is the main module. An unloaded module
    /// stays (not alive) until its id is given to another.
    pub modules: Vec<LoadedModule>,
    pub regions: Vec<Region>,
    pub layout: Layout,
    /// Main, then its libraries breadth-first in load order.
    pub global_scope: Vec<ModuleId>,
    /// Table slot → (module, exported function) for every slot handed out.
    slot_owners: BTreeMap<u32, (ModuleId, String)>,
    /// The inverse of `slot_owners`, per module, looked up by `&str` without allocating.
    slots: HashMap<ModuleId, HashMap<String, u32>>,
    /// First table slot never handed out (functions' slots and dlopen'ed modules' regions).
    pub next_slot: u32,
    /// Open dlopen handles: handle value → (module, reference count). The value of a module's
    /// handle is its id + 1, so `0` stays `RTLD_DEFAULT`.
    pub handles: BTreeMap<u32, (ModuleId, u32)>,
    /// Modules loaded at start-up (ids below this) are never unloaded.
    pub startup_count: usize,
    /// Modules opened with RTLD_NODELETE.
    pub nodelete: BTreeSet<ModuleId>,
    /// Table slots given back by unloaded modules, reused before the table grows.
    free_slots: BTreeSet<u32>,
    /// Ids of unloaded modules, given to the next modules loaded (lowest first), so that a
    /// program that opens and closes libraries for ever keeps as many ids as it has open.
    free_ids: BTreeSet<ModuleId>,
    /// The last incarnation given to a module placed by [`Self::place`].
    incarnations: u64,
    /// Closed libraries kept for reopening (see [`crate::park`]), oldest first.
    pub parked: Vec<ModuleId>,
    /// Guest paths of libraries unloaded before: a later load of one keeps an image of it,
    /// so that it can be parked when it is closed again.
    pub unloaded_paths: std::collections::HashSet<std::path::PathBuf>,
    /// Slots of the runtime's own functions that the guest's libc finds through dlsym, in
    /// the order of [`crate::wasix::BUILTINS`] (empty until they are installed).
    pub builtins: Vec<u32>,
    /// The order every instance group instantiates the live modules in: a module is bound
    /// directly only to modules before it here, so that holds in every thread.
    pub order: Vec<ModuleId>,
    /// Every change to the set of modules or to the table since start-up, in order: what
    /// a thread applies to its group to catch up (see [`crate::sync`]).
    pub log: crate::sync::Log,
    /// `log.len()`, readable without the lock (the fast path of catching up).
    pub published: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The same number in guest memory, for the host-call wrappers and epoch checks.
    pub epoch: Option<crate::sync::RuntimeWords>,
}

/// The handle value of a module (its id + 1: `0` is `RTLD_DEFAULT`).
pub fn handle_of(id: ModuleId) -> u32 {
    id as u32 + 1
}

/// The main thread's stack size and the most 64 KiB pages the memory may grow to.
pub struct MemorySizes {
    pub stack_size: u32,
    pub max_pages: u32,
}

/// Where start-up looks for libraries.
pub struct SearchEnv<'a> {
    pub fs: &'a GuestFs,
    pub cwd: &'a Path,
    pub ld_library_path: &'a [String],
}

impl Linker {
    /// Looks `name` up in `scope` with ELF's rules.
    pub fn lookup(&self, scope: &[ModuleId], name: &str) -> Option<(ModuleId, SymbolKind)> {
        let found = scope::lookup(scope, |id| &self.modules[id].symbols, name);
        if tracing::enabled!(target: "wasix_dl::symbols", tracing::Level::DEBUG) {
            let names: Vec<&str> = scope
                .iter()
                .map(|&id| self.modules[id].name.as_str())
                .collect();
            let result = match &found {
                Some((id, _)) => self.modules[*id].name.as_str(),
                None => "not found",
            };
            tracing::debug!(target: "wasix_dl::symbols", "lookup `{name}` in [{}]: {result}", names.join(", "));
        }
        found
    }

    /// The one table slot of `provider`'s exported function `name`: where the module's own
    /// element segment put it, else a slot handed out now and kept for good.
    pub fn func_slot(&mut self, provider: ModuleId, name: &str) -> u32 {
        self.func_slot_new(provider, name).0
    }

    /// [`Self::func_slot`], and whether the slot was handed out just now (and so still has to
    /// be filled in every instance group).
    pub fn func_slot_new(&mut self, provider: ModuleId, name: &str) -> (u32, bool) {
        if let Some(&slot) = self.slots.get(&provider).and_then(|m| m.get(name)) {
            return (slot, false);
        }
        let slot = match self.modules[provider].description.own_slots.get(name) {
            Some(&relative) => self.regions[provider].table_base + relative,
            None => self.allocate_slots(1, 0),
        };
        self.publish(LinkOp::Slot(slot));
        self.slots
            .entry(provider)
            .or_default()
            .insert(name.to_string(), slot);
        self.slot_owners.insert(slot, (provider, name.to_string()));
        (slot, true)
    }

    /// Which module's function is in table slot `slot`, and its name when the linker handed
    /// the slot out for an exported function (else the module placed it itself).
    pub fn slot_or_region_owner(&self, slot: u32) -> Option<(ModuleId, Option<&str>)> {
        let owner = self.slot_owners.get(&slot);
        if let Some((id, name)) = owner.filter(|(id, _)| self.modules[*id].alive) {
            return Some((*id, Some(name)));
        }
        let id = (0..self.modules.len()).find(|&id| {
            let (base, size) = (
                self.regions[id].table_base,
                self.modules[id].info.table_size,
            );
            self.modules[id].alive && slot >= base && slot - base < size
        })?;
        Some((id, None))
    }

    /// `count` consecutive table slots aligned to 2^`align_log2`: freed ones first (first
    /// fit), else from the end of the table.
    pub fn allocate_slots(&mut self, count: u32, align_log2: u32) -> u32 {
        let align = 1u32 << align_log2.min(16);
        if count > 0 {
            let free: Vec<u32> = self.free_slots.iter().copied().collect();
            for &start in free.iter().filter(|s| *s % align == 0) {
                if (start..start + count).all(|s| self.free_slots.contains(&s)) {
                    for s in start..start + count {
                        self.free_slots.remove(&s);
                    }
                    return start;
                }
            }
        }
        let start = self.next_slot.next_multiple_of(align);
        self.next_slot = start + count;
        start
    }

    /// Which dynamically loaded modules can be unloaded now that `root`'s last handle is
    /// closed, in destructor order (dependents before what they depend on). Empty if `root`
    /// itself must stay: loaded at start-up, RTLD_NODELETE, a system library, or still needed
    /// by a module that stays.
    pub fn unload_set(&self, root: ModuleId) -> Vec<ModuleId> {
        let stays = |id: ModuleId| {
            id < self.startup_count
                || self.nodelete.contains(&id)
                || self.modules[id].stays_loaded()
        };
        if stays(root) {
            return Vec::new();
        }
        let referenced = |id: ModuleId| self.handles.values().any(|(h, n)| *h == id && *n > 0);
        // Greatest fixpoint: start with everything reachable, drop what must stay.
        let mut set: BTreeSet<ModuleId> = self
            .local_scope(root)
            .into_iter()
            .filter(|&id| self.modules[id].alive && !stays(id))
            .collect();
        loop {
            let keep: Vec<ModuleId> = set
                .iter()
                .copied()
                .filter(|&m| {
                    (m != root && referenced(m))
                        || self.modules.iter().enumerate().any(|(other, module)| {
                            module.alive
                                && !set.contains(&other)
                                && (module.needed.contains(&m) || module.bound_to.contains(&m))
                        })
                })
                .collect();
            if keep.is_empty() {
                break;
            }
            for m in keep {
                set.remove(&m);
            }
        }
        if !set.contains(&root) {
            return Vec::new();
        }
        let mut order = self.init_order(root, |id| set.contains(&id));
        order.reverse();
        order
    }

    /// The id the module at position `p` of a batch of new modules will get: unloaded
    /// modules' ids first, lowest first, then new ones.
    pub fn id_for_new(&self, p: usize) -> ModuleId {
        match self.free_ids.iter().nth(p) {
            Some(&id) => id,
            None => self.modules.len() + p - self.free_ids.len(),
        }
    }

    /// Registers `module`, placed at `region`, under `id` (from [`Self::id_for_new`]).
    pub fn place(&mut self, id: ModuleId, mut module: LoadedModule, region: Region) {
        self.free_ids.remove(&id);
        self.incarnations += 1;
        module.incarnation = self.incarnations;
        if id == self.modules.len() {
            self.modules.push(module);
            self.regions.push(region);
        } else {
            self.modules[id] = module;
            self.regions[id] = region;
        }
    }

    /// Takes an unloaded module out of every scope and the instantiation order.
    fn take_out(&mut self, id: ModuleId) {
        self.modules[id].alive = false;
        self.global_scope.retain(|&m| m != id);
        self.order.retain(|&m| m != id);
        self.nodelete.remove(&id);
        if let Some(path) = &self.modules[id].path {
            self.unloaded_paths.insert(path.clone());
        }
    }

    /// The table slots of module `id`: its own (its element segment's) and those handed out
    /// for its functions.
    fn slots_held(&self, id: ModuleId) -> Vec<u32> {
        let region = self.regions[id];
        let mut slots: Vec<u32> =
            (region.table_base..region.table_base + self.modules[id].info.table_size).collect();
        slots.extend(self.slots_of(id));
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Parks a closed module (see [`crate::park`]): out of every scope, but its id, region,
    /// table slots, symbols and plan kept for a reopening. Returns its slots, to be saved
    /// and nulled in every instance group.
    pub fn park(&mut self, id: ModuleId) -> Vec<u32> {
        let module = &self.modules[id];
        let links = (module.needed.iter().chain(&module.bound_to))
            .map(|&m| self.current(m))
            .collect();
        self.modules[id].links = links;
        self.take_out(id);
        self.parked.push(id);
        self.slots_held(id)
    }

    /// Forgets an unloaded or parked module: out of every scope, its symbols gone, its
    /// table slots and its id free again. Returns those slots, to be nulled in every
    /// instance group.
    pub fn forget(&mut self, id: ModuleId) -> Vec<u32> {
        self.take_out(id);
        self.parked.retain(|&m| m != id);
        let module = &mut self.modules[id];
        module.symbols = Default::default();
        module.plan = None;
        module.image = None;
        let slots = self.slots_held(id);
        for slot in &slots {
            self.slot_owners.remove(slot);
        }
        self.slots.remove(&id);
        self.free_ids.insert(id);
        self.free_slots.extend(slots.iter().copied());
        slots
    }

    /// The parked modules whose instances are bound to one of `ids`, directly or through
    /// other parked modules: they cannot be used again once `ids` are gone.
    pub fn parked_bound_to(&self, ids: &[ModuleId]) -> Vec<ModuleId> {
        let mut gone: Vec<ModuleId> = ids.to_vec();
        let mut found = Vec::new();
        loop {
            let more: Vec<ModuleId> = (self.parked.iter().copied())
                .filter(|p| !gone.contains(p))
                .filter(|&p| self.modules[p].links.iter().any(|(m, _)| gone.contains(m)))
                .collect();
            if more.is_empty() {
                return found;
            }
            gone.extend(&more);
            found.extend(more);
        }
    }

    pub fn slot_owner(&self, slot: u32) -> Option<(ModuleId, &str)> {
        self.slot_owners
            .get(&slot)
            .map(|(id, name)| (*id, name.as_str()))
    }

    /// Slots handed out for functions of `provider`, in slot order.
    pub fn slots_of(&self, provider: ModuleId) -> Vec<u32> {
        self.slot_owners
            .iter()
            .filter(|(_, (id, _))| *id == provider)
            .map(|(slot, _)| *slot)
            .collect()
    }

    /// Initialisation order of `root` and what it needs, among the modules `among` accepts:
    /// dependencies before the modules that need them (depth-first post-order over `needed`;
    /// cycles are broken where first seen).
    pub fn init_order(&self, root: ModuleId, among: impl Fn(ModuleId) -> bool) -> Vec<ModuleId> {
        fn visit(linker: &Linker, id: ModuleId, seen: &mut [bool], out: &mut Vec<ModuleId>) {
            if std::mem::replace(&mut seen[id], true) {
                return;
            }
            for &dep in &linker.modules[id].needed {
                visit(linker, dep, seen, out);
            }
            out.push(id);
        }
        let mut seen: Vec<bool> = (0..self.modules.len()).map(|id| !among(id)).collect();
        let mut out = Vec::new();
        visit(self, root, &mut seen, &mut out);
        out
    }

    /// The local scope of `root`: it and its dependencies, breadth-first.
    pub fn local_scope(&self, root: ModuleId) -> Vec<ModuleId> {
        let mut scope = vec![root];
        let mut next = 0;
        while next < scope.len() {
            for &dep in &self.modules[scope[next]].needed {
                if !scope.contains(&dep) {
                    scope.push(dep);
                }
            }
            next += 1;
        }
        scope
    }

    /// Module `id` as it is now (id and incarnation).
    pub fn current(&self, id: ModuleId) -> (ModuleId, u64) {
        (id, self.modules[id].incarnation)
    }

    /// The module loaded from canonical guest path `path`, if any.
    pub fn by_path(&self, path: &Path) -> Option<ModuleId> {
        self.modules
            .iter()
            .position(|m| m.alive && m.path.as_deref() == Some(path))
    }

    /// A loaded module by its path or by a bare name it was requested as.
    pub fn known(&self, known: load::Known) -> Option<ModuleId> {
        match known {
            load::Known::Path(path) => self.by_path(path),
            load::Known::Name(name) => (self.modules.iter())
                .position(|m| m.alive && m.requested_as.iter().any(|n| n == name)),
        }
    }

    /// Appends `op` to the log and makes it visible to every thread.
    pub fn publish(&mut self, op: LinkOp) {
        self.log.push(op);
        self.published
            .store(self.log.len(), std::sync::atomic::Ordering::Release);
        if let Some(words) = &self.epoch {
            words.publish_epoch(self.log.len());
        }
    }
}

/// Compiles main in its link form (see [`crate::rewrite`]), with its calls to its libraries'
/// functions made `call_indirect` through their slots: main is compiled once, as it will run.
fn compile_main(linker: &mut Linker, compiler: &Compiler, bytes: &[u8]) -> Result<(), Error> {
    let main = &linker.modules[0].description;
    let env_functions: Vec<(u32, u32, String)> = main
        .imports
        .iter()
        .filter_map(|import| match import.kind {
            ImportKind::Func { index, type_index } if import.module == "env" => {
                Some((index, type_index, import.field.clone()))
            }
            _ => None,
        })
        .collect();
    let scope = linker.global_scope.clone();
    let mut calls = DirectCalls::new();
    for (index, type_index, field) in env_functions {
        if let Some((provider, SymbolKind::Function(_))) = linker.lookup(&scope, &field) {
            if provider != 0 {
                calls.insert(index, (type_index, linker.func_slot(provider, &field)));
            }
        }
    }
    let main = &linker.modules[0];
    tracing::debug!(
        target: "wasix_dl::bindings",
        "{}: calls to {} library functions made direct (call_indirect)",
        main.name,
        calls.len()
    );
    let module = load::compile_link_form(compiler, &main.name, bytes, &main.description, &calls)?;
    linker.modules[0].module = Some(module);
    Ok(())
}

/// ELF interposition of a library's calls to its own functions: wasm-ld binds a library's
/// calls to the functions it defines directly, but when an earlier module of its lookup
/// `scope` (main, an earlier library) defines an exported function too, glibc's library
/// calls that definition. Such a library is compiled again in a link form whose direct calls
/// to those functions are `call_indirect` through the interposer's slot. Libraries nobody
/// interposes keep the form they were compiled in and pay nothing.
pub fn interpose(
    linker: &mut Linker,
    fs: &GuestFs,
    id: ModuleId,
    scope: &[ModuleId],
) -> Result<(), Error> {
    let defined = linker.modules[id].description.defined_functions.clone();
    let mut calls = DirectCalls::new();
    for (name, index, type_index) in defined {
        match linker.lookup(scope, &name) {
            Some((provider, SymbolKind::Function(_))) if provider != id => {
                calls.insert(index, (type_index, linker.func_slot(provider, &name)));
            }
            _ => {}
        }
    }
    let module = &linker.modules[id];
    let Some(path) = module.path.clone().filter(|_| !calls.is_empty()) else {
        return Ok(());
    };
    tracing::debug!(
        target: "wasix_dl::bindings",
        "{}: its calls to {} of its functions that earlier modules define go to those",
        module.name,
        calls.len()
    );
    let bytes = fs.read(&path).map_err(|reason| Error::LibraryRead {
        library: module.name.clone(),
        reason,
    })?;
    let compiled = load::compile_link_form(
        &linker.compiler,
        &module.name,
        &bytes,
        &module.description,
        &calls,
    )?;
    linker.modules[id].module = Some(compiled);
    linker.modules[id].interposed = true;
    Ok(())
}

/// Whether [`interpose`] would compile module `id` again against `scope`: an earlier module
/// of it defines an exported function that `id` defines too.
pub fn is_interposed(linker: &Linker, id: ModuleId, scope: &[ModuleId]) -> bool {
    let defined = &linker.modules[id].description.defined_functions;
    defined.iter().any(|(name, _, _)| {
        matches!(linker.lookup(scope, name), Some((provider, SymbolKind::Function(_))) if provider != id)
    })
}

/// What the main thread's modules get besides each other: WASI/WASIX with ours, and the
/// function for its catch-up slot.
pub struct ThreadImports {
    pub wasi: Imports,
    pub catch_up: wasmer::Function,
}

/// Loads `main` and, breadth-first, every library it needs; lays them out; creates the first
/// instance group and instantiates every module in it with all imports and GOT entries bound.
/// Relocations and constructors are left to [`crate::init`].
pub fn start<S: AsStoreMut>(
    store: &mut S,
    compiler: &Compiler,
    main: LoadedModule,
    main_bytes: &[u8],
    search: &SearchEnv,
    sizes: MemorySizes,
    thread: impl FnOnce(&mut S, &Memory) -> Result<ThreadImports, Error>,
) -> Result<(Linker, InstanceGroup, Imports), Error> {
    let mut modules = vec![main];
    load::load_needed(
        compiler,
        search.fs,
        &mut modules,
        &|p| p,
        &|_| None,
        search.cwd,
        search.ld_library_path,
    )?;
    let described: Vec<(&str, &crate::dylink::DylinkInfo)> =
        modules.iter().map(|m| (m.name.as_str(), &m.info)).collect();
    let MemorySizes {
        stack_size,
        max_pages,
    } = sizes;
    let layout = layout::startup_layout(&described, stack_size)?;

    // At least what each module declares, so every module's own minimum is satisfied.
    let declared_pages = modules
        .iter()
        .map(|m| m.description.memory_minimum_pages())
        .max()
        .unwrap_or(0);
    let pages = u64::from(layout.initial_pages).max(declared_pages);
    let pages = u32::try_from(pages)
        .ok()
        .filter(|&p| p <= 65536)
        .ok_or_else(|| Error::Layout {
            module: modules[0].name.clone(),
            reason: format!(
                "a module asks for a memory of at least {pages} pages (4 GiB is 65536)"
            ),
        })?;
    if pages > max_pages {
        return Err(Error::Layout {
            module: modules[0].name.clone(),
            reason: format!(
                "the program needs {} MiB of memory at start, more than its limit of {} MiB",
                u64::from(pages) * 64 / 1024,
                u64::from(max_pages) * 64 / 1024
            ),
        });
    }
    let memory = Memory::new(
        store,
        MemoryType::new(Pages(pages), Some(Pages(max_pages)), true),
    )
    .map_err(|e| Error::Layout {
        module: modules[0].name.clone(),
        reason: format!("cannot create a memory of {pages} pages: {e}"),
    })?;
    let ThreadImports { wasi, catch_up } = thread(store, &memory)?;
    let mut group = InstanceGroup::new(store, memory, layout.stack_high, catch_up)?;

    for (module, region) in modules.iter().zip(&layout.regions) {
        tracing::debug!(
            target: "wasix_dl::libs",
            "{}: memory_base {:#x} ({} bytes), table_base {} ({} slots)",
            module.name, region.memory_base, module.info.memory_size, region.table_base,
            module.info.table_size
        );
    }
    let count = modules.len();
    let mut linker = Linker {
        compiler: compiler.clone(),
        regions: layout.regions.clone(),
        next_slot: layout.table_end,
        layout,
        global_scope: (0..count).collect(),
        modules,
        slot_owners: BTreeMap::new(),
        slots: HashMap::new(),
        handles: BTreeMap::from([(handle_of(0), (0, 1))]),
        startup_count: count,
        nodelete: BTreeSet::new(),
        free_slots: BTreeSet::new(),
        free_ids: BTreeSet::new(),
        incarnations: 0,
        parked: Vec::new(),
        unloaded_paths: Default::default(),
        builtins: Vec::new(),
        order: Vec::new(),
        log: Default::default(),
        published: Default::default(),
        epoch: Some(crate::sync::RuntimeWords::new(store, &group.memory)?),
    };
    // Main first, then libraries deepest first: calls into an instantiated module are direct;
    // main's calls into its libraries become call_indirect through the callee's slot (the
    // rewrite below); what remains (cycles between libraries, address-taken imports) goes
    // through trampolines.
    compile_main(&mut linker, compiler, main_bytes)?;
    let scope = linker.global_scope.clone();
    for id in 1..count {
        interpose(&mut linker, search.fs, id, &scope)?;
    }
    for id in std::iter::once(0).chain((1..count).rev()) {
        plan::plan(&mut linker, id, &scope)?;
    }
    for id in linker.order.clone() {
        group.instantiate(store, &linker, id, &wasi)?;
    }
    group.bind_tls_got(store)?;
    Ok((linker, group, wasi))
}
