/* The envelopes of the common telemetry rows, written in C: the fast path of Templates.rows.

Every scored request becomes two or three envelopes in the exporter process. Built in Python
(orjson calls and the bytecode between them) that is most of what monitoring costs the machine;
this module writes the same bytes directly.

It takes only rows whose envelopes it can write exactly as templates.py does; every other row goes,
in order, to the Python fallback it is given, which stays the reference (blob markers, printed JSON,
lines split over several writes, non-UTF-8 payloads, durations of a minute or more, odd types).
tests/telemetry/test_rows_native.py checks both ways byte for byte. Nothing here defines an
envelope: templates.py compiles each kind from EnvelopeFactory into the literal pieces around its
slots, and hands them in; this file fills the slots, in the order rows.py declares them (the slot
indices and the rows' layouts come from _protocol.h, generated from rows.py).
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "_protocol.h"

#ifndef SOURCE_HASH
#define SOURCE_HASH ""  /* setup.py defines it: the digest of this file and _protocol.h */
#endif

#define FALLBACK 0  /* a writer's answer: not a row for this path, ask Python */
#define WRITTEN 1
#define MAX_SECOND 253402300799LL  /* 9999-12-31T23:59:59: four-digit years only */

/* -- a growing output buffer ------------------------------------------------------------------ */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static int put_again(Buf *b, Py_ssize_t at, Py_ssize_t n) {  /* a copy of what the buffer holds at ``at`` */
    if (reserve(b, n) < 0) return -1;  /* first: it may move the data */
    memcpy(b->data + b->len, b->data + at, n);
    b->len += n;
    return 0;
}

static int put_bytes(Buf *b, PyObject *bytes) {  /* a literal piece (always exact bytes; often empty) */
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    return n == 0 ? 0 : put(b, PyBytes_AS_STRING(bytes), n);
}

static int put_digits(Buf *b, long long value, int width) {  /* zero-padded, value >= 0 */
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 || n < width);
    if (reserve(b, n) < 0) return -1;
    while (n > 0) b->data[b->len++] = digits[--n];
    return 0;
}

/* A JSON string, escaped as orjson escapes it: '"', '\\' and the C0 controls; UTF-8 kept as is. */
static const char HEX[] = "0123456789abcdef";

static int put_json(Buf *b, const char *s, Py_ssize_t n) {
    if (reserve(b, 2 + 6 * n) < 0) return -1;
    char *out = b->data + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
            case '"': *out++ = '"'; break;
            case '\\': *out++ = '\\'; break;
            case '\b': *out++ = 'b'; break;
            case '\t': *out++ = 't'; break;
            case '\n': *out++ = 'n'; break;
            case '\f': *out++ = 'f'; break;
            case '\r': *out++ = 'r'; break;
            default:
                *out++ = 'u'; *out++ = '0'; *out++ = '0';
                *out++ = HEX[c >> 4]; *out++ = HEX[c & 15];
        }
    }
    *out++ = '"';
    b->len = out - b->data;
    return 0;
}

/* -- reading a row's fields: each answers FALLBACK (no error set) when the value is not the plain case */
static int utf8_of(PyObject *text, const char **s, Py_ssize_t *n) {  /* an exact str -> its UTF-8 */
    if (!PyUnicode_CheckExact(text)) return FALLBACK;
    *s = PyUnicode_AsUTF8AndSize(text, n);
    if (*s == NULL) {  /* lone surrogates: orjson refuses them, and so does the fallback */
        PyErr_Clear();
        return FALLBACK;
    }
    return WRITTEN;
}

static int put_text(Buf *b, PyObject *text) {  /* orjson.dumps(text) */
    const char *s;
    Py_ssize_t n;
    if (utf8_of(text, &s, &n) == FALLBACK) return FALLBACK;
    return put_json(b, s, n) < 0 ? -1 : WRITTEN;
}

