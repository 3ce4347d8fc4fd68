/*
 * onlinel1.h - C client of the onlinel1 daemon (wire protocol version 1).
 *
 * Written from docs/protocol.md alone, on libzmq and msgpack-c. The daemon
 * binds two endpoints; a client uses either or both:
 *
 *   - the request endpoint (a DEALER socket here, the daemon's ROUTER):
 *     ol1_predict, ol1_learn, ol1_stats, ol1_health, ol1_request_json,
 *     ol1_request_fields_json, and for named models ol1_list_models,
 *     ol1_create_model, ol1_drop_model, ol1_swap_model.
 *     Every request gets exactly one reply, or OL1_E_TIMEOUT.
 *   - the training endpoint (a PUSH socket here, the daemon's PULL):
 *     ol1_send_batch. Fire and forget: no reply; a batch the daemon
 *     cannot use is rejected whole and counted under "rejected" in stats.
 *
 * A minimal program:
 *
 *     ol1_client *c;
 *     int rc = ol1_connect("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5555", 5000, &c);
 *     if (rc != OL1_OK) { fprintf(stderr, "%s\n", ol1_strerror(rc)); return 1; }
 *
 *     int64_t  indptr[] = {0, 2, 3};             // 2 rows
 *     uint64_t keys[]   = {17, 42, 17};
 *     double   values[] = {1.0, 0.5, 1.0};
 *     double   labels[] = {1, -1};
 *     ol1_batch b = {.n_rows = 2, .indptr = indptr, .keys = keys,
 *                    .values = values, .labels = labels};
 *
 *     rc = ol1_send_batch(c, &b, "loader-1", 1);  // train (no reply)
 *     double p[2];
 *     rc = ol1_predict(c, &b, OL1_OUTPUT_AUTO, p); // p[i]: probability or margin
 *     if (rc != OL1_OK)
 *         fprintf(stderr, "%s: %s\n", ol1_strerror(rc), ol1_last_error(c));
 *     rc = ol1_close(c);                          // waits for queued batches
 *
 * Named models: a daemon may hold several models, each with a name. After
 * ol1_set_model(c, "ctr") every request and training batch of c carries
 * "model": "ctr"; without it (or after ol1_set_model(c, NULL)) messages
 * carry no "model" field, exactly as before named models, and the daemon
 * uses its "default" model.
 *
 * Conventions, for every function below:
 *
 *   - Functions return OL1_OK (0) or a negative ol1_status code. Daemon
 *     error replies map to OL1_E_MALFORMED ... OL1_E_INTERNAL and
 *     OL1_E_UNKNOWN_MODEL, OL1_E_MODEL_EXISTS (one per protocol error
 *     code); OL1_E_DAEMON is a code this client does not
 *     know (protocol: "new ones may be added"). Client-side failures are
 *     OL1_E_TIMEOUT and below.
 *   - ol1_last_error(client) gives a human-readable detail of the last
 *     failure of that client: the daemon's "code: message" for an error
 *     reply, or what went wrong on this side.
 *   - Nothing blocks for longer than the client's timeout: every wait is a
 *     zmq_poll bounded by it. After a request times out, the request socket
 *     is closed and a new one is connected (a new identity at the daemon),
 *     so a late reply to the abandoned request is never taken for the
 *     answer to the next one, and the next call works as soon as the
 *     daemon answers again.
 *   - Every message carries "v": 1. Every request also carries a fresh
 *     integer "id" (training batches get no reply, and no id); a reply
 *     that carries a different id is discarded and the wait goes on. A reply
 *     with no id (or a nil one) is taken as the answer: only one request
 *     is ever in flight on the socket, and the daemon leaves the id out
 *     only when it could not read it.
 *   - No function keeps a pointer to caller memory after it returns, and
 *     every path, error paths included, frees what it allocated.
 *   - A client is not thread-safe: use one client per thread (clients are
 *     independent; each has its own ZeroMQ context).
 *   - Arrays are sent little-endian, as the protocol requires, whatever
 *     the host's byte order.
 */
#ifndef ONLINEL1_H
#define ONLINEL1_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version this client speaks (the "v" of every message). */
#define OL1_PROTOCOL_VERSION 1

