# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Streaming parsers for svmlight/libsvm and Vowpal Wabbit text, over raw bytes.

``Parser.parse`` is handed a block of bytes (read 1 MiB at a time by
onlinel1.io.readers) and parses the complete lines in it with char
pointers, straight into growing C arrays in CSR form: no Python object per
line or per feature, no GIL.  The caller keeps the unparsed tail (a line cut
by the block boundary) and hands it back with the next block.
``take_batch`` copies the rows parsed so far into numpy arrays.
msgpack's ``_unpacker.pyx`` is the model: raw bytes in, typed arrays out, and
any malformed input becomes an error code and then a clear Python exception,
never a crash.

Numbers (docs/formats.md).  Integers (svmlight indices, integer feature
names) are parsed by hand.  A decimal float whose significand has at most 19
digits and is <= 2**53, with a decimal exponent in [-22, 22], is converted
with one multiplication or division by an exact power of ten: both operands
are exact doubles, so the one IEEE-rounded operation gives the correctly
rounded result (Clinger 1990, "How to read floating point numbers
accurately", the fast path).  Everything else goes to libc ``strtod`` (also
correctly rounded in glibc), so every value is bit-identical to ``strtod``
and to Python's ``float()`` (which scikit-learn's reader uses).

The grammar of a number is ``[+-](digits[.digits]|.digits)[(e|E)[+-]digits]``
or ``[+-](inf|infinity|nan)`` (case-insensitive); hexadecimal floats and
Python's digit-group underscores are rejected.

