/*
 * onlinel1.c - C client of the onlinel1 daemon; see onlinel1.h for the API
 * and docs/protocol.md for the wire protocol it implements.
 */
#define _POSIX_C_SOURCE 200809L

#include "onlinel1.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#define DEFAULT_HWM 64
#define MAX_JSON_DEPTH 64
#define MAX_MODEL_NAME 64

struct ol1_client {
    void *ctx;               /* a context of our own: ol1_close waits on it alone */
    void *req;               /* DEALER to the request endpoint, or NULL */
    void *push;              /* PUSH to the training endpoint, or NULL */
    char *request_endpoint;  /* copies, to reconnect */
    char *train_endpoint;
    int timeout_ms;
    int hwm;
    int sent_any;            /* a training batch was queued */
    char *model;             /* the "model" of every message, or NULL: none */
    int curve;               /* the sockets are CURVE clients (ol1_set_curve) */
    uint8_t curve_public[32], curve_secret[32], curve_server[32];
    uint64_t next_id;
    char error[512];
};

/* ------------------------------------------------------------ status codes */

static const struct {
    int status;
    const char *name;
    const char *sentence;
} STATUS[] = {
    {OL1_OK, "ok", "ok"},
    {OL1_E_MALFORMED, "malformed", "malformed: the daemon could not read the message"},
    {OL1_E_UNSUPPORTED_VERSION, "unsupported_version",
     "unsupported_version: the daemon does not speak this protocol version"},
    {OL1_E_UNKNOWN_OP, "unknown_op", "unknown_op: no such operation on this socket"},
    {OL1_E_BAD_REQUEST, "bad_request",
     "bad_request: a field is missing, of the wrong type or out of range"},
    {OL1_E_BAD_BATCH, "bad_batch", "bad_batch: the examples are invalid"},
    {OL1_E_TOO_LARGE, "too_large", "too_large: the message exceeds the daemon's limit"},
    {OL1_E_NUMERIC, "numeric", "numeric: an example overflowed while learning"},
    {OL1_E_READ_ONLY, "read_only", "read_only: this daemon serves predictions only"},
    {OL1_E_INTERNAL, "internal", "internal: a bug in the daemon (the model is unchanged)"},
    {OL1_E_DAEMON, "daemon_error", "the daemon replied with an error code this client does not know"},
    {OL1_E_UNKNOWN_MODEL, "unknown_model", "unknown_model: the daemon has no model of that name"},
    {OL1_E_MODEL_EXISTS, "model_exists", "model_exists: the daemon has a model of that name"},
    {OL1_E_TIMEOUT, "timeout", "timeout: no answer from the daemon in time"},
    {OL1_E_CONNECT, "connect", "connect: an endpoint could not be connected or a socket failed"},
    {OL1_E_BAD_REPLY, "bad_reply", "bad_reply: the daemon's reply is not a protocol reply"},
    {OL1_E_NOMEM, "nomem", "out of memory"},
    {OL1_E_INVALID, "invalid", "invalid argument"},
};
#define N_STATUS (sizeof STATUS / sizeof STATUS[0])

const char *ol1_strerror(int status) {
    for (size_t i = 0; i < N_STATUS; i++)
        if (STATUS[i].status == status) return STATUS[i].sentence;
    return "unknown status code";
}

const char *ol1_status_name(int status) {
    for (size_t i = 0; i < N_STATUS; i++)
        if (STATUS[i].status == status) return STATUS[i].name;
    return "unknown";
}

/* The status of a daemon error code (the protocol's codes only). */
static int daemon_status(const char *code, size_t len) {
    for (size_t i = 0; i < N_STATUS; i++) {
        int s = STATUS[i].status;
        if (s >= 0 || s <= OL1_E_TIMEOUT || s == OL1_E_DAEMON) continue;
        if (strlen(STATUS[i].name) == len && memcmp(STATUS[i].name, code, len) == 0) return s;
    }
    return OL1_E_DAEMON;
}

const char *ol1_last_error(const ol1_client *client) { return client ? client->error : ""; }

void ol1_free(void *p) { free(p); }

static int fail(ol1_client *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return status;
}

static int succeed(ol1_client *c) {
    c->error[0] = '\0';
    return OL1_OK;
}

/* ------------------------------------------------------------------- time */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long remaining_ms(int64_t deadline) {
    int64_t left = deadline - now_ms();
    return left > 0 ? (long)left : 0;
}

/* ---------------------------------------------------------------- sockets */

