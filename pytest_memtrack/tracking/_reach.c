/* Optional C accelerator for attribution's module-state walk (pytest_memtrack/attribution.py).
 *
 * Same reading as the pure-Python walker there, object for object: sys.getsizeof summed over everything reachable
 * from the given roots through tp_traverse (what gc.get_referents sees), each object counted once per Walker,
 * stopping at modules and at classes/functions/methods the `keep` callback rejects. The Python walker spends most
 * of its time turning addresses into ints for its `seen` set and in sys.getsizeof's argument parsing; here `seen`
 * is a pointer hash set and sizes come from each type's __sizeof__, calibrated once per type against
 * sys.getsizeof so that the figure is identical.
 *
 * Safety: tp_traverse callbacks only record objects (with a strong reference) and never run Python code; the
 * `keep` callback and __sizeof__ calls run between traversals. Addresses in `seen` are kept only for the life of
 * the Walker (one attribution pass), as the Python walker keeps ids.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* ---- a set of object addresses (open addressing, power-of-two capacity, 0 = empty) ---------------------------- */

typedef struct {
    uintptr_t *slots;
    size_t mask;   /* capacity - 1 */
    size_t used;
} PtrSet;

static size_t ptr_hash(uintptr_t p) {
    uint64_t h = (uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 29));
}

static int ptrset_init(PtrSet *set, size_t capacity) {
    set->slots = PyMem_Calloc(capacity, sizeof(uintptr_t));
    if (set->slots == NULL) {
        return -1;
    }
    set->mask = capacity - 1;
    set->used = 0;
    return 0;
}

static int ptrset_grow(PtrSet *set) {
    size_t old_capacity = set->mask + 1;
    uintptr_t *old = set->slots;
    if (ptrset_init(set, old_capacity * 2) < 0) {
        set->slots = old;
        set->mask = old_capacity - 1;
        return -1;
    }
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i]) {
            size_t j = ptr_hash(old[i]) & set->mask;
            while (set->slots[j]) {
                j = (j + 1) & set->mask;
            }
            set->slots[j] = old[i];
            set->used++;
        }
    }
    PyMem_Free(old);
    return 0;
}

/* 1 when added, 0 when already present, -1 on memory error. */
static int ptrset_add(PtrSet *set, const void *ptr) {
    uintptr_t p = (uintptr_t)ptr;
    size_t j = ptr_hash(p) & set->mask;
    while (set->slots[j]) {
        if (set->slots[j] == p) {
            return 0;
        }
        j = (j + 1) & set->mask;
    }
    set->slots[j] = p;
    set->used++;
    if (set->used * 2 > set->mask + 1 && ptrset_grow(set) < 0) {
        return -1;
    }
    return 1;
}

/* ---- a stack of strong references ------------------------------------------------------------------------------ */

typedef struct {
    PyObject **items;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Stack;

static int stack_push(Stack *stack, PyObject *obj) {
    if (stack->size == stack->capacity) {
        Py_ssize_t capacity = stack->capacity ? stack->capacity * 2 : 1024;
        PyObject **items = PyMem_Realloc(stack->items, (size_t)capacity * sizeof(PyObject *));
        if (items == NULL) {
            return -1;
        }
        stack->items = items;
        stack->capacity = capacity;
    }
    Py_INCREF(obj);
    stack->items[stack->size++] = obj;
    return 0;
}

static void stack_clear(Stack *stack) {
    while (stack->size > 0) {
        PyObject *obj = stack->items[--stack->size];
        Py_DECREF(obj);
    }
}

/* ---- the Walker -------------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PtrSet seen;
    Stack stack;
    PyObject *sizers;    /* type -> (sizeof descriptor or None, extra bytes as int) */
    int out_of_memory;
} Walker;

static PyObject *sys_getsizeof;   /* sys.getsizeof */
static PyObject *object_sizeof;   /* object.__sizeof__, the descriptor types inherit when they do not override it */
static PyObject *sizeof_name;     /* "__sizeof__" */
static PyObject *module_name;     /* "__module__" */

static int visit(PyObject *obj, void *arg) {
    Walker *self = (Walker *)arg;
    if (obj == NULL) {
        return 0;
    }
    int added = ptrset_add(&self->seen, obj);
    if (added == 0) {
        return 0;
    }
    if (added < 0 || stack_push(&self->stack, obj) < 0) {
        self->out_of_memory = 1;
        return -1;
    }
    return 0;
}

