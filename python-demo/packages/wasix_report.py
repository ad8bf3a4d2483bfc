"""pytest plugin of test-packages.sh, loaded inside the guest with `-p wasix_report`.

It only reports: one JSON line per test outcome, appended and flushed as tests finish (so a run
that crashes the interpreter still tells what ran, and `start` names the test that crashed it).
Output file: $WASIX_REPORT.
"""
import json
import os
import re

_path = os.environ.get("WASIX_REPORT")


def _write(record):
    if _path:
        with open(_path, "a") as f:
            f.write(json.dumps(record) + "\n")


def pytest_collectreport(report):
    if report.failed:
        last = report.longreprtext.strip().splitlines()[-1] if report.longreprtext else ""
        # A module named by --pyargs fails in the session's collector (empty node id): the
        # module's path is in the message.
        nodeid = report.nodeid
        m = re.search(r"importing test module '([^']+)'", report.longreprtext or "")
        if not nodeid and m:
            nodeid = m.group(1)
        _write({"test": nodeid, "when": "collect", "outcome": "error",
                "reason": last[:300]})


def pytest_runtest_logstart(nodeid, location):
    _write({"start": nodeid})


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome
        reason = ""
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            reason = report.wasxfail
        elif report.skipped and isinstance(report.longrepr, tuple):
            reason = report.longrepr[2]
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
            reason = report.longreprtext.strip().splitlines()[-1] if report.longreprtext else ""
        _write({"test": report.nodeid, "when": report.when, "outcome": outcome,
                "reason": reason[:300]})
