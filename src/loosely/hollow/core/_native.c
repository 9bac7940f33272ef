/*
 * loosely.hollow.core._native -- the hot loops of the Hollow core, in C.
 *
 * What lives here and why
 * -----------------------
 * Hollow keeps every record bit-packed.  Reading one field means locating a few bits inside an array of
 * 64-bit words; applying a delta means merging two such arrays; a checksum or an index build touches every
 * record.  Done per record in Python these are 100-1000x slower than in Java, so this module does them, and
 * nothing else: parsing blobs, schemas, the delta bookkeeping and all policy stay in Python.
 *
 * Data layout (the blob format, see _blob.py for the whole of it)
 * ---------------------------------------------------------------
 * A bit array is a sequence of 64-bit words stored BIG-ENDIAN, exactly as they sit in a blob, so a snapshot
 * can be used in place from a memory-mapped file.  Logical bit b is bit (b & 63), counted from the least
 * significant bit, of word (b >> 6).  An element of width w (0..64) at bit b is
 *
 *     v = (W[b>>6] >> (b&63)) | (W[(b>>6)+1] << (64-(b&63)))     (second word only if it straddles)
 *     v &= (1 << w) - 1
 *
 * Arrays this module creates have the same layout.  pack() builds native words and byte-swaps them once at the
 * end; a delta merge writes big-endian words from the start (store_bits_be), so the runs of records it keeps
 * are a plain memcpy from the old shard and the new array is written once, with no swap pass after.
 *
 * A TypeView describes one type's shards: per shard the record array ("fixed"), the bits per record and
 * per field, and the variable-length part (per-field byte pools for OBJECT records, the element/bucket array
 * for LIST, SET and MAP).  Every access is bounds-checked: a corrupt blob raises the error class installed
 * with set_error_class() (HollowBlobError), it never reads outside the buffers.
 *
 * Records by kind (p = end pointer, exclusive; the start is the previous record's end, 0 for the first):
 *     OBJECT  fields in schema order; STRING/BYTES hold p into the field's pool with a null flag in the top bit
 *     LIST    [p]                element array holds element ordinals
 *     SET     [p | size]         bucket array holds element ordinals, all-ones = empty bucket
 *     MAP     [p | size]         bucket array holds (key | value), key all-ones = empty bucket
 *
 * Delta merge (merge_shard): target record i is taken from the delta if i is the next addition, else from the
 * old shard if it exists there and is not in the old shard's pending removals (removals are applied one
 * version late so removed "ghost" records stay readable for one version, as in Java), else it is empty.
 * When all widths are unchanged, runs of kept records are copied as whole words and their pointers shifted by
 * a constant (Java's "fast delta"); otherwise records are re-encoded one by one.
 *
 * Hashes (HashCodes.java): hashInt is Thomas Wang's 32-bit mix, hashLong the 64-bit one truncated, murmur3 is
 * MurmurHash3 x86_32 with seed 0xeab524b9.  The checksum is HollowChecksum: c = hashInt(c ^ hashInt(v)).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "_bits.h"

static PyObject *DataError = NULL; /* HollowBlobError, installed from Python */
extern PyTypeObject TypeViewType;

static PyObject *
data_error(const char *fmt, ...)
{
    va_list vargs;
    va_start(vargs, fmt);
    PyErr_FormatV(DataError ? DataError : PyExc_ValueError, fmt, vargs);
    va_end(vargs);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------------- */
/* bit access                                                                                               */

static inline uint64_t
be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* Read width bits at bit offset `bit` of big-endian words; the caller guarantees bit + width <= 64 * nwords. */
static inline uint64_t
get_bits(const uint8_t *words, uint64_t bit, unsigned width)
{
    if (width == 0)
        return 0;
    uint64_t wi = bit >> 6;
    unsigned sh = (unsigned)(bit & 63);
    uint64_t v = be64(words + wi * 8) >> sh;
    if (sh + width > 64)
        v |= be64(words + (wi + 1) * 8) << (64 - sh);
    return v & mask_of(width);
}

static inline void
put_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

/* Overwrite width bits at bit offset `bit` of big-endian words with value (its bits above width are dropped):
   store_bits() of _bits.h for an array kept in the blob's byte order while it is built (the delta merge). */
static inline void
store_bits_be(uint8_t *words, uint64_t bit, unsigned width, uint64_t value)
{
    if (width == 0)
        return;
    uint8_t *p = words + (bit >> 6) * 8;
    unsigned sh = (unsigned)(bit & 63);
    int two = sh + width > 64;
    uint64_t w[2] = {be64(p), two ? be64(p + 8) : 0};
    store_bits(w, sh, width, value);
    put_be64(p, w[0]);
    if (two)
        put_be64(p + 8, w[1]);
}

/* Copy nbits from big-endian words at src_bit to big-endian words at dst_bit (any alignment).  In the same
   phase (a run of kept records at the same position, the common case of a delta) the middle is a memcpy. */
static void
copy_bits_be(uint8_t *dst, uint64_t dst_bit, const uint8_t *src, uint64_t src_bit, uint64_t nbits)
{
    if (nbits == 0)
        return;
    if ((dst_bit & 63) == (src_bit & 63)) {
        unsigned head = (unsigned)((64 - (dst_bit & 63)) & 63);
        if (head > nbits)
            head = (unsigned)nbits;
        if (head) {
            store_bits_be(dst, dst_bit, head, get_bits(src, src_bit, head));
            dst_bit += head;
            src_bit += head;
            nbits -= head;
        }
        uint64_t nw = nbits >> 6;
        memcpy(dst + (dst_bit >> 6) * 8, src + (src_bit >> 6) * 8, nw * 8);
        dst_bit += nw * 64;
        src_bit += nw * 64;
        nbits -= nw * 64;
        if (nbits)
            store_bits_be(dst, dst_bit, (unsigned)nbits, get_bits(src, src_bit, (unsigned)nbits));
        return;
    }
    while (nbits >= 64) {
        store_bits_be(dst, dst_bit, 64, get_bits(src, src_bit, 64));
        dst_bit += 64;
        src_bit += 64;
        nbits -= 64;
    }
    if (nbits)
        store_bits_be(dst, dst_bit, (unsigned)nbits, get_bits(src, src_bit, (unsigned)nbits));
}

/* ------------------------------------------------------------------------------------------------------- */
/* hashes                                                                                                   */

static int32_t
murmur3(const uint8_t *data, uint64_t len)
{
    const uint32_t c1 = 0xcc9e2d51u, c2 = 0x1b873593u;
    uint32_t h1 = 0xeab524b9u;
    uint64_t rounded = len & ~(uint64_t)3;
    for (uint64_t i = 0; i < rounded; i += 4) {
        uint32_t k1 = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) | ((uint32_t)data[i + 2] << 16) |
                      ((uint32_t)data[i + 3] << 24);
        k1 *= c1;
        k1 = (k1 << 15) | (k1 >> 17);
        k1 *= c2;
        h1 ^= k1;
        h1 = (h1 << 13) | (h1 >> 19);
        h1 = h1 * 5 + 0xe6546b64u;
    }
    uint32_t k1 = 0;
    switch (len & 3) {
    case 3:
        k1 = (uint32_t)data[rounded + 2] << 16;
        /* fall through */
    case 2:
        k1 |= (uint32_t)data[rounded + 1] << 8;
        /* fall through */
    case 1:
        k1 |= (uint32_t)data[rounded];
        k1 *= c1;
        k1 = (k1 << 15) | (k1 >> 17);
        k1 *= c2;
        h1 ^= k1;
    }
    h1 ^= (uint32_t)len;
    h1 ^= h1 >> 16;
    h1 *= 0x85ebca6bu;
    h1 ^= h1 >> 13;
    h1 *= 0xc2b2ae35u;
    h1 ^= h1 >> 16;
    return (int32_t)h1;
}

static inline int32_t
ck_int(int32_t c, int32_t v)
{
    return hash_int(c ^ hash_int(v));
}

static inline int32_t
ck_long(int32_t c, int64_t v)
{
    return hash_int(c ^ hash_long(v));
}

/* HashCodes.hashTableSize; returns 0 when out of range. */
static inline uint64_t
hash_table_size(uint64_t n)
{
    if (n > 751619276u)
        return 0;
    if (n == 0)
        return 1;
    if (n < 3)
        return n * 2;
    uint64_t after = n * 10 / 7;
    uint64_t size = 1;
    while (size < after)
        size <<= 1;
    return size;
}

/* ------------------------------------------------------------------------------------------------------- */
/* TypeView                                                                                                 */

enum { KIND_OBJECT = 0, KIND_LIST = 1, KIND_SET = 2, KIND_MAP = 3 };
enum { F_REFERENCE = 0, F_INT = 1, F_LONG = 2, F_BOOLEAN = 3, F_FLOAT = 4, F_DOUBLE = 5, F_STRING = 6, F_BYTES = 7 };

#define NULL_FLOAT_BITS 0x7fc00001u
#define NULL_DOUBLE_BITS 0x7ff8000000000001ull
#define MAX_FIELDS 32767

typedef struct {
    int64_t max_ordinal; /* max shard ordinal, -1 for an empty shard */
    uint64_t bits_per_record;
    uint32_t *offset;  /* per field */
    uint8_t *width;    /* per field */
    const uint8_t *fixed;
    uint64_t fixed_bits; /* capacity */
    /* OBJECT: per-field pools (NULL + 0 when absent); others: pool[0] is the element array */
    const uint8_t **pool;
    uint64_t *pool_len; /* bytes for OBJECT pools; BITS for element arrays */
    unsigned unit_bits; /* element/bucket width for LIST/SET/MAP */
    Py_buffer *held;
    int nheld;
    /* OBJECT, per STRING/BYTES field, built by the first reader that wants it (NULL until then): the pool offset
       where record k << POOL_AT_SHIFT starts, for k = 0 .. (max_ordinal >> POOL_AT_SHIFT) + 1 (see prefetch_pool) */
    uint64_t **pool_at;
    int npool_at;
} Shard;

typedef struct {
    PyObject_HEAD
    int kind;
    int nfields; /* OBJECT: schema fields; LIST: 1 (p); SET: 2 (p, size) + element; MAP: 2 + key + value */
    uint8_t *ftype;
    int num_shards;
    int shard_shift;
    Shard *shards;
} TypeView;

static void
shard_clear(Shard *s)
{
    for (int i = 0; i < s->nheld; i++)
        PyBuffer_Release(&s->held[i]);
    PyMem_Free(s->held);
    PyMem_Free(s->offset);
    PyMem_Free(s->width);
    PyMem_Free((void *)s->pool);
    PyMem_Free(s->pool_len);
    for (int i = 0; i < s->npool_at; i++)
        PyMem_Free(s->pool_at[i]);
    PyMem_Free(s->pool_at);
    memset(s, 0, sizeof(*s));
}

static void
view_clear_shards(TypeView *v)
{
    if (v->shards) {
        for (int i = 0; i < v->num_shards; i++)
            shard_clear(&v->shards[i]);
        PyMem_Free(v->shards);
    }
    v->shards = NULL;
    v->num_shards = 0;
}

static void
TypeView_dealloc(TypeView *v)
{
    view_clear_shards(v);
    PyMem_Free(v->ftype);
    Py_TYPE(v)->tp_free((PyObject *)v);
}

/* widths layout per kind: OBJECT: one per field; LIST: (p, element); SET: (p, size, element);
   MAP: (p, size, key, value).  The fixed part is the first nfields widths. */
static int
kind_width_count(int kind, int nfields)
{
    switch (kind) {
    case KIND_OBJECT:
        return nfields;
    case KIND_LIST:
        return 2;
    case KIND_SET:
        return 3;
    default:
        return 4;
    }
}

static int
fixed_field_count(int kind, int nfields)
{
    switch (kind) {
    case KIND_OBJECT:
        return nfields;
    case KIND_LIST:
        return 1;
    default:
        return 2;
    }
}

static int
TypeView_init(TypeView *v, PyObject *args, PyObject *kwds)
{
    int kind;
    Py_buffer ft;
    if (!PyArg_ParseTuple(args, "iy*", &kind, &ft))
        return -1;
    if (kind < 0 || kind > 3 || ft.len > MAX_FIELDS) {
        PyBuffer_Release(&ft);
        PyErr_SetString(PyExc_ValueError, "bad kind or field count");
        return -1;
    }
    view_clear_shards(v);
    PyMem_Free(v->ftype);
    v->kind = kind;
    v->nfields = (int)ft.len;
    v->ftype = PyMem_Malloc(ft.len + 1);
    if (!v->ftype) {
        PyBuffer_Release(&ft);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(v->ftype, ft.buf, ft.len);
    PyBuffer_Release(&ft);
    for (int i = 0; i < v->nfields; i++)
        if (v->ftype[i] > F_BYTES) {
            PyErr_SetString(PyExc_ValueError, "bad field type code");
            return -1;
        }
    return 0;
}

static int
hold(Shard *s, PyObject *obj, const uint8_t **ptr, uint64_t *len)
{
    if (obj == Py_None) {
        *ptr = NULL;
        *len = 0;
        return 0;
    }
    Py_buffer *b = &s->held[s->nheld];
    if (PyObject_GetBuffer(obj, b, PyBUF_SIMPLE) < 0)
        return -1;
    s->nheld++;
    *ptr = (const uint8_t *)b->buf;
    *len = (uint64_t)b->len;
    return 0;
}

/* shard spec: (max_shard_ordinal, widths tuple, fixed buffer, extras tuple)
   extras: OBJECT: one buffer-or-None per field (the pools); others: (element array buffer,) */
static int
load_shard(TypeView *v, Shard *s, PyObject *spec)
{
    long long max_ordinal;
    PyObject *widths, *fixed, *extras;
    if (!PyArg_ParseTuple(spec, "LO!OO!", &max_ordinal, &PyTuple_Type, &widths, &fixed, &PyTuple_Type, &extras))
        return -1;
    int nw = kind_width_count(v->kind, v->nfields);
    int nfixed = fixed_field_count(v->kind, v->nfields);
    int nextra = v->kind == KIND_OBJECT ? v->nfields : 1;
    if (PyTuple_GET_SIZE(widths) != nw || PyTuple_GET_SIZE(extras) != nextra) {
        PyErr_SetString(PyExc_ValueError, "shard spec has the wrong number of widths or buffers");
        return -1;
    }
    if (max_ordinal < -1 || max_ordinal > INT32_MAX) {
        data_error("shard max ordinal out of range: %lld", max_ordinal);
        return -1;
    }
    s->max_ordinal = max_ordinal;
    s->offset = PyMem_Calloc(nw + 1, sizeof(uint32_t));
    s->width = PyMem_Calloc(nw + 1, 1);
    s->pool = PyMem_Calloc(nextra + 1, sizeof(uint8_t *));
    s->pool_len = PyMem_Calloc(nextra + 1, sizeof(uint64_t));
    s->held = PyMem_Calloc(nextra + 2, sizeof(Py_buffer));
    if (!s->offset || !s->width || !s->pool || !s->pool_len || !s->held) {
        PyErr_NoMemory();
        return -1;
    }
    uint64_t bpr = 0;
    for (int i = 0; i < nw; i++) {
        unsigned w;
        if (parse_width(PyTuple_GET_ITEM(widths, i), DataError ? DataError : PyExc_ValueError, &w) < 0)
            return -1;
        s->width[i] = (uint8_t)w;
        if (i < nfixed) {
            s->offset[i] = (uint32_t)bpr;
            bpr += (uint64_t)w;
        }
    }
    s->bits_per_record = bpr;
    if (v->kind != KIND_OBJECT) {
        /* pointers and sizes index into int-sized structures; element ordinals are ints */
        if (s->width[0] > 40 || (v->kind != KIND_LIST && s->width[1] > 32)) {
            data_error("pointer/size width out of range");
            return -1;
        }
        if (v->kind == KIND_MAP) {
            if (s->width[2] > 32 || s->width[3] > 32) {
                data_error("map key/value width out of range");
                return -1;
            }
            s->unit_bits = (unsigned)s->width[2] + s->width[3];
        } else {
            if (s->width[nw - 1] > 32) {
                data_error("element width out of range");
                return -1;
            }
            s->unit_bits = s->width[nw - 1];
        }
    }
    uint64_t flen;
    if (hold(s, fixed, &s->fixed, &flen) < 0)
        return -1;
    s->fixed_bits = (flen / 8) * 64;
    if (s->fixed == NULL && max_ordinal >= 0 && bpr > 0) {
        data_error("missing record data");
        return -1;
    }
    /* (max_ordinal + 1) * bpr fits easily in 64 bits: < 2^31 * 2^22 */
    if ((uint64_t)(max_ordinal + 1) * bpr > s->fixed_bits) {
        data_error("record data too short: %llu bits for %lld records of %llu bits",
                   (unsigned long long)s->fixed_bits, max_ordinal + 1, (unsigned long long)bpr);
        return -1;
    }
    for (int i = 0; i < nextra; i++) {
        uint64_t plen;
        if (hold(s, PyTuple_GET_ITEM(extras, i), &s->pool[i], &plen) < 0)
            return -1;
        s->pool_len[i] = v->kind == KIND_OBJECT ? plen : (plen / 8) * 64;
    }
    return 0;
}

static PyObject *
TypeView_set_shards(TypeView *v, PyObject *arg)
{
    if (!PyTuple_Check(arg) && !PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "expected a sequence of shard specs");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "shards");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || (n & (n - 1)) != 0 || n > (1 << 20)) {
        Py_DECREF(seq);
        return data_error("number of shards must be a power of two, got %zd", n);
    }
    Shard *shards = PyMem_Calloc(n, sizeof(Shard));
    if (!shards) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (load_shard(v, &shards[i], PySequence_Fast_GET_ITEM(seq, i)) < 0) {
            for (Py_ssize_t j = 0; j <= i; j++)
                shard_clear(&shards[j]);
            PyMem_Free(shards);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    view_clear_shards(v);
    v->shards = shards;
    v->num_shards = (int)n;
    int shift = 0;
    while ((1 << shift) < n)
        shift++;
    v->shard_shift = shift;
    Py_RETURN_NONE;
}