Two settings of the VW reader change keys (docs/formats.md): with
``interactions`` each line's namespaces are crossed when the line ends
(onlinel1/_kernels/interactions.pyx), and with ``namespaced_integers`` an
integer feature name in a named namespace is offset by the namespace's
hash, as VW does.
"""
cimport cython
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc, strtod
from libc.string cimport memchr, memcpy

import numpy as np

from onlinel1._kernels.hashing cimport feature_hash, parse_decimal_uint64
from onlinel1._kernels.interactions cimport Crosser

from onlinel1._kernels.interactions import MAX_CROSSED_PER_ROW

cdef enum:
    FMT_SVMLIGHT = 0
    FMT_VW = 1

# Status codes of a line (and of ``parse``).  Python turns them into
# ParseError messages (onlinel1.io.readers); ``err_start``/``err_stop`` give
# the offending bytes within the block.
cdef enum:
    OK = 0
    E_NOMEM = 1
    E_LABEL = 2          # the label is not a number
    E_FEATURE = 3        # svmlight: not index:value
    E_QID = 4            # svmlight: qid:<not an integer>
    E_NO_BAR = 5         # VW: no '|' at all
    E_NO_LABEL = 6       # VW: nothing before the first '|' but maybe a tag
    E_LABEL_FIELDS = 7   # VW: more than label, importance, base
    E_IMPORTANCE = 8     # VW: importance not a number >= 0
    E_BASE = 9           # VW: base not a number
    E_NAMESPACE = 10     # VW: '|:' (a scale without a namespace name)
    E_SCALE = 11         # VW: |ns:<not a number>
    E_VW_FEATURE = 12    # VW: not name or name:number
    E_TAG_ONLY = 13      # VW: the only field before '|' touches it, so it is a tag
    E_CROSSED = 14       # VW: the interactions give too many features in one line

FORMATS = {"svmlight": FMT_SVMLIGHT, "vw": FMT_VW}
ERRORS = {
    E_NOMEM: "out of memory",
    E_LABEL: "bad label {token} (expected a number)",
    E_FEATURE: "bad feature {token} (expected index:value)",
    E_QID: "bad query id {token} (expected qid:integer)",
    E_NO_BAR: "no '|' in {token} (expected [label [importance [base]]] ['tag]|namespace features)",
    E_NO_LABEL: "missing label before {token} (a training example starts with its label: "
                "label [importance [base]] ['tag]|namespace features)",
    E_LABEL_FIELDS: "too many label fields {token} (expected label [importance [base]] ['tag])",
    E_IMPORTANCE: "bad importance {token} (expected a number >= 0)",
    E_BASE: "bad base {token} (expected a number)",
    E_NAMESPACE: "bad namespace {token} (expected |name[:scale] or | for the default namespace)",
    E_SCALE: "bad namespace scale {token} (expected |name:number)",
    E_VW_FEATURE: "bad feature {token} (expected name or name:value)",
    E_TAG_ONLY: "missing label: {token} touches the '|', so it is read as a tag "
                "(write 'label |namespace ...' with a space before the '|')",
    E_CROSSED: f"the interactions give more than {MAX_CROSSED_PER_ROW:,} features in the line "
               "{token} (fewer or smaller namespaces, or fewer interactions)",
}

#: With interactions, a batch ends early once it holds this many features,
#: whatever the batch size: memory stays bounded when lines cross into
#: many features (a batch holds at most this plus one line).
INTERACTIONS_BATCH_NNZ = 1 << 25

cdef Py_ssize_t MIN_ROWS = 64
cdef Py_ssize_t MIN_NNZ = 1024
cdef size_t MIN_TEXT = 256
# The largest integer below which every integer is an exact double.
cdef uint64_t MAX_EXACT_MANTISSA = 9007199254740992ULL  # 2**53
cdef double POW10[23]
cdef int _k
POW10[0] = 1.0
for _k in range(1, 23):
    POW10[_k] = POW10[_k - 1] * 10.0  # exact: 10**22 < 2**53 * 2**22 (5**22 < 2**53)


cdef inline bint is_space(unsigned char c) noexcept nogil:
    # What bytes.split() splits on (scikit-learn's reader): space, \t \n \v \f \r.
    return c == 32 or (c >= 9 and c <= 13)


cdef inline bint is_vw_blank(unsigned char c) noexcept nogil:
    # Vowpal Wabbit separates fields with spaces and tabs only.
    return c == 32 or c == 9


cdef inline bint has_colon(const unsigned char* p, const unsigned char* e) noexcept nogil:
    """Whether the field at ``p`` (up to whitespace or ``e``) holds a ':'."""
    while p < e and not is_space(p[0]):
        if p[0] == 58:
            return True
        p += 1
    return False


cdef inline unsigned char lower(unsigned char c) noexcept nogil:
    return c | 0x20


cdef inline bint match_word(const unsigned char* p, const unsigned char* e,
                            const char* word, size_t n) noexcept nogil:
    """``p[:n]`` equals ``word`` ignoring ASCII case (``word`` is lowercase)."""
    cdef size_t i
    if <size_t>(e - p) < n:
        return False
    for i in range(n):
        if lower(p[i]) != <unsigned char>word[i]:
            return False
    return True


@cython.final
cdef class Parser:
    """Incremental parser of one text format into CSR arrays.

    ``Parser(fmt, collect_names, optional_labels, interactions,
    namespaced_integers)``: ``fmt`` is "svmlight" or "vw".  With
    ``collect_names``, the text of every hashed feature seen for the first
    time is kept (``take_names``) so the reader can fill a key -> name map
    without Python work for features it has already seen.  With
    ``optional_labels`` (data to predict), a line without a label is a row
    whose label is NaN: an svmlight line whose first field holds a ``:``, a
    VW line with nothing but a tag before its first ``|``.  ``row_lines``
    gives the 1-based line of each row not yet taken.  ``interactions``
    (normalised strings, VW only) are crossed at the end of every line;
    ``namespaced_integers`` (VW only) offsets an integer name in a named
    namespace by the namespace's hash (and names it ``namespace^name``).
    """
    cdef int fmt
    cdef bint collect_names
    cdef bint optional_labels
    # Rows parsed and not yet taken: CSR arrays.
    cdef int64_t* indptr
    cdef double* labels
    cdef double* weights
    cdef int64_t* row_line
    cdef readonly Py_ssize_t n_rows
    cdef Py_ssize_t rows_cap
    cdef uint64_t* keys
    cdef double* values
    cdef readonly Py_ssize_t nnz
    cdef Py_ssize_t nnz_cap
    # Lines consumed so far (1-based line number of the next line - 1).
    cdef readonly Py_ssize_t lines
    # Last error: status code, line, and where in the block.
    cdef readonly int error
    cdef readonly Py_ssize_t error_line
    cdef readonly Py_ssize_t error_start
    cdef readonly Py_ssize_t error_stop
    # Scratch: the text "namespace^name" of a feature being hashed.
    cdef unsigned char* text
    cdef size_t text_cap
    cdef size_t prefix_len
    # Scratch: a NUL-terminated copy of a number for strtod.
    cdef char* num
    cdef size_t num_cap
    # Keys whose names were already reported (open addressing, 0 = empty).
    cdef uint64_t* seen
    cdef size_t seen_cap
    cdef size_t seen_n
    cdef bint seen_zero
    # Names of hashed keys seen for the first time since take_names.
    cdef unsigned char* name_bytes
    cdef size_t name_len
    cdef size_t name_cap
    cdef uint64_t* new_keys
    cdef int64_t* new_offsets
    cdef size_t n_new
    cdef size_t new_cap
    # Interactions: the namespace id (first byte of its name, ' ' for the
    # default namespace) of each feature of the line being parsed.
    cdef Crosser crosser
    cdef bint crossing
    cdef public Py_ssize_t max_nnz      # -1: no bound but the batch size
    cdef unsigned char* row_ns
    cdef size_t row_ns_cap
    cdef unsigned char ns_char
    # namespaced_integers: XXH64 of the namespace's "name^", once per namespace.
    cdef bint namespaced_integers
    cdef uint64_t ns_hash
    cdef bint ns_hash_ready

    def __cinit__(self, str fmt, bint collect_names=False, bint optional_labels=False,
                  interactions=(), bint namespaced_integers=False):
        cdef size_t i
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: expected one of {sorted(FORMATS)}")
        self.fmt = FORMATS[fmt]
        self.collect_names = collect_names
        self.optional_labels = optional_labels
        if interactions:
            if self.fmt != FMT_VW:
                raise ValueError("interactions cross namespaces: they need VW text")
            self.crosser = Crosser(interactions)
            self.crossing = True
        self.max_nnz = INTERACTIONS_BATCH_NNZ if self.crossing else -1
        self.namespaced_integers = namespaced_integers
        self.row_ns_cap = MIN_TEXT
        self.row_ns = <unsigned char*>malloc(self.row_ns_cap)
        self.rows_cap = MIN_ROWS
        self.nnz_cap = MIN_NNZ
        self.indptr = <int64_t*>malloc((self.rows_cap + 1) * sizeof(int64_t))
        self.labels = <double*>malloc(self.rows_cap * sizeof(double))
        self.weights = <double*>malloc(self.rows_cap * sizeof(double))
        self.row_line = <int64_t*>malloc(self.rows_cap * sizeof(int64_t))
        self.keys = <uint64_t*>malloc(self.nnz_cap * sizeof(uint64_t))
        self.values = <double*>malloc(self.nnz_cap * sizeof(double))
        self.text_cap = MIN_TEXT
        self.text = <unsigned char*>malloc(self.text_cap)
        self.num_cap = MIN_TEXT
        self.num = <char*>malloc(self.num_cap)
        self.new_cap = 64
        self.new_keys = <uint64_t*>malloc(self.new_cap * sizeof(uint64_t))
        self.new_offsets = <int64_t*>malloc((self.new_cap + 1) * sizeof(int64_t))
        self.name_cap = MIN_TEXT * 16
        self.name_bytes = <unsigned char*>malloc(self.name_cap)
        self.seen_cap = 1024
        self.seen = <uint64_t*>malloc(self.seen_cap * sizeof(uint64_t))
        if (self.indptr == NULL or self.labels == NULL or self.weights == NULL
                or self.row_line == NULL
                or self.keys == NULL or self.values == NULL or self.text == NULL
                or self.num == NULL or self.new_keys == NULL or self.new_offsets == NULL
                or self.name_bytes == NULL or self.seen == NULL or self.row_ns == NULL):
            raise MemoryError("cannot allocate the parser's buffers")
        self.indptr[0] = 0
        self.new_offsets[0] = 0
        for i in range(self.seen_cap):
            self.seen[i] = 0

    def __dealloc__(self):
        free(self.indptr)
        free(self.labels)
        free(self.weights)
        free(self.row_line)
        free(self.keys)
        free(self.values)
        free(self.text)
        free(self.num)
        free(self.seen)
        free(self.name_bytes)
        free(self.new_keys)
        free(self.new_offsets)
        free(self.row_ns)

    # ------------------------------------------------------------ Python API

    def parse(self, const unsigned char[::1] block, Py_ssize_t start, Py_ssize_t stop,
              bint final, Py_ssize_t max_rows):
        """Parse the complete lines of ``block[start:stop]`` until ``n_rows``
        reaches ``max_rows`` (or, where ``max_nnz`` >= 0, ``nnz`` reaches
        ``max_nnz``); return the position after the last line parsed.

        A line is complete when its newline is in the block, or, with
        ``final`` (end of input), also when it runs to ``stop``.  On a
        malformed line, ``error`` is set (and ``error_line``,
        ``error_start``/``error_stop``: the offending bytes of the block) and
        the returned position is the start of that line; the rows before it
        are kept.  Raises MemoryError when memory runs out.
        """
        cdef Py_ssize_t pos = start
        cdef int status
        if start < 0 or stop < start or stop > block.shape[0]:
            raise ValueError(f"bad block range {start}:{stop} of {block.shape[0]} bytes")
        self.error = OK
        if stop == start:
            return start
        with nogil:
            status = self._parse_block(&block[0], &pos, stop, final, max_rows)
        if status == E_NOMEM:
            raise MemoryError("out of memory while parsing")
        self.error = status
        return pos

    def take_batch(self):
        """``(indptr, keys, values, labels, weights)`` of the rows parsed so
        far, as new numpy arrays; ``weights`` is None for svmlight.  Empties
        the parser's row buffers."""
        cdef Py_ssize_t n = self.n_rows, nnz = self.nnz
        indptr = np.empty(n + 1, dtype=np.int64)
        keys = np.empty(nnz, dtype=np.uint64)
        values = np.empty(nnz, dtype=np.float64)
        labels = np.empty(n, dtype=np.float64)
        cdef int64_t[::1] indptr_v = indptr
        cdef uint64_t[::1] keys_v = keys
        cdef double[::1] values_v = values
        cdef double[::1] labels_v = labels
        cdef double[::1] weights_v
        memcpy(&indptr_v[0], self.indptr, (n + 1) * sizeof(int64_t))
        if nnz:
            memcpy(&keys_v[0], self.keys, nnz * sizeof(uint64_t))
            memcpy(&values_v[0], self.values, nnz * sizeof(double))
        if n:
            memcpy(&labels_v[0], self.labels, n * sizeof(double))
        weights = None
        if self.fmt == FMT_VW:
            weights = np.empty(n, dtype=np.float64)
            weights_v = weights
            if n:
                memcpy(&weights_v[0], self.weights, n * sizeof(double))
        self.n_rows = 0
        self.nnz = 0
        return indptr, keys, values, labels, weights

    def row_lines(self):
        """The 1-based line number of each row parsed and not yet taken (a
        new int64 array; call it before ``take_batch``)."""
        lines = np.empty(self.n_rows, dtype=np.int64)
        cdef int64_t[::1] lines_v = lines
        if self.n_rows:
            memcpy(&lines_v[0], self.row_line, self.n_rows * sizeof(int64_t))
        return lines

    def take_names(self):
        """``(keys, text, offsets)`` of the hashed features first seen since
        the last call: key i was hashed from ``text[offsets[i]:offsets[i+1]]``
        (``namespace^name`` or ``name``, raw bytes).  Empties the list."""
        cdef size_t n = self.n_new
        keys = np.empty(n, dtype=np.uint64)
        offsets = np.empty(n + 1, dtype=np.int64)
        cdef uint64_t[::1] keys_v = keys
        cdef int64_t[::1] offsets_v = offsets
        if n:
            memcpy(&keys_v[0], self.new_keys, n * sizeof(uint64_t))
        memcpy(&offsets_v[0], self.new_offsets, (n + 1) * sizeof(int64_t))
        text = (<char*>self.name_bytes)[:self.name_len]
        self.n_new = 0
        self.name_len = 0
        return keys, text, offsets

    # ------------------------------------------------------------- the loop

    cdef int _parse_block(self, const unsigned char* base, Py_ssize_t* pos, Py_ssize_t stop,
                          bint final, Py_ssize_t max_rows) noexcept nogil:
        cdef const unsigned char* p
        cdef const unsigned char* eol
        cdef const unsigned char* line_end
        cdef const unsigned char* end = base + stop
        cdef int status
        while self.n_rows < max_rows and (self.max_nnz < 0 or self.nnz < self.max_nnz) \
                and pos[0] < stop:
            p = base + pos[0]
            eol = <const unsigned char*>memchr(p, 10, <size_t>(end - p))  # '\n'
            if eol == NULL:
                if not final:
                    return OK
                line_end = end
            else:
                line_end = eol
            # CRLF: the '\r' belongs to the line ending.
            if line_end > p and (line_end - 1)[0] == 13:
                line_end -= 1
            # A UTF-8 byte order mark at the start of the file.
            if self.lines == 0 and line_end - p >= 3 and p[0] == 0xEF and p[1] == 0xBB \
                    and p[2] == 0xBF:
                p += 3
            if self.fmt == FMT_SVMLIGHT:
                status = self._svmlight_line(p, line_end, base)
            else:
                status = self._vw_line(p, line_end, base)
            if status != OK:
                self.error_line = self.lines + 1
                return status
            self.lines += 1
            pos[0] = stop if eol == NULL else (eol - base) + 1
        return OK

    # ------------------------------------------------------------- svmlight

    cdef int _svmlight_line(self, const unsigned char* p, const unsigned char* e,
                            const unsigned char* base) noexcept nogil:
        """``label [qid:N] index:value ... [# comment]``; keys as written."""
        cdef const unsigned char* hash_mark = <const unsigned char*>memchr(p, 35, <size_t>(e - p))
        cdef const unsigned char* s
        cdef const unsigned char* q
        cdef double label, value
        cdef uint64_t index, digit
        cdef Py_ssize_t nnz0 = self.nnz
        cdef bint first = True
        if hash_mark != NULL:
            e = hash_mark
        while p < e and is_space(p[0]):
            p += 1
        if p == e:
            return OK  # empty or comment-only line
        # The label.
        s = p
        if self.optional_labels and has_colon(p, e):
            label = NAN  # no label: the line starts with its features
        else:
            p = self._parse_double(p, e, &label)
            if p == NULL or (p < e and not is_space(p[0])):
                return self._fail(E_LABEL, s, e, base, nnz0)
        while True:
            while p < e and is_space(p[0]):
                p += 1
            if p == e:
                break
            s = p
            if first and e - p >= 4 and p[0] == 113 and p[1] == 105 and p[2] == 100 \
                    and p[3] == 58:  # "qid:" right after the label: parsed, ignored
                first = False
                p += 4
                if p < e and p[0] == 45:  # '-'
                    p += 1
                q = p
                while p < e and p[0] >= 48 and p[0] <= 57:
                    p += 1
                if p == q or (p < e and not is_space(p[0])):
                    return self._fail(E_QID, s, e, base, nnz0)
                continue
            first = False
            # index: one or more digits, < 2**64, then ':'.
            index = 0
            while p < e:
                digit = <uint64_t>p[0] - 48
                if digit > 9:
                    break
                if index > 1844674407370955161ULL or (index == 1844674407370955161ULL
                                                       and digit > 5):
                    return self._fail(E_FEATURE, s, e, base, nnz0)
                index = index * 10 + digit
                p += 1
            if p == s or p == e or p[0] != 58:  # ':'
                return self._fail(E_FEATURE, s, e, base, nnz0)
            p = self._parse_double(p + 1, e, &value)
            if p == NULL or (p < e and not is_space(p[0])):
                return self._fail(E_FEATURE, s, e, base, nnz0)
            if self.nnz == self.nnz_cap and self._grow_nnz() != 0:
                return E_NOMEM
            self.keys[self.nnz] = index
            self.values[self.nnz] = value
            self.nnz += 1
        return self._end_row(label, 1.0)

    # ------------------------------------------------------------------- VW

    cdef int _vw_line(self, const unsigned char* p, const unsigned char* e,
                      const unsigned char* base) noexcept nogil:
        """``label [importance [base]] ['tag]|ns[:scale] f[:v] ... |ns2 ...``"""
        cdef const unsigned char* bar
        cdef const unsigned char* s
        cdef const unsigned char* q
        cdef const unsigned char* tok_start[4]
        cdef const unsigned char* tok_stop[4]
        cdef int n_tok = 0, n_fields
        cdef double label, importance = 1.0, ignored, scale, value
        cdef Py_ssize_t nnz0 = self.nnz
        cdef uint64_t key
        cdef size_t name_len
        cdef bint hashed
        cdef int status
        cdef const unsigned char* line
        while p < e and is_vw_blank(p[0]):
            p += 1
        if p == e or p[0] == 35:  # empty, or only a comment ('#' cannot start a label)
            return OK
        line = p
        bar = <const unsigned char*>memchr(p, 124, <size_t>(e - p))  # '|'
        if bar == NULL:
            return self._fail(E_NO_BAR, p, e, base, nnz0)
        # The label section: up to 3 fields and a tag (VW's substring_to_example).
        s = p
        while True:
            while p < bar and is_vw_blank(p[0]):
                p += 1
            if p == bar:
                break
            q = p
            while p < bar and not is_vw_blank(p[0]):
                p += 1
            if n_tok == 4:
                return self._fail(E_LABEL_FIELDS, s, bar, base, nnz0)
            tok_start[n_tok] = q
            tok_stop[n_tok] = p
            n_tok += 1
        n_fields = n_tok
        # The last field is a tag when it starts with a quote or touches the '|'.
        if n_tok > 0 and (tok_start[n_tok - 1][0] == 39 or tok_stop[n_tok - 1] == bar):
            n_fields -= 1
        if n_fields == 0 and self.optional_labels:
            label = NAN  # no label (data to predict), maybe a tag
        elif n_fields == 0:
            if n_tok == 1 and tok_start[0][0] != 39:
                return self._fail(E_TAG_ONLY, tok_start[0], bar + 1, base, nnz0)
            return self._fail(E_NO_LABEL, bar, e, base, nnz0)
        if n_fields > 3:
            return self._fail(E_LABEL_FIELDS, s, bar, base, nnz0)
        if n_fields and self._parse_double(tok_start[0], tok_stop[0], &label) != tok_stop[0]:
            return self._fail(E_LABEL, tok_start[0], tok_stop[0], base, nnz0)
        if n_fields >= 2:
            if (self._parse_double(tok_start[1], tok_stop[1], &importance) != tok_stop[1]
                    or not importance >= 0.0):
                return self._fail(E_IMPORTANCE, tok_start[1], tok_stop[1], base, nnz0)
        if n_fields == 3:
            if self._parse_double(tok_start[2], tok_stop[2], &ignored) != tok_stop[2]:
                return self._fail(E_BASE, tok_start[2], tok_stop[2], base, nnz0)
        # Namespaces (VW's tc_parser: list_name_space / name_space).
        p = bar
        while p < e:  # here p[0] == '|'
            s = p
            p += 1
            scale = 1.0
            self.prefix_len = 0
            self.ns_char = 32   # ' ': the default namespace
            self.ns_hash_ready = False
            if p < e and not is_vw_blank(p[0]) and p[0] != 124:
                if p[0] == 58:  # '|:' has a scale but no name
                    q = p
                    while q < e and not is_vw_blank(q[0]):
                        q += 1
                    return self._fail(E_NAMESPACE, s, q, base, nnz0)
                q = p
                while p < e and not is_vw_blank(p[0]) and p[0] != 58 and p[0] != 124:
                    p += 1
                if self._set_prefix(q, <size_t>(p - q)) != 0:
                    return E_NOMEM
                self.ns_char = q[0]
                if p < e and p[0] == 58:
                    p = self._parse_double(p + 1, e, &scale)
                    if p == NULL or (p < e and not is_vw_blank(p[0]) and p[0] != 124):
                        q = s
                        while q < e and not is_vw_blank(q[0]):
                            q += 1
                        return self._fail(E_SCALE, s, q, base, nnz0)
            # Features of this namespace, up to the next '|' or the end.
            while True:
                while p < e and is_vw_blank(p[0]):
                    p += 1
                if p == e or p[0] == 124:
                    break
                s = p
                while p < e and not is_vw_blank(p[0]) and p[0] != 58 and p[0] != 124:
                    p += 1
                name_len = <size_t>(p - s)
                value = 1.0
                if p < e and p[0] == 58:
                    p = self._parse_double(p + 1, e, &value)
                    if p == NULL or (p < e and not is_vw_blank(p[0]) and p[0] != 124):
                        return self._fail(E_VW_FEATURE, s, e, base, nnz0)
                if name_len == 0:  # ':value' (VW's anonymous feature): not supported
                    return self._fail(E_VW_FEATURE, s, e, base, nnz0)
                hashed = not parse_decimal_uint64(s, name_len, &key)
                if hashed or (self.namespaced_integers and self.prefix_len > 0):
                    if self.prefix_len + name_len > self.text_cap \
                            and self._grow_text(self.prefix_len + name_len) != 0:
                        return E_NOMEM
                    memcpy(self.text + self.prefix_len, s, name_len)
                    if hashed:
                        key = feature_hash(self.text, self.prefix_len + name_len)
                    else:
                        # VW's hashstring: an integer name plus its namespace's hash.
                        if not self.ns_hash_ready:
                            self.ns_hash = feature_hash(self.text, self.prefix_len)
                            self.ns_hash_ready = True
                        key = key + self.ns_hash   # modulo 2**64
                    if self.collect_names and self._note_name(key, self.prefix_len + name_len) != 0:
                        return E_NOMEM
                if self.nnz == self.nnz_cap and self._grow_nnz() != 0:
                    return E_NOMEM
                if self.crossing:
                    if <size_t>(self.nnz - nnz0) == self.row_ns_cap and self._grow_row_ns() != 0:
                        return E_NOMEM
                    self.row_ns[self.nnz - nnz0] = self.ns_char
                self.keys[self.nnz] = key
                self.values[self.nnz] = value if scale == 1.0 else value * scale
                self.nnz += 1
        if self.crossing:
            status = self._cross_row(nnz0)
            if status != OK:
                if status == E_NOMEM:
                    return E_NOMEM
                return self._fail(status, line, e, base, nnz0)
        return self._end_row(label, importance)

    # --------------------------------------------------------------- helpers

    cdef int _cross_row(self, Py_ssize_t nnz0) noexcept nogil:
        """Append the crossed features of the line's features ``nnz0:nnz``."""
        cdef int64_t count = self.crosser.prepare(self.row_ns, self.nnz - nnz0)
        if count < 0:
            return E_NOMEM
        if count > self.crosser.max_row:
            return E_CROSSED
        if count == 0:
            return OK
        while self.nnz + count > self.nnz_cap:
            if self._grow_nnz() != 0:
                return E_NOMEM
        self.crosser.emit(self.keys + nnz0, self.values + nnz0, self.keys + self.nnz,
                          self.values + self.nnz)
        self.nnz += count
        return OK

    cdef int _grow_row_ns(self) noexcept nogil:
        cdef unsigned char* grown = <unsigned char*>realloc(self.row_ns, 2 * self.row_ns_cap)
        if grown == NULL:
            return -1
        self.row_ns = grown
        self.row_ns_cap *= 2
        return 0

    cdef int _end_row(self, double label, double weight) noexcept nogil:
        if self.n_rows == self.rows_cap and self._grow_rows() != 0:
            return E_NOMEM
        self.labels[self.n_rows] = label
        self.weights[self.n_rows] = weight
        self.row_line[self.n_rows] = self.lines + 1
        self.n_rows += 1
        self.indptr[self.n_rows] = self.nnz
        return OK

    cdef int _fail(self, int status, const unsigned char* s, const unsigned char* e,
                   const unsigned char* base, Py_ssize_t nnz0) noexcept nogil:
        """Record the error: the offending token runs from ``s`` to the next
        separator (or to ``e``).  The row's features are dropped."""
        cdef const unsigned char* q = s
        while q < e and not (is_space(q[0]) if self.fmt == FMT_SVMLIGHT else is_vw_blank(q[0])):
            q += 1
        if status == E_NO_BAR or status == E_LABEL_FIELDS or status == E_NO_LABEL \
                or status == E_TAG_ONLY or status == E_CROSSED:
            q = e  # the whole section is the culprit
        self.error_start = s - base
        self.error_stop = q - base
        self.nnz = nnz0
        return status

    cdef const unsigned char* _parse_double(self, const unsigned char* p,
                                            const unsigned char* e,
                                            double* out) noexcept nogil:
        """Parse the longest number at ``p`` (not beyond ``e``) into ``out``;
        return the position after it, or NULL when there is no number."""
        cdef const unsigned char* s = p
        cdef const unsigned char* digits
        cdef bint negative = False, too_many = False, any_digit = False
        cdef uint64_t mantissa = 0
        cdef int n_digits = 0, exp10 = 0, exp_value = 0
        cdef bint exp_negative
        cdef unsigned char c
        cdef const unsigned char* q
        cdef double v
        cdef char* endptr
        cdef size_t n
        if p < e and (p[0] == 43 or p[0] == 45):  # '+' '-'
            negative = p[0] == 45
            p += 1
        digits = p
        # Integer part.  Leading zeros are not significant.
        while p < e:
            c = p[0] - 48
            if c > 9:
                break
            any_digit = True
            if mantissa != 0 or c != 0:
                if n_digits < 19:
                    mantissa = mantissa * 10 + c
                    n_digits += 1
                else:
                    too_many = True
            p += 1
        # Fraction: each digit kept moves the decimal exponent down by one.
        if p < e and p[0] == 46:  # '.'
            p += 1
            while p < e:
                c = p[0] - 48
                if c > 9:
                    break
                any_digit = True
                if mantissa != 0 or c != 0:
                    if n_digits < 19:
                        mantissa = mantissa * 10 + c
                        n_digits += 1
                        exp10 -= 1
                    else:
                        too_many = True
                else:
                    exp10 -= 1
                p += 1
        if not any_digit:
            return self._parse_special(digits, e, negative, out)
        # Exponent: only when digits follow (else strtod stops before the 'e').
        if p < e and lower(p[0]) == 101:  # 'e'
            q = p + 1
            exp_negative = False
            if q < e and (q[0] == 43 or q[0] == 45):
                exp_negative = q[0] == 45
                q += 1
            if q < e and <unsigned char>(q[0] - 48) <= 9:
                while q < e and <unsigned char>(q[0] - 48) <= 9:
                    if exp_value < 100000:  # saturate: beyond this strtod decides
                        exp_value = exp_value * 10 + (q[0] - 48)
                    q += 1
                exp10 += -exp_value if exp_negative else exp_value
                p = q
        if mantissa == 0 and not too_many:
            out[0] = -0.0 if negative else 0.0
            return p
        if not too_many and mantissa <= MAX_EXACT_MANTISSA and -22 <= exp10 <= 22:
            # Clinger's fast path: both operands exact, one rounding.
            v = <double>mantissa
            if exp10 < 0:
                v = v / POW10[-exp10]
            else:
                v = v * POW10[exp10]
            out[0] = -v if negative else v
            return p
        # The slow path: a NUL-terminated copy for strtod.
        n = <size_t>(p - s)
        if n + 1 > self.num_cap:
            endptr = <char*>realloc(self.num, n + 1)
            if endptr == NULL:
                return NULL
            self.num = endptr
            self.num_cap = n + 1
        memcpy(self.num, s, n)
        self.num[n] = 0
        v = strtod(self.num, &endptr)
        if endptr != self.num + n:
            return NULL  # strtod disagrees with the grammar (e.g. a locale's decimal comma)
        out[0] = v
        return p

    cdef const unsigned char* _parse_special(self, const unsigned char* p,
                                             const unsigned char* e, bint negative,
                                             double* out) noexcept nogil:
        """inf, infinity, nan (any case) at ``p``, just after the sign."""
        if match_word(p, e, b"infinity", 8):
            out[0] = -INFINITY if negative else INFINITY
            return p + 8
        if match_word(p, e, b"inf", 3):
            out[0] = -INFINITY if negative else INFINITY
            return p + 3
        if match_word(p, e, b"nan", 3):
            out[0] = -NAN if negative else NAN
            return p + 3
        return NULL

    cdef int _set_prefix(self, const unsigned char* name, size_t n) noexcept nogil:
        """Start the hashed text of a namespace: ``name + "^"``."""
        if n + 1 > self.text_cap and self._grow_text(n + 1) != 0:
            return -1
        memcpy(self.text, name, n)
        self.text[n] = 94  # '^'
        self.prefix_len = n + 1
        return 0

    cdef int _note_name(self, uint64_t key, size_t length) noexcept nogil:
        """Keep ``text[:length]`` as the name of ``key`` unless already kept."""
        cdef size_t mask, i
        cdef void* grown
        if key == 0:
            if self.seen_zero:
                return 0
            self.seen_zero = True
        else:
            mask = self.seen_cap - 1
            i = <size_t>(key & mask)  # keys are hashes: their low bits are uniform
            while self.seen[i] != 0:
                if self.seen[i] == key:
                    return 0
                i = (i + 1) & mask
            self.seen[i] = key
            self.seen_n += 1
            if 2 * self.seen_n > self.seen_cap and self._grow_seen() != 0:
                return -1
        if self.n_new == self.new_cap:
            grown = realloc(self.new_keys, 2 * self.new_cap * sizeof(uint64_t))
            if grown == NULL:
                return -1
            self.new_keys = <uint64_t*>grown
            grown = realloc(self.new_offsets, (2 * self.new_cap + 1) * sizeof(int64_t))
            if grown == NULL:
                return -1
            self.new_offsets = <int64_t*>grown
            self.new_cap *= 2
        if self.name_len + length > self.name_cap:
            grown = realloc(self.name_bytes, 2 * (self.name_len + length))
            if grown == NULL:
                return -1
            self.name_bytes = <unsigned char*>grown
            self.name_cap = 2 * (self.name_len + length)
        memcpy(self.name_bytes + self.name_len, self.text, length)
        self.name_len += length
        self.new_keys[self.n_new] = key
        self.n_new += 1
        self.new_offsets[self.n_new] = <int64_t>self.name_len
        return 0

    cdef int _grow_seen(self) noexcept nogil:
        cdef size_t old_cap = self.seen_cap, new_cap = 2 * self.seen_cap, i, j
        cdef uint64_t* old = self.seen
        cdef uint64_t* table = <uint64_t*>malloc(new_cap * sizeof(uint64_t))
        if table == NULL:
            return -1
        for i in range(new_cap):
            table[i] = 0
        for i in range(old_cap):
            if old[i] != 0:
                j = <size_t>(old[i] & (new_cap - 1))
                while table[j] != 0:
                    j = (j + 1) & (new_cap - 1)
                table[j] = old[i]
        free(old)
        self.seen = table
        self.seen_cap = new_cap
        return 0

    cdef int _grow_text(self, size_t need) noexcept nogil:
        cdef unsigned char* grown = <unsigned char*>realloc(self.text, 2 * need)
        if grown == NULL:
            return -1
        self.text = grown
        self.text_cap = 2 * need
        return 0

    cdef int _grow_nnz(self) noexcept nogil:
        cdef Py_ssize_t cap = 2 * self.nnz_cap
        cdef void* k = realloc(self.keys, cap * sizeof(uint64_t))
        if k == NULL:
            return -1
        self.keys = <uint64_t*>k
        k = realloc(self.values, cap * sizeof(double))
        if k == NULL:
            return -1
        self.values = <double*>k
        self.nnz_cap = cap
        return 0

    cdef int _grow_rows(self) noexcept nogil:
        cdef Py_ssize_t cap = 2 * self.rows_cap
        cdef void* g = realloc(self.indptr, (cap + 1) * sizeof(int64_t))
        if g == NULL:
            return -1
        self.indptr = <int64_t*>g
        g = realloc(self.labels, cap * sizeof(double))
        if g == NULL:
            return -1
        self.labels = <double*>g
        g = realloc(self.weights, cap * sizeof(double))
        if g == NULL:
            return -1
        self.weights = <double*>g
        g = realloc(self.row_line, cap * sizeof(int64_t))
        if g == NULL:
            return -1
        self.row_line = <int64_t*>g
        self.rows_cap = cap
        return 0
