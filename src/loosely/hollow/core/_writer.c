/*
 * loosely.hollow.core._writer -- the write engine's per-record loops, in C.
 *
 * Why
 * ---
 * A producer cycle touches every record several times: the object mapper turns each Python object into its
 * byte-identity with Java, stay in Python (_write_state.py and its rooms); what is here computes the same numbers.
 * of every record; writing a snapshot packs every record.  In Python each of these costs microseconds per
 * record, which for a million records is far behind Java.  This module does exactly those loops over the
 * write engine's own data structures -- the Python list ``records`` (payload tuples by ordinal, None for a
 * free ordinal) and the Python dict ``ordinal_of`` (payload -> ordinal) -- so the engine's logic, and its
 * byte-identity with Java, stay in Python (_write_state.py and beside it); what is here must compute the same numbers.
 *
 * Payloads (see _payload.py): OBJECT records are tuples of field payloads -- INT/LONG zig-zag encoded
 * unsigned ints, REFERENCE ordinals, BOOLEAN 0/1, FLOAT/DOUBLE the IEEE bits (null: Java's null bits),
 * STRING/BYTES bytes (a STRING is its UTF-16 code units as VarInts), None for null.  LIST and SET records are
 * tuples of element ordinals (a SET sorted), MAP records tuples of (key, value) ordinal pairs.
 *
 * Packing: record r's field f sits at bit r * sum(widths) + sum(widths[:f]) of an array of 64-bit words,
 * written big-endian (the blob layout, see _blob.py and _native.c).  STRING/BYTES fields hold the end offset
 * of their bytes in the field's pool, with the top bit of the field set for null.
 *
 * Writer plans (Plan): the object mapper compiles each mapped type into a plan -- per field the attribute to
 * read, how to encode it (the Java primitive's range and null convention), and the plan of a referenced type
 * -- and ``write(plan, obj)`` produces the payloads and ordinals of a whole object graph in C.  A payload already
 * in the ordinal map (most records in a cycle that changes little) costs one dict lookup and one byte store;
 * a new payload goes to the type's Python ``add`` (ordinal assignment is policy, kept in Python).  Anything a
 * plan does not cover (non-ASCII strings, enums, dates, maps, a value of an unexpected type) returns the
 * FALLBACK marker and the Python mapper writes that object, with its precise errors.
 *
 * Caches and the epoch: a plan keeps the type state's current bitset, its ordinal map's records list and
 * ``exact`` flag, and a boxed-integer plan (Integer, Long... records: list elements, mostly) remembers the
 * ordinals of small values.  These are only valid until the write engine swaps bitsets or forgets records
 * (prepare_for_next_cycle, a rollback) or the map comes to hold one payload at two ordinals; the engine then
 * calls bump_epoch() and every cache refills on its next use.  Within an epoch a payload's ordinal cannot
 * change: the ordinal map only gains entries between compactions.
 *
 * The next-ordinal guess: a cycle mostly adds the same records in the same order as the cycle before, so the
 * record an object writes to is usually the one after the record the previous object of its type wrote to.  A
 * plan keeps that ordinal (``guess``: the last ordinal it returned, plus one) and, before building a payload,
 * compares the object's values with the record held there, field by field and in place: an INT / LONG value by
 * its zig-zag number, an ASCII string by its bytes, a reference by the ordinal its own plan returns, anything
 * else by its encoded payload.  No payload tuple is made or hashed (the field payloads wait in an array until a
 * tuple is needed) and, for these kinds, no Python object is made.  When every field is equal the record is the
 * object's: the ordinal map holds each payload at one ordinal only
 * (``exact``, kept by _ordinal_map.py), so the ordinal the dict would return is the guessed one; when the map is
 * not exact (a restored state may hold a payload twice), the dict is asked with the held record to confirm.  Any
 * difference falls through to the payload, the dict lookup and ``add_new`` as before, keeping the fields already
 * encoded, and the guess follows the ordinal found.  The guess only saves work: it never decides an ordinal the
 * dict would not give.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_bits.h"

#define FIELDS_MAX 1024
#define SMALL_MIN (-256) /* boxed integers cached per plan: [SMALL_MIN, SMALL_MAX) */
#define SMALL_MAX 1024
#define SEGMENT_SHIFT 14 /* ThreadSafeBitSet: 16384-bit segments */
#define VALUES_ON_STACK 32 /* plan_write: field payloads of up to this many fields are gathered on the stack */

enum { K_REF = 0, K_INT = 1, K_LONG = 2, K_BOOL = 3, K_FLOAT = 4, K_DOUBLE = 5, K_STRING = 6, K_BYTES = 7 };

static inline unsigned
bitlen(uint64_t v)
{
    return v ? 64u - (unsigned)__builtin_clzll(v) : 0u;
}

static PyObject *
words_to_bytes(uint64_t *w, uint64_t nwords)
{
    to_big_endian(w, nwords);
    return PyBytes_FromStringAndSize((const char *)w, (Py_ssize_t)(nwords * 8));
}

static uint64_t *
zeroed_words(uint64_t nwords)
{
    uint64_t *w = PyMem_Calloc(nwords ? nwords : 1, 8);
    if (!w)
        PyErr_NoMemory();
    return w;
}

static int
read_kinds(PyObject *kinds, const uint8_t **out, Py_ssize_t *n)
{
    if (!PyBytes_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "kinds must be bytes");
        return -1;
    }
    *out = (const uint8_t *)PyBytes_AS_STRING(kinds);
    *n = PyBytes_GET_SIZE(kinds);
    if (*n > FIELDS_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return -1;
    }
    return 0;
}

