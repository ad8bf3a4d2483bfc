//! Loading: finding a library in the guest's file system (through [`crate::search`]), reading
//! it, checking that it is a shared library, compiling it, and describing what it offers.
//! Nothing here touches a Store: a [`LoadedModule`] can be instantiated in any thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtual_fs::FileSystem;
use wasmer::Module;

use crate::cache::Compiler;
use crate::describe::{self, Description};
use crate::dylink::{self, DylinkInfo};
use crate::error::Error;
use crate::rewrite::{self, DirectCalls};
use crate::scope::{ModuleId, SymbolTable};
use crate::search::{self, Requester, SearchContext};

/// A module of the program, compiled and described, not yet placed.
pub struct LoadedModule {
    /// What messages call it: the guest path (or the host path of a main outside the sandbox).
    pub name: String,
    /// Canonical guest path: what identifies a library. `None` for a main module that is not
    /// inside a mapped directory (it then has no `$ORIGIN`).
    pub path: Option<PathBuf>,
    pub info: DylinkInfo,
    /// The compiled module; `None` only for the main module until [`crate::linker::start`]
    /// has planned the link and compiled main in its final form.
    pub module: Option<Module>,
    /// Shared with every later load of the same file (see [`Compiler::opened`]).
    pub description: Arc<Description>,
    pub symbols: Arc<SymbolTable>,
    /// Libraries this one needs, resolved, in `needed` order.
    pub needed: Vec<ModuleId>,
    /// Other modules this one bound symbols from (besides `needed`): it keeps them loaded.
    pub bound_to: std::collections::BTreeSet<ModuleId>,
    /// False once unloaded by dlclose (its id then goes to the next module loaded).
    pub alive: bool,
    /// Which of the modules that had this id it is (0 for the modules of start-up, which
    /// stay): what a thread's instance of the id is checked against.
    pub incarnation: u64,
    /// Guest address of a copy of its memory as its start function left it (before
    /// relocations and constructors), and its first instance's `__tls_base` then: what lets
    /// it be parked when closed (see [`crate::park`]).
    pub image: Option<(u32, u32)>,
    /// Whether its code was compiled again for interposition (see
    /// [`crate::linker::interpose`]): its form then depends on the scope, it is not parked.
    pub interposed: bool,
    /// What its instances are bound to (`needed` and `bound_to`, each with its
    /// incarnation), recorded when it is parked.
    pub links: Vec<(ModuleId, u64)>,
    /// How each import is bound; made when the module is linked (see [`crate::plan`]).
    pub plan: Option<crate::plan::LinkPlan>,
    /// The bare names it was asked for by (`needed` entries, `dlopen` arguments without a
    /// slash): a later request by one of them is this module, without a search (ld.so
    /// matches the names of loaded objects first).
    pub requested_as: Vec<String>,
}

impl LoadedModule {
    /// Libraries of the system library directory stay loaded once loaded, as glibc keeps
    /// libstdc++ (its unique symbols make it NODELETE): the C++ runtime leaves thread-specific
    /// data destructors and exit handlers behind that would otherwise point into freed code.
    pub fn stays_loaded(&self) -> bool {
        self.path
            .as_deref()
            .is_some_and(|p| p.starts_with(crate::fs::SYSTEM_LIBS_GUEST))
    }

    /// The module as it was right after it was compiled: not linked, not loaded yet.
    pub fn fresh_copy(&self) -> LoadedModule {
        LoadedModule {
            name: self.name.clone(),
            path: self.path.clone(),
            info: self.info.clone(),
            module: self.module.clone(),
            description: self.description.clone(),
            symbols: self.symbols.clone(),
            needed: Vec::new(),
            bound_to: Default::default(),
            alive: true,
            incarnation: 0,
            image: None,
            interposed: false,
            links: Vec::new(),
            plan: None,
            requested_as: Vec::new(),
        }
    }

