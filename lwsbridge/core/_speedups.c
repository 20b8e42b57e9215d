/* Optional C speedup for lwsbridge.core.mask: RFC 6455 section 5.3 masking.
 * Loaded by mask.py with a pure-Python fallback; same signature and result. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* XOR n bytes of in with the 4-byte mask m repeated (m[0] at in[0]) into out; out may
 * be in (in place).  With GCC/clang, 32 bytes a step through a vector type: the
 * baseline build does it with SSE2 (two 16-byte registers), and a second copy built for
 * AVX2 (one 32-byte register) is picked at run time when the CPU has it.  Plain C
 * (8-byte words) elsewhere.  Unaligned loads and stores go through memcpy. */
#if defined(__GNUC__)
typedef uint64_t mask_vec __attribute__((vector_size(32)));
#define MASK_VEC_LOOP                                                                   \
    {                                                                                   \
        mask_vec mv = {m64, m64, m64, m64};                                             \
        for (; i + 32 <= n; i += 32) {                                                  \
            mask_vec v;                                                                 \
            memcpy(&v, in + i, 32);                                                     \
            v ^= mv;                                                                    \
            memcpy(out + i, &v, 32);                                                    \
        }                                                                               \
    }
#else
#define MASK_VEC_LOOP
#endif
#define MASK_BODY                                                                       \
    {                                                                                   \
        uint64_t m64;                                                                   \
        unsigned char m8[8];                                                            \
        Py_ssize_t i = 0;                                                               \
        for (int k = 0; k < 8; k++)                                                     \
            m8[k] = m[k & 3];                                                           \
        memcpy(&m64, m8, 8);                                                            \
        MASK_VEC_LOOP                                                                   \
        for (; i + 8 <= n; i += 8) {                                                    \
            uint64_t v;                                                                 \
            memcpy(&v, in + i, 8);                                                      \
            v ^= m64;                                                                   \
            memcpy(out + i, &v, 8);                                                     \
        }                                                                               \
        for (; i < n; i++)                                                              \
            out[i] = in[i] ^ m[i & 3];                                                  \
    }

static void
mask_generic(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m)
MASK_BODY

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_MASK_AVX2 1
__attribute__((target("avx2"))) static void
mask_avx2(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m)
MASK_BODY
#endif

static void (*mask_impl)(const unsigned char *, unsigned char *, Py_ssize_t,
                         const unsigned char *) = mask_generic;

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask) takes two arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL)
        goto done;
    mask_impl((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
              data.len, (const unsigned char *)mask.buf);
done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* FrameBuffer: a large frame's payload received straight into the bytes object the
 * application will get, unmasked there in place, so that the payload is written once by
 * the kernel and read-modified once by the unmask, with no copy to a second object.
 *
 * Immutability: a bytes object must never change once anyone but its creator holds it.
 * Here the bytes object is referenced only by its FrameBuffer until take(); until then
 * it is written through this type's writable buffer (recv_into, slice assignment).
 * take() refuses while any such view is still exported (BufferError, as bytearray does
 * for a resize), then hands the bytes over and forgets it: from then on no writable view
 * of it can be had, so what the application receives is an ordinary immutable bytes.
 * Its hash is not cached before take() (no one could have asked for it). */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL once taken */
    Py_ssize_t exports;
} FrameBuffer;

static PyObject *
FrameBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t n;
    FrameBuffer *self;
    static char *kwlist[] = {"size", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:FrameBuffer", kwlist, &n))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "FrameBuffer size must be >= 0");
        return NULL;
    }
    self = (FrameBuffer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->bytes = PyBytes_FromStringAndSize(NULL, n);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
FrameBuffer_dealloc(FrameBuffer *self)
{
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
FrameBuffer_getbuffer(FrameBuffer *self, Py_buffer *view, int flags)
{
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "FrameBuffer already taken");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->bytes),
                          PyBytes_GET_SIZE(self->bytes), 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void
FrameBuffer_releasebuffer(FrameBuffer *self, Py_buffer *view)
{
    self->exports--;
}

static Py_ssize_t
FrameBuffer_len(FrameBuffer *self)
{
    return self->bytes == NULL ? 0 : PyBytes_GET_SIZE(self->bytes);
}

static PyObject *
FrameBuffer_take(FrameBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer mask;
    PyObject *result;

    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "take(mask) takes one argument");
        return NULL;
    }
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "FrameBuffer already taken");
        return NULL;
    }
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "FrameBuffer has views exported");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &mask, PyBUF_SIMPLE) < 0)
        return NULL;
    if (mask.len != 4 && mask.len != 0) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes (or empty: not masked)");
        return NULL;
    }
    result = self->bytes;
    if (mask.len == 4) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(result);
        mask_impl(p, p, PyBytes_GET_SIZE(result), (const unsigned char *)mask.buf);
    }
    PyBuffer_Release(&mask);
    self->bytes = NULL; /* the caller gets our reference */
    return result;
}

