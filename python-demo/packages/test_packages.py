"""The work of python-demo/test-packages.sh (run by build-package's host tools venv).

Builds every package of requirements.txt for the WASIX CPython (build_package.py), installs them
with pytest and the test requirements into one site directory, then runs each package's own test
suite (copied from its sdist) under run-python with pytest's defaults, and compares every
failure, error, skip and deselected test with expected.toml. Prints a per-package summary; the
exit status is 1 when anything happened that expected.toml does not list.
"""
import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import build_package as bp

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent
REQUIREMENTS = HERE / "requirements.txt"
EXPECTED = HERE / "expected.toml"
PYTEST = "pytest==9.2.0"
TIMEOUT = 1200          # seconds per suite


def log(msg):
    print(f"[test-packages] {msg}", file=sys.stderr, flush=True)


def matches(nodeid, pattern):
    """A node id matches itself (brackets included) or an fnmatch pattern."""
    return nodeid == pattern or fnmatch.fnmatchcase(nodeid, pattern)


def run_python(prefix, site, args, cwd, env_extra=None, timeout=None):
    env = dict(os.environ, WASIX_PYTHON_SITE=str(site))
    if prefix:
        env["WASIX_PYTHON_PREFIX"] = str(prefix)
    # Inside the guest: the report file and anything else the caller passes.
    extra = " ".join(f"--env {k}={v}" for k, v in (env_extra or {}).items())
    env["WASIX_DL_RUN_ARGS"] = (env.get("WASIX_DL_RUN_ARGS", "") + " " + extra).strip()
    return subprocess.run([str(DEMO / "run-python"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def main():
    ap = argparse.ArgumentParser(prog="test-packages.sh")
    ap.add_argument("--prefix", required=True, type=Path)
    ap.add_argument("--prefix-explicit", action="store_true")
    ap.add_argument("--native", required=True)
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("packages", nargs="*", help="only these packages (default: all)")
    a = ap.parse_args()

    expected = tomllib.loads(EXPECTED.read_text())
    lines = {canonicalize_name(Requirement(l.split()[0]).name): l
             for l in bp.requirement_lines(REQUIREMENTS)}
    unknown = set(lines) ^ set(map(canonicalize_name, expected))
    if unknown:
        log(f"requirements.txt and expected.toml disagree on {sorted(unknown)}")
        return 1
    names = [n for n in expected if not a.packages or n in a.packages]

    t = bp.Target(a.prefix.resolve(), a.cache, a.native)
    b = bp.Builder(t, a.cache)
    test_reqs = sorted({r for n in expected for r in expected[n].get("test-requires", [])})
    key = bp.digest(t.key, REQUIREMENTS.read_bytes(), PYTEST, *test_reqs,
                    *(p.read_bytes() for p in (HERE / "test_packages.py", DEMO / "test-packages.sh",
                                               HERE / "wasix_report.py")))
    out = a.cache / f"python-pkgtest-{key}"
    site = out / "site"
    state_file = out / "build.json"

    # ---- build and install (once per key) --------------------------------------------------
    if not (out / ".built").exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        state = {}
        cfg_all = expected
        for name in expected:
            start = time.monotonic()
            try:
                sdist = b.download_sdist(lines[canonicalize_name(name)])
                whl = b.build_sdist(sdist, cfg_all[name].get("config-settings"))
                state[name] = {"wheel": str(whl), "sdist": str(sdist)}
            except (bp.BuildError, subprocess.CalledProcessError) as e:
                log(f"{name}: build failed: {e}")
                state[name] = {"error": str(e)[-2000:], "sdist": str(locals().get("sdist", ""))}
            state[name]["build_s"] = round(time.monotonic() - start, 1)
        wheels = [s["wheel"] for s in state.values() if "wheel" in s]
        site.mkdir()
        b.install(site, wheels + [PYTEST, *test_reqs])
        shutil.copy(HERE / "wasix_report.py", site / "wasix_report.py")
        state_file.write_text(json.dumps(state, indent=1))
        (out / ".built").touch()
    state = json.loads(state_file.read_text())
    # Always this install: run-python would otherwise take build-python.sh's, which may be
    # another one (or start building it).
    prefix = a.prefix

    # ---- test ------------------------------------------------------------------------------
    rows, bad = [], []
    for name in names:
        cfg = expected[name]
        st = state[name]
        row = {"name": name, "version": Requirement(lines[canonicalize_name(name)].split()[0])
               .specifier, "lang": cfg["language"], "built": "wheel" in st, "imports": False,
               "passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "deselected": 0,
               "time": 0.0, "note": ""}
        rows.append(row)
        waiting = cfg.get("waiting")
        problems = []
        if not row["built"]:
            problems.append(f"build failed: {st['error'].splitlines()[-1] if st['error'] else ''}")
        else:
            r = run_python(prefix, site, ["-c", f"import {cfg['module']}"], out, timeout=120)
            row["imports"] = r.returncode == 0
            if not row["imports"]:
                last = (r.stderr.strip().splitlines() or ["?"])[-1]
                if waiting:
                    row["note"] = f"waiting: {waiting}"
                    continue
                problems.append(f"import {cfg['module']} failed: {last[:300]}")
            elif waiting:
                problems.append(f"imports now (remove `waiting` from expected.toml)")
        if problems:
            bad.append((name, problems))
            row["note"] = problems[0][:80]
            continue

        # The suite: the listed files of the sdist, without the package's sources (the
        # installed wheel is what runs).
        work = out / "tests" / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        src = b.unpack(Path(st["sdist"]), out / "src" / name)
        for rel in cfg.get("copy", []):
            s, d = src / rel, work / rel
            d.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if s.is_dir() else shutil.copy)(s, d)
        shutil.rmtree(src)
        report = work / ".wasix-report.jsonl"
        args = ["-m", "pytest", "-p", "wasix_report"]
        deselect = cfg.get("deselect", {})
        for nodeid in deselect:
            args += ["--deselect", nodeid]
        for path in cfg.get("ignore", {}):
            args += ["--ignore", path]
        args += cfg.get("args", [])
        start = time.monotonic()
        try:
            r = run_python(prefix, site, args, work, {"WASIX_REPORT": str(report)}, TIMEOUT)
            rc, output = r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = "timeout", str(e.stdout or "")
        row["time"] = round(time.monotonic() - start, 1)
        (out / f"{name}.pytest.log").write_text(output)
        row["deselected"] = len(deselect)

        records = [json.loads(l) for l in report.read_text().splitlines()] if report.exists() else []
        started = [r["start"] for r in records if "start" in r]
        finished = {r["test"] for r in records
                    if "test" in r and (r["when"] == "call" or r["outcome"] != "passed")}
        fails, skips = cfg.get("fail", {}), cfg.get("skip", {})
        seen_fail = set()
        for rec in (r for r in records if "test" in r):
            nid, outcome = rec["test"], rec["outcome"]
            if outcome == "passed":
                row["passed"] += 1
            elif outcome in ("failed", "error"):
                row["failed"] += 1
                pat = next((p for p in fails if matches(nid, p)), None)
                if pat is None:
                    problems.append(f"{outcome}: {nid}: {rec['reason']}")
                seen_fail.add(pat)
            elif outcome == "skipped":
                row["skipped"] += 1
                if not any(matches(nid, p) for p in skips):
                    problems.append(f"skipped, not in expected.toml: {nid}: {rec['reason']}")
            elif outcome == "xfailed":
                row["xfailed"] += 1   # the package's own expectation, on every platform
            elif outcome == "xpassed":
                row["passed"] += 1
        for pat in fails:
            if pat not in seen_fail:
                problems.append(f"expected to fail but did not fail: {pat}")
        crash = cfg.get("crash")
        collect_errors = any(r.get("when") == "collect" for r in records)
        if rc not in (0, 1) and not (rc == 2 and collect_errors):   # 2: collection errors
            crashed = [s for s in started if s not in finished]
            where = crashed[-1] if crashed else "(no test started)"
            trap = [l for l in output.splitlines() if "trapped" in l or "panicked" in l]
            what = (trap or output.strip().splitlines()[-1:] or [""])[0]
            row["note"] = f"crashed in {where}"
            if not crash or crash["message"] not in output:
                problems.append(f"pytest exit {rc} during {where}: {what[-400:]}")
        elif crash:
            problems.append("the expected crash did not happen (remove `crash`, review the "
                            "results)")
        if problems:
            bad.append((name, problems))
            row["note"] = problems[0][:80]
        elif crash:
            row["note"] += " (expected)"

    # ---- summary ---------------------------------------------------------------------------
    hdr = (f"{'package':14} {'version':14} {'lang':8} {'built':5} {'import':6} {'passed':>6} "
           f"{'failed':>6} {'skipped':>7} {'xfail':>5} {'desel':>5} {'time s':>7}  note")
    print(hdr)
    for r in rows:
        print(f"{r['name']:14} {str(r['version']):14} {r['lang']:8} {'yes' if r['built'] else 'NO':5} "
              f"{'yes' if r['imports'] else 'no':6} {r['passed']:6} {r['failed']:6} "
              f"{r['skipped']:7} {r['xfailed']:5} {r['deselected']:5} {r['time']:7.1f}  {r['note']}")
    print(f"logs: {out}")
    for name, problems in bad:
        print(f"\n{name}: NOT AS EXPECTED")
        for p in problems[:40]:
            print(f"  {p}")
        if len(problems) > 40:
            print(f"  ... {len(problems) - 40} more")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