static int put_raw_text(Buf *b, PyObject *text) {  /* text.encode(): ids, which are hex */
    const char *s;
    Py_ssize_t n;
    if (utf8_of(text, &s, &n) == FALLBACK) return FALLBACK;
    return put(b, s, n) < 0 ? -1 : WRITTEN;
}

static int is_utf8(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {  /* not all ASCII: let CPython's decoder judge */
            PyObject *decoded = PyUnicode_DecodeUTF8(s, n, "strict");
            if (decoded == NULL) {
                PyErr_Clear();
                return 0;
            }
            Py_DECREF(decoded);
            return 1;
        }
    }
    return 1;
}

static int as_double(PyObject *value, double *out) {  /* an exact float or int, finite */
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
    } else if (PyLong_CheckExact(value)) {
        *out = PyLong_AsDouble(value);
        if (*out == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return FALLBACK;
        }
    } else {
        return FALLBACK;
    }
    return isfinite(*out) ? WRITTEN : FALLBACK;
}

/* -- the builder ------------------------------------------------------------------------------- */
/* A template as templates.Template hands it in: ``pieces`` (the literal before each slot, then the
   end) and ``members`` (for an optional slot, the bytes before and after its value; else None). */
typedef struct {
    PyObject *pieces;
    PyObject *members;
} Template;

typedef struct {
    PyObject_HEAD
    Template request, model_data, output;
    PyObject *streams;     /* {"STDOUT": (b'"STDOUT"', severity), ...}, checked by Builder_init */
    PyObject *last_stream; /* the stream of the line before, its JSON and severity: most lines repeat it */
    PyObject *last_json;
    long last_severity;
    Py_ssize_t inline_limit;
    long long second;      /* the second whose "YYYY-MM-DDTHH:MM:SS" is in prefix */
    char prefix[32];
    Py_ssize_t prefix_len;
    Buf buf;
} Builder;

#define PIECE(tuple, i) PyTuple_GET_ITEM((tuple), (i))

/* The writers keep a template's tuples in locals (``Template t = self->request``): through a pointer
   into the builder they would be read again after every write to the buffer, which may alias them. */
static int put_piece(Buf *b, Template t, Py_ssize_t slot) {  /* the literal before ``slot`` */
    return put_bytes(b, PIECE(t.pieces, slot));
}

static int open_member(Buf *b, Template t, Py_ssize_t slot) {
    return put_bytes(b, PIECE(PIECE(t.members, slot), 0));
}

static int close_member(Buf *b, Template t, Py_ssize_t slot) {
    return put_bytes(b, PIECE(PIECE(t.members, slot), 1));
}

/* An optional member whose value is ``text``: raw (between quotes) or as JSON; FALLBACK, WRITTEN or -1.
   Inlined: it runs for most rows, and ``raw`` is a constant at each call. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int put_member(Buf *b, Template t, Py_ssize_t slot, PyObject *text, int raw) {
    if (open_member(b, t, slot) < 0) return -1;
    int written = raw ? put_raw_text(b, text) : put_text(b, text);
    if (written != WRITTEN) return written;
    return close_member(b, t, slot) < 0 ? -1 : WRITTEN;
}

static int put_time(Builder *self, Buf *b, double when) {
    /* "YYYY-MM-DDTHH:MM:SS.ffffffZ", rounded as envelopes.format_time rounds (split_time) */
    double whole;
    double fraction = modf(when, &whole);
    long long micros = (long long)nearbyint(fraction * 1000000.0);  /* round(): half to even */
    long long second = (long long)whole;
    if (micros >= 1000000) {
        second += 1;
        micros -= 1000000;
    }
    if (second != self->second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL
                || strftime(self->prefix, sizeof self->prefix, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
            return FALLBACK;
        self->second = second;
        self->prefix_len = (Py_ssize_t)strlen(self->prefix);
    }
    if (put(b, self->prefix, self->prefix_len) < 0 || put(b, ".", 1) < 0
            || put_digits(b, micros, 6) < 0 || put(b, "Z", 1) < 0)
        return -1;
    return WRITTEN;
}

