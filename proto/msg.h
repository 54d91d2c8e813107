/* msg.h — the wire messages of proto/PROTOCOL.md: decoding what clients
 * send (hello, event) and encoding what the server sends (welcome, delta,
 * error). One message = one JSON object with a "type".
 *
 * Decoding is strict about shapes and lenient about unknown extra fields
 * (ignored, for forward compatibility). */
#ifndef SW_PROTO_MSG_H
#define SW_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"

/* Error codes of PROTOCOL-CORE "Server -> client". */
typedef enum {
    SW_ERRC_NONE = 0,
    SW_ERRC_BAD_JSON,      /* "bad_json": not parseable JSON */
    SW_ERRC_BAD_MESSAGE,   /* "bad_message": JSON, but not a valid message (incl. not an object) */
    SW_ERRC_UNKNOWN_EVENT, /* "unknown_event" */
    SW_ERRC_BAD_PAYLOAD,   /* "bad_payload" */
    SW_ERRC_HANDLER_ERROR, /* "handler_error" */
    SW_ERRC_TOO_LARGE,     /* "too_large" */
    SW_ERRC_RATE_LIMITED,  /* "rate_limited" */
    SW_ERRC_BAD_RESUME,    /* "bad_resume" */
    SW_ERRC_STATE_UNAVAILABLE, /* "state_unavailable" (retryable) */
    SW_ERRC_UNAUTHORIZED,      /* "unauthorized": the app's auth hook refused the hello */
    SW_ERRC_CANCELLED,         /* "cancelled": the client cancelled the event */
    SW_ERRC__COUNT
} sw_errc_t;

/* "bad_json", ... ; "" for SW_ERRC_NONE. */
const char *sw_errc_name(sw_errc_t code);
/* Inverse of sw_errc_name; SW_ERRC_NONE when unknown. */
sw_errc_t sw_errc_parse(const char *name);

/* Bounds on decoded fields. */
#define SW_TOKEN_MAX 64       /* token: 1..64 chars of [A-Za-z0-9_-] */
#define SW_CONN_ID_MAX 64     /* conn_id / conn_token: same alphabet */
#define SW_EVENT_NAME_MAX 160 /* "<state path>.<handler>" */
#define SW_AUTH_MAX 4096      /* hello.auth: bytes of UTF-8 */

typedef enum { SW_MSG_HELLO = 1, SW_MSG_EVENT = 2, SW_MSG_CANCEL = 3 } sw_msg_type_t;

typedef struct sw_msg {
    sw_msg_type_t type;
    /* hello */
    char token[SW_TOKEN_MAX + 1]; /* "" when omitted */
    int has_resume;
    char conn_id[SW_CONN_ID_MAX + 1];
    char conn_token[SW_CONN_ID_MAX + 1];
    uint64_t last_seq;
    char *auth; /* owned (heap); NULL when omitted; at most SW_AUTH_MAX bytes */
    /* event; cancel: the id of the event to cancel (required) */
    int64_t id; /* -1 when absent */
    char name[SW_EVENT_NAME_MAX + 1];
    json_t *payload; /* owned; {} when absent; must be an object */
    json_t *router;  /* owned; NULL when absent; object with string "path" */
} sw_msg_t;

/* Decode one client message from data/len (not NUL-terminated; JSON per
 * RFC 8259, duplicate keys refused; bounding len is the caller's business).
 * Returns 0 with *out filled (release with sw_msg_destroy), or the error
 * code with `why` (if not NULL, `whylen` bytes, truncated) describing it:
 *   SW_ERRC_BAD_JSON     not parseable JSON;
 *   SW_ERRC_BAD_MESSAGE  not an object, missing/unknown "type", a field of
 *                        the wrong type or out of its bounds (why names it:
 *                        "event.name must be a string");
 *   SW_ERRC_BAD_PAYLOAD  an event whose "payload" is present but not an
 *                        object (checked last: everything else was valid).
 * event: out->id is set as soon as a valid "id" (integer 0..2^53-1) has
 * been read, so the error can carry it; a present but invalid id is
 * bad_message with id -1. out->router keeps only "path" and "query".
 * On error nothing is left owned in *out; sw_msg_destroy is still safe. */
sw_errc_t sw_msg_decode(const char *data, size_t len, sw_msg_t *out, char *why, size_t whylen);

/* The same for a message already parsed (root borrowed; its values are
 * copied or referenced into *out): one element of a POST /_event body.
 * SW_ERRC_BAD_MESSAGE / SW_ERRC_BAD_PAYLOAD as above. */
sw_errc_t sw_msg_decode_json(const json_t *root, sw_msg_t *out, char *why, size_t whylen);

void sw_msg_destroy(sw_msg_t *m);

/* Encoders append one compact JSON message to `out` (no trailing newline),
 * keys in the order shown, values as jansson's JSON_COMPACT dump writes
 * them (object keys in insertion order), without building a jansson object
 * per message. Return 0, SW_ETOOLARGE when out's bound is
 * reached (out left unchanged), or SW_EINVAL for invalid input (a string
 * that is not UTF-8, an error code outside 1..SW_ERRC__COUNT-1, a seq over
 * INT64_MAX, delta not an object / events not an array, a value nested
 * deeper than 2048 levels, e.g. a cycle). */

/* {"type":"welcome","token":T,"conn_id":C,"conn_token":K,"resumed":B,"seq":N}
 * (resumed and seq left out when false / 0). */
int sw_msg_encode_welcome(sw_buf_t *out, const char *token, const char *conn_id,
                          const char *conn_token, int resumed, uint64_t seq);

/* {"type":"delta","seq":N,"id":I,"delta":{...},"events":[...],"full":true}
 * id < 0 leaves "id" out; events NULL or empty leaves "events" out; full
 * false leaves "full" out; delta NULL encodes as {}. delta and events are
 * borrowed. */
int sw_msg_encode_delta(sw_buf_t *out, uint64_t seq, int64_t id, const json_t *delta,
                        const json_t *events, int full);

/* The delta message in two pieces, for fan-out: one tail encoded once for
 * many clients, each client's seq in its own head, sent together without
 * a copy (sw_conn_sendv). head(seq) followed by tail(delta, events, full)
 * is byte for byte sw_msg_encode_delta(seq, -1, delta, events, full).
 *
 * sw_msg_delta_head writes {"type":"delta","seq":N and a NUL into buf (cap
 * bytes; SW_MSG_DELTA_HEAD_MAX always suffice) and returns its length
 * without the NUL, or 0 (buf untouched) when cap is too small or seq is
 * over INT64_MAX. */
#define SW_MSG_DELTA_HEAD_MAX 48
size_t sw_msg_delta_head(char *buf, size_t cap, uint64_t seq);

/* Appends the rest of the delta message after its seq:
 * ,"delta":{...},"events":[...],"full":true} with the rules and the
 * returns of sw_msg_encode_delta. */
int sw_msg_encode_delta_tail(sw_buf_t *out, const json_t *delta, const json_t *events, int full);

/* {"type":"error","id":I,"code":C,"message":M}; id < 0 leaves "id" out,
 * message NULL or "" leaves "message" out. */
int sw_msg_encode_error(sw_buf_t *out, int64_t id, sw_errc_t code, const char *message);

#endif
