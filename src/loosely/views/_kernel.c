/*
 * The built-in views' kernels (count by key, latest value by key): the runner's per-record loop, in C.
 *
 * Why C: for count_by_key and latest_by_key over a folding sink (SQL, memory, Hollow), the runner's main thread
 * does per record only this: ask the confluent-kafka message for its error, partition, topic, key (and value),
 * decode the key, and store it into the batch's fold. In Python that loop cost about a microsecond a record, the
 * largest share of the main thread after the client's own work, and the main thread is the one the runner waits
 * on (the SQL write runs beside it in the writer thread, without the GIL). Everything else (runs of partitions,
 * revoked partitions, consumer error events, poison records, dead letters, end offsets and timestamps) stays in
 * Python, in loosely.views._build, which calls fold() once per run of records of one partition.
 *
 * fold(msgs, start, topic, partition, target, mode, decode) -> (stop, records, keyless, last)
 *
 * Algorithm: for i = start, start+1, ... while i < len(msgs), with m = msgs[i]:
 *   1. stop at m (leave it to the Python loop) when m.error() is not None, when m.partition() != partition or
 *      m.topic() != topic (the run ends), when the key is neither None nor bytes, or (mode 1, 2) the value is
 *      neither None nor bytes, or (mode 2) the value is not valid UTF-8, or (mode 3) decode(value) raised
 *      (a poison record: the Python loop decodes it again and applies the poison policy);
 *   2. count m as a record and remember it as `last`; a None key is counted in `keyless` and changes nothing;
 *   3. the key becomes str as bytes.decode("utf-8", "surrogateescape") would make it;
 *   4. mode 0 (count): target[key] = target.get(key, 0) + 1;
 *      mode 1 (latest, values as bytes): target[key] = value (None for a tombstone);
 *      mode 2 (latest, values as str): target[key] = value.decode("utf-8") (None for a tombstone);
 *      mode 3 (latest, another deserializer): target[key] = decode(value) (None for a tombstone).
 * `stop` is the index of the first message not handled (len(msgs) when all were), `records` and `keyless` the
 * counts of step 2, `last` the last message handled (None when none was): its offset and timestamp end the run.
 * The result equals the Python loop's over the same messages (tests/views/test_build.py runs both).
 *
 * fold_records(records, count, base_offset, base_timestamp, timestamp_override, min_offset, limit, target, mode,
 *              decode) -> (records, keyless, last_offset, last_timestamp, stop_offset)
 *
 * Why: the runner's fast source (loosely.clients.batch_consumer) hands over whole fetched record batches, so no
 * Python object is made per message (confluent-kafka makes one, and is not even imported then). `records` is the
 * records section of one v2 batch, decompressed; `count` its record count. Algorithm: walk the records in order,
 * each a varint length, an attributes byte, zigzag varints timestampDelta, offsetDelta, keyLength (-1: null), the
 * key, valueLength, the value, then headers (passed over; the built-in views do not read them). A record's offset
 * is base_offset + offsetDelta, its timestamp timestamp_override when that is >= 0 (LogAppendTime) else
 * base_timestamp + timestampDelta. Records below min_offset are passed over (a fetch starts at the batch that holds
 * the position). A record is stopped at (left to the Python loop) when `limit` records were taken already or when
 * its value is refused (mode 2: not UTF-8; mode 3: decode raised); otherwise it is counted and folded as in fold()
 * steps 2-4. stop_offset is the offset of the record stopped at, -1 when every record was taken; last_offset and
 * last_timestamp are the last record taken's (-1 when none was). A record that runs past the section's end is
 * an error (ValueError), never a read out of bounds.
 *
 * Mode 4 (latest value as UTF-8 text, into a LatestText table instead of a dict): the same walk; a value that is
 * not valid UTF-8 is stopped at as in mode 2, and so is a record the table has no room for (its arena's offsets
 * are 32-bit: at most arena_bytes_max bytes, 4 GiB - 1 by default), which the caller then folds into a dict;
 * nothing is decoded into a Python object. See LatestText below.
 *
 * LatestText: a latest-value fold of text values kept as bytes in C, for the SQLite sink.
 *
 * Why: a batch's fold as a dict of str -> str costs about 180 bytes per key (two str objects and a dict entry),
 * 7-8 MiB for the 40k keys of a 50k-record batch, most of a runner's memory; and the sink then spent a quarter of
 * its time sorting the rows (ORDER BY key) in SQLite. Here a key costs its bytes, its value's bytes and a 24-byte
 * entry, and the rows come out sorted, in documents of a bounded number of rows each, so SQLite never holds the
 * whole batch's document nor sorts it. The documents take about half the table's memory: the sink makes them
 * when it prepares the write and lets the table go.
 * Algorithm: an arena of bytes; an array of 24-byte entries (32-bit hash, key offset and length, value offset,
 * length and capacity; value length -1 is a tombstone); an open-addressing table of entry indexes (linear
 * probing, kept at most half full, doubled when it is). The arena and the entries grow by half when full. put(key, value): find the key's entry by hash and bytes; a new key appends
 * its bytes and its value's bytes (capacity = length) to the arena; a known key's new value overwrites the old
 * one in place when it fits the old capacity (values of one key are mostly the same length), else it is appended
 * and the entry points there (the old bytes stay unused until the table is freed). A key that is not valid UTF-8
 * or holds a NUL byte, or a value that holds a NUL byte, clears `vouched` (json_each ends a text at a NUL; SQL
 * text is UTF-8): the sink then asks to_dict() for the dict the other modes build and takes its general path.
 * sort() orders the entries by key bytes (memcmp, shorter first on a tie: SQLite's BINARY order of UTF-8 text,
 * which is code point order), without the GIL, by a radix sort of the keys' 8-byte prefixes (lt_radix_sort);
 * document(start, rows_max) writes entries start .. start+rows_max-1 in that order as one JSON object (the format document() below writes) and returns (text, next start, whether
 * it holds a null). Valid UTF-8 is checked as Python's strict decoder does (no overlong forms, no surrogates,
 * nothing above U+10FFFF). One thread at a time uses a LatestText (the runner's main thread folds it and makes
 * its documents); sort() and document() let other threads run while they read it, not write it.
 *
 * document(rows) -> str | None: json.dumps(rows, ensure_ascii=False, separators=(",", ":")), the batch's rows as
 * one JSON object for the SQL sinks' statements (loosely.views._sql.batch_document), or None where this writer does
 * not vouch for the same text and the caller must use json.dumps.
 *
 * Why: json's C encoder makes a new str for every key and value it escapes and a list of pieces it joins at the
 * end; on the latest-value view that was the runner's largest main-thread cost after the loop above (py-spy,
 * 2026-12-07). Algorithm: rows must be a dict whose keys are str and whose values are str, int (not bool) or
 * None; anything else (a float, a bool, an int beyond 64 bits, a list, a str holding a NUL character or a lone
 * surrogate) returns None. One pass writes UTF-8 into a growing buffer: '{', then per item the key as a JSON
 * string, ':', the value (a JSON string; the int in decimal; null), ',' between items, '}'. A JSON string is '"',
 * the text with '"' and '\' escaped by a backslash, \b \f \n \r \t as two characters, every other character
 * below 0x20 as \u00XX (lower-case hex, as json.dumps writes it), everything else as its UTF-8 bytes, then '"'.
 * The buffer is decoded once into the str returned. tests/views/test_build.py checks it against json.dumps.
 *
 * Messages are read through their methods (vectorcall, names interned once), so any object with confluent-kafka's
 * Message methods works, as the tests' stand-ins do; nothing depends on the client's struct layout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

/* Large buffers (LatestText's arrays, the documents' text) come straight from the kernel on Linux: mmap, mremap to
 * grow (no copy), munmap to give them back at once. Through malloc, each free of a large block raised glibc's
 * mmap threshold, later blocks came from the heap and the heap kept the freed space: measured 2026-12-07, 2-2.5 MiB
 * more peak RSS on the views benchmark. Sizes are rounded up to whole pages. Both work without the GIL. */