/* locate ordinal -> shard + shard ordinal; returns NULL with an exception when out of range */
static inline Shard *
locate(TypeView *v, long long ordinal, int64_t *so)
{
    if (!v->shards) {
        PyErr_SetString(PyExc_RuntimeError, "type view has no data");
        return NULL;
    }
    if (ordinal < 0) {
        PyErr_Format(PyExc_IndexError, "ordinal %lld out of range", ordinal);
        return NULL;
    }
    Shard *s = &v->shards[ordinal & (v->num_shards - 1)];
    int64_t shard_ordinal = ordinal >> v->shard_shift;
    if (shard_ordinal > s->max_ordinal) {
        PyErr_Format(PyExc_IndexError, "ordinal %lld out of range", ordinal);
        return NULL;
    }
    *so = shard_ordinal;
    return s;
}

static inline uint64_t
rec_field(const Shard *s, int64_t so, int f)
{
    return get_bits(s->fixed, (uint64_t)so * s->bits_per_record + s->offset[f], s->width[f]);
}

/* byte range of a STRING/BYTES value; returns 0 = ok, 1 = null, -1 = error set */
static int
var_range(const Shard *s, int64_t so, int f, uint64_t *start, uint64_t *end)
{
    unsigned w = s->width[f];
    uint64_t nullbit = w ? ((uint64_t)1 << (w - 1)) : 0;
    uint64_t e = rec_field(s, so, f);
    if (e & nullbit)
        return 1;
    uint64_t st = so == 0 ? 0 : (rec_field(s, so - 1, f) & (nullbit - 1));
    if (nullbit == 0)
        st = 0;
    if (st > e || e > s->pool_len[f]) {
        data_error("corrupt variable-length offsets (%llu..%llu of %llu bytes)", (unsigned long long)st,
                   (unsigned long long)e, (unsigned long long)s->pool_len[f]);
        return -1;
    }
    *start = st;
    *end = e;
    return 0;
}

/* Decode Hollow's string encoding (one VarInt per UTF-16 code unit) */
static PyObject *
decode_string(const uint8_t *p, uint64_t n)
{
    uint64_t i;
    for (i = 0; i < n; i++)
        if (p[i] & 0x80)
            break;
    if (i == n)
        return PyUnicode_DecodeASCII((const char *)p, (Py_ssize_t)n, NULL);
    uint16_t stackbuf[256];
    uint16_t *units = n <= 256 ? stackbuf : PyMem_Malloc(n * sizeof(uint16_t));
    if (!units)
        return PyErr_NoMemory();
    uint64_t nu = 0;
    i = 0;
    while (i < n) {
        uint32_t c = 0;
        int k = 0;
        uint8_t b;
        do {
            if (i >= n || k == 3) {
                if (units != stackbuf)
                    PyMem_Free(units);
                return data_error("corrupt string data");
            }
            b = p[i++];
            c = (c << 7) | (b & 0x7f);
            k++;
        } while (b & 0x80);
        if (c > 0xffff) {
            if (units != stackbuf)
                PyMem_Free(units);
            return data_error("corrupt string data: code unit %u", c);
        }
        units[nu++] = (uint16_t)c;
    }
    int byteorder = -1;
    PyObject *r = PyUnicode_DecodeUTF16((const char *)units, (Py_ssize_t)(nu * 2), "surrogatepass", &byteorder);
    if (units != stackbuf)
        PyMem_Free(units);
    return r;
}

static PyObject *
float_from_bits32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return PyFloat_FromDouble((double)f);
}

static PyObject *
float_from_bits64(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, 8);
    return PyFloat_FromDouble(d);
}

static PyObject *
object_value(TypeView *v, Shard *s, int64_t so, int f)
{
    unsigned w = s->width[f];
    uint64_t raw, start, end;
    int r;
    switch (v->ftype[f]) {
    case F_REFERENCE:
        raw = rec_field(s, so, f);
        if (raw == mask_of(w))
            Py_RETURN_NONE;
        return PyLong_FromUnsignedLongLong(raw);
    case F_INT:
        raw = rec_field(s, so, f);
        if (raw == mask_of(w))
            Py_RETURN_NONE;
        {
            uint32_t u = (uint32_t)raw;
            int32_t val = (int32_t)((u >> 1) ^ (0u - (u & 1)));
            return PyLong_FromLong(val);
        }
    case F_LONG:
        raw = rec_field(s, so, f);
        if (raw == mask_of(w))
            Py_RETURN_NONE;
        {
            int64_t val = (int64_t)((raw >> 1) ^ (0ull - (raw & 1)));
            return PyLong_FromLongLong(val);
        }
    case F_BOOLEAN:
        raw = rec_field(s, so, f);
        if (raw == mask_of(w))
            Py_RETURN_NONE;
        return PyBool_FromLong(raw == 1);
    case F_FLOAT:
        raw = rec_field(s, so, f);
        if ((uint32_t)raw == NULL_FLOAT_BITS)
            Py_RETURN_NONE;
        return float_from_bits32((uint32_t)raw);
    case F_DOUBLE:
        raw = rec_field(s, so, f);
        if (raw == NULL_DOUBLE_BITS)
            Py_RETURN_NONE;
        return float_from_bits64(raw);
    case F_STRING:
    case F_BYTES:
        r = var_range(s, so, f, &start, &end);
        if (r < 0)
            return NULL;
        if (r == 1)
            Py_RETURN_NONE;
        if (v->ftype[f] == F_BYTES)
            return PyBytes_FromStringAndSize((const char *)s->pool[f] + start, (Py_ssize_t)(end - start));
        return decode_string(s->pool[f] + start, end - start);
    }
    Py_RETURN_NONE;
}

static int
check_object(TypeView *v)
{
    if (v->kind != KIND_OBJECT) {
        PyErr_SetString(PyExc_TypeError, "not an OBJECT type view");
        return -1;
    }
    return 0;
}

static PyObject *
TypeView_get(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "get(ordinal, field)");
        return NULL;
    }
    if (check_object(v) < 0)
        return NULL;
    long long ordinal = PyLong_AsLongLong(args[0]);
    long f = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (f < 0 || f >= v->nfields) {
        PyErr_SetString(PyExc_IndexError, "field index out of range");
        return NULL;
    }
    int64_t so;
    Shard *s = locate(v, ordinal, &so);
    if (!s)
        return NULL;
    return object_value(v, s, so, (int)f);
}

static PyObject *
TypeView_record(TypeView *v, PyObject *arg)
{
    if (check_object(v) < 0)
        return NULL;
    long long ordinal = PyLong_AsLongLong(arg);
    if (ordinal == -1 && PyErr_Occurred())
        return NULL;
    int64_t so;
    Shard *s = locate(v, ordinal, &so);
    if (!s)
        return NULL;
    PyObject *t = PyTuple_New(v->nfields);
    if (!t)
        return NULL;
    for (int f = 0; f < v->nfields; f++) {
        PyObject *x = object_value(v, s, so, f);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, f, x);
    }
    return t;
}

static PyObject *
TypeView_raw(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    /* raw(ordinal, field) -> the stored bits of a fixed-length field (OBJECT) or of p/size (others) */
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "raw(ordinal, field)");
        return NULL;
    }
    long long ordinal = PyLong_AsLongLong(args[0]);
    long f = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (f < 0 || f >= fixed_field_count(v->kind, v->nfields)) {
        PyErr_SetString(PyExc_IndexError, "field index out of range");
        return NULL;
    }
    int64_t so;
    Shard *s = locate(v, ordinal, &so);
    if (!s)
        return NULL;
    return PyLong_FromUnsignedLongLong(rec_field(s, so, (int)f));
}

static PyObject *
TypeView_var_bytes(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    /* var_bytes(ordinal, field) -> the stored bytes of a STRING/BYTES field (Hollow's encoding), or None */
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "var_bytes(ordinal, field)");
        return NULL;
    }
    if (check_object(v) < 0)
        return NULL;
    long long ordinal = PyLong_AsLongLong(args[0]);
    long f = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (f < 0 || f >= v->nfields || (v->ftype[f] != F_STRING && v->ftype[f] != F_BYTES)) {
        PyErr_SetString(PyExc_IndexError, "not a STRING/BYTES field");
        return NULL;
    }
    int64_t so;
    Shard *s = locate(v, ordinal, &so);
    if (!s)
        return NULL;
    uint64_t st, e;
    int r = var_range(s, so, (int)f, &st, &e);
    if (r < 0)
        return NULL;
    if (r == 1)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)s->pool[f] + st, (Py_ssize_t)(e - st));
}

/* --- collections ---------------------------------------------------------------------------------------- */

/* start/end element (LIST) or bucket (SET/MAP) of a record, bounds-checked */
static int
coll_range(Shard *s, int64_t so, uint64_t *start, uint64_t *end)
{
    uint64_t e = rec_field(s, so, 0);
    uint64_t st = so == 0 ? 0 : rec_field(s, so - 1, 0);
    uint64_t cap = s->unit_bits ? s->pool_len[0] / s->unit_bits : UINT64_MAX;
    if (st > e || e > cap) {
        data_error("corrupt collection pointers (%llu..%llu of %llu)", (unsigned long long)st,
                   (unsigned long long)e, (unsigned long long)cap);
        return -1;
    }
    *start = st;
    *end = e;
    return 0;
}

static inline uint64_t
unit_at(const Shard *s, uint64_t idx, unsigned sub_off, unsigned sub_w)
{
    return get_bits(s->pool[0], idx * s->unit_bits + sub_off, sub_w);
}

static Shard *
coll_locate(TypeView *v, PyObject *arg, int kind, int64_t *so)
{
    if (v->kind != kind) {
        PyErr_SetString(PyExc_TypeError, "wrong kind of type view");
        return NULL;
    }
    long long ordinal = PyLong_AsLongLong(arg);
    if (ordinal == -1 && PyErr_Occurred())
        return NULL;
    return locate(v, ordinal, so);
}

static PyObject *
TypeView_size(TypeView *v, PyObject *arg)
{
    if (v->kind == KIND_OBJECT) {
        PyErr_SetString(PyExc_TypeError, "OBJECT records have no size");
        return NULL;
    }
    int64_t so;
    Shard *s = coll_locate(v, arg, v->kind, &so);
    if (!s)
        return NULL;
    if (v->kind == KIND_LIST) {
        uint64_t st, e;
        if (coll_range(s, so, &st, &e) < 0)
            return NULL;
        return PyLong_FromUnsignedLongLong(e - st);
    }
    return PyLong_FromUnsignedLongLong(rec_field(s, so, 1));
}

/* items of a collection record.  with_buckets = 0: LIST element ordinals in order, SET element ordinals in
   bucket order, MAP (key, value) in bucket order; with_buckets = 1 (SET/MAP): (bucket, element) or
   (bucket, key, value) with the bucket index relative to the record's first bucket */
