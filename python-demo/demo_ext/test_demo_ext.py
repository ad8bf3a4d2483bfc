"""demo_ext's tests, run under wasix-dl by tests/python.rs (python-demo/run-python -m unittest)."""
import importlib.machinery
import importlib.util
import sys
import unittest

import demo_ext


class LoadedAsASharedLibrary(unittest.TestCase):
    def test_comes_from_a_shared_library(self):
        self.assertTrue(demo_ext.__file__.endswith(".so"), demo_ext.__file__)
        self.assertIsInstance(demo_ext.__loader__, importlib.machinery.ExtensionFileLoader)

    def test_each_module_object_has_its_own_state(self):
        # Multi-phase init: a second module object from the same .so starts with fresh state.
        demo_ext.add(1, 2)
        spec = importlib.util.find_spec("demo_ext")
        second = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(second)
        self.assertIsNot(second, demo_ext)
        self.assertEqual(second.calls(), 0)
        self.assertGreater(demo_ext.calls(), 0)
        second.add(1, 1)
        self.assertEqual(second.calls(), 1)
        self.assertIsNot(second.DemoError, demo_ext.DemoError)


class Functions(unittest.TestCase):
    def test_add(self):
        self.assertEqual(demo_ext.add(40, 2), 42)
        self.assertEqual(demo_ext.add(-5, 3), -2)

    def test_add_overflow_is_an_overflow_error(self):
        with self.assertRaisesRegex(OverflowError, "does not fit in a C long"):
            demo_ext.add(2**31 - 1, 1)  # a C long is 32 bits on wasm32

    def test_wrong_argument_types_are_type_errors(self):
        with self.assertRaises(TypeError):
            demo_ext.add("1", 2)
        with self.assertRaises(TypeError):
            demo_ext.checksum("text is not bytes")

    def test_fib_builds_big_ints(self):
        self.assertEqual([demo_ext.fib(n) for n in range(10)], [0, 1, 1, 2, 3, 5, 8, 13, 21, 34])
        self.assertEqual(demo_ext.fib(100), 354224848179261915075)

    def test_fib_of_a_negative_number_is_a_value_error(self):
        with self.assertRaisesRegex(ValueError, r"fib\(\) needs n >= 0, got -3"):
            demo_ext.fib(-3)

    def test_checksum_is_adler32_over_any_buffer(self):
        def adler32(data, seed=1):  # zlib's, in Python (zlib is not built for WASI here)
            a, b = seed & 0xFFFF, seed >> 16
            for byte in data:
                a = (a + byte) % 65521
                b = (b + a) % 65521
            return b << 16 | a

        data = b"Wikipedia" * 1000
        self.assertEqual(demo_ext.checksum(b"Wikipedia"), 0x11E60398)
        self.assertEqual(demo_ext.checksum(data), adler32(data))
        self.assertEqual(demo_ext.checksum(bytearray(data)), adler32(data))
        self.assertEqual(demo_ext.checksum(memoryview(data)[10:]), adler32(data[10:]))
        self.assertEqual(demo_ext.checksum(data, seed=7), adler32(data, 7))
        with self.assertRaises(TypeError):
            demo_ext.checksum(data, 7)  # seed is keyword-only


class CallsBackIntoPython(unittest.TestCase):
    def test_apply_calls_a_python_function(self):
        self.assertEqual(demo_ext.apply(lambda x: x * x, range(5)), [0, 1, 4, 9, 16])
        self.assertEqual(demo_ext.apply(str.upper, iter(["a", "b"])), ["A", "B"])

    def test_an_exception_in_the_callback_passes_through_c(self):
        def boom(x):
            if x == 2:
                raise KeyError(x)
            return x

        with self.assertRaises(KeyError) as caught:
            demo_ext.apply(boom, [1, 2, 3])
        self.assertEqual(caught.exception.args, (2,))

    def test_module_exception_class(self):
        self.assertTrue(issubclass(demo_ext.DemoError, ValueError))
        self.assertEqual(demo_ext.DemoError.__module__, "demo_ext")
        with self.assertRaisesRegex(demo_ext.DemoError, "returned None for 1"):
            demo_ext.apply(lambda x: None, [1])
        with self.assertRaises(demo_ext.DemoError) as caught:
            demo_ext.fail("from Python")
        self.assertEqual(str(caught.exception), "from Python")

    def test_not_callable(self):
        with self.assertRaisesRegex(TypeError, "needs a callable, not int"):
            demo_ext.apply(3, [1])


class CounterType(unittest.TestCase):
    def test_methods_and_property(self):
        c = demo_ext.Counter(start=10, step=5)
        self.assertEqual(c.increment(), 15)
        self.assertEqual(c.increment(3), 30)
        self.assertEqual(c.value, 30)
        c.value = -4
        self.assertEqual(repr(c), "Counter(value=-4, step=5)")
        self.assertIsNone(c.reset())
        self.assertEqual(c.value, 0)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "step must not be 0"):
            demo_ext.Counter(step=0)
        c = demo_ext.Counter()
        with self.assertRaisesRegex(TypeError, "must be an int, not str"):
            c.value = "x"
        with self.assertRaises(AttributeError):
            del c.value
        c.value = 2**63 - 1
        with self.assertRaises(OverflowError):
            c.increment()

    def test_subclass_from_python(self):
        class Doubling(demo_ext.Counter):
            def twice(self):
                self.increment()
                return self.increment()

        d = Doubling(step=2)
        self.assertEqual(d.twice(), 4)
        self.assertIsInstance(d, demo_ext.Counter)

    def test_instances_give_back_their_reference_to_the_type(self):
        before = sys.getrefcount(demo_ext.Counter)
        kept = [demo_ext.Counter(start=i) for i in range(1000)]
        self.assertEqual(sys.getrefcount(demo_ext.Counter), before + 1000)
        del kept
        self.assertEqual(sys.getrefcount(demo_ext.Counter), before)

if __name__ == "__main__":
    unittest.main()
