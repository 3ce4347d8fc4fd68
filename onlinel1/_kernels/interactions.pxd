# Feature interactions (Vowpal Wabbit's -q / --cubic / --interactions):
# the crossing of one example's namespaces, without the GIL (see
# interactions.pyx and docs/formats.md, "Interactions").  The VW parser
# (parse.pyx) crosses each line as it ends; cross_csr crosses a CSR batch
# whose features carry namespace ids (the daemon's row-wise messages).
from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef enum:
    # The longest interaction (number of namespaces crossed).
    CROSS_MAX_ORDER = 8
    # The wildcard character of an interaction: every namespace of the example.
    CROSS_WILDCARD = 58    # ':'


cdef class Crosser:
    # The interactions, normalised (onlinel1.options): characters sorted
    # within each, no duplicates; a wildcard only in interactions of two.
    cdef int n_terms
    cdef int* order              # [n_terms]
    cdef unsigned char* chars    # [n_terms * CROSS_MAX_ORDER]
    cdef bint wildcard
    # Namespace character -> slot (-1: no interaction uses it), increasing
    # with the character so that slots sort as characters do.
    cdef short slot_of[256]
    cdef unsigned char char_of[256]
    cdef int n_slots
    # Per example: the features of each slot, grouped in example order.
    cdef int64_t* count          # [n_slots]
    cdef int64_t* lo             # [n_slots]
    cdef int64_t* hi             # [n_slots]
    cdef short* present          # [n_slots]
    cdef int n_present
    cdef int64_t* grouped        # [grouped_cap]: positions in the example
    cdef Py_ssize_t grouped_cap
    # The concrete interactions of the example (wildcards expanded, empty
    # namespaces left out): slots, CROSS_MAX_ORDER per interaction.
    cdef short* tuples
    cdef int* tuple_order
    cdef Py_ssize_t n_tuples
    cdef Py_ssize_t tuples_cap
    # Wildcards: pair (c1, c2) crossed for the example whose stamp it holds.
    cdef uint32_t* stamp         # [65536], only with a wildcard
    cdef uint32_t row_stamp
    cdef readonly int64_t max_row

    cdef int _add_tuple(self, const short* slots, int k) noexcept nogil
    cdef int _add_pair(self, short a, short b) noexcept nogil
    cdef int _expand(self) noexcept nogil
    cdef int64_t prepare(self, const unsigned char* ns, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t emit(self, const uint64_t* keys, const double* values,
                         uint64_t* out_keys, double* out_values) noexcept nogil