/* Status codes. 0 is success; every error is negative. */
typedef enum ol1_status {
    OL1_OK = 0,

    /* The daemon replied with an error; the names are the protocol's codes. */
    OL1_E_MALFORMED = -1,           /* "malformed": the frame is not a msgpack map */
    OL1_E_UNSUPPORTED_VERSION = -2, /* "unsupported_version" */
    OL1_E_UNKNOWN_OP = -3,          /* "unknown_op": no such operation on this socket */
    OL1_E_BAD_REQUEST = -4,         /* "bad_request": a field missing, mistyped, out of range */
    OL1_E_BAD_BATCH = -5,           /* "bad_batch": the examples are invalid (NaN, lengths...) */
    OL1_E_TOO_LARGE = -6,           /* "too_large": above the daemon's max_message_bytes */
    OL1_E_NUMERIC = -7,             /* "numeric": an example overflowed while learning */
    OL1_E_READ_ONLY = -8,           /* "read_only": a predict-only replica */
    OL1_E_INTERNAL = -9,            /* "internal": a bug in the daemon; model unchanged */
    OL1_E_DAEMON = -10,             /* an error code this client does not know */
    OL1_E_UNKNOWN_MODEL = -11,      /* "unknown_model": the daemon has no model of that name */
    OL1_E_MODEL_EXISTS = -12,       /* "model_exists": ol1_create_model of a name in use */

    /* Failures on this side. */
    OL1_E_TIMEOUT = -20,            /* no reply (or no room to send) within the timeout */
    OL1_E_CONNECT = -21,            /* an endpoint could not be connected (bad syntax,
                                       unknown transport, ...) or a socket failed */
    OL1_E_BAD_REPLY = -22,          /* the reply is not a protocol reply */
    OL1_E_NOMEM = -23,              /* out of memory */
    OL1_E_INVALID = -24             /* an invalid argument (NULL, bad CSR, no socket for
                                       this call, ...) */
} ol1_status;

/* What ol1_predict returns for each row (the protocol's "output"). */
typedef enum ol1_output {
    OL1_OUTPUT_AUTO = 0,        /* probability for the log loss, the mean exp(margin) for
                                   the poisson loss, margin otherwise */
    OL1_OUTPUT_PROBABILITY = 1, /* log loss only; other losses get OL1_E_BAD_REQUEST */
    OL1_OUTPUT_MARGIN = 2       /* b + sum_i w_i x_i */
} ol1_output;

/*
 * A batch of examples in CSR form: the protocol's columnar ("csr")
 * encoding. Row i has the features keys[indptr[i] .. indptr[i+1]) with the
 * values at the same positions.
 *
 *   n_rows   number of rows (0 is allowed)
 *   indptr   n_rows + 1 entries; indptr[0] == 0, non-decreasing; the last
 *            one is nnz, the number of features in the batch
 *   keys     nnz feature keys (integer features are their own keys; a
 *            string feature's key is the seeded XXH64 of docs/formats.md)
 *   values   nnz float64 values; or NULL and values_f32 set instead
 *   values_f32  nnz float32 values (sent with "values_dtype": "float32");
 *            exactly one of values and values_f32 is non-NULL when nnz > 0
 *   labels   n_rows labels; required by ol1_learn and ol1_send_batch, not
 *            sent by ol1_predict. For the log and hinge losses -1/+1 or 0/1.
 *   weights  n_rows importance weights (>= 0), or NULL for all 1.
 *            Not sent by ol1_predict.
 *
 * The client checks the shape (indptr[0] == 0, non-decreasing, arrays
 * present) and returns OL1_E_INVALID otherwise. Values are checked by the
 * daemon: a non-finite value or label is OL1_E_BAD_BATCH from ol1_predict
 * and ol1_learn, and a rejected (uncounted) batch for ol1_send_batch.
 */
typedef struct ol1_batch {
    size_t n_rows;
    const int64_t *indptr;
    const uint64_t *keys;
    const double *values;
    const float *values_f32;
    const double *labels;
    const double *weights;
} ol1_batch;

/* The result of ol1_learn (the protocol's "learn" result). */
typedef struct ol1_learn_result {
    int64_t examples; /* examples learned by this request */
    double loss;      /* their importance-weighted mean progressive loss,
                         each measured before the model learned from it */
    int64_t t;        /* examples the model has learned in all */
} ol1_learn_result;

/* The result of ol1_health (the protocol's "health" result). Strings are
   NUL-terminated, truncated to fit; empty when the daemon left them out. */
