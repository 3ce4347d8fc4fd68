# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Feature hashing: XXH64 and the rule that turns a feature into a key.

The key of a feature (docs/formats.md):

* a name that is a plain decimal integer (ASCII digits only, no sign, no
  spaces, value < 2**64) is the key itself, whatever its namespace, so
  VW's ``|f 9:0.06`` and svmlight's ``9:0.06`` are the same feature;
* any other name is hashed: ``XXH64(namespace + "^" + name, FEATURE_SEED)``
  over the UTF-8 bytes, or ``XXH64(name, FEATURE_SEED)`` without namespace.

XXH64 is Yann Collet's xxHash, 64-bit variant, written here from its
specification (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md):
32-byte stripes through four accumulators, then the 8-, 4- and 1-byte tails,
then the avalanche.  Input words are read little-endian whatever the host.

The C functions (declared in hashing.pxd) are what the parsers call; the
Python functions below are thin wrappers for onlinel1.io.hashing and tests.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np

# "onlinel1" in ASCII, read as a big-endian 64-bit integer.
FEATURE_SEED = 0x6F6E6C696E656C31
cdef uint64_t C_FEATURE_SEED = 0x6F6E6C696E656C31ULL

cdef uint64_t PRIME64_1 = 0x9E3779B185EBCA87ULL
cdef uint64_t PRIME64_2 = 0xC2B2AE3D27D4EB4FULL
cdef uint64_t PRIME64_3 = 0x165667B19E3779F9ULL
cdef uint64_t PRIME64_4 = 0x85EBCA77C2B2AE63ULL
cdef uint64_t PRIME64_5 = 0x27D4EB2F165667C5ULL


cdef inline uint64_t rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t read64(const unsigned char* p) noexcept nogil:
    # Little-endian load; compilers turn this into one mov on x86-64.
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint64_t read32(const unsigned char* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24))


cdef inline uint64_t xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc = acc + lane * PRIME64_2
    acc = rotl64(acc, 31)
    return acc * PRIME64_1


cdef inline uint64_t xxh_merge(uint64_t acc, uint64_t val) noexcept nogil:
    acc = acc ^ xxh_round(0, val)
    return acc * PRIME64_1 + PRIME64_4


cdef uint64_t xxh64(const unsigned char* data, size_t length, uint64_t seed) noexcept nogil:
    """XXH64 of ``data[:length]`` with ``seed`` (spec, section "XXH64")."""
    cdef const unsigned char* p = data
    cdef const unsigned char* end = data + length
    cdef const unsigned char* limit
    cdef uint64_t v1, v2, v3, v4, h
    if length >= 32:
        # Step 1-2: four accumulators over 32-byte stripes.
        v1 = seed + PRIME64_1 + PRIME64_2
        v2 = seed + PRIME64_2
        v3 = seed
        v4 = seed - PRIME64_1
        limit = end - 32
        while p <= limit:
            v1 = xxh_round(v1, read64(p))
            v2 = xxh_round(v2, read64(p + 8))
            v3 = xxh_round(v3, read64(p + 16))
            v4 = xxh_round(v4, read64(p + 24))
            p += 32
        # Step 3: convergence.
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18)
        h = xxh_merge(h, v1)
        h = xxh_merge(h, v2)
        h = xxh_merge(h, v3)
        h = xxh_merge(h, v4)
    else:
        h = seed + PRIME64_5
    # Step 4: add the length.
    h += <uint64_t>length
    # Step 5: the remaining 0..31 bytes, 8, then 4, then 1 at a time.
    while p + 8 <= end:
        h ^= xxh_round(0, read64(p))
        h = rotl64(h, 27) * PRIME64_1 + PRIME64_4
        p += 8
    if p + 4 <= end:
        h ^= read32(p) * PRIME64_1
        h = rotl64(h, 23) * PRIME64_2 + PRIME64_3
        p += 4
    while p < end:
        h ^= (<uint64_t>p[0]) * PRIME64_5
        h = rotl64(h, 11) * PRIME64_1
        p += 1
    # Step 6: avalanche.
    h ^= h >> 33
    h *= PRIME64_2
    h ^= h >> 29
    h *= PRIME64_3
    h ^= h >> 32
    return h


