#!/usr/bin/env python3
"""The wasix-dl compiler drivers (`wasix-cc`, `wasix-c++`) and the toolchain's cache key.

The drivers take clang's usual flags and produce dynamically linked WebAssembly for WASIX:

* without `-shared`: a PIE main module. It imports `env.memory` (shared, 4 GiB maximum),
  exports the whole libc (so shared libraries and dlopen'ed modules bind to it) and records
  each `.so` input as `needed` in its `dylink.0` section.
* with `-shared`: a side module (shared library) that imports what it does not define and
  exports `__wasix_init_tls` plus the TLS and relocation entry points the loader calls.
* `-c`, `-S`, `-E`: compile only, with the flags every object of the sysroot was built with
  (PIC, default visibility, atomics + bulk memory, -pthread, exnref exceptions, setjmp on
  wasm EH).

Threads are always on (`-pthread` is accepted and implied): every program links the one
threaded libc, which takes no locks until a second thread exists. A main exports
`wasi_thread_start`, where the runtime starts threads made by `pthread_create`.

`-Wl,-rpath,'$ORIGIN'` writes the module's runtime-path. No external wasm-opt ever runs.

The C++ runtime (libc++, libc++abi and libunwind in one module) is a shared library,
`$SYSROOT/system-lib/libc++.so`, like libstdc++.so on Linux: `wasix-c++` links every main and
every side module against it, so each records `needed libc++.so` and all the C++ modules of a
process share one runtime (one std::cout, one exception and RTTI world), whether the main is
C or C++. `system-lib/` is the guest's system library directory: the runtime mounts it at
`/lib`, where the loader looks for bare `needed` names. Landing pads reach the one unwinder's
`__wasm_lpad_context` (thread-local) through a `GOT.mem` import (see `codegen_command`).
`-lc++`, `-lc++abi`, `-lunwind`, `-lstdc++`, `-lsupc++` name that runtime (with `wasix-cc`
too). `-static-libstdc++` links the static archives instead (`$SYSROOT/lib/libc++.a` ...): a
main gets the whole runtime, a side module only a hidden unwinder of its own and takes the
rest from the main, which must then be linked with `-static-libstdc++` as well.
`-nostdlib++` leaves out the implied C++ runtime.

Subcommands for scripts: `key` (hash of the sysroot's inputs), `cache-dir`, `sysroot`,
`system-libs` (the sysroot's system library directory; printed even before the sysroot
exists, so that builds can learn it). `WASIX_DL_SYSROOT` names the sysroot to use instead of
the cached one, complete or not: the sysroot build links libc++.so with these drivers.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLCHAIN_DIR = Path(__file__).resolve().parent
# Files whose content decides what the sysroot contains (this file too: it links libc++.so).
KEY_INPUTS = ["setup.sh", "build-sysroot.sh", "build-libcxx.sh", "debian.sh", "sysroot-src",
              "wasix_toolchain.py"]

FEATURE_FLAGS = ["-matomics", "-mbulk-memory", "-mmutable-globals", "-mnontrapping-fptoint",
                 "-msign-ext"]
EH_FLAGS = ["-fwasm-exceptions", "-mllvm", "-wasm-use-legacy-eh=false",
            "-mllvm", "-wasm-enable-sjlj"]
MAX_MEMORY = str(4 * 1024 * 1024 * 1024)
# Entry points the loader calls on a module when it defines them.
LOADER_EXPORTS = ["__wasm_call_ctors", "__wasm_apply_data_relocs", "__wasm_apply_tls_relocs",
                  "__wasm_apply_global_tls_relocs", "__wasm_init_tls", "__tls_size",
                  "__tls_align", "__tls_base", "__stack_low", "__stack_high"]
SOURCE_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".c++", ".C", ".s", ".S", ".m"}
CXX_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".C"}
# Headers: inputs of -E / -fsyntax-only runs (e.g. `wasix-cc -E x.h`), never linked.
HEADER_SUFFIXES = {".h", ".hh", ".hpp", ".hxx", ".H"}


class DriverError(Exception):
    pass


def cache_dir() -> Path:
    env = os.environ.get("WASIX_DL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "wasix-dl"


def key() -> str:
    """Hash of every sysroot input (paths and contents, in a fixed order)."""
    h = hashlib.sha256()
    for name in KEY_INPUTS:
        root = TOOLCHAIN_DIR / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f.relative_to(TOOLCHAIN_DIR)).encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# The C++ runtime's names: what user link lines may ask for, and what the driver links.
CXX_RUNTIME_LIBS = {"-lc++", "-lc++abi", "-lunwind", "-lstdc++", "-lsupc++"}
CXX_RUNTIME_SO = "libc++.so"


def sysroot_path() -> Path:
    return cache_dir() / f"sysroot-{key()}"


def system_lib_dir(root: Path) -> Path:
    """The guest's system libraries (mounted at /lib by the runtime)."""
    return root / "system-lib"