static void *open_socket(ol1_client *c, int type, const char *endpoint, int linger, int hwm,
                         int *status) {
    void *s = zmq_socket(c->ctx, type);
    if (!s) {
        *status = fail(c, errno == ENOMEM ? OL1_E_NOMEM : OL1_E_CONNECT,
                       "cannot create a socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (hwm > 0) zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (c->curve && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->curve_server, 32) != 0 ||
                     zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->curve_public, 32) != 0 ||
                     zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->curve_secret, 32) != 0)) {
        *status = fail(c, OL1_E_CONNECT, "cannot make a CURVE socket: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (zmq_connect(s, endpoint) != 0) {
        *status = fail(c, OL1_E_CONNECT, "cannot connect to '%s': %s", endpoint,
                       zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    *status = OL1_OK;
    return s;
}

/* Replace the request socket by a new one (after a timeout or a reply that
   was not understood): a late reply to the abandoned request goes to the
   old identity and is never read. The status of a failure, else OL1_OK. */
static int reopen_request_socket(ol1_client *c) {
    int status;
    char saved[sizeof c->error];
    memcpy(saved, c->error, sizeof saved);
    if (c->req) zmq_close(c->req);
    c->req = open_socket(c, ZMQ_DEALER, c->request_endpoint, 0, 0, &status);
    if (status == OL1_OK) memcpy(c->error, saved, sizeof saved);
    return status;
}

int ol1_connect(const char *request_endpoint, const char *train_endpoint, int timeout_ms,
                ol1_client **out) {
    if (!out) return OL1_E_INVALID;
    *out = NULL;
    if ((!request_endpoint && !train_endpoint) || timeout_ms <= 0) return OL1_E_INVALID;
    ol1_client *c = calloc(1, sizeof *c);
    if (!c) return OL1_E_NOMEM;
    c->timeout_ms = timeout_ms;
    c->hwm = DEFAULT_HWM;
    c->next_id = 1;
    int status = OL1_E_NOMEM;
    if (request_endpoint && !(c->request_endpoint = strdup(request_endpoint))) goto failed;
    if (train_endpoint && !(c->train_endpoint = strdup(train_endpoint))) goto failed;
    if (!(c->ctx = zmq_ctx_new())) {
        status = OL1_E_CONNECT;
        goto failed;
    }
    if (c->request_endpoint) {
        c->req = open_socket(c, ZMQ_DEALER, c->request_endpoint, 0, 0, &status);
        if (!c->req) goto failed;
    }
    if (c->train_endpoint) {
        c->push = open_socket(c, ZMQ_PUSH, c->train_endpoint, 0, c->hwm, &status);
        if (!c->push) goto failed;
    }
    *out = c;
    return succeed(c);
failed:
    ol1_close(c);
    return status;
}

int ol1_set_send_hwm(ol1_client *c, int hwm) {
    if (!c) return OL1_E_INVALID;
    if (!c->push || hwm < 1)
        return fail(c, OL1_E_INVALID, hwm < 1 ? "the high-water mark must be >= 1"
                                               : "this client has no training endpoint");
    if (c->sent_any)
        return fail(c, OL1_E_INVALID, "the high-water mark is set before the first batch");
    /* A new socket: the queue of an existing connection keeps its limit. */
    int status;
    zmq_close(c->push);
    c->hwm = hwm;
    c->push = open_socket(c, ZMQ_PUSH, c->train_endpoint, 0, hwm, &status);
    return c->push ? succeed(c) : status;
}

int ol1_close(ol1_client *c) {
    if (!c) return OL1_OK;
    int status = OL1_OK;
    int waited_for_push = 0;
    if (c->req) zmq_close(c->req);
    if (c->push) {
        int linger = c->sent_any ? c->timeout_ms : 0;
        zmq_setsockopt(c->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(c->push);
        waited_for_push = c->sent_any;
    }
    if (c->ctx) {
        /* Returns once every queued message is delivered, or at the linger. */
        int64_t start = now_ms();
        while (zmq_ctx_term(c->ctx) != 0 && errno == EINTR) {
        }
        int64_t margin = c->timeout_ms > 20 ? 2 : 0;   /* clock granularity */
        if (waited_for_push && now_ms() - start >= (int64_t)c->timeout_ms - margin)
            status = OL1_E_TIMEOUT;
    }
    free(c->request_endpoint);
    free(c->train_endpoint);
    free(c->model);
    /* The secret key does not outlive the client in freed memory. */
    volatile uint8_t *secret = c->curve_secret;
    for (size_t i = 0; i < sizeof c->curve_secret; i++) secret[i] = 0;
    free(c);
    return status;
}

/* ------------------------------------------------------------------ CURVE */

#define Z85_KEY_LEN 40
#define MAX_KEY_FILE (64 * 1024)

/* Read a ZeroMQ certificate file (the format of onlinel1 keygen, pyzmq's
   zmq.auth and czmq's zcert): the Z85 values of its "public-key = ..." and
   "secret-key = ..." lines, decoded, into public_key / secret_key (either
   may be NULL: not wanted). *have_public, *have_secret say which were
   there. With is_private, the file must be a regular file that neither its
   group nor others may access. OL1_OK or OL1_E_INVALID with the reason. */
static int read_certificate(ol1_client *c, const char *path, int is_private, uint8_t *public_key,
                            int *have_public, uint8_t *secret_key, int *have_secret) {
    *have_public = *have_secret = 0;
    FILE *f = fopen(path, "r");
    if (!f) return fail(c, OL1_E_INVALID, "%s: cannot open the key file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(c, OL1_E_INVALID, "%s: not a regular file", path);
    }
    if (is_private && (st.st_mode & 077)) {
        fclose(f);
        return fail(c, OL1_E_INVALID,
                    "%s: the secret key file is accessible by group or others (mode %04o); "
                    "make it private: chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
    }
    char line[512];
    long total = 0;
    int status = OL1_OK;
    while (status == OL1_OK && fgets(line, sizeof line, f)) {
        total += (long)strlen(line);
        if (total > MAX_KEY_FILE) {
            status = fail(c, OL1_E_INVALID, "%s: too large for a key file", path);
            break;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        int is_public = strncmp(p, "public-key", 10) == 0;
        int is_secret = strncmp(p, "secret-key", 10) == 0;
        if (!is_public && !is_secret) continue;   /* comments, sections, metadata */
        char *eq = strchr(p, '=');
        if (!eq) continue;
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t' || *v == '"' || *v == '\'') v++;
        size_t n = strcspn(v, "\"' \t\r\n");
        uint8_t key[32];
        char text[Z85_KEY_LEN + 1];
        if (n != Z85_KEY_LEN) {
            status = fail(c, OL1_E_INVALID, "%s: the %s is not a 40-character Z85 CURVE key",
                          path, is_public ? "public key" : "secret key");
            break;
        }
        memcpy(text, v, n);
        text[n] = '\0';
        if (!zmq_z85_decode(key, text)) {
            status = fail(c, OL1_E_INVALID, "%s: the %s is not valid Z85 text", path,
                          is_public ? "public key" : "secret key");
            break;
        }
        if (is_public && !*have_public) {
            if (public_key) memcpy(public_key, key, 32);
            *have_public = 1;
        } else if (is_secret && !*have_secret) {
            if (secret_key) memcpy(secret_key, key, 32);
            *have_secret = 1;
        }
        memset(key, 0, sizeof key);
        memset(text, 0, sizeof text);
    }
    memset(line, 0, sizeof line);
    if (status == OL1_OK && ferror(f))
        status = fail(c, OL1_E_INVALID, "%s: cannot read the key file", path);
    fclose(f);
    return status;
}

int ol1_set_curve(ol1_client *c, const char *secret_key_file, const char *server_key_file) {
    if (!c) return OL1_E_INVALID;
    if (!secret_key_file != !server_key_file)
        return fail(c, OL1_E_INVALID, "CURVE needs both the client's secret key file and the "
                                      "daemon's public key file (or neither: CURVE off)");
    if (c->sent_any)
        return fail(c, OL1_E_INVALID, "CURVE is set before the first training batch");
    if (!secret_key_file) {
        if (!c->curve) return succeed(c);
        c->curve = 0;
        memset(c->curve_secret, 0, sizeof c->curve_secret);
    } else {
        if (!zmq_has("curve"))
            return fail(c, OL1_E_INVALID, "this libzmq was built without CURVE support");
        uint8_t public_key[32], secret_key[32], server_key[32], derived[32];
        int have_public, have_secret, have_server, unused;
        int status = read_certificate(c, secret_key_file, 1, public_key, &have_public,
                                      secret_key, &have_secret);
        if (status == OL1_OK && !have_secret)
            status = fail(c, OL1_E_INVALID, "%s: has no secret-key line: give the secret key "
                          "file (PATH.key of onlinel1 keygen), not the public one",
                          secret_key_file);
        if (status == OL1_OK) {
            /* The public key is the secret key's own (derived, and checked
               against the file's public-key line when there is one). */
            char secret_text[Z85_KEY_LEN + 1], public_text[Z85_KEY_LEN + 1];
            zmq_z85_encode(secret_text, secret_key, 32);
            if (zmq_curve_public(public_text, secret_text) != 0 ||
                !zmq_z85_decode(derived, public_text))
                status = fail(c, OL1_E_INVALID, "%s: cannot derive the public key: %s",
                              secret_key_file, zmq_strerror(errno));
            else if (have_public && memcmp(derived, public_key, 32) != 0)
                status = fail(c, OL1_E_INVALID, "%s: its public key is not the one of its "
                              "secret key", secret_key_file);
            memset(secret_text, 0, sizeof secret_text);
        }
        if (status == OL1_OK)
            status = read_certificate(c, server_key_file, 0, server_key, &have_server, NULL,
                                      &unused);
        if (status == OL1_OK && !have_server)
            status = fail(c, OL1_E_INVALID, "%s: has no public-key line (the daemon's .pub "
                          "file written by onlinel1 keygen)", server_key_file);
        if (status != OL1_OK) {
            memset(secret_key, 0, sizeof secret_key);
            return status;
        }
        memcpy(c->curve_public, derived, 32);
        memcpy(c->curve_secret, secret_key, 32);
        memcpy(c->curve_server, server_key, 32);
        memset(secret_key, 0, sizeof secret_key);
        c->curve = 1;
    }
    /* New sockets: the options of a socket apply to the connections it makes
       from then on, and these sockets have carried nothing yet. */
    int status;
    if (c->request_endpoint && (status = reopen_request_socket(c)) != OL1_OK) return status;
    if (c->push) {
        zmq_close(c->push);
        c->push = open_socket(c, ZMQ_PUSH, c->train_endpoint, 0, c->hwm, &status);
        if (!c->push) return status;
    }
    return succeed(c);
}

/* ------------------------------------------------------------ model names */

/* The protocol's model names: 1-64 ASCII letters, digits, '_' and '-',
   starting with a letter or a digit (onlinel1/names.py). */
static int valid_model_name(const char *name, size_t n) {
    if (n < 1 || n > MAX_MODEL_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        int alnum = (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= 'a' && ch <= 'z');
        if (!alnum && (i == 0 || (ch != '_' && ch != '-'))) return 0;
    }
    return 1;
}

static int bad_model_name(ol1_client *c, const char *name, size_t n) {
    return fail(c, OL1_E_INVALID,
                "model name '%.*s' is not valid: 1-64 letters, digits, '_' or '-', starting "
                "with a letter or a digit", (int)(n > 80 ? 80 : n), name);
}

int ol1_set_model(ol1_client *c, const char *name) {
    if (!c) return OL1_E_INVALID;
    if (!name) {
        free(c->model);
        c->model = NULL;
        return succeed(c);
    }
    size_t n = strlen(name);
    if (!valid_model_name(name, n)) return bad_model_name(c, name, n);
    char *copy = strdup(name);
    if (!copy) return fail(c, OL1_E_NOMEM, "out of memory");
    free(c->model);
    c->model = copy;
    return succeed(c);
}

const char *ol1_model(const ol1_client *c) { return c ? c->model : NULL; }

/* --------------------------------------------------------------- encoding */

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Pack `count` items of `width` (4 or 8) bytes as one msgpack bin,
   little-endian whatever the host. */
static int pack_bin_le(msgpack_packer *pk, const void *data, size_t count, size_t width) {
    size_t bytes = count * width;
    if (msgpack_pack_bin(pk, bytes) != 0) return -1;
    if (bytes == 0) return 0;
    if (host_is_little_endian()) return msgpack_pack_bin_body(pk, data, bytes);
    unsigned char chunk[4096];
    const unsigned char *src = data;
    size_t per_chunk = sizeof chunk / width;
    for (size_t done = 0; done < count;) {
        size_t n = count - done < per_chunk ? count - done : per_chunk;
        for (size_t i = 0; i < n; i++)
            for (size_t b = 0; b < width; b++)
                chunk[i * width + b] = src[(done + i) * width + (width - 1 - b)];
        if (msgpack_pack_bin_body(pk, chunk, n * width) != 0) return -1;
        done += n;
    }
    return 0;
}

static int pack_key(msgpack_packer *pk, const char *key) {
    size_t n = strlen(key);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, key, n);
}

/* The map header and "v", "op", "id" (id 0: none), then "model" unless
   model is NULL. */
static int pack_header(msgpack_packer *pk, size_t extra_fields, const char *op, uint64_t id,
                       const char *model) {
    int bad = msgpack_pack_map(pk, 2 + (id ? 1 : 0) + (model ? 1 : 0) + extra_fields);
    bad |= pack_key(pk, "v") || msgpack_pack_int(pk, OL1_PROTOCOL_VERSION);
    bad |= pack_key(pk, "op") || pack_key(pk, op);
    if (id) bad |= pack_key(pk, "id") || msgpack_pack_uint64(pk, id);
    if (model) bad |= pack_key(pk, "model") || pack_key(pk, model);
    return bad;
}

/* Check a batch's shape; OL1_OK or OL1_E_INVALID with the reason. */
static int check_batch(ol1_client *c, const ol1_batch *b, int need_labels) {
    if (!b) return fail(c, OL1_E_INVALID, "the batch is NULL");
    if (!b->indptr) return fail(c, OL1_E_INVALID, "indptr is NULL");
    if (b->indptr[0] != 0)
        return fail(c, OL1_E_INVALID, "indptr[0] is %lld, not 0", (long long)b->indptr[0]);
    for (size_t i = 0; i < b->n_rows; i++)
        if (b->indptr[i + 1] < b->indptr[i])
            return fail(c, OL1_E_INVALID, "indptr decreases at row %zu", i);
    uint64_t nnz = (uint64_t)b->indptr[b->n_rows];
    if (nnz > UINT32_MAX / 8 || b->n_rows >= UINT32_MAX / 8)
        return fail(c, OL1_E_INVALID, "the batch is too large for one message");
    if (b->values && b->values_f32)
        return fail(c, OL1_E_INVALID, "values and values_f32 are both set");
    if (nnz > 0 && (!b->keys || (!b->values && !b->values_f32)))
        return fail(c, OL1_E_INVALID, "keys or values are NULL for %llu features",
                    (unsigned long long)nnz);
    if (need_labels && b->n_rows > 0 && !b->labels)
        return fail(c, OL1_E_INVALID, "labels are required for training");
    return OL1_OK;
}

/* Pack "csr": {...}; labels and weights only when with_labels. */
static int pack_csr(msgpack_packer *pk, const ol1_batch *b, int with_labels) {
    size_t n = b->n_rows, nnz = (size_t)b->indptr[n];
    int labels = with_labels;   /* required: sent even when empty */
    int weights = with_labels && b->weights != NULL;
    int f32 = b->values_f32 != NULL;
    int bad = pack_key(pk, "csr");
    bad |= msgpack_pack_map(pk, 3 + f32 + labels + weights);
    bad |= pack_key(pk, "indptr") || pack_bin_le(pk, b->indptr, n + 1, 8);
    bad |= pack_key(pk, "keys") || pack_bin_le(pk, b->keys, nnz, 8);
    if (f32) {
        bad |= pack_key(pk, "values") || pack_bin_le(pk, b->values_f32, nnz, 4);
        bad |= pack_key(pk, "values_dtype") || pack_key(pk, "float32");
    } else {
        bad |= pack_key(pk, "values") || pack_bin_le(pk, b->values, nnz, 8);
    }
    if (labels) bad |= pack_key(pk, "labels") || pack_bin_le(pk, b->labels, n, 8);
    if (weights) bad |= pack_key(pk, "weights") || pack_bin_le(pk, b->weights, n, 8);
    return bad;
}

/* A buffer sized for the batch's message, so packing does not reallocate. */
static int reserve(msgpack_sbuffer *sb, const ol1_batch *b) {
    size_t n = b ? b->n_rows : 0, nnz = b ? (size_t)b->indptr[n] : 0;
    size_t size = 512 + (n + 1) * 8 * 3 + nnz * 16;
    msgpack_sbuffer_init(sb);
    sb->data = malloc(size);
    if (!sb->data) return -1;
    sb->alloc = size;
    return 0;
}

static void free_buffer(void *data, void *hint) {
    (void)hint;
    free(data);
}

/* The packed buffer as a ZeroMQ message that owns it (no copy); the
   buffer is freed on failure too. */
static int to_message(ol1_client *c, msgpack_sbuffer *sb, zmq_msg_t *msg) {
    size_t size = sb->size;
    char *data = msgpack_sbuffer_release(sb);
    if (zmq_msg_init_data(msg, data, size, free_buffer, NULL) != 0) {
        free(data);
        return fail(c, OL1_E_NOMEM, "cannot make a message: %s", zmq_strerror(errno));
    }
    return OL1_OK;
}

/* ----------------------------------------------------------------- replies */

typedef struct reply {
    zmq_msg_t frame;          /* the msgpack data the objects point into */
    int have_frame;
    msgpack_unpacked unpacked;
    int have_unpacked;
    const msgpack_object *result; /* the "result" map of an ok reply */
} reply;

static void reply_free(reply *r) {
    if (r->have_unpacked) msgpack_unpacked_destroy(&r->unpacked);
    if (r->have_frame) zmq_msg_close(&r->frame);
    r->have_unpacked = r->have_frame = 0;
    r->result = NULL;
}

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* The value of a string key of a map, or NULL. */
static const msgpack_object *field(const msgpack_object *map, const char *name) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, name)) return &map->via.map.ptr[i].val;
    return NULL;
}

static int as_double(const msgpack_object *o, double *out) {
    switch (o ? o->type : MSGPACK_OBJECT_NIL) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 1;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 1;
    default: return 0;
    }
}

