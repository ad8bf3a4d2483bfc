"""Runs simplejson's own test suite under wasix-dl: every test twice, with the C speedups
(simplejson/_speedups*.so, a side module) and without them. Only tests that need what this
WASI build of CPython lacks are skipped, each with its reason. Exits non-zero on any failure,
or if the speedups did not load."""
import sys
import unittest

import simplejson
import simplejson._speedups
from simplejson.tests import all_tests_suite

NEEDS_WHAT_WASI_LACKS = {
    "simplejson.tests.test_tool.": "runs simplejson.tool in a subprocess: WASI has no processes",
    "simplejson.tests.test_iterable.TestIterable.test_unbounded_iterable_recursion_is_guarded":
        "runs a script in a subprocess: WASI has no processes",
}


def skip_what_wasi_lacks(suite):
    """Marks the tests that cannot run here as skipped; returns how many."""
    skipped = 0
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            skipped += skip_what_wasi_lacks(test)
            continue
        for prefix, why in NEEDS_WHAT_WASI_LACKS.items():
            if test.id().startswith(prefix):
                name = test._testMethodName
                setattr(test, name, unittest.skip(why)(getattr(test, name)))
                skipped += 1
    return skipped


print("speedups:", simplejson._speedups.__file__)
if simplejson._import_c_make_encoder() is None:
    sys.exit("simplejson's C speedups did not load")
suite = all_tests_suite()
wasi_skipped = skip_what_wasi_lacks(suite)
result = unittest.TextTestRunner(stream=sys.stdout).run(suite)
print(f"ran {result.testsRun}, failures {len(result.failures)}, errors {len(result.errors)}, "
      f"skipped {len(result.skipped)} (for WASI: {wasi_skipped})")
sys.exit(not result.wasSuccessful())