typedef struct ol1_health_info {
    char status[32];  /* "ok" */
    char mode[32];    /* "training" or "predict-only" */
    double uptime_s;  /* seconds since the daemon started (-1 if absent) */
    int64_t examples; /* examples learned (-1 if absent) */
} ol1_health_info;

typedef struct ol1_client ol1_client;

/*
 * Create a client and connect its sockets.
 *
 *   request_endpoint  the daemon's request endpoint ("tcp://host:5556",
 *                     "ipc:///path"), or NULL for a training-only client
 *   train_endpoint    the daemon's training endpoint, or NULL for a
 *                     request-only client (at least one is required)
 *   timeout_ms        > 0: the longest any call of this client waits for a
 *                     reply, for room to send, or (ol1_close) for queued
 *                     training batches to leave
 *   out               receives the client; *out is NULL on failure
 *
 * ZeroMQ connects in the background, so a daemon that is not running is
 * not an error here: the first request then returns OL1_E_TIMEOUT (use
 * ol1_health to check that the daemon answers). Training batches sent
 * before the daemon is up are queued (up to the high-water mark) and
 * delivered when it comes.
 *
 * Returns OL1_OK, OL1_E_INVALID (no endpoint, timeout_ms <= 0, out NULL),
 * OL1_E_CONNECT (an endpoint ZeroMQ refuses: bad syntax or transport) or
 * OL1_E_NOMEM.
 */
int ol1_connect(const char *request_endpoint, const char *train_endpoint, int timeout_ms,
                ol1_client **out);

/*
 * Set the number of training messages queued on the training socket
 * before ol1_send_batch has to wait (ZeroMQ's send high-water mark; the
 * library's default is 64, as the daemon's). Call it before the first
 * ol1_send_batch: the training socket is replaced by one with the new mark.
 * Returns OL1_OK, or OL1_E_INVALID (hwm < 1, no training endpoint, or a
 * batch was already sent).
 */
int ol1_set_send_hwm(ol1_client *client, int hwm);

/*
 * Speak CURVE to a daemon that uses it (onlinel1 serve --curve-secret-key
 * ... --curve-allow ...): every connection of the client is encrypted and
 * authenticated from this call on.
 *
 *   secret_key_file  this client's secret key file: PATH.key of
 *                    `onlinel1 keygen PATH` (a ZeroMQ certificate; its
 *                    "secret-key" line is required). It must be a regular
 *                    file that neither group nor others may access (chmod
 *                    600), or it is refused. Its PATH.pub must be in the
 *                    daemon's --curve-allow.
 *   server_key_file  the daemon's public key file (the .pub of its
 *                    --curve-secret-key; its "public-key" line is read)
 *
 * Both NULL turns CURVE off again. Call it right after ol1_connect, before
 * the first request or training batch: the client's sockets are replaced
 * by new ones with the keys (ZeroMQ applies security options to the
 * connections a socket makes, and libzmq connects at once). The keys are
 * read and copied here; the files are not kept open. The secret key is
 * wiped from the client's memory by ol1_close.
 *
 * A daemon that refuses the key, or whose public key is not the one given,
 * never answers: requests give OL1_E_TIMEOUT, and training batches stay
 * queued (ol1_close then reports OL1_E_TIMEOUT), as with a daemon that is
 * down. So does a CURVE daemon to a client that did not call this.
 *
 * Returns OL1_OK, or OL1_E_INVALID (one file given without the other, a
 * batch was already sent, a file that cannot be read, is not a
 * certificate, lacks its key, or is a secret key file open to others; a
 * libzmq without CURVE; ol1_last_error says which), OL1_E_CONNECT or
 * OL1_E_NOMEM (the new sockets). On OL1_E_INVALID the client is unchanged.
 */
int ol1_set_curve(ol1_client *client, const char *secret_key_file, const char *server_key_file);

/*
 * Choose the daemon's named model that this client's messages are for:
 * from this call on, every request (but "list") and every training batch
 * carries "model": name. NULL goes back to no "model" field at all (the
 * daemon's "default" model; the messages are then byte for byte those of
 * a client that never called this). The name is copied.
 *
 * A name is 1-64 ASCII letters, digits, '_' and '-', starting with a
 * letter or a digit. Returns OL1_OK, OL1_E_INVALID (an invalid name: the
 * model is unchanged, ol1_last_error says why) or OL1_E_NOMEM.
 */
