/* The worker's per-request telemetry in C: the common print() and the common finished request.

Every request of a monitored service pays for its telemetry under the GIL the whole worker shares.
TelemetryMonitor (monitor.py) is the reference: its Python print makes a printed line's "l" row and
writes the line through; its Python request_finished makes the request's "r" row. Together they
were ~15k instructions of the ~21k that full monitoring added to a request. Printer and Recorder
make the same rows for the common calls, one C call each, and hand every other call, unchanged, to
the Python code they are given:
- Printer: one exact str, to sys.stdout, while capturing at a sampling of 100%, with no text held
  for its newline;
- Recorder: answered below 400 with no exception, no query string, no sampling, inputs and outputs
  (bytes or str) within the inline limit, and a (method, path, server, scheme) whose name and URL
  the Python code has already made.
tests/telemetry/test_worker_native.py checks, case by case, which way a call goes and that both
ways leave the same rows, text and records.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <time.h>

static PyObject *STR_L, *STR_STDOUT, *STR_EMPTY, *STR_NEWLINE;
static PyObject *STR_R, *STR_PARENT_SPAN_ID;
static PyObject *NAME_CAPTURING, *NAME_SAMPLING, *NAME_ROW_LIMIT, *NAME_OPERATION_ID, *NAME_PARENT_ID,
                *NAME_NAME, *NAME_STDOUT, *NAME_MODEL_DATA, *NAME_EXTRA, *NAME_REQUEST_ID, *NAME_CLIENT_REQUEST_ID,
                *KEY_METHOD, *KEY_PATH, *KEY_SERVER, *KEY_SCHEME, *KEY_QUERY_STRING, *STR_GET;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;       /* the Python print: every call this one does not take */
    PyObject *stdout_proxy;   /* sys.stdout while this print records */
    PyObject *write_through;  /* the real stream's write */
    PyObject *rows;           /* BatchProcessor.rows */
    PyObject *held;           /* the STDOUT texts held for their newline, by thread */
    PyObject *monitor;        /* .capturing, .sampling */
    PyObject *processor;      /* .row_limit */
    PyObject *operation;      /* the ContextVar of the current Operation */
    PyObject *sysdict;        /* sys.__dict__ */
    Py_ssize_t large;         /* longer texts are not held as lines */
    vectorcallfunc vectorcall;
} Printer;

/* Printer and Recorder begin alike: calls they do not take go to their fallback. */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;
} FastPath;

/* tp_call, for calls that cannot use the vectorcall slot: it is empty until __init__ has run. */
static PyObject *call_initialized(PyObject *self, PyObject *args, PyObject *kwargs) {
    if (((FastPath *)self)->fallback == NULL) {
        PyErr_Format(PyExc_TypeError, "%s was not initialized", Py_TYPE(self)->tp_name);
        return NULL;
    }
    return PyVectorcall_Call(self, args, kwargs);
}

/* 1 if the rows list has room (BatchProcessor.add's test), 0 if not, -1 on error */
static int has_room(PyObject *processor, PyObject *rows) {
    PyObject *limit = PyObject_GetAttr(processor, NAME_ROW_LIMIT);
    if (limit == NULL) return -1;
    Py_ssize_t n = PyLong_AsSsize_t(limit);
    Py_DECREF(limit);
    if (n == -1 && PyErr_Occurred()) return -1;
    return PyList_GET_SIZE(rows) < n;
}

static double now(void) {  /* time.time(), as Python computes it */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return ns % 1000000000LL == 0 ? (double)(ns / 1000000000LL) : (double)ns / 1e9;
}

/* 1 if the monitor's attribute ``name`` is True, 0 if not, -1 on error */
static int attr_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    int result = value == Py_True;
    Py_DECREF(value);
    return result;
}

/* The "l" row of ``text`` for the current operation, or NULL: with an error set on failure, without
   one when the call is Python's (sampled). */