/* an unsigned payload value (a Python int >= 0) */
static int
as_u64(PyObject *v, uint64_t *out)
{
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------- */
/* records and ordinals                                                                                     */

/* held(records) -> bytes of int64: the ordinals whose record is not None, ascending */
static PyObject *
held(PyObject *module, PyObject *records)
{
    if (!PyList_Check(records)) {
        PyErr_SetString(PyExc_TypeError, "records must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records), k = 0;
    int64_t *o = PyMem_Malloc((size_t)(n ? n : 1) * 8);
    if (!o)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyList_GET_ITEM(records, i) != Py_None)
            o[k++] = i;
    PyObject *out = PyBytes_FromStringAndSize((const char *)o, k * 8);
    PyMem_Free(o);
    return out;
}

/* object_stats(records, kinds) -> (widths, totals): per field the bits its values need over the records that
   are not None (BOOLEAN 2, FLOAT 32, DOUBLE 64 once any record exists; others the bit length of value + 1, 1
   for null) and the total pool bytes of STRING/BYTES fields.  Python derives the pool fields' widths. */
static PyObject *
object_stats(PyObject *module, PyObject *args)
{
    PyObject *records, *kinds_obj;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &records, &kinds_obj))
        return NULL;
    const uint8_t *kinds;
    Py_ssize_t nf;
    if (read_kinds(kinds_obj, &kinds, &nf) < 0)
        return NULL;
    unsigned widths[FIELDS_MAX] = {0};
    unsigned long long totals[FIELDS_MAX] = {0};
    Py_ssize_t n = PyList_GET_SIZE(records);
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = PyList_GET_ITEM(records, r);
        if (p == Py_None)
            continue;
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != nf) {
            PyErr_SetString(PyExc_ValueError, "object_stats: a record is not a payload of this type");
            return NULL;
        }
        for (Py_ssize_t f = 0; f < nf; f++) {
            PyObject *v = PyTuple_GET_ITEM(p, f);
            switch (kinds[f]) {
            case K_STRING:
            case K_BYTES:
                if (v != Py_None)
                    totals[f] += (unsigned long long)PyBytes_GET_SIZE(v);
                break;
            case K_BOOL:
                widths[f] = 2;
                break;
            case K_FLOAT:
                widths[f] = 32;
                break;
            case K_DOUBLE:
                widths[f] = 64;
                break;
            default: {
                unsigned need = 1;
                if (v != Py_None) {
                    uint64_t x;
                    if (as_u64(v, &x) < 0)
                        return NULL;
                    need = x == UINT64_MAX ? 65u : bitlen(x + 1);
                }
                if (need > widths[f])
                    widths[f] = need;
            }
            }
        }
    }
    PyObject *w = PyList_New(nf), *t = PyList_New(nf);
    if (!w || !t) {
        Py_XDECREF(w);
        Py_XDECREF(t);
        return NULL;
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyList_SET_ITEM(w, f, PyLong_FromUnsignedLong(widths[f]));
        PyList_SET_ITEM(t, f, PyLong_FromUnsignedLongLong(totals[f]));
    }
    return Py_BuildValue("(NN)", w, t);
}

static int
get_ordinals(PyObject *obj, Py_buffer *b, const int64_t **o, Py_ssize_t *n)
{
    if (PyObject_GetBuffer(obj, b, PyBUF_SIMPLE) < 0)
        return -1;
    if (b->len % 8) {
        PyBuffer_Release(b);
        PyErr_SetString(PyExc_ValueError, "ordinals must be int64");
        return -1;
    }
    *o = b->buf;
    *n = b->len / 8;
    return 0;
}

static PyObject *
record_at(PyObject *records, int64_t o)
{
    if (o < 0)
        return Py_None;
    if (o >= PyList_GET_SIZE(records)) {
        PyErr_SetString(PyExc_IndexError, "ordinal beyond the records");
        return NULL;
    }
    return PyList_GET_ITEM(records, o);
}

/* encode_objects(records, ordinals, widths, kinds) -> (fixed words, pools): the records of one shard in order
   (ordinal -1: an empty slot), packed; the pools hold the STRING/BYTES bytes per field. */
static PyObject *
encode_objects(PyObject *module, PyObject *args)
{
    PyObject *records, *ords_obj, *widths_obj, *kinds_obj;
    if (!PyArg_ParseTuple(args, "O!OO!O", &PyList_Type, &records, &ords_obj, &PyTuple_Type, &widths_obj, &kinds_obj))
        return NULL;
    const uint8_t *kinds;
    Py_ssize_t nf;
    if (read_kinds(kinds_obj, &kinds, &nf) < 0)
        return NULL;
    if (PyTuple_GET_SIZE(widths_obj) != nf) {
        PyErr_SetString(PyExc_ValueError, "one width per field");
        return NULL;
    }
    unsigned w[FIELDS_MAX];
    uint64_t bpr = 0;
    for (Py_ssize_t f = 0; f < nf; f++) {
        if (parse_width(PyTuple_GET_ITEM(widths_obj, f), PyExc_ValueError, &w[f]) < 0)
            return NULL;
        bpr += w[f];
    }
    Py_buffer ob;
    const int64_t *ords;
    Py_ssize_t n;
    if (get_ordinals(ords_obj, &ob, &ords, &n) < 0)
        return NULL;
    uint64_t nwords = ((uint64_t)n * bpr + 63) / 64;
    uint64_t *T = zeroed_words(nwords);
    PyObject *pools = PyTuple_New(nf);
    PyObject *result = NULL;
    if (!T || !pools)
        goto done;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *pool = PyByteArray_FromStringAndSize(NULL, 0);
        if (!pool)
            goto done;
        PyTuple_SET_ITEM(pools, f, pool);
    }
    uint64_t bit = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = record_at(records, ords[r]);
        if (!p)
            goto done;
        if (p != Py_None && (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != nf)) {
            PyErr_SetString(PyExc_ValueError, "encode_objects: a record is not a payload of this type");
            goto done;
        }
        for (Py_ssize_t f = 0; f < nf; f++) {
            uint64_t val = 0;
            PyObject *v = p == Py_None ? NULL : PyTuple_GET_ITEM(p, f);
            if (kinds[f] == K_STRING || kinds[f] == K_BYTES) {
                PyObject *pool = PyTuple_GET_ITEM(pools, f);
                if (v != NULL && v != Py_None) {
                    Py_ssize_t len = PyByteArray_GET_SIZE(pool), add = PyBytes_GET_SIZE(v);
                    if (PyByteArray_Resize(pool, len + add) < 0)
                        goto done;
                    memcpy(PyByteArray_AS_STRING(pool) + len, PyBytes_AS_STRING(v), (size_t)add);
                    val = (uint64_t)(len + add);
                } else {
                    val = (uint64_t)PyByteArray_GET_SIZE(pool);
                    if (v == Py_None)
                        val |= (uint64_t)1 << (w[f] - 1);
                }
            } else if (v == NULL) {
                val = 0;
            } else if (v == Py_None) {
                val = kinds[f] == K_BOOL ? 3 : mask_of(w[f]);
            } else if (as_u64(v, &val) < 0) {
                goto done;
            }
            if (val & ~mask_of(w[f])) {
                PyErr_Format(PyExc_ValueError, "encode_objects: value %llu does not fit %u bits",
                             (unsigned long long)val, w[f]);
                goto done;
            }
            or_bits(T, bit, w[f], val);
            bit += w[f];
        }
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *pool = PyTuple_GET_ITEM(pools, f);
        PyObject *b = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(pool), PyByteArray_GET_SIZE(pool));
        if (!b)
            goto done;
        PyTuple_SET_ITEM(pools, f, b);
        Py_DECREF(pool);
    }
    PyObject *fixed = words_to_bytes(T, nwords);
    if (fixed)
        result = Py_BuildValue("(NO)", fixed, pools);
done:
    PyBuffer_Release(&ob);
    PyMem_Free(T);
    Py_XDECREF(pools);
    return result;
}

/* ------------------------------------------------------------------------------------------------------- */
/* collections                                                                                              */

