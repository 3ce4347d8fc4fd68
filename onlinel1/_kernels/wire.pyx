# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""msgpack on the wire without a Python object per row, feature or value:
row-wise batches (docs/protocol.md, "Row-wise") read straight from the
bytes into typed arrays, and the large parts of a ``predict`` reply
written straight from arrays.

Reading is two passes, both one plain loop over the bytes:

* ``scan`` checks one message the way msgpack-python's
  ``unpackb(raw=False, strict_map_key=False)`` accepts it (the oracle the
  tests compare it with: every type, UTF-8 strings, hashable map keys, its
  1,024 levels of nesting, its timestamp rules, nothing after the value)
  and finds the top-level ``rows`` value.  It allocates nothing.
* ``convert`` turns a checked ``rows`` array into CSR arrays (indptr,
  keys, values, labels, importance weights), with the meaning the
  protocol gives each row and Python's meaning of a map that repeats a
  key (the last value at the first key's place).  It stops at the first
  row that is wrong and says where, for the caller to word the error.

Memory (``convert``): the output arrays, 16 bytes per map entry inside
``rows`` (an upper bound of the features) and 24 bytes per row, plus, for
one map at a time, 16 bytes of scratch per entry (PyMem_Raw*, so
tracemalloc sees it).  A map entry is at least
2 bytes and a row at least 1, so that is at most 8x the bytes of ``rows``
plus 24 bytes a row, plus 8x the largest map.  Namespace ids (for a model
with interactions) add 1 byte per map entry, names' positions 16.

Writing (``pack_floats``, ``pack_contributions``) gives the very bytes
msgpack-python's ``packb`` gives for the same lists of Python numbers
(floats as float 64, integers in their shortest form).
"""
from libc.math cimport floor, isfinite
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

import os

import numpy as np

from onlinel1._kernels.hashing cimport feature_hash, key_of_feature, xxh64

#: The seed of the hash that finds repeated string keys within one map
#: (never stored): random per process, so no one can send many names of
#: one hash, each of which would be compared with every other (a run of
#: equal hashes costs its length squared).
cdef uint64_t IDENT_SEED = int.from_bytes(os.urandom(8), "little")

cdef enum:
    # msgpack-python's C decoder nests at most this many containers.
    MAX_NESTING = 1024

cdef enum:
    # The namespace id of a feature outside any named namespace, as
    # onlinel1.io.interactions has it (DEFAULT_NAMESPACE_ID, ord(" ")).
    DEFAULT_NAMESPACE_ID = 32

#: The same, for Python.
DEFAULT_NAMESPACE = DEFAULT_NAMESPACE_ID

cdef enum:
    # Kinds of msgpack value (the first byte tells).
    K_NIL = 0
    K_BOOL = 1
    K_UINT = 2      # an integer >= 0 (whatever its encoding)
    K_NEG = 3       # an integer < 0
    K_FLOAT = 4
    K_STR = 5
    K_BIN = 6
    K_ARRAY = 7
    K_MAP = 8
    K_EXT = 9
    K_BAD = 10      # 0xc1, never used

# What ``scan`` finds wrong (its ``error``); 0: nothing.
SCAN_ERRORS = {
    1: "message truncated",
    2: "a string is not valid UTF-8",
    3: "byte 0xc1 starts no msgpack type",
    4: "a map key is an array or a map (not hashable)",
    5: "nested deeper than 1024 levels",
    6: "bytes after the message",
    7: "an ext type code below -1 (msgpack-python takes 0 to 127, and -1 for timestamps)",
    8: "a timestamp (ext -1) of a length other than 4, 8 or 12 bytes, or with more than "
       "999999999 nanoseconds",
}

cdef enum:
    # What ``convert`` finds wrong in a row (its first result); 0: nothing.
    ROW_NOT_MAP = 1
    ROW_UNKNOWN_FIELD = 2
    ROW_NO_LABEL = 3
    ROW_LABEL = 4
    ROW_IMPORTANCE = 5
    ROW_NAMESPACES_NOT_MAP = 6
    ROW_NAMESPACE_NAME = 7
    ROW_GROUP_NOT_MAP = 8
    ROW_FEATURE_NAME = 9
    ROW_FEATURE_VALUE = 10
    ROW_NOT_ARRAY = 11

#: The same codes, for Python.
ROW_ERRORS = {"ROW_NOT_MAP": ROW_NOT_MAP, "ROW_UNKNOWN_FIELD": ROW_UNKNOWN_FIELD, "ROW_NO_LABEL": ROW_NO_LABEL, "ROW_LABEL": ROW_LABEL, "ROW_IMPORTANCE": ROW_IMPORTANCE, "ROW_NAMESPACES_NOT_MAP": ROW_NAMESPACES_NOT_MAP, "ROW_NAMESPACE_NAME": ROW_NAMESPACE_NAME, "ROW_GROUP_NOT_MAP": ROW_GROUP_NOT_MAP, "ROW_FEATURE_NAME": ROW_FEATURE_NAME, "ROW_FEATURE_VALUE": ROW_FEATURE_VALUE, "ROW_NOT_ARRAY": ROW_NOT_ARRAY}


cdef struct Value:
    # One decoded msgpack header: its kind, where its payload starts and
    # how long it is (bytes for str/bin/ext, items for array/map), or its
    # number.
    int kind
    Py_ssize_t start        # payload (str/bin/ext data) or first item
    Py_ssize_t end          # just past a scalar (for containers: past the header)
    uint64_t n              # length in bytes or items
    uint64_t u              # K_UINT, K_BOOL
    int64_t i               # K_NEG
    double f                # K_FLOAT
    int ext_code


cdef inline uint64_t be(const uint8_t* p, int size) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(size):
        v = (v << 8) | p[k]
    return v


cdef inline double be_double(const uint8_t* p) noexcept nogil:
    cdef uint64_t bits = be(p, 8)
    cdef double d
    memcpy(&d, &bits, 8)
    return d


cdef inline double be_float(const uint8_t* p) noexcept nogil:
    cdef uint32_t bits = <uint32_t>be(p, 4)
    cdef float f
    memcpy(&f, &bits, 4)
    return <double>f


cdef int header(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, Value* v) noexcept nogil:
    """Decode the header of the value at ``pos``; 0, or 1 if the bytes end
    first (a sized value whose payload would pass ``end`` included)."""
    cdef uint8_t b
    cdef int size = 0
    cdef int lsize = 0
    cdef uint64_t n = 0
    if pos >= end:
        return 1
    b = buf[pos]
    v.ext_code = 0
    pos += 1
    if b <= 0x7F:
        v.kind = K_UINT
        v.u = b
        v.end = pos
        return 0
    if b >= 0xE0:
        v.kind = K_NEG
        v.i = <int64_t>b - 256
        v.end = pos
        return 0
    if b <= 0x8F:
        v.kind = K_MAP
        v.n = b & 0x0F
        v.start = v.end = pos
        return 0
    if b <= 0x9F:
        v.kind = K_ARRAY
        v.n = b & 0x0F
        v.start = v.end = pos
        return 0
    if b <= 0xBF:
        v.kind = K_STR
        n = b & 0x1F
    elif b == 0xC0:
        v.kind = K_NIL
        v.end = pos
        return 0
    elif b == 0xC1:
        v.kind = K_BAD
        v.end = pos
        return 0
    elif b == 0xC2 or b == 0xC3:
        v.kind = K_BOOL
        v.u = b - 0xC2
        v.end = pos
        return 0
    elif b <= 0xC6:                     # bin 8/16/32
        v.kind = K_BIN
        lsize = 1 << (b - 0xC4)
    elif b <= 0xC9:                     # ext 8/16/32
        v.kind = K_EXT
        lsize = 1 << (b - 0xC7)
    elif b == 0xCA or b == 0xCB:
        size = 4 if b == 0xCA else 8
        if end - pos < size:
            return 1
        v.kind = K_FLOAT
        v.f = be_float(buf + pos) if size == 4 else be_double(buf + pos)
        v.end = pos + size
        return 0
    elif b <= 0xCF:                     # uint 8/16/32/64
        size = 1 << (b - 0xCC)
        if end - pos < size:
            return 1
        v.kind = K_UINT
        v.u = be(buf + pos, size)
        v.end = pos + size
        return 0
    elif b <= 0xD3:                     # int 8/16/32/64
        size = 1 << (b - 0xD0)
        if end - pos < size:
            return 1
        n = be(buf + pos, size)
        if size == 1:
            v.i = <int8_t>n
        elif size == 2:
            v.i = <int16_t>n
        elif size == 4:
            v.i = <int32_t>n
        else:
            v.i = <int64_t>n
        if v.i >= 0:
            v.kind = K_UINT
            v.u = <uint64_t>v.i
        else:
            v.kind = K_NEG
        v.end = pos + size
        return 0
    elif b <= 0xD8:                     # fixext 1/2/4/8/16
        v.kind = K_EXT
        n = 1 << (b - 0xD4)
    elif b <= 0xDB:                     # str 8/16/32
        v.kind = K_STR
        lsize = 1 << (b - 0xD9)
    else:                               # array 16/32, map 16/32
        lsize = 2 if (b == 0xDC or b == 0xDE) else 4
        if end - pos < lsize:
            return 1
        v.kind = K_ARRAY if b <= 0xDD else K_MAP
        v.n = be(buf + pos, lsize)
        v.start = v.end = pos + lsize
        return 0
    if lsize:
        if end - pos < lsize:
            return 1
        n = be(buf + pos, lsize)
        pos += lsize
    if v.kind == K_EXT:
        if end - pos < 1:
            return 1
        v.ext_code = <int8_t>buf[pos]
        pos += 1
    if <uint64_t>(end - pos) < n:
        return 1
    v.n = n
    v.start = pos
    v.end = pos + <Py_ssize_t>n
    return 0


cdef bint valid_utf8(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Whether ``s[:n]`` is UTF-8 as Python's strict decoder takes it (no
    overlong forms, no surrogates, nothing above U+10FFFF)."""
    cdef Py_ssize_t i = 0
    cdef uint8_t c, c1
    cdef uint64_t word
    while i < n:
        if i + 8 <= n:
            memcpy(&word, s + i, 8)
            if (word & 0x8080808080808080ULL) == 0:
                i += 8
                continue
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        if c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
            continue
        if i + 1 >= n:
            return False
        c1 = s[i + 1]
        if c < 0xF0:
            if c == 0xE0:
                if c1 < 0xA0 or c1 > 0xBF:
                    return False
            elif c == 0xED:
                if c1 < 0x80 or c1 > 0x9F:
                    return False
            elif (c1 & 0xC0) != 0x80:
                return False
            if i + 2 >= n or (s[i + 2] & 0xC0) != 0x80:
                return False
            i += 3
            continue
        if c == 0xF0:
            if c1 < 0x90 or c1 > 0xBF:
                return False
        elif c == 0xF4:
            if c1 < 0x80 or c1 > 0x8F:
                return False
        elif (c1 & 0xC0) != 0x80:
            return False
        if i + 3 >= n or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
            return False
        i += 4
    return True


cdef bint valid_ext(const uint8_t* buf, Value* v) noexcept nogil:
    """msgpack-python's rules for an ext value's code and (for -1) the
    timestamp it holds."""
    cdef uint64_t word
    if v.ext_code >= 0:
        return True
    if v.ext_code < -1:
        return False
    if v.n == 4:
        return True
    if v.n == 8:
        word = be(buf + v.start, 8)
        return (word >> 34) <= 999999999
    if v.n == 12:
        return be(buf + v.start, 4) <= 999999999
    return False


cdef struct ScanResult:
    int error
    Py_ssize_t error_pos
    int top_kind
    Py_ssize_t rows_start       # -1: no top-level "rows" key (before any error)
    Py_ssize_t rows_end
    int64_t outside_values      # values not inside the "rows" value
    int64_t rows_entries        # map entries inside the "rows" value
    int64_t rows_items          # items of the "rows" value, if an array
    Py_ssize_t rows_key_start   # where the last "rows" key starts
    int64_t rows_keys           # how many "rows" keys the top map has
    Py_ssize_t top_first        # where the top map's first key starts
    int64_t top_entries         # its entries


cdef void scan_c(const uint8_t* buf, Py_ssize_t end, ScanResult* r) noexcept nogil:
    cdef uint64_t remaining[MAX_NESTING]
    cdef bint is_map[MAX_NESTING]
    cdef int sp = 0
    cdef Py_ssize_t pos = 0
    cdef Value v
    cdef bint is_key
    cdef bint rows_next = False     # the next value at level 1 is rows's
    cdef int rows_sp = -1           # the stack level of the rows container
    cdef bint in_rows = False
    cdef bint first = True
    r.error = 0
    r.error_pos = -1
    r.top_kind = -1
    r.rows_start = -1
    r.rows_end = -1
    r.outside_values = 0
    r.rows_entries = 0
    r.rows_items = 0
    r.rows_key_start = -1
    r.rows_keys = 0
    r.top_first = -1
    r.top_entries = 0
    while True:
        is_key = sp > 0 and is_map[sp - 1] and (remaining[sp - 1] & 1) == 0
        if header(buf, pos, end, &v):
            r.error = 1
            r.error_pos = pos
            return
        if first:
            r.top_kind = v.kind
            if v.kind == K_MAP:
                r.top_first = v.end
                r.top_entries = <int64_t>v.n
            first = False
        if v.kind == K_BAD:
            r.error = 3
            r.error_pos = pos
            return
        if is_key and (v.kind == K_ARRAY or v.kind == K_MAP):
            r.error = 4
            r.error_pos = pos
            return
        if sp == 1 and not is_key and rows_next:
            rows_next = False
            in_rows = True
            r.rows_start = pos
            r.rows_items = <int64_t>v.n if v.kind == K_ARRAY else 0
        if in_rows:
            if v.kind == K_MAP:
                r.rows_entries += <int64_t>v.n
        else:
            r.outside_values += 1
        if v.kind == K_STR:
            if not valid_utf8(buf + v.start, <Py_ssize_t>v.n):
                r.error = 2
                r.error_pos = pos
                return
            if sp == 1 and is_key and r.top_kind == K_MAP:
                rows_next = v.n == 4 and memcmp(buf + v.start, b"rows", 4) == 0
                if rows_next:
                    r.rows_key_start = pos
                    r.rows_keys += 1
        elif sp == 1 and is_key:
            rows_next = False
        if v.kind == K_EXT and not valid_ext(buf, &v):
            r.error = 7 if v.ext_code < -1 else 8
            r.error_pos = pos
            return
        if v.kind == K_ARRAY or v.kind == K_MAP:
            if sp >= MAX_NESTING:
                r.error = 5
                r.error_pos = pos
                return
            # Each item is at least a byte: a longer count is truncated.
            if v.n > <uint64_t>(end - v.end) or (v.kind == K_MAP and v.n > <uint64_t>(end - v.end) // 2):
                r.error = 1
                r.error_pos = pos
                return
            pos = v.end
            if v.n > 0:
                remaining[sp] = v.n * 2 if v.kind == K_MAP else v.n
                is_map[sp] = v.kind == K_MAP
                if in_rows and rows_sp < 0:
                    rows_sp = sp
                sp += 1
                continue
        else:
            pos = v.end
        # A value is complete: count it off its container, and those off theirs.
        if in_rows and rows_sp < 0:         # rows is a scalar or an empty container
            in_rows = False
            r.rows_end = pos
        while sp > 0:
            remaining[sp - 1] -= 1
            if remaining[sp - 1] > 0:
                break
            sp -= 1
            if in_rows and sp == rows_sp:
                in_rows = False
                rows_sp = -1
                r.rows_end = pos
        if sp == 0:
            break
    if pos != end:
        r.error = 6
        r.error_pos = pos


def scan(const uint8_t[::1] buf):
    """Check ``buf`` as one msgpack value; a dict: ``error`` (0: valid, else
    a key of SCAN_ERRORS) and ``error_pos``, ``top_kind``, the span of the
    top-level ``rows`` value (``rows_start``, -1 when the top map has no
    ``rows`` key before the error; ``rows_end``), ``outside_values`` (values
    outside ``rows``), ``rows_entries`` (map entries inside it) and
    ``rows_items`` (its items, if an array); for a top map, where its first
    key starts (``top_first``), its ``top_entries``, where the last ``rows``
    key starts (``rows_key_start``) and how many there are (``rows_keys``)."""
    cdef ScanResult r
    cdef const uint8_t* p = &buf[0] if buf.shape[0] else <const uint8_t*>b""
    with nogil:
        scan_c(p, buf.shape[0], &r)
    return {"error": r.error, "error_pos": r.error_pos, "top_kind": r.top_kind,
            "rows_start": r.rows_start, "rows_end": r.rows_end,
            "outside_values": r.outside_values, "rows_entries": r.rows_entries,
            "rows_items": r.rows_items, "rows_key_start": r.rows_key_start,
            "rows_keys": r.rows_keys, "top_first": r.top_first, "top_entries": r.top_entries}


# ------------------------------------------------------------- conversion

cdef Py_ssize_t skip(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end) noexcept nogil:
    """The position after the (checked) value at ``pos``; -1 if it is not
    whole (cannot happen after ``scan``)."""
    cdef uint64_t todo = 1
    cdef Value v
    while todo:
        if header(buf, pos, end, &v):
            return -1
        todo -= 1
        pos = v.end
        if v.kind == K_ARRAY:
            todo += v.n
        elif v.kind == K_MAP:
            todo += 2 * v.n
    return pos


cdef inline bint number(Value* v, double* out) noexcept nogil:
    """The value as a float, if it is a number (an integer or a float, not
    a bool): what the protocol takes for a label, an importance or a
    feature value."""
    if v.kind == K_FLOAT:
        out[0] = v.f
    elif v.kind == K_UINT:
        out[0] = <double>v.u
    elif v.kind == K_NEG:
        out[0] = <double>v.i
    else:
        return False
    return True


cdef struct Entry:
    # A map entry for finding repeated keys: the key's class and identity
    # (keys equal in Python have equal ones), and where the key starts.
    uint64_t ident
    uint32_t cls
    uint32_t key_pos            # relative to the map's first entry


cdef enum:
    # Classes of map keys: integers (and bools and integral floats, which
    # Python takes as equal to them), negative integers, strings (by a hash
    # of their bytes, checked byte by byte on a tie), and keys that equal
    # nothing the protocol takes (bin, ext, other floats): each its own; nil
    # (a namespace called nil is no namespace, as in the Python decoder).
    C_NONNEG = 0
    C_NEG = 1
    C_STR = 2
    C_OTHER = 3
    C_NIL = 4
    C_GROUPED = 5   # (a string entry already given its group)


cdef inline void identify(const uint8_t* buf, Value* k, Py_ssize_t key_pos, Entry* e) noexcept nogil:
    cdef double f
    e.key_pos = <uint32_t>key_pos
    if k.kind == K_UINT or k.kind == K_BOOL:
        e.cls = C_NONNEG
        e.ident = k.u
    elif k.kind == K_NEG:
        e.cls = C_NEG
        e.ident = <uint64_t>k.i
    elif k.kind == K_STR:
        e.cls = C_STR
        e.ident = xxh64(buf + k.start, <size_t>k.n, IDENT_SEED)
    elif k.kind == K_NIL:
        e.cls = C_NIL
        e.ident = 0
    elif k.kind == K_FLOAT and isfinite(k.f) and floor(k.f) == k.f \
            and k.f >= -9223372036854775808.0 and k.f < 18446744073709551616.0:
        if k.f >= 0:
            e.cls = C_NONNEG
            e.ident = <uint64_t>k.f
        else:
            e.cls = C_NEG
            e.ident = <uint64_t>(<int64_t>k.f)
    else:
        e.cls = C_OTHER
        e.ident = <uint64_t>key_pos    # unique


cdef inline int entry_cmp(Entry* a, Entry* b) noexcept nogil:
    if a.cls != b.cls:
        return -1 if a.cls < b.cls else 1
    if a.ident != b.ident:
        return -1 if a.ident < b.ident else 1
    if a.key_pos != b.key_pos:
        return -1 if a.key_pos < b.key_pos else 1
    return 0


cdef void sort_entries(Entry* e, Py_ssize_t n) noexcept nogil:
    """In place, by (class, identity, position): insertion sort for a short
    run, heapsort otherwise (no recursion, O(n log n))."""
    cdef Py_ssize_t i, j, start, root, child, end_
    cdef Entry t
    if n <= 16:
        for i in range(1, n):
            t = e[i]
            j = i - 1
            while j >= 0 and entry_cmp(&e[j], &t) > 0:
                e[j + 1] = e[j]
                j -= 1
            e[j + 1] = t
        return
    start = n // 2
    while start > 0:
        start -= 1
        root = start
        while 2 * root + 1 < n:
            child = 2 * root + 1
            if child + 1 < n and entry_cmp(&e[child], &e[child + 1]) < 0:
                child += 1
            if entry_cmp(&e[root], &e[child]) < 0:
                t = e[root]; e[root] = e[child]; e[child] = t
                root = child
            else:
                break
    end_ = n - 1
    while end_ > 0:
        t = e[0]; e[0] = e[end_]; e[end_] = t
        root = 0
        while 2 * root + 1 < end_:
            child = 2 * root + 1
            if child + 1 < end_ and entry_cmp(&e[child], &e[child + 1]) < 0:
                child += 1
            if entry_cmp(&e[root], &e[child]) < 0:
                t = e[root]; e[root] = e[child]; e[child] = t
                root = child
            else:
                break
        end_ -= 1


cdef struct Pair:
    # One distinct key of a map, as Python's dict keeps it: where its first
    # occurrence starts and where its last value starts.
    uint32_t key_pos
    uint32_t value_pos


cdef inline int pair_cmp(Pair* a, Pair* b) noexcept nogil:
    return -1 if a.key_pos < b.key_pos else (1 if a.key_pos > b.key_pos else 0)


cdef void sort_pairs(Pair* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j, start, root, child, end_
    cdef Pair t
    if n <= 16:
        for i in range(1, n):
            t = p[i]
            j = i - 1
            while j >= 0 and pair_cmp(&p[j], &t) > 0:
                p[j + 1] = p[j]
                j -= 1
            p[j + 1] = t
        return
    start = n // 2
    while start > 0:
        start -= 1
        root = start
        while 2 * root + 1 < n:
            child = 2 * root + 1
            if child + 1 < n and pair_cmp(&p[child], &p[child + 1]) < 0:
                child += 1
            if pair_cmp(&p[root], &p[child]) < 0:
                t = p[root]; p[root] = p[child]; p[child] = t
                root = child
            else:
                break
    end_ = n - 1
    while end_ > 0:
        t = p[0]; p[0] = p[end_]; p[end_] = t
        root = 0
        while 2 * root + 1 < end_:
            child = 2 * root + 1
            if child + 1 < end_ and pair_cmp(&p[child], &p[child + 1]) < 0:
                child += 1
            if pair_cmp(&p[root], &p[child]) < 0:
                t = p[root]; p[root] = p[child]; p[child] = t
                root = child
            else:
                break
        end_ -= 1


cdef struct Scratch:
    Entry* entries
    Py_ssize_t capacity
    unsigned char* text         # namespace + "^" + name, for hashing
    Py_ssize_t text_capacity


cdef int reserve(Scratch* s, Py_ssize_t n) noexcept nogil:
    cdef Entry* grown
    if n <= s.capacity:
        return 0
    grown = <Entry*>PyMem_RawRealloc(s.entries, <size_t>n * sizeof(Entry))
    if grown == NULL:
        return -1
    s.entries = grown
    s.capacity = n
    return 0


cdef int reserve_text(Scratch* s, Py_ssize_t n) noexcept nogil:
    cdef unsigned char* grown
    if n <= s.text_capacity:
        return 0
    grown = <unsigned char*>PyMem_RawRealloc(s.text, <size_t>n)
    if grown == NULL:
        return -1
    s.text = grown
    s.text_capacity = n
    return 0


cdef Py_ssize_t distinct_keys(const uint8_t* buf, Py_ssize_t first, Py_ssize_t end,
                              uint64_t n, Scratch* s) noexcept nogil:
    """The distinct keys of the map whose entries start at ``first``, as
    Python's dict keeps them (first occurrence's place and key, last
    occurrence's value): written as Pairs over ``s.entries`` in their
    order.  Returns how many, -1 when out of memory, -2 if not whole."""
    cdef Py_ssize_t pos = first
    cdef Py_ssize_t i, j, m, run_end
    cdef Value k
    cdef Entry* e
    cdef Pair* out
    cdef bint repeats = False
    cdef uint32_t last_key
    if reserve(s, <Py_ssize_t>n):
        return -1
    e = s.entries
    for i in range(<Py_ssize_t>n):
        if header(buf, pos, end, &k):
            return -2
        identify(buf, &k, pos - first, &e[i])
        pos = skip(buf, k.end, end)          # past the value
        if pos < 0:
            return -2
        if k.kind == K_ARRAY or k.kind == K_MAP:
            return -2                        # scan refused these keys
    sort_entries(e, <Py_ssize_t>n)
    for i in range(1, <Py_ssize_t>n):
        if e[i].cls == e[i - 1].cls and e[i].cls != C_OTHER and e[i].ident == e[i - 1].ident:
            repeats = True
            break
    out = <Pair*>e
    if not repeats:
        # Every key distinct: the pairs are the entries, in the map's order
        # (the sorted entries are no longer needed).
        pos = first
        for i in range(<Py_ssize_t>n):
            if header(buf, pos, end, &k):
                return -2
            out[i].key_pos = out[i].value_pos = <uint32_t>(pos - first)
            pos = skip(buf, k.end, end)
            if pos < 0:
                return -2
        return <Py_ssize_t>n
    # Pairs overwrite the entries as they are read: pair m (8 bytes) lies
    # within entries (16 bytes) already read, as m never passes the entry
    # being read.
    m = 0
    i = 0
    while i < <Py_ssize_t>n:
        run_end = i + 1
        while run_end < <Py_ssize_t>n and e[run_end].cls == e[i].cls \
                    and e[i].cls != C_OTHER and e[run_end].ident == e[i].ident:
                run_end += 1
        if run_end - i == 1:
            last_key = e[i].key_pos
            out[m].key_pos = last_key
            out[m].value_pos = last_key      # marks "the value after this key"
            m += 1
            i += 1
            continue
        # Equal identities; strings also need equal bytes (a hash tie).
        m = _runs(buf, first, end, e, i, run_end, out, m)
        if m < 0:
            return -2
        i = run_end
    sort_pairs(out, m)
    return m


cdef Py_ssize_t _runs(const uint8_t* buf, Py_ssize_t first, Py_ssize_t end, Entry* e,
                      Py_ssize_t lo, Py_ssize_t hi, Pair* out, Py_ssize_t m) noexcept nogil:
    """Pairs of the entries e[lo:hi] (one identity, sorted by position):
    one per group of equal keys.  ``out[m]`` may overwrite ``e[m]`` and
    m <= lo holds, so entries not yet read are never overwritten: the
    run is copied aside first when a string tie must be split."""
    cdef Py_ssize_t i, j
    cdef Value a, b
    cdef Entry first_entry
    cdef uint32_t last
    cdef bint same
    if e[lo].cls != C_STR:
        first_entry = e[lo]
        last = e[hi - 1].key_pos
        out[m].key_pos = first_entry.key_pos
        out[m].value_pos = last
        return m + 1
    # Strings: group by bytes, in order of first occurrence (O(run^2); a
    # run longer than one is a repeated name, or a 64-bit hash tie).
    i = lo
    while i < hi:
        if e[i].cls == C_GROUPED:          # already grouped
            i += 1
            continue
        if header(buf, first + e[i].key_pos, end, &a):
            return -1
        last = e[i].key_pos
        for j in range(i + 1, hi):
            if e[j].cls == C_GROUPED:
                continue
            if header(buf, first + e[j].key_pos, end, &b):
                return -1
            same = a.n == b.n and memcmp(buf + a.start, buf + b.start, <size_t>a.n) == 0
            if same:
                last = e[j].key_pos
                e[j].cls = C_GROUPED
        first_entry = e[i]
        e[i].cls = C_GROUPED
        # out[m] may be e[i]'s own slot or an earlier one; first_entry is a copy.
        out[m].key_pos = first_entry.key_pos
        out[m].value_pos = last
        m += 1
        i += 1
    return m


cdef struct Out:
    int64_t* indptr
    uint64_t* keys
    double* values
    double* labels
    double* weights
    int64_t* name_pos           # per feature: the name's position, or -1
    int64_t* namespace_pos      # per feature: the namespace key's position, or -1
    uint8_t* namespace_ids      # per feature: its namespace's id (NULL: not wanted)
    bint namespaced_integers    # integer names in a named namespace offset by its hash
    int64_t capacity
    int64_t nnz
    bint need_labels
    bint any_weight
    # What was wrong, and where.
    int error
    int64_t row
    Py_ssize_t where1           # a key, value or row position (see convert)
    Py_ssize_t where2
    Py_ssize_t where3


cdef inline void fail(Out* o, int error, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) noexcept nogil:
    o.error = error
    o.where1 = a
    o.where2 = b
    o.where3 = c


cdef int features(const uint8_t* buf, Py_ssize_t end, Py_ssize_t map_pos,
                  Py_ssize_t ns_key_pos, Out* o, Scratch* s) noexcept nogil:
    """Append the features of the map at ``map_pos`` (of the namespace
    whose key is at ``ns_key_pos``, or -1 for ``features``); 0, 1 on a row
    error (in ``o``), -1 out of memory, -2 malformed."""
    cdef Value m, k, v, ns
    cdef Py_ssize_t n, i, first, key_at, value_at, prefix = 0
    cdef Pair* pairs
    cdef double x
    cdef uint64_t key
    cdef uint64_t offset = 0                 # added to integer names (namespaced_integers)
    cdef uint8_t ns_id = DEFAULT_NAMESPACE_ID
    cdef bint offsetting = False
    cdef bint hashed
    if header(buf, map_pos, end, &m):
        return -2
    if m.kind != K_MAP:
        fail(o, ROW_GROUP_NOT_MAP, ns_key_pos, -1, -1)
        return 1
    if ns_key_pos >= 0:
        if header(buf, ns_key_pos, end, &ns):
            return -2
        if ns.n > 0:                         # the empty namespace is no namespace
            prefix = <Py_ssize_t>ns.n + 1
            # Interactions know a namespace by its name's first byte
            # (docs/formats.md, "Interactions").
            ns_id = buf[ns.start]
            if o.namespaced_integers:
                # XXH64(namespace + "^"): docs/formats.md, "Keys", rule 3.
                if reserve_text(s, prefix):
                    return -1
                memcpy(s.text, buf + ns.start, <size_t>ns.n)
                s.text[ns.n] = 94            # "^"
                offset = feature_hash(s.text, <size_t>prefix)
                offsetting = True
    first = m.end
    n = distinct_keys(buf, first, end, m.n, s)
    if n < 0:
        return <int>n
    if o.nnz + n > o.capacity:
        return -2
    pairs = <Pair*>s.entries
    for i in range(n):
        key_at = first + pairs[i].key_pos
        if header(buf, key_at, end, &k):
            return -2
        value_at = k.end
        if pairs[i].value_pos != pairs[i].key_pos:       # the last of repeated keys
            if header(buf, first + pairs[i].value_pos, end, &v):
                return -2
            value_at = v.end
        if k.kind == K_UINT:
            key = k.u + offset
            hashed = False
        elif k.kind == K_STR:
            if prefix:
                if reserve_text(s, prefix + <Py_ssize_t>k.n):
                    return -1
                memcpy(s.text, buf + ns.start, <size_t>ns.n)
                s.text[ns.n] = 94            # "^"
                memcpy(s.text + prefix, buf + k.start, <size_t>k.n)
                hashed = key_of_feature(s.text, <size_t>prefix, <size_t>(prefix + <Py_ssize_t>k.n), &key)
            else:
                hashed = key_of_feature(buf + k.start, 0, <size_t>k.n, &key)
            if not hashed:
                key += offset                # a decimal name is an integer name
        else:
            fail(o, ROW_FEATURE_NAME, ns_key_pos, key_at, -1)
            return 1
        if header(buf, value_at, end, &v):
            return -2
        if not number(&v, &x):
            fail(o, ROW_FEATURE_VALUE, ns_key_pos, key_at, value_at)
            return 1
        o.keys[o.nnz] = key
        o.values[o.nnz] = x
        if o.name_pos != NULL:
            # A name is kept where it gives the key back: hashed, a decimal
            # name outside a namespace, or (namespaced_integers) any integer
            # name in a named namespace, as "namespace^42".
            if offsetting:
                o.name_pos[o.nnz] = key_at
            else:
                o.name_pos[o.nnz] = key_at if k.kind == K_STR and (hashed or not prefix) else -1
            o.namespace_pos[o.nnz] = ns_key_pos if prefix else -1
        if o.namespace_ids != NULL:
            o.namespace_ids[o.nnz] = ns_id
        o.nnz += 1
    return 0


cdef int row_fields(const uint8_t* buf, Py_ssize_t end, Py_ssize_t pos, Out* o,
                    Scratch* s) noexcept nogil:
    """Convert the row at ``pos``: 0, 1 on a row error, -1/-2 as features."""
    cdef Value r, k, v, ns_map
    cdef Py_ssize_t i, p, n
    cdef Py_ssize_t label_at = -1, importance_at = -1, features_at = -1, namespaces_at = -1
    cdef bint unknown = False
    cdef double x
    cdef int status
    cdef Pair* pairs
    cdef Py_ssize_t first, key_at, value_at
    cdef int64_t row = o.row
    if header(buf, pos, end, &r):
        return -2
    if r.kind != K_MAP:
        fail(o, ROW_NOT_MAP, pos, -1, -1)
        return 1
    p = r.end
    for i in range(<Py_ssize_t>r.n):
        if header(buf, p, end, &k):
            return -2
        value_at = k.end
        if k.kind == K_STR and k.n == 5 and memcmp(buf + k.start, b"label", 5) == 0:
            label_at = value_at
        elif k.kind == K_STR and k.n == 10 and memcmp(buf + k.start, b"importance", 10) == 0:
            importance_at = value_at
        elif k.kind == K_STR and k.n == 8 and memcmp(buf + k.start, b"features", 8) == 0:
            features_at = value_at
        elif k.kind == K_STR and k.n == 10 and memcmp(buf + k.start, b"namespaces", 10) == 0:
            namespaces_at = value_at
        elif not (k.kind == K_STR and k.n == 3 and memcmp(buf + k.start, b"tag", 3) == 0):
            unknown = True
        p = skip(buf, value_at, end)
        if p < 0:
            return -2
    if unknown:
        fail(o, ROW_UNKNOWN_FIELD, pos, -1, -1)
        return 1
    if o.need_labels:
        if label_at < 0:
            fail(o, ROW_NO_LABEL, pos, -1, -1)
            return 1
        if header(buf, label_at, end, &v):
            return -2
        if not number(&v, &x):
            fail(o, ROW_LABEL, label_at, -1, -1)
            return 1
        o.labels[row] = x
    x = 1.0
    if importance_at >= 0:
        if header(buf, importance_at, end, &v):
            return -2
        if not number(&v, &x):
            fail(o, ROW_IMPORTANCE, importance_at, -1, -1)
            return 1
    o.weights[row] = x
    if x != 1.0:
        o.any_weight = True
    if namespaces_at >= 0:
        if header(buf, namespaces_at, end, &ns_map):
            return -2
        if ns_map.kind != K_MAP:
            fail(o, ROW_NAMESPACES_NOT_MAP, namespaces_at, -1, -1)
            return 1
    if features_at >= 0:
        status = features(buf, end, features_at, -1, o, s)
        if status:
            return status
    if namespaces_at < 0:
        return 0
    first = ns_map.end
    n = distinct_keys(buf, first, end, ns_map.n, s)
    if n < 0:
        return <int>n
    # The namespaces' own maps reuse the scratch: keep this map's pairs aside.
    pairs = <Pair*>PyMem_RawMalloc(<size_t>(n if n else 1) * sizeof(Pair))
    if pairs == NULL:
        return -1
    memcpy(pairs, s.entries, <size_t>n * sizeof(Pair))
    status = 0
    for i in range(n):
        key_at = first + pairs[i].key_pos
        if header(buf, key_at, end, &k):
            status = -2
            break
        if k.kind != K_STR and k.kind != K_NIL:
            fail(o, ROW_NAMESPACE_NAME, key_at, -1, -1)
            status = 1
            break
        value_at = k.end
        if pairs[i].value_pos != pairs[i].key_pos:
            if header(buf, first + pairs[i].value_pos, end, &v):
                status = -2
                break
            value_at = v.end
        # A nil namespace is none: its features are named as ``features``'.
        status = features(buf, end, value_at, key_at if k.kind == K_STR else -1, o, s)
        if status:
            break
    PyMem_RawFree(pairs)
    return status


cdef int convert_c(const uint8_t* buf, Py_ssize_t start, Py_ssize_t end, int64_t n_rows,
                   Out* o) noexcept nogil:
    cdef Scratch s
    cdef Value rows
    cdef Py_ssize_t pos
    cdef int status = 0
    s.entries = NULL
    s.capacity = 0
    s.text = NULL
    s.text_capacity = 0
    if header(buf, start, end, &rows):
        return -2
    pos = rows.end
    o.indptr[0] = 0
    o.row = 0
    while o.row < n_rows:
        status = row_fields(buf, end, pos, o, &s)
        if status:
            break
        pos = skip(buf, pos, end)
        if pos < 0:
            status = -2
            break
        o.row += 1
        o.indptr[o.row] = o.nnz
    PyMem_RawFree(s.entries)
    PyMem_RawFree(s.text)
    return status


def convert(const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t end, int64_t capacity,
            bint need_labels, bint with_names, bint with_namespace_ids=False,
            bint namespaced_integers=False):
    """Convert the ``rows`` value at ``buf[start:end]`` (checked by
    ``scan``; ``capacity`` its map entries, an upper bound of its features).

    Returns ``(0, indptr, keys, values, labels, weights, name_pos,
    namespace_pos)`` (labels None unless ``need_labels``; weights None when
    every importance is 1; the positions of each feature's name and
    namespace key, -1 for none, only ``with_names``), or ``(error, row, a,
    b, c)`` for the first row that is wrong: ``error`` one of the ROW_
    codes, ``a``/``b``/``c`` positions in ``buf`` (a namespace key, a
    feature key, a value, or the row), as each code says in
    onlinel1.server.protocol.

    ``with_namespace_ids`` adds a ninth item to a success: each feature's
    namespace id (uint8: the first byte of its namespace's name,
    ``DEFAULT_NAMESPACE`` for ``features``, a nil or an empty namespace),
    what ``onlinel1.io.interactions.cross_arrays`` crosses by.  With
    ``namespaced_integers`` an integer name (a msgpack integer or a decimal
    string) in a named namespace has the key ``(name + XXH64(namespace +
    "^")) mod 2**64``, ``onlinel1.io.feature_key(..., namespaced_integers=True)``
    (docs/formats.md, "Keys"), and keeps its name (``namespace^42``)."""
    cdef Value rows
    cdef Out o
    cdef int status
    cdef int64_t n_rows, nnz
    cdef const uint8_t* p = &buf[0] if buf.shape[0] else <const uint8_t*>b""
    if end > buf.shape[0] or start < 0 or start >= end:
        raise ValueError("the rows span is outside the buffer")
    if header(p, start, end, &rows):
        raise ValueError("the rows value is not whole")
    if rows.kind != K_ARRAY:
        return (ROW_NOT_ARRAY, -1, start, -1, -1)
    n_rows = <int64_t>rows.n
    indptr = np.empty(n_rows + 1, dtype=np.int64)
    keys = np.empty(capacity, dtype=np.uint64)
    values = np.empty(capacity, dtype=np.float64)
    labels = np.empty(n_rows if need_labels else 0, dtype=np.float64)
    weights = np.empty(n_rows, dtype=np.float64)
    name_pos = np.empty(capacity if with_names else 0, dtype=np.int64)
    namespace_pos = np.empty(capacity if with_names else 0, dtype=np.int64)
    namespace_ids = np.empty(capacity if with_namespace_ids else 0, dtype=np.uint8)
    cdef int64_t[::1] indptr_v = indptr
    cdef uint64_t[::1] keys_v = keys
    cdef double[::1] values_v = values
    cdef double[::1] labels_v = labels
    cdef double[::1] weights_v = weights
    cdef int64_t[::1] name_v = name_pos
    cdef int64_t[::1] namespace_v = namespace_pos
    cdef uint8_t[::1] ids_v = namespace_ids
    o.indptr = &indptr_v[0]
    o.keys = &keys_v[0] if capacity else NULL
    o.values = &values_v[0] if capacity else NULL
    o.labels = &labels_v[0] if need_labels and n_rows else NULL
    o.weights = &weights_v[0] if n_rows else NULL
    o.name_pos = &name_v[0] if with_names and capacity else NULL
    o.namespace_pos = &namespace_v[0] if with_names and capacity else NULL
    o.namespace_ids = &ids_v[0] if with_namespace_ids and capacity else NULL
    o.namespaced_integers = namespaced_integers
    o.capacity = capacity
    o.nnz = 0
    o.need_labels = need_labels
    o.any_weight = False
    o.error = 0
    with nogil:
        status = convert_c(p, start, end, n_rows, &o)
    if status == -1:
        raise MemoryError("out of memory decoding a row-wise batch")
    if status == -2:
        raise ValueError("the rows value is not valid msgpack (it passed scan: a bug)")
    if status == 1:
        return (o.error, o.row, o.where1, o.where2, o.where3)
    nnz = o.nnz
    out = (0, indptr, keys[:nnz], values[:nnz], labels if need_labels else None,
           weights if o.any_weight else None,
           name_pos[:nnz] if with_names else None, namespace_pos[:nnz] if with_names else None)
    if with_namespace_ids:
        out += (namespace_ids[:nnz],)
    return out


def map_entries(const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t limit):
    """``(spans, n)``: the (key start, key end, value end) of the first
    ``limit`` entries of the (checked) map at ``pos``, and its number of
    entries."""
    cdef Value m
    cdef Py_ssize_t p, i, after, value_end
    cdef const uint8_t* b = &buf[0]
    cdef Py_ssize_t end = buf.shape[0]
    if header(b, pos, end, &m) or m.kind != K_MAP:
        raise ValueError("not a map")
    spans = []
    p = m.end
    for i in range(min(<Py_ssize_t>m.n, limit)):
        after = skip(b, p, end)                  # past the key
        if after < 0:
            raise ValueError("not whole")
        value_end = skip(b, after, end)
        if value_end < 0:
            raise ValueError("not whole")
        spans.append((p, after, value_end))
        p = value_end
    return spans, <Py_ssize_t>m.n


def value_end(const uint8_t[::1] buf, Py_ssize_t pos):
    """The position after the (checked) value at ``pos``."""
    cdef Py_ssize_t after = skip(&buf[0], pos, buf.shape[0])
    if after < 0:
        raise ValueError("not whole")
    return after


# ----------------------------------------------------------------- writing

cdef inline Py_ssize_t array_header_size(uint64_t n) noexcept nogil:
    return 1 if n < 16 else (3 if n < 65536 else 5)


cdef inline char* put_be(char* p, uint64_t v, int size) noexcept nogil:
    cdef int k
    for k in range(size):
        p[k] = <char>((v >> (8 * (size - 1 - k))) & 0xFF)
    return p + size


cdef inline char* put_array_header(char* p, uint64_t n) noexcept nogil:
    if n < 16:
        p[0] = <char>(0x90 | n)
        return p + 1
    if n < 65536:
        p[0] = <char>0xDC
        return put_be(p + 1, n, 2)
    p[0] = <char>0xDD
    return put_be(p + 1, n, 4)


cdef inline char* put_double(char* p, double x) noexcept nogil:
    cdef uint64_t bits
    memcpy(&bits, &x, 8)
    p[0] = <char>0xCB
    return put_be(p + 1, bits, 8)


cdef inline Py_ssize_t uint_size(uint64_t v) noexcept nogil:
    if v < 128:
        return 1
    if v < 256:
        return 2
    if v < 65536:
        return 3
    if v < 4294967296ULL:
        return 5
    return 9


cdef inline char* put_uint(char* p, uint64_t v) noexcept nogil:
    if v < 128:
        p[0] = <char>v
        return p + 1
    if v < 256:
        p[0] = <char>0xCC
        return put_be(p + 1, v, 1)
    if v < 65536:
        p[0] = <char>0xCD
        return put_be(p + 1, v, 2)
    if v < 4294967296ULL:
        p[0] = <char>0xCE
        return put_be(p + 1, v, 4)
    p[0] = <char>0xCF
    return put_be(p + 1, v, 8)


def floats_size(Py_ssize_t n):
    """Bytes of ``pack_floats`` of ``n`` floats."""
    return array_header_size(<uint64_t>n) + 9 * n


def pack_floats(const double[::1] x):
    """msgpack of the list of floats ``x`` (``packb(x.tolist())``)."""
    cdef Py_ssize_t n = x.shape[0], i
    out = PyBytes_FromStringAndSize(NULL, floats_size(n))
    cdef char* p = PyBytes_AS_STRING(out)
    with nogil:
        p = put_array_header(p, <uint64_t>n)
        for i in range(n):
            p = put_double(p, x[i])
    return out


def contributions_size(const int64_t[::1] counts, const int64_t[::1] positions,
                       const uint64_t[::1] keys):
    """Bytes of ``pack_contributions`` of these rows."""
    cdef Py_ssize_t n = counts.shape[0], i
    cdef Py_ssize_t size = array_header_size(<uint64_t>n)
    with nogil:
        for i in range(n):
            size += array_header_size(<uint64_t>counts[i])
        for i in range(positions.shape[0]):
            size += 1 + uint_size(keys[positions[i]]) + 9
    return size


def pack_contributions(const int64_t[::1] counts, const int64_t[::1] positions,
                       const uint64_t[::1] keys, const double[::1] values):
    """msgpack of one list per row of ``[key, value]`` pairs: row i has the
    next ``counts[i]`` of ``positions``, each the index of its key in
    ``keys`` and of its value in ``values``."""
    cdef Py_ssize_t n = counts.shape[0], i, j = 0, c
    cdef Py_ssize_t total = 0
    cdef int64_t at
    for i in range(n):
        total += counts[i]
    if total != positions.shape[0]:
        raise ValueError("counts do not add up to the positions given")
    for i in range(positions.shape[0]):
        if not 0 <= positions[i] < min(keys.shape[0], values.shape[0]):
            raise ValueError("a position is outside the keys or values")
    out = PyBytes_FromStringAndSize(NULL, contributions_size(counts, positions, keys))
    cdef char* p = PyBytes_AS_STRING(out)
    with nogil:
        p = put_array_header(p, <uint64_t>n)
        for i in range(n):
            p = put_array_header(p, <uint64_t>counts[i])
            for c in range(counts[i]):
                at = positions[j]
                p[0] = <char>0x92
                p = put_uint(p + 1, keys[at])
                p = put_double(p, values[at])
                j += 1
    return out
