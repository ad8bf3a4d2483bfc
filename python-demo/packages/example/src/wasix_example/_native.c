/* The C part of wasix_example: a checksum over any buffer, and the platform's pointer width. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *fletcher16(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned sum1 = 0, sum2 = 0;
    const unsigned char *p = view.buf;
    for (Py_ssize_t i = 0; i < view.len; i++) {
        sum1 = (sum1 + p[i]) % 255;
        sum2 = (sum2 + sum1) % 255;
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(sum2 << 8 | sum1);
}

static PyObject *pointer_bits(PyObject *module, PyObject *unused)
{
    return PyLong_FromLong(8 * (long)sizeof(void *));
}

static PyMethodDef methods[] = {
    {"fletcher16", fletcher16, METH_O, "Fletcher-16 checksum of a bytes-like object."},
    {"pointer_bits", pointer_bits, METH_NOARGS, "Width of a C pointer in bits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wasix_example._native", NULL, 0, methods};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
