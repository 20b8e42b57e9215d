/* Optional C speedup for lwsbridge.core.mask: RFC 6455 section 5.3 masking.
 * Loaded by mask.py with a pure-Python fallback; same signature and result. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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
    {
        const unsigned char *in = (const unsigned char *)data.buf;
        const unsigned char *m = (const unsigned char *)mask.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_ssize_t n = data.len, i = 0;
        uint64_t m64;
        unsigned char m8[8];

        for (int k = 0; k < 8; k++)
            m8[k] = m[k & 3];
        memcpy(&m64, m8, 8);
        /* 8 bytes at a time; memcpy keeps it alignment-safe and the compiler vectorises it */
        for (; i + 8 <= n; i += 8) {
            uint64_t v;
            memcpy(&v, in + i, 8);
            v ^= m64;
            memcpy(out + i, &v, 8);
        }
        for (; i < n; i++)
            out[i] = in[i] ^ m[i & 3];
    }
done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

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
    return PyModule_Create(&module);
}