static PyObject *
coll_items(TypeView *v, PyObject *arg, int with_buckets)
{
    if (v->kind == KIND_OBJECT || (with_buckets && v->kind == KIND_LIST)) {
        PyErr_SetString(PyExc_TypeError, with_buckets ? "only SET and MAP records have buckets"
                                                      : "OBJECT records have no elements");
        return NULL;
    }
    int64_t so;
    Shard *s = coll_locate(v, arg, v->kind, &so);
    if (!s)
        return NULL;
    uint64_t st, e;
    if (coll_range(s, so, &st, &e) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    unsigned w0 = v->kind == KIND_MAP ? s->width[2] : s->unit_bits;
    uint64_t empty = mask_of(w0);
    for (uint64_t i = st; i < e; i++) {
        unsigned long long a = unit_at(s, i, 0, w0), b = 0, bucket = i - st;
        PyObject *x;
        if (v->kind != KIND_LIST && a == empty)
            continue;
        if (v->kind == KIND_MAP)
            b = unit_at(s, i, s->width[2], s->width[3]);
        if (v->kind == KIND_LIST || (v->kind == KIND_SET && !with_buckets))
            x = PyLong_FromUnsignedLongLong(a);
        else if (v->kind == KIND_SET)
            x = Py_BuildValue("(KK)", bucket, a);
        else if (!with_buckets)
            x = Py_BuildValue("(KK)", a, b);
        else
            x = Py_BuildValue("(KKK)", bucket, a, b);
        if (!x || PyList_Append(out, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(x);
    }
    return out;
}

static int
want_map(TypeView *v, int map)
{
    if ((v->kind == KIND_MAP) != map) {
        PyErr_SetString(PyExc_TypeError, map ? "only MAP views have entries" : "use entries()/map_* on MAP views");
        return -1;
    }
    return 0;
}

static PyObject *
TypeView_elements(TypeView *v, PyObject *arg)
{
    return want_map(v, 0) < 0 ? NULL : coll_items(v, arg, 0);
}

static PyObject *
TypeView_entries(TypeView *v, PyObject *arg)
{
    return want_map(v, 1) < 0 ? NULL : coll_items(v, arg, 0);
}

static PyObject *
TypeView_buckets(TypeView *v, PyObject *arg)
{
    return want_map(v, 0) < 0 ? NULL : coll_items(v, arg, 1);
}

static PyObject *
TypeView_map_buckets(TypeView *v, PyObject *arg)
{
    return want_map(v, 1) < 0 ? NULL : coll_items(v, arg, 1);
}

/* probe(ordinal, hash) -> candidates from the home bucket up to the first empty bucket:
   SET: [element], MAP: [(key, value)].  hash is already mixed (e.g. hashInt(elementOrdinal)). */
static PyObject *
probe_impl(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || (v->kind != KIND_SET && v->kind != KIND_MAP)) {
        PyErr_SetString(PyExc_TypeError, "probe(ordinal, hash) on a SET or MAP view");
        return NULL;
    }
    int64_t so;
    Shard *s = coll_locate(v, args[0], v->kind, &so);
    if (!s)
        return NULL;
    long long h = PyLong_AsLongLong(args[1]);
    if (h == -1 && PyErr_Occurred())
        return NULL;
    uint64_t st, e;
    if (coll_range(s, so, &st, &e) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    uint64_t nb = e - st;
    if (nb == 0)
        return out;
    if ((nb & (nb - 1)) != 0) {
        Py_DECREF(out);
        return data_error("bucket count %llu is not a power of two", (unsigned long long)nb);
    }
    unsigned w0 = v->kind == KIND_MAP ? s->width[2] : s->unit_bits;
    uint64_t empty = mask_of(w0);
    uint64_t b = (uint64_t)(uint32_t)h & (nb - 1);
    for (uint64_t k = 0; k < nb; k++) {
        uint64_t a = unit_at(s, st + b, 0, w0);
        if (a == empty)
            break;
        PyObject *x = v->kind == KIND_SET
                          ? PyLong_FromUnsignedLongLong(a)
                          : Py_BuildValue("(KK)", (unsigned long long)a,
                                          (unsigned long long)unit_at(s, st + b, s->width[2], s->width[3]));
        if (!x || PyList_Append(out, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(x);
        b = (b + 1) & (nb - 1);
    }
    return out;
}

static PyObject *
TypeView_probe(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    return want_map(v, 0) < 0 ? NULL : probe_impl(v, args, nargs);
}

static PyObject *
TypeView_map_probe(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    return want_map(v, 1) < 0 ? NULL : probe_impl(v, args, nargs);
}

/* --- columns -------------------------------------------------------------------------------------------- */

/* column(field, ordinals(int64 buffer), out values buffer, out nulls buffer(uint8))
   INT -> int32, LONG -> int64, REFERENCE -> int32 (-1 null), BOOLEAN -> uint8, FLOAT -> float32,
   DOUBLE -> float64; nulls[i] = 1 for null values (NaN stored for FLOAT/DOUBLE, 0 otherwise) */
static PyObject *
TypeView_column(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "column(field, ordinals, values, nulls)");
        return NULL;
    }
    if (check_object(v) < 0)
        return NULL;
    long f = PyLong_AsLong(args[0]);
    if (f == -1 && PyErr_Occurred())
        return NULL;
    if (f < 0 || f >= v->nfields || v->ftype[f] == F_STRING || v->ftype[f] == F_BYTES) {
        PyErr_SetString(PyExc_ValueError, "column() needs a fixed-length field");
        return NULL;
    }
    Py_buffer ob, vb, nb;
    if (PyObject_GetBuffer(args[1], &ob, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &vb, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&ob);
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &nb, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&vb);
        return NULL;
    }
    Py_ssize_t n = ob.len / 8;
    int ft = v->ftype[f];
    Py_ssize_t item = (ft == F_LONG || ft == F_DOUBLE) ? 8 : (ft == F_BOOLEAN ? 1 : 4);
    PyObject *result = NULL;
    if (vb.len < n * item || nb.len < n) {
        PyErr_SetString(PyExc_ValueError, "output buffers too small");
        goto done;
    }
    const int64_t *ords = (const int64_t *)ob.buf;
    uint8_t *nulls = (uint8_t *)nb.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t so;
        int64_t o;
        memcpy(&o, (const char *)ords + i * 8, 8);
        Shard *s = locate(v, o, &so);
        if (!s)
            goto done;
        uint64_t raw = rec_field(s, so, (int)f);
        unsigned w = s->width[f];
        int isnull = 0;
        char *dst = (char *)vb.buf + i * item;
        switch (ft) {
        case F_REFERENCE: {
            isnull = raw == mask_of(w);
            int32_t x = isnull ? -1 : (int32_t)raw;
            memcpy(dst, &x, 4);
            break;
        }
        case F_INT: {
            isnull = raw == mask_of(w);
            uint32_t u = (uint32_t)raw;
            int32_t x = isnull ? 0 : (int32_t)((u >> 1) ^ (0u - (u & 1)));
            memcpy(dst, &x, 4);
            break;
        }
        case F_LONG: {
            isnull = raw == mask_of(w);
            int64_t x = isnull ? 0 : (int64_t)((raw >> 1) ^ (0ull - (raw & 1)));
            memcpy(dst, &x, 8);
            break;
        }
        case F_BOOLEAN: {
            isnull = raw == mask_of(w);
            uint8_t x = (!isnull && raw == 1);
            *dst = (char)x;
            break;
        }
        case F_FLOAT: {
            uint32_t bits = (uint32_t)raw;
            isnull = bits == NULL_FLOAT_BITS;
            if (isnull)
                bits = 0x7fc00000u;
            memcpy(dst, &bits, 4);
            break;
        }
        case F_DOUBLE: {
            uint64_t bits = raw;
            isnull = bits == NULL_DOUBLE_BITS;
            if (isnull)
                bits = 0x7ff8000000000000ull;
            memcpy(dst, &bits, 8);
            break;
        }
        }
        nulls[i] = (uint8_t)isnull;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ob);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&nb);
    return result;
}

/* --- reference bounds ----------------------------------------------------------------------------------- */

/* ref_max(slot, mask) -> the largest ordinal the records hold in one reference slot, -1 when none.
   slot: OBJECT a REFERENCE field; LIST/SET 0 (the elements); MAP 0 (keys) or 1 (values).
   mask: None for every record, else a buffer of one byte per ordinal: only records whose byte is non-zero
   (ordinals past its end are skipped).  Nulls and empty buckets are not references.  The loader compares the
   result with the referenced type's max ordinal, so a dangling reference refuses the blob, not a later read. */
static PyObject *
TypeView_ref_max(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ref_max(slot, mask)");
        return NULL;
    }
    long slot = PyLong_AsLong(args[0]);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    int ok = v->kind == KIND_OBJECT ? (slot >= 0 && slot < v->nfields && v->ftype[slot] == F_REFERENCE)
                                    : (slot == 0 || (slot == 1 && v->kind == KIND_MAP));
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "ref_max() needs a reference slot");
        return NULL;
    }
    Py_buffer mb = {0};
    const uint8_t *mask = NULL;
    uint64_t mlen = 0;
    if (args[1] != Py_None) {
        if (PyObject_GetBuffer(args[1], &mb, PyBUF_SIMPLE) < 0)
            return NULL;
        mask = (const uint8_t *)mb.buf;
        mlen = (uint64_t)mb.len;
    }
    int64_t best = -1;
    int failed = 0;
    for (int i = 0; i < v->num_shards && !failed; i++) {
        Shard *s = &v->shards[i];
        unsigned w = v->kind == KIND_OBJECT ? s->width[slot] : v->kind == KIND_MAP ? s->width[2 + slot]
                                                                                    : s->unit_bits;
        unsigned off = v->kind == KIND_MAP && slot == 1 ? s->width[2] : 0;
        unsigned kw = v->kind == KIND_MAP ? s->width[2] : s->unit_bits; /* the bucket's emptiness marker */
        uint64_t null = mask_of(w), empty = mask_of(kw);
        for (int64_t so = 0; so <= s->max_ordinal; so++) {
            if (mask) {
                uint64_t o = ((uint64_t)so << v->shard_shift) | (uint64_t)i;
                if (o >= mlen || !mask[o])
                    continue;
            }
            if (v->kind == KIND_OBJECT) {
                uint64_t x = rec_field(s, so, (int)slot);
                if (x != null && (int64_t)x > best)
                    best = (int64_t)x;
                continue;
            }
            uint64_t st, e;
            if (coll_range(s, so, &st, &e) < 0) {
                failed = 1;
                break;
            }
            for (uint64_t k = st; k < e; k++) {
                if (v->kind != KIND_LIST && unit_at(s, k, 0, kw) == empty)
                    continue;
                uint64_t x = unit_at(s, k, off, w);
                if ((int64_t)x > best)
                    best = (int64_t)x;
            }
        }
    }
    if (mask)
        PyBuffer_Release(&mb);
    return failed ? NULL : PyLong_FromLongLong(best);
}

/* --- checksum ------------------------------------------------------------------------------------------- */

/* checksum(ordinals int64 ascending, field order tuple (OBJECT)) -> the type's HollowChecksum value */
static PyObject *
TypeView_checksum(TypeView *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "checksum(ordinals, field_order)");
        return NULL;
    }
    if (!v->shards) {
        PyErr_SetString(PyExc_RuntimeError, "type view has no data");
        return NULL;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(args[1]);
    int *order = PyMem_Malloc((nf + 1) * sizeof(int));
    if (!order)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < nf; i++) {
        long x = PyLong_AsLong(PyTuple_GET_ITEM(args[1], i));
        if ((x == -1 && PyErr_Occurred()) || x < 0 || x >= v->nfields) {
            PyMem_Free(order);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "field index out of range");
            return NULL;
        }
        order[i] = (int)x;
    }
    Py_buffer ob;
    if (PyObject_GetBuffer(args[0], &ob, PyBUF_SIMPLE) < 0) {
        PyMem_Free(order);
        return NULL;
    }
    Py_ssize_t n = ob.len / 8;
    const uint8_t *ords = ob.buf;
    int32_t c = 0;
    int ok = 1;
    uint32_t mask = (uint32_t)v->num_shards - 1;
    for (int sh = 0; sh < v->num_shards && ok; sh++) {
        Shard *s = &v->shards[sh];
        for (Py_ssize_t i = 0; i < n && ok; i++) {
            int64_t o;
            memcpy(&o, ords + i * 8, 8);
            if (o < 0 || ((uint64_t)o & mask) != (uint32_t)sh)
                continue;
            int64_t so = o >> v->shard_shift;
            if (so > s->max_ordinal) {
                data_error("populated ordinal %lld beyond the type's records", (long long)o);
                ok = 0;
                break;
            }
            c = ck_int(c, (int32_t)o);
            if (v->kind == KIND_OBJECT) {
                for (Py_ssize_t k = 0; k < nf; k++) {
                    int f = order[k];
                    if (v->ftype[f] == F_STRING || v->ftype[f] == F_BYTES) {
                        uint64_t st, e;
                        int r = var_range(s, so, f, &st, &e);
                        if (r < 0) {
                            ok = 0;
                            break;
                        }
                        c = ck_int(c, r == 1 ? -1 : murmur3(s->pool[f] + st, e - st));
                    } else {
                        uint64_t raw = rec_field(s, so, f);
                        if (raw == mask_of(s->width[f]))
                            c = ck_int(c, INT32_MAX);
                        else
                            c = ck_long(c, (int64_t)raw);
                    }
                }
            } else {
                uint64_t st, e;
                if (coll_range(s, so, &st, &e) < 0) {
                    ok = 0;
                    break;
                }
                if (v->kind == KIND_LIST) {
                    for (uint64_t j = st; j < e; j++)
                        c = ck_int(c, (int32_t)unit_at(s, j, 0, s->unit_bits));
                } else {
                    uint64_t nb = hash_table_size(rec_field(s, so, 1));
                    if (nb == 0 || st + nb > e) {
                        data_error("set/map size inconsistent with its buckets");
                        ok = 0;
                        break;
                    }
                    unsigned w0 = v->kind == KIND_MAP ? s->width[2] : s->unit_bits;
                    uint64_t empty = mask_of(w0);
                    for (uint64_t j = 0; j < nb; j++) {
                        uint64_t a = unit_at(s, st + j, 0, w0);
                        if (a == empty)
                            continue;
                        c = ck_int(c, (int32_t)j);
                        c = ck_int(c, (int32_t)a);
                        if (v->kind == KIND_MAP)
                            c = ck_int(c, (int32_t)unit_at(s, st + j, s->width[2], s->width[3]));
                    }
                }
            }
        }
    }
    PyBuffer_Release(&ob);
    PyMem_Free(order);
    if (!ok)
        return NULL;
    return PyLong_FromLong(c);
}

/* --- delta merge ---------------------------------------------------------------------------------------- */

typedef struct {
    const int64_t *v;
    Py_ssize_t n, i;
} OrdList;

static inline int64_t
ol_peek(OrdList *l)
{
    return l->i < l->n ? l->v[l->i] : INT64_MAX;
}

static int
ordlist_from(PyObject *obj, Py_buffer *b, OrdList *l, const char *what)
{
    if (PyObject_GetBuffer(obj, b, PyBUF_SIMPLE) < 0)
        return -1;
    l->v = (const int64_t *)b->buf;
    l->n = b->len / 8;
    l->i = 0;
    for (Py_ssize_t k = 0; k < l->n; k++) {
        if (l->v[k] < 0 || (k && l->v[k] <= l->v[k - 1])) {
            PyBuffer_Release(b);
            data_error("%s ordinals are not strictly ascending", what);
            return -1;
        }
    }
    return 0;
}

static PyObject *
new_zeroed_words(uint64_t nwords, uint64_t **out)
{
    if (nwords > (uint64_t)PY_SSIZE_T_MAX / 8)
        return PyErr_NoMemory();
    PyObject *ba = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(nwords * 8));
    if (!ba)
        return NULL;
    memset(PyByteArray_AS_STRING(ba), 0, nwords * 8);
    *out = (uint64_t *)PyByteArray_AS_STRING(ba);
    return ba;
}

/* --- merge output buffers ------------------------------------------------------------------------------ */

/* The arrays a delta merge writes are new memory, and on the machines this runs on (virtual machines) the first
   touch of a fresh 4 KiB page costs about ten times the copy into it: a 33 MB apply spent most of its time in
   page faults.  A large output therefore gets its own private anonymous mapping, aligned to 2 MiB and marked
   MADV_HUGEPAGE, so its whole 2 MiB pages fault in one at a time (measured: 32 MB first written in 7 ms instead
   of 34 ms).  Only whole 2 MiB pages inside the array are marked: the tail stays in 4 KiB pages, so the array is
   resident to within a page of its length.  When the merge knows the final length (a string pool is allocated
   for the worst case), merge_out_shrink() gives the unused tail back.  Small outputs are plain bytes objects.

   Pages exports a read-only buffer; the merge writes through the pointer it got at creation, before anyone else
   holds the object. */

#define PAGES_MIN_BYTES ((uint64_t)1 << 20)
#define HUGE_PAGE_BYTES ((uint64_t)2 << 20)

typedef struct {
    PyObject_HEAD
    uint8_t *data; /* the mapping, HUGE_PAGE_BYTES-aligned */
    size_t mapped; /* bytes mapped */
    Py_ssize_t len;
} Pages;

static void
Pages_dealloc(Pages *p)
{
    if (p->data)
        munmap(p->data, p->mapped);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int
Pages_getbuffer(Pages *p, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)p, p->data, p->len, 1, flags);
}

static Py_ssize_t
Pages_length(Pages *p)
{
    return p->len;
}

static PyBufferProcs Pages_as_buffer = {.bf_getbuffer = (getbufferproc)Pages_getbuffer};
static PySequenceMethods Pages_as_sequence = {.sq_length = (lenfunc)Pages_length};

static PyTypeObject PagesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._native.Pages",
    .tp_basicsize = sizeof(Pages),
    .tp_dealloc = (destructor)Pages_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_buffer = &Pages_as_buffer,
    .tp_as_sequence = &Pages_as_sequence,
    .tp_doc = "read-only bytes of a delta merge, in memory of their own (see _native.c)",
};

