/* The worker's per-request telemetry in C: the common print() and the common finished request.

Every request of a monitored service pays for its telemetry under the GIL the whole worker shares.
The Recorder in recorder.py is the reference: its Python print makes a printed line's LINE row and
writes the line through; its Python record_request makes the request's Request row. Printer and
Recorder here make the same rows for the common calls, one C call each, and hand every other call,
unchanged, to the Python code they are given:
- Printer: one exact str, to sys.stdout, while capturing at a sampling of 100%, with no text held
  for its newline;
- Recorder: answered below 400 with no exception, no query string, no sampling, inputs and outputs
  (bytes or str) within the inline limit, and a (path, server, scheme) whose URL the Python code
  has already made.
The rows' layouts, and every name read from Python objects, come from _protocol.h, generated from
rows.py. tests/telemetry/test_worker_native.py checks, case by case, which way a call goes and that
both ways leave the same rows, text and records.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <time.h>

#include "_protocol.h"

#ifndef SOURCE_HASH
#define SOURCE_HASH ""  /* setup.py defines it: the digest of this file and _protocol.h */
#endif

/* Interned: the tags and names of the protocol (rows.py), and what Python calls them. */
static PyObject *STR_LINE, *STR_STDOUT, *STR_EMPTY, *STR_NEWLINE, *STR_REQUEST, *STR_PARENT_SPAN_ID;
static PyObject *NAME_CAPTURING, *NAME_SAMPLING, *NAME_MODEL_DATA, *NAME_ROW_LIMIT, *NAME_OPERATION_ID,
                *NAME_PARENT_ID, *NAME_NAME, *NAME_REQUEST_ID, *NAME_CLIENT_REQUEST_ID, *NAME_EXTRA, *NAME_STDOUT,
                *KEY_PATH, *KEY_SERVER, *KEY_SCHEME, *KEY_QUERY_STRING;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;       /* the Python print: every call this one does not take */
    PyObject *stdout_proxy;   /* sys.stdout while this print records */
    PyObject *write_through;  /* the real stream's write */
    PyObject *rows;           /* BatchProcessor.rows */
    PyObject *held;           /* the STDOUT texts held for their newline, by thread */
    PyObject *state;          /* recorder.State: .capturing, .sampling */
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

/* 1 if the attribute ``name`` of ``obj`` is True, 0 if not, -1 on error */
static int attr_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    int result = value == Py_True;
    Py_DECREF(value);
    return result;
}

/* A tuple of ``size`` items, each set by the caller (PyTuple_SET_ITEM steals a reference). */
static PyObject *new_row(Py_ssize_t size, PyObject *tag) {
    PyObject *row = PyTuple_New(size);
    if (row != NULL) PyTuple_SET_ITEM(row, 0, Py_NewRef(tag));
    return row;
}

/* The LINE row of ``text`` for the current operation, or NULL: with an error set on failure, without
   one when the call is Python's (sampled). */