/* sys.getsizeof(obj), or the type's basic size when the object cannot report one (a broken __sizeof__). */
static Py_ssize_t full_getsizeof(PyObject *obj) {
    PyObject *result = PyObject_CallOneArg(sys_getsizeof, obj);
    Py_ssize_t size = result ? PyLong_AsSsize_t(result) : -1;
    Py_XDECREF(result);
    if (size < 0) {
        PyErr_Clear();
        size = Py_TYPE(obj)->tp_basicsize;
    }
    return size;
}

static Py_ssize_t inherited_sizeof(PyObject *obj) {
    /* object.__sizeof__: basic size plus items, as typeobject.c computes it */
    PyTypeObject *type = Py_TYPE(obj);
    Py_ssize_t size = type->tp_basicsize;
    if (type->tp_itemsize > 0) {
        size += Py_SIZE(obj) * type->tp_itemsize;
    }
    return size;
}

static Py_ssize_t call_sizeof(PyObject *descriptor, PyObject *obj) {
    PyObject *result = PyObject_CallOneArg(descriptor, obj);
    Py_ssize_t size = result ? PyLong_AsSsize_t(result) : -1;
    Py_XDECREF(result);
    if (size < 0) {
        PyErr_Clear();
        return -1;
    }
    return size;
}

/* The figure sys.getsizeof(obj) gives: the type's __sizeof__ plus a per-type constant (the GC header and, on 3.12+,
 * the pre-header), learned from the first object of each type. Type objects have a per-object GC header rule, so
 * they always take the full call. */