static size_t page_round(size_t n) {
#ifdef __linux__
    static size_t page = 0;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
#else
    return n;
#endif
}

/* p (of old bytes, NULL for none) resized to new bytes, zeroed where new (with zero set: a fresh block only);
 * NULL when there is no memory (p is then unchanged). */
static void *big_resize(void *p, size_t old, size_t new, int zero) {
#ifdef __linux__
    void *q = p ? mremap(p, page_round(old), page_round(new), MREMAP_MAYMOVE)
                : mmap(NULL, page_round(new), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)zero; /* fresh anonymous pages are zero */
    return q == MAP_FAILED ? NULL : q;
#else
    if (!p && zero)
        return PyMem_RawCalloc(1, new);
    (void)old;
    return PyMem_RawRealloc(p, new);
#endif
}

static void big_free(void *p, size_t size) {
    if (!p)
        return;
#ifdef __linux__
    munmap(p, page_round(size));
#else
    (void)size;
    PyMem_RawFree(p);
#endif
}

static PyObject *s_error, *s_partition, *s_topic, *s_key, *s_value;

static inline PyObject *call0(PyObject *m, PyObject *name) {
    PyObject *args[1] = {m};
    return PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* 1 when m belongs to the run (same partition and topic), 0 when not, -1 on an error. */
static int same_run(PyObject *m, PyObject *topic, long partition) {
    PyObject *p = call0(m, s_partition);
    if (!p)
        return -1;
    long pv = PyLong_Check(p) ? PyLong_AsLong(p) : -1;
    Py_DECREF(p);
    if (pv == -1 && PyErr_Occurred())
        return -1;
    if (pv != partition)
        return 0;
    PyObject *t = call0(m, s_topic);
    if (!t)
        return -1;
    int same = t == topic || (PyUnicode_Check(t) && PyUnicode_Compare(t, topic) == 0);
    Py_DECREF(t);
    if (PyErr_Occurred())
        return -1;
    return same;
}

static PyObject *fold(PyObject *self, PyObject *args) {
    PyObject *msgs, *topic, *target;
    Py_ssize_t start;
    long partition;
    PyObject *decode;
    int mode;
    if (!PyArg_ParseTuple(args, "O!nUlO!iO", &PyList_Type, &msgs, &start, &topic, &partition, &PyDict_Type, &target,
                          &mode, &decode))
        return NULL;
    if (mode < 0 || mode > 3) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (count), 1 (latest, bytes), 2 (latest, str) or 3");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(msgs), i = start < 0 ? 0 : start, records = 0, keyless = 0;
    PyObject *last = Py_None, *one = NULL, *m = NULL;
    Py_INCREF(last);
    for (; i < n; i++) {
        m = PyList_GET_ITEM(msgs, i);
        Py_INCREF(m); /* the list may change under a method call; keep m alive */
        PyObject *err = call0(m, s_error);
        if (!err)
            goto fail_m;
        int bad = err != Py_None;
        Py_DECREF(err);
        if (bad) {
            Py_DECREF(m);
            break;
        }
        int same = same_run(m, topic, partition);
        if (same < 0)
            goto fail_m;
        if (!same) {
            Py_DECREF(m);
            break;
        }
        PyObject *k = call0(m, s_key);
        if (!k)
            goto fail_m;
        if (k != Py_None && !PyBytes_Check(k)) {
            Py_DECREF(k);
            Py_DECREF(m);
            break;
        }
        PyObject *v = NULL; /* mode 1, 2: what target[key] becomes */
        if (mode != 0) {
            PyObject *raw = call0(m, s_value);
            if (!raw) {
                Py_DECREF(k);
                goto fail_m;
            }
            if (raw != Py_None && !PyBytes_Check(raw)) {
                Py_DECREF(raw);
                Py_DECREF(k);
                Py_DECREF(m);
                break;
            }
            if (mode >= 2 && raw != Py_None) {
                if (mode == 2)
                    v = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL);
                else
                    v = PyObject_CallOneArg(decode, raw);
                Py_DECREF(raw);
                if (!v) {
                    if (!PyErr_ExceptionMatches(mode == 2 ? PyExc_UnicodeDecodeError : PyExc_Exception)) {
                        Py_DECREF(k);
                        goto fail_m;
                    }
                    PyErr_Clear(); /* poison: the Python loop decodes it again and applies the policy */
                    Py_DECREF(k);
                    Py_DECREF(m);
                    break;
                }
            } else {
                v = raw;
            }
        }
        records++;
        Py_SETREF(last, m); /* takes m's reference */
        if (k == Py_None) {
            keyless++;
            Py_DECREF(k);
            Py_XDECREF(v);
            continue;
        }
        PyObject *key = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), "surrogateescape");
        Py_DECREF(k);
        if (!key) {
            Py_XDECREF(v);
            goto fail;
        }
        int rc;
        if (mode == 0) {
            PyObject *old = PyDict_GetItemWithError(target, key); /* borrowed */
            PyObject *sum;
            if (old) {
                if (!one && !(one = PyLong_FromLong(1))) {
                    Py_DECREF(key);
                    goto fail;
                }
                sum = PyNumber_Add(old, one);
            } else if (PyErr_Occurred()) {
                sum = NULL;
            } else {
                sum = PyLong_FromLong(1);
            }
            if (!sum) {
                Py_DECREF(key);
                goto fail;
            }
            rc = PyDict_SetItem(target, key, sum);
            Py_DECREF(sum);
        } else {
            rc = PyDict_SetItem(target, key, v);
            Py_DECREF(v);
        }
        Py_DECREF(key);
        if (rc < 0)
            goto fail;
    }
    Py_XDECREF(one);
    return Py_BuildValue("nnnN", i, records, keyless, last);