static uint64_t
hash_table_size(Py_ssize_t n)
{
    if (n == 0)
        return 1;
    if (n < 3)
        return (uint64_t)n * 2;
    uint64_t after = (uint64_t)n * 10 / 7;
    return (uint64_t)1 << bitlen(after - 1);
}

/* collection_stats(records, kind) -> (max element or key, max value, total slots, max size); kind 0 LIST
   (slots = elements), 1 SET (slots = buckets), 2 MAP (slots = buckets; elements are (key, value) pairs). */
static PyObject *
collection_stats(PyObject *module, PyObject *args)
{
    PyObject *records;
    int kind;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &records, &kind))
        return NULL;
    uint64_t max_e = 0, max_v = 0, total = 0, max_size = 0;
    Py_ssize_t n = PyList_GET_SIZE(records);
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = PyList_GET_ITEM(records, r);
        if (p == Py_None)
            continue;
        if (!PyTuple_Check(p)) {
            PyErr_SetString(PyExc_ValueError, "collection_stats: a record is not a tuple");
            return NULL;
        }
        Py_ssize_t size = PyTuple_GET_SIZE(p);
        if ((uint64_t)size > max_size)
            max_size = (uint64_t)size;
        total += kind == 0 ? (uint64_t)size : hash_table_size(size);
        for (Py_ssize_t i = 0; i < size; i++) {
            PyObject *e = PyTuple_GET_ITEM(p, i);
            uint64_t a, b = 0;
            if (kind == 2) {
                if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 2) {
                    PyErr_SetString(PyExc_ValueError, "collection_stats: a map entry is not a pair");
                    return NULL;
                }
                if (as_u64(PyTuple_GET_ITEM(e, 0), &a) < 0 || as_u64(PyTuple_GET_ITEM(e, 1), &b) < 0)
                    return NULL;
            } else if (as_u64(e, &a) < 0) {
                return NULL;
            }
            if (a > max_e)
                max_e = a;
            if (b > max_v)
                max_v = b;
        }
    }
    return Py_BuildValue("(KKKK)", (unsigned long long)max_e, (unsigned long long)max_v,
                         (unsigned long long)total, (unsigned long long)max_size);
}

/* shard_slots(records, num_shards, kind) -> list: per shard, the elements (LIST) or buckets (SET/MAP) of its
   records (ordinal o lives in shard o & (num_shards - 1)). */
static PyObject *
shard_slots(PyObject *module, PyObject *args)
{
    PyObject *records;
    Py_ssize_t shards;
    int kind;
    if (!PyArg_ParseTuple(args, "O!ni", &PyList_Type, &records, &shards, &kind))
        return NULL;
    if (shards <= 0 || (shards & (shards - 1))) {
        PyErr_SetString(PyExc_ValueError, "the number of shards must be a power of two");
        return NULL;
    }
    uint64_t *t = PyMem_Calloc((size_t)shards, 8);
    if (!t)
        return PyErr_NoMemory();
    Py_ssize_t n = PyList_GET_SIZE(records);
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = PyList_GET_ITEM(records, r);
        if (p == Py_None)
            continue;
        Py_ssize_t size = PyTuple_GET_SIZE(p);
        t[r & (shards - 1)] += kind == 0 ? (uint64_t)size : hash_table_size(size);
    }
    PyObject *out = PyList_New(shards);
    if (out)
        for (Py_ssize_t s = 0; s < shards; s++)
            PyList_SET_ITEM(out, s, PyLong_FromUnsignedLongLong(t[s]));
    PyMem_Free(t);
    return out;
}

/* encode_lists(records, ordinals, pointer_width, element_width, element_count) -> (pointer words, element
   words, elements written): LIST records of one shard; the element array is padded with zeros to
   element_count when that is larger (a snapshot's shard total). */
static PyObject *
encode_lists(PyObject *module, PyObject *args)
{
    PyObject *records, *ords_obj;
    unsigned pw, ew;
    unsigned long long want;
    if (!PyArg_ParseTuple(args, "O!OIIK", &PyList_Type, &records, &ords_obj, &pw, &ew, &want))
        return NULL;
    if (pw > 64 || ew > 64) {
        PyErr_SetString(PyExc_ValueError, "width out of range");
        return NULL;
    }
    Py_buffer ob;
    const int64_t *ords;
    Py_ssize_t n;
    if (get_ordinals(ords_obj, &ob, &ords, &n) < 0)
        return NULL;
    uint64_t count = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = record_at(records, ords[r]);
        if (!p) {
            PyBuffer_Release(&ob);
            return NULL;
        }
        if (p != Py_None)
            count += (uint64_t)PyTuple_GET_SIZE(p);
    }
    uint64_t cap = count > want ? count : want;
    uint64_t pwords = ((uint64_t)n * pw + 63) / 64, ewords = (cap * ew + 63) / 64;
    uint64_t *P = zeroed_words(pwords), *E = zeroed_words(ewords);
    PyObject *result = NULL;
    if (!P || !E)
        goto done;
    uint64_t at = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = PyList_GET_ITEM(records, ords[r] < 0 ? 0 : ords[r]);
        if (ords[r] >= 0 && p != Py_None) {
            Py_ssize_t size = PyTuple_GET_SIZE(p);
            for (Py_ssize_t i = 0; i < size; i++) {
                uint64_t e;
                if (as_u64(PyTuple_GET_ITEM(p, i), &e) < 0)
                    goto done;
                or_bits(E, at * ew, ew, e);
                at++;
            }
        }
        or_bits(P, (uint64_t)r * pw, pw, at);
    }
    PyObject *pb = words_to_bytes(P, pwords), *eb = pb ? words_to_bytes(E, ewords) : NULL;
    if (pb && eb)
        result = Py_BuildValue("(NNK)", pb, eb, (unsigned long long)count);
    else {
        Py_XDECREF(pb);
        Py_XDECREF(eb);
    }
done:
    PyBuffer_Release(&ob);
    PyMem_Free(P);
    PyMem_Free(E);
    return result;
}

/* encode_sets(records, ordinals, pointer_width, size_width, element_width, bucket_count) -> (fixed words,
   bucket words, buckets written): SET records of one shard placed by the default hash (hashInt of the element
   ordinal, linear probing from hash & (buckets - 1), elements in payload order); empty buckets all ones. */
