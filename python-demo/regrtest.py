"""`python -m test ARGS`, for this WASIX build of CPython. CPython's test.test_importlib.util
assumes that WASI cannot dlopen and hides the extension-module tests (they skip with
"Requires dynamic loading support."); under wasix-dl it can. This fills in util.EXTENSIONS the
way CPython does on every other platform, then runs libregrtest in this process."""
import os
import sys
import types
from importlib import machinery

import test.test_importlib.util as util

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

from test.libregrtest.main import main  # noqa: E402

main()
