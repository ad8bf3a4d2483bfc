"""fpcast_ext's tests (tests/python.rs): functions defined with fewer parameters than CPython
calls them with work as they do natively instead of trapping."""
import gc
import unittest

import fpcast_ext
from fpcast_ext import Point


class ModuleFunctions(unittest.TestCase):
    def test_noargs_without_the_unused_argument(self):
        self.assertEqual(fpcast_ext.answer(), 42)

    def test_noargs_without_any_parameter(self):
        self.assertEqual(fpcast_ext.nothing(), "nothing")

    def test_keywords_flavour_without_kwargs(self):
        self.assertEqual(fpcast_ext.count_args(1, 2, 3), 3)
        self.assertEqual(fpcast_ext.count_args(1, key="ignored"), 1)

    def test_argument_errors_still_raise(self):
        with self.assertRaises(TypeError):
            fpcast_ext.answer(1)


class TypeSlots(unittest.TestCase):
    def test_new_and_init_without_kwds(self):
        p = Point(3, -4)
        self.assertEqual((p.x, p.sum), (3, -1))
        with self.assertRaises(TypeError):
            Point("a", "b")

    def test_call_without_kwds(self):
        self.assertEqual(Point(1, 2)(3), (3, 6))


class GettersSettersAndMethods(unittest.TestCase):
    def test_getter_and_setter_without_closure(self):
        p = Point(1, 1)
        p.x = 10
        self.assertEqual(p.x, 10)
        self.assertEqual(p.sum, 11)
        with self.assertRaises(TypeError):
            p.x = "not a number"
        with self.assertRaises(AttributeError):
            del p.x
        with self.assertRaises(AttributeError):
            p.sum = 3

    def test_methods(self):
        p = Point(-2, 5)
        self.assertEqual(p.norm1(), 7)
        self.assertEqual(p.norm1_exact(), 7)
        self.assertEqual(p.moved(), (-2, 5))
        self.assertEqual(p.moved(1, 1), (-1, 6))

    def test_unbound_method_and_getattr(self):
        p = Point(2, 2)
        self.assertEqual(Point.norm1(p), 4)
        self.assertEqual(getattr(p, "x"), 2)
        self.assertEqual(list(map(Point.norm1, [p, Point(0, 1)])), [4, 1])


class GarbageCollection(unittest.TestCase):
    def test_tp_clear_that_returns_nothing_breaks_a_cycle(self):
        a, b = fpcast_ext.Node(), fpcast_ext.Node()
        a.other, b.other = b, a
        del a, b
        self.assertGreaterEqual(gc.collect(), 2)


if __name__ == "__main__":
    unittest.main()
