/*
 * loosely/hollow/core/_bits.h -- the bit and hash helpers both Hollow C modules use (_native.c, _writer.c).
 *
 * Bit packing
 * -----------
 * Hollow packs fixed-width fields into arrays of 64-bit words: a field of `width` bits at bit offset `bit` sits
 * in word bit / 64 from bit bit % 64 up, and continues into the next word when it crosses a word boundary.  The
 * blob stores the words big-endian; arrays under construction are native (little-endian) words, swapped once
 * with to_big_endian() when they are done.
 *
 * Two ways to write a field, two contracts, two names:
 *
 * - store_bits() overwrites: it clears the field's bits, then writes the value.  For arrays whose bits may
 *   already be set (the read engine's delta application rewrites fields of a copied array in place).
 * - or_bits() ORs the value into bits the caller guarantees are zero (a freshly zeroed array that receives each
 *   field once: the write engine's packing loops).  It saves the clearing on the hottest path; on bits that are
 *   not zero it would merge the old value into the new one.
 *
 * Widths come from Python as ints in [0, 64]; parse_width() reads one and raises the caller's error type for an
 * int out of range (a width read from a blob is a data error, one handed in by the engine a ValueError).
 *
 * Hashes
 * ------
 * hash_int() and hash_long() are Hollow's HashCodes.hashInt / hashLong (Thomas Wang's integer mixes): the
 * bucket of a SET or MAP element in a blob depends on them, so they must match Java bit for bit.
 */
#ifndef LOOSELY_HOLLOW_BITS_H
#define LOOSELY_HOLLOW_BITS_H

#include <Python.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the Hollow C modules assume a little-endian host"
#endif

/* ------------------------------------------------------------------------------------------------------- */
/* bit access                                                                                               */

static inline uint64_t
mask_of(unsigned width)
{
    return width >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1);
}

/* Read width bits at bit offset `bit` of native-order words (arrays under construction). */
static inline uint64_t
get_bits_native(const uint64_t *w, uint64_t bit, unsigned width)
{
    if (width == 0)
        return 0;
    uint64_t wi = bit >> 6;
    unsigned sh = (unsigned)(bit & 63);
    uint64_t v = w[wi] >> sh;
    if (sh + width > 64)
        v |= w[wi + 1] << (64 - sh);
    return v & mask_of(width);
}

/* Overwrite width bits at bit offset `bit` with value (its bits above width are dropped). */
static inline void
store_bits(uint64_t *w, uint64_t bit, unsigned width, uint64_t value)
{
    if (width == 0)
        return;
    uint64_t m = mask_of(width);
    value &= m;
    uint64_t wi = bit >> 6;
    unsigned sh = (unsigned)(bit & 63);
    w[wi] = (w[wi] & ~(m << sh)) | (value << sh);
    if (sh + width > 64) {
        unsigned rem = sh + width - 64;
        uint64_t m2 = mask_of(rem);
        w[wi + 1] = (w[wi + 1] & ~m2) | (value >> (64 - sh));
    }
}

/* Write value into width bits at bit offset `bit` that are zero (the caller guarantees it; see the header). */
static inline void
or_bits(uint64_t *w, uint64_t bit, unsigned width, uint64_t value)
{
    if (width == 0)
        return;
    value &= mask_of(width);
    uint64_t wi = bit >> 6;
    unsigned sh = (unsigned)(bit & 63);
    w[wi] |= value << sh;
    if (sh + width > 64)
        w[wi + 1] |= value >> (64 - sh);
}

/* Native words to the blob's big-endian words, in place. */
static inline void
to_big_endian(uint64_t *w, uint64_t nwords)
{
    for (uint64_t i = 0; i < nwords; i++)
        w[i] = __builtin_bswap64(w[i]);
}

/* A bit width from a Python int: 0 with *width set, or -1 with an exception set -- the int's own error, or
   `error` ("bit width out of range: N") for an int outside [0, 64]. */
static inline int
parse_width(PyObject *o, PyObject *error, unsigned *width)
{
    long x = PyLong_AsLong(o);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < 0 || x > 64) {
        PyErr_Format(error, "bit width out of range: %ld", x);
        return -1;
    }
    *width = (unsigned)x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------- */
/* hashes                                                                                                   */

static inline int32_t
hash_int(int32_t key)
{
    uint32_t k = (uint32_t)key;
    k = ~k + (k << 15);
    k ^= k >> 12;
    k += k << 2;
    k ^= k >> 4;
    k *= 2057u;
    k ^= k >> 16;
    return (int32_t)k;
}

static inline int32_t
hash_long(int64_t key)
{
    uint64_t k = (uint64_t)key;
    k = (~k) + (k << 18);
    k ^= (k >> 31);
    k *= 21u;
    k ^= (k >> 11);
    k += (k << 6);
    k ^= (k >> 22);
    return (int32_t)(uint32_t)k;
}

#endif /* LOOSELY_HOLLOW_BITS_H */
