/*
 * producer - stream an svmlight file to a daemon's training endpoint, in
 * columnar batches (the C equivalent of `onlinel1 send FILE`).
 *
 *   producer [-b ROWS] [-p NAME] [-m MODEL] [-t MS] [-k KEY -s SERVER_KEY] TRAIN_ENDPOINT FILE
 *
 *   -b ROWS  rows per batch (default 1000, as `onlinel1 send`)
 *   -p NAME  the producer name the daemon's stats show with the last seq
 *   -m MODEL the daemon's named model that learns the batches (default:
 *            none named, the daemon's "default" model)
 *   -t MS    give up when the daemon takes no batch for this long, and wait
 *            at most this long at the end for the queued batches to leave
 *            (default 60000)
 *   -k KEY   with -s, CURVE: this client's secret key file (PATH.key of
 *            `onlinel1 keygen PATH`) for a daemon that uses CURVE
 *   -s SERVER_KEY  the daemon's public key file (its .pub)
 *   FILE     an svmlight/libsvm file, or - for standard input
 *
 * Batches carry seq 1, 2, 3, ... The program returns once every batch has
 * been delivered to the daemon's socket, and prints the count and the rate
 * on stderr. On a malformed line, the rows before it are sent, then the
 * line is reported and the exit status is 1. Exit status 2: bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "onlinel1.h"
#include "svmlight_line.h"

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int usage(void) {
    fprintf(stderr,
            "usage: producer [-b ROWS] [-p NAME] [-m MODEL] [-t MS] [-k KEY -s SERVER_KEY] "
            "TRAIN_ENDPOINT FILE\n");
    return 2;
}

/* Send the buffered rows as one batch; 0 on success. */
static int send_rows(ol1_client *client, rows_buf *rows, const char *name, int64_t *seq,
                     long long *sent) {
    if (rows->n_rows == 0) return 0;
    ol1_batch batch = {.n_rows = rows->n_rows, .indptr = rows->indptr, .keys = rows->keys,
                       .values = rows->values, .labels = rows->labels};
    int rc = ol1_send_batch(client, &batch, name, *seq + 1);
    if (rc != OL1_OK) {
        fprintf(stderr, "producer: %s (%s)\n", ol1_last_error(client), ol1_status_name(rc));
        return -1;
    }
    ++*seq;
    *sent += (long long)rows->n_rows;
    rows_clear(rows);
    return 0;
}

int main(int argc, char **argv) {
    long batch_rows = 1000, timeout_ms = 60000;
    const char *name = NULL, *model = NULL, *key = NULL, *server_key = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "b:p:m:t:k:s:h")) != -1) {
        char *end;
        switch (opt) {
        case 'b':
            batch_rows = strtol(optarg, &end, 10);
            if (*end || batch_rows < 1) return usage();
            break;
        case 'p': name = optarg; break;
        case 'm': model = optarg; break;
        case 'k': key = optarg; break;
        case 's': server_key = optarg; break;
        case 't':
            timeout_ms = strtol(optarg, &end, 10);
            if (*end || timeout_ms < 1 || timeout_ms > 0x7fffffff) return usage();
            break;
        default: return usage();
        }
    }
    if (argc - optind != 2 || !key != !server_key) return usage();
    const char *endpoint = argv[optind], *path = argv[optind + 1];

    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        perror(path);
        return 1;
    }
    ol1_client *client = NULL;
    int rc = ol1_connect(NULL, endpoint, (int)timeout_ms, &client);
    if (rc != OL1_OK) {
        fprintf(stderr, "producer: cannot connect to %s: %s\n", endpoint, ol1_strerror(rc));
        if (in != stdin) fclose(in);
        return 1;
    }
    if (key && (rc = ol1_set_curve(client, key, server_key)) != OL1_OK) {
        fprintf(stderr, "producer: %s\n", ol1_last_error(client));
        ol1_close(client);
        if (in != stdin) fclose(in);
        return 1;
    }
    if (model && (rc = ol1_set_model(client, model)) != OL1_OK) {
        fprintf(stderr, "producer: %s\n", ol1_last_error(client));
        ol1_close(client);
        if (in != stdin) fclose(in);
        return 2;
    }
    rows_buf rows;
    if (rows_init(&rows) != 0) {
        fprintf(stderr, "producer: out of memory\n");
        ol1_close(client);
        if (in != stdin) fclose(in);
        return 1;
    }

    int status = 0;
    char *line = NULL, err[256];
    size_t cap = 0;
    long long line_no = 0, sent = 0;
    int64_t seq = 0;
    double start = seconds();
    while (getline(&line, &cap, in) != -1) {
        line_no++;
        if (rows_add_line(&rows, line, LABEL_REQUIRED, err, sizeof err) < 0) {
            send_rows(client, &rows, name, &seq, &sent);
            fprintf(stderr, "%s:%lld: %s\n", path, line_no, err);
            status = 1;
            break;
        }
        if (rows.n_rows >= (size_t)batch_rows && send_rows(client, &rows, name, &seq, &sent)) {
            status = 1;
            break;
        }
    }
    if (status == 0 && ferror(in)) {
        perror(path);
        status = 1;
    }
    if (status == 0 && send_rows(client, &rows, name, &seq, &sent)) status = 1;
    free(line);
    rows_free(&rows);
    if (in != stdin) fclose(in);

    /* Wait until every queued batch has left (at most timeout_ms). */
    if (ol1_close(client) != OL1_OK) {
        fprintf(stderr, "producer: batches to %s were still queued after %ld ms and were "
                        "dropped (is the daemon running?)\n", endpoint, timeout_ms);
        status = 1;
    }
    double elapsed = seconds() - start;
    if (status == 0)
        fprintf(stderr, "sent %lld examples in %lld batches to %s in %.3f s (%.0f examples/s)\n",
                sent, (long long)seq, endpoint, elapsed, sent / (elapsed > 1e-9 ? elapsed : 1e-9));
    return status;
}