fail_m:
    Py_DECREF(m);
fail:
    Py_XDECREF(one);
    Py_DECREF(last);
    return NULL;
}


/* -- LatestText: see the file header ------------------------------------------------------------------------- */

typedef struct {
    uint32_t hash, key_off, key_len, val_off, val_cap;
    int32_t val_len; /* -1: a tombstone */
} LtEntry;         /* 24 bytes */

typedef struct {
    PyObject_HEAD
    char *arena;
    size_t arena_len, arena_cap;
    LtEntry *entries;
    Py_ssize_t n, entries_cap;
    int32_t *slots; /* entry index + 1; 0 empty */
    size_t nslots;  /* a power of two */
    size_t arena_bytes_max; /* offsets are 32-bit: at most 2**32 - 1 */
    int vouched, has_null, sorted;
} LatestText;

static PyTypeObject LatestTextType;

/* 1 when s[0:n] is valid UTF-8 as Python's strict decoder reads it, 0 when not */
static int utf8_ok(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0)) /* overlong; a surrogate */
                return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90)) /* overlong; over U+10FFFF */
                return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static uint32_t lt_hash(const unsigned char *k, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= k[i];
        h *= 1099511628211ULL;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* n bytes at the arena's end; its offset, or -1 (no memory, or past 4 GiB: not for one batch) */
static long long lt_append(LatestText *t, const unsigned char *p, Py_ssize_t n) {
    if (t->arena_len + (size_t)n > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 65536;
        while (cap < t->arena_len + (size_t)n)
            cap += cap / 2; /* 1.5x: less slack than doubling, as few copies as it takes */
        if (cap > t->arena_bytes_max)
            cap = t->arena_bytes_max; /* lt_put checked that arena_len + n fits */
        char *a = big_resize(t->arena, t->arena_cap, cap, 0);
        if (!a)
            return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    long long off = (long long)t->arena_len;
    if (n)
        memcpy(t->arena + off, p, (size_t)n);
    t->arena_len += (size_t)n;
    return off;
}

static int lt_rehash(LatestText *t, size_t nslots) {
    int32_t *slots = big_resize(NULL, 0, nslots * sizeof(int32_t), 1);
    if (!slots)
        return -1;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        size_t j = (size_t)t->entries[i].hash & (nslots - 1);
        while (slots[j])
            j = (j + 1) & (nslots - 1);
        slots[j] = (int32_t)(i + 1);
    }
    big_free(t->slots, t->nslots * sizeof(int32_t));
    t->slots = slots;
    t->nslots = nslots;
    return 0;
}

/* target[key] = value (value NULL: a tombstone). 0; 1 when the table is full (arena_bytes_max, or 2**31 - 1
 * keys), with nothing changed; -1 with MemoryError set. */
static int lt_put(LatestText *t, const unsigned char *key, Py_ssize_t key_len, const unsigned char *value,
                  Py_ssize_t value_len) {
    if ((size_t)key_len > t->arena_bytes_max || (value && (size_t)value_len > t->arena_bytes_max))
        return 1;
    if ((size_t)(t->n + 1) * 2 > t->nslots) {
        size_t ns = t->nslots ? t->nslots * 2 : 1024;
        while (ns < (size_t)(t->n + 1) * 2)
            ns *= 2;
        if (lt_rehash(t, ns) < 0)
            goto nomem;
    }
    uint32_t h = lt_hash(key, key_len);
    size_t j = (size_t)h & (t->nslots - 1);
    LtEntry *e = NULL;
    while (t->slots[j]) {
        LtEntry *c = &t->entries[t->slots[j] - 1];
        if (c->hash == h && c->key_len == (uint32_t)key_len && memcmp(t->arena + c->key_off, key, (size_t)key_len) == 0) {
            e = c;
            break;
        }
        j = (j + 1) & (t->nslots - 1);
    }
    size_t need = e ? (value && (uint32_t)value_len > e->val_cap ? (size_t)value_len : 0)
                    : (size_t)key_len + (value ? (size_t)value_len : 0);
    if (need > t->arena_bytes_max - t->arena_len || (!e && t->n >= 0x7FFFFFFF))
        return 1;
    if (value && memchr(value, 0, (size_t)value_len))
        t->vouched = 0;
    if (!value)
        t->has_null = 1;
    if (!e) {
        if (t->n == t->entries_cap) {
            Py_ssize_t cap = t->entries_cap ? t->entries_cap + t->entries_cap / 2 : 1024;
            LtEntry *es = big_resize(t->entries, (size_t)t->entries_cap * sizeof(LtEntry), (size_t)cap * sizeof(LtEntry), 0);
            if (!es)
                goto nomem;
            t->entries = es;
            t->entries_cap = cap;
        }
        long long ko = lt_append(t, key, key_len);
        long long vo = value ? lt_append(t, value, value_len) : (long long)t->arena_len;
        if (ko < 0 || vo < 0)
            goto nomem;
        if (memchr(key, 0, (size_t)key_len) || !utf8_ok(key, key_len))
            t->vouched = 0;
        e = &t->entries[t->n];
        e->hash = h;
        e->key_off = (uint32_t)ko;
        e->key_len = (uint32_t)key_len;
        e->val_off = (uint32_t)vo;
        e->val_cap = value ? (uint32_t)value_len : 0;
        e->val_len = value ? (int32_t)value_len : -1;
        t->slots[j] = (int32_t)(++t->n);
        t->sorted = 0;
        return 0;
    }
    if (!value) {
        e->val_len = -1;
        return 0;
    }
    if ((uint32_t)value_len > e->val_cap) {
        long long vo = lt_append(t, value, value_len);
        if (vo < 0)
            goto nomem;
        e->val_off = (uint32_t)vo;
        e->val_cap = (uint32_t)value_len;
    } else if (value_len) {
        memcpy(t->arena + e->val_off, value, (size_t)value_len);
    }
    e->val_len = (int32_t)value_len;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* A zigzag varint (Kafka's varint and varlong) at *pos; 0 on success, -1 when the buffer ends first. */
static int read_varlong(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, long long *out) {
    unsigned long long v = 0;
    int shift = 0;
    while (*pos < len && shift < 64) {
        unsigned char b = buf[(*pos)++];
        v |= (unsigned long long)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (long long)(v >> 1) ^ -(long long)(v & 1);
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* target[key] = value (mode 1-3) or target.get(key, 0) + 1 (mode 0); steals nothing. 0 or -1 on an error. */
static int fold_one(PyObject *target, PyObject *key, PyObject *v, int mode, PyObject **one) {
    if (mode != 0)
        return PyDict_SetItem(target, key, v);
    PyObject *old = PyDict_GetItemWithError(target, key); /* borrowed */
    PyObject *sum;
    if (old) {
        if (!*one && !(*one = PyLong_FromLong(1)))
            return -1;
        sum = PyNumber_Add(old, *one);
    } else if (PyErr_Occurred()) {
        return -1;
    } else {
        sum = PyLong_FromLong(1);
    }
    if (!sum)
        return -1;
    int rc = PyDict_SetItem(target, key, sum);
    Py_DECREF(sum);
    return rc;
}

static PyObject *fold_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count, limit;
    long long base_offset, base_ts, ts_override, min_offset;
    PyObject *target, *decode;
    int mode;
    if (!PyArg_ParseTuple(args, "y*nLLLLnOiO", &view, &count, &base_offset, &base_ts, &ts_override, &min_offset,
                          &limit, &target, &mode, &decode))
        return NULL;
    if (mode < 0 || mode > 4 || (mode == 4 ? !PyObject_TypeCheck(target, &LatestTextType) : !PyDict_Check(target))) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (count), 1 (latest, bytes), 2 (latest, str) or 3 with a "
                                          "dict, or 4 (latest, text) with a LatestText");
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t len = view.len, pos = 0, taken = 0, keyless = 0;
    long long last_off = -1, last_ts = -1, stop = -1;
    PyObject *one = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        long long rec_len, ts_delta, off_delta, key_len, value_len;
        if (read_varlong(buf, len, &pos, &rec_len) < 0 || rec_len < 1 || rec_len > len - pos)
            goto corrupt;
        Py_ssize_t next = pos + (Py_ssize_t)rec_len;
        pos++; /* attributes */
        if (read_varlong(buf, next, &pos, &ts_delta) < 0 || read_varlong(buf, next, &pos, &off_delta) < 0
            || read_varlong(buf, next, &pos, &key_len) < 0 || key_len < -1 || key_len > next - pos)
            goto corrupt;
        const unsigned char *key = buf + pos;
        if (key_len > 0)
            pos += (Py_ssize_t)key_len;
        if (read_varlong(buf, next, &pos, &value_len) < 0 || value_len < -1 || value_len > next - pos)
            goto corrupt;
        const unsigned char *value = buf + pos;
        long long offset = base_offset + off_delta;
        pos = next;
        if (offset < min_offset)
            continue;
        if (taken >= limit) {
            stop = offset;
            break;
        }
        if (mode == 4) {
            if (value_len >= 0 && !utf8_ok(value, (Py_ssize_t)value_len)) {
                stop = offset; /* poison: the Python loop decodes it again and applies the policy */
                break;
            }
            if (key_len >= 0) {
                int rc = lt_put((LatestText *)target, key, (Py_ssize_t)key_len, value_len < 0 ? NULL : value,
                                (Py_ssize_t)value_len);
                if (rc < 0)
                    goto fail;
                if (rc > 0) {
                    stop = offset; /* the table is full: the Python loop takes this record (into a dict) */
                    break;
                }
            } else {
                keyless++;
            }
            taken++;
            last_off = offset;
            last_ts = ts_override >= 0 ? ts_override : base_ts + ts_delta;
            continue;
        }
        PyObject *v = NULL; /* mode 1-3: what target[key] becomes */
        if (mode != 0) {
            if (value_len < 0) {
                v = Py_None;
                Py_INCREF(v);
            } else if (mode == 1) {
                v = PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)value_len);
            } else if (mode == 2) {
                v = PyUnicode_DecodeUTF8((const char *)value, (Py_ssize_t)value_len, NULL);
            } else {
                PyObject *raw = PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)value_len);
                v = raw ? PyObject_CallOneArg(decode, raw) : NULL;
                Py_XDECREF(raw);
            }
            if (!v) {
                if (mode >= 2 && PyErr_ExceptionMatches(mode == 2 ? PyExc_UnicodeDecodeError : PyExc_Exception)) {
                    PyErr_Clear(); /* poison: the Python loop decodes it again and applies the policy */
                    stop = offset;
                    break;
                }
                goto fail;
            }
        }
        taken++;
        last_off = offset;
        last_ts = ts_override >= 0 ? ts_override : base_ts + ts_delta;
        if (key_len < 0) {
            keyless++;
            Py_XDECREF(v);
            continue;
        }
        PyObject *k = PyUnicode_DecodeUTF8((const char *)key, (Py_ssize_t)key_len, "surrogateescape");
        if (!k) {
            Py_XDECREF(v);
            goto fail;
        }
        int rc = fold_one(target, k, v, mode, &one);
        Py_DECREF(k);
        Py_XDECREF(v);
        if (rc < 0)
            goto fail;
    }
    Py_XDECREF(one);
    PyBuffer_Release(&view);
    return Py_BuildValue("nnLLL", taken, keyless, last_off, last_ts, stop);
