/* session.h — the protocol side of one client connection (a WebSocket or
 * an event stream with its POSTs): hello/welcome, decoding client messages into the token's
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
#include "worker/inbox.h"
#include "worker/peer.h"
#include "worker/store.h"

typedef struct sw_worker sw_worker_t;
typedef struct sw_token sw_token_t;
struct sw_event;

typedef struct sw_session {
    /* What the token pipeline sees (worker/peer.h): first, so that a peer
     * pointer of a session is the session. */
    sw_peer_t peer;
    sw_worker_t *w;
    sw_conn_t *conn;
    LIST_ENTRY(sw_session) w_link; /* in w->sessions */
    int64_t max_id;                /* the highest event id this connection sent, -1: none */
    /* Events sent after hello and before the welcome: they join the queue
     * of the token the welcome names (the peer's welcomed callback). At
     * most cfg->max_queue; past it each is answered rate_limited. */
    TAILQ_HEAD(sw_session_held, sw_event) held;
    uint32_t nheld;
    /* The upgrade request's Cookie, Origin and Authorization headers, kept
     * (heap, NULL when absent) for the auth hook until the hello. */
    char *hdr_cookie, *hdr_origin, *hdr_authorization;
    /* Rate limit (cfg->max_events_per_s): a token bucket holding one
     * second's worth of events, refilled continuously. */
    double bucket;
    uint64_t bucket_ms; /* sw_now_ms() of the last refill */
} sw_session_t;

/* The session of a peer (every peer of the worker is a session). */
static inline sw_session_t *sw_session_of(sw_peer_t *p)
{
    return (sw_session_t *)p;
}

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
 * messages of an event stream, checked before anything else: the signed
 * conn_id (404) and conn_token (403) are verified where the POST lands
 * (worker/credentials.h), with no Redis command. When the stream lives in
 * this worker they are queued at once; otherwise they are forwarded to
 * its worker's inbox ("P:"), which checks that the stream is live and the
 * conn_token its own, queues, and answers ("A:"). The client gets 202
 * {"accepted": n} only then; 404 when the stream is gone (or nobody
 * receives the forward), 503 when Redis is out of reach, 504 when no
 * answer came within 5 s. */
void sw_session_sse_post(sw_conn_t *c, const sw_http_request_t *req);

/* Inbox SW_INBOX_POST (worker/inbox.h): a POST forwarded by another
 * worker (fwd borrowed). Queue it on the local stream if it is live and
 * the conn_token matches, then answer SW_INBOX_POST_ANSWER (n accepted,
 * or -403 / -404) to the forwarding worker's inbox. */
void sw_session_post_forwarded(sw_worker_t *w, const sw_inbox_msg_t *fwd);

/* Inbox SW_INBOX_POST_ANSWER: the answer n to POST `id` this worker
 * forwarded (an unknown id, answered already or timed out, is ignored). */
void sw_session_post_answered(sw_worker_t *w, uint64_t id, int n);

/* Worker exit: drop the forwarded POSTs still waiting (after the store is
 * freed, so that no store callback refers to them). */
void sw_session_posts_cancel(sw_worker_t *w);

/* Close the client with `code` (1001 while draining). */
void sw_session_close(sw_session_t *s, uint16_t code, const char *reason);

/* Set, refresh or drop (sw_store_live) the live keys of every welcomed
 * session of this worker, in batched script calls. */
void sw_session_live_all(sw_worker_t *w, sw_live_op_t op);

#endif
