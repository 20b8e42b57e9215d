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

static PyMethodDef methods[] = {
    {"utf8_check", (PyCFunction)(void (*)(void))utf8_check, METH_FASTCALL,
     "utf8_check(data, state) -> state: 0 complete, -1 invalid, else mid-character."},
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated."},
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