static PyObject *
pages_new(uint64_t nbytes, uint8_t **out)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = ((size_t)nbytes + page - 1) / page * page;
    size_t span = len + HUGE_PAGE_BYTES;
    uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return PyErr_NoMemory();
    uint8_t *data = (uint8_t *)(((uintptr_t)m + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
    if (data > m)
        munmap(m, (size_t)(data - m));
    if (m + span > data + len)
        munmap(data + len, (size_t)(m + span - (data + len)));
#ifdef MADV_HUGEPAGE
    size_t whole = len / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if (whole)
        (void)madvise(data, whole, MADV_HUGEPAGE); /* a hint: without it the pages are simply 4 KiB */
#endif
    Pages *p = PyObject_New(Pages, &PagesType);
    if (!p) {
        munmap(data, len);
        return NULL;
    }
    p->data = data;
    p->mapped = len;
    p->len = (Py_ssize_t)nbytes;
    *out = data;
    return (PyObject *)p;
}

/* Zeroed output of nbytes for a merge to fill (the caller is its only owner until it returns it): Pages when
   large, else a bytes object from calloc. */
static PyObject *
merge_out_new(uint64_t nbytes, uint8_t **out)
{
    if (nbytes > (uint64_t)PY_SSIZE_T_MAX / 2)
        return PyErr_NoMemory();
    if (nbytes >= PAGES_MIN_BYTES)
        return pages_new(nbytes, out);
    if (nbytes == 0) {
        static uint8_t nothing[8]; /* a valid pointer for the zero-length copies into an empty output */
        *out = nothing;
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    /* bytes(n) takes calloc'd memory, which is not written again when it is fresh */
    PyObject *b = PyObject_CallFunction((PyObject *)&PyBytes_Type, "n", (Py_ssize_t)nbytes);
    if (!b)
        return NULL;
    *out = (uint8_t *)PyBytes_AS_STRING(b);
    return b;
}

/* Cut a merge output to its final length (no larger than at creation); on failure *obj is released and NULL. */
static int
merge_out_shrink(PyObject **obj, uint64_t nbytes)
{
    if (PyBytes_CheckExact(*obj))
        return _PyBytes_Resize(obj, (Py_ssize_t)nbytes);
    Pages *p = (Pages *)*obj;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t keep = ((size_t)nbytes + page - 1) / page * page;
    if (keep < p->mapped) {
        munmap(p->data + keep, p->mapped - keep); /* splits a huge page the cut falls in */
        p->mapped = keep;
    }
    p->len = (Py_ssize_t)nbytes;
    if (keep == 0)
        p->data = NULL;
    return 0;
}

static PyObject *
new_be_words(uint64_t nwords, uint8_t **out)
{
    if (nwords > (uint64_t)PY_SSIZE_T_MAX / 8)
        return PyErr_NoMemory();
    return merge_out_new(nwords * 8, out);
}

typedef struct {
    /* one source of records: old shard or delta shard */
    Shard *s;
    int64_t max; /* last record index available */
} Src;

/* OBJECT merge ------------------------------------------------------------------------------------------- */

static PyObject *
merge_object(TypeView *ov, Shard *old, OrdList *rem, TypeView *dv, Shard *ds, OrdList *add, int64_t tmax,
             const uint8_t *tw, const int *fmap)
{
    int nf = ov->nfields;
    uint32_t *off = PyMem_Calloc(nf + 1, sizeof(uint32_t));
    uint64_t *ppos = PyMem_Calloc(nf + 1, sizeof(uint64_t));     /* write position per pool */
    uint64_t *dread = PyMem_Calloc(dv->nfields + 1, sizeof(uint64_t)); /* delta pool read position */
    uint8_t **pools = PyMem_Calloc(nf + 1, sizeof(uint8_t *));
    PyObject **poolobj = PyMem_Calloc(nf + 1, sizeof(PyObject *));
    PyObject *fixedobj = NULL, *result = NULL;
    if (!off || !ppos || !dread || !pools || !poolobj) {
        PyErr_NoMemory();
        goto fail;
    }
    uint64_t bpr = 0;
    int same_widths = 1;
    for (int f = 0; f < nf; f++) {
        off[f] = (uint32_t)bpr;
        bpr += tw[f];
        if (tw[f] != old->width[f])
            same_widths = 0;
    }
    uint64_t nrec = (uint64_t)(tmax + 1);
    uint8_t *T; /* built in the blob's byte order: kept runs are copied as they are */
    fixedobj = new_be_words((nrec * bpr + 63) / 64, &T);
    if (!fixedobj)
        goto fail;
    for (int f = 0; f < nf; f++) {
        if (ov->ftype[f] != F_STRING && ov->ftype[f] != F_BYTES)
            continue;
        uint64_t cap = old->pool_len[f] + (fmap[f] >= 0 ? ds->pool_len[fmap[f]] : 0);
        poolobj[f] = merge_out_new(cap, &pools[f]);
        if (!poolobj[f])
            goto fail;
    }
    int64_t d = 0; /* next delta record */
    int64_t i = 0;
    uint64_t dbpr = ds->bits_per_record;
    while (i <= tmax) {
        int64_t na = ol_peek(add);
        while (ol_peek(rem) < i)
            rem->i++;
        int64_t nr = ol_peek(rem);
        if (na == i) {
            /* record from the delta */
            if ((uint64_t)(d + 1) * dbpr > ds->fixed_bits) {
                data_error("delta has fewer records than additions");
                goto fail;
            }
            for (int f = 0; f < nf; f++) {
                int df = fmap[f];
                uint64_t tbit = (uint64_t)i * bpr + off[f];
                int var = ov->ftype[f] == F_STRING || ov->ftype[f] == F_BYTES;
                uint64_t tnull = var ? ((uint64_t)1 << (tw[f] - 1)) : mask_of(tw[f]);
                if (df < 0) {
                    store_bits_be(T, tbit, tw[f], var ? (tnull | ppos[f]) : tnull);
                    continue;
                }
                unsigned sw = ds->width[df];
                uint64_t raw = get_bits(ds->fixed, (uint64_t)d * dbpr + ds->offset[df], sw);
                if (var) {
                    uint64_t snull = sw ? ((uint64_t)1 << (sw - 1)) : 0;
                    if (raw & snull) {
                        store_bits_be(T, tbit, tw[f], tnull | ppos[f]);
                        continue;
                    }
                    uint64_t len;
                    if (raw < dread[df] || raw > ds->pool_len[df]) {
                        data_error("corrupt variable-length offsets in delta");
                        goto fail;
                    }
                    len = raw - dread[df];
                    memcpy(pools[f] + ppos[f], ds->pool[df] + dread[df], len);
                    dread[df] = raw;
                    ppos[f] += len;
                    if (ppos[f] >= tnull) {
                        data_error("variable-length data overflows its field width");
                        goto fail;
                    }
                    store_bits_be(T, tbit, tw[f], ppos[f]);
                } else {
                    if (raw == mask_of(sw))
                        raw = tnull;
                    else if (raw > mask_of(tw[f])) {
                        data_error("value does not fit its field width");
                        goto fail;
                    }
                    store_bits_be(T, tbit, tw[f], raw);
                }
            }
            /* a delta's var-length reads restart where the previous delta record ended; fields whose delta
               record was null keep the read position (the null value's low bits equal it) */
            d++;
            add->i++;
            i++;
            continue;
        }
        if (i <= old->max_ordinal && nr != i) {
            int64_t run_end = i + 1;
            if (same_widths) {
                int64_t lim = old->max_ordinal + 1;
                if (tmax + 1 < lim)
                    lim = tmax + 1;
                if (na < lim)
                    lim = na;
                if (nr < lim)
                    lim = nr;
                run_end = lim;
                /* bulk copy records [i, run_end) */
                copy_bits_be(T, (uint64_t)i * bpr, old->fixed, (uint64_t)i * bpr, (uint64_t)(run_end - i) * bpr);
                for (int f = 0; f < nf; f++) {
                    if (ov->ftype[f] != F_STRING && ov->ftype[f] != F_BYTES)
                        continue;
                    unsigned w = tw[f];
                    uint64_t lowmask = w ? (((uint64_t)1 << (w - 1)) - 1) : 0;
                    uint64_t sstart = i == 0 ? 0 : (rec_field(old, i - 1, f) & lowmask);
                    uint64_t send = rec_field(old, run_end - 1, f) & lowmask;
                    if (sstart > send || send > old->pool_len[f]) {
                        data_error("corrupt variable-length offsets");
                        goto fail;
                    }
                    memcpy(pools[f] + ppos[f], old->pool[f] + sstart, send - sstart);
                    uint64_t diff = ppos[f] - sstart; /* modular */
                    if (diff != 0) {
                        for (int64_t r = i; r < run_end; r++) {
                            uint64_t bit = (uint64_t)r * bpr + off[f];
                            store_bits_be(T, bit, w, get_bits(T, bit, w) + diff);
                        }
                    }
                    ppos[f] += send - sstart;
                    if (w && ppos[f] > lowmask) {
                        data_error("variable-length data overflows its field width");
                        goto fail;
                    }
                }
                i = run_end;
                continue;
            }
            /* re-encode one record */
            for (int f = 0; f < nf; f++) {
                uint64_t tbit = (uint64_t)i * bpr + off[f];
                int var = ov->ftype[f] == F_STRING || ov->ftype[f] == F_BYTES;
                uint64_t tnull = var ? ((uint64_t)1 << (tw[f] - 1)) : mask_of(tw[f]);
                if (var) {
                    uint64_t st, e;
                    int r = var_range(old, i, f, &st, &e);
                    if (r < 0)
                        goto fail;
                    if (r == 1) {
                        store_bits_be(T, tbit, tw[f], tnull | ppos[f]);
                        continue;
                    }
                    memcpy(pools[f] + ppos[f], old->pool[f] + st, e - st);
                    ppos[f] += e - st;
                    if (ppos[f] >= tnull) {
                        data_error("variable-length data overflows its field width");
                        goto fail;
                    }
                    store_bits_be(T, tbit, tw[f], ppos[f]);
                } else {
                    uint64_t raw = rec_field(old, i, f);
                    if (raw == mask_of(old->width[f]))
                        raw = tnull;
                    else if (raw > mask_of(tw[f])) {
                        data_error("value does not fit its field width");
                        goto fail;
                    }
                    store_bits_be(T, tbit, tw[f], raw);
                }
            }
            i++;
            continue;
        }
        /* empty record: a hole, or a ghost dropped one version after its removal */
        for (int f = 0; f < nf; f++) {
            uint64_t tbit = (uint64_t)i * bpr + off[f];
            int var = ov->ftype[f] == F_STRING || ov->ftype[f] == F_BYTES;
            store_bits_be(T, tbit, tw[f], var ? (((uint64_t)1 << (tw[f] - 1)) | ppos[f]) : mask_of(tw[f]));
        }
        i++;
    }
    if (add->i != add->n) {
        data_error("delta adds ordinals beyond its max ordinal");
        goto fail;
    }
    PyObject *pooltuple = PyTuple_New(nf);
    if (!pooltuple)
        goto fail;
    for (int f = 0; f < nf; f++) {
        if (poolobj[f]) {
            if (merge_out_shrink(&poolobj[f], ppos[f]) < 0) {
                Py_DECREF(pooltuple);
                goto fail;
            }
            PyTuple_SET_ITEM(pooltuple, f, poolobj[f]);
            poolobj[f] = NULL;
        } else {
            Py_INCREF(Py_None);
            PyTuple_SET_ITEM(pooltuple, f, Py_None);
        }
    }
    result = PyTuple_Pack(2, fixedobj, pooltuple);
    Py_DECREF(pooltuple);
fail:
    Py_XDECREF(fixedobj);
    if (poolobj)
        for (int f = 0; f < nf; f++)
            Py_XDECREF(poolobj[f]);
    PyMem_Free(off);
    PyMem_Free(ppos);
    PyMem_Free(dread);
    PyMem_Free(pools);
    PyMem_Free(poolobj);
    return result;
}

/* LIST / SET / MAP merge --------------------------------------------------------------------------------- */

static PyObject *
merge_collection(TypeView *ov, Shard *old, OrdList *rem, Shard *ds, OrdList *add, int64_t tmax, const uint8_t *tw)
{
    int kind = ov->kind;
    int nfix = fixed_field_count(kind, 0);
    unsigned tpw = tw[0], tsw = nfix > 1 ? tw[1] : 0;
    unsigned tk, tv, tunit; /* target element/key width, value width, unit width */
    if (kind == KIND_MAP) {
        tk = tw[2];
        tv = tw[3];
    } else {
        tk = tw[nfix];
        tv = 0;
    }
    tunit = tk + tv;
    uint64_t tbpr = tpw + tsw;
    int same = old->width[0] == tpw && (nfix < 2 || old->width[1] == tsw) && old->unit_bits == tunit &&
               (kind != KIND_MAP || old->width[2] == tk);
    unsigned ok_w = kind == KIND_MAP ? old->width[2] : old->unit_bits;
    unsigned dk_w = kind == KIND_MAP ? ds->width[2] : ds->unit_bits;
    uint64_t nrec = (uint64_t)(tmax + 1);
    uint8_t *T, *E; /* built in the blob's byte order */
    PyObject *fixedobj = new_be_words((nrec * tbpr + 63) / 64, &T), *elemobj = NULL, *result = NULL;
    if (!fixedobj)
        return NULL;
    uint64_t old_units = old->unit_bits ? old->pool_len[0] / old->unit_bits : 0;
    uint64_t delta_units = ds->unit_bits ? ds->pool_len[0] / ds->unit_bits : 0;
    uint64_t cap_units = old_units + delta_units;
    elemobj = new_be_words((cap_units * tunit + 63) / 64 + 1, &E);
    if (!elemobj)
        goto fail;
    uint64_t wpos = 0;  /* units written */
    uint64_t dread = 0; /* delta units read */
    int64_t d = 0, i = 0;
    uint64_t dbpr = ds->bits_per_record;
    while (i <= tmax) {
        int64_t na = ol_peek(add);
        while (ol_peek(rem) < i)
            rem->i++;
        int64_t nr = ol_peek(rem);
        const Shard *src = NULL;
        uint64_t st = 0, e = 0, size = 0;
        if (na == i) {
            if ((uint64_t)(d + 1) * dbpr > ds->fixed_bits) {
                data_error("delta has fewer records than additions");
                goto fail;
            }
            e = get_bits(ds->fixed, (uint64_t)d * dbpr, ds->width[0]);
            st = dread;
            if (e < st || e > delta_units) {
                data_error("corrupt collection pointers in delta");
                goto fail;
            }
            size = nfix > 1 ? get_bits(ds->fixed, (uint64_t)d * dbpr + ds->width[0], ds->width[1]) : 0;
            src = ds;
            dread = e;
            d++;
            add->i++;
        } else if (i <= old->max_ordinal && nr != i) {
            if (same) {
                int64_t lim = old->max_ordinal + 1;
                if (tmax + 1 < lim)
                    lim = tmax + 1;
                if (na < lim)
                    lim = na;
                if (nr < lim)
                    lim = nr;
                uint64_t sst = i == 0 ? 0 : rec_field(old, i - 1, 0);
                uint64_t se = rec_field(old, lim - 1, 0);
                if (sst > se || se > old_units) {
                    data_error("corrupt collection pointers");
                    goto fail;
                }
                copy_bits_be(T, (uint64_t)i * tbpr, old->fixed, (uint64_t)i * tbpr, (uint64_t)(lim - i) * tbpr);
                copy_bits_be(E, wpos * tunit, old->pool[0], sst * tunit, (se - sst) * tunit);
                uint64_t diff = wpos - sst;
                if (diff != 0)
                    for (int64_t r = i; r < lim; r++) {
                        uint64_t bit = (uint64_t)r * tbpr;
                        store_bits_be(T, bit, tpw, get_bits(T, bit, tpw) + diff);
                    }
                wpos += se - sst;
                if (wpos > mask_of(tpw)) {
                    data_error("collection pointer overflows its width");
                    goto fail;
                }
                i = lim;
                continue;
            }
            if (coll_range(old, i, &st, &e) < 0)
                goto fail;
            size = nfix > 1 ? rec_field(old, i, 1) : 0;
            src = old;
        }
        if (src) {
            unsigned sk = src == ds ? dk_w : ok_w;
            unsigned sunit = src->unit_bits;
            uint64_t sempty = mask_of(sk);
            for (uint64_t j = st; j < e; j++) {
                uint64_t a = get_bits(src->pool[0], j * sunit, sk);
                uint64_t b = kind == KIND_MAP ? get_bits(src->pool[0], j * sunit + sk, src->width[3]) : 0;
                if (kind != KIND_LIST && a == sempty) {
                    a = mask_of(tk);
                    b = 0;
                } else if (a >= mask_of(tk) + (kind == KIND_LIST) || (kind == KIND_MAP && b > mask_of(tv))) {
                    data_error("element ordinal does not fit its width");
                    goto fail;
                }
                store_bits_be(E, wpos * tunit, tk, a);
                if (kind == KIND_MAP)
                    store_bits_be(E, wpos * tunit + tk, tv, b);
                wpos++;
            }
            if (size > mask_of(tsw)) {
                data_error("collection size does not fit its width");
                goto fail;
            }
            if (nfix > 1)
                store_bits_be(T, (uint64_t)i * tbpr + tpw, tsw, size);
        }
        if (wpos > mask_of(tpw)) {
            data_error("collection pointer overflows its width");
            goto fail;
        }
        store_bits_be(T, (uint64_t)i * tbpr, tpw, wpos);
        i++;
    }
    if (add->i != add->n) {
        data_error("delta adds ordinals beyond its max ordinal");
        goto fail;
    }
    uint64_t ewords = (wpos * tunit + 63) / 64;
    if (merge_out_shrink(&elemobj, ewords * 8) < 0)
        goto fail; /* (it released the object) */
    result = Py_BuildValue("(O(O))", fixedobj, elemobj);
fail:
    Py_XDECREF(fixedobj);
    Py_XDECREF(elemobj);
    return result;
}

/* merge_shard(old_view, old_shard, old_pending_removals, delta_view, delta_shard, additions,
               target_max_shard_ordinal, target_widths, field_map) -> (fixed, extras)
   additions/removals are int64 buffers of shard ordinals; field_map maps target fields to delta fields. */
static PyObject *
merge_shard(PyObject *module, PyObject *args)
{
    TypeView *ov, *dv;
    int osh, dsh;
    PyObject *remobj, *addobj, *widths, *fmapobj;
    long long tmax;
    if (!PyArg_ParseTuple(args, "O!iOO!iOLO!O!", &TypeViewType, &ov, &osh, &remobj, &TypeViewType, &dv, &dsh,
                          &addobj, &tmax, &PyTuple_Type, &widths, &PyTuple_Type, &fmapobj))
        return NULL;
    if (!ov->shards || !dv->shards || osh < 0 || osh >= ov->num_shards || dsh < 0 || dsh >= dv->num_shards ||
        ov->kind != dv->kind) {
        PyErr_SetString(PyExc_ValueError, "bad shard selection");
        return NULL;
    }
    if (tmax < -1 || tmax > INT32_MAX)
        return data_error("max ordinal out of range");
    int nw = kind_width_count(ov->kind, ov->nfields);
    if (PyTuple_GET_SIZE(widths) != nw) {
        PyErr_SetString(PyExc_ValueError, "wrong number of target widths");
        return NULL;
    }
    uint8_t tw[MAX_FIELDS + 4];
    uint64_t tbpr = 0;
    for (int k = 0; k < nw; k++) {
        unsigned w;
        if (parse_width(PyTuple_GET_ITEM(widths, k), DataError ? DataError : PyExc_ValueError, &w) < 0)
            return NULL;
        tw[k] = (uint8_t)w;
        if (k < fixed_field_count(ov->kind, ov->nfields))
            tbpr += (uint64_t)w;
    }
    if (ov->kind == KIND_OBJECT) {
        for (int f = 0; f < ov->nfields; f++)
            if ((ov->ftype[f] == F_STRING || ov->ftype[f] == F_BYTES) && tw[f] == 0)
                return data_error("variable-length field with zero width");
    } else if ((ov->kind == KIND_MAP && (tw[2] > 32 || tw[3] > 32)) || (ov->kind != KIND_MAP && tw[nw - 1] > 32) ||
               tw[0] > 40) {
        return data_error("collection width out of range");
    }
    if ((uint64_t)(tmax + 1) * tbpr > ((uint64_t)1 << 40))
        return data_error("shard too large");
    int fmap[MAX_FIELDS + 1];
    if (ov->kind == KIND_OBJECT) {
        if (PyTuple_GET_SIZE(fmapobj) != ov->nfields) {
            PyErr_SetString(PyExc_ValueError, "field map has the wrong length");
            return NULL;
        }
        for (int f = 0; f < ov->nfields; f++) {
            long x = PyLong_AsLong(PyTuple_GET_ITEM(fmapobj, f));
            if (x < -1 || x >= dv->nfields) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "field map entry out of range");
                return NULL;
            }
            fmap[f] = (int)x;
        }
    }
    Py_buffer rb, ab;
    OrdList rem, add;
    if (ordlist_from(remobj, &rb, &rem, "removed") < 0)
        return NULL;
    if (ordlist_from(addobj, &ab, &add, "added") < 0) {
        PyBuffer_Release(&rb);
        return NULL;
    }
    PyObject *r;
    if (ov->kind == KIND_OBJECT)
        r = merge_object(ov, &ov->shards[osh], &rem, dv, &dv->shards[dsh], &add, tmax, tw, fmap);
    else
        r = merge_collection(ov, &ov->shards[osh], &rem, &dv->shards[dsh], &add, tmax, tw);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&ab);
    return r;
}

