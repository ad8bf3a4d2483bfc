"""Imports of C extension modules (dlopen) while other threads are blocked or busy, under
wasix-dl: the import returns without waiting for threads in host calls and without stopping
threads that compute; every thread then uses what was imported. Run it with
python-demo/run-python threads_rendezvous.py SCENARIO (tests/python.rs):

  stdin    a thread blocks in sys.stdin.readline() while the main thread imports; the main
           thread says so, and only then is the line the reader waits for written (wasmer's
           #6472: there the import never returns)
  others   a thread in time.sleep(5) while two threads import; an import in a worker while
           the main thread computes

Each check prints one line; the run ends with "all N checks passed"."""
import sys
import threading
import time

from checking import check, done, fresh_import


def stdin():
    got = []
    reading = threading.Event()

    def reader():
        reading.set()
        line = sys.stdin.readline()
        # Modules the main thread imported while this thread was blocked in read().
        got.append((line.strip(), cmath.sqrt(-4), _csv.QUOTE_ALL, _statistics._normal_dist_inv_cdf(0.5, 1, 1)))

    t = threading.Thread(target=reader)
    t.start()
    reading.wait()
    time.sleep(0.1)  # let it block in read()
    global cmath, _csv, _statistics
    cmath = fresh_import("cmath")
    _csv = fresh_import("_csv")
    _statistics = fresh_import("_statistics")
    check("imports returned while a thread was blocked reading stdin", t.is_alive(), True)
    print("main: imported cmath, _csv and _statistics; waiting for the reader", flush=True)
    t.join()
    check("the reader used them after its read", got, [("hello", 2j, 1, 1.0)])


def others():
    # A thread sleeping for 5 s while two threads import.
    sleeper = threading.Thread(target=time.sleep, args=(5,))
    sleeper.start()
    imported = {}

    def importer(name):
        imported[name] = fresh_import(name)

    importers = [threading.Thread(target=importer, args=(n,)) for n in ("_heapq", "_bisect")]
    for t in importers:
        t.start()
    for t in importers:
        t.join()
    check("imports returned while a thread sleeps", sleeper.is_alive(), True)
    heap = [5, 1, 4]
    imported["_heapq"].heapify(heap)
    check("the modules work in the main thread",
          (heap[0], imported["_bisect"].bisect_right([1, 3], 2)), (1, 1))
    sleeper.join()

    # An import in a worker while the main thread computes.
    done = threading.Event()
    result = []

    def worker():
        _decimal = fresh_import("_decimal")
        result.append(str(_decimal.Decimal(1) / _decimal.Decimal(7)))
        done.set()

    w = threading.Thread(target=worker)
    w.start()
    rounds = 0
    while not done.is_set():
        sum(i * i for i in range(1000))
        rounds += 1
    w.join()
    check("a worker imported _decimal while the main thread computed",
          (result, rounds > 0), (["0.1428571428571428571428571429"], True))
    check("the main thread uses it too", str(sys.modules["_decimal"].Decimal(2) / 8), "0.25")


{"stdin": stdin, "others": others}[sys.argv[1]]()
done()