def sysroot() -> Path:
    override = os.environ.get("WASIX_DL_SYSROOT")
    if override:
        return Path(override)  # the sysroot build, or a user's own sysroot
    path = sysroot_path()
    if not (path / ".complete").exists():
        raise DriverError(
            f"the wasix-dl toolchain is not set up (no {path}): run {TOOLCHAIN_DIR}/setup.sh")
    return path


def zig_tools(root: Path):
    zigpkg = next((root / "tools" / "venv" / "lib").glob("python3*/site-packages/ziglang"))
    return zigpkg / "zig", zigpkg / "lib"


class Invocation:
    """A driver command line split into what the compiler and what the linker needs."""

    def __init__(self, argv, cxx):
        self.cxx = cxx
        self.output = None
        self.shared = False
        self.compile_only = False       # -c / -S / -E / -M
        self.sources = []               # files clang compiles
        self.headers = []               # headers, for -E / -fsyntax-only
        self.link_inputs = []           # objects, archives, shared libraries, -l, in order
        self.compile_flags = []         # flags for clang
        self.link_flags = []            # flags for wasm-ld (from -Wl, -Xlinker, -L, ...)
        self.info_only = False          # --version, -dumpmachine, -print-*
        self.static_cxx = False         # -static-libstdc++: the static archives
        self.no_cxx_runtime = False     # -nostdlib++: no C++ runtime
        self.cxx_runtime = False        # -lc++ / -lstdc++ ... given: link the runtime
        self._parse(list(argv))

    def _parse(self, args):
        i = 0
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None
            if a == "-o":
                if nxt is None:
                    raise DriverError("-o needs an argument")
                self.output, i = nxt, i + 2
                continue
            if a.startswith("-o") and len(a) > 2:
                self.output = a[2:]
            elif a == "-shared":
                self.shared = True
            elif a in ("-pthread", "-pthreads"):
                pass  # always on: one threaded libc for every program
            elif a == "-mthread-model":
                i += 1  # always posix
            elif a.startswith("-mthread-model"):
                pass
            elif a in ("-c", "-S", "-E", "-M", "-MM", "-fsyntax-only"):
                self.compile_only = True
                self.compile_flags.append(a)
            elif a in ("--version", "-v", "-dumpmachine", "-dumpversion") or a.startswith("-print-"):
                self.info_only = True
                self.compile_flags.append(a)
            elif a.startswith("-Wl,"):
                self._linker_args(a[4:].split(","))
            elif a == "-Xlinker":
                self._linker_args([nxt])
                i += 1
            elif a.startswith("-L"):
                path = a[2:] or nxt
                self.link_flags.append(f"-L{path}")
                i += 0 if a[2:] else 1
            elif a.startswith("-l"):
                lib = a if a[2:] else f"-l{nxt}"
                if lib in CXX_RUNTIME_LIBS:
                    self.cxx_runtime = True  # linked once, at the end (link_command)
                else:
                    self.link_inputs.append(lib)
                i += 0 if a[2:] else 1
            elif a == "-static-libstdc++":
                self.static_cxx = True
            elif a == "-nostdlib++":
                self.no_cxx_runtime = True
            elif a in ("-static", "-pie", "-fPIE", "-fpie", "-no-pie", "-rdynamic", "-s",
                       "-static-libgcc", "-nostartfiles", "-nodefaultlibs", "-nostdlib"):
                pass  # the drivers always build PIC modules with the sysroot's runtime
            elif a in ("-x", "-MF", "-MT", "-MQ", "-I", "-D", "-U", "-include", "-isystem",
                       "-idirafter", "-iquote", "-imacros", "-arch", "-Xclang", "-mllvm",
                       "-target", "-iprefix", "-iwithprefix"):
                if nxt is None:
                    raise DriverError(f"{a} needs an argument")
                self.compile_flags += [a, nxt]
                i += 2
                continue
            elif a.startswith("-"):
                self.compile_flags.append(a)
            elif Path(a).suffix in SOURCE_SUFFIXES:
                self.sources.append(a)
                if Path(a).suffix in CXX_SUFFIXES:
                    self.cxx = True
            elif Path(a).suffix in HEADER_SUFFIXES:
                self.headers.append(a)
            else:
                self.link_inputs.append(a)
            i += 1

    def objects_only(self) -> bool:
        """`-c` alone: sources to objects (not -E/-S/-M, not an information query)."""
        other = {"-S", "-E", "-M", "-MM", "-fsyntax-only"}
        return ("-c" in self.compile_flags and not self.info_only and bool(self.sources)
                and not other.intersection(self.compile_flags))

    def _linker_args(self, items):
        it = iter(items)
        for item in it:
            if item in ("-rpath", "--rpath", "-R"):
                self.link_flags.append(f"--rpath={next(it, '')}")
            elif item.startswith(("-rpath=", "--rpath=")):
                self.link_flags.append("--rpath=" + item.split("=", 1)[1])
            elif item in ("-soname", "-h") or item.startswith(("-soname=", "--soname=")):
                if "=" not in item:
                    next(it, None)  # wasm modules have no soname; the file name is the name
            elif item in ("--as-needed", "--no-as-needed", "-z", "--enable-new-dtags",
                          "--disable-new-dtags", "-O1", "-O2", "--hash-style=gnu", "-Bsymbolic"):
                if item == "-z":
                    next(it, None)
            else:
                self.link_flags.append(item)