/* ------------------------------------------------------------------------------------------------------- */
/* module-level helpers                                                                                     */

/* gap_decode(buffer) -> bytes: the VarInts of a gap-encoded ordinal list as ascending int64 (native) */
static PyObject *
gap_decode(PyObject *module, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = b.buf;
    Py_ssize_t n = b.len, count = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(p[i] & 0x80))
            count++;
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * 8);
    if (!out) {
        PyBuffer_Release(&b);
        return NULL;
    }
    int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
    int64_t prev = 0;
    Py_ssize_t k = 0, i = 0;
    while (i < n) {
        uint64_t v = 0;
        int len = 0;
        uint8_t c;
        do {
            if (i >= n || len == 5) {
                Py_DECREF(out);
                PyBuffer_Release(&b);
                return data_error("corrupt gap-encoded ordinal list");
            }
            c = p[i++];
            if (len == 0 && c == 0x80) {
                Py_DECREF(out);
                PyBuffer_Release(&b);
                return data_error("corrupt gap-encoded ordinal list");
            }
            v = (v << 7) | (c & 0x7f);
            len++;
        } while (c & 0x80);
        if (k > 0 && v == 0) {
            Py_DECREF(out);
            PyBuffer_Release(&b);
            return data_error("gap-encoded ordinal list repeats an ordinal");
        }
        prev += (int64_t)v;
        if (prev > INT32_MAX) {
            Py_DECREF(out);
            PyBuffer_Release(&b);
            return data_error("ordinal out of range in gap-encoded list");
        }
        o[k++] = prev;
    }
    PyBuffer_Release(&b);
    return out;
}

/* pack(n_records, widths tuple, columns tuple of uint64 buffers (one value per record)) -> bytes of BE words.
   Record r's field f is at bit r*sum(widths) + sum(widths[:f]).  Values must fit their widths. */
static PyObject *
pack(PyObject *module, PyObject *args)
{
    long long n;
    PyObject *widths, *cols;
    if (!PyArg_ParseTuple(args, "LO!O!", &n, &PyTuple_Type, &widths, &PyTuple_Type, &cols))
        return NULL;
    Py_ssize_t nf = PyTuple_GET_SIZE(widths);
    if (nf != PyTuple_GET_SIZE(cols) || n < 0 || nf > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "pack: bad arguments");
        return NULL;
    }
    uint8_t w[MAX_FIELDS + 1];
    uint64_t bpr = 0;
    for (Py_ssize_t f = 0; f < nf; f++) {
        unsigned x;
        if (parse_width(PyTuple_GET_ITEM(widths, f), PyExc_ValueError, &x) < 0)
            return NULL;
        w[f] = (uint8_t)x;
        bpr += (uint64_t)x;
    }
    uint64_t nwords = ((uint64_t)n * bpr + 63) / 64;
    uint64_t *T;
    PyObject *ba = new_zeroed_words(nwords, &T);
    if (!ba)
        return NULL;
    uint64_t off = 0;
    for (Py_ssize_t f = 0; f < nf; f++) {
        Py_buffer cb;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cols, f), &cb, PyBUF_SIMPLE) < 0) {
            Py_DECREF(ba);
            return NULL;
        }
        if (cb.len < n * 8) {
            PyBuffer_Release(&cb);
            Py_DECREF(ba);
            PyErr_SetString(PyExc_ValueError, "pack: column too short");
            return NULL;
        }
        const uint8_t *c = cb.buf;
        uint64_t m = mask_of(w[f]);
        for (long long r = 0; r < n; r++) {
            uint64_t val;
            memcpy(&val, c + r * 8, 8);
            if (val & ~m) {
                PyBuffer_Release(&cb);
                Py_DECREF(ba);
                PyErr_Format(PyExc_ValueError, "pack: value %llu does not fit %u bits", (unsigned long long)val,
                             (unsigned)w[f]);
                return NULL;
            }
            store_bits(T, (uint64_t)r * bpr + off, w[f], val);
        }
        off += w[f];
        PyBuffer_Release(&cb);
    }
    to_big_endian(T, nwords);
    PyObject *out = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(ba), (Py_ssize_t)(nwords * 8));
    Py_DECREF(ba);
    return out;
}

static PyObject *
py_get_bits(PyObject *module, PyObject *args)
{
    Py_buffer b;
    unsigned long long bit;
    int width;
    if (!PyArg_ParseTuple(args, "y*Ki", &b, &bit, &width))
        return NULL;
    if (width < 0 || width > 64 || bit > (uint64_t)b.len * 8 || bit + (uint64_t)width > (uint64_t)(b.len / 8) * 64) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_IndexError, "bit range outside the buffer");
        return NULL;
    }
    uint64_t v = get_bits(b.buf, bit, (unsigned)width);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *
py_hash_int(PyObject *module, PyObject *arg)
{
    long long x = PyLong_AsLongLong(arg);
    if (x == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(hash_int((int32_t)(uint32_t)(uint64_t)x));
}

static PyObject *
py_hash_long(PyObject *module, PyObject *arg)
{
    unsigned long long x = PyLong_AsUnsignedLongLongMask(arg);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(hash_long((int64_t)x));
}

static PyObject *
py_murmur3(PyObject *module, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    int32_t h = murmur3(b.buf, (uint64_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromLong(h);
}

static PyObject *
set_error_class(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "expected an exception class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(DataError, cls);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------------- */
/* KeyIndex: an open-addressing table of ordinals keyed by field values read from the records               */

/* A key is 1..8 components; each component is a path of hops: (view, field) ... ending at a non-reference
   field (or a REFERENCE field, compared as an ordinal).  The table stores ordinals only (-1 empty, -2 deleted);
   keys are compared by reading the record, as Java's HollowPrimaryKeyIndex does. */

#define KEY_COMPONENTS_MAX 8
#define PATH_HOPS_MAX 8

typedef struct {
    int nhops;
    TypeView *view[PATH_HOPS_MAX];
    int field[PATH_HOPS_MAX];
} KeyPath;

typedef struct {
    PyObject_HEAD
    int ncomp;
    KeyPath path[KEY_COMPONENTS_MAX];
    int32_t *table;
    uint64_t cap; /* hash mode: a power of two; direct mode: the key range */
    uint64_t used, deleted;
    int direct;   /* direct mode: one INT/LONG key field with dense values, table[key - base] = ordinal */
    int64_t base;
    PyObject *views; /* keeps the views alive */
} KeyIndex;

/* a key component value, either from a record or from a Python object */
typedef struct {
    int ftype; /* -1: null */
    uint64_t bits;
    const uint8_t *bytes;
    uint64_t len;
} KVal;

/* read component c of the record `ordinal`; returns -1 on error, 0 ok */
static int
key_read(KeyIndex *ki, int c, int64_t ordinal, KVal *out)
{
    KeyPath *p = &ki->path[c];
    int64_t o = ordinal;
    for (int h = 0; h < p->nhops; h++) {
        TypeView *v = p->view[h];
        int f = p->field[h];
        if (!v->shards || o < 0) {
            data_error("key path reaches a missing record");
            return -1;
        }
        Shard *s = &v->shards[o & (v->num_shards - 1)];
        int64_t so = o >> v->shard_shift;
        if (so > s->max_ordinal) {
            data_error("key path reaches ordinal %lld beyond its type's records", (long long)o);
            return -1;
        }
        int ft = v->ftype[f];
        if (h < p->nhops - 1) {
            uint64_t raw = rec_field(s, so, f);
            if (raw == mask_of(s->width[f])) {
                out->ftype = -1;
                return 0;
            }
            o = (int64_t)raw;
            continue;
        }
        out->ftype = ft;
        if (ft == F_STRING || ft == F_BYTES) {
            uint64_t st, e;
            int r = var_range(s, so, f, &st, &e);
            if (r < 0)
                return -1;
            if (r == 1) {
                out->ftype = -1;
                return 0;
            }
            out->bytes = s->pool[f] + st;
            out->len = e - st;
            return 0;
        }
        uint64_t raw = rec_field(s, so, f);
        if (ft == F_FLOAT) {
            if ((uint32_t)raw == NULL_FLOAT_BITS)
                out->ftype = -1;
        } else if (ft == F_DOUBLE) {
            if (raw == NULL_DOUBLE_BITS)
                out->ftype = -1;
        } else if (raw == mask_of(s->width[f])) {
            out->ftype = -1;
        }
        if (ft == F_INT) {
            uint32_t u = (uint32_t)raw;
            raw = (uint64_t)(int64_t)(int32_t)((u >> 1) ^ (0u - (u & 1)));
        } else if (ft == F_LONG) {
            raw = (raw >> 1) ^ (0ull - (raw & 1));
        }
        out->bits = raw;
        return 0;
    }
    return 0;
}

static inline uint32_t
kval_hash(const KVal *k)
{
    if (k->ftype < 0)
        return 0x9e3779b9u;
    if (k->ftype == F_STRING || k->ftype == F_BYTES)
        return (uint32_t)murmur3(k->bytes, k->len);
    return (uint32_t)hash_long((int64_t)k->bits);
}

static inline int
kval_eq(const KVal *a, const KVal *b)
{
    if (a->ftype < 0 || b->ftype < 0)
        return a->ftype < 0 && b->ftype < 0;
    if (a->ftype == F_STRING || a->ftype == F_BYTES)
        return a->len == b->len && (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
    return a->bits == b->bits;
}

static int
record_hash(KeyIndex *ki, int64_t ordinal, uint32_t *h)
{
    uint32_t acc = 0;
    for (int c = 0; c < ki->ncomp; c++) {
        KVal k;
        if (key_read(ki, c, ordinal, &k) < 0)
            return -1;
        acc = acc * 31u ^ kval_hash(&k);
    }
    *h = hash_int((int32_t)acc);
    return 0;
}

/* Index tables.  A lookup's first step is a random read of the table; on 4 KiB pages that read usually needs a
   page walk of its own before the cache miss.  A table of PAGES_MIN_BYTES or more is therefore a private mapping
   with MADV_HUGEPAGE over its whole 2 MiB pages (as pages_new does for merge outputs); smaller ones come from
   PyMem.  table_free and table_grow must be given the number of slots the table was made with. */

/* the length of the mapping that holds a table of `slots` entries, 0 when it comes from PyMem: rounded up to whole
   2 MiB pages when that adds less than an eighth (at most 2 MiB), so every lookup's slot is on a huge page */
static size_t
table_mapping(uint64_t slots)
{
    uint64_t nbytes = slots * sizeof(int32_t);
    if (nbytes < PAGES_MIN_BYTES)
        return 0;
    uint64_t whole = (nbytes + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
    if ((whole - nbytes) * 8 < nbytes)
        return (size_t)whole;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    return (size_t)((nbytes + page - 1) / page * page);
}

static void
hint_huge_pages(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: without it the pages are simply 4 KiB */
#else
    (void)p;
    (void)n;
#endif
}

/* a table of `slots` entries, every one -1 (empty) */
static int32_t *
table_new(uint64_t slots)
{
    size_t len = table_mapping(slots);
    int32_t *t;
    if (len) {
        /* map 2 MiB more and keep the 2 MiB-aligned part */
        size_t span = len + HUGE_PAGE_BYTES;
        uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            PyErr_NoMemory();
            return NULL;
        }
        uint8_t *data = (uint8_t *)(((uintptr_t)m + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
        if (data > m)
            munmap(m, (size_t)(data - m));
        if (m + span > data + len)
            munmap(data + len, (size_t)(m + span - (data + len)));
        hint_huge_pages(data, len);
        t = (int32_t *)data;
    } else if (!(t = PyMem_Malloc(slots ? slots * sizeof(int32_t) : 1))) {
        PyErr_NoMemory();
        return NULL;
    }
    memset(t, 0xff, (size_t)(slots * sizeof(int32_t)));
    return t;
}

static void
table_free(int32_t *t, uint64_t slots)
{
    size_t len = table_mapping(slots);
    if (!t)
        return;
    if (len)
        munmap(t, len);
    else
        PyMem_Free(t);
}

/* grow a table from `slots` to `more` entries, keeping its contents (the new entries are not set) */
static int32_t *
table_grow(int32_t *t, uint64_t slots, uint64_t more)
{
    size_t old_len = table_mapping(slots), new_len = table_mapping(more);
    if (old_len) {
        void *m = mremap(t, old_len, new_len, MREMAP_MAYMOVE);
        if (m == MAP_FAILED) {
            PyErr_NoMemory();
            return NULL;
        }
        hint_huge_pages(m, new_len);
        return m;
    }
    if (!new_len) {
        int32_t *g = PyMem_Realloc(t, more * sizeof(int32_t));
        if (!g)
            PyErr_NoMemory();
        return g;
    }
    int32_t *g = table_new(more);
    if (!g)
        return NULL;
    memcpy(g, t, (size_t)(slots * sizeof(int32_t)));
    PyMem_Free(t);
    return g;
}

static void
KeyIndex_dealloc(KeyIndex *ki)
{
    table_free(ki->table, ki->cap);
    Py_XDECREF(ki->views);
    Py_TYPE(ki)->tp_free((PyObject *)ki);
}

/* KeyIndex(paths): paths = tuple of components, each a tuple of (view, field) hops */
static int
KeyIndex_init(KeyIndex *ki, PyObject *args, PyObject *kwds)
{
    PyObject *paths;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &paths))
        return -1;
    Py_ssize_t nc = PyTuple_GET_SIZE(paths);
    if (nc < 1 || nc > KEY_COMPONENTS_MAX) {
        PyErr_SetString(PyExc_ValueError, "a key has 1 to 8 fields");
        return -1;
    }
    ki->ncomp = (int)nc;
    for (Py_ssize_t c = 0; c < nc; c++) {
        PyObject *hops = PyTuple_GET_ITEM(paths, c);
        if (!PyTuple_Check(hops) || PyTuple_GET_SIZE(hops) < 1 || PyTuple_GET_SIZE(hops) > PATH_HOPS_MAX) {
            PyErr_SetString(PyExc_ValueError, "a key field path has 1 to 8 hops");
            return -1;
        }
        ki->path[c].nhops = (int)PyTuple_GET_SIZE(hops);
        for (Py_ssize_t h = 0; h < PyTuple_GET_SIZE(hops); h++) {
            TypeView *v;
            int f;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(hops, h), "O!i", &TypeViewType, &v, &f))
                return -1;
            if (v->kind != KIND_OBJECT || f < 0 || f >= v->nfields) {
                PyErr_SetString(PyExc_ValueError, "key hop must name a field of an OBJECT view");
                return -1;
            }
            if (h < PyTuple_GET_SIZE(hops) - 1 && v->ftype[f] != F_REFERENCE) {
                PyErr_SetString(PyExc_ValueError, "inner key hops must be REFERENCE fields");
                return -1;
            }
            ki->path[c].view[h] = v;
            ki->path[c].field[h] = f;
        }
    }
    Py_INCREF(paths);
    Py_XSETREF(ki->views, paths);
    return 0;
}

static int
ki_alloc(KeyIndex *ki, uint64_t n)
{
    uint64_t cap = 16;
    while (cap < n * 2 + 16)
        cap <<= 1;
    int32_t *t = table_new(cap);
    if (!t)
        return -1;
    table_free(ki->table, ki->cap);
    ki->table = t;
    ki->cap = cap;
    ki->used = 0;
    ki->deleted = 0;
    return 0;
}

static int
ki_insert(KeyIndex *ki, int64_t ordinal)
{
    uint32_t h;
    if (record_hash(ki, ordinal, &h) < 0)
        return -1;
    uint64_t b = h & (ki->cap - 1);
    while (ki->table[b] >= 0)
        b = (b + 1) & (ki->cap - 1);
    if (ki->table[b] == -2)
        ki->deleted--;
    ki->table[b] = (int32_t)ordinal;
    ki->used++;
    return 0;
}

static int
ki_fill(KeyIndex *ki, const int64_t *ords, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ords[i] < 0 || ords[i] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "ordinal out of range");
            return -1;
        }
        if (ki_insert(ki, ords[i]) < 0)
            return -1;
    }
    return 0;
}

static inline int final_ftype(KeyIndex *ki, int c);

/* Direct mode, for the common case of dense integer ids: when the key is one INT/LONG field whose values span
   at most about twice the number of records, the table is indexed by (key - min key): no hashing, no probing
   and no key comparison, and it takes no more memory than the hash table would. */
static int
ki_single_int_key(KeyIndex *ki)
{
    if (ki->ncomp != 1)
        return 0;
    int ft = final_ftype(ki, 0);
    return ft == F_INT || ft == F_LONG;
}

/* returns 1 if built in direct mode, 0 if the keys do not suit it, -1 on error */
static int
ki_build_direct(KeyIndex *ki, const int64_t *ords, Py_ssize_t n)
{
    if (!ki_single_int_key(ki) || n == 0)
        return 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        KVal k;
        if (ords[i] < 0 || ords[i] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "ordinal out of range");
            return -1;
        }
        if (key_read(ki, 0, ords[i], &k) < 0)
            return -1;
        if (k.ftype < 0)
            return 0; /* a null key: use the hash table */
        int64_t v = (int64_t)k.bits;
        if (v < lo)
            lo = v;
        if (v > hi)
            hi = v;
    }
    uint64_t range = (uint64_t)hi - (uint64_t)lo + 1;
    if (range == 0 || range > (uint64_t)n * 2 + 64 || range > ((uint64_t)1 << 31))
        return 0;
    int32_t *t = table_new(range);
    if (!t)
        return -1;
    uint64_t used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        KVal k;
        if (key_read(ki, 0, ords[i], &k) < 0) {
            table_free(t, range);
            return -1;
        }
        uint64_t slot = k.bits - (uint64_t)lo;
        used += t[slot] < 0;
        t[slot] = (int32_t)ords[i];
    }
    table_free(ki->table, ki->cap);
    ki->table = t;
    ki->cap = range;
    ki->base = lo;
    ki->used = used;
    ki->deleted = 0;
    ki->direct = 1;
    return 1;
}

static int
ki_build(KeyIndex *ki, const int64_t *ords, Py_ssize_t n)
{
    int r = ki_build_direct(ki, ords, n);
    if (r != 0)
        return r < 0 ? -1 : 0;
    ki->direct = 0;
    if (ki_alloc(ki, (uint64_t)n) < 0 || ki_fill(ki, ords, n) < 0)
        return -1;
    return 0;
}

/* build(ordinals int64 buffer) */
static PyObject *
KeyIndex_build(KeyIndex *ki, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t n = b.len / 8;
    if (ki_build(ki, b.buf, n) < 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* Direct mode: make the table cover keys lo..hi, the new slots empty, as long as it stays dense for `live`
   records (the density bound of ki_build_direct).  A delta that adds ids past the current range (ids handed out
   in ascending order) then costs a realloc -- for a large table an mremap, no copy -- instead of a rebuild that
   reads every record's key.  Returns 1 when covered, 0 when the range would be too sparse, -1 on error. */
static int
ki_direct_cover(KeyIndex *ki, int64_t lo, int64_t hi, uint64_t live)
{
    int64_t old_hi = ki->base + (int64_t)ki->cap - 1;
    int64_t new_lo = lo < ki->base ? lo : ki->base;
    int64_t new_hi = hi > old_hi ? hi : old_hi;
    if (new_lo == ki->base && new_hi == old_hi)
        return 1;
    uint64_t range = (uint64_t)new_hi - (uint64_t)new_lo + 1;
    if (range == 0 || range > live * 2 + 64 || range > ((uint64_t)1 << 31))
        return 0;
    int32_t *t = table_grow(ki->table, ki->cap, range);
    if (!t)
        return -1;
    uint64_t shift = (uint64_t)ki->base - (uint64_t)new_lo; /* slots gained below the old base */
    if (shift)
        memmove(t + shift, t, ki->cap * sizeof(int32_t));
    memset(t, 0xff, shift * sizeof(int32_t));
    memset(t + shift + ki->cap, 0xff, (range - shift - ki->cap) * sizeof(int32_t));
    ki->table = t;
    ki->cap = range;
    ki->base = new_lo;
    return 1;
}

/* direct-mode update; returns 1 when done, 0 when a rebuild is needed, -1 on error */
static int
ki_update_direct(KeyIndex *ki, const int64_t *rem, Py_ssize_t nr, const int64_t *add, Py_ssize_t na)
{
    for (Py_ssize_t i = 0; i < nr; i++) {
        KVal k;
        if (key_read(ki, 0, rem[i], &k) < 0) {
            PyErr_Clear();
            return 0;
        }
        if (k.ftype < 0)
            continue;
        uint64_t slot = k.bits - (uint64_t)ki->base;
        if (slot < ki->cap && ki->table[slot] == rem[i]) {
            ki->table[slot] = -1;
            ki->used--;
        }
    }
    if (na == 0)
        return ki->used * 4 + 64 >= ki->cap;
    /* the added keys and their range first: the table grows once, before any of them goes in */
    int64_t *keys = PyMem_Malloc((size_t)na * sizeof(int64_t));
    if (!keys) {
        PyErr_NoMemory();
        return -1;
    }
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    int r = 1;
    for (Py_ssize_t i = 0; i < na && r == 1; i++) {
        KVal k;
        if (add[i] < 0 || add[i] > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "ordinal out of range");
            r = -1;
        } else if (key_read(ki, 0, add[i], &k) < 0) {
            r = -1;
        } else if (k.ftype < 0) {
            r = 0; /* a null key: the hash table */
        } else {
            keys[i] = (int64_t)k.bits;
            lo = keys[i] < lo ? keys[i] : lo;
            hi = keys[i] > hi ? keys[i] : hi;
        }
    }
    if (r == 1)
        r = ki_direct_cover(ki, lo, hi, ki->used + (uint64_t)na);
    if (r == 1) {
        for (Py_ssize_t i = 0; i < na; i++) {
            uint64_t slot = (uint64_t)keys[i] - (uint64_t)ki->base;
            ki->used += ki->table[slot] < 0;
            ki->table[slot] = (int32_t)add[i];
        }
        r = ki->used * 4 + 64 >= ki->cap; /* too sparse now: rebuild */
    }
    PyMem_Free(keys);
    return r;
}

/* The ordinals of a populated mask (one byte per ordinal, nonzero = populated) as an int64 array the caller
   frees with PyMem_Free; only a rebuild needs them, so an update does not make them on every delta. */
static int64_t *
mask_ordinals(const Py_buffer *mask, Py_ssize_t *n)
{
    const uint8_t *m = mask->buf;
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < mask->len; i++)
        count += m[i] != 0;
    int64_t *ords = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(int64_t));
    if (!ords) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < mask->len; i++)
        if (m[i])
            ords[k++] = i;
    *n = count;
    return ords;
}

static int
ki_rebuild_from_mask(KeyIndex *ki, const Py_buffer *mask)
{
    Py_ssize_t n;
    int64_t *ords = mask_ordinals(mask, &n);
    if (!ords)
        return -1;
    int r = ki_build(ki, ords, n);
    PyMem_Free(ords);
    return r;
}

/* update(removed int64 buffer, added int64 buffer, populated mask): remove then add; rebuilds from the
   populated mask (one byte per ordinal of the new state) when the table would get too full of deleted slots.
   Removed ordinals are located by ordinal identity (their records are still readable: they are ghosts of the
   previous version). */
static PyObject *
KeyIndex_update(KeyIndex *ki, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "update(removed, added, populated)");
        return NULL;
    }
    Py_buffer rb, ab, pb;
    if (PyObject_GetBuffer(args[0], &rb, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &ab, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&rb);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &pb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&rb);
        PyBuffer_Release(&ab);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t nr = rb.len / 8, na = ab.len / 8;
    const int64_t *rem = rb.buf, *add = ab.buf;
    uint64_t live_after = ki->used - (uint64_t)nr + (uint64_t)na;
    if (ki->direct && ki->table) {
        int r = ki_update_direct(ki, rem, nr, add, na);
        if (r < 0)
            goto done;
        if (r == 0 && ki_rebuild_from_mask(ki, &pb) < 0)
            goto done;
    } else if (!ki->table || (live_after + ki->deleted + (uint64_t)nr) * 2 > ki->cap) {
        if (ki_rebuild_from_mask(ki, &pb) < 0)
            goto done;
    } else {
        for (Py_ssize_t i = 0; i < nr; i++) {
            uint64_t b = 0;
            int found = 0;
            uint32_t h;
            /* the removed record is still readable, so its key (and slot) can be found by hashing it */
            if (record_hash(ki, rem[i], &h) == 0) {
                b = h & (ki->cap - 1);
                while (ki->table[b] != -1) {
                    if (ki->table[b] == rem[i]) {
                        found = 1;
                        break;
                    }
                    b = (b + 1) & (ki->cap - 1);
                }
            } else {
                PyErr_Clear();
            }
            if (!found) {
                /* fall back to a scan (the record was unreadable) */
                for (b = 0; b < ki->cap; b++)
                    if (ki->table[b] == rem[i]) {
                        found = 1;
                        break;
                    }
            }
            if (found) {
                ki->table[b] = -2;
                ki->used--;
                ki->deleted++;
            }
        }
        if (ki_fill(ki, add, na) < 0)
            goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&pb);
    return result;
}

/* convert a Python key component to a KVal for the component's final field type; 1 ok, 0 type mismatch */
typedef struct {
    KVal k;
    PyObject *owner; /* bytes object backing k.bytes */
    uint8_t small[64];
} PyKey;

