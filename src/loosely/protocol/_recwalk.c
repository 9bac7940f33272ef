/*
 * The produce validator's record walk: every record of a v2 batch's (decompressed) records section, checked.
 *
 * Why C: a broker that trusts no client must parse every record it appends, and the talk's example produces a
 * million small records a second; the same loop in Python costs ~2 us a record, more than the whole append.
 * Everything around the loop (framing, CRC, decompression, error codes and messages) stays in Python, in
 * loosely.protocol.validation, which calls walk() once per batch.
 *
 * Record layout (loosely.protocol.records documents it in full; varints are zigzag, protobuf style):
 *   varint length | int8 attributes | varlong timestampDelta | varint offsetDelta
 *   | varint keyLength (-1 null) + key | varint valueLength (-1 null) + value
 *   | varint headerCount + per header: varint keyLength + key, varint valueLength (-1 null) + value
 *
 * walk(data, count, base_timestamp, lat_timestamp, check_range, lo, hi, forbid_lat, need_key, truncated,
 *      errors_max) -> (status, detail, max_timestamp, errors, error_count, timestamp_errors, key_hashes)
 *
 * Algorithm: read exactly `count` records from the start of `data`. For record i:
 *   1. length: a varint of at most 5 bytes, >= 1, and the record must fit in what remains of `data`;
 *   2. the fields must lie inside the record's `length` bytes and end exactly at its end;
 *   3. every 32-bit varint has at most 5 bytes and fits 32 bits, the timestamp delta at most 10 bytes;
 *   4. offsetDelta == i (Kafka's clients number records 0..n-1; anything else is a lie about offsets);
 *   5. key and value lengths >= -1, header count >= 0, header key length >= 0, header value length >= -1, each
 *      within the record; header keys are well-formed UTF-8 (Kafka's Java reader would replace bad bytes, but
 *      loosely's own readers, the cleaner among them, decode keys strictly and must never meet one they refuse);
 *   6. the record's timestamp is lat_timestamp when that is not None (a LogAppendTime batch), else
 *      base_timestamp + delta (wrapping, as Java's long does); max_timestamp is the largest seen.
 *   Per-record errors (the record is well formed but not acceptable) are collected, not fatal, as Kafka's
 *   KIP-467 record_errors name every bad record: kind 1 when need_key and the key is null; else kind 2 when
 *   check_range and the timestamp is not -1 and lies outside [lo, hi] or below 0; else kind 3 when forbid_lat
 *   (and the range was not checked). Each error is (index, kind, timestamp); only the first `errors_max` are
 *   kept (a 1 MiB batch can hold millions of bad records), `error_count` counts them all and `timestamp_errors`
 *   says whether any was of kind 2 or 3.
 * After `count` records the data must be fully consumed. key_hashes holds key_hash() of every non-null key, as
 * key_hashes() below returns them (b"" unless status is 0): the storage key index takes them from here, because
 * hashing inside this walk costs almost nothing (the hash does not lie on the walk's chain of dependent loads),
 * while a second walk would cost as much as the first.
 *
 * build_records(records, first_timestamp) -> bytes | None
 *   The records section of a batch being built (loosely.protocol.records.build_batch), in the layout above, for
 *   records without headers and without an explicit offset delta: record i gets offsetDelta i and timestampDelta
 *   timestamp - first_timestamp. None when a record has headers, an explicit offset delta, a key or value that is
 *   not exactly bytes or None, or a timestamp delta outside a signed 64-bit value: the Python builder does those.
 *   Why C: the Python loop costs ~3.5 us a record (five varints each), on the RAW writer's commit thread, its
 *   serial path. Algorithm: one pass takes each record's fields and adds up the section's size, a second writes
 *   it into the bytes object, so nothing is copied twice.
 *
 * status: 0 ok; 1 malformed (detail says how, errors is empty); 2 the walk needed bytes past the end of `data`
 * and `truncated` is set, i.e. the batch inflates past the decompression limit (detail says where). Bytes after
 * the last record are malformed even when `truncated`: a streaming reader (Kafka's) finds them there too.
 *
 * The storage key index's helpers (loosely.storage.keyindex), which read only lengths and keys:
 * key_hashes(data, count) -> bytes: one native-endian uint64 per record whose key is not null, key_hash() of the
 * key, for a section walk() already accepted or a stored batch (rebuilding an index); ValueError if the section
 * does not hold `count` records. key_offsets(data, count, key) -> list[int]: the offset deltas of the records whose
 * key equals `key` (a null key never does), in order: how an index hit is checked without decoding the batch's
 * other records in Python (~2 us a record there).
 * key_hash(key) -> int reads the key 8 bytes at a time as little-endian words (the last one zero-padded), folds
 * each into the state with xor and a multiply by an odd 64-bit constant (the state starts from the key's length,
 * so "a" and "a\0" differ), and ends with MurmurHash3's fmix64 finalizer so every bit of the result depends on
 * every input bit. A byte-at-a-time hash (FNV-1a) cost ~8 ns on the talk's 6-byte keys, as much as the rest of
 * the walk; this costs one multiply a word. Unequal keys may collide, so an index hit is only a candidate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p, *end;
} cursor_t;

/* 0 ok, -1 runs past `end`, -2 too long / over 32 bits */
static int read_varint32(cursor_t *c, const uint8_t *end, int32_t *out) {
    uint32_t raw = 0;
    for (int i = 0; i < 5; i++) {
        if (c->p >= end)
            return -1;
        uint8_t b = *c->p++;
        if (i == 4 && (b & 0xF0))
            return -2;
        raw |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int32_t)((raw >> 1) ^ (~(raw & 1) + 1));
            return 0;
        }
    }
    return -2;
}

