/* The media path's per-packet arithmetic in C: the minimum-phase FIR and the G.711 gathers.
 *
 * Why C (issue 19): the same work through numpy costs a microsecond of call overhead per
 * operation, several operations per packet, 50 packets a second per call each way.  The
 * arithmetic is that of the numpy reference in minphase.py and g711.py, bit for bit
 * (tests/unit/test_dsp_native.py checks every path against it):
 *
 * - Fir: the taps are integers scaled by 2^-20, held in float64, so every product and every
 *   sum of int16 samples with them is exact in float64 and any order of the sums gives the
 *   same result; then rounded half to even (nearbyint, the default rounding mode) and clipped.
 *   The loops run over outputs, one tap at a time (an axpy), which the compiler vectorises.
 * - take_u8 / take_i16: a table lookup per sample (the tables are g711.py's).
 *
 * Samples are native-endian int16; the Python side uses this module only on little-endian
 * machines (the wire and the Realtime API are little-endian).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DSP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DSP_CLONES
#endif

typedef struct {
    PyObject_HEAD
    int ratio;
    int up;           /* 1: in_rate * ratio out; 0: in_rate / ratio out */
    Py_ssize_t rows;  /* up: taps per phase; down: taps */
    Py_ssize_t hist;  /* input samples of history the filter needs (rows - 1) */
    Py_ssize_t piece; /* input samples filtered at once (bounds the buffers) */
    Py_ssize_t phase; /* down: input samples to skip before the next output's sample */
    double *weights;  /* up: rows x ratio (row j pairs with buf[n + j]); down: rows */
    double *buf;      /* hist + piece input samples */
    double *acc;      /* up: ratio x piece; down: twice piece / ratio + 1 (sums and parts) */
    double *lanes;    /* down: the buffer split into ratio phases */
} Fir;

static void Fir_dealloc(Fir *self) {
    PyMem_Free(self->weights);
    PyMem_Free(self->buf);
    PyMem_Free(self->acc);
    PyMem_Free(self->lanes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Fir_init(Fir *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"weights", "ratio", "up", "piece", NULL};
    Py_buffer w;
    int ratio, up;
    Py_ssize_t piece;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*ipn", kwlist, &w, &ratio, &up, &piece))
        return -1;
    Py_ssize_t count = w.len / (Py_ssize_t)sizeof(double);
    int bad = ratio < 2 || piece < 1 || piece > (1 << 20) || w.len % sizeof(double) != 0 ||
              count < 1 || (up && count % ratio != 0);
    if (bad) {
        PyBuffer_Release(&w);
        PyErr_SetString(PyExc_ValueError, "Fir: bad weights, ratio or piece");
        return -1;
    }
    PyMem_Free(self->weights);
    PyMem_Free(self->buf);
    PyMem_Free(self->acc);
    PyMem_Free(self->lanes);
    self->ratio = ratio;
    self->up = up;
    self->rows = up ? count / ratio : count;
    self->hist = self->rows - 1;
    self->piece = piece;
    self->phase = 0;
    self->weights = PyMem_Malloc(w.len);
    self->buf = PyMem_Calloc(self->hist + piece, sizeof(double));
    self->acc = PyMem_Malloc(sizeof(double) * (up ? ratio * piece : 2 * (piece / ratio + 1)));
    self->lanes = up ? NULL : PyMem_Malloc(sizeof(double) * (self->hist + piece + ratio));
    if (!self->weights || !self->buf || !self->acc || (!up && !self->lanes)) {
        PyBuffer_Release(&w);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->weights, w.buf, w.len);
    PyBuffer_Release(&w);
    return 0;
}

/* out[i] = sum_j x[i + j] * w[j * stride] for i < n: a sliding dot product, 16 outputs at a
 * time in four vectors of four (GCC's vector extension: AVX2 registers where the CPU has them,
 * SSE2 pairs otherwise) while the taps go by; four chains hide the adds' latency. */
typedef double v4d __attribute__((vector_size(32)));

static inline v4d load4(const double *p) {
    v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}

DSP_CLONES
static void fir_dot(const double *x, const double *w, Py_ssize_t stride, Py_ssize_t rows,
                    double *out, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const double *xi = x + i;
        for (Py_ssize_t j = 0; j < rows; j++) {
            const double t = w[j * stride];
            a0 += load4(xi + j) * t;
            a1 += load4(xi + j + 4) * t;
            a2 += load4(xi + j + 8) * t;
            a3 += load4(xi + j + 12) * t;
        }
        memcpy(out + i, &a0, sizeof a0);
        memcpy(out + i + 4, &a1, sizeof a1);
        memcpy(out + i + 8, &a2, sizeof a2);
        memcpy(out + i + 12, &a3, sizeof a3);
    }
    for (; i + 4 <= n; i += 4) {
        v4d a0 = {0};
        for (Py_ssize_t j = 0; j < rows; j++) a0 += load4(x + i + j) * w[j * stride];
        memcpy(out + i, &a0, sizeof a0);
    }
    for (; i < n; i++) {
        double a = 0.0;
        for (Py_ssize_t j = 0; j < rows; j++) a += x[i + j] * w[j * stride];
        out[i] = a;
    }
}