static PyObject *line_row(Printer *self, PyObject *text) {
    PyObject *sampling = NULL, *op = NULL, *row = NULL, *tid = NULL, *when = NULL;
    PyObject *op_id = NULL, *parent_id = NULL, *name = NULL;
    sampling = PyObject_GetAttr(self->monitor, NAME_SAMPLING);
    if (sampling == NULL) goto done;
    if (!PyFloat_CheckExact(sampling) || PyFloat_AS_DOUBLE(sampling) < 100.0) goto done;  /* sampled: Python */
    if (PyContextVar_Get(self->operation, Py_None, &op) < 0) goto done;
    if (op == Py_None) {
        op_id = Py_NewRef(Py_None);
        parent_id = Py_NewRef(STR_EMPTY);
        name = Py_NewRef(STR_EMPTY);
    } else {
        if ((op_id = PyObject_GetAttr(op, NAME_OPERATION_ID)) == NULL
                || (parent_id = PyObject_GetAttr(op, NAME_PARENT_ID)) == NULL
                || (name = PyObject_GetAttr(op, NAME_NAME)) == NULL)
            goto done;
    }
    if ((tid = PyLong_FromUnsignedLong(PyThread_get_thread_ident())) == NULL
            || (when = PyFloat_FromDouble(now())) == NULL)
        goto done;
    row = PyTuple_Pack(9, STR_L, when, STR_STDOUT, text, tid, op_id, parent_id, name, sampling);
done:
    Py_XDECREF(sampling);
    Py_XDECREF(op);
    Py_XDECREF(tid);
    Py_XDECREF(when);
    Py_XDECREF(op_id);
    Py_XDECREF(parent_id);
    Py_XDECREF(name);
    return row;
}

static PyObject *Printer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Printer *self = (Printer *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs != 1 || !PyUnicode_CheckExact(args[0]))
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    PyObject *text = args[0];
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length == 0 || length > self->large || PyUnicode_READ_CHAR(text, length - 1) == '\n'
            || PyDict_GET_SIZE(self->held) != 0
            || PyDict_GetItemWithError(self->sysdict, NAME_STDOUT) != self->stdout_proxy)
        goto fallback;
    int capturing = attr_true(self->monitor, NAME_CAPTURING);
    if (capturing < 0) return NULL;
    if (!capturing) goto fallback;
    int room = has_room(self->processor, self->rows);
    if (room < 0) return NULL;
    if (!room) goto fallback;  /* Python counts the refusal */
    PyObject *row = line_row(self, text);
    if (row == NULL) goto fallback;
    int appended = PyList_Append(self->rows, row);
    Py_DECREF(row);
    if (appended < 0) return NULL;
    PyObject *line = PyUnicode_Concat(text, STR_NEWLINE);
    if (line == NULL) return NULL;
    PyObject *written = PyObject_CallOneArg(self->write_through, line);
    Py_DECREF(line);
    if (written == NULL) return NULL;
    Py_DECREF(written);
    Py_RETURN_NONE;
fallback:
    if (PyErr_Occurred()) return NULL;
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static int Printer_init(Printer *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fallback", "stdout", "write_through", "rows", "held", "monitor", "processor",
                            "operation", "large", NULL};
    PyObject *fallback, *stdout_proxy, *write_through, *rows, *held, *monitor, *processor, *operation;
    Py_ssize_t large;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO!O!OOOn:Printer", names, &fallback, &stdout_proxy,
                                     &write_through, &PyList_Type, &rows, &PyDict_Type, &held, &monitor,
                                     &processor, &operation, &large))
        return -1;
    if (!PyContextVar_CheckExact(operation)) {
        PyErr_SetString(PyExc_TypeError, "Printer: operation must be a ContextVar");
        return -1;
    }
    PyObject *sys = PyImport_ImportModule("sys");
    if (sys == NULL) return -1;
    Py_XSETREF(self->sysdict, Py_NewRef(PyModule_GetDict(sys)));
    Py_DECREF(sys);
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->stdout_proxy, Py_NewRef(stdout_proxy));
    Py_XSETREF(self->write_through, Py_NewRef(write_through));
    Py_XSETREF(self->rows, Py_NewRef(rows));
    Py_XSETREF(self->held, Py_NewRef(held));
    Py_XSETREF(self->monitor, Py_NewRef(monitor));
    Py_XSETREF(self->processor, Py_NewRef(processor));
    Py_XSETREF(self->operation, Py_NewRef(operation));
    self->large = large;
    self->vectorcall = Printer_vectorcall;
    return 0;
}