int ol1_set_model(ol1_client *client, const char *name);

/* The name set by ol1_set_model, or NULL (none; also for a NULL client).
   Valid until the next ol1_set_model or ol1_close. */
const char *ol1_model(const ol1_client *client);

/*
 * Predict: the "predict" operation.
 *
 *   rows         the examples (labels and weights are not sent)
 *   output       OL1_OUTPUT_AUTO, _PROBABILITY or _MARGIN
 *   predictions  receives rows->n_rows doubles, in row order; left
 *                unspecified on failure
 *
 * The predictions use the model as it is when the daemon serves the
 * request (every example learned before it, nothing after).
 *
 * Returns OL1_OK; an error reply's code (e.g. OL1_E_BAD_BATCH for a NaN
 * value, OL1_E_BAD_REQUEST for OL1_OUTPUT_PROBABILITY with a non-log
 * loss, OL1_E_TOO_LARGE); OL1_E_TIMEOUT; OL1_E_BAD_REPLY (e.g. a count of
 * predictions other than n_rows); OL1_E_INVALID; OL1_E_NOMEM.
 */
int ol1_predict(ol1_client *client, const ol1_batch *rows, ol1_output output,
                double *predictions);

/*
 * Acknowledged training: the "learn" operation. The examples (labels
 * required) are learned before the reply. result may be NULL.
 *
 * Returns as ol1_predict, plus OL1_E_NUMERIC (an example overflowed; the
 * examples before it were learned) and OL1_E_READ_ONLY.
 */
int ol1_learn(ol1_client *client, const ol1_batch *batch, ol1_learn_result *result);

/*
 * Send a training batch to the training endpoint ("op": "train", columnar
 * encoding). Fire and forget: the daemon does not reply.
 *
 *   batch     the examples, labels required, weights optional
 *   producer  the sender's name, shown in the daemon's stats with the last
 *             seq received from it; NULL to send none
 *   seq       this batch's per-producer sequence number; a negative value
 *             sends none
 *
 * The message is queued on the PUSH socket. When the queue holds the
 * high-water mark's number of messages (the daemon is behind, or not
 * running), the call waits for room, at most the client's timeout; then
 * it returns OL1_E_TIMEOUT and the batch is not sent. Nothing is dropped
 * otherwise. OL1_OK means queued, not yet learned: use ol1_close to wait
 * for delivery, and the daemon's stats ("examples", "producers") to see
 * what it learned.
 *
 * Returns OL1_OK, OL1_E_TIMEOUT, OL1_E_INVALID (bad shape, no labels, no
 * training endpoint), OL1_E_NOMEM, OL1_E_CONNECT (the socket failed).
 */
int ol1_send_batch(ol1_client *client, const ol1_batch *batch, const char *producer,
                   int64_t seq);

/*
 * Any operation without fields ("stats", "health", "config", "list", or one
 * the daemon does not know, which is OL1_E_UNKNOWN_OP), its result as JSON.
 * The request carries the client's model (ol1_set_model), except "list".
 *
 *   json  receives a malloc'd, NUL-terminated JSON text of the reply's
 *         "result" map; free it with ol1_free (or free). NULL on failure.
 *         May be NULL itself, to check only that the operation succeeds.
 *
 * The JSON is a direct rendering of the msgpack result: maps are objects
 * (integer and other non-string keys become their decimal text), arrays
 * are arrays, integers are exact, floats are written with 17 significant
 * digits (so they read back bit-identical; NaN and infinities as null),
 * strings are escaped, binary data is an array of byte values, nil is null.
 *
 * Returns as ol1_predict.
 */
int ol1_request_json(ol1_client *client, const char *op, char **json);

/*
 * Any operation with fields: as ol1_request_json, and the request also
 * carries the fields of `fields`, a JSON object text (NULL or "" for none),
 * converted to msgpack: objects become maps, arrays arrays, strings str,
 * integers (no fraction, no exponent, within 64 bits) integers, other
 * numbers float64, true/false/null booleans and nil. For example:
 *
 *     ol1_request_fields_json(c, "create",
 *         "{\"model\": \"ctr\", \"learner\": {\"update\": \"fobos\", \"l1\": 1e-5}}", &json);
 *
 * A "model" field (a valid model name) overrides the client's model for
 * this request; without one, the client's model is sent as by
 * ol1_request_json. "v", "op" and "id" are set by the client: giving one
 * is OL1_E_INVALID, and so is text that is not a JSON object (RFC 8259;
 * string bytes are sent as they are and must be UTF-8), a number longer
 * than 63 characters, or nesting deeper than 64. Nothing is sent then.
 *
 * Returns as ol1_request_json.
 */