static PyObject *
encode_sets(PyObject *module, PyObject *args)
{
    PyObject *records, *ords_obj;
    unsigned pw, sw, ew;
    unsigned long long want;
    if (!PyArg_ParseTuple(args, "O!OIIIK", &PyList_Type, &records, &ords_obj, &pw, &sw, &ew, &want))
        return NULL;
    if (pw + sw > 64 || ew > 64) {
        PyErr_SetString(PyExc_ValueError, "width out of range");
        return NULL;
    }
    Py_buffer ob;
    const int64_t *ords;
    Py_ssize_t n;
    if (get_ordinals(ords_obj, &ob, &ords, &n) < 0)
        return NULL;
    uint64_t count = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = record_at(records, ords[r]);
        if (!p) {
            PyBuffer_Release(&ob);
            return NULL;
        }
        if (p != Py_None)
            count += hash_table_size(PyTuple_GET_SIZE(p));
    }
    uint64_t cap = count > want ? count : want;
    uint64_t fwords = ((uint64_t)n * (pw + sw) + 63) / 64, bwords = (cap * ew + 63) / 64;
    uint64_t *F = zeroed_words(fwords), *B = zeroed_words(bwords);
    uint64_t *tmp = NULL;
    PyObject *result = NULL;
    if (!F || !B)
        goto done;
    uint64_t empty = mask_of(ew), at = 0, tmp_cap = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = ords[r] < 0 ? Py_None : PyList_GET_ITEM(records, ords[r]);
        uint64_t size = 0;
        if (p != Py_None) {
            size = (uint64_t)PyTuple_GET_SIZE(p);
            uint64_t nb = hash_table_size((Py_ssize_t)size);
            if (nb > tmp_cap) {
                PyMem_Free(tmp);
                tmp = PyMem_Malloc(nb * 8);
                if (!tmp) {
                    PyErr_NoMemory();
                    goto done;
                }
                tmp_cap = nb;
            }
            for (uint64_t b = 0; b < nb; b++)
                tmp[b] = empty;
            for (uint64_t i = 0; i < size; i++) {
                uint64_t e;
                if (as_u64(PyTuple_GET_ITEM(p, (Py_ssize_t)i), &e) < 0)
                    goto done;
                uint64_t b = (uint64_t)(uint32_t)hash_int((int32_t)e) & (nb - 1);
                while (tmp[b] != empty)
                    b = (b + 1) & (nb - 1);
                tmp[b] = e;
            }
            for (uint64_t b = 0; b < nb; b++)
                or_bits(B, (at + b) * ew, ew, tmp[b]);
            at += nb;
        }
        or_bits(F, (uint64_t)r * (pw + sw), pw, at);
        or_bits(F, (uint64_t)r * (pw + sw) + pw, sw, size);
    }
    for (uint64_t b = at; b < cap; b++)
        or_bits(B, b * ew, ew, 0);
    PyObject *fb = words_to_bytes(F, fwords), *bb = fb ? words_to_bytes(B, bwords) : NULL;
    if (fb && bb)
        result = Py_BuildValue("(NNK)", fb, bb, (unsigned long long)count);
    else {
        Py_XDECREF(fb);
        Py_XDECREF(bb);
    }
done:
    PyBuffer_Release(&ob);
    PyMem_Free(F);
    PyMem_Free(B);
    PyMem_Free(tmp);
    return result;
}

/* ------------------------------------------------------------------------------------------------------- */
/* writer plans                                                                                             */

enum { P_OBJECT = 0, P_BOXED = 1, P_LIST = 2, P_SET = 3, P_PYTHON = 4 };
enum { E_INT = 1, E_LONG = 2, E_BOOL = 3, E_FLOAT = 4, E_DOUBLE = 5, E_STRING = 6, E_BYTES = 7, E_REF = 8 };

typedef struct Plan Plan;

typedef struct {
    PyObject *name;  /* attribute name (interned) */
    Py_ssize_t slot; /* offset of the instance slot holding it (a __slots__ class), or -1: getattr */
    int enc;         /* E_* */
    int primitive;   /* a Java primitive: None refused; the type's minimum (or NaN) written as null, which
                        inline (boxed) values keep (but for the INT / LONG minimum, Hollow's own null) */
    int64_t low;     /* Java range of E_INT / E_LONG values */
    int64_t high;
    Plan *child;     /* E_REF */
} PlanField;

struct Plan {
    PyObject_HEAD
    int kind;             /* P_* */
    PyObject *cls;        /* P_OBJECT: the exact class handled here */
    Py_ssize_t nfields;
    PlanField *fields;    /* P_OBJECT: the fields; P_BOXED: one field (its attribute name is unused) */
    Plan *element;        /* P_LIST, P_SET */
    int sort_elements;    /* P_LIST ignoring ordering */
    PyObject *state;      /* the type's write state (Python): .map.ordinal_of, .cur, .add_new(payload) */
    PyObject *ordinal_of; /* state.map.ordinal_of: the same dict for the state's whole life */
    PyObject *records;    /* state.map.records as of cur_epoch: payloads by ordinal, None for a free one */
    int exact;            /* state.map.exact as of cur_epoch: no payload is held at two ordinals */
    int64_t guess;        /* where the next record of this type probably is: the last ordinal written + 1 */
    PyObject *python;     /* P_PYTHON: callable(value) -> ordinal */
    uint64_t cur_epoch;   /* the epoch ``cur`` was read in */
    PyObject *cur;        /* state.cur as of cur_epoch */
    uint64_t small_epoch; /* the epoch ``small`` is valid for */
    int64_t *small;       /* boxed integer plans: value - SMALL_MIN -> ordinal, -1 unknown */
};

static uint64_t epoch = 1;

/* bump_epoch(): the write engine swapped bitsets or compacted an ordinal map; plans' caches are stale */
static PyObject *
bump_epoch(PyObject *module, PyObject *unused)
{
    epoch++;
    Py_RETURN_NONE;
}

static PyObject FallbackObj; /* identity marker, never exposed */
#define FALLBACK ((int64_t)-2)

static PyObject *s_map, *s_ordinal_of, *s_cur, *s_flags, *s_segments, *s_add_new, *s_records, *s_exact;

/* The write engine's bitset class (_ordinal_map.JavaBitSet; __slots__ flags, segments): its slots are read in place. */
static PyTypeObject *bitset_type = NULL;
static Py_ssize_t bitset_flags = -1, bitset_segments = -1;

static Py_ssize_t
slot_offset(PyTypeObject *t, PyObject *name)
{
    PyObject *d = _PyType_Lookup(t, name);
    if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY))
            return m->offset;
    }
    return -1;
}

/* set_bitset_type(cls): the class of ``state.cur`` (its flags and segments slots are then read directly) */
static PyObject *
set_bitset_type(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "expected a class");
        return NULL;
    }
    Py_ssize_t f = slot_offset((PyTypeObject *)cls, s_flags), g = slot_offset((PyTypeObject *)cls, s_segments);
    if (f < 0 || g < 0) {
        PyErr_SetString(PyExc_TypeError, "the bitset class needs __slots__ flags and segments");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(bitset_type, (PyTypeObject *)cls);
    bitset_flags = f;
    bitset_segments = g;
    Py_RETURN_NONE;
}

static void
plan_dealloc(Plan *self)
{
    PyObject_GC_UnTrack(self);
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        Py_XDECREF(self->fields[i].name);
        Py_XDECREF((PyObject *)self->fields[i].child);
    }
    PyMem_Free(self->fields);
    Py_XDECREF(self->cls);
    Py_XDECREF((PyObject *)self->element);
    Py_XDECREF(self->state);
    Py_XDECREF(self->ordinal_of);
    Py_XDECREF(self->python);
    Py_XDECREF(self->cur);
    Py_XDECREF(self->records);
    PyMem_Free(self->small);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
