/*
 * predictor - read examples on standard input, print the daemon's
 * prediction of each, one per line.
 *
 *   predictor [-o auto|probability|margin] [-m MODEL] [-b ROWS] [-t MS]
 *             [-k KEY -s SERVER_KEY] REQUEST_ENDPOINT
 *
 *   -o OUTPUT  what to print (default auto: the probability for the log
 *              loss, the margin otherwise)
 *   -m MODEL   ask the daemon's named model MODEL (default: none named, the
 *              daemon's "default" model)
 *   -b ROWS    the most rows asked for in one request (default 1000)
 *   -t MS      the longest wait for one reply (default 30000)
 *   -k KEY     with -s, CURVE: this client's secret key file (PATH.key of
 *              `onlinel1 keygen PATH`) for a daemon that uses CURVE
 *   -s SERVER_KEY  the daemon's public key file (its .pub)
 *
 * Each input line is an svmlight line, with or without its label:
 *
 *   1 3:1 11:0.5      (a label, ignored, then index:value features)
 *   3:1 11:0.5        (no label: the first field holds a ':')
 *
 * Blank and comment-only lines are skipped, as `onlinel1 predict` does.
 * Predictions are printed with 17 significant digits ("%.17g"), so they
 * read back bit-identical. Lines are sent in batches of up to ROWS, and a
 * batch goes as soon as no more input is waiting, so an interactive
 * session gets each answer at once. Exit status: 0, or 1 after an error
 * (a malformed line, an error reply, no answer in time; the predictions of
 * the lines before it are printed), 2 for bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onlinel1.h"
#include "svmlight_line.h"

/* Lines from a file descriptor, knowing whether more input is waiting. */
typedef struct reader {
    int fd;
    char *buf;
    size_t start, len, cap;
    int eof;
} reader;

/* The next line (NUL-terminated, without its '\n') in *line: 1, or 0 at the
   end of the input, or -1 on a read error. */
static int next_line(reader *r, char **line) {
    for (;;) {
        char *nl = r->len > r->start ? memchr(r->buf + r->start, '\n', r->len - r->start) : NULL;
        if (nl || (r->eof && r->len > r->start)) {
            char *end = nl ? nl : r->buf + r->len;
            *end = '\0';
            *line = r->buf + r->start;
            r->start = nl ? (size_t)(nl - r->buf) + 1 : r->len;
            return 1;
        }
        if (r->eof) return 0;
        /* Keep the partial line, read more after it. */
        if (r->start) {
            memmove(r->buf, r->buf + r->start, r->len - r->start);
            r->len -= r->start;
            r->start = 0;
        }
        if (r->cap - r->len < 4096) {
            size_t cap = r->cap ? r->cap * 2 : 65536;
            char *p = realloc(r->buf, cap + 1); /* +1: room for the final NUL */
            if (!p) return -1;
            r->buf = p;
            r->cap = cap;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) r->eof = 1;
        r->len += (size_t)n;
    }
}

/* Is another line (or the end of the input) there without waiting? */
static int input_waiting(const reader *r) {
    if (r->eof || (r->len > r->start && memchr(r->buf + r->start, '\n', r->len - r->start)))
        return 1;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: predictor [-o auto|probability|margin] [-m MODEL] [-b ROWS] [-t MS] "
            "[-k KEY -s SERVER_KEY] REQUEST_ENDPOINT\n");
    return 2;
}

/* Predict the buffered rows and print them; 0 on success. */
static int predict_rows(ol1_client *client, rows_buf *rows, ol1_output output, double **out,
                        size_t *out_cap, long long first_line, long long last_line) {
    if (rows->n_rows == 0) return 0;
    if (*out_cap < rows->n_rows) {
        double *p = realloc(*out, rows->n_rows * sizeof *p);
        if (!p) {
            fprintf(stderr, "predictor: out of memory\n");
            return -1;
        }
        *out = p;
        *out_cap = rows->n_rows;
    }
    ol1_batch batch = {.n_rows = rows->n_rows, .indptr = rows->indptr, .keys = rows->keys,
                       .values = rows->values};
    int rc = ol1_predict(client, &batch, output, *out);
    if (rc != OL1_OK) {
        fprintf(stderr, "predictor: lines %lld-%lld: %s (%s)\n", first_line, last_line,
                ol1_last_error(client), ol1_status_name(rc));
        return -1;
    }
    for (size_t i = 0; i < rows->n_rows; i++) printf("%.17g\n", (*out)[i]);
    fflush(stdout);
    rows_clear(rows);
    return 0;
}

