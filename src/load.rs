//! Loading: finding a library in the guest's file system (through [`crate::search`]), reading
//! it, checking that it is a shared library, compiling it, and describing what it offers.
//! Nothing here touches a Store: a [`LoadedModule`] can be instantiated in any thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtual_fs::FileSystem;
use wasmer::Module;

use crate::cache::Compiler;
use wasmparser::{ElementItems, ElementKind, Operator, Parser, Payload};

use crate::dylink::{self, DylinkInfo};
use crate::error::Error;
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
    pub module: Module,
    pub symbols: SymbolTable,
    /// Export name → table slot relative to `__table_base`, for exported functions the module
    /// places in the table itself (its element segments): their address must stay the same.
    pub own_slots: HashMap<String, u32>,
    /// Libraries this one needs, resolved, in `needed` order.
    pub needed: Vec<ModuleId>,
    /// Other modules this one bound symbols from (besides `needed`): it keeps them loaded.
    pub bound_to: std::collections::BTreeSet<ModuleId>,
    /// False once unloaded by dlclose (ids are never reused).
    pub alive: bool,
}

impl LoadedModule {
    /// Describes a compiled dynamically linked module.
    pub fn new(
        name: String,
        path: Option<PathBuf>,
        bytes: &[u8],
        info: DylinkInfo,
        module: Module,
    ) -> Result<Self, Error> {
        let symbols = SymbolTable::new(&module, &info);
        let own_slots = element_slots(&name, bytes)?;
        Ok(LoadedModule {
            name,
            path,
            info,
            module,
            symbols,
            own_slots,
            needed: Vec::new(),
            bound_to: Default::default(),
            alive: true,
        })
    }
}

/// The guest's file system as the loader sees it.
#[derive(Clone)]
pub struct GuestFs {
    pub fs: Arc<dyn FileSystem + Send + Sync>,
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

/// A library found and read: its canonical guest path and contents.
pub struct Found {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Looks for `name` along the search path; the error lists every path tried.
pub fn find(
    fs: &GuestFs,
    name: &str,
    ctx: &SearchContext,
    requester: &str,
) -> Result<Found, Error> {
    let tried = search::candidates(name, ctx);
    for path in &tried {
        if !fs.is_file(path) {
            tracing::debug!(target: "wasix_dl::libs", "{name}: trying {}: not found", path.display());
            continue;
        }
        tracing::debug!(target: "wasix_dl::libs", "{name}: found {} ({requester})", path.display());
        let bytes = fs.read(path).map_err(|reason| Error::LibraryRead {
            library: path.display().to_string(),
            reason,
        })?;
        return Ok(Found {
            path: path.clone(),
            bytes,
        });
    }
    Err(Error::LibraryNotFound {
        library: name.to_string(),
        requester: requester.to_string(),
        tried: tried.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// Parses and compiles a library file found at `path`.
pub fn compile_library(
    compiler: &Compiler,
    path: &Path,
    bytes: &[u8],
) -> Result<LoadedModule, Error> {
    let name = path.display().to_string();
    let info = dylink::parse(&name, bytes)?.ok_or_else(|| Error::NotSharedLibrary {
        module: name.clone(),
    })?;
    if exports_start(bytes) {
        return Err(Error::NotLoadable { module: name });
    }
    let module = compiler.compile(&name, bytes)?;
    LoadedModule::new(name, Some(path.to_path_buf()), bytes, info, module)
}

/// Loads every library `modules` need, breadth-first in `needed` order (ELF's load order),
/// each file once. `modules` holds the root (the main module, or a dlopen'ed library) and
/// receives the new libraries; the module at position `p` gets id `id_offset + p`.
/// `existing` maps canonical paths of modules loaded before to their ids.
pub fn load_needed(
    compiler: &Compiler,
    fs: &GuestFs,
    modules: &mut Vec<LoadedModule>,
    id_offset: ModuleId,
    existing: &dyn Fn(&Path) -> Option<ModuleId>,
    cwd: &Path,
    ld_library_path: &[String],
) -> Result<(), Error> {
    let mut next = 0;
    while next < modules.len() {
        let needed = modules[next].info.needed.clone();
        let mut ids = Vec::with_capacity(needed.len());
        for name in &needed {
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
            let id = if let Some(id) = existing(&found.path) {
                id
            } else if let Some(p) = modules
                .iter()
                .position(|m| m.path.as_ref() == Some(&found.path))
            {
                id_offset + p
            } else {
                modules.push(compile_library(compiler, &found.path, &found.bytes)?);
                id_offset + modules.len() - 1
            };
            ids.push(id);
        }
        modules[next].needed = ids;
        next += 1;
    }
    Ok(())
}

/// Whether the module exports `_start`: a program, not a library.
fn exports_start(bytes: &[u8]) -> bool {
    Parser::new(0)
        .parse_all(bytes)
        .any(|payload| match payload {
            Ok(Payload::ExportSection(reader)) => reader
                .into_iter()
                .any(|e| e.is_ok_and(|e| e.name == "_start")),
            _ => false,
        })
}

/// Export name → slot (relative to `__table_base`) of exported functions placed by the
/// module's active element segments, whose offset is `__table_base` plus a constant.
fn element_slots(name: &str, bytes: &[u8]) -> Result<HashMap<String, u32>, Error> {
    let malformed = |e: wasmparser::BinaryReaderError| Error::NotWasm {
        module: name.to_string(),
        reason: e.to_string(),
    };
    let mut placed: Vec<(u32, u32)> = Vec::new(); // (function index, relative slot)
    let mut exported: HashMap<u32, Vec<String>> = HashMap::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ElementSection(reader) => {
                for element in reader {
                    let element = element.map_err(malformed)?;
                    let ElementKind::Active { offset_expr, .. } = element.kind else {
                        continue;
                    };
                    let Some(offset) = relative_offset(offset_expr) else {
                        continue;
                    };
                    if let ElementItems::Functions(funcs) = element.items {
                        for (i, func) in funcs.into_iter().enumerate() {
                            placed.push((func.map_err(malformed)?, offset + i as u32));
                        }
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if export.kind == wasmparser::ExternalKind::Func {
                        exported
                            .entry(export.index)
                            .or_default()
                            .push(export.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let mut slots = HashMap::new();
    for (func, slot) in placed {
        for name in exported.get(&func).into_iter().flatten() {
            slots.entry(name.clone()).or_insert(slot);
        }
    }
    Ok(slots)
}

/// The constant part of an element offset `global.get __table_base (+ i32.const k)`.
fn relative_offset(expr: wasmparser::ConstExpr) -> Option<u32> {
    let mut reader = expr.get_operators_reader();
    let mut constant = 0u32;
    let mut saw_global = false;
    while !reader.eof() {
        match reader.read().ok()? {
            Operator::GlobalGet { .. } => saw_global = true,
            Operator::I32Const { value } => constant = value as u32,
            Operator::I32Add | Operator::End => {}
            _ => return None,
        }
    }
    saw_global.then_some(constant)
}
