//! Where a library named in `needed` or passed to `dlopen` is looked for, in the guest's file
//! system, in the order ELF's `ld.so` uses (without the cache and the system defaults file):
//!
//! 1. a name with a slash is a path: absolute as is, relative to the working directory;
//! 2. a bare name goes through `LD_LIBRARY_PATH`, then the requesting module's RUNPATH
//!    (`$ORIGIN` / `${ORIGIN}` = that module's directory), then `/lib`, `/usr/lib`,
//!    `/usr/local/lib`. The working directory is not searched for a bare name.
//!
//! Paths are normalised lexically (`.`, `..`, repeated slashes), which is what identifies a
//! library (DESIGN decision 2).

use std::path::{Component, Path, PathBuf};

pub const DEFAULT_DIRS: [&str; 3] = ["/lib", "/usr/lib", "/usr/local/lib"];

/// Who asks for a library: their RUNPATH and directory matter for bare names.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// Guest path of the requesting module (its directory is `$ORIGIN`).
    pub path: &'a Path,
    pub runpath: &'a [String],
}

/// The search context of one lookup.
#[derive(Debug, Clone, Copy)]
pub struct SearchContext<'a> {
    /// Guest working directory (absolute).
    pub cwd: &'a Path,
    /// `LD_LIBRARY_PATH`, already split on `:`.
    pub ld_library_path: &'a [String],
    pub requester: Option<Requester<'a>>,
}

/// The guest paths to try for `name`, in order, without duplicates.
pub fn candidates(name: &str, ctx: &SearchContext) -> Vec<PathBuf> {
    if name.contains('/') {
        return vec![absolute(ctx.cwd, Path::new(name))];
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in ctx.ld_library_path.iter().filter(|d| !d.is_empty()) {
        dirs.push(absolute(ctx.cwd, Path::new(dir)));
    }
    if let Some(req) = ctx.requester {
        let origin = req.path.parent().unwrap_or(Path::new("/"));
        for entry in req.runpath.iter().filter(|d| !d.is_empty()) {
            let expanded = expand_origin(entry, origin);
            dirs.push(absolute(ctx.cwd, Path::new(&expanded)));
        }
    }
    dirs.extend(DEFAULT_DIRS.iter().map(PathBuf::from));
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let path = dir.join(name);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

fn expand_origin(entry: &str, origin: &Path) -> String {
    let origin = origin.to_string_lossy();
    entry
        .replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin)
}

/// `path` made absolute against `cwd` and normalised lexically; `..` never goes above `/`.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(ld: &'a [String], req: Option<Requester<'a>>) -> SearchContext<'a> {
        SearchContext {
            cwd: Path::new("/work/app"),
            ld_library_path: ld,
            requester: req,
        }
    }

    #[test]
    fn a_name_with_a_slash_is_a_path() {
        assert_eq!(
            candidates("/opt/x.so", &ctx(&[], None)),
            [PathBuf::from("/opt/x.so")]
        );
        assert_eq!(
            candidates("./lib/../x.so", &ctx(&[], None)),
            [PathBuf::from("/work/app/x.so")]
        );
    }

    #[test]
    fn bare_names_follow_ld_library_path_then_runpath_then_defaults() {
        let ld = vec!["/ld".to_string(), "rel".to_string(), String::new()];
        let runpath = vec!["$ORIGIN".to_string(), "${ORIGIN}/../lib".to_string()];
        let req = Requester {
            path: Path::new("/pkg/bin/main.wasm"),
            runpath: &runpath,
        };
        let got = candidates("libx.so", &ctx(&ld, Some(req)));
        let want: Vec<PathBuf> = [
            "/ld/libx.so",
            "/work/app/rel/libx.so",
            "/pkg/bin/libx.so",
            "/pkg/lib/libx.so",
            "/lib/libx.so",
            "/usr/lib/libx.so",
            "/usr/local/lib/libx.so",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn parent_components_never_escape_the_root() {
        assert_eq!(
            absolute(Path::new("/a"), Path::new("../../../x")),
            PathBuf::from("/x")
        );
    }
}