static int
encode_hollow_string(PyObject *s, PyKey *pk)
{
    Py_ssize_t n;
    if (PyUnicode_IS_ASCII(s)) {
        const char *p = PyUnicode_AsUTF8AndSize(s, &n);
        if (!p)
            return -1;
        pk->k.bytes = (const uint8_t *)p;
        pk->k.len = (uint64_t)n;
        return 1;
    }
    PyObject *u16 = PyUnicode_AsEncodedString(s, "utf-16-le", "surrogatepass");
    if (!u16)
        return -1;
    Py_ssize_t nu = PyBytes_GET_SIZE(u16) / 2;
    const uint8_t *up = (const uint8_t *)PyBytes_AS_STRING(u16);
    PyObject *enc = PyBytes_FromStringAndSize(NULL, nu * 3);
    if (!enc) {
        Py_DECREF(u16);
        return -1;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(enc);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < nu; i++) {
        uint32_t c = (uint32_t)up[2 * i] | ((uint32_t)up[2 * i + 1] << 8);
        if (c >= (1u << 14))
            o[k++] = (uint8_t)(0x80 | (c >> 14));
        if (c >= (1u << 7))
            o[k++] = (uint8_t)(0x80 | ((c >> 7) & 0x7f));
        o[k++] = (uint8_t)(c & 0x7f);
    }
    Py_DECREF(u16);
    pk->owner = enc;
    pk->k.bytes = o;
    pk->k.len = (uint64_t)k;
    return 1;
}

static int
py_to_kval(PyObject *x, int ftype, PyKey *pk)
{
    pk->owner = NULL;
    pk->k.ftype = ftype;
    if (x == Py_None) {
        pk->k.ftype = -1;
        return 1;
    }
    switch (ftype) {
    case F_REFERENCE:
    case F_INT:
    case F_LONG: {
        if (!PyLong_Check(x) || PyBool_Check(x))
            return 0;
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        if (ftype == F_INT && (v < INT32_MIN || v > INT32_MAX))
            return 0;
        pk->k.bits = (uint64_t)v;
        return 1;
    }
    case F_BOOLEAN:
        if (!PyBool_Check(x))
            return 0;
        pk->k.bits = x == Py_True ? 1 : 0;
        return 1;
    case F_FLOAT: {
        if (!PyFloat_Check(x) && !PyLong_Check(x))
            return 0;
        float f = (float)PyFloat_AsDouble(x);
        uint32_t bits;
        memcpy(&bits, &f, 4);
        pk->k.bits = bits;
        return 1;
    }
    case F_DOUBLE: {
        if (!PyFloat_Check(x) && !PyLong_Check(x))
            return 0;
        double d = PyFloat_AsDouble(x);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        pk->k.bits = bits;
        return 1;
    }
    case F_STRING:
        if (!PyUnicode_Check(x))
            return 0;
        return encode_hollow_string(x, pk);
    case F_BYTES: {
        if (!PyBytes_Check(x))
            return 0;
        pk->k.bytes = (const uint8_t *)PyBytes_AS_STRING(x);
        pk->k.len = (uint64_t)PyBytes_GET_SIZE(x);
        return 1;
    }
    }
    return 0;
}

static inline int
final_ftype(KeyIndex *ki, int c)
{
    KeyPath *p = &ki->path[c];
    return p->view[p->nhops - 1]->ftype[p->field[p->nhops - 1]];
}

/* find the ordinal for a key (a single value, or a tuple for several components); -1 when absent */
static int64_t
ki_find(KeyIndex *ki, PyObject *key)
{
    if (!ki->table)
        return -1;
    if (ki->direct) {
        PyObject *k = key;
        if (PyTuple_Check(key)) {
            if (PyTuple_GET_SIZE(key) != 1)
                return -1;
            k = PyTuple_GET_ITEM(key, 0);
        }
        if (!PyLong_Check(k) || PyBool_Check(k))
            return -1;
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (overflow) {
            PyErr_Clear();
            return -1;
        }
        if (v == -1 && PyErr_Occurred())
            return -2;
        uint64_t slot = (uint64_t)v - (uint64_t)ki->base;
        return slot < ki->cap ? ki->table[slot] : -1;
    }
    PyKey pk[KEY_COMPONENTS_MAX];
    int nc = ki->ncomp;
    int64_t result = -1;
    int ncreated = 0;
    if (nc == 1 && !PyTuple_Check(key)) {
        int r = py_to_kval(key, final_ftype(ki, 0), &pk[0]);
        if (r <= 0)
            return r < 0 ? -2 : -1;
        ncreated = 1;
    } else {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != nc)
            return -1;
        for (int c = 0; c < nc; c++) {
            int r = py_to_kval(PyTuple_GET_ITEM(key, c), final_ftype(ki, c), &pk[c]);
            ncreated = c + 1;
            if (r <= 0) {
                result = r < 0 ? -2 : -1;
                goto out;
            }
        }
    }
    uint32_t acc = 0;
    for (int c = 0; c < nc; c++)
        acc = acc * 31u ^ kval_hash(&pk[c].k);
    uint64_t b = (uint32_t)hash_int((int32_t)acc) & (ki->cap - 1);
    for (;;) {
        int32_t o = ki->table[b];
        if (o == -1)
            break;
        if (o >= 0) {
            int eq = 1;
            for (int c = 0; c < nc && eq; c++) {
                KVal rv;
                if (key_read(ki, c, o, &rv) < 0) {
                    result = -2;
                    goto out;
                }
                eq = kval_eq(&rv, &pk[c].k);
            }
            if (eq) {
                result = o;
                break;
            }
        }
        b = (b + 1) & (ki->cap - 1);
    }
out:
    for (int c = 0; c < ncreated; c++)
        Py_XDECREF(pk[c].owner);
    return result;
}

static PyObject *
KeyIndex_find(KeyIndex *ki, PyObject *key)
{
    int64_t o = ki_find(ki, key);
    if (o == -2)
        return NULL;
    return PyLong_FromLongLong(o);
}

static PyObject *
KeyIndex_len(KeyIndex *ki, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(ki->used);
}

static PyObject *
KeyIndex_nbytes(KeyIndex *ki, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(ki->cap * sizeof(int32_t));
}

/* --- compiled readers: key -> one field, key -> the whole record --------------------------------------- */

/*
 * Why a lookup costs what it costs, and what the readers do about it
 * -------------------------------------------------------------------
 * A read by key through a direct-mode index is a chain of dependent memory accesses: the table slot (which holds
 * the ordinal), the record's bits, then for a STRING or BYTES field its bytes in the field's pool.  On data larger
 * than the caches each step is a cache miss (and on 4 KiB pages usually a TLB miss too), and no step can start
 * before the previous one ends, so the length of the chain is the cost; the CPU work is small beside it.
 *
 * Predicted ordinal.  Records added in key order get ordinals in key order: ordinal = slot + d for one constant
 * d over most of the table.  Each reader remembers the last d it saw and, while its predictions keep coming true,
 * starts loading the record of the predicted ordinal (slot + d), and for a STRING/BYTES field reader that
 * record's pool bytes, before it reads the table slot.  The pool bytes' place is interpolated from the pool
 * offsets of every 64th record (prefetch_pool), not read from the record, so all three loads (slot, record,
 * pool) are on their way at once and the lookup costs about one miss instead of three.  The prediction is only a
 * prefetch (a plain load whose value is dropped, see prefetch_line): the ordinal used is always the one read from
 * the table, so a wrong guess costs one useless fetch.  Large tables sit on 2 MiB pages (table_new), so the
 * slot's load needs no page walk first.  A saturating counter of recent outcomes (PREDICT_MAX) turns the
 * prefetch off when predictions keep failing (ordinals unrelated to keys).  A hash-mode index (keys that are not
 * dense integers) has no slot order to predict from: its readers look up as find() does.
 *
 * Whole records (RecordReader).  A record's dependent reads fan out: each string's pool bytes and each followed
 * reference's record depend only on the record itself.  The reader first starts fetching every one of them,
 * then builds the values, so those misses overlap too.  Expanded references (record_reader(expand=...)) are
 * followed in C: a reference to a "boxed" OBJECT type (one field, like Java's Integer or String) becomes that
 * field's value; a reference to a LIST or SET of boxed records becomes a Python list of their values (SET in
 * bucket order).  No intermediate Python object is made: ordinals stay C integers from the table to the value.
 */

#define PREDICT_MAX 8   /* saturating counter of the predictor: prefetch while it is at least PREDICT_ON */
#define PREDICT_ON 4

typedef struct {
    int64_t delta; /* last seen ordinal - slot */
    int score;     /* 0..PREDICT_MAX */
} Predictor;

/* Start fetching the cache line holding p.  A plain load whose value is dropped, not a prefetch instruction:
   on the 2-vCPU AMD EPYC (KVM) the benchmarks run on, __builtin_prefetch did not overlap anything (py-spy still
   showed the record read stalling as long as the table read), the load does; the out-of-order core keeps going
   while it is outstanding. */
static inline void
prefetch_line(const void *p)
{
    (void)*(const volatile uint8_t *)p;
}

/* prefetch the bits of record `ordinal` (and the end of the previous one, where a pool range starts) */
static inline void
prefetch_record(const TypeView *v, int64_t ordinal)
{
    if (!v->shards || ordinal < 0)
        return;
    const Shard *s = &v->shards[ordinal & (v->num_shards - 1)];
    int64_t so = ordinal >> v->shard_shift;
    if (so > s->max_ordinal || !s->fixed || s->bits_per_record == 0)
        return;
    uint64_t first = (so == 0 ? 0 : (uint64_t)(so - 1) * s->bits_per_record) >> 3;
    uint64_t last = (((uint64_t)so + 1) * s->bits_per_record - 1) >> 3;
    prefetch_line(s->fixed + first);
    if ((last >> 6) != (first >> 6))
        prefetch_line(s->fixed + last);
}

/* direct mode: the table slot of a key; 1 = slot set, 0 = no such key (or not a direct-mode key), -1 error */
static inline int
direct_slot(KeyIndex *ki, PyObject *key, uint64_t *slot)
{
    if (!PyLong_Check(key) || PyBool_Check(key))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (overflow)
        return 0;
    if (v == -1 && PyErr_Occurred())
        return -1;
    *slot = (uint64_t)v - (uint64_t)ki->base;
    return *slot < ki->cap;
}

/* Where a record's STRING/BYTES bytes start, without reading the record.  The pool offsets of every
   2^POOL_AT_SHIFT-th record are kept (8 bytes per 64 records: 128 KiB per field on a million records, which stays
   in the L2 cache while a reader runs); between two of them the start is interpolated.  Values of one length
   (ids, codes, fixed-format names) make the guess exact, and values of varying length put it within a few lines.
   Only a prefetch uses the guess, so a wrong one costs a useless fetch and nothing else. */
#define POOL_AT_SHIFT 6

static uint64_t *
pool_at_build(Shard *s, int nfields, int f)
{
    if (s->max_ordinal < 0)
        return NULL;
    if (!s->pool_at) {
        s->pool_at = PyMem_Calloc((size_t)nfields, sizeof(uint64_t *));
        if (!s->pool_at)
            return NULL; /* no prefetch, no error: the read itself does not need it */
        s->npool_at = nfields;
    }
    uint64_t n = ((uint64_t)s->max_ordinal >> POOL_AT_SHIFT) + 2;
    uint64_t *at = PyMem_Malloc(n * sizeof(uint64_t));
    if (!at)
        return NULL;
    uint64_t mask = ((uint64_t)1 << (s->width[f] - 1)) - 1, end = (uint64_t)s->max_ordinal + 1;
    at[0] = 0;
    for (uint64_t k = 1; k < n; k++) {
        uint64_t so = k << POOL_AT_SHIFT; /* a record starts where the one before it ends */
        at[k] = rec_field(s, (int64_t)(so < end ? so : end) - 1, f) & mask;
    }
    s->pool_at[f] = at;
    return at;
}

/* start fetching the pool bytes of STRING/BYTES field f of record `ordinal` (the record is not needed: the start
   is interpolated from pool_at, so this runs while the table slot and the record are both on their way) */
static inline void
prefetch_pool(const TypeView *v, int64_t ordinal, int f)
{
    if (f < 0 || (v->ftype[f] != F_STRING && v->ftype[f] != F_BYTES) || !v->shards || ordinal < 0)
        return;
    Shard *s = &v->shards[ordinal & (v->num_shards - 1)];
    int64_t so = ordinal >> v->shard_shift;
    if (so > s->max_ordinal || !s->pool[f] || s->width[f] == 0)
        return;
    const uint64_t *at = f < s->npool_at && s->pool_at[f] ? s->pool_at[f] : pool_at_build(s, v->nfields, f);
    if (!at)
        return;
    uint64_t k = (uint64_t)so >> POOL_AT_SHIFT, lo = at[k], hi = at[k + 1];
    uint64_t st = hi > lo ? lo + (((hi - lo) * ((uint64_t)so & ((1u << POOL_AT_SHIFT) - 1))) >> POOL_AT_SHIFT) : lo;
    if (st < s->pool_len[f])
        prefetch_line(s->pool[f] + st);
}

/* ki_find with the predicted-ordinal prefetch of `view` (and of field f's pool bytes, f >= 0) in direct mode;
   -1 absent, -2 error */
static inline int64_t
find_predicted(KeyIndex *ki, TypeView *view, Predictor *p, PyObject *key, int f)
{
    if (!ki->table || !ki->direct || PyTuple_Check(key))
        return ki_find(ki, key);
    uint64_t slot;
    int r = direct_slot(ki, key, &slot);
    if (r <= 0)
        return r < 0 ? -2 : -1;
    if (p->score >= PREDICT_ON) {
        prefetch_record(view, (int64_t)slot + p->delta);
        prefetch_pool(view, (int64_t)slot + p->delta, f);
    }
    int64_t o = ki->table[slot];
    if (o >= 0) {
        if (p->score < 0) {
            /* prediction off for this reader */
        } else if (o == (int64_t)slot + p->delta) {
            if (p->score < PREDICT_MAX)
                p->score++;
        } else {
            p->delta = o - (int64_t)slot;
            p->score = p->score > 1 ? p->score - 2 : 0;
        }
    }
    return o;
}

/* a STRING value: ASCII (the usual case) is copied straight into a new str; anything else is decoded */
static inline PyObject *
string_value(const uint8_t *p, uint64_t n)
{
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            return decode_string(p, n);
    }
    for (; i < n; i++)
        if (p[i] & 0x80)
            return decode_string(p, n);
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s && n)
        memcpy(PyUnicode_1BYTE_DATA(s), p, n);
    return s;
}

/* object_value with the ASCII fast path for STRING fields */
static inline PyObject *
read_value(TypeView *v, Shard *s, int64_t so, int f)
{
    if (v->ftype[f] != F_STRING)
        return object_value(v, s, so, f);
    uint64_t start, end;
    int r = var_range(s, so, f, &start, &end);
    if (r < 0)
        return NULL;
    if (r == 1)
        Py_RETURN_NONE;
    return string_value(s->pool[f] + start, end - start);
}

/* FieldReader: reader(key) -> value of one field of the record with that key (None when absent) */
typedef struct {
    PyObject_HEAD
    KeyIndex *index;
    TypeView *view;
    int field;
    Predictor predict;
    vectorcallfunc vectorcall;
} FieldReader;

static PyObject *
FieldReader_vcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FieldReader *fr = (FieldReader *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "reader(key)");
        return NULL;
    }
    int64_t o = find_predicted(fr->index, fr->view, &fr->predict, args[0], fr->field);
    if (o == -2)
        return NULL;
    if (o < 0)
        Py_RETURN_NONE;
    int64_t so;
    Shard *s = locate(fr->view, o, &so);
    if (!s)
        return NULL;
    return read_value(fr->view, s, so, fr->field);
}

static void
FieldReader_dealloc(FieldReader *fr)
{
    Py_XDECREF(fr->index);
    Py_XDECREF(fr->view);
    Py_TYPE(fr)->tp_free((PyObject *)fr);
}

static PyTypeObject FieldReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._native.FieldReader",
    .tp_basicsize = sizeof(FieldReader),
    .tp_dealloc = (destructor)FieldReader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(FieldReader, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_doc = "reader(key) -> the value of one field of the record with that primary key, or None",
};