static int time_ok(double when) {
    return isfinite(when) && when >= 0 && when < (double)MAX_SECOND;
}

static int put_sample(Buf *b, Template t, Py_ssize_t slot, double rate) {  /* the member, orjson.dumps(rate) */
    char *repr = PyOS_double_to_string(rate, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (repr == NULL) return -1;
    int failed = open_member(b, t, slot) < 0 || put(b, repr, (Py_ssize_t)strlen(repr)) < 0
                 || close_member(b, t, slot) < 0;
    PyMem_Free(repr);
    return failed ? -1 : 0;
}

static int put_payload(Builder *self, Buf *b, PyObject *value) {
    /* orjson.dumps(Payloads.value(value)), for the values it keeps inline: UTF-8 bytes within the
       limit, and str of at most limit / 4 characters */
    if (PyBytes_CheckExact(value)) {
        const char *s = PyBytes_AS_STRING(value);
        Py_ssize_t n = PyBytes_GET_SIZE(value);
        if (n > self->inline_limit || !is_utf8(s, n)) return FALLBACK;  /* a blob, or kept whole */
        return put_json(b, s, n) < 0 ? -1 : WRITTEN;
    }
    if (PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) <= self->inline_limit / 4)
        return put_text(b, value);
    return FALLBACK;
}

/* Each step returns FALLBACK or -1 from the enclosing writer. */
#define STEP(call) do { int _r = (call); if (_r == FALLBACK) return FALLBACK; if (_r < 0) return -1; } while (0)
#define PUT(call) do { if ((call) < 0) return -1; } while (0)

