"""The work of python-demo/build-package, run by the host tools venv (native CPython 3.13.5 with
pip, packaging and pyproject_hooks; see build-package).

Cross build: a package's own PEP 517 backend runs under the native CPython 3.13.5 (in a venv
holding the package's build requirements, installed natively from PyPI), with the environment
CPython's own cross builds use: `_PYTHON_SYSCONFIGDATA_NAME` + `PYTHONPATH` select the WASIX
install's `_sysconfigdata` (compilers toolchain/bin/wasix-cc and wasix-c++, EXT_SUFFIX
`.cpython-313-wasm32-wasi-threads.so`, INCLUDEPY the WASIX headers) and `_PYTHON_HOST_PLATFORM`
gives `sysconfig.get_platform()` of the guest (`wasi-0.0.0-wasm32`), hence the wheel's
platform tag. The wheel is installed with pip `--target SITE` for the guest's tags (computed
by `packaging.tags` inside the guest); dependencies missing from PyPI as wheels for those tags
(that is, with extension modules) are built from their sdists the same way.
"""
import argparse
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pyproject_hooks
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent          # python-demo/packages
DEMO = HERE.parent
REPO = DEMO.parent
CONSTRAINTS = HERE / "build-constraints.txt"
# What decides how a wheel is built, besides the CPython install: the build requirement pins
# and the recipe (the cross environment of Target.env and Builder.build_tree). Bump RECIPE when
# a change of these scripts changes what a build produces: wheels built before are then stale.
RECIPE = 3
SCRIPT_INPUTS = [CONSTRAINTS]


def log(msg):
    print(f"[build-package] {msg}", file=sys.stderr, flush=True)


def digest(*parts, n=16):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class BuildError(Exception):
    pass


def wasix_dl_binary():
    if os.environ.get("WASIX_DL"):
        return os.environ["WASIX_DL"]
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "wasix-dl")
    candidates.append(Path.home() / ".cache" / "wasix-dl" / "cargo-target" / "release" / "wasix-dl")
    candidates.append(REPO / "target" / "release" / "wasix-dl")
    for c in candidates:
        if c.exists():
            return str(c)
    raise BuildError("no wasix-dl binary: set WASIX_DL or run `cargo build --release`")


def site_dir_for(cache: Path, prefix: Path) -> Path:
    """The default site directory of a CPython install (run-python computes the same)."""
    return cache / f"python-site-{digest(str(prefix))}"