/* acc[p * n + i] = sum_j buf[i + j] * weights[j * ratio + p]: output ratio * i + p. */
static void fir_up(const double *buf, const double *weights, double *acc, Py_ssize_t n,
                   Py_ssize_t rows, int ratio) {
    for (int p = 0; p < ratio; p++) fir_dot(buf, weights + p, ratio, rows, acc + p * n, n);
}

/* acc[m] = sum_j buf[start + ratio * m + j] * weights[j], from the buffer split into lanes:
 * lane q holds buf[q], buf[q + ratio], ... so the inputs of consecutive outputs are
 * contiguous: the sum over taps j = ratio * i + q of lane (start + q) % ratio. */
static void fir_down(const double *lanes, Py_ssize_t lane_len, const double *weights,
                     double *acc, double *part, Py_ssize_t outputs, Py_ssize_t rows,
                     Py_ssize_t start, int ratio) {
    for (Py_ssize_t m = 0; m < outputs; m++) acc[m] = 0.0;
    for (int q = 0; q < ratio && q < rows; q++) {
        const Py_ssize_t s = start + q;
        const Py_ssize_t taps = (rows - q + ratio - 1) / ratio; /* j = q, q + ratio, ... */
        fir_dot(lanes + (s % ratio) * lane_len + s / ratio, weights + q, ratio, taps, part,
                outputs);
        for (Py_ssize_t m = 0; m < outputs; m++) acc[m] += part[m];
    }
}

static inline int16_t clip_round(double v) {
    const double magic = 6755399441055744.0;
    v = (v + magic) - magic;
    v = v > 32767.0 ? 32767.0 : v;
    v = v < -32768.0 ? -32768.0 : v;
    return (int16_t)v;
}

/* Filters one piece of n input samples into out; returns the outputs written. */
static Py_ssize_t Fir_piece(Fir *self, const int16_t *in, Py_ssize_t n, int16_t *out) {
    double *buf = self->buf;
    const Py_ssize_t hist = self->hist, ratio = self->ratio;
    for (Py_ssize_t i = 0; i < n; i++) buf[hist + i] = in[i];
    Py_ssize_t written;
    if (self->up) {
        fir_up(buf, self->weights, self->acc, n, self->rows, self->ratio);
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t p = 0; p < ratio; p++)
                out[i * ratio + p] = clip_round(self->acc[p * n + i]);
        written = n * ratio;
    } else {
        const Py_ssize_t start = self->phase, total = hist + n;
        const Py_ssize_t outputs = n > start ? (n - start + ratio - 1) / ratio : 0;
        const Py_ssize_t lane_len = total / ratio + 1;
        for (Py_ssize_t q = 0; q < ratio; q++) {
            double *lane = self->lanes + q * lane_len;
            Py_ssize_t t = 0;
            for (Py_ssize_t s = q; s < total; s += ratio) lane[t++] = buf[s];
            for (; t < lane_len; t++) lane[t] = 0.0;
        }
        fir_down(self->lanes, lane_len, self->weights, self->acc, self->acc + outputs, outputs,
                 self->rows, start, self->ratio);
        for (Py_ssize_t m = 0; m < outputs; m++) out[m] = clip_round(self->acc[m]);
        self->phase = (((start - n) % ratio) + ratio) % ratio;
        written = outputs;
    }
    memmove(buf, buf + n, sizeof(double) * hist);
    return written;
}