static int as_int64(const msgpack_object *o, int64_t *out) {
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return 1;
    }
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 1;
    }
    return 0;
}

static void copy_str(const msgpack_object *o, char *dst, size_t cap) {
    dst[0] = '\0';
    if (!o || o->type != MSGPACK_OBJECT_STR) return;
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
}

/* Receive every frame of one message; the last one stays in r->frame. */
static int receive(ol1_client *c, reply *r) {
    int more = 1;
    while (more) {
        if (r->have_frame) zmq_msg_close(&r->frame);
        zmq_msg_init(&r->frame);
        r->have_frame = 1;
        if (zmq_msg_recv(&r->frame, c->req, ZMQ_DONTWAIT) < 0) {
            if (errno == EINTR) continue;
            return fail(c, OL1_E_CONNECT, "cannot receive from '%s': %s",
                        c->request_endpoint, zmq_strerror(errno));
        }
        more = zmq_msg_more(&r->frame);
    }
    return OL1_OK;
}

/* Send the packed request (sb, released here) with id `id` and wait for its
   reply. On OL1_OK, r->result is the result map (the caller frees r); on
   failure r is freed. */
static int request(ol1_client *c, msgpack_sbuffer *sb, uint64_t id, reply *r) {
    memset(r, 0, sizeof *r);
    zmq_msg_t msg;
    int status = to_message(c, sb, &msg);
    if (status != OL1_OK) return status;
    int64_t deadline = now_ms() + c->timeout_ms;

    /* Send, waiting for room at most until the deadline. */
    for (;;) {
        if (zmq_msg_send(&msg, c->req, ZMQ_DONTWAIT) >= 0) break;
        if (errno != EAGAIN && errno != EINTR) {
            zmq_msg_close(&msg);
            status = fail(c, OL1_E_CONNECT, "cannot send to '%s': %s", c->request_endpoint,
                          zmq_strerror(errno));
            reopen_request_socket(c);
            return status;
        }
        zmq_pollitem_t item = {c->req, 0, ZMQ_POLLOUT, 0};
        long wait = remaining_ms(deadline);
        if (wait == 0 || (zmq_poll(&item, 1, wait) == 0 && remaining_ms(deadline) == 0)) {
            zmq_msg_close(&msg);
            status = fail(c, OL1_E_TIMEOUT, "could not send to '%s' within %d ms",
                          c->request_endpoint, c->timeout_ms);
            reopen_request_socket(c);
            return status;
        }
    }

    /* Wait for the reply with our id; discard any other. */
    for (;;) {
        zmq_pollitem_t item = {c->req, 0, ZMQ_POLLIN, 0};
        long wait = remaining_ms(deadline);
        int ready = zmq_poll(&item, 1, wait);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
            status = fail(c, OL1_E_CONNECT, "cannot poll '%s': %s", c->request_endpoint,
                          zmq_strerror(errno));
            reopen_request_socket(c);
            return status;
        }
        if (ready == 0) {
            if (remaining_ms(deadline) > 0) continue;
            status = fail(c, OL1_E_TIMEOUT, "no answer from '%s' within %d ms",
                          c->request_endpoint, c->timeout_ms);
            reopen_request_socket(c);
            return status;
        }
        if ((status = receive(c, r)) != OL1_OK) {
            reply_free(r);
            reopen_request_socket(c);
            return status;
        }
        msgpack_unpacked_init(&r->unpacked);
        r->have_unpacked = 1;
        size_t off = 0;
        int ok = msgpack_unpack_next(&r->unpacked, zmq_msg_data(&r->frame),
                                     zmq_msg_size(&r->frame), &off);
        if (ok != MSGPACK_UNPACK_SUCCESS || r->unpacked.data.type != MSGPACK_OBJECT_MAP) {
            status = fail(c, ok == MSGPACK_UNPACK_NOMEM_ERROR ? OL1_E_NOMEM : OL1_E_BAD_REPLY,
                          "the reply from '%s' is not a msgpack map", c->request_endpoint);
            reply_free(r);
            reopen_request_socket(c);
            return status;
        }
        const msgpack_object *map = &r->unpacked.data;
        const msgpack_object *rid = field(map, "id");
        if (rid && rid->type != MSGPACK_OBJECT_NIL &&
            !(rid->type == MSGPACK_OBJECT_POSITIVE_INTEGER && rid->via.u64 == id)) {
            reply_free(r);     /* a stale reply to an earlier request */
            continue;
        }
        const msgpack_object *okf = field(map, "ok");
        if (okf && okf->type == MSGPACK_OBJECT_BOOLEAN && okf->via.boolean) {
            const msgpack_object *result = field(map, "result");
            if (!result || result->type != MSGPACK_OBJECT_MAP) {
                reply_free(r);
                return fail(c, OL1_E_BAD_REPLY, "a reply with ok: true and no result map");
            }
            r->result = result;
            return succeed(c);
        }
        const msgpack_object *err = field(map, "error");
        const msgpack_object *code = field(err, "code");
        if (!okf || okf->type != MSGPACK_OBJECT_BOOLEAN || !code ||
            code->type != MSGPACK_OBJECT_STR) {
            reply_free(r);
            return fail(c, OL1_E_BAD_REPLY, "the reply is neither a result nor an error");
        }
        const msgpack_object *message = field(err, "message");
        int msize = message && message->type == MSGPACK_OBJECT_STR ? (int)message->via.str.size : 0;
        status = daemon_status(code->via.str.ptr, code->via.str.size);
        fail(c, status, "%.*s: %.*s", (int)code->via.str.size, code->via.str.ptr, msize,
             msize ? message->via.str.ptr : "");
        reply_free(r);
        return status;
    }
}