plan_traverse(Plan *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->nfields; i++)
        Py_VISIT((PyObject *)self->fields[i].child);
    Py_VISIT(self->cls);
    Py_VISIT((PyObject *)self->element);
    Py_VISIT(self->state);
    Py_VISIT(self->ordinal_of);
    Py_VISIT(self->python);
    Py_VISIT(self->cur);
    Py_VISIT(self->records);
    return 0;
}

static int
plan_clear(Plan *self)
{
    for (Py_ssize_t i = 0; i < self->nfields; i++)
        Py_CLEAR(self->fields[i].child);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->element);
    Py_CLEAR(self->state);
    Py_CLEAR(self->ordinal_of);
    Py_CLEAR(self->python);
    Py_CLEAR(self->cur);
    Py_CLEAR(self->records);
    return 0;
}

static PyTypeObject PlanType;

/* Plan(kind, state, cls, fields, element, sort_elements, python); fields: tuple of (name, enc, primitive, low,
   high, child plan or None).  Plans referencing each other are linked after creation with set_child(). */
static int
plan_init(Plan *self, PyObject *args, PyObject *kwds)
{
    int kind, sort_elements;
    PyObject *state, *cls, *fields, *element, *python;
    if (!PyArg_ParseTuple(args, "iOOO!OpO", &kind, &state, &cls, &PyTuple_Type, &fields, &element, &sort_elements,
                          &python))
        return -1;
    if (kind < P_OBJECT || kind > P_PYTHON) {
        PyErr_SetString(PyExc_ValueError, "unknown plan kind");
        return -1;
    }
    self->kind = kind;
    Py_INCREF(state);
    self->state = state;
    PyObject *map = PyObject_GetAttr(state, s_map);
    if (!map)
        return -1;
    self->ordinal_of = PyObject_GetAttr(map, s_ordinal_of);
    Py_DECREF(map);
    if (!self->ordinal_of)
        return -1;
    if (!PyDict_Check(self->ordinal_of)) {
        PyErr_SetString(PyExc_TypeError, "state.map.ordinal_of must be a dict");
        return -1;
    }
    Py_INCREF(cls);
    self->cls = cls;
    Py_INCREF(python);
    self->python = python;
    self->sort_elements = sort_elements;
    if (element != Py_None) {
        if (!PyObject_TypeCheck(element, &PlanType)) {
            PyErr_SetString(PyExc_TypeError, "element must be a Plan");
            return -1;
        }
        Py_INCREF(element);
        self->element = (Plan *)element;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(fields);
    self->fields = PyMem_Calloc((size_t)(nf ? nf : 1), sizeof(PlanField));
    if (!self->fields) {
        PyErr_NoMemory();
        return -1;
    }
    self->nfields = nf;
    for (Py_ssize_t i = 0; i < nf; i++) {
        PyObject *name, *child;
        int enc, primitive;
        long long low, high;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "UipLLO", &name, &enc, &primitive, &low, &high, &child))
            return -1;
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        self->fields[i].name = name;
        self->fields[i].slot = -1;
        if (kind == P_OBJECT && PyType_Check(cls)) {
            /* a __slots__ attribute is a member descriptor on the class: read the instance slot directly */
            PyObject *d = _PyType_Lookup((PyTypeObject *)cls, name);
            if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
                PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
                if (m->type == T_OBJECT_EX && !(m->flags & READONLY))
                    self->fields[i].slot = m->offset;
            }
        }
        self->fields[i].enc = enc;
        self->fields[i].primitive = primitive;
        self->fields[i].low = low;
        self->fields[i].high = high;
        if (child != Py_None) {
            if (!PyObject_TypeCheck(child, &PlanType)) {
                PyErr_SetString(PyExc_TypeError, "child must be a Plan");
                return -1;
            }
            Py_INCREF(child);
            self->fields[i].child = (Plan *)child;
        }
    }
    if (kind == P_BOXED && nf == 1 && (self->fields[0].enc == E_INT || self->fields[0].enc == E_LONG)) {
        self->small = PyMem_Malloc((SMALL_MAX - SMALL_MIN) * sizeof(int64_t));
        if (!self->small) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static PyObject *
plan_set_child(Plan *self, PyObject *args)
{
    Py_ssize_t i;
    PyObject *child;
    if (!PyArg_ParseTuple(args, "nO!", &i, &PlanType, &child))
        return NULL;
    if (i < 0 || i >= self->nfields) {
        PyErr_SetString(PyExc_IndexError, "no such field");
        return NULL;
    }
    Py_INCREF(child);
    Py_XSETREF(self->fields[i].child, (Plan *)child);
    Py_RETURN_NONE;
}

static int64_t plan_write(Plan *plan, PyObject *value);

/* the payload of one field value, or NULL with an exception, or &FallbackObj (borrowed) */
static PyObject *
encode_value(PlanField *f, PyObject *v)
{
    if (v == Py_None) {
        if (f->primitive) {
            Py_INCREF(&FallbackObj);
            return &FallbackObj; /* Python says why None cannot be written */
        }
        if (f->enc == E_FLOAT)
            return PyLong_FromUnsignedLong(0x7FC00001UL);
        if (f->enc == E_DOUBLE)
            return PyLong_FromUnsignedLongLong(0x7FF8000000000001ULL);
        Py_RETURN_NONE;
    }
    switch (f->enc) {
    case E_INT:
    case E_LONG: {
        if (!PyLong_CheckExact(v))
            break;
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            break;
        }
        if (x < f->low || x > f->high)
            break;
        /* Java's mapper writes a primitive's minimum as null; INT and LONG fields reserve theirs for null */
        if (x == f->low && (f->primitive || x == (f->enc == E_INT ? INT32_MIN : INT64_MIN)))
            Py_RETURN_NONE;
        uint64_t z = f->enc == E_INT ? (uint64_t)(uint32_t)(((uint32_t)x << 1) ^ (uint32_t)((int32_t)x >> 31))
                                     : ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
        return PyLong_FromUnsignedLongLong(z);
    }
    case E_BOOL:
        if (v == Py_True)
            return PyLong_FromLong(1);
        if (v == Py_False)
            return PyLong_FromLong(0);
        break;
    case E_FLOAT:
    case E_DOUBLE: {
        double d;
        if (PyFloat_CheckExact(v))
            d = PyFloat_AS_DOUBLE(v);
        else if (PyLong_CheckExact(v)) {
            d = PyLong_AsDouble(v);
            if (d == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                break;
            }
        } else
            break;
        if (isnan(d)) { /* a primitive's NaN is written as null, an inline (boxed) one as the canonical NaN */
            if (f->enc == E_FLOAT)
                return PyLong_FromUnsignedLong(f->primitive ? 0x7FC00001UL : 0x7FC00000UL);
            return PyLong_FromUnsignedLongLong(f->primitive ? 0x7FF8000000000001ULL : 0x7FF8000000000000ULL);
        }
        if (f->enc == E_FLOAT) {
            if (isfinite(d) && fabs(d) > 3.4028234663852886e38)
                break; /* beyond float32: Python decides (Java's cast makes an infinity) */
            float fl = (float)d;
            uint32_t bits;
            memcpy(&bits, &fl, 4);
            return PyLong_FromUnsignedLong(bits);
        }
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return PyLong_FromUnsignedLongLong(bits);
    }
    case E_STRING:
        if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v))
            break; /* non-ASCII strings are VarInt-encoded UTF-16 units: Python does it */
        return PyBytes_FromStringAndSize((const char *)PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v));
    case E_BYTES:
        if (PyBytes_CheckExact(v)) {
            Py_INCREF(v);
            return v;
        }
        break;
    case E_REF: {
        int64_t o = plan_write(f->child, v);
        if (o == -1)
            return NULL;
        if (o == FALLBACK)
            break;
        return PyLong_FromLongLong(o);
    }
    }
    Py_INCREF(&FallbackObj);
    return &FallbackObj;
}