static int Printer_traverse(Printer *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->stdout_proxy);
    Py_VISIT(self->write_through);
    Py_VISIT(self->rows);
    Py_VISIT(self->held);
    Py_VISIT(self->monitor);
    Py_VISIT(self->processor);
    Py_VISIT(self->operation);
    Py_VISIT(self->sysdict);
    return 0;
}

static int Printer_clear(Printer *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->stdout_proxy);
    Py_CLEAR(self->write_through);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->held);
    Py_CLEAR(self->monitor);
    Py_CLEAR(self->processor);
    Py_CLEAR(self->operation);
    Py_CLEAR(self->sysdict);
    return 0;
}

static void Printer_dealloc(Printer *self) {
    PyObject_GC_UnTrack(self);
    Printer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PrinterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scorewatch.telemetry._worker.Printer",
    .tp_doc = PyDoc_STR("print(), recording the common call in C; see TelemetryMonitor.printer."),
    .tp_basicsize = sizeof(Printer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Printer, vectorcall),
    .tp_call = call_initialized,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Printer_init,
    .tp_dealloc = (destructor)Printer_dealloc,
    .tp_traverse = (traverseproc)Printer_traverse,
    .tp_clear = (inquiry)Printer_clear,
};

/* -- request_finished ------------------------------------------------------------------------ */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;       /* TelemetryMonitor's Python request_finished: every call this one does not take */
    PyObject *rows;           /* BatchProcessor.rows */
    PyObject *monitor;        /* .capturing, .sampling, .model_data */
    PyObject *processor;      /* .row_limit */
    PyObject *names_and_urls; /* (method, path, server, scheme) -> (name, url), filled by the fallback */
    PyObject *last_key;       /* the last key found there, and its (name, url): most requests repeat it */
    PyObject *last_known;
    Py_ssize_t inline_limit;
    vectorcallfunc vectorcall;
} Recorder;

/* scope[key], or None when it has none (scope.get); NULL on error */
static PyObject *scope_get(PyObject *scope, PyObject *key) {
    PyObject *value = PyDict_GetItemWithError(scope, key);
    if (value == NULL && PyErr_Occurred()) return NULL;
    return Py_NewRef(value ? value : Py_None);
}

/* payload length as len() counts it; -1 for a type the fast path leaves to Python */
static Py_ssize_t payload_length(PyObject *value) {
    if (PyBytes_CheckExact(value)) return PyBytes_GET_SIZE(value);
    if (PyUnicode_CheckExact(value)) return PyUnicode_GET_LENGTH(value);
    return -1;
}

/* The "r" row (TelemetryMonitor._request_row) of a request this fast path takes, or NULL: with an
   error set on failure, without one when the call is Python's. args: operation, scope, start_ts,
   duration_ms, status_code, body, output[, exception] */
