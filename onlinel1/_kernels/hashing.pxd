# Feature hashing: XXH64 and the key of a feature (see hashing.pyx and
# docs/formats.md).  Everything here is nogil and allocation-free, so the
# parsers call it per feature without touching a Python object.
from libc.stdint cimport uint64_t


cdef uint64_t xxh64(const unsigned char* data, size_t length, uint64_t seed) noexcept nogil

cdef uint64_t feature_hash(const unsigned char* text, size_t length) noexcept nogil

cdef bint parse_decimal_uint64(const unsigned char* s, size_t length,
                               uint64_t* out) noexcept nogil

cdef bint key_of_feature(const unsigned char* text, size_t prefix_length, size_t length,
                         uint64_t* key) noexcept nogil
