/*
 * The command line's hot loops: lines -> record-batch records, and records -> kcat-formatted text.
 *
 * Why C: the Python client spends ~1 us per message in confluent-kafka's per-message API, which caps
 * `loosely produce`/`consume` at a third of kcat's throughput on the talk's example (1M messages). Here a whole
 * input chunk becomes the records section of one batch per partition in one call, and a whole fetched batch
 * becomes output text in one call. Framing, CRC, compression and the network stay in Python
 * (loosely.clients.fastpath), which calls these two functions.
 *
 * Record layout (inside a magic-v2 batch, see loosely.protocol.records; varints are zigzag, protobuf style):
 *   varint length | int8 attributes (0) | varlong timestampDelta | varint offsetDelta
 *   | varint keyLength (-1 null) + key | varint valueLength (-1 null) + value
 *   | varint headerCount + per header: varint keyLength + key, varint valueLength (-1 null) + value
 *
 * encode_records(data, delim, key_delim, fixed_key, null_empty, headers, partitions, mode, partition,
 *                keyless_partition, limit) -> (list[bytes|None] records per partition, list[int] counts, consumed)
 *   Splits `data` (complete records only) on `delim`, skips empty records, splits each at the first `key_delim`
 *   (kcat's -K), applies -Z (`null_empty`) and -k (`fixed_key`), and appends it to its partition's records:
 *   mode 0: every record to `partition`; 1: keyed records by Kafka's murmur2, 2: by CRC32 (librdkafka's
 *   consistent); keyless records in modes 1 and 2 go to `keyless_partition`. `headers` is the encoded header
 *   section (count + headers) every record carries. Stops after `limit` records (-1: no limit).
 *
 * format_records(records, count, base_offset, base_timestamp, timestamp_override, min_offset, tokens, topic,
 *                partition, null_str, limit) -> (bytes, printed, next_offset)
 *   Renders the records with offset >= min_offset through kcat's format tokens (kind, literal) until `limit`
 *   are printed (-1: no limit). Kinds: 0 literal, 1 %s, 2 %S, 3 %R, 4 %k, 5 %K, 6 %t, 7 %p, 8 %o, 9 %T, 10 %h.
 *   Raises ValueError on a malformed record.
 *
 * crc32c(data, crc=0) -> int
 *   CRC-32C (Castagnoli), slicing-by-8 tables built at import: the batch checksum, here so the command line does
 *   not pay the crc32c package's import (it loads importlib.metadata) on every start.
 *
 * txn_exchange(requests, end_fd, end_frame, frame_bytes_max, timeout_ms) -> (answers, end_answer, end_sent, error)
 *   The RAW writer's commit (loosely.hollow.raw._txn) in one release of the GIL. Why: a thread that gives the GIL
 *   up at a socket call takes it back only after the thread holding it lets go, which busy Python threads (the
 *   writer's callers) do at their switch interval, 5 ms; a commit in Python gives it up at each send and recv.
 *   The algorithm, all with the GIL released, against one deadline (poll() on the sockets, which may be in
 *   non-blocking mode: Python sockets with a timeout are):
 *     1. send each (fd, frame) of `requests` whole (the framed Produce requests, one per partition leader);
 *     2. read one framed answer from each fd in the same order: a 4-byte big-endian size (0 to frame_bytes_max)
 *        and the body;
 *     3. scan each answer (Produce v9-v12, flexible; header v1): correlation id, tagged fields, then per topic
 *        its name and per partition index, error_code, base_offset, log_append_time, log_start_offset,
 *        record_errors, error_message, tagged fields. Only if every partition has error_code 0 and a base
 *        offset >= 0, and end_frame is not empty:
 *     4. send end_frame (EndTxn) on end_fd and read its answer.
 *   It stops at the first failure (timeout, a closed or failing socket, an oversized answer); `error` says
 *   which (None if none). `answers` holds the bodies read (without the size), in order: an fd whose answer is
 *   not among them has an answer outstanding, so the caller drops that connection. `end_sent`: step 4 began
 *   (the transaction may have committed even if `end_answer` is None). The answers are decoded in Python, which
 *   decides everything else (retries, fencing, errors); the scan only decides whether to go on to EndTxn.
 *
 * json_compact(value) -> bytes | None
 *   The RAW writer's JSON (loosely.hollow.raw._codec): the bytes of
 *   json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(value).encode(), or None
 *   when `value` holds anything but exact dicts with str keys, lists, tuples, str, int, bool, None and finite
 *   floats, or nests deeper than JSON_DEPTH_MAX, or a str has no UTF-8 form (a lone surrogate): the caller then
 *   asks Python's encoder, which decides (and raises what it raises). Why: Python's encoder escapes a str one
 *   code point at a time through a switch (~3.5 ns a character here: 35 us of a 10 KB put, the largest piece of
 *   the writer's per-put work). The algorithm: one growing buffer; a dict's keys sorted with PyList_Sort (what
 *   sort_keys does: keys are unique, so sorting the items is sorting the keys); a str's UTF-8 bytes copied in
 *   runs between the bytes to escape, which are '"', '\\' and those under 0x20 ('\b' '\f' '\n' '\r' '\t' as
 *   such, the rest as \u00xx, lower-case hex), as CPython's escape_unicode does; bytes of 0x80 and over are
 *   parts of multi-byte characters and pass as they are; an int and a float as their repr (json's int.__repr__
 *   and float.__repr__ for exact types).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------------------- */