static PyObject *request_row(Recorder *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *op = args[0], *scope = args[1], *status = args[4], *body = args[5], *output = args[6];
    if ((nargs == 8 && args[7] != Py_None) || !PyDict_CheckExact(scope) || !PyLong_CheckExact(status))
        return NULL;
    long code = PyLong_AsLong(status);
    if (code == -1 && PyErr_Occurred()) return NULL;
    if (code >= 400) return NULL;  /* failures: always kept, never sampled; Python's */
    PyObject *row = NULL, *sampling = NULL, *model_data = NULL, *method = NULL, *path = NULL, *server = NULL,
             *scheme = NULL, *query = NULL, *key = NULL, *known = NULL, *extra = NULL, *caller = NULL,
             *op_id = NULL, *parent_id = NULL, *request_id = NULL, *client_request_id = NULL;
    PyObject *value = Py_None, *out = Py_None;
    if ((sampling = PyObject_GetAttr(self->monitor, NAME_SAMPLING)) == NULL) goto done;
    if (!PyFloat_CheckExact(sampling) || PyFloat_AS_DOUBLE(sampling) < 100.0) goto done;
    if ((model_data = PyObject_GetAttr(self->monitor, NAME_MODEL_DATA)) == NULL) goto done;
    if ((method = scope_get(scope, KEY_METHOD)) == NULL || (path = scope_get(scope, KEY_PATH)) == NULL
            || (server = scope_get(scope, KEY_SERVER)) == NULL || (scheme = scope_get(scope, KEY_SCHEME)) == NULL
            || (query = scope_get(scope, KEY_QUERY_STRING)) == NULL)
        goto done;
    if (!PyBytes_CheckExact(query) || PyBytes_GET_SIZE(query) != 0) goto done;  /* a query: Python's */
    if (model_data == Py_True) {
        Py_ssize_t in, n = 0;
        if (!PyUnicode_CheckExact(method) || PyUnicode_Compare(method, STR_GET) == 0) goto done;  /* GET input */
        if ((in = payload_length(body)) < 0 || (output != Py_None && (n = payload_length(output)) < 0)) goto done;
        if (in + n > self->inline_limit) goto done;  /* a blob, written on the thread: Python's */
        value = body;
        out = output;
    } else if (model_data != Py_False) {
        goto done;
    }
    PyObject *parts[4] = {method, path, server, scheme};
    int same = self->last_key != NULL;  /* the request before had the same (method, path, server, scheme) */
    for (Py_ssize_t i = 0; same && i < 4; i++) {
        PyObject *before = PyTuple_GET_ITEM(self->last_key, i);
        same = parts[i] == before ? 1 : PyObject_RichCompareBool(parts[i], before, Py_EQ);
        if (same < 0) goto done;
    }
    if (same) {
        known = Py_NewRef(self->last_known);  /* held: an __eq__ may run anything, a request included */
    } else {
        if ((key = PyTuple_Pack(4, parts[0], parts[1], parts[2], parts[3])) == NULL) goto done;
        known = PyDict_GetItemWithError(self->names_and_urls, key);
        if (known == NULL || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2) {
            known = NULL;
            goto done;
        }
        Py_INCREF(known);
        Py_XSETREF(self->last_key, Py_NewRef(key));
        Py_XSETREF(self->last_known, Py_NewRef(known));
    }
    if ((extra = PyObject_GetAttr(op, NAME_EXTRA)) == NULL) goto done;
    if (!PyDict_CheckExact(extra)) goto done;
    if ((caller = scope_get(extra, STR_PARENT_SPAN_ID)) == NULL) goto done;
    if ((op_id = PyObject_GetAttr(op, NAME_OPERATION_ID)) == NULL
            || (parent_id = PyObject_GetAttr(op, NAME_PARENT_ID)) == NULL
            || (request_id = PyObject_GetAttr(op, NAME_REQUEST_ID)) == NULL
            || (client_request_id = PyObject_GetAttr(op, NAME_CLIENT_REQUEST_ID)) == NULL)
        goto done;
    row = PyTuple_Pack(16, STR_R, args[2], op_id, parent_id, caller, PyTuple_GET_ITEM(known, 0),
                       PyTuple_GET_ITEM(known, 1), args[3], status, Py_True, request_id, client_request_id,
                       value, out, sampling, model_data);
done:
    Py_XDECREF(sampling);
    Py_XDECREF(model_data);
    Py_XDECREF(method);
    Py_XDECREF(path);
    Py_XDECREF(server);
    Py_XDECREF(scheme);
    Py_XDECREF(query);
    Py_XDECREF(key);
    Py_XDECREF(known);
    Py_XDECREF(extra);
    Py_XDECREF(caller);
    Py_XDECREF(op_id);
    Py_XDECREF(parent_id);
    Py_XDECREF(request_id);
    Py_XDECREF(client_request_id);
    return row;
}

