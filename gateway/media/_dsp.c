/* The media path's per-packet arithmetic in C: the minimum-phase FIR and the G.711 gathers.
 *
 * Why C (issue 19): the same work through numpy costs a microsecond of call overhead per
 * operation, several operations per packet, 50 packets a second per call each way.  The
 * arithmetic is that of the numpy reference in minphase.py and g711.py, bit for bit
 * (tests/unit/test_dsp_native.py checks every path against it):
 *
 * - Fir: a polyphase FIR for a ratio up/down (3/1 and 1/3 for G.711's 8 <-> 24 kHz, 3/2 and
 *   2/3 for G.722's 16 <-> 24 kHz).  The taps are integers scaled by 2^-20, held in float64, so
 *   every product and every sum of int16 samples with them is exact in float64 and any order
 *   of the sums gives the same result; then rounded half to even (numpy's rint) and clipped.
 * - take_u8 / take_i16: a table lookup per sample (the tables are g711.py's).
 * - send_rtp / sockaddr: the pacer's packet built (G.711 encoded straight into it through the
 *   same table) and sent with one sendto, to a peer kept as the kernel's sockaddr (rtp_out.py):
 *   4.1 us a G.711 packet against 5.5 through Python's encode, build and sendto
 *   (bench_frame.py's pacer_packet).
 *
 * Samples are native-endian int16; the Python side uses this module only on little-endian
 * machines (the wire and the Realtime API are little-endian).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>

/* One build for every x86-64: the filter's loop also compiled for AVX2, picked at load time
 * (an ifunc: GCC on glibc). Elsewhere the baseline build (SSE2 on x86-64, NEON on arm64). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__GLIBC__)
#define DSP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DSP_CLONES
#endif

typedef struct {
    PyObject_HEAD
    Py_ssize_t up, down; /* out_rate / in_rate = up / down, in lowest terms */
    Py_ssize_t taps;     /* per phase: a window of this many inputs makes one output */
    Py_ssize_t hist;     /* input samples of history the filter needs (taps - 1) */
    Py_ssize_t piece;    /* input samples filtered at once (bounds the buffers) */
    long long fed, emitted; /* inputs and outputs since the stream began */
    double *weights;     /* up x taps: phase p's taps, in the order of an ascending window */
    double *buf;         /* hist + piece input samples */
    double *lanes;       /* the buffer split into down lanes (down > 1) */
    double *acc;         /* one phase's outputs of a piece (and, down > 1, a partial sum) */
} Fir;

static void Fir_free(Fir *self) {
    PyMem_Free(self->weights);
    PyMem_Free(self->buf);
    PyMem_Free(self->lanes);
    PyMem_Free(self->acc);
    self->weights = self->buf = self->lanes = self->acc = NULL;
}

