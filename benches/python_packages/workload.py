"""One workload per package, timed inside the interpreter (start-up and imports excluded).
Run by benches/python_packages.sh, under wasix-dl and natively; prints one JSON line:
{package: [seconds of each repetition]}."""
import json
import sys
import time


def markupsafe_work():
    from markupsafe import escape
    import markupsafe._speedups  # noqa: F401  (the C version, not the fallback)
    text = "<script>alert('x & y')</script> plain text with \"quotes\" " * 40
    for _ in range(20000):
        escape(text)


def msgpack_work():
    import msgpack
    import msgpack._cmsgpack  # noqa: F401
    doc = {"id": 12345, "name": "wasix-dl", "tags": ["a", "b", "c"] * 5,
           "values": list(range(200)), "nested": {"x": 1.5, "y": None, "z": b"bytes" * 10}}
    for _ in range(20000):
        msgpack.unpackb(msgpack.packb(doc))


def ujson_work():
    import ujson
    doc = {"id": 12345, "name": "wasix-dl", "tags": ["a", "b", "c"] * 5,
           "values": list(range(200)), "nested": {"x": 1.5, "y": None, "s": "text " * 20}}
    for _ in range(20000):
        ujson.loads(ujson.dumps(doc))


WORK = {"markupsafe": markupsafe_work, "msgpack": msgpack_work, "ujson": ujson_work}

if __name__ == "__main__":
    reps = int(sys.argv[1])
    result = {}
    for name in sys.argv[2:]:
        WORK[name]()                       # warm-up (imports, caches)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            WORK[name]()
            times.append(time.perf_counter() - t)
        result[name] = times
    print(json.dumps(result))