static PyObject *line_row(Printer *self, PyObject *text) {
    PyObject *sampling = NULL, *op = NULL, *row = NULL, *tid = NULL, *when = NULL;
    PyObject *op_id = NULL, *parent_id = NULL, *name = NULL;
    sampling = PyObject_GetAttr(self->state, NAME_SAMPLING);
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
            || (when = PyFloat_FromDouble(now())) == NULL || (row = new_row(TEXT_SIZE, STR_LINE)) == NULL)
        goto done;
    PyTuple_SET_ITEM(row, TEXT_TIME, Py_NewRef(when));
    PyTuple_SET_ITEM(row, TEXT_STREAM, Py_NewRef(STR_STDOUT));
    PyTuple_SET_ITEM(row, TEXT_TEXT, Py_NewRef(text));
    PyTuple_SET_ITEM(row, TEXT_THREAD, Py_NewRef(tid));
    PyTuple_SET_ITEM(row, TEXT_OPERATION_ID, Py_NewRef(op_id));
    PyTuple_SET_ITEM(row, TEXT_PARENT_ID, Py_NewRef(parent_id));
    PyTuple_SET_ITEM(row, TEXT_OPERATION_NAME, Py_NewRef(name));
    PyTuple_SET_ITEM(row, TEXT_SAMPLE_RATE, Py_NewRef(sampling));
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
    int capturing = attr_true(self->state, NAME_CAPTURING);
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
    static char *names[] = {"fallback", "stdout", "write_through", "rows", "held", "state", "processor",
                            "operation", "large", NULL};
    PyObject *fallback, *stdout_proxy, *write_through, *rows, *held, *state, *processor, *operation;
    Py_ssize_t large;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO!O!OOOn:Printer", names, &fallback, &stdout_proxy,
                                     &write_through, &PyList_Type, &rows, &PyDict_Type, &held, &state,
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
    Py_XSETREF(self->state, Py_NewRef(state));
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
    Py_VISIT(self->state);
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
    Py_CLEAR(self->state);
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
    .tp_doc = PyDoc_STR("print(), recording the common call in C; see recorder.Recorder.printer."),
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
    PyObject *fallback;       /* Recorder.record_request in Python: every call this one does not take */
    PyObject *rows;           /* BatchProcessor.rows */
    PyObject *state;          /* recorder.State: .capturing, .sampling, .model_data */
    PyObject *processor;      /* .row_limit */
    PyObject *urls;           /* (path, server, scheme) -> the URL without its query, filled by the fallback */
    PyObject *last_key;       /* the last key found there, and its URL: most requests repeat it */
    PyObject *last_url;
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

/* The Request row (Recorder.record_request) of a request this fast path takes, or NULL: with an
   error set on failure, without one when the call is Python's. args: operation, scope, start_ts,
   duration_ms, status_code, input, output[, exception] */
