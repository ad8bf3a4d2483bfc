/* demo_ext: a C extension module for the WASIX build of CPython, loaded by wasix-dl as a
 * shared library. It uses the parts of the C API that real extensions use:
 *   - module functions with positional and keyword arguments (add, fib, checksum, apply),
 *   - a heap type with methods, a property and __repr__ (Counter),
 *   - exceptions that reach Python as the right class: built-in ones (ValueError,
 *     OverflowError, TypeError) and the module's own DemoError (a subclass of ValueError),
 *   - calls back into Python (apply calls a Python callable, errors propagate through C),
 *   - per-module state (multi-phase initialisation, PEP 489): the DemoError class, the Counter
 *     type and a count of the calls made into the module, separate for every module object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    PyObject *demo_error;  /* the DemoError class */
    PyObject *counter_type;
    long calls;            /* calls into the module's functions, for calls() */
} demo_state;

static demo_state *state_of(PyObject *module) {
    return (demo_state *)PyModule_GetState(module);
}

/* ---- module functions ------------------------------------------------------------------ */

static PyObject *demo_add(PyObject *module, PyObject *args) {
    long a, b, sum;
    if (!PyArg_ParseTuple(args, "ll:add", &a, &b))
        return NULL;
    state_of(module)->calls++;
    if (__builtin_add_overflow(a, b, &sum)) {
        PyErr_Format(PyExc_OverflowError, "add(%ld, %ld) does not fit in a C long", a, b);
        return NULL;
    }
    return PyLong_FromLong(sum);
}

/* fib(n): the n-th Fibonacci number as a Python int of any size (built from C, no recursion). */
static PyObject *demo_fib(PyObject *module, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    state_of(module)->calls++;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "fib() needs n >= 0, got %ld", n);
        return NULL;
    }
    PyObject *a = PyLong_FromLong(0), *b = PyLong_FromLong(1);
    for (long i = 0; i < n && a && b; i++) {
        PyObject *next = PyNumber_Add(a, b);
        Py_SETREF(a, b);
        b = next;
    }
    Py_XDECREF(b);
    return a;
}

/* checksum(data, *, seed=1): Adler-32 of a bytes-like object, through the buffer protocol. */
static PyObject *demo_checksum(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"data", "seed", NULL};
    Py_buffer view;
    unsigned long seed = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|$k:checksum", keywords, &view, &seed))
        return NULL;
    state_of(module)->calls++;
    uint32_t a = seed & 0xffff, b = (seed >> 16) & 0xffff;
    const unsigned char *p = view.buf;
    for (Py_ssize_t i = 0; i < view.len; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(((unsigned long)b << 16) | a);
}

/* apply(func, iterable): [func(x) for x in iterable], called from C. An exception raised by
 * func leaves through here unchanged; a result of None raises DemoError. */
static PyObject *demo_apply(PyObject *module, PyObject *args) {
    PyObject *func, *iterable;
    if (!PyArg_ParseTuple(args, "OO:apply", &func, &iterable))
        return NULL;
    demo_state *st = state_of(module);
    st->calls++;
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "apply() needs a callable, not %T", func);
        return NULL;
    }
    PyObject *it = PyObject_GetIter(iterable);
    if (!it)
        return NULL;
    PyObject *out = PyList_New(0), *item;
    while (out && (item = PyIter_Next(it))) {
        PyObject *r = PyObject_CallOneArg(func, item);
        if (r == Py_None) {
            PyErr_Format(st->demo_error, "apply(): %R returned None for %R", func, item);
            Py_CLEAR(r);
        }
        Py_DECREF(item);
        if (!r || PyList_Append(out, r) < 0)
            Py_CLEAR(out);
        Py_XDECREF(r);
    }
    Py_DECREF(it);
    if (out && PyErr_Occurred())
        Py_CLEAR(out);
    return out;
}

static PyObject *demo_fail(PyObject *module, PyObject *message) {
    PyErr_SetObject(state_of(module)->demo_error, message);
    return NULL;
}

static PyObject *demo_calls(PyObject *module, PyObject *unused) {
    return PyLong_FromLong(state_of(module)->calls);
}

/* ---- Counter: a heap type ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    long long value;
    long long step;
} Counter;

static int Counter_init(Counter *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"start", "step", NULL};
    self->value = 0;
    self->step = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|LL:Counter", keywords, &self->value,
                                     &self->step))
        return -1;
    if (self->step == 0) {
        PyErr_SetString(PyExc_ValueError, "Counter step must not be 0");
        return -1;
    }
    return 0;
}

/* increment(times=1): advances by step, `times` times; returns the new value. */
static PyObject *Counter_increment(Counter *self, PyObject *const *args, Py_ssize_t nargs) {
    long long times = 1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "increment() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1) {
        times = PyLong_AsLongLong(args[0]);
        if (times == -1 && PyErr_Occurred())
            return NULL;
    }
    long long delta, value;
    if (__builtin_mul_overflow(times, self->step, &delta) ||
        __builtin_add_overflow(self->value, delta, &value)) {
        PyErr_SetString(PyExc_OverflowError, "Counter value out of range");
        return NULL;
    }
    self->value = value;
    return PyLong_FromLongLong(value);
}

