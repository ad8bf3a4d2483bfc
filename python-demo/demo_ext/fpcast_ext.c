/* fpcast_ext: C functions registered with CPython under a function type that has MORE
 * parameters than their definition, through a cast, the way many PyPI extensions do it. On a
 * native ABI the extra arguments are ignored; in wasm the call_indirect would trap ("indirect
 * call type mismatch") unless CPython's call trampoline (python-demo/wasix_trampoline.c) adapts
 * the call. Every flavour CPython calls through the trampoline is here:
 *   - module functions: METH_NOARGS defined without the unused argument, and with no parameter
 *     at all; METH_VARARGS|METH_KEYWORDS defined without kwargs;
 *   - a type (Point) whose tp_new and tp_init lack kwds, whose tp_call lacks kwds, with methods
 *     of each flavour, and getters/setters without their closure parameter;
 *   - a garbage-collected type (Node) whose tp_clear returns nothing (the collector ignores
 *     the result);
 * plus bench_* helpers for benches/python.rs: the same C call made directly and through the
 * trampoline, to measure what the trampoline adds. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <time.h>

/* ---- module functions ------------------------------------------------------------------ */

/* METH_NOARGS, natively called as f(module, NULL). */
static PyObject *answer(PyObject *module) {
    (void)module;
    return PyLong_FromLong(42);
}

/* METH_NOARGS without any parameter. */
static PyObject *nothing(void) {
    return PyUnicode_FromString("nothing");
}

/* METH_VARARGS | METH_KEYWORDS, natively called as f(module, args, kwargs). */
static PyObject *count_args(PyObject *module, PyObject *args) {
    (void)module;
    return PyLong_FromSsize_t(PyTuple_GET_SIZE(args));
}

/* ---- Point ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    long x, y;
} Point;

/* tp_new without kwds. */
static PyObject *point_new(PyTypeObject *type, PyObject *args) {
    (void)args;
    Point *p = (Point *)type->tp_alloc(type, 0);
    if (p)
        p->x = p->y = -1;
    return (PyObject *)p;
}

/* tp_init without kwds: Point(x, y). */
static int point_init(Point *self, PyObject *args) {
    return PyArg_ParseTuple(args, "ll", &self->x, &self->y) ? 0 : -1;
}

/* tp_call without kwds: p(k) scales. */
static PyObject *point_call(Point *self, PyObject *args) {
    long k;
    if (!PyArg_ParseTuple(args, "l", &k))
        return NULL;
    return Py_BuildValue("(ll)", self->x * k, self->y * k);
}

/* Getters and setters without closure. */
static PyObject *point_get_x(Point *self) { return PyLong_FromLong(self->x); }
static PyObject *point_get_sum(Point *self) { return PyLong_FromLong(self->x + self->y); }
static int point_set_x(Point *self, PyObject *value) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "x cannot be deleted");
        return -1;
    }
    long x = PyLong_AsLong(value);
    if (x == -1 && PyErr_Occurred())
        return -1;
    self->x = x;
    return 0;
}

/* Methods: METH_NOARGS with only self, METH_VARARGS|METH_KEYWORDS without kwargs. */
static PyObject *point_norm1(Point *self) {
    return PyLong_FromLong(labs(self->x) + labs(self->y));
}
/* The same with the type CPython calls it with: for comparison (benches/python.rs). */
static PyObject *point_norm1_exact(Point *self, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(labs(self->x) + labs(self->y));
}
static PyObject *point_moved(Point *self, PyObject *args) {
    long dx = 0, dy = 0;
    if (!PyArg_ParseTuple(args, "|ll", &dx, &dy))
        return NULL;
    return Py_BuildValue("(ll)", self->x + dx, self->y + dy);
}

static PyGetSetDef point_getset[] = {
    {"x", (getter)point_get_x, (setter)point_set_x, "x, settable", NULL},
    {"sum", (getter)point_get_sum, NULL, "x + y", NULL},
    {NULL},
};

