/* session.h — the protocol side of one client connection (WebSocket now;
 * SSE later): hello/welcome, decoding client messages into the token's
 * event queue, and writing server messages.
 *
 * A session belongs to its conn (conn udata) and is attached to one token
 * after hello. It is freed when the conn closes; queued events that came
 * from it stay queued (they are the client's intent) but lose their reply
 * path. */
#ifndef SW_WORKER_SESSION_H
#define SW_WORKER_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>

#include "proto/msg.h"
#include "worker/conn.h"

typedef struct sw_worker sw_worker_t;
typedef struct sw_token sw_token_t;

typedef struct sw_session {
    sw_worker_t *w;
    sw_conn_t *conn;
    sw_token_t *tok;                 /* NULL until hello */
    LIST_ENTRY(sw_session) tok_link; /* in tok->sessions */
    LIST_ENTRY(sw_session) w_link;   /* in w->sessions */
    char conn_id[SW_CONN_ID_MAX + 1];
    char conn_token[SW_CONN_ID_MAX + 1];
    char sockid[64];     /* "<worker holder id>.<conn id>": this socket */
    uint64_t client_seq; /* the last seq this client holds */
    int welcomed;        /* welcome sent */
    int hydrated;        /* holds a state (a full delta reached it) */
    char *router;        /* the last router it sent, compact JSON text (heap), or NULL;
                            parsed only to rehydrate expired state */
    int closing;
    int sse; /* an event stream (GET /_sse), not a WebSocket */
} sw_session_t;

/* conn callbacks (installed in the worker's sw_conn_env_t). */
int sw_session_on_open(sw_conn_t *c, const sw_http_request_t *req);
void sw_session_on_message(sw_conn_t *c, const char *data, size_t len);
void sw_session_on_close(sw_conn_t *c);

/* GET /_sse?token=T[&conn_id=C&conn_token=K][&last_seq=N]: turn the
 * request's conn into an event stream and start it like a hello (a resume
 * when credentials, or a Last-Event-ID header after an earlier stream of
 * the token, come with it). Called from the worker's HTTP routing; answers
 * 400 for bad parameters. */
void sw_session_sse_open(sw_conn_t *c, const sw_http_request_t *req);

/* POST /_event {"conn_id","conn_token","messages":[...]}: the client
 * messages of an event stream. When the stream lives in this worker they
 * are queued at once; otherwise they are forwarded to its worker's inbox
 * (the conn_id names it) and answered once Redis has taken them, so
 * successive POSTs keep their order on any host. 202 {"accepted": n}. */
void sw_session_sse_post(sw_conn_t *c, const sw_http_request_t *req);

/* A POST body forwarded by another worker (inbox "E:" message). */
void sw_session_sse_forwarded(sw_worker_t *w, const char *body, size_t len);

/* Send a pre-encoded message. Returns 0 or the sw_conn_send error (the
 * conn closes itself at its output bound). */
int sw_session_send(sw_session_t *s, const char *data, size_t len);

/* sw_session_send of one message made of iovcnt pieces (concatenated;
 * sw_conn_sendv: no intermediate copy on a WebSocket). Same returns, plus
 * SW_EINVAL for iovcnt < 0. */
int sw_session_sendv(sw_session_t *s, const struct iovec *iov, int iovcnt);

/* Send an error message answering event `id` (-1: none). */
void sw_session_send_error(sw_session_t *s, int64_t id, sw_errc_t code, const char *message);

/* Close the client with `code` (1001 while draining). */
void sw_session_close(sw_session_t *s, uint16_t code, const char *reason);

#endif