/* look a payload up in the type's ordinal map and mark it populated in this cycle; a new payload is added by
   the type state's Python add_new(payload) */
static int64_t mark(Plan *plan, long long o);

static int64_t
intern_payload(Plan *plan, PyObject *payload)
{
    PyObject *found = PyDict_GetItemWithError(plan->ordinal_of, payload);
    if (!found) {
        if (PyErr_Occurred())
            return -1;
        PyObject *r = PyObject_CallMethodOneArg(plan->state, s_add_new, payload);
        if (!r)
            return -1;
        long long o = PyLong_AsLongLong(r);
        Py_DECREF(r);
        return o;
    }
    long long o = PyLong_AsLongLong(found);
    if (o < 0)
        return -1;
    return mark(plan, o);
}

/* the epoch's caches: state.cur, state.map.records and state.map.exact */
static int
refresh(Plan *plan)
{
    if (plan->cur_epoch == epoch && plan->cur && plan->records)
        return 0;
    PyObject *cur = PyObject_GetAttr(plan->state, s_cur);
    if (!cur)
        return -1;
    PyObject *map = PyObject_GetAttr(plan->state, s_map);
    PyObject *records = map ? PyObject_GetAttr(map, s_records) : NULL;
    PyObject *exact = records ? PyObject_GetAttr(map, s_exact) : NULL;
    Py_XDECREF(map);
    int truth = exact ? PyObject_IsTrue(exact) : -1;
    Py_XDECREF(exact);
    if (truth < 0 || !PyList_Check(records)) {
        if (truth >= 0)
            PyErr_SetString(PyExc_TypeError, "state.map.records must be a list");
        Py_DECREF(cur);
        Py_XDECREF(records);
        return -1;
    }
    Py_XSETREF(plan->cur, cur);
    Py_XSETREF(plan->records, records);
    plan->exact = truth;
    plan->cur_epoch = epoch;
    return 0;
}

/* cur.set(o) for an ordinal the map holds: the flag byte, and the segments Java's bitset would have */
static int64_t
mark(Plan *plan, long long o)
{
    if (refresh(plan) < 0)
        return -1;
    PyObject *cur = plan->cur;
    Py_INCREF(cur);
    int rc = -1;
    if (Py_TYPE(cur) == bitset_type) {
        PyObject *flags = *(PyObject **)((char *)cur + bitset_flags);
        PyObject *seg = *(PyObject **)((char *)cur + bitset_segments);
        if (flags && seg && PyByteArray_CheckExact(flags) && o < PyByteArray_GET_SIZE(flags)) {
            PyByteArray_AS_STRING(flags)[o] = 1;
            long long have = PyLong_AsLongLong(seg), need = (o >> SEGMENT_SHIFT) + 1;
            if (need > have && !PyErr_Occurred()) {
                PyObject *nv = PyLong_FromLongLong(need);
                rc = nv ? PyObject_SetAttr(cur, s_segments, nv) : -1;
                Py_XDECREF(nv);
            } else {
                rc = PyErr_Occurred() ? -1 : 0;
            }
            Py_DECREF(cur);
            return rc < 0 ? -1 : o;
        }
    }
    PyObject *r = PyObject_CallMethod(cur, "set", "L", o); /* grows the flags (or an unknown bitset) */
    rc = r ? 0 : -1;
    Py_XDECREF(r);
    Py_DECREF(cur);
    return rc < 0 ? -1 : o;
}

/* The next-ordinal guess (see the header).  guessed_record: the record held at ordinal g when it is a tuple of
   n items -- 1 and a new reference in *held --, 0 when it is not, -1 with an exception. */
static int
guessed_record(Plan *plan, int64_t g, Py_ssize_t n, PyObject **held)
{
    *held = NULL;
    if (refresh(plan) < 0)
        return -1;
    if (g < 0 || g >= PyList_GET_SIZE(plan->records))
        return 0;
    PyObject *p = PyList_GET_ITEM(plan->records, g);
    if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != n)
        return 0;
    Py_INCREF(p);
    *held = p;
    return 1;
}

/* every field of the object equals ``held``, the record at g: is g the ordinal the ordinal map gives for it?
   Yes when the map is exact (each payload at one ordinal) and g still holds it; else the dict says.  1 yes, 0 no,
   -1 with an exception. */
static int
guess_confirmed(Plan *plan, int64_t g, PyObject *held)
{
    if (refresh(plan) < 0)
        return -1;
    if (g >= PyList_GET_SIZE(plan->records) || PyList_GET_ITEM(plan->records, g) != held)
        return 0;
    if (plan->exact)
        return 1;
    PyObject *found = PyDict_GetItemWithError(plan->ordinal_of, held);
    if (!found)
        return PyErr_Occurred() ? -1 : 0;
    long long o = PyLong_AsLongLong(found);
    if (o == -1 && PyErr_Occurred())
        return -1;
    return o == g;
}

#define NOT_GUESSED ((int64_t)-3)

/* every field equals ``held``, the record at g: g marked and returned when guess_confirmed, NOT_GUESSED when the
   map gives another ordinal, -1 with an exception */
static int64_t
take_guess(Plan *plan, int64_t g, PyObject *held)
{
    int ok = guess_confirmed(plan, g, held);
    if (ok <= 0)
        return ok < 0 ? -1 : NOT_GUESSED;
    int64_t o = mark(plan, g);
    if (o >= 0)
        plan->guess = g + 1;
    return o;
}

/* does INT / LONG value v, encoded as encode_value would, equal the held payload item s?  1 yes; 0 no, or not a
   plain int in range (encode_value then decides, with its fallbacks).  Never raises. */