static PyMethodDef point_methods[] = {
    {"norm1", (PyCFunction)point_norm1, METH_NOARGS, "|x| + |y|"},
    {"norm1_exact", (PyCFunction)point_norm1_exact, METH_NOARGS, "|x| + |y|, typed exactly"},
    {"moved", (PyCFunction)(void (*)(void))point_moved, METH_VARARGS | METH_KEYWORDS,
     "moved(dx=0, dy=0) as a tuple"},
    {NULL},
};

static PyTypeObject PointType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fpcast_ext.Point",
    .tp_basicsize = sizeof(Point),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = (newfunc)point_new,
    .tp_init = (initproc)point_init,
    .tp_call = (ternaryfunc)point_call,
    .tp_getset = point_getset,
    .tp_methods = point_methods,
};

/* ---- Node: a garbage-collected type whose tp_clear returns nothing ------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *other;
} Node;

static int node_traverse(Node *self, visitproc visit, void *arg) {
    Py_VISIT(self->other);
    return 0;
}

/* tp_clear declared void: the collector ignores the result, so natively this works. */
static void node_clear(Node *self) {
    Py_CLEAR(self->other);
}

static void node_dealloc(Node *self) {
    PyObject_GC_UnTrack(self);
    node_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef node_members[] = {
    {"other", Py_T_OBJECT_EX, offsetof(Node, other), 0, "another object"},
    {NULL},
};

static PyTypeObject NodeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fpcast_ext.Node",
    .tp_basicsize = sizeof(Node),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)node_traverse,
    .tp_clear = (inquiry)node_clear,
    .tp_dealloc = (destructor)node_dealloc,
    .tp_members = node_members,
};

/* ---- benchmark helpers -------------------------------------------------------------------- */

#ifdef __wasi__
PyAPI_FUNC(PyObject *) _PyWASIX_TrampolineCall(void (*func)(void), void *arg1, void *arg2,
                                               void *arg3);
#endif

static PyObject *bench_target(PyObject *self, PyObject *arg) {
    (void)self;
    return arg;
}
/* Called through a volatile pointer so that the compiler emits a call_indirect, as CPython's
 * own call sites do. */
static PyObject *(*volatile bench_pointer)(PyObject *, PyObject *) = bench_target;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* bench_calls(n, trampoline): seconds for n calls of a two-parameter C function, directly
 * (call_indirect) or through the trampoline. */
static PyObject *bench_calls(PyObject *module, PyObject *args) {
    long n;
    int trampoline;
    (void)module;
    if (!PyArg_ParseTuple(args, "lp", &n, &trampoline))
        return NULL;
    PyObject *sink = NULL;
    double start = now();
    if (trampoline) {
#ifdef __wasi__
        for (long i = 0; i < n; i++)
            sink = _PyWASIX_TrampolineCall((void (*)(void))bench_pointer, module, Py_None, NULL);
#else
        PyErr_SetString(PyExc_NotImplementedError, "only the WASIX build has the trampoline");
        return NULL;
#endif
    } else {
        for (long i = 0; i < n; i++)
            sink = bench_pointer(module, Py_None);
    }
    double elapsed = now() - start;
    if (sink != Py_None) {
        PyErr_SetString(PyExc_AssertionError, "the benchmark call returned the wrong object");
        return NULL;
    }
    return PyFloat_FromDouble(elapsed);
}

static PyMethodDef module_methods[] = {
    {"answer", (PyCFunction)answer, METH_NOARGS, "42"},
    {"nothing", (PyCFunction)(void (*)(void))nothing, METH_NOARGS, "'nothing'"},
    {"count_args", (PyCFunction)(void (*)(void))count_args, METH_VARARGS | METH_KEYWORDS,
     "number of positional arguments"},
    {"bench_calls", bench_calls, METH_VARARGS, "bench_calls(n, trampoline) -> seconds"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "fpcast_ext", "Functions cast to wider CPython types.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit_fpcast_ext(void) {
    if (PyType_Ready(&PointType) < 0 || PyType_Ready(&NodeType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m && (PyModule_AddObjectRef(m, "Point", (PyObject *)&PointType) < 0 ||
              PyModule_AddObjectRef(m, "Node", (PyObject *)&NodeType) < 0))
        Py_CLEAR(m);
    return m;
}