    /// Describes a dynamically linked module from its bytes.
    pub fn new(
        name: String,
        path: Option<PathBuf>,
        bytes: &[u8],
        info: DylinkInfo,
        module: Option<Module>,
    ) -> Result<Self, Error> {
        let description = Arc::new(describe::describe(&name, bytes)?);
        let symbols = Arc::new(SymbolTable::new(&description, &info));
        Ok(LoadedModule {
            name,
            path,
            info,
            module,
            description,
            symbols,
            needed: Vec::new(),
            bound_to: Default::default(),
            alive: true,
            incarnation: 0,
            image: None,
            interposed: false,
            links: Vec::new(),
            plan: None,
            requested_as: Vec::new(),
        })
    }

    /// The compiled module.
    pub fn module(&self) -> &Module {
        self.module
            .as_ref()
            .expect("every module is compiled before it is instantiated")
    }
}

/// The guest's file system as the loader sees it.
#[derive(Clone)]
pub struct GuestFs {
    pub fs: Arc<dyn FileSystem + Send + Sync>,
    /// The host directories mounted in it (the runtime's file functions translate paths).
    pub dirs: Vec<crate::fs::MappedDir>,
    pub tokio: tokio::runtime::Handle,
}

impl GuestFs {
    /// Reads a whole file. Runs the (async) read on a helper thread so that this works from
    /// any context, including inside a host call made by the guest.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut file = self
                .fs
                .new_open_options()
                .read(true)
                .open(path)
                .map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(bytes)
        };
        std::thread::scope(|s| s.spawn(|| self.tokio.block_on(read)).join())
            .map_err(|_| "the read panicked".to_string())?
    }

    fn is_file(&self, path: &Path) -> bool {
        self.fs.metadata(path).map(|m| m.is_file()).unwrap_or(false)
    }
}

