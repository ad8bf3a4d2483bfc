"""The wasix-dl Python demo: CPython 3.13 built for WASIX, with its C extension modules and
demo_ext loaded as shared libraries by wasix-dl. Run it with python-demo/run-python demo.py."""
import _struct
import json
import math
import sys

import demo_ext

print(f"Python {sys.version.split()[0]} on {sys.platform}, loaded by {demo_ext.built_for}")
for name in ("math", "_json", "_struct", "demo_ext"):
    print(f"  {name:9} from {sys.modules[name].__file__}")

print("math.sqrt(16.0) =", math.sqrt(16.0))
print("demo_ext.add(40, 2) =", demo_ext.add(40, 2))
print("demo_ext.fib(100) =", demo_ext.fib(100))
print("demo_ext.checksum(b'Wikipedia') =", hex(demo_ext.checksum(b"Wikipedia")))
print("squares from C calling Python:", demo_ext.apply(lambda x: x * x, range(6)))

counter = demo_ext.Counter(start=10, step=5)
counter.increment()
counter.increment(3)
print(counter)

try:
    demo_ext.fib(-1)
except ValueError as e:
    print("ValueError:", e)
try:
    demo_ext.apply(lambda x: None, [1])
except demo_ext.DemoError as e:
    print("DemoError:", e)

print("json round trip:", json.loads(json.dumps({"calls into demo_ext": demo_ext.calls()})))

# Threads: workers fed through a queue.Queue, and a ThreadPoolExecutor, calling into demo_ext
# and math (loaded by the main thread; every thread has its own instance of each library).
import queue  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

jobs, done = queue.Queue(), queue.Queue()


def worker():
    while (n := jobs.get()) is not None:
        done.put((n, demo_ext.fib(n), threading.current_thread().name))


workers = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(4)]
for w in workers:
    w.start()
for n in range(90, 100):
    jobs.put(n)
for w in workers:
    jobs.put(None)
for w in workers:
    w.join()
fibs = sorted(done.get() for _ in range(10))
print(f"4 threading.Thread workers through a queue.Queue: {len(fibs)} results,",
      f"fib({fibs[-1][0]}) = {fibs[-1][1]}")
with ThreadPoolExecutor(max_workers=4) as pool:
    roots = list(pool.map(math.isqrt, [n * n for n in range(10**6, 10**6 + 8)]))
    sums = list(pool.map(lambda b: hex(demo_ext.checksum(b)), [b"Wikipedia", b"wasix-dl"]))
print("ThreadPoolExecutor(4): isqrt ->", roots[0], "...", roots[-1], "checksums", sums)