static int need_request_socket(ol1_client *c) {
    if (!c->request_endpoint) return fail(c, OL1_E_INVALID, "this client has no request endpoint");
    if (!c->req && reopen_request_socket(c) != OL1_OK) return OL1_E_CONNECT;
    return OL1_OK;
}

/* ------------------------------------------------------------- operations */

int ol1_predict(ol1_client *c, const ol1_batch *rows, ol1_output output, double *predictions) {
    if (!c) return OL1_E_INVALID;
    static const char *const OUTPUT[] = {"auto", "probability", "margin"};
    if ((int)output < 0 || (int)output > 2) return fail(c, OL1_E_INVALID, "unknown output");
    int status = check_batch(c, rows, 0);
    if (status != OL1_OK) return status;
    if (!predictions && rows->n_rows) return fail(c, OL1_E_INVALID, "predictions is NULL");
    if ((status = need_request_socket(c)) != OL1_OK) return status;

    msgpack_sbuffer sb;
    if (reserve(&sb, rows) != 0) return fail(c, OL1_E_NOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = c->next_id++;
    int bad = pack_header(&pk, 2, "predict", id, c->model);
    bad |= pack_csr(&pk, rows, 0);
    bad |= pack_key(&pk, "output") || pack_key(&pk, OUTPUT[output]);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, OL1_E_NOMEM, "out of memory");
    }
    reply r;
    if ((status = request(c, &sb, id, &r)) != OL1_OK) return status;
    const msgpack_object *p = field(r.result, "predictions");
    if (!p || p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != rows->n_rows) {
        status = fail(c, OL1_E_BAD_REPLY, "the reply has no list of %zu predictions",
                      rows->n_rows);
    } else {
        for (size_t i = 0; i < rows->n_rows; i++)
            if (!as_double(&p->via.array.ptr[i], &predictions[i])) {
                status = fail(c, OL1_E_BAD_REPLY, "prediction %zu is not a number", i);
                break;
            }
    }
    reply_free(&r);
    return status;
}

