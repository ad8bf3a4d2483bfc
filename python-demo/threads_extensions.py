"""C extension modules loaded by one thread and used from others, under wasix-dl: every thread
has its own instance of every loaded module, and a library one thread loads (dlopen) is in
every thread before the import returns. Run it with python-demo/run-python threads_extensions.py;
it prints one line per check and ends with "all N checks passed" (tests/python.rs)."""
import threading
from concurrent.futures import ThreadPoolExecutor

from checking import check, done, fresh_import


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


# 1. Threads that already run when another thread loads an extension: 4 threads wait at a
#    barrier, one of them imports demo_ext and binascii (dlopen), then all use them.
barrier = threading.Barrier(4)
results = {}


def use_after_another_thread_loads(index):
    if index == 0:
        fresh_import("demo_ext")
        fresh_import("binascii")
    barrier.wait()
    import binascii
    import demo_ext

    counter = demo_ext.Counter(start=index, step=2)
    for _ in range(100):
        counter.increment()
    results[index] = (
        demo_ext.fib(80 + index),
        binascii.crc32(b"thread %d" % index),
        counter.value,
        demo_ext.apply(lambda x: x * index, range(4)),
    )


threads = [threading.Thread(target=use_after_another_thread_loads, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import binascii  # noqa: E402

check(
    "4 running threads use demo_ext and binascii loaded by one of them",
    [results[i] for i in range(4)],
    [
        (fib(80 + i), binascii.crc32(b"thread %d" % i), i + 200, [x * i for x in range(4)])
        for i in range(4)
    ],
)

# 2. A thread pool whose 4 threads all exist before one task imports unicodedata and _bisect;
#    then every thread of the pool uses them.
with ThreadPoolExecutor(max_workers=4) as pool:
    ready = threading.Barrier(5)
    started = [pool.submit(ready.wait) for _ in range(4)]
    ready.wait()
    for f in started:
        f.result()
    check("thread pool started", len(pool._threads), 4)

    def load():
        fresh_import("unicodedata")
        fresh_import("_bisect")
        return threading.get_ident()

    loader = pool.submit(load).result()

    def use(c):
        import _bisect
        import unicodedata

        return unicodedata.name(c), _bisect.bisect_right([10, 20, 30], ord(c) % 40), threading.get_ident()

    chars = "aé€中😀" * 20
    out = list(pool.map(use, chars))
    import _bisect
    import unicodedata

    check(
        "every pool thread uses unicodedata and _bisect loaded by one of them",
        [o[:2] for o in out],
        [(unicodedata.name(c), _bisect.bisect_right([10, 20, 30], ord(c) % 40)) for c in chars],
    )
    users = {o[2] for o in out} | {loader}
    print(f"   ({len(users)} pool threads took part)")

# 3. Several threads loading different extensions at the same time, then each using all of
#    them (concurrent dlopen).
fresh = ["_sha1", "_statistics", "_csv", "_zoneinfo"]
barrier = threading.Barrier(len(fresh))


def load_then_use_all(name):
    try:
        barrier.wait()
        fresh_import(name)
        barrier.wait()
    except BaseException:
        barrier.abort()  # the other threads stop waiting
        raise
    import _csv
    import _sha1
    import _statistics
    import _zoneinfo

    return (
        _sha1.sha1(b"abc").hexdigest(),
        round(_statistics._normal_dist_inv_cdf(0.975, 0.0, 1.0), 6),
        _csv.QUOTE_ALL,
        _zoneinfo.ZoneInfo.__name__,
    )


with ThreadPoolExecutor(max_workers=len(fresh)) as pool:
    out = list(pool.map(load_then_use_all, fresh))
check("4 threads load 4 extensions at once, then each uses all 4", out,
      [("a9993e364706816aba3e25717850c26c9cd0d89d", 1.959964, 1, "ZoneInfo")] * len(fresh))

# 4. Objects made by C code in one thread, used in another; a C exception raised in a worker
#    reaches the caller through the future.
import demo_ext  # noqa: E402

counters = [demo_ext.Counter(start=0, step=1) for _ in range(8)]
with ThreadPoolExecutor(max_workers=4) as pool:
    for _ in range(3):
        list(pool.map(lambda c: c.increment(10), counters))
    failed = pool.submit(demo_ext.fail, "from a worker thread")
    try:
        failed.result()
        raised = None
    except demo_ext.DemoError as e:
        raised = str(e)
check("Counters made by main, incremented by pool threads", [c.value for c in counters], [30] * 8)
check("DemoError raised in a worker", raised, "from a worker thread")
check("threads left", threading.active_count(), 1)

done()