int ol1_request_fields_json(ol1_client *client, const char *op, const char *fields,
                            char **json);

/*
 * Named models. Each returns the daemon's result map as JSON in *json (as
 * ol1_request_json: free it with ol1_free; json may be NULL). An invalid
 * name is OL1_E_INVALID, and nothing is sent.
 *
 * ol1_list_models: the "list" operation, the daemon's models sorted by
 *   name: {"models":[{"model":"default","update":"cumulative","loss":"log",
 *   "examples":100002,"nnz":4012},...]}.
 *
 * ol1_create_model: the "create" operation, a new empty model `name` with
 *   the learner settings of `learner`, a JSON object whose keys are the
 *   learner options (onlinel1.options.LearnerOptions), e.g.
 *   "{\"update\": \"fobos\", \"l1\": 1e-5}"; NULL (or "{}") for the
 *   defaults. Only what is given is sent: the daemon fills in the rest and
 *   returns {"model": name, "learner": {...every setting...}}. A name in use
 *   is OL1_E_MODEL_EXISTS; a bad setting OL1_E_BAD_REQUEST.
 *
 * ol1_drop_model: the "drop" operation: {"model": name, "examples": t}.
 *
 * ol1_swap_model: the "swap" operation: the weights of model `name` are
 *   replaced, at once, by those of the model file or snapshot `path`,
 *   which the daemon reads on the daemon's host. A relative path is made
 *   absolute first, by prefixing this process's working directory (not
 *   normalised otherwise): right when the daemon runs on this machine; for
 *   a remote daemon, give the path as its host sees it. Result:
 *   {"model": name, "examples": t, "nnz": n, "path": path}.
 *
 * These do not use or change the client's model (ol1_set_model). Returns
 * as ol1_request_json, plus OL1_E_UNKNOWN_MODEL (drop, swap: no model of
 * that name), OL1_E_MODEL_EXISTS (create) and OL1_E_READ_ONLY.
 */
int ol1_list_models(ol1_client *client, char **json);
int ol1_create_model(ol1_client *client, const char *name, const char *learner, char **json);
int ol1_drop_model(ol1_client *client, const char *name, char **json);
int ol1_swap_model(ol1_client *client, const char *name, const char *path, char **json);

/*
 * The daemon's counters: ol1_request_json(client, "stats", json). The
 * fields are those of docs/protocol.md, "stats", e.g.
 * {"examples":100002,"batches":101,"progressive":{"loss":0.45,...},...}.
 */
int ol1_stats(ol1_client *client, char **json);

/*
 * Check that the daemon answers: the "health" operation. info may be NULL.
 * Returns OL1_OK when the daemon answered (look at info->status and
 * info->mode), OL1_E_TIMEOUT when it did not, or another error code.
 */
int ol1_health(ol1_client *client, ol1_health_info *info);

/*
 * Close the client and free it. Training batches still queued get up to
 * the client's timeout to be delivered. Returns OL1_OK, or OL1_E_TIMEOUT
 * when batches were (probably) still queued when the time ran out and
 * were dropped. The client is freed in either case. NULL is allowed.
 *
 * ZeroMQ does not tell whether a queue drained in the last instant; the
 * verdict is that the wait lasted (nearly) the whole timeout.
 */
int ol1_close(ol1_client *client);

/*
 * Detail of the last failure of this client: the daemon's "code: message"
 * for an error reply, or a sentence about the failure on this side. ""
 * after a success. Valid until the next call on the client. NULL gives "".
 */
const char *ol1_last_error(const ol1_client *client);

/* A static sentence for a status code, e.g. "bad_batch: the examples are
   invalid". Unknown codes give "unknown status code". */
const char *ol1_strerror(int status);

/* The protocol's name of a status code ("bad_batch", "timeout", "ok", ...);
   the name of a code the daemon sent that this client does not know is in
   ol1_last_error. */
const char *ol1_status_name(int status);

/* Free memory returned by this library (the JSON of ol1_request_json). */
void ol1_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* ONLINEL1_H */
