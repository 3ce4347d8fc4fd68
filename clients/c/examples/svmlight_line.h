/*
 * svmlight_line.h - the svmlight line parser of the two examples, and the
 * growing CSR buffer they fill (header-only; copy it along with them).
 *
 *   label [qid:N] index:value index:value ... [# comment]
 *
 * as in docs/formats.md: fields are separated by ASCII whitespace; the
 * index is ASCII digits below 2^64 and is the key as written; the value is
 * a decimal number (or inf/nan), read with strtod in the C locale, so
 * exactly as the daemon's own reader and Python's float() read it; `#`
 * starts a comment; blank and comment-only lines hold no example.
 */
#ifndef SVMLIGHT_LINE_H
#define SVMLIGHT_LINE_H

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Rows in CSR form, growing as lines are added; clear() keeps the memory. */
typedef struct rows_buf {
    size_t n_rows, cap_rows; /* indptr has n_rows + 1 entries, labels n_rows */
    int64_t *indptr;
    double *labels;
    size_t nnz, cap_nnz;
    uint64_t *keys;
    double *values;
} rows_buf;

static int rows_init(rows_buf *r) {
    memset(r, 0, sizeof *r);
    r->indptr = calloc(1, sizeof *r->indptr);
    return r->indptr ? 0 : -1;
}

static void rows_clear(rows_buf *r) {
    r->n_rows = 0;
    r->nnz = 0;
    r->indptr[0] = 0;
}

static void rows_free(rows_buf *r) {
    free(r->indptr);
    free(r->labels);
    free(r->keys);
    free(r->values);
    memset(r, 0, sizeof *r);
}

static int is_space(int ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* A number of docs/formats.md: [+-] (digits [. [digits]] | . digits) [e [+-] digits],
   or [+-] inf | infinity | nan in any case. 0 on success.

   Correctly rounded, as strtod: when the significand has at most 19 digits
   and is at most 2^53, and the decimal exponent is in [-22, 22], the value
   is one IEEE multiplication or division of two exact doubles (Clinger's
   fast path; typical data such as 1 or 0.0625 takes it); anything else
   goes to strtod. */
static int parse_number(const char *s, double *out) {
    static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = s;
    int negative = 0;
    if (*p == '+' || *p == '-') negative = *p++ == '-';
    if (*p == 'i' || *p == 'I' || *p == 'n' || *p == 'N') {
        if (strcasecmp(p, "inf") && strcasecmp(p, "infinity") && strcasecmp(p, "nan")) return -1;
        *out = strtod(s, NULL);
        return 0;
    }
    uint64_t sig = 0;
    int digits = 0, significant = 0, exp10 = 0, exact = 1;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (sig == 0 && *p == '0') continue;          /* leading zeros */
        if (significant++ < 19) sig = sig * 10 + (uint64_t)(*p - '0');
        else exact = 0;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            exp10--;
            if (sig == 0 && *p == '0') continue;
            if (significant++ < 19) sig = sig * 10 + (uint64_t)(*p - '0');
            else exact = 0;
        }
    }
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0, e = 0;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        if (*p < '0' || *p > '9') return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (e < 100000) e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    if (*p) return -1;
    if (exact && sig <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)sig;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *out = negative ? -v : v;
        return 0;
    }
    char *end;
    *out = strtod(s, &end);
    return *end ? -1 : 0;
}

/* ASCII digits below 2^64. 0 on success. */
static int parse_index(const char *s, size_t n, uint64_t *out) {
    if (n == 0) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

enum { LABEL_REQUIRED = 1, LABEL_OPTIONAL = 0 };

/*
 * Parse one line (NUL-terminated, modified in place) into r. With
 * LABEL_OPTIONAL a first field holding a ':' is a feature, not a label, and
 * a line without label gets label 0. Returns 1 when a row was added, 0 for
 * a line without an example, -1 on a malformed line (err holds why; r is
 * unchanged) or when out of memory.
 */
static int rows_add_line(rows_buf *r, char *line, int label_mode, char *err, size_t errlen) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    size_t nnz0 = r->nnz;
    double label = 0;
    int field = 0, seen_label = 0;
    char *p = line;
    for (;;) {
        while (is_space((unsigned char)*p)) p++;
        if (!*p) break;
        char *start = p;
        while (*p && !is_space((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
        char *colon = strchr(start, ':');
        if (field == 0 && (label_mode == LABEL_REQUIRED || !colon)) {
            if (parse_number(start, &label) != 0) {
                snprintf(err, errlen, "bad label '%s'", start);
                goto bad;
            }
            seen_label = 1;
        } else if (field == 1 && seen_label && !strncmp(start, "qid:", 4)) {
            char *end;
            strtoll(start + 4, &end, 10);
            if (end == start + 4 || *end) {
                snprintf(err, errlen, "bad qid '%s'", start);
                goto bad;
            }
        } else {
            uint64_t key;
            double value;
            if (!colon || parse_index(start, (size_t)(colon - start), &key) != 0 ||
                parse_number(colon + 1, &value) != 0) {
                snprintf(err, errlen, "bad feature '%s' (expected index:value)", start);
                goto bad;
            }
            if (r->nnz == r->cap_nnz) {
                size_t cap = r->cap_nnz ? 2 * r->cap_nnz : 1024;
                uint64_t *k = realloc(r->keys, cap * sizeof *k);
                if (!k) goto oom;
                r->keys = k;
                double *v = realloc(r->values, cap * sizeof *v);
                if (!v) goto oom;
                r->values = v;
                r->cap_nnz = cap;
            }
            r->keys[r->nnz] = key;
            r->values[r->nnz] = value;
            r->nnz++;
        }
        field++;
    }
    if (field == 0) return 0;
    if (label_mode == LABEL_REQUIRED && !seen_label) {
        snprintf(err, errlen, "no label");
        goto bad;
    }
    if (r->n_rows == r->cap_rows) {
        size_t cap = r->cap_rows ? 2 * r->cap_rows : 64;
        double *l = realloc(r->labels, cap * sizeof *l);
        if (!l) goto oom;
        r->labels = l;
        int64_t *ip = realloc(r->indptr, (cap + 1) * sizeof *ip);
        if (!ip) goto oom;
        r->indptr = ip;
        r->cap_rows = cap;
    }
    r->labels[r->n_rows] = label;
    r->n_rows++;
    r->indptr[r->n_rows] = (int64_t)r->nnz;
    return 1;
oom:
    snprintf(err, errlen, "out of memory");
bad:
    r->nnz = nnz0;
    return -1;
}

#endif
