/* Optional C helper for the malloc reading (pytest_memtrack/hunt/native.py: settle_thread_cache, in_use).
 *
 * glibc keeps up to 7 freed chunks of each size up to 1032 bytes in a per-thread cache (tcache), and mallinfo2()
 * counts them as in use. How full that cache is after a run depends on the order of the run's frees, so a test
 * that keeps nothing reads a few hundred bytes to a few KiB more or less than the run before. Taking 7 chunks of
 * every cached size and freeing them again leaves every bin of this thread's cache full: the same state before
 * every reading, whatever the run did, so what malloc's figure still moves by is memory really kept.
 * The cache's shape (sizes, chunks per size) is native.py's, passed in; its ctypes fallback does the same at ~20x
 * the cost.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif

#define MAX_PER_SIZE 64

/* settle_thread_cache(smallest, largest, step, per_size): malloc and free again per_size chunks of every request
 * size from smallest to largest by step. */
static PyObject *
settle_thread_cache(PyObject *module, PyObject *args)
{
    Py_ssize_t smallest, largest, step, per_size;
    if (!PyArg_ParseTuple(args, "nnnn", &smallest, &largest, &step, &per_size)) {
        return NULL;
    }
    if (smallest < 1 || step < 1 || per_size < 0 || per_size > MAX_PER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "settle_thread_cache: sizes and step must be positive, per_size 0..64");
        return NULL;
    }
    /* volatile: the compiler may not drop a malloc/free pair whose pointer nothing reads */
    void *volatile held[MAX_PER_SIZE];
    for (Py_ssize_t request = smallest; request <= largest; request += step) {
        for (Py_ssize_t i = 0; i < per_size; i++) {
            held[i] = malloc((size_t)request);
        }
        for (Py_ssize_t i = 0; i < per_size; i++) {
            free(held[i]);
        }
    }
    Py_RETURN_NONE;
}

#ifdef HAVE_MALLINFO2
/* in_use(): malloc's bytes handed out and not taken back, mallinfo2()'s uordblks + hblkhd (what native.py's
 * ctypes reading gives, without importing ctypes into every session). */
static PyObject *
in_use(PyObject *module, PyObject *unused)
{
    struct mallinfo2 info = mallinfo2();
    return PyLong_FromSize_t(info.uordblks + info.hblkhd);
}
#endif

static PyMethodDef heap_methods[] = {
#ifdef HAVE_MALLINFO2
    {"in_use", in_use, METH_NOARGS, "malloc's bytes in use: mallinfo2()'s uordblks + hblkhd."},
#endif
    {"settle_thread_cache", settle_thread_cache, METH_VARARGS,
     "Leave every bin of this thread's malloc cache full (see the module comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef heap_module = {
    PyModuleDef_HEAD_INIT, "_heap", "Settling glibc's per-thread malloc cache before a reading.", -1, heap_methods,
};

PyMODINIT_FUNC
PyInit__heap(void)
{
    PyObject *module = PyModule_Create(&heap_module);
    if (module == NULL) {
        return NULL;
    }
    /* Whether this interpreter was built with pymalloc and the GIL: the layout native.py's reading assumes (blocks
     * up to 512 bytes from pymalloc's arenas, the rest from malloc). Known at build time, without sysconfig. */
#if defined(WITH_PYMALLOC) && !defined(Py_GIL_DISABLED)
    int standard = 1;
#else
    int standard = 0;
#endif
    if (PyModule_AddIntConstant(module, "STANDARD_PYMALLOC", standard) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