/* A Request row: Templates._request. */
static int write_request(Builder *self, PyObject *row, PyObject *out) {
    if (PyTuple_GET_SIZE(row) != REQUEST_SIZE) return FALLBACK;
    PyObject *op = PIECE(row, REQUEST_OPERATION_ID), *span = PIECE(row, REQUEST_SPAN_ID),
             *caller = PIECE(row, REQUEST_CALLER), *name = PIECE(row, REQUEST_NAME), *url = PIECE(row, REQUEST_URL),
             *status_obj = PIECE(row, REQUEST_STATUS), *success = PIECE(row, REQUEST_SUCCESS),
             *request_id = PIECE(row, REQUEST_REQUEST_ID), *client_request_id = PIECE(row, REQUEST_CLIENT_REQUEST_ID),
             *model_data = PIECE(row, REQUEST_MODEL_DATA);
    double start, duration_ms, rate;
    if (as_double(PIECE(row, REQUEST_START), &start) == FALLBACK || !time_ok(start)
            || as_double(PIECE(row, REQUEST_DURATION_MS), &duration_ms) == FALLBACK
            || as_double(PIECE(row, REQUEST_SAMPLE_RATE), &rate) == FALLBACK
            || !PyLong_CheckExact(status_obj) || !PyBool_Check(success) || !PyBool_Check(model_data)
            || (caller != Py_None && !PyUnicode_CheckExact(caller)))
        return FALLBACK;
    long status = PyLong_AsLong(status_obj);
    if (status < 0) {  /* not an HTTP status (or too large for a long): the fallback formats it */
        PyErr_Clear();
        return FALLBACK;
    }
    double scaled = nearbyint(duration_ms * 1000.0);  /* round(): half to even */
    if (scaled >= 60000000.0) return FALLBACK;  /* a minute or more: format_duration's long form */
    long long micros = scaled > 0 ? (long long)scaled : 0;
    int ok = success == Py_True;
    int sampled = ok && rate < 100.0;  /* envelopes.sample_rate; failures are never sampled */
    Buf *b = &self->buf;
    Template R = self->request;

    b->len = 0;
    PUT(put_piece(b, R, REQUEST_ENVELOPE_TIME));
    Py_ssize_t time_at = b->len;  /* the time, request id and client request id are copied into the model data */
    STEP(put_time(self, b, start));
    Py_ssize_t time_end = b->len;
    PUT(put_piece(b, R, REQUEST_ENVELOPE_OPERATION_ID));
    STEP(put_raw_text(b, op));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_CALLER));
    if (caller != Py_None && PyUnicode_GET_LENGTH(caller) > 0) STEP(put_member(b, R, REQUEST_ENVELOPE_CALLER, caller, 1));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_OPERATION_NAME));
    STEP(put_text(b, name));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_ID));
    STEP(put_raw_text(b, span));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_NAME));
    STEP(put_text(b, name));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_URL));
    STEP(put_text(b, url));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_DURATION));
    PUT(put(b, "0.00:00:", 8));  /* format_duration, under a minute */
    PUT(put_digits(b, micros / 1000000, 2));
    PUT(put(b, ".", 1));
    PUT(put_digits(b, micros % 1000000, 6));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_RESPONSE_CODE));
    PUT(put_digits(b, status, 1));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_SUCCESS));
    PUT(ok ? put(b, "true", 4) : put(b, "false", 5));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_REQUEST_ID));
    Py_ssize_t request_id_at = b->len;
    STEP(put_text(b, request_id));
    Py_ssize_t request_id_end = b->len;
    PUT(put_piece(b, R, REQUEST_ENVELOPE_CLIENT_REQUEST_ID));
    Py_ssize_t client_at = b->len;
    STEP(put_text(b, client_request_id));
    Py_ssize_t client_end = b->len;
    PUT(put_piece(b, R, REQUEST_ENVELOPE_SAMPLE_RATE));
    if (sampled) PUT(put_sample(b, R, REQUEST_ENVELOPE_SAMPLE_RATE, rate));
    PUT(put_piece(b, R, REQUEST_ENVELOPE_SLOTS));
    Py_ssize_t request_len = b->len;
    if (model_data == Py_True) {
        /* the model data envelope goes after the request's, in the same buffer */
        Template M = self->model_data;
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_TIME));
        PUT(put_again(b, time_at, time_end - time_at));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_OPERATION_ID));
        STEP(put_raw_text(b, op));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_PARENT_ID));
        STEP(put_raw_text(b, span));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_OPERATION_NAME));
        STEP(put_text(b, name));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_REQUEST_ID));
        PUT(put_again(b, request_id_at, request_id_end - request_id_at));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_CLIENT_REQUEST_ID));
        PUT(put_again(b, client_at, client_end - client_at));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_INPUT));
        STEP(put_payload(self, b, PIECE(row, REQUEST_INPUT)));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_PREDICTION));
        Py_ssize_t prediction_at = b->len;
        STEP(put_payload(self, b, PIECE(row, REQUEST_PREDICTION)));
        Py_ssize_t prediction_end = b->len;
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_ERROR));
        if (!ok) {
            PUT(open_member(b, M, MODEL_DATA_ENVELOPE_ERROR));
            PUT(put_again(b, prediction_at, prediction_end - prediction_at));
            PUT(close_member(b, M, MODEL_DATA_ENVELOPE_ERROR));
        }
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_STATUS_CODE));
        if (!ok) {
            PUT(open_member(b, M, MODEL_DATA_ENVELOPE_STATUS_CODE));
            PUT(put_digits(b, status, 1));
            PUT(close_member(b, M, MODEL_DATA_ENVELOPE_STATUS_CODE));
        }
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_SAMPLE_RATE));
        if (sampled) PUT(put_sample(b, M, MODEL_DATA_ENVELOPE_SAMPLE_RATE, rate));
        PUT(put_piece(b, M, MODEL_DATA_ENVELOPE_SLOTS));
    }
    PyObject *request = PyBytes_FromStringAndSize(b->data, request_len);
    if (request == NULL || PyList_Append(out, request) < 0) {
        Py_XDECREF(request);
        return -1;
    }
    Py_DECREF(request);
    if (b->len > request_len) {
        PyObject *envelope = PyBytes_FromStringAndSize(b->data + request_len, b->len - request_len);
        if (envelope == NULL || PyList_Append(out, envelope) < 0) {
            Py_XDECREF(envelope);
            return -1;
        }
        Py_DECREF(envelope);
    }
    return WRITTEN;
}

