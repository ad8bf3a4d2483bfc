"""`python -m test ARGS`, for this WASIX build of CPython. CPython's test support assumes two
things about WASI that are not true under wasix-dl, and would skip the tests that need them:

- test.test_importlib.util assumes WASI cannot dlopen and hides the extension-module tests
  (they skip with "Requires dynamic loading support."). This fills in util.EXTENSIONS the way
  CPython does on every other platform.
- test.support.threading_helper assumes WASI cannot start threads (can_start_thread is False
  for sys.platform == "wasi", so every test marked requires_working_threading skips with
  "requires threading support", whole files such as test_threading included). This build is
  threaded (sys.thread_info, threading): after starting and joining a thread, can_start_thread
  is True, as on every other platform. It also gives libregrtest its faulthandler watchdog
  (--timeout), which runs in a thread.

Then it runs libregrtest in this process."""
import os
import sys
import threading
import types
from importlib import machinery

import test.test_importlib.util as util
from test.support import threading_helper

extensions = types.SimpleNamespace(
    name="_testsinglephase", path=None, ext=None, filename=None, file_path=None
)
for path in sys.path:
    for ext in machinery.EXTENSION_SUFFIXES:
        file_path = os.path.join(path, extensions.name + ext)
        if extensions.path is None and os.path.exists(file_path):
            extensions.path, extensions.ext = path, ext
            extensions.filename, extensions.file_path = extensions.name + ext, file_path
if extensions.path is None:
    sys.exit(f"{extensions.name} is not on sys.path: is this the shared-extensions build?")
util.EXTENSIONS = extensions

if not threading_helper.can_start_thread:
    started = []
    thread = threading.Thread(target=started.append, args=(threading.get_ident(),))
    thread.start()
    thread.join()
    if not started:
        sys.exit("a thread did not run: is this the threaded build?")
    threading_helper.can_start_thread = True

from test.libregrtest.main import main  # noqa: E402

main()