int ol1_learn(ol1_client *c, const ol1_batch *batch, ol1_learn_result *result) {
    if (!c) return OL1_E_INVALID;
    int status = check_batch(c, batch, 1);
    if (status != OL1_OK) return status;
    if ((status = need_request_socket(c)) != OL1_OK) return status;

    msgpack_sbuffer sb;
    if (reserve(&sb, batch) != 0) return fail(c, OL1_E_NOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = c->next_id++;
    int bad = pack_header(&pk, 1, "learn", id, c->model) || pack_csr(&pk, batch, 1);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, OL1_E_NOMEM, "out of memory");
    }
    reply r;
    if ((status = request(c, &sb, id, &r)) != OL1_OK) return status;
    if (result) {
        result->examples = -1;
        result->loss = NAN;
        result->t = -1;
        as_int64(field(r.result, "examples"), &result->examples);
        as_double(field(r.result, "loss"), &result->loss);
        as_int64(field(r.result, "t"), &result->t);
    }
    reply_free(&r);
    return status;
}

int ol1_send_batch(ol1_client *c, const ol1_batch *batch, const char *producer, int64_t seq) {
    if (!c) return OL1_E_INVALID;
    if (!c->push) return fail(c, OL1_E_INVALID, "this client has no training endpoint");
    int status = check_batch(c, batch, 1);
    if (status != OL1_OK) return status;

    msgpack_sbuffer sb;
    if (reserve(&sb, batch) != 0) return fail(c, OL1_E_NOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int bad = pack_header(&pk, 1 + (producer != NULL) + (seq >= 0), "train", 0, c->model);
    bad |= pack_csr(&pk, batch, 1);
    if (producer) bad |= pack_key(&pk, "producer") || pack_key(&pk, producer);
    if (seq >= 0) bad |= pack_key(&pk, "seq") || msgpack_pack_int64(&pk, seq);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, OL1_E_NOMEM, "out of memory");
    }
    zmq_msg_t msg;
    if ((status = to_message(c, &sb, &msg)) != OL1_OK) return status;
    int64_t deadline = now_ms() + c->timeout_ms;
    for (;;) {
        if (zmq_msg_send(&msg, c->push, ZMQ_DONTWAIT) >= 0) {
            c->sent_any = 1;
            return succeed(c);
        }
        if (errno != EAGAIN && errno != EINTR) {
            status = fail(c, OL1_E_CONNECT, "cannot send to '%s': %s", c->train_endpoint,
                          zmq_strerror(errno));
            break;
        }
        /* At the high-water mark: wait for room, until the deadline. */
        long wait = remaining_ms(deadline);
        if (wait == 0) {
            status = fail(c, OL1_E_TIMEOUT,
                          "the daemon at '%s' took no batch within %d ms (its queue is full "
                          "or it is not running); the batch was not sent",
                          c->train_endpoint, c->timeout_ms);
            break;
        }
        zmq_pollitem_t item = {c->push, 0, ZMQ_POLLOUT, 0};
        zmq_poll(&item, 1, wait);
    }
    zmq_msg_close(&msg);
    return status;
}

/* --------------------------------------------------------- JSON rendering */

typedef struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
} jbuf;

static void jb_write(jbuf *j, const char *s, size_t n) {
    if (j->oom) return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1) cap *= 2;
        char *p = realloc(j->p, cap);
        if (!p) {
            j->oom = 1;
            return;
        }
        j->p = p;
        j->cap = cap;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

static void jb_puts(jbuf *j, const char *s) { jb_write(j, s, strlen(s)); }

static void jb_string(jbuf *j, const char *s, size_t n) {
    jb_write(j, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        jb_write(j, s + start, i - start);
        char esc[8];
        if (ch == '"' || ch == '\\') snprintf(esc, sizeof esc, "\\%c", ch);
        else if (ch == '\n') snprintf(esc, sizeof esc, "\\n");
        else if (ch == '\t') snprintf(esc, sizeof esc, "\\t");
        else snprintf(esc, sizeof esc, "\\u%04x", ch);
        jb_puts(j, esc);
        start = i + 1;
    }
    jb_write(j, s + start, n - start);
    jb_write(j, "\"", 1);
}

