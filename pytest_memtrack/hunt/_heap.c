/* Optional C helper for the malloc reading (pytest_memtrack/hunt/native.py: settle_thread_cache).
 *
 * glibc keeps up to 7 freed chunks of each size up to 1032 bytes in a per-thread cache (tcache), and mallinfo2()
 * counts them as in use. How full that cache is after a run depends on the order of the run's frees, so a test
 * that keeps nothing reads a few hundred bytes to a few KiB more or less than the run before. Taking 7 chunks of
 * every cached size and freeing them again leaves every bin of this thread's cache full: the same state before
 * every reading, whatever the run did, so what malloc's figure still moves by is memory really kept.
 * The ctypes fallback in native.py does the same at ~20x the cost.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#define CACHED_PER_SIZE 7      /* glibc's default tcache_count */
#define SMALLEST_REQUEST 24    /* the request of the smallest chunk (32 bytes on 64-bit) */
#define LARGEST_REQUEST 1032   /* glibc's tcache_max_bytes */
#define ALIGNMENT 16

static PyObject *
settle_thread_cache(PyObject *module, PyObject *unused)
{
    /* volatile: the compiler may not drop a malloc/free pair whose pointer nothing reads */
    void *volatile held[CACHED_PER_SIZE];
    for (size_t request = SMALLEST_REQUEST; request <= LARGEST_REQUEST; request += ALIGNMENT) {
        for (int i = 0; i < CACHED_PER_SIZE; i++) {
            held[i] = malloc(request);
        }
        for (int i = 0; i < CACHED_PER_SIZE; i++) {
            free(held[i]);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef heap_methods[] = {
    {"settle_thread_cache", settle_thread_cache, METH_NOARGS,
     "Leave every bin of this thread's malloc cache full (see the module comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef heap_module = {
    PyModuleDef_HEAD_INIT, "_heap", "Settling glibc's per-thread malloc cache before a reading.", -1, heap_methods,
};

PyMODINIT_FUNC
PyInit__heap(void)
{
    return PyModule_Create(&heap_module);
}