cdef uint64_t feature_hash(const unsigned char* text, size_t length) noexcept nogil:
    """XXH64 of a string feature's text (``namespace^name`` or ``name``)
    with the feature seed."""
    return xxh64(text, length, C_FEATURE_SEED)


cdef bint parse_decimal_uint64(const unsigned char* s, size_t length,
                               uint64_t* out) noexcept nogil:
    """True (and the value in ``out``) when ``s[:length]`` is one or more
    ASCII digits whose value fits in uint64; no sign, no spaces."""
    cdef uint64_t value = 0
    cdef uint64_t digit
    cdef size_t i
    if length == 0:
        return False
    for i in range(length):
        digit = <uint64_t>s[i] - 48  # '0'; bytes below '0' wrap to huge
        if digit > 9:
            return False
        # value * 10 + digit <= 2**64 - 1  <=>  the test below.
        if value > 1844674407370955161ULL or (value == 1844674407370955161ULL and digit > 5):
            return False
        value = value * 10 + digit
    out[0] = value
    return True


cdef bint key_of_feature(const unsigned char* text, size_t prefix_length, size_t length,
                         uint64_t* key) noexcept nogil:
    """Key of the feature spelled ``text[:length]``, where ``text[:prefix_length]``
    is ``namespace + "^"`` (or empty) and the rest is the name.

    Returns True when the key was hashed (a string feature), False when the
    name is an integer used as the key directly.
    """
    if parse_decimal_uint64(text + prefix_length, length - prefix_length, key):
        return False
    key[0] = feature_hash(text, length)
    return True


# ------------------------------------------------------------- Python wrappers

def xxh64_bytes(const unsigned char[::1] data, uint64_t seed=0):
    """XXH64 of a bytes-like object (the raw hash, for tests and docs)."""
    cdef const unsigned char* p = &data[0] if data.shape[0] else <const unsigned char*>b""
    return xxh64(p, <size_t>data.shape[0], seed)


def feature_key_bytes(bytes prefix, bytes name, uint64_t integer_offset=0):
    """Key of one feature; ``prefix`` is ``b"namespace^"`` or ``b""``; an
    integer name's key is offset by ``integer_offset`` (modulo 2**64)."""
    cdef bytes text = prefix + name
    cdef uint64_t key
    if not key_of_feature(<const unsigned char*><const char*>text, len(prefix), len(text), &key):
        key += integer_offset
    return key


def feature_keys_packed(bytes prefix, bytes names, const int64_t[::1] offsets,
                        uint64_t integer_offset=0):
    """Keys of many names of one namespace in one call.

    ``names`` is the concatenation of the encoded names; name i is
    ``names[offsets[i]:offsets[i + 1]]``.  An integer name's key is offset
    by ``integer_offset`` (modulo 2**64).  Returns a uint64 array.
    """
    cdef Py_ssize_t n = offsets.shape[0] - 1
    cdef Py_ssize_t i, lo, hi, longest = 0
    cdef Py_ssize_t total = len(names)
    cdef size_t plen = len(prefix)
    cdef const unsigned char* src = <const unsigned char*><const char*>names
    cdef unsigned char* text
    if n < 0:
        raise ValueError("offsets must have at least one entry")
    for i in range(n):
        lo = offsets[i]
        hi = offsets[i + 1]
        if lo < 0 or hi < lo or hi > total:
            raise ValueError(f"offsets are not increasing within the names buffer at {i}")
        if hi - lo > longest:
            longest = hi - lo
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] keys = out
    text = <unsigned char*>malloc(plen + <size_t>longest + 1)
    if text == NULL:
        raise MemoryError("cannot allocate the hashing buffer")
    memcpy(text, <const char*>prefix, plen)
    with nogil:
        for i in range(n):
            lo = offsets[i]
            hi = offsets[i + 1]
            memcpy(text + plen, src + lo, <size_t>(hi - lo))
            if not key_of_feature(text, plen, plen + <size_t>(hi - lo), &keys[i]):
                keys[i] += integer_offset
    free(text)
    return out