class Target:
    """The WASIX CPython install packages are built for."""

    def __init__(self, prefix: Path, cache: Path, native: str):
        self.prefix = prefix
        self.native = native
        found = sorted(prefix.glob("lib/python3.*/_sysconfigdata_*.py"))
        if not found:
            raise BuildError(f"{prefix} is not a CPython install (no _sysconfigdata)")
        self.sysconfigdata = found[0]
        self.vars = runpy.run_path(str(self.sysconfigdata))["build_time_vars"]
        self.key = digest(prefix, self.sysconfigdata.read_bytes(), RECIPE,
                          *(p.read_bytes() for p in SCRIPT_INPUTS))
        self.dir = cache / f"python-pkg-{self.key}"
        self.wheels = self.dir / "wheels"
        self.work = self.dir / "work"
        for d in (self.wheels, self.work):
            d.mkdir(parents=True, exist_ok=True)
        self.cross = self._cross_dir()
        self.guest = self._guest_facts()
        self.platform = self.guest["platform"]                    # wasi-0.0.0-wasm32
        self.tags = self.guest["tags"]                            # cp313-cp313-wasi_0_0_0_wasm32, ...
        self.platform_tag = self.tags[0].split("-")[2]

    def _cross_dir(self) -> Path:
        """PYTHONPATH entry of the build backends: the target's _sysconfigdata and a sitecustomize."""
        d = self.dir / "cross"
        d.mkdir(exist_ok=True)
        # The compilers of this checkout. The install names them (wasix-cc, found on PATH:
        # see env()); one configured with a path names another checkout's, which may be gone
        # (and its drivers are the same files).
        text = self.sysconfigdata.read_text()
        baked = str(Path(self.vars["CC"].split()[0]).parent)
        ours = str(REPO / "toolchain" / "bin")
        if "/" in self.vars["CC"].split()[0] and baked != ours:
            log(f"note: {self.prefix.name} was configured with {baked}; using {ours}")
            text = text.replace(baked + "/", ours + "/")
            self.vars = {k: v.replace(baked + "/", ours + "/") if isinstance(v, str) else v
                         for k, v in self.vars.items()}
        (d / self.sysconfigdata.name).write_text(text)
        (d / "sitecustomize.py").write_text(
            "# Loaded by the native CPython when it runs a build backend for the WASIX target.\n"
            "# The native CPython runs from its source tree, so sys._home names that tree and\n"
            "# distutils (setuptools._distutils.sysconfig.python_build) would hand out the tree's\n"
            "# own headers (pyconfig.h of x86_64 Linux) instead of the target's INCLUDEPY.\n"
            "import sys\n"
            "sys._home = None\n")
        tools = d / "bin"
        tools.mkdir(exist_ok=True)
        # An archiver that writes the symbol index wasm-ld needs (GNU ar cannot read wasm objects).
        zig = next((Path(self._sysroot()) / "tools" / "venv" / "lib").glob(
            "python3*/site-packages/ziglang/zig"))
        ar = tools / "wasix-ar"
        ar.write_text(f'#!/bin/sh\nexec "{zig}" ar "$@"\n')
        ar.chmod(0o755)
        meson = d / "meson-cross.ini"
        meson.write_text(
            "[binaries]\n"
            f"c = '{self.vars['CC'].split()[0]}'\n"
            f"cpp = '{self.vars['CXX'].split()[0]}'\n"
            f"ar = '{ar}'\n"
            "[host_machine]\n"
            "system = 'wasi'\ncpu_family = 'wasm32'\ncpu = 'wasm32'\nendian = 'little'\n")
        return d

    def _sysroot(self):
        return subprocess.run([sys.executable, str(REPO / "toolchain" / "wasix_toolchain.py"),
                               "sysroot"], check=True, capture_output=True, text=True).stdout.strip()

    def _guest_facts(self):
        """sysconfig.get_platform() and packaging.tags.sys_tags() inside the guest (cached)."""
        cached = self.dir / "guest.json"
        if cached.exists():
            return json.loads(cached.read_text())
        import packaging
        tools_site = str(Path(packaging.__file__).parent.parent)
        script = ("import json, sysconfig, packaging.tags as t\n"
                  "print(json.dumps({'platform': sysconfig.get_platform(),"
                  " 'tags': [str(x) for x in t.sys_tags()]}))\n")
        out = subprocess.run(
            [wasix_dl_binary(), "run", "--dir", str(self.prefix), "--dir", tools_site,
             "--env", f"PYTHONHOME={self.prefix}", "--env", f"PYTHONPATH={tools_site}",
             str(self.prefix / "bin" / "python3.13.wasm"), "-c", script],
            check=True, capture_output=True, text=True).stdout
        facts = json.loads(out)
        cached.write_text(json.dumps(facts, indent=1))
        return facts

    def env(self):
        """The environment of a build backend run for the target."""
        env = dict(os.environ)
        nodebug = " ".join(f for f in self.vars["CFLAGS"].split() if f != "-g")
        env.update({
            # The install names its compilers (wasix-cc, wasix-c++): this checkout's.
            "PATH": str(REPO / "toolchain" / "bin") + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": str(self.cross),
            "_PYTHON_SYSCONFIGDATA_NAME": self.sysconfigdata.stem,
            "_PYTHON_HOST_PLATFORM": self.platform,
            # For tools that read the environment rather than sysconfig (CMake, Meson, ...).
            "CC": self.vars["CC"], "CXX": self.vars["CXX"],
            "AR": str(self.cross / "bin" / "wasix-ar"),
            # $CFLAGS replaces the sysconfig CFLAGS in distutils: the same flags without -g
            # (no DWARF in the wheels; the CPython build strips its modules too).
            "CFLAGS": nodebug, "CXXFLAGS": nodebug,
            # pkg-config sees the sysroot's libraries (zlib), never the host's.
            "PKG_CONFIG_LIBDIR": str(Path(self._sysroot()) / "lib" / "pkgconfig"),
            "PKG_CONFIG_PATH": "",
        })
        return env