static PyObject *request_row(Recorder *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *op = args[0], *scope = args[1], *status = args[4], *input = args[5], *output = args[6];
    if ((nargs == 8 && args[7] != Py_None) || !PyDict_CheckExact(scope) || !PyLong_CheckExact(status))
        return NULL;
    long code = PyLong_AsLong(status);
    if (code == -1 && PyErr_Occurred()) return NULL;
    if (code >= 400) return NULL;  /* failures: always kept, never sampled; Python's */
    PyObject *row = NULL, *sampling = NULL, *model_data = NULL, *path = NULL, *server = NULL, *scheme = NULL,
             *query = NULL, *key = NULL, *url = NULL, *extra = NULL, *caller = NULL, *op_id = NULL,
             *parent_id = NULL, *name = NULL, *request_id = NULL, *client_request_id = NULL;
    PyObject *value = Py_None, *out = Py_None;
    if ((sampling = PyObject_GetAttr(self->state, NAME_SAMPLING)) == NULL) goto done;
    if (!PyFloat_CheckExact(sampling) || PyFloat_AS_DOUBLE(sampling) < 100.0) goto done;
    if ((model_data = PyObject_GetAttr(self->state, NAME_MODEL_DATA)) == NULL) goto done;
    if ((path = scope_get(scope, KEY_PATH)) == NULL || (server = scope_get(scope, KEY_SERVER)) == NULL
            || (scheme = scope_get(scope, KEY_SCHEME)) == NULL || (query = scope_get(scope, KEY_QUERY_STRING)) == NULL)
        goto done;
    if (!PyBytes_CheckExact(query) || PyBytes_GET_SIZE(query) != 0) goto done;  /* a query: Python's */
    if (model_data == Py_True) {
        Py_ssize_t in, n = 0;
        if ((in = payload_length(input)) < 0 || (output != Py_None && (n = payload_length(output)) < 0)) goto done;
        if (in + n > self->inline_limit) goto done;  /* a blob, written on the thread: Python's */
        value = input;
        out = output;
    } else if (model_data != Py_False) {
        goto done;
    }
    PyObject *parts[3] = {path, server, scheme};
    int same = self->last_key != NULL;  /* the request before had the same (path, server, scheme) */
    for (Py_ssize_t i = 0; same && i < 3; i++) {
        PyObject *before = PyTuple_GET_ITEM(self->last_key, i);
        same = parts[i] == before ? 1 : PyObject_RichCompareBool(parts[i], before, Py_EQ);
        if (same < 0) goto done;
    }
    if (same) {
        url = Py_NewRef(self->last_url);  /* held: an __eq__ may run anything, a request included */
    } else {
        if ((key = PyTuple_Pack(3, parts[0], parts[1], parts[2])) == NULL) goto done;
        url = PyDict_GetItemWithError(self->urls, key);
        if (url == NULL || !PyUnicode_CheckExact(url)) {
            url = NULL;
            goto done;
        }
        Py_INCREF(url);
        Py_XSETREF(self->last_key, Py_NewRef(key));
        Py_XSETREF(self->last_url, Py_NewRef(url));
    }
    if ((extra = PyObject_GetAttr(op, NAME_EXTRA)) == NULL) goto done;
    if (!PyDict_CheckExact(extra)) goto done;
    if ((caller = scope_get(extra, STR_PARENT_SPAN_ID)) == NULL) goto done;
    if ((op_id = PyObject_GetAttr(op, NAME_OPERATION_ID)) == NULL
            || (parent_id = PyObject_GetAttr(op, NAME_PARENT_ID)) == NULL
            || (name = PyObject_GetAttr(op, NAME_NAME)) == NULL
            || (request_id = PyObject_GetAttr(op, NAME_REQUEST_ID)) == NULL
            || (client_request_id = PyObject_GetAttr(op, NAME_CLIENT_REQUEST_ID)) == NULL
            || (row = new_row(REQUEST_SIZE, STR_REQUEST)) == NULL)
        goto done;
    PyTuple_SET_ITEM(row, REQUEST_START, Py_NewRef(args[2]));
    PyTuple_SET_ITEM(row, REQUEST_OPERATION_ID, Py_NewRef(op_id));
    PyTuple_SET_ITEM(row, REQUEST_SPAN_ID, Py_NewRef(parent_id));
    PyTuple_SET_ITEM(row, REQUEST_CALLER, Py_NewRef(caller));
    PyTuple_SET_ITEM(row, REQUEST_NAME, Py_NewRef(name));
    PyTuple_SET_ITEM(row, REQUEST_URL, Py_NewRef(url));
    PyTuple_SET_ITEM(row, REQUEST_DURATION_MS, Py_NewRef(args[3]));
    PyTuple_SET_ITEM(row, REQUEST_STATUS, Py_NewRef(status));
    PyTuple_SET_ITEM(row, REQUEST_SUCCESS, Py_NewRef(Py_True));
    PyTuple_SET_ITEM(row, REQUEST_REQUEST_ID, Py_NewRef(request_id));
    PyTuple_SET_ITEM(row, REQUEST_CLIENT_REQUEST_ID, Py_NewRef(client_request_id));
    PyTuple_SET_ITEM(row, REQUEST_INPUT, Py_NewRef(value));
    PyTuple_SET_ITEM(row, REQUEST_PREDICTION, Py_NewRef(out));
    PyTuple_SET_ITEM(row, REQUEST_SAMPLE_RATE, Py_NewRef(sampling));
    PyTuple_SET_ITEM(row, REQUEST_MODEL_DATA, Py_NewRef(model_data));
done:
    Py_XDECREF(sampling);
    Py_XDECREF(model_data);
    Py_XDECREF(path);
    Py_XDECREF(server);
    Py_XDECREF(scheme);
    Py_XDECREF(query);
    Py_XDECREF(key);
    Py_XDECREF(url);
    Py_XDECREF(extra);
    Py_XDECREF(caller);
    Py_XDECREF(op_id);
    Py_XDECREF(parent_id);
    Py_XDECREF(name);
    Py_XDECREF(request_id);
    Py_XDECREF(client_request_id);
    return row;
}