static int
same_number(PlanField *f, PyObject *v, PyObject *s)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (x < f->low || x > f->high)
        return 0;
    if (x == f->low && (f->primitive || x == (f->enc == E_INT ? INT32_MIN : INT64_MIN)))
        return s == Py_None;
    uint64_t z = f->enc == E_INT ? (uint64_t)(uint32_t)(((uint32_t)x << 1) ^ (uint32_t)((int32_t)x >> 31))
                                 : ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
    if (!PyLong_CheckExact(s))
        return 0;
    unsigned long long held = PyLong_AsUnsignedLongLong(s);
    if (held == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return held == z;
}

/* does STRING value v equal the held bytes s?  1 yes; 0 no, or not an ASCII str (encode_value decides) */
static int
same_ascii(PyObject *v, PyObject *s)
{
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v) || !PyBytes_CheckExact(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    return PyBytes_GET_SIZE(s) == n && memcmp(PyBytes_AS_STRING(s), PyUnicode_DATA(v), (size_t)n) == 0;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t
write_collection(Plan *plan, PyObject *value)
{
    PyObject *seq;
    if (plan->kind == P_LIST) {
        if (!PyList_CheckExact(value) && !PyTuple_CheckExact(value))
            return FALLBACK;
        seq = value;
        Py_INCREF(seq);
    } else {
        if (!PyAnySet_CheckExact(value))
            return FALLBACK;
        seq = PySequence_List(value);
        if (!seq)
            return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int64_t *o = PyMem_Malloc((size_t)(n ? n : 1) * 8);
    if (!o) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    int64_t result = FALLBACK;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
        if (e == Py_None)
            goto done; /* Python says a collection cannot hold null */
        int64_t x = plan_write(plan->element, e);
        if (x < 0) {
            result = x;
            goto done;
        }
        o[i] = x;
    }
    if (plan->kind == P_SET || plan->sort_elements)
        qsort(o, (size_t)n, 8, cmp_i64);
    int64_t g = plan->guess;
    PyObject *held;
    int found = guessed_record(plan, g, n, &held);
    if (found < 0) {
        result = -1;
        goto done;
    }
    if (found) { /* the record the guess points at: the same elements? */
        int same = 1;
        for (Py_ssize_t i = 0; i < n && same; i++) {
            PyObject *e = PyTuple_GET_ITEM(held, i);
            long long x = PyLong_CheckExact(e) ? PyLong_AsLongLong(e) : -1;
            if (x == -1 && PyErr_Occurred())
                PyErr_Clear();
            same = x == o[i];
        }
        int64_t taken = same ? take_guess(plan, g, held) : NOT_GUESSED;
        Py_DECREF(held);
        if (taken != NOT_GUESSED) {
            result = taken;
            goto done;
        }
    }
    PyObject *payload = PyTuple_New(n);
    if (!payload) {
        result = -1;
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLongLong(o[i]);
        if (!x) {
            Py_DECREF(payload);
            result = -1;
            goto done;
        }
        PyTuple_SET_ITEM(payload, i, x);
    }
    result = intern_payload(plan, payload);
    Py_DECREF(payload);
    if (result >= 0)
        plan->guess = result + 1;
done:
    PyMem_Free(o);
    Py_DECREF(seq);
    return result;
}

/* the ordinal of value's record (adding it and everything it references), -1 with an exception, or FALLBACK */
static int64_t
plan_write(Plan *plan, PyObject *value)
{
    if (plan->kind == P_PYTHON) {
        PyObject *r = PyObject_CallOneArg(plan->python, value);
        if (!r)
            return -1;
        long long o = PyLong_AsLongLong(r);
        Py_DECREF(r);
        return o;
    }
    if (plan->kind == P_LIST || plan->kind == P_SET)
        return write_collection(plan, value);
    if (Py_EnterRecursiveCall(" while writing a Hollow record"))
        return -1;
    int64_t result = FALLBACK;
    long long small_at = -1;
    PyObject *held = NULL; /* the record at the guessed ordinal */
    Py_ssize_t nf = plan->nfields;
    /* the field payloads, new references or NULL; a tuple is only made of them when the guess fails */
    PyObject *on_stack[VALUES_ON_STACK] = {NULL};
    PyObject **values = nf <= VALUES_ON_STACK ? on_stack : PyMem_Calloc((size_t)nf, sizeof(PyObject *));
    if (!values) {
        Py_LeaveRecursiveCall();
        PyErr_NoMemory();
        return -1;
    }
    if (plan->kind == P_OBJECT && (PyObject *)Py_TYPE(value) != plan->cls)
        goto done; /* a subclass, or a wrong type: Python decides */
    if (plan->small && PyLong_CheckExact(value)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && x >= SMALL_MIN && x < SMALL_MAX) {
            small_at = x - SMALL_MIN;
            if (plan->small_epoch != epoch) {
                memset(plan->small, 0xff, (SMALL_MAX - SMALL_MIN) * sizeof(int64_t));
                plan->small_epoch = epoch;
            }
            if (plan->small[small_at] >= 0) {
                result = mark(plan, plan->small[small_at]);
                goto done;
            }
        }
    }
    /* The guess (see the header): compare with the record at plan->guess while reading the fields; a field found
       equal in place is not encoded (its payload slot stays NULL) unless the guess fails, then the second pass
       encodes it.  References and the other kinds are encoded at once and compared encoded. */
    int64_t g = plan->guess;
    if (plan->kind == P_OBJECT && guessed_record(plan, g, nf, &held) < 0) {
        result = -1;
        goto done;
    }
    int same = held != NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (Py_ssize_t i = 0; i < nf; i++) {
            if (pass == 1 && values[i])
                continue;
            PlanField *f = &plan->fields[i];
            PyObject *v;
            if (plan->kind == P_BOXED) {
                v = value;
                Py_INCREF(v);
            } else if (f->slot >= 0) {
                v = *(PyObject **)((char *)value + f->slot);
                if (!v)
                    goto done; /* an unset slot: Python reports it */
                Py_INCREF(v);
            } else {
                v = PyObject_GetAttr(value, f->name);
                if (!v) {
                    PyErr_Clear();
                    goto done;
                }
            }
            if (same && (f->enc == E_INT || f->enc == E_LONG || f->enc == E_STRING)) {
                PyObject *s = PyTuple_GET_ITEM(held, i);
                if (f->enc == E_STRING ? same_ascii(v, s) : same_number(f, v, s)) {
                    Py_DECREF(v);
                    continue;
                }
                same = 0;
            }
            PyObject *enc = encode_value(f, v);
            Py_DECREF(v);
            if (!enc) {
                result = -1;
                goto done;
            }
            if (enc == &FallbackObj) {
                Py_DECREF(enc);
                goto done;
            }
            values[i] = enc;
            if (same) {
                int eq = PyObject_RichCompareBool(enc, PyTuple_GET_ITEM(held, i), Py_EQ);
                if (eq < 0) {
                    result = -1;
                    goto done;
                }
                same = eq;
            }
        }
        if (pass == 0 && same) {
            int64_t taken = take_guess(plan, g, held);
            if (taken != NOT_GUESSED) {
                result = taken;
                goto done;
            }
        }
        same = 0;
    }
    PyObject *payload = PyTuple_New(nf);
    if (!payload) {
        result = -1;
        goto done;
    }
    for (Py_ssize_t i = 0; i < nf; i++) { /* the tuple takes the references */
        PyTuple_SET_ITEM(payload, i, values[i]);
        values[i] = NULL;
    }
    result = intern_payload(plan, payload);
    Py_DECREF(payload);
    if (result >= 0) {
        plan->guess = result + 1;
        if (small_at >= 0 && plan->small_epoch == epoch)
            plan->small[small_at] = result;
    }