static PyMethodDef FrameBuffer_methods[] = {
    {"take", (PyCFunction)(void (*)(void))FrameBuffer_take, METH_FASTCALL,
     "take(mask) -> bytes: unmask in place (b\"\": not masked) and hand the bytes over."},
    {NULL, NULL, 0, NULL},
};

static PyBufferProcs FrameBuffer_as_buffer = {
    (getbufferproc)FrameBuffer_getbuffer,
    (releasebufferproc)FrameBuffer_releasebuffer,
};

static PySequenceMethods FrameBuffer_as_sequence = {
    .sq_length = (lenfunc)FrameBuffer_len,
};

static PyTypeObject FrameBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lwsbridge.core._speedups.FrameBuffer",
    .tp_basicsize = sizeof(FrameBuffer),
    .tp_dealloc = (destructor)FrameBuffer_dealloc,
    .tp_as_sequence = &FrameBuffer_as_sequence,
    .tp_as_buffer = &FrameBuffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FrameBuffer(size): a bytes object of size bytes, written through this\n"
              "object's buffer, then unmasked in place and handed over by take(mask).",
    .tp_methods = FrameBuffer_methods,
    .tp_new = FrameBuffer_new,
};

/* Incremental UTF-8 validation (RFC 3629 section 4 table of well-formed sequences).
 * The state between calls says what the next byte must be: the number of
 * continuation bytes still needed and the allowed range of the next one
 * (need << 16 | lo << 8 | hi); 0 means "between characters", -1 "invalid". */
static PyObject *
utf8_check(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    long state;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "utf8_check(data, state) takes two arguments");
        return NULL;
    }
    state = PyLong_AsLong(args[1]);
    if (state == -1 && PyErr_Occurred())
        return NULL;
    if (state < 0)
        return PyLong_FromLong(-1);
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    {
        const unsigned char *p = (const unsigned char *)data.buf;
        const unsigned char *end = p + data.len;
        unsigned need = (unsigned)(state >> 16) & 0xff;
        unsigned lo = (unsigned)(state >> 8) & 0xff, hi = (unsigned)state & 0xff;

        while (p < end) {
            if (need == 0) {
                /* ASCII runs 8 bytes at a time */
                while (end - p >= 8) {
                    uint64_t v;
                    memcpy(&v, p, 8);
                    if (v & 0x8080808080808080ULL)
                        break;
                    p += 8;
                }
                if (p >= end)
                    break;
                unsigned b = *p++;
                if (b < 0x80)
                    continue;
                lo = 0x80;
                hi = 0xBF;
                if (b >= 0xC2 && b <= 0xDF)
                    need = 1;
                else if (b == 0xE0) {
                    need = 2;
                    lo = 0xA0;
                } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
                    need = 2;
                else if (b == 0xED) {
                    need = 2; /* no UTF-16 surrogates */
                    hi = 0x9F;
                } else if (b == 0xF0) {
                    need = 3;
                    lo = 0x90;
                } else if (b >= 0xF1 && b <= 0xF3)
                    need = 3;
                else if (b == 0xF4) {
                    need = 3; /* nothing above U+10FFFF */
                    hi = 0x8F;
                } else
                    goto invalid;
            } else {
                unsigned b = *p++;
                if (b < lo || b > hi)
                    goto invalid;
                need--;
                lo = 0x80;
                hi = 0xBF;
            }
        }
        PyBuffer_Release(&data);
        return PyLong_FromLong(need ? (long)(need << 16 | lo << 8 | hi) : 0);
    }
invalid:
    PyBuffer_Release(&data);
    return PyLong_FromLong(-1);
}

/* parse_request_head's fast path (lwsbridge/core/http11.py): the grammar of its
 * _FAST_HEAD and _REQUEST_LINE regexes and the fields _FAST_FIELD would split out,
 * in one scan with no backtracking.  Anything outside that grammar gives None and
 * the Python line-by-line path says what is wrong, as it does after the regexes. */