corrupt:
    PyErr_SetString(PyExc_ValueError, "a record runs past the end of its batch");
fail:
    Py_XDECREF(one);
    PyBuffer_Release(&view);
    return NULL;
}

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = big_resize(b->p, (size_t)b->cap, (size_t)cap, 0); /* LatestText writes without the GIL */
    if (!p)
        return -1; /* the caller sets MemoryError, with the GIL */
    b->p = p;
    b->cap = cap;
    return 0;
}

static int put_bytes(Buf *b, const char *u, Py_ssize_t n);

/* 0 written, 1 not vouched for (NUL or a lone surrogate: the caller falls back), -1 error */
static int put_string(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (!u) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear();
        return 1;
    }
    return put_bytes(b, u, n);
}

/* UTF-8 text u[0:n] as a JSON string: 0 written, 1 not vouched for (a NUL), -1 no memory */
static int put_bytes(Buf *b, const char *u, Py_ssize_t n) {
    if (buf_grow(b, 6 * n + 2) < 0) /* every byte escaped as \u00XX at most */
        return -1;
    static const char hex[] = "0123456789abcdef";
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            if (c == 0)
                return 1; /* json_each would end the text there: the caller goes row by row */
            *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = hex[c >> 4]; *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

static PyObject *document(PyObject *self, PyObject *rows) {
    if (!PyDict_CheckExact(rows))
        Py_RETURN_NONE;
    Buf b = {NULL, 0, 0};
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int first = 1, rc = 0;
    if (buf_grow(&b, 2) < 0)
        return PyErr_NoMemory();
    b.p[b.len++] = '{';
    while (PyDict_Next(rows, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k)) {
            rc = 1;
            break;
        }
        if (buf_grow(&b, 1) < 0) {
            rc = -1;
            break;
        }
        if (!first)
            b.p[b.len++] = ',';
        first = 0;
        if ((rc = put_string(&b, k)) != 0)
            break;
        if (buf_grow(&b, 24) < 0) {
            rc = -1;
            break;
        }
        b.p[b.len++] = ':';
        if (PyUnicode_CheckExact(v)) {
            if ((rc = put_string(&b, v)) != 0)
                break;
        } else if (v == Py_None) {
            memcpy(b.p + b.len, "null", 4);
            b.len += 4;
        } else if (PyLong_CheckExact(v)) {
            int overflow;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow) {
                rc = 1;
                break;
            }
            b.len += snprintf(b.p + b.len, 24, "%lld", x);
        } else {
            rc = 1;
            break;
        }
    }
    PyObject *out = NULL;
    if (rc == 0 && buf_grow(&b, 1) == 0) {
        b.p[b.len++] = '}';
        out = PyUnicode_DecodeUTF8(b.p, b.len, NULL);
    } else if (rc == 1) {
        out = Py_None;
        Py_INCREF(out);
    } else if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    big_free(b.p, (size_t)b.cap);
    return out;
}