int main(int argc, char **argv) {
    long batch_rows = 1000, timeout_ms = 30000;
    ol1_output output = OL1_OUTPUT_AUTO;
    const char *model = NULL, *key = NULL, *server_key = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "o:m:b:t:k:s:h")) != -1) {
        char *end;
        switch (opt) {
        case 'o':
            if (!strcmp(optarg, "auto")) output = OL1_OUTPUT_AUTO;
            else if (!strcmp(optarg, "probability")) output = OL1_OUTPUT_PROBABILITY;
            else if (!strcmp(optarg, "margin")) output = OL1_OUTPUT_MARGIN;
            else return usage();
            break;
        case 'm': model = optarg; break;
        case 'k': key = optarg; break;
        case 's': server_key = optarg; break;
        case 'b':
            batch_rows = strtol(optarg, &end, 10);
            if (*end || batch_rows < 1) return usage();
            break;
        case 't':
            timeout_ms = strtol(optarg, &end, 10);
            if (*end || timeout_ms < 1 || timeout_ms > 0x7fffffff) return usage();
            break;
        default: return usage();
        }
    }
    if (argc - optind != 1 || !key != !server_key) return usage();
    const char *endpoint = argv[optind];

    ol1_client *client = NULL;
    int rc = ol1_connect(endpoint, NULL, (int)timeout_ms, &client);
    if (rc != OL1_OK) {
        fprintf(stderr, "predictor: cannot connect to %s: %s\n", endpoint, ol1_strerror(rc));
        return 1;
    }
    if (key && (rc = ol1_set_curve(client, key, server_key)) != OL1_OK) {
        fprintf(stderr, "predictor: %s\n", ol1_last_error(client));
        ol1_close(client);
        return 1;
    }
    if (model && (rc = ol1_set_model(client, model)) != OL1_OK) {
        fprintf(stderr, "predictor: %s\n", ol1_last_error(client));
        ol1_close(client);
        return 2;
    }
    rows_buf rows;
    if (rows_init(&rows) != 0) {
        fprintf(stderr, "predictor: out of memory\n");
        ol1_close(client);
        return 1;
    }
    reader in = {.fd = 0};
    double *predictions = NULL;
    size_t predictions_cap = 0;
    long long line_no = 0, first_line = 1;
    int status = 0;
    char *line, err[256];
    for (;;) {
        int got = next_line(&in, &line);
        if (got < 0) {
            fprintf(stderr, "predictor: cannot read standard input: %s\n", strerror(errno));
            status = 1;
            break;
        }
        if (got == 0) break;
        line_no++;
        if (rows_add_line(&rows, line, LABEL_OPTIONAL, err, sizeof err) < 0) {
            /* Answer the lines before the bad one, then report it. */
            predict_rows(client, &rows, output, &predictions, &predictions_cap, first_line,
                         line_no - 1);
            fprintf(stderr, "<stdin>:%lld: %s\n", line_no, err);
            status = 1;
            break;
        }
        if (rows.n_rows && (rows.n_rows >= (size_t)batch_rows || !input_waiting(&in))) {
            if (predict_rows(client, &rows, output, &predictions, &predictions_cap, first_line,
                             line_no)) {
                status = 1;
                break;
            }
            first_line = line_no + 1;
        }
    }
    if (status == 0 &&
        predict_rows(client, &rows, output, &predictions, &predictions_cap, first_line, line_no))
        status = 1;
    free(predictions);
    free(in.buf);
    rows_free(&rows);
    ol1_close(client);
    return status;
}