def compile_command(root: Path, inv: Invocation, zig: Path, ziglib: Path, cxx: bool):
    cmd = [str(zig), "clang", *(["--driver-mode=g++"] if cxx else []), "--target=wasm32-wasip1",
           f"--sysroot={root}", "-resource-dir", str(ziglib), "-fPIC", "-fvisibility=default",
           "-fno-stack-protector", "-pthread", *FEATURE_FLAGS, *EH_FLAGS]
    if cxx:
        cmd += ["-nostdinc++", "-isystem", str(root / "include" / "c++" / "v1")]
    return cmd + inv.compile_flags


def codegen_command(zig: Path, ziglib: Path, inv: Invocation, bitcode: str, obj: str):
    """Code generation of a bitcode file compiled for wasm32-wasip1, as for Emscripten.

    For WASI triples LLVM forces the local-exec TLS model, so a reference to a thread-local
    defined in another module (an `extern _Thread_local`, C++ `extern thread_local`) cannot
    link. For Emscripten it keeps the general-dynamic model: such a reference (and one to a
    thread-local the module itself exports, which another may interpose) becomes a
    `GOT.mem` import of the variable's address, which the loader binds per thread, as real
    WASIX toolchains do. The front end (ABI, type layout, predefined macros) stays WASI's:
    only the back end sees the other triple, and its output differs only in that.
    """
    passthrough = []
    it = iter(inv.compile_flags)
    for flag in it:
        if flag == "-mllvm":
            passthrough += [flag, next(it, "")]
        elif flag.startswith(("-O", "-g", "-m", "-f")) and not flag.startswith("-fsyntax"):
            passthrough.append(flag)
    return [str(zig), "clang", "--target=wasm32-unknown-emscripten", "-resource-dir",
            str(ziglib), "-fPIC", "-pthread", *FEATURE_FLAGS, *EH_FLAGS, *passthrough,
            "-Wno-override-module", "-Wno-unused-command-line-argument", "-Xclang",
            "-disable-llvm-passes", "-c", bitcode, "-o", obj]


def compile_object(root: Path, inv: Invocation, zig: Path, ziglib: Path, cxx: bool, src: str,
                   obj: str) -> int:
    """Compiles one source file to an object: front end and optimiser for wasm32-wasip1 into
    bitcode, then code generation (see `codegen_command`). Assembly is assembled directly."""
    if Path(src).suffix in (".s", ".S"):
        return run(compile_command(root, inv, zig, ziglib, cxx) + ["-c", src, "-o", obj])
    bitcode = obj + ".bc"
    # Dependency files name the object, as they would without the bitcode step.
    flags = inv.compile_flags
    deps = []
    if {"-MD", "-MMD"}.intersection(flags):
        if not {"-MT", "-MQ"}.intersection(flags):
            deps += ["-MT", obj]
        if "-MF" not in flags:
            deps += ["-MF", str(Path(obj).with_suffix(".d"))]
    try:
        rc = run(compile_command(root, inv, zig, ziglib, cxx) + deps
                 + ["-c", "-emit-llvm", src, "-o", bitcode])
        return rc if rc != 0 else run(codegen_command(zig, ziglib, inv, bitcode, obj))
    finally:
        if os.path.exists(bitcode):
            os.unlink(bitcode)