static void Fir_dealloc(Fir *self) {
    Fir_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The outputs n more inputs complete: those whose last input is in by then, less those out. */
static Py_ssize_t Fir_outputs(const Fir *self, Py_ssize_t n) {
    const long long end = (self->up * (self->fed + n) + self->down - 1) / self->down;
    return end > self->emitted ? (Py_ssize_t)(end - self->emitted) : 0;
}

/* The most outputs of one phase in a piece: every up-th of them. */
static Py_ssize_t Fir_phase_most(const Fir *self) { return self->piece / self->down + 2; }

static int Fir_init(Fir *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"weights", "up", "down", "piece", NULL};
    Py_buffer w;
    Py_ssize_t up, down, piece;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*nnn", kwlist, &w, &up, &down, &piece))
        return -1;
    Py_ssize_t count = w.len / (Py_ssize_t)sizeof(double);
    int bad = up < 1 || down < 1 || up > 64 || down > 64 || piece < 1 || piece > (1 << 20) ||
              w.len % (Py_ssize_t)sizeof(double) != 0 || count < up || count % up != 0;
    if (bad) {
        PyBuffer_Release(&w);
        PyErr_SetString(PyExc_ValueError, "Fir: bad weights, rates or piece");
        return -1;
    }
    Fir_free(self);
    self->up = up;
    self->down = down;
    self->taps = count / up;
    self->hist = self->taps - 1;
    self->piece = piece;
    self->fed = self->emitted = 0;
    const Py_ssize_t total = self->hist + piece;
    self->weights = PyMem_Malloc(w.len);
    self->buf = PyMem_Calloc(total, sizeof(double));
    self->lanes = down > 1 ? PyMem_Malloc(sizeof(double) * (total + down)) : NULL;
    self->acc = PyMem_Malloc(sizeof(double) * (down > 1 ? 2 : 1) * Fir_phase_most(self));
    if (!self->weights || !self->buf || !self->acc || (down > 1 && !self->lanes)) {
        PyBuffer_Release(&w);
        Fir_free(self);
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

/* Rounded half to even (adding and taking away 1.5 * 2^52 leaves no fraction bits, under the
 * default rounding mode: nearbyint without the libm call, which x86-64's baseline lacks) and
 * clipped to int16.  Exact for |v| < 2^51; the filter's outputs stay far below. */
static inline int16_t clip_round(double v) {
    const double magic = 6755399441055744.0;
    v = (v + magic) - magic;
    v = v > 32767.0 ? 32767.0 : v;
    v = v < -32768.0 ? -32768.0 : v;
    return (int16_t)v;
}

static Py_ssize_t floor_mod(long long a, Py_ssize_t b) { return (Py_ssize_t)(((a % b) + b) % b); }

/* Filters one piece of n input samples into out; returns the outputs written.
 *
 * Output m is phase (down * m) % up of the taps against the window of inputs that ends at
 * input (down * m) // up (minphase_rational.py).  The outputs of one phase, m0, m0 + up, ...,
 * have windows down inputs apart: split into down lanes (lane q: buffer samples q, q + down,
 * ...), the inputs of each tap are contiguous across them, and each lane's taps are one
 * sliding dot product. */
static Py_ssize_t Fir_piece(Fir *self, const int16_t *in, Py_ssize_t n, int16_t *out) {
    double *buf = self->buf, *acc = self->acc;
    const Py_ssize_t hist = self->hist, up = self->up, down = self->down, total = hist + n;
    const long long first = self->emitted, fed = self->fed;
    const long long end = (up * (fed + n) + down - 1) / down; /* as Fir_outputs */
    double *part = acc + Fir_phase_most(self); /* down > 1 only */
    for (Py_ssize_t i = 0; i < n; i++) buf[hist + i] = in[i];
    const double *lanes = buf;
    Py_ssize_t lane_len = total;
    if (down > 1) {
        lane_len = total / down + 1;
        for (Py_ssize_t q = 0; q < down; q++) {
            double *lane = self->lanes + q * lane_len;
            Py_ssize_t t = 0;
            for (Py_ssize_t s = q; s < total; s += down) lane[t++] = buf[s];
            for (; t < lane_len; t++) lane[t] = 0.0;
        }
        lanes = self->lanes;
    }
    for (Py_ssize_t r = 0; r < up; r++) {
        const long long m0 = first + floor_mod(r - first, up);
        if (m0 >= end) continue;
        const Py_ssize_t count = (Py_ssize_t)((end - 1 - m0) / up + 1);
        const Py_ssize_t start = (Py_ssize_t)((down * m0) / up - fed); /* the window's start */
        const double *w = self->weights + floor_mod(down * m0, up) * self->taps;
        if (down == 1) {
            fir_dot(lanes + start, w, 1, self->taps, acc, count);
        } else {
            for (Py_ssize_t i = 0; i < count; i++) acc[i] = 0.0;
            for (Py_ssize_t q = 0; q < down && q < self->taps; q++) {
                const Py_ssize_t s = start + q, rows = (self->taps - q + down - 1) / down;
                fir_dot(lanes + (s % down) * lane_len + s / down, w + q, down, rows, part, count);
                for (Py_ssize_t i = 0; i < count; i++) acc[i] += part[i];
            }
        }
        int16_t *o = out + (m0 - first);
        for (Py_ssize_t i = 0; i < count; i++) o[i * up] = clip_round(acc[i]);
    }
    memmove(buf, buf + n, sizeof(double) * hist);
    self->fed = fed + n;
    if (end > first) self->emitted = end;
    return end > first ? (Py_ssize_t)(end - first) : 0;
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
    const Py_ssize_t n = in.len / 2;
    const Py_ssize_t outputs = Fir_outputs(self, n); /* exactly: no resize afterwards */
    PyObject *result = PyByteArray_FromStringAndSize(NULL, outputs * 2);
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
    if (written != outputs) { /* the pieces' ends are the same sums: cannot happen */
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "Fir.process: output count mismatch");
        return NULL;
    }
    return result;
}

static PyObject *Fir_reset(Fir *self, PyObject *Py_UNUSED(ignored)) {
    if (self->buf == NULL) Py_RETURN_NONE;
    memset(self->buf, 0, sizeof(double) * self->hist);
    self->fed = self->emitted = 0;
    Py_RETURN_NONE;
}

static PyMethodDef Fir_methods[] = {
    {"process", (PyCFunction)Fir_process, METH_O,
     "Filter int16 samples (any C-contiguous buffer); the outputs they complete, as int16 "
     "in a bytearray."},
    {"reset", (PyCFunction)Fir_reset, METH_NOARGS, "Forget the history: a new stream."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject FirType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._dsp.Fir",
    .tp_doc = "A streamed polyphase FIR, in_rate -> in_rate * up / down (see minphase.py, "
              "minphase_rational.py).",
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

/* energy(samples): the sum of the squared int16 samples, as a float. Exact: an int64 sum, as
   numpy's float64 dot is for fewer than 2**23 samples (every partial sum an integer < 2**53). */
static PyObject *energy(PyObject *module, PyObject *arg) {
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (in.itemsize != 2 || in.format == NULL || strcmp(in.format, "h") != 0) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "energy: contiguous native int16 samples");
        return NULL;
    }
    const int16_t *x = in.buf;
    Py_ssize_t n = in.len / 2;
    int64_t sum = 0;
    for (Py_ssize_t i = 0; i < n; i++) sum += (int32_t)x[i] * x[i];
    PyBuffer_Release(&in);
    return PyFloat_FromDouble((double)sum);
}


/* sockaddr(host, port) -> bytes: a numeric address (never a name: no lookup, AI_NUMERICHOST)
   as the kernel's struct sockaddr, for send_rtp; IPv6 scope ids ("fe80::1%eth0") included. */
static PyObject *sockaddr_of(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sockaddr(host: str, port: int)");
        return NULL;
    }
    const char *host = PyUnicode_AsUTF8(args[0]);
    long port = PyLong_AsLong(args[1]);
    if (host == NULL || (port == -1 && PyErr_Occurred())) return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "sockaddr: port out of range");
        return NULL;
    }
    char service[8];
    snprintf(service, sizeof service, "%ld", port);
    struct addrinfo hints = {0}, *found = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0 || found == NULL) {
        PyErr_Format(PyExc_ValueError, "sockaddr: not a numeric address: %s", host);
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    return result;
}