static PyObject *lt_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"arena_bytes_max", NULL};
    unsigned long long arena_bytes_max = 0xFFFFFFFFULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$K", kwlist, &arena_bytes_max))
        return NULL;
    if (arena_bytes_max < 1 || arena_bytes_max > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "arena_bytes_max must be between 1 and 2**32 - 1");
        return NULL;
    }
    LatestText *t = (LatestText *)type->tp_alloc(type, 0);
    if (t) {
        t->vouched = 1;
        t->sorted = 1;
        t->arena_bytes_max = (size_t)arena_bytes_max;
    }
    return (PyObject *)t;
}

static void lt_dealloc(LatestText *t) {
    big_free(t->arena, t->arena_cap);
    big_free(t->entries, (size_t)t->entries_cap * sizeof(LtEntry));
    big_free(t->slots, t->nslots * sizeof(int32_t));
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t lt_len(LatestText *t) { return t->n; }

static PyObject *lt_to_dict(LatestText *t, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        LtEntry *e = &t->entries[i];
        PyObject *k = PyUnicode_DecodeUTF8(t->arena + e->key_off, e->key_len, "surrogateescape");
        PyObject *v = e->val_len < 0 ? Py_NewRef(Py_None) : PyUnicode_DecodeUTF8(t->arena + e->val_off, e->val_len, NULL);
        if (!k || !v || PyDict_SetItem(out, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return out;
}

/* The sort's context for qsort, which has none: sort() holds lt_sort_lock while they are set */
static const char *lt_sort_arena;
static const LtEntry *lt_sort_entries;
static PyThread_type_lock lt_sort_lock;

/* Entry indexes ordered by their keys' bytes (memcmp, then the shorter first) */
static int lt_index_cmp(const void *a, const void *b) {
    const LtEntry *x = &lt_sort_entries[*(const uint32_t *)a], *y = &lt_sort_entries[*(const uint32_t *)b];
    uint32_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(lt_sort_arena + x->key_off, lt_sort_arena + y->key_off, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* A key's first 8 bytes as a big-endian number, zero past its end: where two keys' numbers differ, they order the
 * keys as lt_index_cmp does (a key shorter than 8 bytes is padded with zeros, below any byte but zero, and a zero
 * byte of the other key makes the numbers equal there, not different) */
static inline uint64_t lt_prefix(const char *arena, const LtEntry *e) {
    const unsigned char *k = (const unsigned char *)arena + e->key_off;
    uint32_t n = e->key_len < 8 ? e->key_len : 8;
    uint64_t v = 0;
    for (uint32_t i = 0; i < 8; i++)
        v = (v << 8) | (i < n ? k[i] : 0);
    return v;
}

/* Sort t's entries by key (see sort() in the header): 0, or -1 when there is no memory (nothing changed).
 * Algorithm: each entry's 8-byte key prefix into pre[]; an LSD radix sort of the entry indexes by it, a byte a
 * pass from the lowest, stable, a pass skipped where every prefix has the same byte (the keys' common leading
 * bytes); each run of equal prefixes (keys longer than 8 bytes that share them, or equal but for trailing zero
 * bytes) sorted with the full comparison; then the entries gathered into that order in place, cycle by cycle.
 * Against qsort of the entries with memcmp (the previous sort, 2026-12-07 py-spy: half the runner's main thread
 * on 1M events, 100k keys): a few passes over two arrays of 4-byte indexes and one of 8-byte prefixes, each
 * smaller than qsort's copy of the 24-byte entries. */
static int lt_radix_sort(LatestText *t) {
    size_t n = (size_t)t->n;
    /* the entries are about to move: the hash index goes now, before this sort's arrays are made (a put after
     * sort() builds it again) */
    big_free(t->slots, t->nslots * sizeof(int32_t));
    t->slots = NULL;
    t->nslots = 0;
    uint64_t *pre = big_resize(NULL, 0, n * sizeof(uint64_t), 0);
    uint32_t *idx = big_resize(NULL, 0, n * sizeof(uint32_t), 0);
    uint32_t *tmp = big_resize(NULL, 0, n * sizeof(uint32_t), 0);
    if (!pre || !idx || !tmp) {
        big_free(pre, n * sizeof(uint64_t));
        big_free(idx, n * sizeof(uint32_t));
        big_free(tmp, n * sizeof(uint32_t));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        pre[i] = lt_prefix(t->arena, &t->entries[i]);
        idx[i] = (uint32_t)i;
    }
    size_t count[256];
    for (int shift = 0; shift < 64; shift += 8) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[(pre[idx[i]] >> shift) & 0xFF]++;
        if (count[(pre[idx[0]] >> shift) & 0xFF] == n)
            continue; /* the same byte in every key: this pass would change nothing */
        size_t at = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(pre[idx[i]] >> shift) & 0xFF]++] = idx[i];
        uint32_t *swap = idx;
        idx = tmp;
        tmp = swap;
    }
    lt_sort_arena = t->arena;
    lt_sort_entries = t->entries;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && pre[idx[j]] == pre[idx[i]])
            j++;
        if (j - i > 1)
            qsort(idx + i, j - i, sizeof(uint32_t), lt_index_cmp);
        i = j;
    }
    /* entries[i] = old entries[idx[i]], in place: follow each cycle of the permutation, marking done as idx[j] = j */
    for (size_t i = 0; i < n; i++) {
        if (idx[i] == (uint32_t)i)
            continue;
        LtEntry first = t->entries[i];
        size_t j = i;
        for (;;) {
            size_t k = idx[j];
            idx[j] = (uint32_t)j;
            if (k == i) {
                t->entries[j] = first;
                break;
            }
            t->entries[j] = t->entries[k];
            j = k;
        }
    }
    big_free(pre, n * sizeof(uint64_t));
    big_free(idx, n * sizeof(uint32_t));
    big_free(tmp, n * sizeof(uint32_t));
    return 0;
}

