/* CPython's call trampoline for WASIX, built into python.wasm (build-python.sh copies it to
 * Python/ and python-demo/cpython-wasix.patch routes CPython's calls of extension function
 * pointers here).
 *
 * Many extensions define methods, getters and slots with fewer parameters than CPython calls
 * them with (a METH_NOARGS function without its unused argument, a getter without `closure`,
 * tp_init without `kwds`) and cast them to the expected type. Native ABIs ignore the extra
 * arguments; wasm's call_indirect traps on any type difference. So every such call asks the
 * runtime for the callee's real signature (wasix_32v1.reflect_signature), once per function
 * pointer, and calls it with as many of the arguments as it takes, missing ones NULL (what the
 * callee sees natively is undefined; NULL is what CPython itself passes for unused ones).
 *
 * The answer is cached per table slot. A slot's function changes only when its library is
 * unloaded and the slot reused, so the cache is dropped whenever libc's dlclose generation
 * moved. (A call racing with the dlclose of its own callee's library is undefined behaviour in
 * any case.) */
#include "Python.h"
#include "pycore_emscripten_trampoline.h"  // _PyWASIX_TrampolineCall(): exported (PyAPI_FUNC)

#include <stdint.h>
#include <string.h>

struct reflection {
    uint8_t cacheable;
    uint16_t arguments;
    uint16_t results;
};

__attribute__((import_module("wasix_32v1"), import_name("reflect_signature")))
int32_t __wasix_reflect_signature(uint32_t function, uint8_t *argument_types,
                                  uint16_t argument_types_len, uint8_t *result_types,
                                  uint16_t result_types_len, struct reflection *result);

#define TYPE_I32 0
#define MAX_PARAMS 3
/* One byte per table slot (wasix-dl's table has 2^18 slots; pointers past the cache are
 * reflected on every call): 0 not known yet, 1 + n for n i32 parameters and one i32 result,
 * RETURNS_NOTHING | (1 + n) for n i32 parameters and no result, UNSUPPORTED for anything
 * else. CPython's call sites read it too, to call a function that takes what they pass
 * directly (pycore_emscripten_trampoline.h). */
#define RETURNS_NOTHING 0x10
#define PARAMS(entry) (((entry) & 0x0f) - 1)
#define UNSUPPORTED 0xff

uint8_t _PyWASIX_param_counts[_PyWASIX_CACHED_SLOTS];
unsigned int _PyWASIX_cache_generation;

static uint8_t
reflect(uint32_t slot)
{
    uint8_t params[MAX_PARAMS], results[1];
    struct reflection r = {0};
    if (__wasix_reflect_signature(slot, params, MAX_PARAMS, results, 1, &r) != 0
        || r.results > 1 || (r.results == 1 && results[0] != TYPE_I32)) {
        return UNSUPPORTED;
    }
    for (int i = 0; i < r.arguments; i++) {
        if (params[i] != TYPE_I32) {
            return UNSUPPORTED;
        }
    }
    return (uint8_t)((r.results == 0 ? RETURNS_NOTHING : 0) | (1 + r.arguments));
}

static uint8_t
param_count_entry(uint32_t slot)
{
    if (slot >= _PyWASIX_CACHED_SLOTS) {
        return reflect(slot);
    }
    unsigned int generation = __atomic_load_n(&__wasix_dlclose_generation, __ATOMIC_ACQUIRE);
    if (generation != __atomic_load_n(&_PyWASIX_cache_generation, __ATOMIC_RELAXED)) {
        memset(_PyWASIX_param_counts, 0, sizeof _PyWASIX_param_counts);
        __atomic_store_n(&_PyWASIX_cache_generation, generation, __ATOMIC_RELAXED);
    }
    uint8_t entry = __atomic_load_n(&_PyWASIX_param_counts[slot], __ATOMIC_RELAXED);
    if (entry == 0) {
        entry = reflect(slot);
        __atomic_store_n(&_PyWASIX_param_counts[slot], entry, __ATOMIC_RELAXED);
    }
    return entry;
}

typedef void (*void0)(void);
typedef void (*void1)(void *);
typedef void (*void2)(void *, void *);
typedef void (*void3)(void *, void *, void *);
typedef void *(*call0)(void);
typedef void *(*call1)(void *);
typedef void *(*call2)(void *, void *);
typedef void *(*call3)(void *, void *, void *);

PyObject *
_PyWASIX_TrampolineCall(void (*func)(void), void *arg1, void *arg2, void *arg3)
{
    uint8_t entry = param_count_entry((uint32_t)(uintptr_t)func);
    if (entry == UNSUPPORTED || (entry & RETURNS_NOTHING)) {
        PyErr_Format(PyExc_SystemError,
                     "C function %p has a signature CPython cannot call (it takes more than "
                     "%d pointer parameters, or does not return a pointer or int)",
                     (void *)func, MAX_PARAMS);
        return NULL;
    }
    /* Callers pass NULL for the arguments past the ones CPython has. */
    switch (PARAMS(entry)) {
    case 0:
        return (PyObject *)((call0)func)();
    case 1:
        return (PyObject *)((call1)func)(arg1);
    case 2:
        return (PyObject *)((call2)func)(arg1, arg2);
    default:
        return (PyObject *)((call3)func)(arg1, arg2, arg3);
    }
}

void
_PyWASIX_CallIgnoringResult(void (*func)(void), void *arg1)
{
    uint8_t entry = param_count_entry((uint32_t)(uintptr_t)func);
    if (entry == UNSUPPORTED) {
        PyErr_Format(PyExc_SystemError,
                     "C function %p has a signature CPython cannot call", (void *)func);
        return;
    }
    int params = PARAMS(entry);
    if (entry & RETURNS_NOTHING) {
        switch (params) {
        case 0: ((void0)func)(); return;
        case 1: ((void1)func)(arg1); return;
        case 2: ((void2)func)(arg1, NULL); return;
        default: ((void3)func)(arg1, NULL, NULL); return;
        }
    }
    switch (params) {
    case 0: (void)((call0)func)(); return;
    case 1: (void)((call1)func)(arg1); return;
    case 2: (void)((call2)func)(arg1, NULL); return;
    default: (void)((call3)func)(arg1, NULL, NULL); return;
    }
}