def link_command(root: Path, inv: Invocation, zig: Path, objects, output):
    lib = root / "lib"
    cmd = [str(zig), "wasm-ld", "--experimental-pic", "--shared-memory",
           f"--max-memory={MAX_MEMORY}", "--unresolved-symbols=import-dynamic",
           f"-L{lib}", "-o", output]
    cmd += [f"--export-if-defined={name}" for name in LOADER_EXPORTS]
    if inv.shared:
        cmd += ["-shared", "--no-entry", "--export=__wasix_init_tls", str(lib / "scrt1.o")]
    else:
        # Export everything visible, including the whole libc, for the libraries to bind to.
        cmd += ["-pie", "--import-memory", "--export-dynamic",
                "--export-if-defined=wasi_thread_start", str(lib / "crt1-command.o")]
    cmd += inv.link_flags + objects + inv.link_inputs
    if inv.shared:
        # After the inputs: only what they leave undefined is taken (see build-sysroot.sh).
        cmd += [str(lib / "libc_nonshared.a")]
    # Implied by C++ (unless -nostdlib++), or asked for by name (-lstdc++ ..., also with cc).
    cxx_runtime = (inv.cxx and not inv.no_cxx_runtime) or inv.cxx_runtime
    if cxx_runtime and not inv.static_cxx:
        # The shared runtime: recorded as `needed libc++.so` (wasm-ld names a library by its
        # file name), found at run time in the guest's /lib.
        cmd += [str(system_lib_dir(root) / CXX_RUNTIME_SO)]
    if inv.shared:
        if cxx_runtime and inv.static_cxx:
            # A hidden unwinder, its landing-pad context included, so that this module's
            # landing pads bind to the copy that unwinds them; the rest comes from the main.
            cmd += ["-lunwind"]
    else:
        runtime = ["-lc++", "-lc++abi", "-lunwind"] if cxx_runtime and inv.static_cxx else []
        cmd += ["--whole-archive", *runtime, "-lc", "--no-whole-archive"]
    cmd += [str(lib / "libclang_rt.builtins-wasm32.a")]
    return cmd


def run(cmd):
    if os.environ.get("WASIX_CC_VERBOSE"):
        print(" ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def drive(argv, cxx) -> int:
    root = sysroot()
    zig, ziglib = zig_tools(root)
    inv = Invocation(argv, cxx)
    if inv.objects_only():
        # `-c`: each source to its object, through bitcode (see compile_object).
        for src in inv.sources:
            obj = inv.output or Path(src).with_suffix(".o").name
            is_cxx = inv.cxx if not Path(src).suffix == ".c" else False
            rc = compile_object(root, inv, zig, ziglib, is_cxx, src, obj)
            if rc != 0:
                return rc
        return 0
    if inv.info_only or inv.compile_only:
        cmd = compile_command(root, inv, zig, ziglib, inv.cxx)
        if inv.output:
            cmd += ["-o", inv.output]
        return run(cmd + inv.sources + inv.headers)
    if inv.headers:
        raise DriverError(f"a header is not something to link: {' '.join(inv.headers)}")
    if not inv.sources and not inv.link_inputs:
        raise DriverError("no input files")
    output = inv.output or "a.out"
    tmp = tempfile.mkdtemp(prefix="wasix-cc-")
    try:
        objects = []
        for n, src in enumerate(inv.sources):
            obj = os.path.join(tmp, f"{n}-{Path(src).stem}.o")
            is_cxx = inv.cxx if not Path(src).suffix == ".c" else False
            rc = compile_object(root, inv, zig, ziglib, is_cxx, src, obj)
            if rc != 0:
                return rc
            objects.append(obj)
        return run(link_command(root, inv, zig, objects, output))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv) -> int:
    try:
        if len(argv) >= 2 and argv[1] == "key":
            print(key())
        elif len(argv) >= 2 and argv[1] == "cache-dir":
            print(cache_dir())
        elif len(argv) >= 2 and argv[1] == "sysroot":
            print(sysroot())
        elif len(argv) >= 2 and argv[1] == "system-libs":
            override = os.environ.get("WASIX_DL_SYSROOT")
            print(system_lib_dir(Path(override) if override else sysroot_path()))
        elif len(argv) >= 2 and argv[1] in ("cc", "c++"):
            return drive(argv[2:], cxx=argv[1] == "c++")
        else:
            print(__doc__, file=sys.stderr)
            return 2
        return 0
    except DriverError as e:
        name = "wasix-c++" if len(argv) > 1 and argv[1] == "c++" else "wasix-cc"
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