class Builder:
    def __init__(self, target: Target, cache: Path):
        self.t = target
        self.cache = cache
        self.pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]

    # ---- sources -------------------------------------------------------------------------
    def download_sdist(self, req_line: str) -> Path:
        """The sdist of one requirement (a line of a requirements file, hashes allowed)."""
        dl = self.t.dir / "sdists" / digest(req_line)
        done = dl / ".complete"
        if not done.exists():
            shutil.rmtree(dl, ignore_errors=True)
            dl.mkdir(parents=True)
            (dl / "req.txt").write_text(req_line + "\n")
            log(f"download sdist: {req_line.split()[0]}")
            # --no-binary for this package only: pip prepares the sdist's metadata in an
            # isolated environment, whose build requirements (Cython, ...) come as wheels.
            name = Requirement(req_line.split()[0]).name
            r = subprocess.run(self.pip + ["download", "-q", "--no-deps", "--no-binary", name,
                                           "-r", str(dl / "req.txt"), "-d", str(dl)],
                               capture_output=True, text=True)
            if r.returncode:
                raise BuildError(f"pip download {req_line} failed:\n{r.stdout}{r.stderr}")
            done.touch()
        found = [p for p in dl.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tar.bz2"))]
        if len(found) != 1:
            raise BuildError(f"expected one sdist for {req_line!r} in {dl}")
        return found[0]

    def unpack(self, sdist: Path, dest: Path) -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as z:
                z.extractall(dest)
        else:
            with tarfile.open(sdist) as t:
                t.extractall(dest, filter="data")
        entries = list(dest.iterdir())
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest

    # ---- build environments --------------------------------------------------------------
    def build_env(self, requires):
        """A venv of the native CPython with the build requirements (native wheels from PyPI)."""
        reqs = sorted(set(requires))
        env = self.cache / f"python-pkg-buildenv-{digest(self.t.native, *reqs, CONSTRAINTS.read_bytes())}"
        if not (env / ".complete").exists():
            shutil.rmtree(env, ignore_errors=True)
            log(f"build environment: {' '.join(reqs)}")
            subprocess.run([self.t.native, "-m", "venv", "--without-pip", str(env)], check=True)
            self.install_native(env, reqs)
            (env / ".complete").touch()
        return env

    def install_native(self, env, reqs):
        if reqs:
            subprocess.run(self.pip + ["--python", str(env / "bin" / "python"), "install", "-q",
                                       "--only-binary", ":all:", "-c", str(CONSTRAINTS), *reqs],
                           check=True, stdout=sys.stderr)

    # ---- wheels --------------------------------------------------------------------------
    def build_sdist(self, sdist: Path, config=None) -> Path:
        """Cross-builds the wheel of an sdist (cached by the sdist's hash and the settings)."""
        key = digest(file_sha256(sdist), json.dumps(config or {}, sort_keys=True))
        record = self.t.wheels / ".built" / key
        if record.exists():
            whl = self.t.wheels / record.read_text().strip()
            if whl.exists():
                return whl
        src = self.unpack(sdist, self.t.work / key)
        whl = self.build_tree(src, label=sdist.name, config=config)
        record.parent.mkdir(exist_ok=True)
        record.write_text(whl.name)
        shutil.rmtree(self.t.work / key, ignore_errors=True)
        return whl

    def build_tree(self, src: Path, label: str, config=None) -> Path:
        pyproject = src / "pyproject.toml"
        bs = tomllib.loads(pyproject.read_text()).get("build-system", {}) if pyproject.exists() else {}
        requires = bs.get("requires", ["setuptools>=40.8.0"])
        backend = bs.get("build-backend", "setuptools.build_meta:__legacy__")
        env = self.build_env(requires)
        logfile = self.t.dir / "logs" / f"{label}.log"
        logfile.parent.mkdir(exist_ok=True)
        cross_env = self.t.env()

        def runner(cmd, cwd=None, extra_environ=None):
            e = dict(cross_env)
            e.update(extra_environ or {})
            with open(logfile, "a") as f:
                r = subprocess.run(cmd, cwd=cwd, env=e, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode:
                tail = logfile.read_text().splitlines()[-40:]
                raise BuildError(f"{label}: build backend failed (log {logfile}):\n"
                                 + "\n".join(tail))

        config = dict(config or {})
        if backend.startswith("mesonpy"):
            config["setup-args"] = [f"--cross-file={self.t.cross / 'meson-cross.ini'}",
                                    *config.get("setup-args", [])]
        logfile.write_text(f"# {label}: {backend}, build requires {requires}, config {config}\n")
        caller = pyproject_hooks.BuildBackendHookCaller(
            str(src), backend, bs.get("backend-path"),
            python_executable=str(env / "bin" / "python"), runner=runner)
        extra = caller.get_requires_for_build_wheel(config)
        missing = [r for r in extra if not self.satisfied(env, r)]
        if missing:
            self.install_native(env, missing)
        log(f"build {label} ({backend})")
        out = Path(tempfile.mkdtemp(dir=self.t.work))
        name = caller.build_wheel(str(out), config)
        whl = out / name
        self.check_wheel(whl)
        dest = self.t.wheels / name
        shutil.move(whl, dest)
        shutil.rmtree(out)
        log(f"built {name}")
        return dest

    def satisfied(self, env, req):
        r = Requirement(req)
        code = ("import importlib.metadata as m, sys\n"
                "try: print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError: pass\n")
        v = subprocess.run([str(env / "bin" / "python"), "-c", code, r.name],
                           capture_output=True, text=True).stdout.strip()
        return bool(v) and r.specifier.contains(v, prereleases=True)

    def check_wheel(self, whl: Path):
        """A wheel with binaries must carry the target's tag and only WebAssembly binaries."""
        _, _, _, tags = parse_wheel_filename(whl.name)
        with zipfile.ZipFile(whl) as z:
            binaries = [n for n in z.namelist() if n.endswith((".so", ".pyd", ".dylib"))]
            for n in binaries:
                if z.read(n)[:4] != b"\0asm":
                    raise BuildError(f"{whl.name}: {n} is not a WebAssembly module")
                if not n.endswith(self.t.vars["EXT_SUFFIX"]) and not n.endswith(".abi3.so"):
                    log(f"note: {whl.name}: {n} does not end in {self.t.vars['EXT_SUFFIX']}")
        supported = set(self.t.tags)
        if not any(str(t) in supported for t in tags):
            raise BuildError(f"{whl.name}: no tag the guest accepts ({self.t.tags[0]}, ...)")
        if binaries and all(t.platform == "any" for t in tags):
            raise BuildError(f"{whl.name}: has binaries but is tagged for any platform")

    # ---- install -------------------------------------------------------------------------
    def install(self, site: Path, items):
        """pip install --target SITE for the guest's tags; builds missing dependencies."""
        py = self.t.tags[0].split("-")[0]                       # cp313
        args = self.pip + ["install", "-q", "--target", str(site), "--upgrade",
                           "--only-binary", ":all:", "--platform", self.t.platform_tag,
                           "--python-version", py[2:3] + "." + py[3:], "--implementation",
                           py[:2], "--abi", py, "--find-links", str(self.t.wheels)]
        for _ in range(30):
            r = subprocess.run(args + items, capture_output=True, text=True)
            if r.returncode == 0:
                sys.stderr.write(r.stdout)
                return
            m = re.search(r"No matching distribution found for (\S+)", r.stderr + r.stdout)
            if not m:
                raise BuildError(f"pip install failed:\n{r.stdout}{r.stderr}")
            dep = m.group(1)
            log(f"no wheel of {dep} for {self.t.platform_tag}: building it from its sdist")
            self.build_sdist(self.download_sdist(dep))
        raise BuildError("too many rounds of dependency building")


def requirement_lines(path: Path):
    """The requirement lines of a requirements file (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            yield line


def main():
    ap = argparse.ArgumentParser(prog="build-package")
    ap.add_argument("--prefix", required=True, type=Path)
    ap.add_argument("--native", required=True)
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--site", type=Path)
    ap.add_argument("--wheels-only", action="store_true",
                    help="build the wheels, print their paths, install nothing")
    ap.add_argument("-r", "--requirement", action="append", type=Path, default=[])
    ap.add_argument("--prefer-wheels", action="store_true",
                    help="install a requirement from a wheel when PyPI has one for the guest "
                         "(a pure-Python one), instead of building its sdist")
    ap.add_argument("-C", "--config-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="PEP 517 config setting for every package built (as pip -C)")
    ap.add_argument("items", nargs="*", metavar="REQ_OR_PATH")
    a = ap.parse_args()
    try:
        t = Target(a.prefix.resolve(), a.cache, a.native)
        b = Builder(t, a.cache)
        site = (a.site or site_dir_for(a.cache, a.prefix.resolve())).resolve()
        config = {}
        for kv in a.config_setting:
            k, _, v = kv.partition("=")
            config[k] = [*config[k], v] if isinstance(config.get(k), list) else (
                [config[k], v] if k in config else v)
        to_install, built = [], []
        for rf in a.requirement:
            for line in requirement_lines(rf):
                if "--hash" in line:
                    # Pinned sdist: build exactly that file, install that version.
                    whl = b.build_sdist(b.download_sdist(line), config)
                    built.append(whl)
                    to_install.append(str(whl))
                else:
                    to_install.append(line)
        for item in a.items:
            p = Path(item)
            if p.is_dir():
                whl = b.build_tree(p.resolve(), label=p.resolve().name, config=config)
            elif p.is_file() and p.name.endswith(".whl"):
                whl = p.resolve()
            elif p.is_file():
                whl = b.build_sdist(p.resolve(), config)
            elif a.prefer_wheels:
                Requirement(item)            # pip resolves it: a wheel, else a build
                to_install.append(item)
                continue
            else:
                # Built from its sdist, even when PyPI has a pure-Python wheel (aiohttp, yarl,
                # multidict, ... publish one without their extension modules). pip resolves
                # the dependencies: a wheel for the guest's tags, else a build.
                whl = b.build_sdist(b.download_sdist(item), config)
            built.append(whl)
            to_install.append(str(whl))
        if a.wheels_only:
            for w in built:
                print(w)
            return 0
        if to_install:
            site.mkdir(parents=True, exist_ok=True)
            b.install(site, to_install)
        log(f"installed into {site} (run-python puts it on sys.path)")
        print(site)
        return 0
    except (BuildError, subprocess.CalledProcessError, pyproject_hooks.BackendUnavailable) as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