static void jb_json(jbuf *j, const msgpack_object *o, int depth);

static void jb_number(jbuf *j, const msgpack_object *o) {
    char num[48];
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)o->via.i64);
        break;
    default:
        if (!isfinite(o->via.f64)) {
            snprintf(num, sizeof num, "null");
            break;
        }
        snprintf(num, sizeof num, "%.17g", o->via.f64);
        if (!strpbrk(num, ".e")) strcat(num, ".0"); /* a float stays a float */
    }
    jb_puts(j, num);
}

static void jb_key(jbuf *j, const msgpack_object *k, int depth) {
    if (k->type == MSGPACK_OBJECT_STR) {
        jb_string(j, k->via.str.ptr, k->via.str.size);
        return;
    }
    jbuf text = {0};
    jb_json(&text, k, depth + 1);
    if (text.oom) j->oom = 1;
    else jb_string(j, text.p ? text.p : "", text.len);
    free(text.p);
}

static void jb_json(jbuf *j, const msgpack_object *o, int depth) {
    if (depth > MAX_JSON_DEPTH) {
        jb_puts(j, "null");
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: jb_puts(j, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: jb_puts(j, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: jb_number(j, o); break;
    case MSGPACK_OBJECT_STR: jb_string(j, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN:
        jb_puts(j, "[");
        for (uint32_t i = 0; i < o->via.bin.size; i++) {
            char num[8];
            snprintf(num, sizeof num, i ? ",%u" : "%u", (unsigned char)o->via.bin.ptr[i]);
            jb_puts(j, num);
        }
        jb_puts(j, "]");
        break;
    case MSGPACK_OBJECT_ARRAY:
        jb_puts(j, "[");
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) jb_puts(j, ",");
            jb_json(j, &o->via.array.ptr[i], depth + 1);
        }
        jb_puts(j, "]");
        break;
    case MSGPACK_OBJECT_MAP:
        jb_puts(j, "{");
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) jb_puts(j, ",");
            jb_key(j, &o->via.map.ptr[i].key, depth);
            jb_puts(j, ":");
            jb_json(j, &o->via.map.ptr[i].val, depth + 1);
        }
        jb_puts(j, "}");
        break;
    default: jb_puts(j, "null"); break; /* ext: not used by the protocol */
    }
}

/* ------------------------------------------------------------ JSON input */

/* A JSON text parsed straight into msgpack (for the fields of
   ol1_request_fields_json and the learner settings of ol1_create_model). */
typedef struct jparse {
    const char *s;
    size_t pos, len;
    int oom;
    char error[96];
} jparse;

static int jp_fail(jparse *p, const char *what) {
    if (!p->error[0]) snprintf(p->error, sizeof p->error, "%s at offset %zu", what, p->pos);
    return -1;
}