/* A LINE row, when no line of any stream is half written (Templates.row's way, to Templates._line). */
static int write_line(Builder *self, PyObject *row, PyObject *pending, PyObject *out) {
    if (PyTuple_GET_SIZE(row) != TEXT_SIZE || !PyDict_CheckExact(pending) || PyDict_GET_SIZE(pending) != 0)
        return FALLBACK;
    PyObject *stream = PIECE(row, TEXT_STREAM), *text = PIECE(row, TEXT_TEXT), *op = PIECE(row, TEXT_OPERATION_ID),
             *parent = PIECE(row, TEXT_PARENT_ID), *name = PIECE(row, TEXT_OPERATION_NAME);
    double when, rate;
    if (as_double(PIECE(row, TEXT_TIME), &when) == FALLBACK || !time_ok(when)
            || as_double(PIECE(row, TEXT_SAMPLE_RATE), &rate) == FALLBACK
            || !PyUnicode_CheckExact(text) || !PyUnicode_CheckExact(stream))
        return FALLBACK;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length == 0 || length > self->inline_limit / 4) return FALLBACK;
    Py_UCS4 first = PyUnicode_READ_CHAR(text, 0);
    /* printed JSON becomes a nested object, a blank line no envelope: both for the fallback */
    if (first == '{' || first == '[' || Py_UNICODE_ISSPACE(first) || PyUnicode_READ_CHAR(text, length - 1) == '\n')
        return FALLBACK;
    if (stream != self->last_stream) {
        PyObject *known = PyDict_GetItemWithError(self->streams, stream);  /* (b'"STDOUT"', severity) */
        if (known == NULL) {  /* another stream: Python's */
            PyErr_Clear();
            return FALLBACK;
        }
        Py_XSETREF(self->last_stream, Py_NewRef(stream));
        Py_XSETREF(self->last_json, Py_NewRef(PIECE(known, 0)));
        self->last_severity = PyLong_AsLong(PIECE(known, 1));
    }
    int has_op = 0, has_parent = 0, has_name = 0;
    if (op != Py_None) {
        if (!PyUnicode_CheckExact(op)) return FALLBACK;
        has_op = PyUnicode_GET_LENGTH(op) > 0;
    }
    if (has_op) {
        if (!PyUnicode_CheckExact(parent) || !PyUnicode_CheckExact(name)) return FALLBACK;
        has_parent = PyUnicode_GET_LENGTH(parent) > 0;
        has_name = PyUnicode_GET_LENGTH(name) > 0;
    }
    Buf *b = &self->buf;
    Template O = self->output;

    b->len = 0;
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_TIME));
    STEP(put_time(self, b, when));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_OPERATION_ID));
    if (has_op) STEP(put_member(b, O, OUTPUT_ENVELOPE_OPERATION_ID, op, 1));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_PARENT_ID));
    if (has_parent) STEP(put_member(b, O, OUTPUT_ENVELOPE_PARENT_ID, parent, 1));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_OPERATION_NAME));
    if (has_name) STEP(put_member(b, O, OUTPUT_ENVELOPE_OPERATION_NAME, name, 0));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_MESSAGE));
    PUT(put_bytes(b, self->last_json));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_SEVERITY));
    PUT(put_digits(b, self->last_severity, 1));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_CONTENTS));
    STEP(put_text(b, text));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_SAMPLE_RATE));
    if (rate < 100.0) PUT(put_sample(b, O, OUTPUT_ENVELOPE_SAMPLE_RATE, rate));
    PUT(put_piece(b, O, OUTPUT_ENVELOPE_SLOTS));
    PyObject *envelope = PyBytes_FromStringAndSize(b->data, b->len);
    if (envelope == NULL || PyList_Append(out, envelope) < 0) {
        Py_XDECREF(envelope);
        return -1;
    }
    Py_DECREF(envelope);
    return WRITTEN;
}