static int read_varint64(cursor_t *c, const uint8_t *end, int64_t *out) {
    uint64_t raw = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= end)
            return -1;
        uint8_t b = *c->p++;
        if (i == 9 && (b & 0xFE))
            return -2;
        raw |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((raw >> 1) ^ (~(raw & 1) + 1));
            return 0;
        }
    }
    return -2;
}

typedef struct {
    int status;
    char detail[160];
} outcome_t;

static void fail(outcome_t *o, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    o->status = status;
    PyOS_vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
}

/* Well-formed UTF-8 as Python's strict decoder takes it: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int valid_utf8(const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        uint8_t b = *p;
        if (b < 0x80) {
            p++;
            continue;
        }
        int n;
        uint32_t cp, min;
        if ((b & 0xE0) == 0xC0) {
            n = 1, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 2, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (end - p <= n)
            return 0;
        for (int k = 1; k <= n; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* A field of `len` bytes (-1 allowed when nullable) inside the record. */
static int skip_bytes(cursor_t *c, const uint8_t *rec_end, int nullable, int32_t *len_out) {
    int32_t n;
    int r = read_varint32(c, rec_end, &n);
    if (r)
        return r;
    if (n < (nullable ? -1 : 0))
        return -3;
    if (n > 0) {
        if (rec_end - c->p < n)
            return -1;
        c->p += n;
    }
    *len_out = n;
    return 0;
}

/* The n <= 8 bytes at p as a little-endian word, whatever the machine: the sidecar files must not depend on it. */
static inline uint64_t load_le(const uint8_t *p, Py_ssize_t n) {
    uint64_t w = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        w |= (uint64_t)p[k] << (8 * k);
    return w;
}

static inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const uint8_t *p, Py_ssize_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)n * 0xbf58476d1ce4e5b9ULL);
    while (n >= 8) {
        h = (h ^ load_le(p, 8)) * 0x94d049bb133111ebULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n)
        h = (h ^ load_le(p, n)) * 0x94d049bb133111ebULL;
    return fmix64(h);
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count;
    long long base_ts, lo, hi;
    PyObject *lat_obj;
    int check_range, forbid_lat, need_key, truncated;
    Py_ssize_t errors_max, error_count = 0;
    int timestamp_errors = 0;
    if (!PyArg_ParseTuple(args, "y*nLOpLLpppn", &view, &count, &base_ts, &lat_obj, &check_range, &lo, &hi,
                          &forbid_lat, &need_key, &truncated, &errors_max))
        return NULL;
    int has_lat = lat_obj != Py_None;
    long long lat_ts = 0;
    if (has_lat) {
        lat_ts = PyLong_AsLongLong(lat_obj);
        if (lat_ts == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    PyObject *errors = PyList_New(0);
    PyObject *hashes = count >= 0 && count <= view.len ? PyBytes_FromStringAndSize(NULL, count * 8) : PyBytes_FromString("");
    if (!errors || !hashes) {
        Py_XDECREF(errors);
        Py_XDECREF(hashes);
        PyBuffer_Release(&view);
        return NULL;
    }
    uint64_t *hash_out = (uint64_t *)PyBytes_AS_STRING(hashes);
    Py_ssize_t hashed = 0, hash_room = PyBytes_GET_SIZE(hashes) / 8;
    outcome_t o = {0, ""};
    cursor_t c = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    const uint8_t *start = c.p;
    long long max_ts = INT64_MIN;
    Py_ssize_t i;
    for (i = 0; i < count; i++) {
        int32_t length, off_delta, klen, vlen, nh;
        int64_t ts_delta;
        int r = read_varint32(&c, c.end, &length);
        if (r == -1) {
            if (truncated)
                fail(&o, 2, "record %zd starts past byte %lld of the decompressed records", i, (long long)(c.p - start));
            else
                fail(&o, 1, "the batch declares %zd records but the data ends after %lld", count, (long long)i);
            break;
        }
        if (r || length < 1) {
            fail(&o, 1, "record %zd has an invalid length (%lld)", i, r ? -1LL : (long long)length);
            break;
        }
        if (c.end - c.p < length) {
            if (truncated)
                fail(&o, 2, "record %zd of %lld bytes runs past the decompression limit", i, (long long)length);
            else
                fail(&o, 1, "record %zd declares %lld bytes, more than remain in the batch", i, (long long)length);
            break;
        }
        const uint8_t *rec_end = c.p + length;
        c.p++; /* attributes: unused in v2 */
        if (c.p > rec_end || (r = read_varint64(&c, rec_end, &ts_delta)) || (r = read_varint32(&c, rec_end, &off_delta))) {
            fail(&o, 1, "record %zd has a malformed timestamp or offset delta", i);
            break;
        }
        if (off_delta != i) {
            fail(&o, 1, "record %zd has offset delta %lld; records must be numbered 0, 1, 2, ...", i, (long long)off_delta);
            break;
        }
        r = skip_bytes(&c, rec_end, 1, &klen);
        const uint8_t *key_end = c.p;
        if (r || (r = skip_bytes(&c, rec_end, 1, &vlen))) {
            fail(&o, 1, "record %zd has a key or value length out of range or past its end", i);
            break;
        }
        if (klen >= 0 && hashed < hash_room)
            hash_out[hashed++] = hash_bytes(key_end - klen, klen);
        if ((r = read_varint32(&c, rec_end, &nh)) || nh < 0 || nh > rec_end - c.p) {
            fail(&o, 1, "record %zd has an invalid header count (%lld)", i, r ? -1LL : (long long)nh);
            break;
        }
        for (int32_t h = 0; h < nh && !r; h++) {
            int32_t hk, hv;
            r = skip_bytes(&c, rec_end, 0, &hk);
            if (!r && !valid_utf8(c.p - hk, c.p))
                r = -4;
            if (!r)
                r = skip_bytes(&c, rec_end, 1, &hv);
        }
        if (r) {
            if (r == -4)
                fail(&o, 1, "record %zd has a header key that is not UTF-8", i);
            else
                fail(&o, 1, "record %zd has a header key or value length out of range or past its end", i);
            break;
        }
        if (c.p != rec_end) {
            fail(&o, 1, "record %zd declares %lld bytes but its fields take a different number", i, (long long)length);
            break;
        }
        long long ts = has_lat ? lat_ts : (long long)((uint64_t)base_ts + (uint64_t)ts_delta);
        if (ts > max_ts)
            max_ts = ts;
        int kind = 0;
        if (need_key && klen < 0)
            kind = 1;
        else if (check_range && ts != -1) {
            if (ts < 0 || ts < lo || ts > hi)
                kind = 2;
        } else if (forbid_lat)
            kind = 3;
        if (kind) {
            error_count++;
            timestamp_errors |= kind != 1;
        }
        if (kind && error_count <= errors_max) {
            PyObject *e = Py_BuildValue("(niL)", i, kind, ts);
            if (!e || PyList_Append(errors, e) < 0) {
                Py_XDECREF(e);
                Py_DECREF(errors);
                Py_DECREF(hashes);
                PyBuffer_Release(&view);
                return NULL;
            }
            Py_DECREF(e);
        }
    }
    if (o.status == 0 && c.p != c.end)
        fail(&o, 1, "bytes follow the last of the %zd declared records", count);
    PyBuffer_Release(&view);
    if (o.status != 0) {
        Py_DECREF(errors);
        errors = PyList_New(0);
        if (!errors) {
            Py_DECREF(hashes);
            return NULL;
        }
        error_count = 0;
        timestamp_errors = 0;
        hashed = 0;
    }
    if (hashed < hash_room && _PyBytes_Resize(&hashes, hashed * 8) < 0) {
        Py_DECREF(errors);
        return NULL;
    }
    return Py_BuildValue("(isLNnON)", o.status, o.detail, max_ts == INT64_MIN ? -1LL : max_ts, errors, error_count,
                         timestamp_errors ? Py_True : Py_False, hashes);
}

/* One record of a section: its offset delta and key (klen -1: null), the cursor left at the next record. -1 if it
 * is malformed. Reads no further than the key: the index's helpers need nothing else. */
static int next_key(cursor_t *c, int32_t *off_delta, const uint8_t **key, int32_t *klen) {
    int32_t length;
    int64_t ts_delta;
    if (read_varint32(c, c->end, &length) || length < 1 || c->end - c->p < length)
        return -1;
    const uint8_t *rec_end = c->p + length;
    c->p++; /* attributes */
    if (read_varint64(c, rec_end, &ts_delta) || read_varint32(c, rec_end, off_delta) ||
        read_varint32(c, rec_end, klen) || *klen < -1 || (*klen > 0 && rec_end - c->p < *klen))
        return -1;
    *key = c->p;
    c->p = rec_end;
    return 0;
}

static PyObject *key_hash(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    uint64_t h = hash_bytes((const uint8_t *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(h);
}

static PyObject *key_hashes(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count))
        return NULL;
    if (count < 0 || count > view.len) { /* every record takes at least one byte */
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "%zd records cannot fit in %zd bytes", count, view.len);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(uint64_t));
    if (!out) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint64_t *dst = (uint64_t *)PyBytes_AS_STRING(out);
    Py_ssize_t n = 0;
    cursor_t c = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    for (Py_ssize_t i = 0; i < count; i++) {
        int32_t off_delta, klen;
        const uint8_t *key_at;
        if (next_key(&c, &off_delta, &key_at, &klen))
            goto malformed;
        if (klen >= 0)
            dst[n++] = hash_bytes(key_at, klen);
    }
    PyBuffer_Release(&view);
    if (n < count && _PyBytes_Resize(&out, n * (Py_ssize_t)sizeof(uint64_t)) < 0)
        return NULL;
    return out;
malformed:
    PyBuffer_Release(&view);
    Py_DECREF(out);
    PyErr_SetString(PyExc_ValueError, "malformed records section");
    return NULL;
}