static PyObject *lt_sort(LatestText *t, PyObject *unused) {
    if (!t->sorted && t->n > 0) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lt_sort_lock, WAIT_LOCK);
        rc = lt_radix_sort(t);
        PyThread_release_lock(lt_sort_lock);
        Py_END_ALLOW_THREADS
        if (rc < 0)
            return PyErr_NoMemory();
    }
    t->sorted = 1;
    Py_RETURN_NONE;
}

static PyObject *lt_document(LatestText *t, PyObject *args) {
    Py_ssize_t start, rows_max;
    if (!PyArg_ParseTuple(args, "nn", &start, &rows_max))
        return NULL;
    if (start < 0 || rows_max < 1) {
        PyErr_SetString(PyExc_ValueError, "start must be >= 0 and rows_max >= 1");
        return NULL;
    }
    if (!t->vouched) {
        PyErr_SetString(PyExc_ValueError, "not vouched for: use to_dict()");
        return NULL;
    }
    Py_ssize_t end = start + rows_max < t->n ? start + rows_max : t->n;
    Buf b = {NULL, 0, 0};
    int rc = 0, nulls = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = buf_grow(&b, 2);
    if (rc == 0)
        b.p[b.len++] = '{';
    for (Py_ssize_t i = start; i < end && rc == 0; i++) {
        LtEntry *e = &t->entries[i];
        if (i > start)
            b.p[b.len++] = ','; /* room: put_bytes and the checks below keep 8 bytes spare */
        if ((rc = put_bytes(&b, t->arena + e->key_off, e->key_len)) != 0 || (rc = buf_grow(&b, 8)) != 0)
            break;
        b.p[b.len++] = ':';
        if (e->val_len < 0) {
            memcpy(b.p + b.len, "null", 4);
            b.len += 4;
            nulls = 1;
        } else if ((rc = put_bytes(&b, t->arena + e->val_off, e->val_len)) != 0) {
            break;
        }
        rc = buf_grow(&b, 8);
    }
    if (rc == 0)
        rc = buf_grow(&b, 1);
    if (rc == 0)
        b.p[b.len++] = '}';
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (rc == 0) {
        PyObject *text = PyUnicode_DecodeUTF8(b.p, b.len, NULL);
        if (text)
            out = Py_BuildValue("NnO", text, end, nulls ? Py_True : Py_False);
    } else if (rc == 1) {
        PyErr_SetString(PyExc_ValueError, "a NUL byte: not vouched for"); /* vouched says otherwise: a bug */
    } else {
        PyErr_NoMemory();
    }
    big_free(b.p, (size_t)b.cap);
    return out;
}