static PyObject *Fir_process(Fir *self, PyObject *arg) {
    Py_buffer in;
    if (self->buf == NULL) {
        PyErr_SetString(PyExc_ValueError, "Fir.process: not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &in, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (in.len % 2 != 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "Fir.process: int16 samples expected");
        return NULL;
    }
    const Py_ssize_t n = in.len / 2, ratio = self->ratio;
    const Py_ssize_t most = self->up ? n * ratio : n / ratio + 1 + n / self->piece + 1;
    PyObject *result = PyByteArray_FromStringAndSize(NULL, most * 2);
    if (result == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    int16_t *out = (int16_t *)PyByteArray_AS_STRING(result);
    const int16_t *samples = (const int16_t *)in.buf;
    Py_ssize_t written = 0;
    for (Py_ssize_t i = 0; i < n; i += self->piece) {
        const Py_ssize_t len = n - i < self->piece ? n - i : self->piece;
        written += Fir_piece(self, samples + i, len, out + written);
    }
    PyBuffer_Release(&in);
    if (written != most && PyByteArray_Resize(result, written * 2) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *Fir_reset(Fir *self, PyObject *Py_UNUSED(ignored)) {
    if (self->buf == NULL) Py_RETURN_NONE;
    memset(self->buf, 0, sizeof(double) * self->hist);
    self->phase = 0;
    Py_RETURN_NONE;
}

static PyMethodDef Fir_methods[] = {
    {"process", (PyCFunction)Fir_process, METH_O,
     "Filter int16 samples (any C-contiguous buffer); the outputs they complete, as int16 "
     "in a bytearray."},
    {"reset", (PyCFunction)Fir_reset, METH_NOARGS, "Forget the history and the phase."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject FirType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._dsp.Fir",
    .tp_doc = "A streamed polyphase FIR, 8 kHz <-> ratio x 8 kHz (see minphase.py).",
    .tp_basicsize = sizeof(Fir),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fir_init,
    .tp_dealloc = (destructor)Fir_dealloc,
    .tp_methods = Fir_methods,
};

/* take_u8(table, samples): bytes of table[uint16 of each int16 sample] (G.711 encode). */
static PyObject *take_u8(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "take_u8(table, samples)");
        return NULL;
    }
    Py_buffer table, in;
    if (PyObject_GetBuffer(args[0], &table, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &in, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    PyObject *result = NULL;
    if (table.len != 65536 || in.len % 2 != 0) {
        PyErr_SetString(PyExc_ValueError, "take_u8: a 65536-byte table and int16 samples");
    } else if ((result = PyBytes_FromStringAndSize(NULL, in.len / 2)) != NULL) {
        const uint8_t *lut = table.buf;
        const uint16_t *x = in.buf;
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        for (Py_ssize_t i = 0; i < in.len / 2; i++) out[i] = lut[x[i]];
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&table);
    return result;
}

/* take_i16(table, codes): a bytearray of table[code] as int16 (G.711 decode). */
static PyObject *take_i16(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "take_i16(table, codes)");
        return NULL;
    }
    Py_buffer table, in;
    if (PyObject_GetBuffer(args[0], &table, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &in, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    PyObject *result = NULL;
    if (table.len != 512) {
        PyErr_SetString(PyExc_ValueError, "take_i16: a table of 256 int16");
    } else if ((result = PyByteArray_FromStringAndSize(NULL, in.len * 2)) != NULL) {
        const int16_t *lut = table.buf;
        const uint8_t *x = in.buf;
        int16_t *out = (int16_t *)PyByteArray_AS_STRING(result);
        for (Py_ssize_t i = 0; i < in.len; i++) out[i] = lut[x[i]];
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&table);
    return result;
}

static PyMethodDef module_methods[] = {
    {"take_u8", (PyCFunction)(void (*)(void))take_u8, METH_FASTCALL,
     "take_u8(table, samples) -> bytes: a 65536-entry table indexed by each sample's bits."},
    {"take_i16", (PyCFunction)(void (*)(void))take_i16, METH_FASTCALL,
     "take_i16(table, codes) -> bytearray: a 256-entry int16 table indexed by each byte."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef dsp_module = {
    PyModuleDef_HEAD_INIT, "_dsp", "The media path's per-packet arithmetic (see _dsp.c).", -1,
    module_methods};

PyMODINIT_FUNC PyInit__dsp(void) {
    if (PyType_Ready(&FirType) < 0) return NULL;
    PyObject *m = PyModule_Create(&dsp_module);
    if (m == NULL) return NULL;
    Py_INCREF(&FirType);
    if (PyModule_AddObject(m, "Fir", (PyObject *)&FirType) < 0) {
        Py_DECREF(&FirType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