static PyObject *Recorder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Recorder *self = (Recorder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 7 || nargs > 8) goto fallback;
    int capturing = attr_true(self->state, NAME_CAPTURING);
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
    static char *names[] = {"fallback", "rows", "state", "processor", "urls", "inline_limit", NULL};
    PyObject *fallback, *rows, *state, *processor, *urls;
    Py_ssize_t inline_limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOO!n:Recorder", names, &fallback, &PyList_Type, &rows,
                                     &state, &processor, &PyDict_Type, &urls, &inline_limit))
        return -1;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->rows, Py_NewRef(rows));
    Py_XSETREF(self->state, Py_NewRef(state));
    Py_XSETREF(self->processor, Py_NewRef(processor));
    Py_XSETREF(self->urls, Py_NewRef(urls));
    Py_CLEAR(self->last_key);
    Py_CLEAR(self->last_url);
    self->inline_limit = inline_limit;
    self->vectorcall = Recorder_vectorcall;
    return 0;
}

static int Recorder_traverse(Recorder *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->rows);
    Py_VISIT(self->state);
    Py_VISIT(self->processor);
    Py_VISIT(self->urls);
    Py_VISIT(self->last_key);
    Py_VISIT(self->last_url);
    return 0;
}

static int Recorder_clear(Recorder *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->state);
    Py_CLEAR(self->processor);
    Py_CLEAR(self->urls);
    Py_CLEAR(self->last_key);
    Py_CLEAR(self->last_url);
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
    .tp_doc = PyDoc_STR("request_finished, recording the common request in C; see recorder.Recorder."),
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
    .m_doc = "The worker's common print() and finished request, recorded in C (see recorder.Recorder).",
    .m_size = -1,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__worker(void) {
    if (intern(&STR_LINE, TAG_LINE) < 0 || intern(&STR_REQUEST, TAG_REQUEST) < 0
            || intern(&STR_STDOUT, STREAM_STDOUT) < 0 || intern(&STR_EMPTY, "") < 0 || intern(&STR_NEWLINE, "\n") < 0
            || intern(&STR_PARENT_SPAN_ID, NAME_OPERATION_EXTRA_PARENT_SPAN_ID) < 0
            || intern(&NAME_CAPTURING, NAME_STATE_CAPTURING) < 0 || intern(&NAME_SAMPLING, NAME_STATE_SAMPLING) < 0
            || intern(&NAME_MODEL_DATA, NAME_STATE_MODEL_DATA) < 0
            || intern(&NAME_ROW_LIMIT, NAME_PROCESSOR_ROW_LIMIT) < 0
            || intern(&NAME_OPERATION_ID, NAME_OPERATION_OPERATION_ID) < 0
            || intern(&NAME_PARENT_ID, NAME_OPERATION_PARENT_ID) < 0 || intern(&NAME_NAME, NAME_OPERATION_NAME) < 0
            || intern(&NAME_REQUEST_ID, NAME_OPERATION_REQUEST_ID) < 0
            || intern(&NAME_CLIENT_REQUEST_ID, NAME_OPERATION_CLIENT_REQUEST_ID) < 0
            || intern(&NAME_EXTRA, NAME_OPERATION_EXTRA) < 0 || intern(&NAME_STDOUT, "stdout") < 0
            || intern(&KEY_PATH, NAME_SCOPE_PATH) < 0 || intern(&KEY_SERVER, NAME_SCOPE_SERVER) < 0
            || intern(&KEY_SCHEME, NAME_SCOPE_SCHEME) < 0 || intern(&KEY_QUERY_STRING, NAME_SCOPE_QUERY_STRING) < 0)
        return NULL;
    if (PyType_Ready(&PrinterType) < 0 || PyType_Ready(&RecorderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Printer", (PyObject *)&PrinterType) < 0
            || PyModule_AddObjectRef(m, "Recorder", (PyObject *)&RecorderType) < 0
            || PyModule_AddStringConstant(m, "PROTOCOL", PROTOCOL_FINGERPRINT) < 0
            || PyModule_AddStringConstant(m, "SOURCE_HASH", SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