static void jp_space(jparse *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int jp_hex4(jparse *p, unsigned *out) {
    if (p->len - p->pos < 4) return jp_fail(p, "a short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p->s[p->pos++];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return jp_fail(p, "a bad \\u escape");
    }
    *out = v;
    return 0;
}

/* A string (at its opening quote), decoded into the malloc'd *out of *n
   bytes (NUL-terminated too). */
static int jp_string(jparse *p, char **out, size_t *n) {
    *out = NULL;
    if (p->pos >= p->len || p->s[p->pos] != '"') return jp_fail(p, "a string expected");
    p->pos++;
    jbuf b = {0};
    jb_write(&b, "", 0);
    for (;;) {
        if (p->pos >= p->len) {
            free(b.p);
            return jp_fail(p, "an unterminated string");
        }
        unsigned char ch = (unsigned char)p->s[p->pos];
        if (ch == '"') {
            p->pos++;
            break;
        }
        if (ch < 0x20) {
            free(b.p);
            return jp_fail(p, "a control character in a string");
        }
        if (ch != '\\') {
            size_t start = p->pos;
            while (p->pos < p->len && p->s[p->pos] != '"' && p->s[p->pos] != '\\' &&
                   (unsigned char)p->s[p->pos] >= 0x20)
                p->pos++;
            jb_write(&b, p->s + start, p->pos - start);
            continue;
        }
        if (++p->pos >= p->len) continue;    /* unterminated: reported above */
        char esc = p->s[p->pos++], one[4] = {0};
        unsigned cp;
        switch (esc) {
        case '"': case '\\': case '/': one[0] = esc; break;
        case 'b': one[0] = '\b'; break;
        case 'f': one[0] = '\f'; break;
        case 'n': one[0] = '\n'; break;
        case 'r': one[0] = '\r'; break;
        case 't': one[0] = '\t'; break;
        case 'u':
            if (jp_hex4(p, &cp) != 0) {
                free(b.p);
                return -1;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(b.p);
                return jp_fail(p, "a lone low surrogate");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(b.p);
                    return jp_fail(p, "a lone high surrogate");
                }
                p->pos += 2;
                if (jp_hex4(p, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    free(b.p);
                    return jp_fail(p, "a bad surrogate pair");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            {
                char utf8[4];
                size_t k;
                if (cp < 0x80) {
                    utf8[0] = (char)cp;
                    k = 1;
                } else if (cp < 0x800) {
                    utf8[0] = (char)(0xC0 | (cp >> 6));
                    utf8[1] = (char)(0x80 | (cp & 0x3F));
                    k = 2;
                } else if (cp < 0x10000) {
                    utf8[0] = (char)(0xE0 | (cp >> 12));
                    utf8[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    utf8[2] = (char)(0x80 | (cp & 0x3F));
                    k = 3;
                } else {
                    utf8[0] = (char)(0xF0 | (cp >> 18));
                    utf8[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    utf8[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    utf8[3] = (char)(0x80 | (cp & 0x3F));
                    k = 4;
                }
                jb_write(&b, utf8, k);
            }
            continue;
        default:
            free(b.p);
            return jp_fail(p, "a bad escape");
        }
        jb_write(&b, one, 1);
    }
    if (b.oom) {
        free(b.p);
        p->oom = 1;
        return jp_fail(p, "out of memory");
    }
    *out = b.p;
    *n = b.len;
    return 0;
}

static int jp_value(jparse *p, msgpack_packer *pk, int depth);

/* A number, packed as an integer when it has no fraction and no exponent
   and fits in 64 bits, as a float64 otherwise. */
static int jp_number(jparse *p, msgpack_packer *pk) {
    size_t start = p->pos;
    int integral = 1;
    if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->pos < p->len && p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    } else {
        return jp_fail(p, "a bad number");
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integral = 0;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return jp_fail(p, "a bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = 0;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return jp_fail(p, "a bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    char text[64];
    size_t n = p->pos - start;
    if (n >= sizeof text) {
        p->pos = start;
        return jp_fail(p, "a number longer than 63 characters");
    }
    memcpy(text, p->s + start, n);
    text[n] = '\0';
    if (integral) {
        errno = 0;
        char *end;
        if (text[0] == '-') {
            long long v = strtoll(text, &end, 10);
            if (errno == 0 && *end == '\0') return msgpack_pack_int64(pk, (int64_t)v);
        } else {
            unsigned long long v = strtoull(text, &end, 10);
            if (errno == 0 && *end == '\0') return msgpack_pack_uint64(pk, (uint64_t)v);
        }
    }
    /* strtod reads the locale's decimal point: give it that one. */
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && !point[1]) {
        char *dot = strchr(text, '.');
        if (dot) *dot = point[0];
    }
    return msgpack_pack_double(pk, strtod(text, NULL));
}

/* An array or an object (at its bracket), its elements packed into a
   buffer of their own first: msgpack wants the count up front. */
static int jp_container(jparse *p, msgpack_packer *pk, int depth) {
    int object = p->s[p->pos] == '{';
    char close = object ? '}' : ']';
    p->pos++;
    if (depth >= MAX_JSON_DEPTH) return jp_fail(p, "nesting too deep");
    msgpack_sbuffer inner;
    msgpack_sbuffer_init(&inner);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &inner, msgpack_sbuffer_write);
    uint32_t count = 0;
    int rc = 0;
    jp_space(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            jp_space(p);
            if (object) {
                char *key;
                size_t klen;
                if (jp_string(p, &key, &klen) != 0) {
                    rc = -1;
                    break;
                }
                int bad = msgpack_pack_str(&ipk, klen) || msgpack_pack_str_body(&ipk, key, klen);
                free(key);
                if (bad) {
                    p->oom = 1;
                    rc = jp_fail(p, "out of memory");
                    break;
                }
                jp_space(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') {
                    rc = jp_fail(p, "':' expected");
                    break;
                }
                p->pos++;
            }
            if (jp_value(p, &ipk, depth + 1) != 0) {
                rc = -1;
                break;
            }
            count++;
            jp_space(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            rc = jp_fail(p, object ? "',' or '}' expected" : "',' or ']' expected");
            break;
        }
    }
    if (rc == 0) {
        int bad = object ? msgpack_pack_map(pk, count) : msgpack_pack_array(pk, count);
        if (bad || (inner.size && pk->callback(pk->data, inner.data, inner.size) != 0)) {
            p->oom = 1;
            rc = jp_fail(p, "out of memory");
        }
    }
    msgpack_sbuffer_destroy(&inner);
    return rc;
}

static int jp_literal(jparse *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return jp_fail(p, "a JSON value expected");
    p->pos += n;
    return 0;
}

static int jp_value(jparse *p, msgpack_packer *pk, int depth) {
    jp_space(p);
    if (p->pos >= p->len) return jp_fail(p, "a JSON value expected");
    char ch = p->s[p->pos];
    int bad = 0;
    switch (ch) {
    case '{':
    case '[': return jp_container(p, pk, depth);
    case '"': {
        char *text;
        size_t n;
        if (jp_string(p, &text, &n) != 0) return -1;
        bad = msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, text, n);
        free(text);
        break;
    }
    case 't':
        if (jp_literal(p, "true") != 0) return -1;
        bad = msgpack_pack_true(pk);
        break;
    case 'f':
        if (jp_literal(p, "false") != 0) return -1;
        bad = msgpack_pack_false(pk);
        break;
    case 'n':
        if (jp_literal(p, "null") != 0) return -1;
        bad = msgpack_pack_nil(pk);
        break;
    default:
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            bad = jp_number(p, pk);
            if (p->error[0]) return -1;
            break;
        }
        return jp_fail(p, "a JSON value expected");
    }
    if (bad) {
        p->oom = 1;
        return jp_fail(p, "out of memory");
    }
    return 0;
}

/* The status of a failed parse of `what`. */
static int jp_status(ol1_client *c, const jparse *p, const char *what) {
    if (p->oom) return fail(c, OL1_E_NOMEM, "out of memory");
    return fail(c, OL1_E_INVALID, "%s is not valid JSON: %s", what, p->error);
}

/* The fields of ol1_request_fields_json: a JSON object whose pairs are
   packed into `pairs` (count in *n); a "model" string is taken out into
   the malloc'd *model instead. */
static int parse_fields(ol1_client *c, const char *text, msgpack_sbuffer *pairs, size_t *n,
                        char **model) {
    *n = 0;
    *model = NULL;
    jparse p = {.s = text, .len = strlen(text)};
    msgpack_packer pk;
    msgpack_packer_init(&pk, pairs, msgpack_sbuffer_write);
    jp_space(&p);
    if (p.pos >= p.len) return OL1_OK;             /* "" or spaces: no fields */
    if (p.s[p.pos] != '{') return fail(c, OL1_E_INVALID, "fields must be a JSON object");
    p.pos++;
    jp_space(&p);
    if (p.pos < p.len && p.s[p.pos] == '}') {
        p.pos++;
    } else {
        for (;;) {
            char *key;
            size_t klen;
            jp_space(&p);
            if (jp_string(&p, &key, &klen) != 0) return jp_status(c, &p, "fields");
            static const char *const RESERVED[] = {"v", "op", "id"};
            for (size_t r = 0; r < 3; r++)
                if (klen == strlen(RESERVED[r]) && memcmp(key, RESERVED[r], klen) == 0) {
                    free(key);
                    return fail(c, OL1_E_INVALID, "fields: '%s' is set by the client, not a "
                                                  "field", RESERVED[r]);
                }
            int is_model = klen == 5 && memcmp(key, "model", 5) == 0;
            jp_space(&p);
            if (p.pos >= p.len || p.s[p.pos] != ':') {
                free(key);
                jp_fail(&p, "':' expected");
                return jp_status(c, &p, "fields");
            }
            p.pos++;
            jp_space(&p);
            if (is_model) {
                free(key);
                char *name;
                size_t nlen;
                if (p.pos >= p.len || p.s[p.pos] != '"')
                    return fail(c, OL1_E_INVALID, "fields: 'model' must be a string");
                if (jp_string(&p, &name, &nlen) != 0) return jp_status(c, &p, "fields");
                if (*model || strlen(name) != nlen || !valid_model_name(name, nlen)) {
                    int status = *model ? fail(c, OL1_E_INVALID, "fields: 'model' given twice")
                                        : bad_model_name(c, name, nlen);
                    free(name);
                    return status;
                }
                *model = name;
            } else {
                int bad = msgpack_pack_str(&pk, klen) || msgpack_pack_str_body(&pk, key, klen);
                free(key);
                if (bad) return fail(c, OL1_E_NOMEM, "out of memory");
                if (jp_value(&p, &pk, 1) != 0) return jp_status(c, &p, "fields");
                ++*n;
            }
            jp_space(&p);
            if (p.pos < p.len && p.s[p.pos] == ',') {
                p.pos++;
                continue;
            }
            if (p.pos < p.len && p.s[p.pos] == '}') {
                p.pos++;
                break;
            }
            jp_fail(&p, "',' or '}' expected");
            return jp_status(c, &p, "fields");
        }
    }
    jp_space(&p);
    if (p.pos != p.len) {
        jp_fail(&p, "text after the object");
        return jp_status(c, &p, "fields");
    }
    return OL1_OK;
}

/* ------------------------------------------------------- JSON operations */

/* Send {"v", "op", "id", "model"?, <n_pairs packed pairs>} and render the
   result as JSON into *json. model: the model the request is for, or NULL
   for the client's (none for "list", which is about the whole daemon). */
static int json_op(ol1_client *c, const char *op, const char *model,
                   const msgpack_sbuffer *pairs, size_t n_pairs, char **json) {
    int status = need_request_socket(c);
    if (status != OL1_OK) return status;
    if (!model && strcmp(op, "list") != 0) model = c->model;
    msgpack_sbuffer sb;
    if (reserve(&sb, NULL) != 0) return fail(c, OL1_E_NOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = c->next_id++;
    if (pack_header(&pk, n_pairs, op, id, model) ||
        (pairs && pairs->size && msgpack_sbuffer_write(&sb, pairs->data, pairs->size) != 0)) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, OL1_E_NOMEM, "out of memory");
    }
    reply r;
    if ((status = request(c, &sb, id, &r)) != OL1_OK) return status;
    if (json) {
        jbuf j = {0};
        jb_json(&j, r.result, 0);
        if (j.oom) {
            free(j.p);
            status = fail(c, OL1_E_NOMEM, "out of memory");
        } else {
            *json = j.p;
        }
    }
    reply_free(&r);
    return status;
}

int ol1_request_json(ol1_client *c, const char *op, char **json) {
    if (json) *json = NULL;
    if (!c) return OL1_E_INVALID;
    if (!op) return fail(c, OL1_E_INVALID, "op is NULL");
    return json_op(c, op, NULL, NULL, 0, json);
}

int ol1_request_fields_json(ol1_client *c, const char *op, const char *fields, char **json) {
    if (json) *json = NULL;
    if (!c) return OL1_E_INVALID;
    if (!op) return fail(c, OL1_E_INVALID, "op is NULL");
    msgpack_sbuffer pairs;
    msgpack_sbuffer_init(&pairs);
    size_t n = 0;
    char *model = NULL;
    int status = fields ? parse_fields(c, fields, &pairs, &n, &model) : OL1_OK;
    if (status == OL1_OK) status = json_op(c, op, model, &pairs, n, json);
    free(model);
    msgpack_sbuffer_destroy(&pairs);
    return status;
}

int ol1_list_models(ol1_client *c, char **json) { return ol1_request_json(c, "list", json); }

/* The checks of a call that names a model. */
static int named(ol1_client *c, const char *name, char **json) {
    if (json) *json = NULL;
    if (!c) return OL1_E_INVALID;
    if (!name) return fail(c, OL1_E_INVALID, "the model name is NULL");
    size_t n = strlen(name);
    return valid_model_name(name, n) ? OL1_OK : bad_model_name(c, name, n);
}

int ol1_create_model(ol1_client *c, const char *name, const char *learner, char **json) {
    int status = named(c, name, json);
    if (status != OL1_OK) return status;
    msgpack_sbuffer pairs;
    msgpack_sbuffer_init(&pairs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &pairs, msgpack_sbuffer_write);
    if (pack_key(&pk, "learner")) {
        status = fail(c, OL1_E_NOMEM, "out of memory");
    } else if (!learner) {
        if (msgpack_pack_map(&pk, 0)) status = fail(c, OL1_E_NOMEM, "out of memory");
    } else {
        jparse p = {.s = learner, .len = strlen(learner)};
        jp_space(&p);
        if (p.pos >= p.len || p.s[p.pos] != '{') {
            status = fail(c, OL1_E_INVALID, "learner must be a JSON object of learner settings");
        } else if (jp_value(&p, &pk, 0) != 0) {
            status = jp_status(c, &p, "learner");
        } else {
            jp_space(&p);
            if (p.pos != p.len) {
                jp_fail(&p, "text after the object");
                status = jp_status(c, &p, "learner");
            }
        }
    }
    if (status == OL1_OK) status = json_op(c, "create", name, &pairs, 1, json);
    msgpack_sbuffer_destroy(&pairs);
    return status;
}

int ol1_drop_model(ol1_client *c, const char *name, char **json) {
    int status = named(c, name, json);
    return status != OL1_OK ? status : json_op(c, "drop", name, NULL, 0, json);
}

int ol1_swap_model(ol1_client *c, const char *name, const char *path, char **json) {
    int status = named(c, name, json);
    if (status != OL1_OK) return status;
    if (!path || !path[0]) return fail(c, OL1_E_INVALID, "the path is NULL or empty");
    /* The daemon reads the path on its host: send it absolute. */
    char *cwd = NULL;
    if (path[0] != '/') {
        size_t cap = 256;
        for (;;) {
            char *grown = realloc(cwd, cap);
            if (!grown) {
                free(cwd);
                return fail(c, OL1_E_NOMEM, "out of memory");
            }
            cwd = grown;
            if (getcwd(cwd, cap)) break;
            if (errno != ERANGE) {
                status = fail(c, OL1_E_INVALID, "cannot make '%s' absolute: %s", path,
                              strerror(errno));
                free(cwd);
                return status;
            }
            cap *= 2;
        }
    }
    msgpack_sbuffer pairs;
    msgpack_sbuffer_init(&pairs);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &pairs, msgpack_sbuffer_write);
    size_t head = cwd ? strlen(cwd) : 0, tail = strlen(path);
    int slash = cwd && (head == 0 || cwd[head - 1] != '/');
    int bad = pack_key(&pk, "path") || msgpack_pack_str(&pk, head + (size_t)slash + tail) ||
              (head && msgpack_pack_str_body(&pk, cwd, head)) ||
              (slash && msgpack_pack_str_body(&pk, "/", 1)) ||
              msgpack_pack_str_body(&pk, path, tail);
    free(cwd);
    status = bad ? fail(c, OL1_E_NOMEM, "out of memory")
                 : json_op(c, "swap", name, &pairs, 1, json);
    msgpack_sbuffer_destroy(&pairs);
    return status;
}

int ol1_stats(ol1_client *c, char **json) { return ol1_request_json(c, "stats", json); }

int ol1_health(ol1_client *c, ol1_health_info *info) {
    if (!c) return OL1_E_INVALID;
    int status = need_request_socket(c);
    if (status != OL1_OK) return status;
    msgpack_sbuffer sb;
    if (reserve(&sb, NULL) != 0) return fail(c, OL1_E_NOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t id = c->next_id++;
    if (pack_header(&pk, 0, "health", id, c->model)) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, OL1_E_NOMEM, "out of memory");
    }
    reply r;
    if ((status = request(c, &sb, id, &r)) != OL1_OK) return status;
    if (info) {
        copy_str(field(r.result, "status"), info->status, sizeof info->status);
        copy_str(field(r.result, "mode"), info->mode, sizeof info->mode);
        info->uptime_s = -1;
        info->examples = -1;
        as_double(field(r.result, "uptime_s"), &info->uptime_s);
        as_int64(field(r.result, "examples"), &info->examples);
    }
    reply_free(&r);
    return status;
}
