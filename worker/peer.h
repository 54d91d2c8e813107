/* peer.h — a client connection as the token pipeline sees it: the state it
 * keeps per client (the seq the client holds, whether it was welcomed and
 * holds a state) and the few things it may do to it (send a message,
 * close, tell it its welcome went out), through callbacks.
 *
 * The token pipeline (worker/token.h) includes this header only: it never knows
 * whether a peer is a WebSocket or an event stream. session.c implements
 * the callbacks and embeds the sw_peer_t as the first member of its
 * session; tests implement them with a fake peer.
 *
 * Messages travel with their metadata (sw_out_t: what kind, the seq of a
 * delta, the code of an error) so that a transport never parses the JSON
 * it is handed (an event stream's "event:" and "id:" lines come from it). */
#ifndef SW_WORKER_PEER_H
#define SW_WORKER_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include "proto/msg.h"

struct sw_token;
typedef struct sw_peer sw_peer_t;

/* What an encoded server message is (proto/PROTOCOL.md "Server to
 * client"). */
typedef enum { SW_OUT_WELCOME = 1, SW_OUT_DELTA, SW_OUT_ERROR } sw_out_kind_t;

typedef struct sw_out {
    sw_out_kind_t kind;
    uint64_t seq;   /* SW_OUT_DELTA: the delta's seq */
    sw_errc_t code; /* SW_OUT_ERROR: its code */
} sw_out_t;

typedef struct sw_peer_ops {
    /* Send one message: the concatenation of iov[0..iovcnt), compact JSON
     * (copied before the call returns). Returns 0, or a negative SW_E*
     * code when the peer is closing or its output bound was reached (the
     * transport then closes it itself; on_close follows as usual). */
    int (*send)(sw_peer_t *p, const sw_out_t *out, const struct iovec *iov, int iovcnt);
    /* Close the client with a WebSocket close `code` and `reason` (an event
     * stream just ends). Idempotent. */
    void (*close)(sw_peer_t *p, uint16_t code, const char *reason);
    /* The peer's welcome went out (p->welcomed was just set): what it sent
     * before the welcome joins its token's queue now. May be NULL. */
    void (*welcomed)(sw_peer_t *p);
} sw_peer_ops_t;

/* Per-client state the pipeline reads and writes. Fields are set by the
 * transport when it opens (ops, sse, sockid, conn_id, conn_token, user)
 * and by the pipeline afterwards (tok, client_seq, welcomed, hydrated). */
struct sw_peer {
    const sw_peer_ops_t *ops;
    struct sw_token *tok;             /* NULL until its hello was queued */
    LIST_ENTRY(sw_peer) tok_link;     /* in tok's peers */
    uint64_t client_seq;              /* the last seq this client holds */
    unsigned welcomed : 1;            /* its welcome went out */
    unsigned hydrated : 1;            /* it holds a state (a full delta reached it) */
    unsigned closing : 1;             /* closed by the server or the client */
    unsigned sse : 1;                 /* an event stream (its credentials change on resume) */
    char conn_id[SW_CONN_ID_MAX + 1]; /* this connection's credentials */
    char conn_token[SW_CONN_ID_MAX + 1];
    char sockid[64]; /* "<worker holder id>.<conn id>": this socket, anywhere */
    char *user;      /* the user id the auth hook gave (heap), NULL: anonymous */
    char *router;    /* the last router it sent, compact JSON (heap), or NULL:
                        parsed only to rehydrate an expired state */
};

/* Send data/len (one message) with its metadata. Same returns as ops->send;
 * SW_ECLOSED for a closing peer (nothing sent). */
int sw_peer_send(sw_peer_t *p, const sw_out_t *out, const char *data, size_t len);

/* The same for a message in pieces. */
int sw_peer_sendv(sw_peer_t *p, const sw_out_t *out, const struct iovec *iov, int iovcnt);

/* Send an error answering event `id` (-1: none) with `code` and
 * `message` (cut to whole UTF-8 characters, at most 511 bytes; NULL or ""
 * leaves "message" out). */
void sw_peer_send_error(sw_peer_t *p, int64_t id, sw_errc_t code, const char *message);

/* ops->close, once: sets p->closing. */
void sw_peer_close(sw_peer_t *p, uint16_t code, const char *reason);

/* Mark p welcomed and tell the transport (ops->welcomed). */
void sw_peer_welcomed(sw_peer_t *p);

#endif