static PyObject *Recorder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Recorder *self = (Recorder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 7 || nargs > 8) goto fallback;
    int capturing = attr_true(self->monitor, NAME_CAPTURING);
    if (capturing < 0) return NULL;
    if (!capturing) Py_RETURN_NONE;  /* as Python: nothing recorded */
    int room = has_room(self->processor, self->rows);
    if (room < 0) return NULL;
    if (!room) goto fallback;  /* Python counts the refusal */
    PyObject *row = request_row(self, args, nargs);
    if (row == NULL) goto fallback;
    int appended = PyList_Append(self->rows, row);
    Py_DECREF(row);
    if (appended < 0) return NULL;
    Py_RETURN_NONE;
fallback:
    if (PyErr_Occurred()) return NULL;
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static int Recorder_init(Recorder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fallback", "rows", "monitor", "processor", "names_and_urls", "inline_limit", NULL};
    PyObject *fallback, *rows, *monitor, *processor, *names_and_urls;
    Py_ssize_t inline_limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOO!n:Recorder", names, &fallback, &PyList_Type, &rows,
                                     &monitor, &processor, &PyDict_Type, &names_and_urls, &inline_limit))
        return -1;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->rows, Py_NewRef(rows));
    Py_XSETREF(self->monitor, Py_NewRef(monitor));
    Py_XSETREF(self->processor, Py_NewRef(processor));
    Py_XSETREF(self->names_and_urls, Py_NewRef(names_and_urls));
    Py_CLEAR(self->last_key);
    Py_CLEAR(self->last_known);
    self->inline_limit = inline_limit;
    self->vectorcall = Recorder_vectorcall;
    return 0;
}

static int Recorder_traverse(Recorder *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->rows);
    Py_VISIT(self->monitor);
    Py_VISIT(self->processor);
    Py_VISIT(self->names_and_urls);
    Py_VISIT(self->last_key);
    Py_VISIT(self->last_known);
    return 0;
}

static int Recorder_clear(Recorder *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->monitor);
    Py_CLEAR(self->processor);
    Py_CLEAR(self->names_and_urls);
    Py_CLEAR(self->last_key);
    Py_CLEAR(self->last_known);
    return 0;
}

static void Recorder_dealloc(Recorder *self) {
    PyObject_GC_UnTrack(self);
    Recorder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scorewatch.telemetry._worker.Recorder",
    .tp_doc = PyDoc_STR("request_finished, recording the common request in C; see TelemetryMonitor."),
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Recorder, vectorcall),
    .tp_call = call_initialized,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Recorder_init,
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_traverse = (traverseproc)Recorder_traverse,
    .tp_clear = (inquiry)Recorder_clear,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_worker",
    .m_doc = "The worker's common print() and finished request, recorded in C (see TelemetryMonitor).",
    .m_size = -1,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__worker(void) {
    if (intern(&STR_L, "l") < 0 || intern(&STR_STDOUT, "STDOUT") < 0 || intern(&STR_EMPTY, "") < 0
            || intern(&STR_NEWLINE, "\n") < 0 || intern(&NAME_CAPTURING, "capturing") < 0
            || intern(&NAME_SAMPLING, "sampling") < 0 || intern(&NAME_ROW_LIMIT, "row_limit") < 0
            || intern(&NAME_OPERATION_ID, "operation_id") < 0 || intern(&NAME_PARENT_ID, "parent_id") < 0
            || intern(&NAME_NAME, "name") < 0 || intern(&NAME_STDOUT, "stdout") < 0
            || intern(&STR_R, "r") < 0 || intern(&STR_PARENT_SPAN_ID, "parent_span_id") < 0
            || intern(&NAME_MODEL_DATA, "model_data") < 0 || intern(&NAME_EXTRA, "extra") < 0
            || intern(&NAME_REQUEST_ID, "request_id") < 0 || intern(&NAME_CLIENT_REQUEST_ID, "client_request_id") < 0
            || intern(&KEY_METHOD, "method") < 0 || intern(&KEY_PATH, "path") < 0 || intern(&KEY_SERVER, "server") < 0
            || intern(&KEY_SCHEME, "scheme") < 0 || intern(&KEY_QUERY_STRING, "query_string") < 0
            || intern(&STR_GET, "GET") < 0)
        return NULL;
    if (PyType_Ready(&PrinterType) < 0 || PyType_Ready(&RecorderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Printer", (PyObject *)&PrinterType) < 0
            || PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