/// Looks for `name` along the search path and returns its canonical guest path; the error
/// lists every path tried.
pub fn find(
    fs: &GuestFs,
    name: &str,
    ctx: &SearchContext,
    requester: &str,
) -> Result<PathBuf, Error> {
    let tried = search::candidates(name, ctx);
    for path in &tried {
        if !fs.is_file(path) {
            tracing::debug!(target: "wasix_dl::libs", "{name}: trying {}: not found", path.display());
            continue;
        }
        tracing::debug!(target: "wasix_dl::libs", "{name}: found {} ({requester})", path.display());
        return Ok(path.clone());
    }
    Err(Error::LibraryNotFound {
        library: name.to_string(),
        requester: requester.to_string(),
        tried: tried.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// The library file at guest path `path`, parsed and compiled. A file this process opened
/// before, unchanged since (same path, size and modification time), is neither read nor
/// compiled again: its parsed and compiled form is kept in memory.
pub fn library(compiler: &Compiler, fs: &GuestFs, path: &Path) -> Result<LoadedModule, Error> {
    let read_error = |reason: String| Error::LibraryRead {
        library: path.display().to_string(),
        reason,
    };
    let meta = fs
        .fs
        .metadata(path)
        .map_err(|e| read_error(e.to_string()))?;
    let identity = file_identity(fs, path, &meta);
    if let Some(known) = compiler.opened(&identity) {
        tracing::debug!(target: "wasix_dl::libs", "{}: compiled earlier in this process", path.display());
        return Ok(known);
    }
    let bytes = fs.read(path).map_err(read_error)?;
    let loaded = compile_library(compiler, path, &bytes)?;
    compiler.remember(identity, &loaded);
    Ok(loaded)
}

/// Whether the library file at `path` is, unchanged, the one `description` was made from
/// (reads nothing but its metadata).
pub fn unchanged(
    compiler: &Compiler,
    fs: &GuestFs,
    path: &Path,
    description: &Arc<Description>,
) -> bool {
    let Ok(meta) = fs.fs.metadata(path) else {
        return false;
    };
    let identity = file_identity(fs, path, &meta);
    compiler
        .opened(&identity)
        .is_some_and(|known| Arc::ptr_eq(&known.description, description))
}

/// What identifies the library file at guest path `path` (see [`crate::cache::FileIdentity`]).
fn file_identity(
    fs: &GuestFs,
    path: &Path,
    meta: &virtual_fs::Metadata,
) -> crate::cache::FileIdentity {
    let host = crate::hostfs::host_path(&fs.dirs, path).map(|(_, host)| host);
    (path.to_path_buf(), host, meta.len, meta.modified)
}

/// Parses and compiles a library file found at `path`.
fn compile_library(compiler: &Compiler, path: &Path, bytes: &[u8]) -> Result<LoadedModule, Error> {
    let name = path.display().to_string();
    let info = dylink::parse(&name, bytes)?.ok_or_else(|| Error::NotSharedLibrary {
        module: name.clone(),
    })?;
    let mut loaded = LoadedModule::new(name.clone(), Some(path.to_path_buf()), bytes, info, None)?;
    if loaded.description.exports("_start") {
        return Err(Error::NotLoadable { module: name });
    }
    loaded.module = Some(compile_link_form(
        compiler,
        &name,
        bytes,
        &loaded.description,
        &DirectCalls::new(),
    )?);
    Ok(loaded)
}

/// Compiles a module in its link form (see [`crate::rewrite`]) if it imports the shared table
/// the usual way, as it is otherwise; through the module cache either way.
pub fn compile_link_form(
    compiler: &Compiler,
    name: &str,
    bytes: &[u8],
    description: &Description,
    calls: &DirectCalls,
) -> Result<Module, Error> {
    if !description.imports_only_the_shared_table() {
        return compiler.compile(name, bytes);
    }
    // Cached by what the rewrite depends on: its version, the bytes and the (import, slot) pairs.
    let mut plan: Vec<(u32, u32, u32)> = calls.iter().map(|(&i, &(t, s))| (i, t, s)).collect();
    plan.sort_unstable();
    let plan: Vec<u8> = plan
        .iter()
        .flat_map(|(i, t, s)| [i.to_le_bytes(), t.to_le_bytes(), s.to_le_bytes()].concat())
        .collect();
    let checks = compiler.epoch_checks;
    compiler.compile_derived(name, &[&rewrite::identity(checks), bytes, &plan], || {
        rewrite::link_form(bytes, calls, checks).map_err(|reason| Error::NotWasm {
            module: name.to_string(),
            reason,
        })
    })
}

/// How a library already loaded is recognised.
#[derive(Clone, Copy)]
pub enum Known<'a> {
    Path(&'a Path),
    Name(&'a str),
}

/// Loads every library `modules` need, breadth-first in `needed` order (ELF's load order),
/// each file once. `modules` holds the root (the main module, or a dlopen'ed library) and
/// receives the new libraries; the module at position `p` gets id `id_of(p)`.
/// `existing` finds a module loaded before by its canonical path or by a bare name it was
/// requested as.
pub fn load_needed(
    compiler: &Compiler,
    fs: &GuestFs,
    modules: &mut Vec<LoadedModule>,
    id_of: &dyn Fn(usize) -> ModuleId,
    existing: &dyn Fn(Known) -> Option<ModuleId>,
    cwd: &Path,
    ld_library_path: &[String],
) -> Result<(), Error> {
    let mut next = 0;
    while next < modules.len() {
        let needed = modules[next].info.needed.clone();
        let mut ids = Vec::with_capacity(needed.len());
        for name in &needed {
            let known = (!name.contains('/'))
                .then(|| {
                    let batch = modules.iter().position(|m| m.requested_as.contains(name));
                    existing(Known::Name(name)).or(batch.map(id_of))
                })
                .flatten();
            if let Some(id) = known {
                ids.push(id);
                continue;
            }
            let found = {
                let requester = &modules[next];
                let ctx = SearchContext {
                    cwd,
                    ld_library_path,
                    requester: requester.path.as_deref().map(|path| Requester {
                        path,
                        runpath: &requester.info.runtime_path,
                    }),
                };
                find(fs, name, &ctx, &format!("needed by {}", requester.name))?
            };
            let (id, position) = if let Some(id) = existing(Known::Path(&found)) {
                (id, None)
            } else if let Some(p) = modules.iter().position(|m| m.path.as_ref() == Some(&found)) {
                (id_of(p), Some(p))
            } else {
                modules.push(library(compiler, fs, &found)?);
                (id_of(modules.len() - 1), Some(modules.len() - 1))
            };
            if let Some(module) = position.and_then(|p| modules.get_mut(p)) {
                if !name.contains('/') && !module.requested_as.contains(name) {
                    module.requested_as.push(name.clone());
                }
            }
            ids.push(id);
        }
        modules[next].needed = ids;
        next += 1;
    }
    Ok(())
}