static Py_ssize_t size_of(Walker *self, PyObject *obj) {
    PyTypeObject *type = Py_TYPE(obj);
    if (PyType_Check(obj)) {
        return full_getsizeof(obj);
    }
    PyObject *sizer = PyDict_GetItemWithError(self->sizers, (PyObject *)type);
    if (sizer != NULL) {
        PyObject *descriptor = PyTuple_GET_ITEM(sizer, 0);
        Py_ssize_t extra = PyLong_AsSsize_t(PyTuple_GET_ITEM(sizer, 1));
        Py_ssize_t inner = descriptor == Py_None ? inherited_sizeof(obj) : call_sizeof(descriptor, obj);
        return inner < 0 ? full_getsizeof(obj) : inner + extra;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return full_getsizeof(obj);
    }
    Py_ssize_t full = full_getsizeof(obj);
    PyObject *descriptor = PyObject_GetAttr((PyObject *)type, sizeof_name);
    if (descriptor == NULL) {
        PyErr_Clear();
        return full;
    }
    Py_ssize_t inner;
    if (descriptor == object_sizeof) {
        Py_DECREF(descriptor);
        descriptor = Py_NewRef(Py_None);
        inner = inherited_sizeof(obj);
    } else {
        inner = call_sizeof(descriptor, obj);
    }
    if (inner >= 0) {
        PyObject *entry = Py_BuildValue("(On)", descriptor, full - inner);
        if (entry == NULL || PyDict_SetItem(self->sizers, (PyObject *)type, entry) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(entry);
    }
    Py_DECREF(descriptor);
    return full;
}

/* Modules, classes, functions and methods: where a package's state ends and another's begins. */
static int is_boundary(PyObject *obj) {
    return PyType_Check(obj) || PyFunction_Check(obj) || PyCFunction_Check(obj) || PyMethod_Check(obj);
}

/* keep() for a package name, as attribution._belongs: the object's __module__ is the package or one of its
 * submodules (1), or not (0), also when __module__ cannot be read (the pass goes on). */
static int belongs(PyObject *obj, PyObject *package, PyObject *prefix) {
    PyObject *owner = PyObject_GetAttr(obj, module_name);
    if (owner == NULL) {
        PyErr_Clear();
        return 0;
    }
    int result = 0;
    if (PyUnicode_Check(owner)) {
        result = PyUnicode_Compare(owner, package) == 0
                 || PyUnicode_Tailmatch(owner, prefix, 0, PY_SSIZE_T_MAX, -1) == 1;
    }
    Py_DECREF(owner);
    return result;
}

static PyObject *Walker_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) > 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        PyErr_SetString(PyExc_TypeError, "Walker() takes no arguments");
        return NULL;
    }
    Walker *self = (Walker *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->sizers = PyDict_New();
    if (self->sizers == NULL || ptrset_init(&self->seen, 1 << 12) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Walker_dealloc(Walker *self) {
    stack_clear(&self->stack);
    PyMem_Free(self->stack.items);
    PyMem_Free(self->seen.slots);
    Py_XDECREF(self->sizers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Walker_mark(Walker *self, PyObject *iterable) {
    PyObject *iterator = PyObject_GetIter(iterable);
    if (iterator == NULL) {
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        int added = ptrset_add(&self->seen, item);
        Py_DECREF(item);
        if (added < 0) {
            Py_DECREF(iterator);
            return PyErr_NoMemory();
        }
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Walker_walk(Walker *self, PyObject *args) {
    PyObject *roots, *keep;
    if (!PyArg_ParseTuple(args, "OO:walk", &roots, &keep)) {
        return NULL;
    }
    PyObject *prefix = NULL;  /* set when keep is a package name */
    if (PyUnicode_Check(keep)) {
        prefix = PyUnicode_FromFormat("%U.", keep);
        if (prefix == NULL) {
            return NULL;
        }
    } else if (!PyCallable_Check(keep)) {
        PyErr_SetString(PyExc_TypeError, "walk(): keep must be a package name or a callable");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(roots, "walk(): roots must be iterable");
    if (sequence == NULL) {
        Py_XDECREF(prefix);
        return NULL;
    }
    Py_ssize_t base = self->stack.size;
    self->out_of_memory = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence); i++) {
        if (visit(PySequence_Fast_GET_ITEM(sequence, i), self) < 0) {
            break;
        }
    }
    Py_DECREF(sequence);

    long long total = 0;
    while (!self->out_of_memory && self->stack.size > base) {
        PyObject *obj = self->stack.items[--self->stack.size];
        if (PyModule_Check(obj)) {
            Py_DECREF(obj);
            continue;
        }
        if (is_boundary(obj)) {
            int kept;
            if (prefix != NULL) {
                kept = belongs(obj, keep, prefix);
            } else {
                PyObject *verdict = PyObject_CallOneArg(keep, obj);
                kept = verdict ? PyObject_IsTrue(verdict) : -1;
                Py_XDECREF(verdict);
            }
            if (kept <= 0) {
                Py_DECREF(obj);
                if (kept < 0) {
                    goto error;
                }
                continue;
            }
        }
        total += size_of(self, obj);
        if (PyObject_IS_GC(obj)) {
            traverseproc traverse = Py_TYPE(obj)->tp_traverse;
            if (traverse != NULL) {
                traverse(obj, visit, self);
            }
        }
        Py_DECREF(obj);
    }
    if (self->out_of_memory) {
        PyErr_NoMemory();
        goto error;
    }
    Py_XDECREF(prefix);
    return PyLong_FromLongLong(total);

error:
    while (self->stack.size > base) {
        PyObject *obj = self->stack.items[--self->stack.size];
        Py_DECREF(obj);
    }
    Py_XDECREF(prefix);
    return NULL;
}

static PyMethodDef Walker_methods[] = {
    {"mark", (PyCFunction)Walker_mark, METH_O, "mark(objects): treat these objects as already counted."},
    {"walk", (PyCFunction)Walker_walk, METH_VARARGS,
     "walk(roots, keep) -> int: sys.getsizeof bytes of what roots reach and no earlier walk counted; modules are\n"
     "never entered, and classes, functions and methods only when keep(obj) is true, or, when keep is a package\n"
     "name, when their __module__ is that package or one of its submodules."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pytest_memtrack._reach.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One attribution pass: counts each reachable object once across its walks.",
    .tp_new = Walker_new,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_methods = Walker_methods,
};

static struct PyModuleDef reach_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pytest_memtrack._reach",
    .m_doc = "C walker for attribution's module-state reading (optional; attribution.py has the same in Python).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__reach(void) {
    if (PyType_Ready(&WalkerType) < 0) {
        return NULL;
    }
    PyObject *sys = PyImport_ImportModule("sys");
    if (sys == NULL) {
        return NULL;
    }
    sys_getsizeof = PyObject_GetAttrString(sys, "getsizeof");
    Py_DECREF(sys);
    object_sizeof = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__sizeof__");
    sizeof_name = PyUnicode_InternFromString("__sizeof__");
    module_name = PyUnicode_InternFromString("__module__");
    if (sys_getsizeof == NULL || object_sizeof == NULL || sizeof_name == NULL || module_name == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&reach_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(module, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