static PyObject *Counter_reset(Counter *self, PyObject *unused) {
    self->value = 0;
    Py_RETURN_NONE;
}

static PyObject *Counter_get_value(Counter *self, void *closure) {
    return PyLong_FromLongLong(self->value);
}

static int Counter_set_value(Counter *self, PyObject *v, void *closure) {
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a Counter's value");
        return -1;
    }
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "Counter value must be an int, not %T", v);
        return -1;
    }
    long long value = PyLong_AsLongLong(v);
    if (value == -1 && PyErr_Occurred())
        return -1;
    self->value = value;
    return 0;
}

static PyObject *Counter_repr(Counter *self) {
    return PyUnicode_FromFormat("Counter(value=%lld, step=%lld)", self->value, self->step);
}

static void Counter_dealloc(Counter *self) {
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);  /* instances of heap types own a reference to their type */
}

static PyMethodDef Counter_methods[] = {
    {"increment", (PyCFunction)(void (*)(void))Counter_increment, METH_FASTCALL,
     "increment(times=1) -> the new value"},
    {"reset", (PyCFunction)Counter_reset, METH_NOARGS, "reset() -> None, value back to 0"},
    {NULL}};

static PyGetSetDef Counter_getset[] = {
    {"value", (getter)Counter_get_value, (setter)Counter_set_value, "the current value", NULL},
    {NULL}};

static PyType_Slot Counter_slots[] = {
    {Py_tp_doc, "Counter(start=0, step=1): counts in steps of `step`."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Counter_init},
    {Py_tp_dealloc, Counter_dealloc},
    {Py_tp_repr, Counter_repr},
    {Py_tp_methods, Counter_methods},
    {Py_tp_getset, Counter_getset},
    {0, NULL}};

static PyType_Spec Counter_spec = {
    .name = "demo_ext.Counter",
    .basicsize = sizeof(Counter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Counter_slots,
};

/* ---- the module ---------------------------------------------------------------------------- */

static int demo_exec(PyObject *module) {
    demo_state *st = state_of(module);
    st->calls = 0;
    st->demo_error = PyErr_NewExceptionWithDoc(
        "demo_ext.DemoError", "Raised by demo_ext; a ValueError.", PyExc_ValueError, NULL);
    if (!st->demo_error || PyModule_AddObjectRef(module, "DemoError", st->demo_error) < 0)
        return -1;
    st->counter_type = PyType_FromModuleAndSpec(module, &Counter_spec, NULL);
    if (!st->counter_type || PyModule_AddType(module, (PyTypeObject *)st->counter_type) < 0)
        return -1;
    return PyModule_AddStringConstant(module, "built_for", "wasix-dl");
}

static int demo_traverse(PyObject *module, visitproc visit, void *arg) {
    demo_state *st = state_of(module);
    Py_VISIT(st->demo_error);
    Py_VISIT(st->counter_type);
    return 0;
}

static int demo_clear(PyObject *module) {
    demo_state *st = state_of(module);
    Py_CLEAR(st->demo_error);
    Py_CLEAR(st->counter_type);
    return 0;
}

static void demo_free(void *module) { demo_clear((PyObject *)module); }

static PyMethodDef demo_methods[] = {
    {"add", demo_add, METH_VARARGS, "add(a, b) -> a + b as C longs; OverflowError if too big"},
    {"fib", demo_fib, METH_O, "fib(n) -> the n-th Fibonacci number; ValueError if n < 0"},
    {"checksum", (PyCFunction)(void (*)(void))demo_checksum, METH_VARARGS | METH_KEYWORDS,
     "checksum(data, *, seed=1) -> Adler-32 of a bytes-like object"},
    {"apply", demo_apply, METH_VARARGS,
     "apply(func, iterable) -> [func(x) for x in iterable]; DemoError if func returns None"},
    {"fail", demo_fail, METH_O, "fail(message): raises DemoError(message)"},
    {"calls", demo_calls, METH_NOARGS, "calls() -> calls made into this module object"},
    {NULL}};

static PyModuleDef_Slot demo_slots[] = {
    {Py_mod_exec, demo_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL}};

static struct PyModuleDef demo_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "demo_ext",
    .m_doc = "A C extension for the WASIX build of CPython, loaded by wasix-dl.",
    .m_size = sizeof(demo_state),
    .m_methods = demo_methods,
    .m_slots = demo_slots,
    .m_traverse = demo_traverse,
    .m_clear = demo_clear,
    .m_free = demo_free,
};

PyMODINIT_FUNC PyInit_demo_ext(void) { return PyModuleDef_Init(&demo_module); }