static PyObject *lt_get_vouched(LatestText *t, void *c) { return PyBool_FromLong(t->vouched); }
static PyObject *lt_get_has_null(LatestText *t, void *c) { return PyBool_FromLong(t->has_null); }
static PyObject *lt_get_nbytes(LatestText *t, void *c) {
    return PyLong_FromSize_t(t->arena_cap + (size_t)t->entries_cap * sizeof(LtEntry) + t->nslots * sizeof(int32_t));
}

static PyMethodDef lt_methods[] = {
    {"to_dict", (PyCFunction)lt_to_dict, METH_NOARGS, "The fold as the dict mode 2 makes: str key -> str value or None."},
    {"sort", (PyCFunction)lt_sort, METH_NOARGS, "Order the entries by key bytes (without the GIL)."},
    {"document", (PyCFunction)lt_document, METH_VARARGS,
     "document(start, rows_max) -> (JSON object text, next start, holds a null): entries in their current order."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lt_getset[] = {
    {"vouched", (getter)lt_get_vouched, NULL, "Whether document() can write every entry (see _kernel.c).", NULL},
    {"has_null", (getter)lt_get_has_null, NULL, "Whether a tombstone was folded (a later value of its key may have replaced it).", NULL},
    {"nbytes", (getter)lt_get_nbytes, NULL, "The bytes the table holds (arena, entries, index).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods lt_as_sequence = {.sq_length = (lenfunc)lt_len};

static PyTypeObject LatestTextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loosely.views._kernel.LatestText",
    .tp_basicsize = sizeof(LatestText),
    .tp_dealloc = (destructor)lt_dealloc,
    .tp_as_sequence = &lt_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A latest-value fold of UTF-8 text values, kept as bytes (see _kernel.c).",
    .tp_methods = lt_methods,
    .tp_getset = lt_getset,
    .tp_new = lt_new,
};

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, "Fold one run of one partition's messages into a view's batch; see the file header."},
    {"fold_records", fold_records, METH_VARARGS,
     "Fold one decompressed record batch's records into a view's batch; see the file header."},
    {"document", document, METH_O, "A batch's rows as one JSON object, or None; see the file header."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
             "The built-in views' per-record loop and the SQL sinks' batch document, compiled (see _kernel.c).\n"
             "\n"
             ">>> document({'a': 'x', 'b': 1, 'c': None})\n"
             "'{\"a\":\"x\",\"b\":1,\"c\":null}'\n"
             ">>> document({'a': 1.5}) is None  # json.dumps writes floats\n"
             "True\n");

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "loosely.views._kernel", module_doc, -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (!(s_error = PyUnicode_InternFromString("error")) || !(s_partition = PyUnicode_InternFromString("partition"))
        || !(s_topic = PyUnicode_InternFromString("topic")) || !(s_key = PyUnicode_InternFromString("key"))
        || !(s_value = PyUnicode_InternFromString("value")))
        return NULL;
    if (!(lt_sort_lock = PyThread_allocate_lock()) || PyType_Ready(&LatestTextType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "LatestText", (PyObject *)&LatestTextType) < 0)
        Py_CLEAR(m);
    return m;
}