/* send_rtp(fd, dest, marker_pt, seq, ts, ssrc, payload, table) -> int: one RTP packet built
   (RFC 3550 5.1: V=2, no padding, extension or CSRC) and sent with one sendto(2), no Python
   objects in between. table None: payload is the codec's bytes; else a 65536-byte G.711 table
   and payload the int16 frame it encodes. Returns 0, or the errno of a refused send (the
   caller counts it: real-time audio is dropped, never queued). */
#define RTP_MAX_PACKET 1452
static PyObject *send_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "send_rtp(fd, dest, marker_pt, seq, ts, ssrc, payload, table)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    long marker_pt = PyLong_AsLong(args[2]);
    long seq = PyLong_AsLong(args[3]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[4]);
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[5]);
    if (PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "send_rtp: dest is sockaddr()'s bytes");
        return NULL;
    }
    uint8_t packet[RTP_MAX_PACKET];
    Py_buffer in;
    int flags = args[7] == Py_None ? PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (PyObject_GetBuffer(args[6], &in, flags) < 0) return NULL;
    if (args[7] != Py_None &&
        (in.itemsize != 2 || in.format == NULL || strcmp(in.format, "h") != 0)) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_TypeError, "send_rtp: a frame of native int16 samples");
        return NULL;
    }
    Py_ssize_t n;
    if (args[7] == Py_None) {
        n = in.len;
        if (n <= RTP_MAX_PACKET - 12) memcpy(packet + 12, in.buf, n);
    } else {
        Py_buffer table;
        if (PyObject_GetBuffer(args[7], &table, PyBUF_C_CONTIGUOUS) < 0) {
            PyBuffer_Release(&in);
            return NULL;
        }
        n = in.len / 2;
        if (table.len != 65536) {
            PyBuffer_Release(&table);
            PyBuffer_Release(&in);
            PyErr_SetString(PyExc_ValueError, "send_rtp: a 65536-byte table");
            return NULL;
        }
        if (n <= RTP_MAX_PACKET - 12) {
            const uint8_t *lut = table.buf;
            const uint16_t *x = in.buf;
            for (Py_ssize_t i = 0; i < n; i++) packet[12 + i] = lut[x[i]];
        }
        PyBuffer_Release(&table);
    }
    PyBuffer_Release(&in);
    if (n > RTP_MAX_PACKET - 12 || fd < 0 || marker_pt < 0 || marker_pt > 0xFF || seq < 0 ||
        seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "send_rtp: payload too large or a field out of range");
        return NULL;
    }
    packet[0] = 0x80;
    packet[1] = (uint8_t)marker_pt;
    packet[2] = (uint8_t)(seq >> 8);
    packet[3] = (uint8_t)seq;
    for (int i = 0; i < 4; i++) {
        packet[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
        packet[8 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    }
    ssize_t sent = sendto((int)fd, packet, (size_t)(12 + n), 0,
                          (const struct sockaddr *)PyBytes_AS_STRING(args[1]),
                          (socklen_t)PyBytes_GET_SIZE(args[1]));
    return PyLong_FromLong(sent < 0 ? errno : 0);
}

static PyMethodDef module_methods[] = {
    {"energy", (PyCFunction)energy, METH_O,
     "energy(samples) -> float: the sum of the squared int16 samples (exact)."},
    {"take_u8", (PyCFunction)(void (*)(void))take_u8, METH_FASTCALL,
     "take_u8(table, samples) -> bytes: a 65536-entry table indexed by each sample's bits."},
    {"take_i16", (PyCFunction)(void (*)(void))take_i16, METH_FASTCALL,
     "take_i16(table, codes) -> bytearray: a 256-entry int16 table indexed by each byte."},
    {"sockaddr", (PyCFunction)(void (*)(void))sockaddr_of, METH_FASTCALL,
     "sockaddr(host, port) -> bytes: a numeric address as a struct sockaddr, for send_rtp."},
    {"send_rtp", (PyCFunction)(void (*)(void))send_rtp, METH_FASTCALL,
     "send_rtp(fd, dest, marker_pt, seq, ts, ssrc, payload, table) -> int: build and send one "
     "RTP packet; 0 or the errno."},
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