static PyObject *
KeyIndex_reader(KeyIndex *ki, PyObject *args)
{
    TypeView *v;
    int f, predict = 1;
    if (!PyArg_ParseTuple(args, "O!i|p", &TypeViewType, &v, &f, &predict))
        return NULL;
    if (v->kind != KIND_OBJECT || f < 0 || f >= v->nfields) {
        PyErr_SetString(PyExc_ValueError, "reader needs a field of an OBJECT view");
        return NULL;
    }
    FieldReader *fr = PyObject_New(FieldReader, &FieldReaderType);
    if (!fr)
        return NULL;
    Py_INCREF(ki);
    Py_INCREF(v);
    fr->index = ki;
    fr->view = v;
    fr->field = f;
    fr->predict.delta = 0;
    /* start by trusting ordinal = key - base, the usual direct-mode layout; predict=False (for benchmarks that
       show what the prediction is worth) keeps the counter out of reach */
    fr->predict.score = predict ? PREDICT_ON : INT_MIN;
    fr->vectorcall = FieldReader_vcall;
    return (PyObject *)fr;
}

/* RecordReader: reader(key) -> tuple of every field of the record with that key (None when absent) */
typedef struct {
    TypeView *coll; /* LIST or SET view of the followed reference; NULL: the reference is to a boxed record */
    TypeView *elem; /* the boxed OBJECT view; NULL: the field is not expanded */
    int elem_field;
} Expand;

typedef struct {
    PyObject_HEAD
    KeyIndex *index;
    TypeView *view;
    Expand *expand; /* one per field of view */
    PyObject *keep; /* the expansion spec: keeps its views alive */
    Predictor predict;
    vectorcallfunc vectorcall;
} RecordReader;

/* the value of a boxed record (field elem_field of record `ordinal` of elem) */
static inline PyObject *
boxed_value(TypeView *elem, int elem_field, uint64_t ordinal)
{
    int64_t so;
    Shard *s = locate(elem, (long long)ordinal, &so);
    if (!s)
        return NULL;
    return read_value(elem, s, so, elem_field);
}

/* an expanded REFERENCE field: the boxed value, or the list of the collection's boxed values */
static PyObject *
expanded_value(const Expand *e, Shard *s, int64_t so, int f)
{
    uint64_t raw = rec_field(s, so, f);
    if (raw == mask_of(s->width[f]))
        Py_RETURN_NONE;
    if (!e->coll)
        return boxed_value(e->elem, e->elem_field, raw);
    int64_t cso;
    Shard *cs = locate(e->coll, (long long)raw, &cso);
    if (!cs)
        return NULL;
    uint64_t st, en;
    if (coll_range(cs, cso, &st, &en) < 0)
        return NULL;
    unsigned w = cs->unit_bits;
    if (e->coll->kind == KIND_LIST) {
        PyObject *out = PyList_New((Py_ssize_t)(en - st));
        if (!out)
            return NULL;
        for (uint64_t i = st; i < en; i++) {
            PyObject *x = boxed_value(e->elem, e->elem_field, unit_at(cs, i, 0, w));
            if (!x) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, (Py_ssize_t)(i - st), x);
        }
        return out;
    }
    PyObject *out = PyList_New(0); /* SET: elements in bucket order, empty buckets skipped */
    if (!out)
        return NULL;
    uint64_t empty = mask_of(w);
    for (uint64_t i = st; i < en; i++) {
        uint64_t a = unit_at(cs, i, 0, w);
        if (a == empty)
            continue;
        PyObject *x = boxed_value(e->elem, e->elem_field, a);
        if (!x || PyList_Append(out, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(x);
    }
    return out;
}

/* before building a record's values: prefetch every pool range and followed record they will read */
static inline void
prefetch_dependents(const RecordReader *rr, const Shard *s, int64_t so)
{
    const TypeView *v = rr->view;
    for (int f = 0; f < v->nfields; f++) {
        int ft = v->ftype[f];
        if (ft == F_STRING || ft == F_BYTES) {
            unsigned w = s->width[f];
            if (!w || !s->pool[f])
                continue;
            uint64_t nullbit = (uint64_t)1 << (w - 1);
            uint64_t st = so == 0 ? 0 : (rec_field(s, so - 1, f) & (nullbit - 1));
            if (st < s->pool_len[f])
                prefetch_line(s->pool[f] + st);
        } else if (rr->expand[f].elem) {
            uint64_t raw = rec_field(s, so, f);
            if (raw != mask_of(s->width[f]))
                prefetch_record(rr->expand[f].coll ? rr->expand[f].coll : rr->expand[f].elem, (int64_t)raw);
        }
    }
}

static PyObject *
RecordReader_vcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    RecordReader *rr = (RecordReader *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "reader(key)");
        return NULL;
    }
    int64_t o = find_predicted(rr->index, rr->view, &rr->predict, args[0], -1);
    if (o == -2)
        return NULL;
    if (o < 0)
        Py_RETURN_NONE;
    TypeView *v = rr->view;
    int64_t so;
    Shard *s = locate(v, o, &so);
    if (!s)
        return NULL;
    prefetch_dependents(rr, s, so);
    PyObject *t = PyTuple_New(v->nfields);
    if (!t)
        return NULL;
    for (int f = 0; f < v->nfields; f++) {
        PyObject *x = rr->expand[f].elem ? expanded_value(&rr->expand[f], s, so, f) : read_value(v, s, so, f);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, f, x);
    }
    return t;
}

static void
RecordReader_dealloc(RecordReader *rr)
{
    Py_XDECREF(rr->index);
    Py_XDECREF(rr->view);
    Py_XDECREF(rr->keep);
    PyMem_Free(rr->expand);
    Py_TYPE(rr)->tp_free((PyObject *)rr);
}

static PyTypeObject RecordReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._native.RecordReader",
    .tp_basicsize = sizeof(RecordReader),
    .tp_dealloc = (destructor)RecordReader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(RecordReader, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_doc = "reader(key) -> tuple of every field of the record with that primary key, or None",
};

/* one entry of the expansion spec: None, or (collection view or None, boxed view, field of the boxed view) */
static int
parse_expand(TypeView *v, int f, PyObject *spec, Expand *e)
{
    e->coll = NULL;
    e->elem = NULL;
    e->elem_field = 0;
    if (spec == Py_None)
        return 0;
    PyObject *coll;
    TypeView *elem;
    int ef;
    if (!PyArg_ParseTuple(spec, "OO!i", &coll, &TypeViewType, &elem, &ef))
        return -1;
    if (v->ftype[f] != F_REFERENCE) {
        PyErr_SetString(PyExc_ValueError, "only REFERENCE fields can be expanded");
        return -1;
    }
    if (coll != Py_None) {
        if (!PyObject_TypeCheck(coll, &TypeViewType) ||
            (((TypeView *)coll)->kind != KIND_LIST && ((TypeView *)coll)->kind != KIND_SET)) {
            PyErr_SetString(PyExc_ValueError, "an expanded collection must be a LIST or SET view");
            return -1;
        }
        e->coll = (TypeView *)coll;
    }
    if (elem->kind != KIND_OBJECT || ef < 0 || ef >= elem->nfields || elem->ftype[ef] == F_REFERENCE) {
        PyErr_SetString(PyExc_ValueError, "an expanded record must be an OBJECT view read at a non-reference field");
        return -1;
    }
    e->elem = elem;
    e->elem_field = ef;
    return 0;
}

/* record_reader(view, expand): expand is a tuple with one entry per field (see parse_expand) */
static PyObject *
KeyIndex_record_reader(KeyIndex *ki, PyObject *args)
{
    TypeView *v;
    PyObject *spec;
    int predict = 1;
    if (!PyArg_ParseTuple(args, "O!O!|p", &TypeViewType, &v, &PyTuple_Type, &spec, &predict))
        return NULL;
    if (v->kind != KIND_OBJECT || PyTuple_GET_SIZE(spec) != v->nfields) {
        PyErr_SetString(PyExc_ValueError, "record_reader needs an OBJECT view and one expansion per field");
        return NULL;
    }
    Expand *expand = PyMem_Calloc((size_t)v->nfields + 1, sizeof(Expand));
    if (!expand)
        return PyErr_NoMemory();
    for (int f = 0; f < v->nfields; f++)
        if (parse_expand(v, f, PyTuple_GET_ITEM(spec, f), &expand[f]) < 0) {
            PyMem_Free(expand);
            return NULL;
        }
    RecordReader *rr = PyObject_New(RecordReader, &RecordReaderType);
    if (!rr) {
        PyMem_Free(expand);
        return NULL;
    }
    Py_INCREF(ki);
    Py_INCREF(v);
    Py_INCREF(spec);
    rr->index = ki;
    rr->view = v;
    rr->keep = spec;
    rr->expand = expand;
    rr->predict.delta = 0;
    rr->predict.score = predict ? PREDICT_ON : INT_MIN;
    rr->vectorcall = RecordReader_vcall;
    return (PyObject *)rr;
}

static PyMethodDef KeyIndex_methods[] = {
    {"build", (PyCFunction)KeyIndex_build, METH_O, "build(ordinals): index these records"},
    {"update", (PyCFunction)(void (*)(void))KeyIndex_update, METH_FASTCALL, "update(removed, added, populated)"},
    {"find", (PyCFunction)KeyIndex_find, METH_O, "find(key) -> ordinal or -1"},
    {"count", (PyCFunction)KeyIndex_len, METH_NOARGS, "number of indexed records"},
    {"nbytes", (PyCFunction)KeyIndex_nbytes, METH_NOARGS, "memory used by the table"},
    {"reader", (PyCFunction)KeyIndex_reader, METH_VARARGS, "reader(view, field) -> FieldReader"},
    {"record_reader", (PyCFunction)KeyIndex_record_reader, METH_VARARGS, "record_reader(view, expand) -> RecordReader"},
    {NULL},
};

static PyTypeObject KeyIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._native.KeyIndex",
    .tp_basicsize = sizeof(KeyIndex),
    .tp_dealloc = (destructor)KeyIndex_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_init = (initproc)KeyIndex_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = KeyIndex_methods,
    .tp_doc = "KeyIndex(paths): hash table of ordinals keyed by record field values",
};

/* ------------------------------------------------------------------------------------------------------- */

/* swap(other): exchange the shard data of two views of the same kind (cannot fail half way) */
static PyObject *
TypeView_swap(TypeView *v, PyObject *arg)
{
    if (!PyObject_TypeCheck(arg, &TypeViewType)) {
        PyErr_SetString(PyExc_TypeError, "swap() needs a TypeView");
        return NULL;
    }
    TypeView *o = (TypeView *)arg;
    if (o->kind != v->kind || o->nfields != v->nfields || memcmp(o->ftype, v->ftype, v->nfields) != 0) {
        PyErr_SetString(PyExc_ValueError, "swap() needs a view of the same layout");
        return NULL;
    }
    Shard *s = v->shards;
    int n = v->num_shards, sh = v->shard_shift;
    v->shards = o->shards;
    v->num_shards = o->num_shards;
    v->shard_shift = o->shard_shift;
    o->shards = s;
    o->num_shards = n;
    o->shard_shift = sh;
    Py_RETURN_NONE;
}

static PyObject *
TypeView_num_shards(TypeView *v, PyObject *unused)
{
    return PyLong_FromLong(v->num_shards);
}

static PyMethodDef TypeView_methods[] = {
    {"set_shards", (PyCFunction)TypeView_set_shards, METH_O, "set_shards(specs): replace the shard data"},
    {"get", (PyCFunction)(void (*)(void))TypeView_get, METH_FASTCALL, "get(ordinal, field) -> value"},
    {"record", (PyCFunction)TypeView_record, METH_O, "record(ordinal) -> tuple of all field values"},
    {"raw", (PyCFunction)(void (*)(void))TypeView_raw, METH_FASTCALL, "raw(ordinal, field) -> stored bits"},
    {"var_bytes", (PyCFunction)(void (*)(void))TypeView_var_bytes, METH_FASTCALL,
     "var_bytes(ordinal, field) -> stored bytes of a STRING/BYTES field"},
    {"size", (PyCFunction)TypeView_size, METH_O, "size(ordinal) -> number of elements"},
    {"elements", (PyCFunction)TypeView_elements, METH_O, "elements(ordinal) -> LIST/SET element ordinals"},
    {"entries", (PyCFunction)TypeView_entries, METH_O, "entries(ordinal) -> MAP (key, value) ordinals"},
    {"buckets", (PyCFunction)TypeView_buckets, METH_O, "buckets(ordinal) -> SET (bucket, element)"},
    {"map_buckets", (PyCFunction)TypeView_map_buckets, METH_O, "map_buckets(ordinal) -> MAP (bucket, key, value)"},
    {"probe", (PyCFunction)(void (*)(void))TypeView_probe, METH_FASTCALL, "probe(ordinal, hash) -> SET candidates"},
    {"map_probe", (PyCFunction)(void (*)(void))TypeView_map_probe, METH_FASTCALL,
     "map_probe(ordinal, hash) -> MAP candidate (key, value)"},
    {"column", (PyCFunction)(void (*)(void))TypeView_column, METH_FASTCALL,
     "column(field, ordinals, values, nulls)"},
    {"ref_max", (PyCFunction)(void (*)(void))TypeView_ref_max, METH_FASTCALL,
     "ref_max(slot, mask) -> largest referenced ordinal, -1 for none"},
    {"checksum", (PyCFunction)(void (*)(void))TypeView_checksum, METH_FASTCALL,
     "checksum(ordinals, field_order) -> int"},
    {"num_shards", (PyCFunction)TypeView_num_shards, METH_NOARGS, "number of shards"},
    {"swap", (PyCFunction)TypeView_swap, METH_O, "swap(other): exchange shard data with another view"},
    {NULL},
};

PyTypeObject TypeViewType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._native.TypeView",
    .tp_basicsize = sizeof(TypeView),
    .tp_dealloc = (destructor)TypeView_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_init = (initproc)TypeView_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = TypeView_methods,
    .tp_doc = "TypeView(kind, field_types): bounds-checked access to one type's bit-packed shards",
};

static PyMethodDef module_methods[] = {
    {"merge_shard", merge_shard, METH_VARARGS, "merge a delta shard into a shard"},
    {"gap_decode", gap_decode, METH_O, "decode a gap-encoded ordinal list to int64 bytes"},
    {"pack", pack, METH_VARARGS, "pack(n, widths, columns) -> big-endian words"},
    {"get_bits", py_get_bits, METH_VARARGS, "get_bits(words, bit, width) -> int"},
    {"hash_int", py_hash_int, METH_O, "HashCodes.hashInt"},
    {"hash_long", py_hash_long, METH_O, "HashCodes.hashLong"},
    {"murmur3", py_murmur3, METH_O, "HashCodes.hashCode(bytes): MurmurHash3 x86_32, Hollow seed"},
    {"set_error_class", set_error_class, METH_O, "install the exception class raised for corrupt data"},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_native", "Hot loops of the Hollow core (see the comment at the top of _native.c)",
    -1, module_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&TypeViewType) < 0 || PyType_Ready(&KeyIndexType) < 0 || PyType_Ready(&FieldReaderType) < 0 ||
        PyType_Ready(&RecordReaderType) < 0 || PyType_Ready(&PagesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    Py_INCREF(&TypeViewType);
    Py_INCREF(&KeyIndexType);
    Py_INCREF(&FieldReaderType);
    Py_INCREF(&RecordReaderType);
    if (PyModule_AddObject(m, "TypeView", (PyObject *)&TypeViewType) < 0 ||
        PyModule_AddObject(m, "KeyIndex", (PyObject *)&KeyIndexType) < 0 ||
        PyModule_AddObject(m, "FieldReader", (PyObject *)&FieldReaderType) < 0 ||
        PyModule_AddObject(m, "RecordReader", (PyObject *)&RecordReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
