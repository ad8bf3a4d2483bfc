"""What the thread scripts (threads_extensions.py, threads_rendezvous.py) share: checks that
print one line each and stop the run at the first failure, a closing count, and imports that
must go through dlopen."""
import sys
import sysconfig

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
passed = 0


def check(label, got, expected):
    global passed
    if got != expected:
        sys.exit(f"FAILED {label}: got {got!r}, expected {expected!r}")
    passed += 1
    print(f"ok {label}", flush=True)


def fresh_import(name):
    """Imports `name`, which must not be loaded yet and must be a side module (dlopen)."""
    if name in sys.modules:
        sys.exit(f"{name} is already imported: pick a module nothing imported yet")
    module = __import__(name)
    if not module.__file__.endswith(EXT_SUFFIX):
        sys.exit(f"{name} is not a shared library: {module.__file__}")
    return module


def done():
    print(f"all {passed} checks passed")