done:
    Py_XDECREF(held);
    for (Py_ssize_t i = 0; i < nf; i++)
        Py_XDECREF(values[i]);
    if (values != on_stack)
        PyMem_Free(values);
    Py_LeaveRecursiveCall();
    return result;
}

/* write(plan, value) -> ordinal, or None when the plan cannot write this value (the caller uses Python) */
static PyObject *
write_value(PyObject *module, PyObject *args)
{
    PyObject *plan, *value;
    if (!PyArg_ParseTuple(args, "O!O", &PlanType, &plan, &value))
        return NULL;
    int64_t o = plan_write((Plan *)plan, value);
    if (o == -1)
        return NULL;
    if (o == FALLBACK)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(o);
}

/* write_all(plan, values) -> number written; stops at the first value the plan cannot write and returns its
   index as a negative number -(i + 1), so the caller writes that one in Python and continues. */
static PyObject *
write_values(PyObject *module, PyObject *args)
{
    PyObject *plan, *values;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!On", &PlanType, &plan, &values, &start))
        return NULL;
    PyObject *seq = PySequence_Fast(values, "values must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = start; i < n; i++) {
        int64_t o = plan_write((Plan *)plan, PySequence_Fast_GET_ITEM(seq, i));
        if (o == -1) {
            Py_DECREF(seq);
            return NULL;
        }
        if (o == FALLBACK) {
            Py_DECREF(seq);
            return PyLong_FromSsize_t(-(i + 1));
        }
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(n);
}

/* write_iter(plan, iterator, end) -> (count, leftover): writes the iterator's values one at a time, each released
   before the next is drawn, until the iterator ends (leftover is ``end``) or a value the plan cannot write comes
   (leftover is that value, not written; the caller writes it in Python and calls again).

   Why one at a time and not in chunks: the values a populate function yields die as soon as they are written, so
   the allocator hands the next value the memory the last one freed -- a few cache lines, always hot.  Chunks of
   thousands of live values cost more, and far more once a cycle has forgotten records that were allocated side
   by side with ones it keeps (the first cycle's, say): pymalloc then serves every small allocation from those
   holes first, one or a few per 16 KiB pool across the whole ordinal map, so a chunk's values land on thousands
   of cold pages -- cache and TLB misses on each allocation, each read and each free (docs/benchmarks.md,
   "Hollow producer and consumer", measured it: the populate of such a cycle took twice as long). */
static PyObject *
write_iter(PyObject *module, PyObject *args)
{
    PyObject *plan, *it, *end;
    if (!PyArg_ParseTuple(args, "O!OO", &PlanType, &plan, &it, &end))
        return NULL;
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "write_iter needs an iterator");
        return NULL;
    }
    Py_ssize_t count = 0;
    PyObject *value;
    while ((value = PyIter_Next(it)) != NULL) {
        int64_t o = plan_write((Plan *)plan, value);
        if (o == FALLBACK)
            return Py_BuildValue("(nN)", count, value); /* the reference passes to the caller */
        Py_DECREF(value);
        if (o == -1)
            return NULL;
        count++;
    }
    if (PyErr_Occurred())
        return NULL;
    return Py_BuildValue("(nO)", count, end);
}

static PyMethodDef plan_methods[] = {
    {"set_child", (PyCFunction)plan_set_child, METH_VARARGS, "set_child(i, plan): link field i to a plan"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "loosely.hollow.core._writer.Plan",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A compiled writer of one mapped type (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_traverse = (traverseproc)plan_traverse,
    .tp_clear = (inquiry)plan_clear,
    .tp_methods = plan_methods,
};

static PyMethodDef methods[] = {
    {"bump_epoch", bump_epoch, METH_NOARGS, "bump_epoch(): invalidate every plan's caches"},
    {"set_bitset_type", set_bitset_type, METH_O, "set_bitset_type(cls): the class of the cur bitsets"},
    {"held", held, METH_O, "held(records) -> int64 bytes of the ordinals holding a record"},
    {"object_stats", object_stats, METH_VARARGS, "object_stats(records, kinds) -> (widths, pool totals)"},
    {"encode_objects", encode_objects, METH_VARARGS, "encode_objects(records, ordinals, widths, kinds)"},
    {"collection_stats", collection_stats, METH_VARARGS, "collection_stats(records, kind)"},
    {"shard_slots", shard_slots, METH_VARARGS, "shard_slots(records, num_shards, kind) -> list"},
    {"encode_lists", encode_lists, METH_VARARGS, "encode_lists(records, ordinals, pw, ew, element_count)"},
    {"encode_sets", encode_sets, METH_VARARGS, "encode_sets(records, ordinals, pw, sw, ew, bucket_count)"},
    {"write", write_value, METH_VARARGS, "write(plan, value) -> ordinal or None (use Python)"},
    {"write_all", write_values, METH_VARARGS, "write_all(plan, values, start) -> count or -(index + 1)"},
    {"write_iter", write_iter, METH_VARARGS, "write_iter(plan, iterator, end) -> (count, leftover or end)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_writer", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__writer(void)
{
    if (PyType_Ready(&PlanType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    s_map = PyUnicode_InternFromString("map");
    s_ordinal_of = PyUnicode_InternFromString("ordinal_of");
    s_cur = PyUnicode_InternFromString("cur");
    s_flags = PyUnicode_InternFromString("flags");
    s_segments = PyUnicode_InternFromString("segments");
    s_add_new = PyUnicode_InternFromString("add_new");
    s_records = PyUnicode_InternFromString("records");
    s_exact = PyUnicode_InternFromString("exact");
    if (!s_map || !s_ordinal_of || !s_cur || !s_flags || !s_segments || !s_add_new || !s_records || !s_exact)
        return NULL;
    Py_SET_REFCNT(&FallbackObj, 1 << 30);
    Py_SET_TYPE(&FallbackObj, &PyBaseObject_Type);
    Py_INCREF(&PlanType);
    if (PyModule_AddObject(m, "Plan", (PyObject *)&PlanType) < 0)
        return NULL;
    return m;
}