/* RFC 9110 section 5.6.2 tchar */
static int
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value byte: HTAB, SP, VCHAR, obs-text (the regexes' [^\x00-\x08\x0a-\x1f\x7f]) */
static int
is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* After a line's content at p: "\r\n" or "\n"; the index past it, or -1. */
static Py_ssize_t
line_end(const unsigned char *s, Py_ssize_t p, Py_ssize_t n)
{
    if (p < n && s[p] == '\r')
        p++;
    if (p < n && s[p] == '\n')
        return p + 1;
    return -1;
}

static PyObject *
parse_request_head_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    PyObject *fields = NULL, *result = NULL;
    const unsigned char *s;
    Py_ssize_t n, p, q, end, tstart, tend;
    int minor;

    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "parse_request_head_fast(head) takes one argument");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    s = (const unsigned char *)buf.buf;
    n = buf.len;
    /* request line: method SP target SP "HTTP/1." DIGIT, then CRLF or LF */
    p = 0;
    while (p < n && is_tchar(s[p]))
        p++;
    if (p == 0 || p >= n || s[p] != ' ')
        goto nomatch;
    tstart = ++p;
    while (p < n && s[p] > 0x20 && s[p] != 0x7f)
        p++;
    tend = p;
    if (tend == tstart || n - p < 9 || memcmp(s + p, " HTTP/1.", 8) != 0)
        goto nomatch;
    p += 8;
    if (s[p] < '0' || s[p] > '9')
        goto nomatch;
    minor = s[p] - '0';
    end = line_end(s, p + 1, n);
    if (end < 0)
        goto nomatch;
    fields = PyList_New(0);
    if (fields == NULL)
        goto error;
    p = end;
    /* field lines, token ":" OWS value OWS, until the blank line that ends the data */
    for (;;) {
        PyObject *name, *value, *pair;
        Py_ssize_t vstart, vend;

        if (line_end(s, p, n) == n)
            break;
        q = p;
        while (q < n && is_tchar(s[q]))
            q++;
        if (q == p || q >= n || s[q] != ':')
            goto nomatch;
        vstart = q + 1;
        vend = vstart;
        while (vend < n && is_value_char(s[vend]))
            vend++;
        end = line_end(s, vend, n);
        if (end < 0)
            goto nomatch;
        while (vstart < vend && (s[vstart] == ' ' || s[vstart] == '\t'))
            vstart++;
        while (vend > vstart && (s[vend - 1] == ' ' || s[vend - 1] == '\t'))
            vend--;
        name = PyBytes_FromStringAndSize((const char *)s + p, q - p);
        if (name == NULL)
            goto error;
        value = PyBytes_FromStringAndSize((const char *)s + vstart, vend - vstart);
        if (value == NULL) {
            Py_DECREF(name);
            goto error;
        }
        pair = PyTuple_Pack(2, name, value);
        Py_DECREF(name);
        Py_DECREF(value);
        if (pair == NULL)
            goto error;
        if (PyList_Append(fields, pair) < 0) {
            Py_DECREF(pair);
            goto error;
        }
        Py_DECREF(pair);
        p = end;
    }
    {
        PyObject *method = PyUnicode_DecodeASCII((const char *)s, tstart - 1, NULL);
        PyObject *target = method == NULL ? NULL
            : PyUnicode_DecodeLatin1((const char *)s + tstart, tend - tstart, NULL);
        if (target == NULL) {
            Py_XDECREF(method);
            goto error;
        }
        /* N steals the three references, on failure too */
        result = Py_BuildValue("(NNiN)", method, target, minor, fields);
        fields = NULL;
        if (result == NULL)
            goto error;
    }
    PyBuffer_Release(&buf);
    return result;
nomatch:
    Py_XDECREF(fields);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
error:
    Py_XDECREF(fields);
    PyBuffer_Release(&buf);
    return NULL;
}

static PyMethodDef methods[] = {
    {"utf8_check", (PyCFunction)(void (*)(void))utf8_check, METH_FASTCALL,
     "utf8_check(data, state) -> state: 0 complete, -1 invalid, else mid-character."},
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated."},
    {"parse_request_head_fast", (PyCFunction)(void (*)(void))parse_request_head_fast,
     METH_FASTCALL,
     "parse_request_head_fast(head) -> (method, target, minor, fields) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "lwsbridge.core._speedups", "C speedups for lwsbridge.core.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;
#ifdef HAVE_MASK_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        mask_impl = mask_avx2;
#endif
    if (PyType_Ready(&FrameBufferType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FrameBufferType);
    if (PyModule_AddObject(m, "FrameBuffer", (PyObject *)&FrameBufferType) < 0) {
        Py_DECREF(&FrameBufferType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