static PyObject *key_offsets(PyObject *self, PyObject *args) {
    Py_buffer view, key;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*ny*", &view, &count, &key))
        return NULL;
    PyObject *out = PyList_New(0);
    cursor_t c = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    for (Py_ssize_t i = 0; out && i < count; i++) {
        int32_t off_delta, klen;
        const uint8_t *key_at;
        if (next_key(&c, &off_delta, &key_at, &klen))
            goto malformed;
        if (klen == key.len && memcmp(key_at, key.buf, (size_t)klen) == 0) {
            PyObject *d = PyLong_FromLong(off_delta);
            if (!d || PyList_Append(out, d) < 0)
                Py_CLEAR(out);
            Py_XDECREF(d);
        }
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&key);
    return out;
malformed:
    PyBuffer_Release(&view);
    PyBuffer_Release(&key);
    Py_XDECREF(out);
    PyErr_SetString(PyExc_ValueError, "malformed records section");
    return NULL;
}

/* --- build_records -------------------------------------------------------------------------------------------- */

static PyObject *s_key, *s_value, *s_timestamp, *s_headers, *s_offset_delta;

static inline int uvarint_len(uint64_t z) {
    int n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static inline char *put_uvarint(char *p, uint64_t z) {
    while (z >= 0x80) {
        *p++ = (char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    *p++ = (char)z;
    return p;
}

typedef struct {
    PyObject *key, *value; /* new references: bytes or Py_None */
    int64_t ts_delta;
    Py_ssize_t body;       /* the record's length field */
} BuiltRecord;

/* the record's fields if it is one build_records covers: 1 yes, 0 no (the Python builder does it), -1 error */
static int take_record(PyObject *rec, int64_t first, BuiltRecord *out) {
    out->key = out->value = NULL;
    PyObject *headers = PyObject_GetAttr(rec, s_headers);
    if (!headers)
        return -1;
    int plain = PyTuple_CheckExact(headers) && PyTuple_GET_SIZE(headers) == 0;
    Py_DECREF(headers);
    if (!plain)
        return 0;
    PyObject *od = PyObject_GetAttr(rec, s_offset_delta);
    if (!od)
        return -1;
    Py_DECREF(od); /* only compared with None */
    if (od != Py_None)
        return 0;
    PyObject *ts = PyObject_GetAttr(rec, s_timestamp);
    if (!ts)
        return -1;
    int overflow = 0;
    long long t = PyLong_CheckExact(ts) ? PyLong_AsLongLongAndOverflow(ts, &overflow) : 0;
    int ok = PyLong_CheckExact(ts) && !overflow && !(t == -1 && PyErr_Occurred());
    Py_DECREF(ts);
    PyErr_Clear();
    if (!ok || __builtin_sub_overflow((int64_t)t, first, &out->ts_delta))
        return 0; /* t - first does not fit a signed 64-bit value */
    out->key = PyObject_GetAttr(rec, s_key);
    if (!out->key)
        return -1;
    out->value = PyObject_GetAttr(rec, s_value);
    if (!out->value)
        return -1;
    if ((out->key != Py_None && !PyBytes_CheckExact(out->key)) ||
        (out->value != Py_None && !PyBytes_CheckExact(out->value)))
        return 0;
    return 1;
}

static Py_ssize_t field_len(PyObject *b) {
    if (b == Py_None)
        return 1; /* varint -1 */
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    return uvarint_len(zigzag(n)) + n;
}

static char *put_field(char *p, PyObject *b) {
    if (b == Py_None)
        return put_uvarint(p, zigzag(-1));
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    p = put_uvarint(p, zigzag(n));
    memcpy(p, PyBytes_AS_STRING(b), (size_t)n);
    return p + n;
}

static PyObject *build_records(PyObject *self, PyObject *args) {
    PyObject *records;
    long long first;
    if (!PyArg_ParseTuple(args, "OL", &records, &first))
        return NULL;
    PyObject *seq = PySequence_Fast(records, "records must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    BuiltRecord *built = PyMem_Calloc((size_t)n + 1, sizeof(BuiltRecord));
    PyObject *result = NULL;
    Py_ssize_t taken = 0, total = 0;
    if (!built) {
        PyErr_NoMemory();
        goto done;
    }
    for (; taken < n; taken++) {
        BuiltRecord *r = &built[taken];
        int rc = take_record(PySequence_Fast_GET_ITEM(seq, taken), (int64_t)first, r);
        if (rc <= 0) {
            taken++; /* its references are released below */
            if (rc == 0)
                result = Py_NewRef(Py_None);
            goto done;
        }
        r->body = 1 + uvarint_len(zigzag(r->ts_delta)) + uvarint_len(zigzag(taken)) + field_len(r->key) +
                  field_len(r->value) + 1;
        total += uvarint_len(zigzag(r->body)) + r->body;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (!result)
        goto done;
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        BuiltRecord *r = &built[i];
        p = put_uvarint(p, zigzag(r->body));
        *p++ = 0; /* attributes */
        p = put_uvarint(p, zigzag(r->ts_delta));
        p = put_uvarint(p, zigzag(i));
        p = put_field(p, r->key);
        p = put_field(p, r->value);
        *p++ = 0; /* no headers */
    }
done:
    if (built)
        for (Py_ssize_t i = 0; i < taken; i++) {
            Py_XDECREF(built[i].key);
            Py_XDECREF(built[i].value);
        }
    PyMem_Free(built);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Walk and check every record of a batch's records section; see the file header."},
    {"key_hashes", key_hashes, METH_VARARGS, "The key_hash of every non-null record key; see the file header."},
    {"key_offsets", key_offsets, METH_VARARGS, "Offset deltas of the records whose key equals key; see the file header."},
    {"build_records", build_records, METH_VARARGS, "The records section of a new batch, or None; see the file header."},
    {"key_hash", key_hash, METH_VARARGS, "The 64-bit hash of a key the storage key index uses; see the file header."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "loosely.protocol._recwalk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__recwalk(void) {
    s_key = PyUnicode_InternFromString("key");
    s_value = PyUnicode_InternFromString("value");
    s_timestamp = PyUnicode_InternFromString("timestamp");
    s_headers = PyUnicode_InternFromString("headers");
    s_offset_delta = PyUnicode_InternFromString("offset_delta");
    if (!s_key || !s_value || !s_timestamp || !s_headers || !s_offset_delta)
        return NULL;
    return PyModule_Create(&module);
}
