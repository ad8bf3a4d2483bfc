// demo_cxx: a C++ extension module for the WASIX build of CPython. python.wasm is a C program
// without a C++ runtime: this module records `needed libc++.so` (wasix-c++ links every C++
// module against it), which wasix-dl finds in the guest's /lib, the toolchain's system-lib/.
//   split(text, sep) -> list of str   with std::string and std::vector
//   parse_int(text) -> int            with std::stoi: the std::invalid_argument or
//                                     std::out_of_range it throws (inside libc++.so) is caught
//                                     here and becomes ValueError or OverflowError
// No C++ exception may leave a function CPython calls: each one catches what it can throw.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

static std::vector<std::string> split(const std::string &text, const std::string &sep)
{
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t at; (at = text.find(sep, start)) != std::string::npos; start = at + sep.size())
        parts.push_back(text.substr(start, at - start));
    parts.push_back(text.substr(start));
    return parts;
}

static PyObject *demo_split(PyObject *, PyObject *args)
{
    const char *text, *sep;
    Py_ssize_t text_len, sep_len;
    if (!PyArg_ParseTuple(args, "s#s#:split", &text, &text_len, &sep, &sep_len))
        return nullptr;
    if (sep_len == 0) {
        PyErr_SetString(PyExc_ValueError, "split(): empty separator");
        return nullptr;
    }
    try {
        std::vector<std::string> parts = split(std::string(text, text_len), std::string(sep, sep_len));
        PyObject *list = PyList_New((Py_ssize_t)parts.size());
        for (size_t i = 0; list && i < parts.size(); i++) {
            PyObject *item = PyUnicode_FromStringAndSize(parts[i].data(), (Py_ssize_t)parts[i].size());
            if (!item) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    } catch (const std::bad_alloc &) {
        return PyErr_NoMemory();
    }
}

static PyObject *demo_parse_int(PyObject *, PyObject *arg)
{
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text)
        return nullptr;
    try {
        size_t used = 0;
        int value = std::stoi(text, &used);
        if (text[used] != '\0')
            throw std::invalid_argument("trailing characters");
        return PyLong_FromLong(value);
    } catch (const std::invalid_argument &e) {
        PyErr_Format(PyExc_ValueError, "parse_int(%R): %s", arg, e.what());
    } catch (const std::out_of_range &e) {
        PyErr_Format(PyExc_OverflowError, "parse_int(%R): %s", arg, e.what());
    }
    return nullptr;
}

static PyMethodDef methods[] = {
    {"split", demo_split, METH_VARARGS, "split(text, sep) -> list of str (std::string, std::vector)"},
    {"parse_int", demo_parse_int, METH_O, "parse_int(text) -> int (std::stoi; C++ exceptions become ValueError, OverflowError)"},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "demo_cxx", "A C++ extension module on the shared libc++.so.", 0, methods,
};

PyMODINIT_FUNC PyInit_demo_cxx(void)
{
    return PyModule_Create(&module_def);
}