static int write_row(Builder *self, PyObject *row, PyObject *pending, PyObject *out) {
    if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) == 0) return FALLBACK;
    PyObject *kind = PIECE(row, 0);  /* a tag: one ASCII character (rows.py) */
    if (!PyUnicode_CheckExact(kind) || PyUnicode_GET_LENGTH(kind) != 1) return FALLBACK;
    Py_UCS4 tag = PyUnicode_READ_CHAR(kind, 0);
    if (tag == (Py_UCS4)TAG_REQUEST[0]) return write_request(self, row, out);
    if (tag == (Py_UCS4)TAG_LINE[0]) return write_line(self, row, pending, out);
    return FALLBACK;
}

PyDoc_STRVAR(rows_doc,
"rows(rows, pending, fallback, pause, on_error, every) -> list[bytes]\n\n"
"The envelopes of ``rows``, in order: the common rows written here, any other given to\n"
"``fallback(row) -> list[bytes]``. ``pending`` is the Templates' dict of half-written lines.\n"
"``pause()`` is called after every ``every`` rows (None: never); an exception of ``fallback`` goes to\n"
"``on_error()`` and the row is skipped (None: it propagates).");

static PyObject *Builder_rows(Builder *self, PyObject *args) {
    PyObject *rows, *pending, *fallback, *pause, *on_error;
    Py_ssize_t every;
    if (!PyArg_ParseTuple(args, "O!OOOOn:rows", &PyList_Type, &rows, &pending, &fallback, &pause, &on_error, &every))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        Py_INCREF(row);  /* the fallback may run any code: keep the row alive */
        int written = write_row(self, row, pending, out);
        if (written == FALLBACK) {
            PyObject *envelopes = PyObject_CallOneArg(fallback, row);
            if (envelopes == NULL) {
                if (on_error == Py_None || !PyErr_ExceptionMatches(PyExc_Exception)) {
                    Py_DECREF(row);
                    goto error;
                }
                PyErr_Clear();
                PyObject *result = PyObject_CallNoArgs(on_error);
                if (result == NULL) {
                    Py_DECREF(row);
                    goto error;
                }
                Py_DECREF(result);
            } else {
                Py_ssize_t end = PyList_GET_SIZE(out);
                int failed = PyList_SetSlice(out, end, end, envelopes);  /* out.extend(envelopes) */
                Py_DECREF(envelopes);
                if (failed < 0) {
                    Py_DECREF(row);
                    goto error;
                }
            }
        } else if (written < 0) {
            Py_DECREF(row);
            goto error;
        }
        Py_DECREF(row);
        if (pause != Py_None && every > 0 && ((i + 1) % every == 0 || i + 1 == PyList_GET_SIZE(rows))) {
            PyObject *result = PyObject_CallNoArgs(pause);
            if (result == NULL) goto error;
            Py_DECREF(result);
        }
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* Check a template against the slots this file fills: as many pieces as slots + 1, all bytes, and
   members exactly for the slots it writes as optional (``optional``: one char per slot, '?' or '.'). */
static int check_template(PyObject *pieces, PyObject *members, const char *optional, const char *what) {
    Py_ssize_t slots = (Py_ssize_t)strlen(optional);
    if (!PyTuple_CheckExact(pieces) || PyTuple_GET_SIZE(pieces) != slots + 1
            || !PyTuple_CheckExact(members) || PyTuple_GET_SIZE(members) != slots) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd slots (rows.py and _rows.c disagree)", what, slots);
        return -1;
    }
    for (Py_ssize_t i = 0; i <= slots; i++) {
        if (!PyBytes_CheckExact(PIECE(pieces, i))) {
            PyErr_Format(PyExc_TypeError, "%s: piece %zd is not bytes", what, i);
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < slots; i++) {
        PyObject *member = PIECE(members, i);
        int is_optional = optional[i] == '?';
        if (is_optional != (member != Py_None) || (is_optional && (!PyTuple_CheckExact(member)
                || PyTuple_GET_SIZE(member) != 2 || !PyBytes_CheckExact(PIECE(member, 0))
                || !PyBytes_CheckExact(PIECE(member, 1))))) {
            PyErr_Format(PyExc_ValueError, "%s: slot %zd is %s here (rows.py and _rows.c disagree)", what, i,
                         is_optional ? "optional" : "required");
            return -1;
        }
    }
    return 0;
}

static int Builder_init(Builder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"request", "request_members", "model_data", "model_data_members", "output",
                            "output_members", "streams", "inline_limit", NULL};
    PyObject *parts[7];
    Py_ssize_t inline_limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOO!n:Builder", names, &parts[0], &parts[1], &parts[2],
                                     &parts[3], &parts[4], &parts[5], &PyDict_Type, &parts[6], &inline_limit))
        return -1;
    /* Which slots write_request, write_line and the model data write as optional members, in slot order. */
    if (check_template(parts[0], parts[1], "..?.........?", "request") < 0
            || check_template(parts[2], parts[3], "........???", "model_data") < 0
            || check_template(parts[4], parts[5], ".???...?", "output") < 0)
        return -1;
    PyObject *stream, *known;
    Py_ssize_t at = 0;
    while (PyDict_Next(parts[6], &at, &stream, &known)) {
        if (!PyUnicode_CheckExact(stream) || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2
                || !PyBytes_CheckExact(PIECE(known, 0)) || !PyLong_CheckExact(PIECE(known, 1))
                || PyLong_AsLong(PIECE(known, 1)) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "streams: {str: (bytes, severity >= 0)}");
            return -1;
        }
    }
    Py_CLEAR(self->last_stream);
    Py_CLEAR(self->last_json);
    PyObject **slots[] = {&self->request.pieces, &self->request.members, &self->model_data.pieces,
                          &self->model_data.members, &self->output.pieces, &self->output.members, &self->streams};
    for (int i = 0; i < 7; i++) {
        Py_INCREF(parts[i]);
        Py_XSETREF(*slots[i], parts[i]);
    }
    self->inline_limit = inline_limit;
    self->second = -1;
    return 0;
}