/* growable byte buffer */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(buf_t *b, const void *src, Py_ssize_t n) {
    if (n <= 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static int buf_varlong(buf_t *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    if (buf_reserve(b, 10) < 0)
        return -1;
    while (z >= 0x80) {
        b->p[b->len++] = (char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    b->p[b->len++] = (char)z;
    return 0;
}

static int buf_int(buf_t *b, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return buf_put(b, tmp, n);
}

static Py_ssize_t varlong_size(int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    Py_ssize_t n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* partitioners */

static uint32_t murmur2(const unsigned char *data, Py_ssize_t length) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    Py_ssize_t n4 = length / 4;
    for (Py_ssize_t i = 0; i < n4; i++) {
        const unsigned char *q = data + 4 * i;
        uint32_t k = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + 4 * n4;
    switch (length & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* CRC-32 (IEEE, zlib's crc32): librdkafka's consistent partitioner. Table built at import. */
static uint32_t crc32_ieee_table[256];

static uint32_t crc32_ieee(const unsigned char *p, Py_ssize_t n) {
    uint32_t c = 0xffffffffu;
    while (n-- > 0)
        c = crc32_ieee_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static const char *find(const char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m) {
    if (m == 1)
        return memchr(hay, needle[0], (size_t)n);
    return memmem(hay, (size_t)n, needle, (size_t)m);
}

/* ---------------------------------------------------------------------------------------------------------- */

static int put_record(buf_t *b, int64_t offset_delta, const char *key, Py_ssize_t klen, const char *value,
                      Py_ssize_t vlen, const char *headers, Py_ssize_t hlen) {
    /* key == NULL / value == NULL mean null */
    int64_t kl = key ? (int64_t)klen : -1, vl = value ? (int64_t)vlen : -1;
    Py_ssize_t body = 1 + varlong_size(0) + varlong_size(offset_delta) + varlong_size(kl) + (key ? klen : 0) +
                      varlong_size(vl) + (value ? vlen : 0) + hlen;
    if (buf_varlong(b, body) < 0 || buf_reserve(b, body) < 0)
        return -1;
    b->p[b->len++] = 0; /* attributes */
    if (buf_varlong(b, 0) < 0 || buf_varlong(b, offset_delta) < 0 || buf_varlong(b, kl) < 0)
        return -1;
    if (key && buf_put(b, key, klen) < 0)
        return -1;
    if (buf_varlong(b, vl) < 0)
        return -1;
    if (value && buf_put(b, value, vlen) < 0)
        return -1;
    return buf_put(b, headers, hlen);
}

static PyObject *encode_records(PyObject *self, PyObject *args) {
    Py_buffer data, delim;
    PyObject *key_delim_o, *fixed_key_o;
    int null_empty;
    Py_buffer headers;
    int partitions, mode, partition, keyless_partition;
    long long limit;
    if (!PyArg_ParseTuple(args, "y*y*OOpy*iiiiL", &data, &delim, &key_delim_o, &fixed_key_o, &null_empty, &headers,
                          &partitions, &mode, &partition, &keyless_partition, &limit))
        return NULL;
    PyObject *result = NULL;
    buf_t *bufs = NULL;
    int64_t *counts = NULL;
    const char *kd = NULL, *fk = NULL;
    Py_ssize_t kdl = 0, fkl = 0;
    if (partitions <= 0 || delim.len <= 0 || partition < 0 || partition >= partitions || keyless_partition < 0 ||
        keyless_partition >= partitions || mode < 0 || mode > 2) {
        PyErr_SetString(PyExc_ValueError, "bad partitions, partition, mode or empty delimiter");
        goto done;
    }
    if (key_delim_o != Py_None) {
        if (PyBytes_AsStringAndSize(key_delim_o, (char **)&kd, &kdl) < 0)
            goto done;
        if (kdl == 0)
            kd = NULL;
    }
    if (fixed_key_o != Py_None && PyBytes_AsStringAndSize(fixed_key_o, (char **)&fk, &fkl) < 0)
        goto done;
    bufs = PyMem_Calloc((size_t)partitions, sizeof(buf_t));
    counts = PyMem_Calloc((size_t)partitions, sizeof(int64_t));
    if (!bufs || !counts) {
        PyErr_NoMemory();
        goto done;
    }
    const char *p = data.buf, *end = p + data.len;
    long long consumed = 0;
    while (p < end && (limit < 0 || consumed < limit)) {
        const char *d = find(p, end - p, delim.buf, delim.len);
        const char *rec_end = d ? d : end;
        Py_ssize_t len = rec_end - p;
        if (len > 0) {
            const char *key = fk, *value = p;
            Py_ssize_t klen = fkl, vlen = len;
            if (kd) {
                const char *t = find(p, len, kd, kdl);
                if (t) {
                    key = p;
                    klen = t - p;
                    value = t + kdl;
                    vlen = len - klen - kdl;
                    if (null_empty) {
                        if (vlen == 0)
                            value = NULL;
                        if (klen == 0)
                            key = NULL;
                    }
                    if (!key) {
                        key = fk;
                        klen = fkl;
                    }
                }
            }
            int target = partition;
            if (mode != 0) {
                if (!key)
                    target = keyless_partition;
                else if (mode == 1)
                    target = (int)((murmur2((const unsigned char *)key, klen) & 0x7fffffff) % (uint32_t)partitions);
                else
                    target = (int)(crc32_ieee((const unsigned char *)key, klen) % (uint32_t)partitions);
            }
            if (put_record(&bufs[target], counts[target], key, klen, value, vlen, headers.buf, headers.len) < 0)
                goto done;
            counts[target]++;
            consumed++;
        }
        p = d ? d + delim.len : end;
    }
    PyObject *parts = PyList_New(partitions), *cnts = PyList_New(partitions);
    if (!parts || !cnts) {
        Py_XDECREF(parts);
        Py_XDECREF(cnts);
        goto done;
    }
    for (int i = 0; i < partitions; i++) {
        PyObject *o = counts[i] ? PyBytes_FromStringAndSize(bufs[i].p, bufs[i].len) : Py_NewRef(Py_None);
        PyObject *c = PyLong_FromLongLong(counts[i]);
        if (!o || !c) {
            Py_XDECREF(o);
            Py_XDECREF(c);
            Py_DECREF(parts);
            Py_DECREF(cnts);
            goto done;
        }
        PyList_SET_ITEM(parts, i, o);
        PyList_SET_ITEM(cnts, i, c);
    }
    result = Py_BuildValue("(NNL)", parts, cnts, consumed);
done:
    if (bufs) {
        for (int i = 0; i < partitions; i++)
            PyMem_Free(bufs[i].p);
        PyMem_Free(bufs);
    }
    PyMem_Free(counts);
    PyBuffer_Release(&data);
    PyBuffer_Release(&delim);
    PyBuffer_Release(&headers);
    return result;
}

/* ---------------------------------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
} reader_t;

static int rd_varlong(reader_t *r, int64_t *out) {
    uint64_t z = 0;
    int shift = 0;
    while (r->p < r->end && shift < 64) {
        unsigned char c = *r->p++;
        z |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            return 0;
        }
        shift += 7;
    }
    PyErr_SetString(PyExc_ValueError, "malformed record: bad varint");
    return -1;
}

static int rd_bytes(reader_t *r, const char **out, int64_t *len) {
    if (rd_varlong(r, len) < 0)
        return -1;
    if (*len < 0) {
        *out = NULL;
        return 0;
    }
    if (*len > r->end - r->p) {
        PyErr_SetString(PyExc_ValueError, "malformed record: field longer than the record");
        return -1;
    }
    *out = (const char *)r->p;
    r->p += *len;
    return 0;
}

enum { T_STR, T_S, T_SLEN, T_RLEN, T_K, T_KLEN, T_TOPIC, T_PART, T_OFF, T_TS, T_HDRS };

typedef struct {
    int kind;
    const char *text;
    Py_ssize_t len;
} token_t;

static PyObject *format_records(PyObject *self, PyObject *args) {
    Py_buffer recs;
    long long count, base_offset, base_ts, ts_override, min_offset, limit;
    PyObject *tokens_o, *null_o;
    Py_buffer topic;
    int partition;
    if (!PyArg_ParseTuple(args, "y*LLLLLOy*iOL", &recs, &count, &base_offset, &base_ts, &ts_override, &min_offset,
                          &tokens_o, &topic, &partition, &null_o, &limit))
        return NULL;
    PyObject *result = NULL;
    token_t *tokens = NULL;
    buf_t out = {0};
    const char *null_str = "";
    Py_ssize_t null_len = 0;
    if (null_o != Py_None && PyBytes_AsStringAndSize(null_o, (char **)&null_str, &null_len) < 0)
        goto done;
    Py_ssize_t nt = PySequence_Length(tokens_o);
    if (nt < 0)
        goto done;
    tokens = PyMem_Calloc((size_t)(nt ? nt : 1), sizeof(token_t));
    if (!tokens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nt; i++) {
        PyObject *t = PySequence_GetItem(tokens_o, i);
        if (!t)
            goto done;
        int ok = PyArg_ParseTuple(t, "iy#", &tokens[i].kind, &tokens[i].text, &tokens[i].len);
        Py_DECREF(t); /* the literal stays alive in tokens_o */
        if (!ok)
            goto done;
    }
    reader_t r = {recs.buf, (const unsigned char *)recs.buf + recs.len};
    long long printed = 0, next_offset = min_offset;
    for (long long n = 0; n < count && (limit < 0 || printed < limit); n++) {
        int64_t length, ts_delta, off_delta, klen, vlen, hcount;
        if (rd_varlong(&r, &length) < 0)
            goto done;
        if (length < 0 || length > r.end - r.p) {
            PyErr_SetString(PyExc_ValueError, "malformed record: length past the batch");
            goto done;
        }
        reader_t rec = {r.p, r.p + length};
        r.p += length;
        rec.p++; /* attributes */
        const char *key, *value;
        if (rd_varlong(&rec, &ts_delta) < 0 || rd_varlong(&rec, &off_delta) < 0 || rd_bytes(&rec, &key, &klen) < 0 ||
            rd_bytes(&rec, &value, &vlen) < 0 || rd_varlong(&rec, &hcount) < 0)
            goto done;
        long long offset = base_offset + off_delta;
        if (offset < min_offset)
            continue;
        next_offset = offset + 1;
        const unsigned char *hdrs = rec.p;
        long long ts = ts_override >= 0 ? ts_override : base_ts + ts_delta;
        for (Py_ssize_t i = 0; i < nt; i++) {
            token_t *t = &tokens[i];
            int rc = 0;
            switch (t->kind) {
            case T_STR:
                rc = buf_put(&out, t->text, t->len);
                break;
            case T_S:
                rc = vlen > 0 ? buf_put(&out, value, vlen) : buf_put(&out, null_str, null_len);
                break;
            case T_K:
                rc = klen > 0 ? buf_put(&out, key, klen) : buf_put(&out, null_str, null_len);
                break;
            case T_SLEN:
                rc = buf_int(&out, vlen < 0 ? -1 : vlen);
                break;
            case T_KLEN:
                rc = buf_int(&out, klen < 0 ? -1 : klen);
                break;
            case T_RLEN: {
                uint32_t v = (uint32_t)(vlen < 0 ? -1 : vlen);
                unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                                       (unsigned char)v};
                rc = buf_put(&out, be, 4);
                break;
            }
            case T_TOPIC:
                rc = buf_put(&out, topic.buf, topic.len);
                break;
            case T_PART:
                rc = buf_int(&out, partition);
                break;
            case T_OFF:
                rc = buf_int(&out, offset);
                break;
            case T_TS:
                rc = buf_int(&out, ts);
                break;
            case T_HDRS: {
                reader_t h = {hdrs, rec.end};
                for (int64_t j = 0; j < hcount && rc == 0; j++) {
                    const char *hk, *hv;
                    int64_t hkl, hvl;
                    if (rd_bytes(&h, &hk, &hkl) < 0 || rd_bytes(&h, &hv, &hvl) < 0)
                        goto done;
                    if ((j && buf_put(&out, ",", 1) < 0) || buf_put(&out, hk, hkl) < 0 || buf_put(&out, "=", 1) < 0)
                        goto done;
                    if (!hv)
                        rc = buf_put(&out, "NULL", 4);
                    else
                        rc = buf_put(&out, hv, hvl);
                }
                break;
            }
            default:
                PyErr_SetString(PyExc_ValueError, "unknown format token");
                goto done;
            }
            if (rc < 0)
                goto done;
        }
        printed++;
    }
    result = Py_BuildValue("(y#LL)", out.p ? out.p : "", out.len, printed, next_offset);
done:
    PyMem_Free(out.p);
    PyMem_Free(tokens);
    PyBuffer_Release(&recs);
    PyBuffer_Release(&topic);
    return result;
}

/* ---------------------------------------------------------------------------------------------------------- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
        crc32_ieee_table[i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, Py_ssize_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
              crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
              crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

static PyObject *crc32c_py(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &data, &crc))
        return NULL;
    uint32_t out;
    Py_BEGIN_ALLOW_THREADS
    out = crc32c_update(crc, data.buf, data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(out);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* the RAW writer's commit exchange (see txn_exchange in the header) */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait until fd is ready for `events` or the deadline passes: 0 ready, -1 with *why set */
static int wait_fd(int fd, short events, int64_t deadline_ms, const char **why, int *err) {
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0) {
            *why = "timed out";
            return -1;
        }
        struct pollfd p = {fd, events, 0};
        int rc = poll(&p, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (rc > 0)
            return 0; /* readable, writable or in error: the next recv or send says which */
        if (rc < 0 && errno != EINTR) {
            *why = NULL;
            *err = errno;
            return -1;
        }
    }
}

static int send_all(int fd, const char *p, Py_ssize_t n, int64_t deadline_ms, const char **why, int *err) {
    while (n > 0) {
        ssize_t k = send(fd, p, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= k;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline_ms, why, err) < 0)
                return -1;
        } else if (k < 0 && errno != EINTR) {
            *why = NULL;
            *err = errno;
            return -1;
        }
    }
    return 0;
}

static int recv_all(int fd, char *p, Py_ssize_t n, int64_t deadline_ms, const char **why, int *err) {
    while (n > 0) {
        ssize_t k = recv(fd, p, (size_t)n, MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            n -= k;
        } else if (k == 0) {
            *why = "the broker closed the connection";
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLIN, deadline_ms, why, err) < 0)
                return -1;
        } else if (errno != EINTR) {
            *why = NULL;
            *err = errno;
            return -1;
        }
    }
    return 0;
}

/* one framed answer: its body (without the size) in a PyMem_RawMalloc'd buffer */
static int recv_frame(int fd, int64_t frame_bytes_max, int64_t deadline_ms, char **out, Py_ssize_t *out_len,
                      const char **why, int *err) {
    unsigned char size_be[4];
    if (recv_all(fd, (char *)size_be, 4, deadline_ms, why, err) < 0)
        return -1;
    int32_t size = (int32_t)((uint32_t)size_be[0] << 24 | (uint32_t)size_be[1] << 16 | (uint32_t)size_be[2] << 8 |
                             (uint32_t)size_be[3]);
    if (size < 0 || size > frame_bytes_max) {
        *why = "an answer over the frame size limit";
        return -1;
    }
    char *body = PyMem_RawMalloc(size ? (size_t)size : 1);
    if (!body) {
        *why = "out of memory";
        return -1;
    }
    if (recv_all(fd, body, size, deadline_ms, why, err) < 0) {
        PyMem_RawFree(body);
        return -1;
    }
    *out = body;
    *out_len = size;
    return 0;
}

/* a bounds-checked cursor over a flexible-version answer */
typedef struct {
    const unsigned char *p, *end;
} cur_t;

static int cur_skip(cur_t *c, uint64_t n) {
    if ((uint64_t)(c->end - c->p) < n)
        return -1;
    c->p += n;
    return 0;
}

static int cur_uvarint(cur_t *c, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end)
            return -1;
        unsigned char b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int cur_be(cur_t *c, int bytes, int64_t *out) {
    if (c->end - c->p < bytes)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | c->p[i];
    c->p += bytes;
    if (bytes < 8 && (v >> (bytes * 8 - 1)) & 1) /* sign-extend */
        v |= ~(uint64_t)0 << (bytes * 8);
    *out = (int64_t)v;
    return 0;
}

/* compact string or bytes (length + 1, 0: null) */
static int cur_compact(cur_t *c) {
    uint64_t n;
    if (cur_uvarint(c, &n) < 0)
        return -1;
    return n ? cur_skip(c, n - 1) : 0;
}

static int cur_tags(cur_t *c) {
    uint64_t count, tag, size;
    if (cur_uvarint(c, &count) < 0)
        return -1;
    while (count--)
        if (cur_uvarint(c, &tag) < 0 || cur_uvarint(c, &size) < 0 || cur_skip(c, size) < 0)
            return -1;
    return 0;
}

/* 1: a Produce answer (v9 to v12, the flexible ones that name topics) where every partition landed: error 0 and
   a base offset; 0: anything else, malformed included (Python decodes it and decides) */
static int produce_landed(const unsigned char *body, Py_ssize_t len) {
    cur_t c = {body, body + len};
    int64_t v;
    uint64_t topics, partitions, n;
    if (cur_skip(&c, 4) < 0 || cur_tags(&c) < 0 || cur_uvarint(&c, &topics) < 0 || topics < 2)
        return 0;
    for (uint64_t t = 1; t < topics; t++) {
        if (cur_compact(&c) < 0 || cur_uvarint(&c, &partitions) < 0 || partitions < 2)
            return 0;
        for (uint64_t q = 1; q < partitions; q++) {
            if (cur_skip(&c, 4) < 0 || cur_be(&c, 2, &v) < 0 || v != 0) /* index, error_code */
                return 0;
            if (cur_be(&c, 8, &v) < 0 || v < 0) /* base_offset */
                return 0;
            if (cur_skip(&c, 16) < 0 || cur_uvarint(&c, &n) < 0) /* log_append_time, log_start_offset */
                return 0;
            for (uint64_t e = 1; e < n; e++) /* record_errors */
                if (cur_skip(&c, 4) < 0 || cur_compact(&c) < 0 || cur_tags(&c) < 0)
                    return 0;
            if (cur_compact(&c) < 0 || cur_tags(&c) < 0) /* error_message, tagged fields */
                return 0;
        }
        if (cur_tags(&c) < 0)
            return 0;
    }
    return 1;
}

static PyObject *txn_exchange(PyObject *self, PyObject *args) {
    PyObject *requests;
    int end_fd;
    Py_buffer end = {0};
    long long frame_bytes_max, timeout_ms;
    if (!PyArg_ParseTuple(args, "O!iy*LL", &PyList_Type, &requests, &end_fd, &end, &frame_bytes_max,
                          &timeout_ms))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(requests);
    int *fds = PyMem_Calloc((size_t)n + 1, sizeof(int));
    Py_buffer *frames = PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    char **answers = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    Py_ssize_t *answer_lens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    PyObject *result = NULL, *list = NULL;
    Py_ssize_t got = 0, taken = 0;
    char *end_answer = NULL;
    Py_ssize_t end_len = 0;
    int end_sent = 0;
    const char *why = NULL;
    int err = 0;
    if (!fds || !frames || !answers || !answer_lens) {
        PyErr_NoMemory();
        goto done;
    }
    for (; taken < n; taken++) {
        PyObject *item = PyList_GET_ITEM(requests, taken);
        if (!PyArg_ParseTuple(item, "iy*", &fds[taken], &frames[taken]))
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    int64_t deadline = now_ms() + timeout_ms;
    Py_ssize_t sent = 0;
    for (; sent < n; sent++)
        if (send_all(fds[sent], frames[sent].buf, frames[sent].len, deadline, &why, &err) < 0)
            break;
    if (sent == n) {
        for (; got < n; got++)
            if (recv_frame(fds[got], frame_bytes_max, deadline, &answers[got], &answer_lens[got], &why, &err) < 0)
                break;
    }
    int landed = got == n;
    for (Py_ssize_t i = 0; landed && i < n; i++)
        landed = produce_landed((const unsigned char *)answers[i], answer_lens[i]);
    if (landed && end.len > 0) {
        end_sent = 1; /* from here on the commit may happen: Python reports it uncertain if unanswered */
        if (send_all(end_fd, end.buf, end.len, deadline, &why, &err) == 0)
            recv_frame(end_fd, frame_bytes_max, deadline, &end_answer, &end_len, &why, &err);
    }
    Py_END_ALLOW_THREADS
    if (err)
        why = strerror(err);
    list = PyList_New(got);
    if (!list)
        goto done;
    for (Py_ssize_t i = 0; i < got; i++) {
        PyObject *b = PyBytes_FromStringAndSize(answers[i], answer_lens[i]);
        if (!b)
            goto done;
        PyList_SET_ITEM(list, i, b);
    }
    if (end_answer)
        result = Py_BuildValue("(Oy#Os)", list, end_answer, end_len, end_sent ? Py_True : Py_False, why);
    else
        result = Py_BuildValue("(OOOs)", list, Py_None, end_sent ? Py_True : Py_False, why);
done:
    Py_XDECREF(list);
    for (Py_ssize_t i = 0; i < taken; i++)
        PyBuffer_Release(&frames[i]);
    if (answers)
        for (Py_ssize_t i = 0; i < n; i++)
            PyMem_RawFree(answers[i]);
    PyMem_RawFree(end_answer);
    PyMem_Free(fds);
    PyMem_Free(frames);
    PyMem_Free(answers);
    PyMem_Free(answer_lens);
    PyBuffer_Release(&end);
    return result;
}

/* --- json_compact ------------------------------------------------------------------------------------------- */

#define JSON_DEPTH_MAX 64
#define JSON_UNSUPPORTED 1 /* not ours to encode: the caller falls back to Python (no exception set) */

static int json_str(buf_t *b, PyObject *s) {
    const unsigned char *p;
    Py_ssize_t n;
    PyObject *utf8 = NULL;
    if (PyUnicode_IS_ASCII(s)) { /* the str's own bytes are its UTF-8 */
        p = (const unsigned char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    } else {
        utf8 = PyUnicode_AsUTF8String(s); /* a copy: AsUTF8AndSize would cache one in the caller's str */
        if (!utf8) {
            PyErr_Clear(); /* a lone surrogate: Python's encoder raises its own error */
            return JSON_UNSUPPORTED;
        }
        p = (const unsigned char *)PyBytes_AS_STRING(utf8);
        n = PyBytes_GET_SIZE(utf8);
    }
    int rc = -1;
    if (buf_reserve(b, n + 2) < 0)
        goto out;
    b->p[b->len++] = '"';
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* eight bytes at a time while none is to escape (a byte under 0x20, '"' or '\\': the zero-byte test of
           Hacker's Delight on the word, its xors with '"' and '\\') */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
            if (((w - ones * 0x20) & ~w & highs) | ((q - ones) & ~q & highs) | ((bs - ones) & ~bs & highs))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (buf_put(b, (const char *)p + run, i - run) < 0)
            goto out;
        run = i + 1;
        char esc[6] = {'\\', 0, '0', '0', 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[4] = "0123456789abcdef"[c >> 4];
            esc[5] = "0123456789abcdef"[c & 15];
            len = 6;
        }
        if (buf_put(b, esc, len) < 0)
            goto out;
    }
    if (buf_put(b, (const char *)p + run, n - run) < 0 || buf_put(b, "\"", 1) < 0)
        goto out;
    rc = 0;
out:
    Py_XDECREF(utf8);
    return rc;
}

static int json_repr(buf_t *b, PyObject *v) {
    PyObject *r = PyObject_Repr(v);
    if (!r) {
        PyErr_Clear(); /* an int over the digit limit: Python's encoder raises its own error */
        return JSON_UNSUPPORTED;
    }
    int rc = buf_put(b, PyUnicode_DATA(r), PyUnicode_GET_LENGTH(r)); /* ASCII */
    Py_DECREF(r);
    return rc;
}

static int json_value(buf_t *b, PyObject *v, int depth) {
    if (v == Py_None)
        return buf_put(b, "null", 4);
    if (v == Py_True)
        return buf_put(b, "true", 4);
    if (v == Py_False)
        return buf_put(b, "false", 5);
    if (PyUnicode_CheckExact(v))
        return json_str(b, v);
    if (PyLong_CheckExact(v))
        return json_repr(b, v);
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (isnan(d) || isinf(d))
            return JSON_UNSUPPORTED; /* json writes NaN and Infinity: Python does it */
        return json_repr(b, v);
    }
    if (depth >= JSON_DEPTH_MAX)
        return JSON_UNSUPPORTED;
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        /* a list may change while its items' reprs run Python code? exact ints, floats and strs run none */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        if (buf_put(b, "[", 1) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && buf_put(b, ",", 1) < 0)
                return -1;
            int rc = json_value(b, PySequence_Fast_GET_ITEM(v, i), depth + 1);
            if (rc)
                return rc;
        }
        return buf_put(b, "]", 1);
    }
    if (PyDict_CheckExact(v)) {
        PyObject *keys = PyDict_Keys(v);
        if (!keys)
            return -1;
        int rc = 0;
        Py_ssize_t n = PyList_GET_SIZE(keys);
        for (Py_ssize_t i = 0; i < n && !rc; i++)
            if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i)))
                rc = JSON_UNSUPPORTED; /* json turns int, float, bool and None keys to text: Python does it */
        if (!rc && PyList_Sort(keys) < 0)
            rc = -1;
        if (!rc)
            rc = buf_put(b, "{", 1);
        for (Py_ssize_t i = 0; i < n && !rc; i++) {
            PyObject *k = PyList_GET_ITEM(keys, i);
            PyObject *item = PyDict_GetItemWithError(v, k);
            if (!item) {
                rc = PyErr_Occurred() ? -1 : JSON_UNSUPPORTED;
                break;
            }
            Py_INCREF(item);
            if (i)
                rc = buf_put(b, ",", 1);
            if (!rc)
                rc = json_str(b, k);
            if (!rc)
                rc = buf_put(b, ":", 1);
            if (!rc)
                rc = json_value(b, item, depth + 1);
            Py_DECREF(item);
        }
        if (!rc)
            rc = buf_put(b, "}", 1);
        Py_DECREF(keys);
        return rc;
    }
    return JSON_UNSUPPORTED;
}

static PyObject *json_compact(PyObject *self, PyObject *value) {
    buf_t b = {NULL, 0, 0};
    int rc = json_value(&b, value, 0);
    PyObject *out = NULL;
    if (rc == 0)
        out = PyBytes_FromStringAndSize(b.p, b.len);
    else if (rc == JSON_UNSUPPORTED)
        out = Py_NewRef(Py_None);
    PyMem_Free(b.p);
    return out;
}

static PyMethodDef methods[] = {
    {"crc32c", crc32c_py, METH_VARARGS, "CRC-32C of a buffer, continuing from crc."},
    {"encode_records", encode_records, METH_VARARGS, "Lines to records, one records section per partition."},
    {"format_records", format_records, METH_VARARGS, "Records to kcat-formatted text."},
    {"json_compact", json_compact, METH_O, "Compact, key-sorted JSON as UTF-8 bytes, or None: Python decides."},
    {"txn_exchange", txn_exchange, METH_VARARGS, "Produce requests, their answers, then EndTxn, without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "loosely.clients._fast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fast(void) {
    crc_init();
    return PyModule_Create(&module);
}