static int Builder_traverse(Builder *self, visitproc visit, void *arg) {
    Py_VISIT(self->request.pieces);
    Py_VISIT(self->request.members);
    Py_VISIT(self->model_data.pieces);
    Py_VISIT(self->model_data.members);
    Py_VISIT(self->output.pieces);
    Py_VISIT(self->output.members);
    Py_VISIT(self->streams);
    Py_VISIT(self->last_stream);
    Py_VISIT(self->last_json);
    return 0;
}

static int Builder_clear(Builder *self) {
    Py_CLEAR(self->request.pieces);
    Py_CLEAR(self->request.members);
    Py_CLEAR(self->model_data.pieces);
    Py_CLEAR(self->model_data.members);
    Py_CLEAR(self->output.pieces);
    Py_CLEAR(self->output.members);
    Py_CLEAR(self->streams);
    Py_CLEAR(self->last_stream);
    Py_CLEAR(self->last_json);
    return 0;
}

static void Builder_dealloc(Builder *self) {
    PyObject_GC_UnTrack(self);
    Builder_clear(self);
    PyMem_Free(self->buf.data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Builder_methods[] = {
    {"rows", (PyCFunction)Builder_rows, METH_VARARGS, rows_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scorewatch.telemetry._rows.Builder",
    .tp_doc = PyDoc_STR("Fills the envelope templates of the common rows; see templates.Templates."),
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Builder_init,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_traverse = (traverseproc)Builder_traverse,
    .tp_clear = (inquiry)Builder_clear,
    .tp_methods = Builder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rows",
    .m_doc = "The envelopes of common telemetry rows, in C (see templates.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__rows(void) {
    if (PyType_Ready(&BuilderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Builder", (PyObject *)&BuilderType) < 0
            || PyModule_AddStringConstant(m, "PROTOCOL", PROTOCOL_FINGERPRINT) < 0
            || PyModule_AddStringConstant(m, "SOURCE_HASH", SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
