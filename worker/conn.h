/* conn.h — one client socket in a worker: HTTP/1.1 (http-parser), the
 * WebSocket upgrade (RFC 6455, framing by wslay) and the bounded output
 * queue.
 *
 * A connection starts in HTTP mode. `GET <ws_path>` with a valid upgrade
 * request goes to env->on_open, which may refuse it (answering it
 * itself, e.g. 403 for a forbidden Origin: no upgrade, on_close not
 * owed); accepted, it is answered 101 (Sec-WebSocket-Accept per RFC 6455
 * §4.2.2) and the connection switches to WebSocket mode: each complete
 * text message goes to env->on_message. Other requests go to
 * env->on_http, which must answer each with sw_conn_http_reply() or
 * sw_conn_http_error() (keep-alive is honoured; requests are answered in
 * order).
 *
 * Answers conn.c gives by itself are JSON errors (sw_conn_http_error:
 * {"error":{"code":C,"message":M}}, RFC 9110 §15.5): malformed HTTP 400
 * "bad_request"; a request head over max_header_bytes or 64 header fields
 * 431 "headers_too_large"; a body over max_body_bytes 413 "too_large";
 * an upgrade request without Upgrade / Connection: upgrade 426
 * "upgrade_required" (with Upgrade: websocket), with a version other than
 * 13 426 "upgrade_required" (with Sec-WebSocket-Version: 13), without a
 * valid Sec-WebSocket-Key 400 "bad_request"; without env->on_http, another
 * method on ws_path 405 "method_not_allowed" (Allow: GET) and any other
 * path 404 "not_found". Each closes the connection after the answer
 * (Connection: close) except 404, 405 and 426, which keep it open when
 * the request allows (keep-alive, and not itself an Upgrade request).
 *
 * Bounds and what happens at them:
 *  - WebSocket message over max_message_bytes: close 1009 (RFC 6455 §7.4.1),
 *    as soon as a frame header declares it (before its payload comes).
 *  - HTTP answers queued for a client that pipelines requests over
 *    max_send_bytes: nothing more of that conn is read or parsed until
 *    they have been written (its idle timeout still runs).
 *  - Output queued for a WebSocket or event-stream client over
 *    max_send_bytes (a slow or stalled reader): nothing more is queued
 *    (SW_ETOOLARGE) and, in the same loop iteration, everything queued is
 *    tried on the socket. If the socket takes it all, the peer still
 *    reads: a WebSocket gets close 1013 "backpressure" behind it (RFC 6455
 *    §7.4.1, the closing handshake as usual), an event stream its end
 *    (FIN). Otherwise the peer is not reading and could not take a close
 *    frame either: the conn is reset at once (SO_LINGER {1, 0}: RST), so
 *    that neither the server nor the kernel keeps its unsent bytes, and
 *    on_close follows as for any close. Either way the client is expected
 *    to reconnect and resume.
 *    What one client holds is then bounded by max_send_bytes in the
 *    server plus its socket's kernel send buffer: SO_SNDBUF is set to
 *    sndbuf_bytes (the worker: SW_CONN_SNDBUF_BYTES, 64 KiB), which the
 *    kernel doubles (getsockopt reports 131072) and which turns off
 *    send-buffer autotuning. Measured on Linux 6.18 loopback, a client
 *    that stops reading ties up 55-152 KB of payload in the server's send
 *    queue (SIOCOUTQ, depending on its receive window) and about 100-140
 *    KiB of kernel memory (/proc/net/sockstat TCP mem), against 1.7-4.2 MB
 *    and about 4.1 MiB with the kernel default (autotuning up to
 *    tcp_wmem[2], 4 MiB). So with the default --max-send-bytes of 4 MiB:
 *    at most about 4.1 MiB per client instead of about 8 MiB.
 *  - Whenever conn.c closes a socket that still has unsent output (close
 *    timeout, ping timeout, output bound, sw_conn_abort) it resets it the
 *    same way, freeing the kernel's copy at once.
 *  - Protocol errors (RFC 6455 §7.4.1) are answered with a close frame
 *    carrying the code, after which the conn closes as for any close it
 *    sent (stops reading, flushes, FIN, bounded by the closing phase):
 *    1002 for an unmasked client frame, RSV bits (no extension is
 *    negotiated), a reserved opcode (3-7, 0xB-0xF), a control frame
 *    without FIN or over 125 bytes, a payload length with its top bit set
 *    or not in minimal form, a continuation frame without a message, a new
 *    data frame inside a fragmented message, a close frame with a 1-byte
 *    body or a status code that may not be sent (§7.4.2); 1007 for
 *    invalid UTF-8 in a text message or in a close frame's reason; 1003
 *    for a binary message (unsupported data).
 *  - Liveness (RFC 6455 §5.5.2/§5.5.3): a WebSocket client that sent
 *    nothing for ping_interval_ms gets a ping (payload "sw"); when nothing
 *    at all (a pong or any other byte) arrives within ping_timeout_ms after
 *    that ping, the conn is closed: a close frame 1001 "ping timeout" is
 *    written if the socket takes it, then the socket is closed at once
 *    without waiting for the closing handshake (the peer is presumed
 *    dead; reset when output is still unsent), and on_close follows as
 *    for any close. Any input from the client counts as a sign of life,
 *    including a frame still arriving.
 *    The conn's one ev_timer serves this, the timeouts and hibernation
 *    (below) and the closing phase, rescheduled lazily from its own
 *    callback (libev "Be smart about timeouts", method 2).
 *
 * Timeouts (http_timeout_ms, 0: none):
 *  - HTTP: a request goes through three phases, each bounded by
 *    http_timeout_ms on its own: idle (from the accept, or from the
 *    previous reply on a keep-alive connection, to the first byte of the
 *    next request), head (first byte to the end of the headers) and body
 *    (to the end of the message). A phase's deadline is fixed when it
 *    starts: more bytes do not move it, so a head dribbled a byte at a
 *    time is still cut off. No deadline runs while a reply is owed (the
 *    upper layer works on it). At the deadline: 408 "timeout" with
 *    Connection: close (RFC 9110 §15.5.9), then the closing phase.
 *  - WebSocket: the upper layer calls sw_conn_ws_greeted() once it has
 *    accepted the peer's first protocol message (the statewire hello). A
 *    conn not greeted within http_timeout_ms of its upgrade is closed
 *    with 1008 (policy violation, RFC 6455 §7.4.1), reason "no hello
 *    within <N> ms", and the usual closing handshake (bounded). The
 *    deadline fires from hibernation too. Greeted conns have none.
 *  - Event streams have none.
 *
 * Hibernation: an open WebSocket conn that has had no input and no output
 * for SW_CONN_HIBERNATE_MS, and sits at a clean message boundary (every
 * byte read belongs to complete frames, no fragmented message in
 * progress, nothing queued for output, no close sent or received), drops
 * its wslay context and its empty buffers (about 9 KB), keeping only the
 * conn itself. Input, sw_conn_send, sw_conn_close and a due ping create a
 * fresh context first, so hibernation is invisible to the peer and to the
 * callbacks. Heap freed this way is handed back to the OS
 * (sw_alloc_release: jemalloc purge, or glibc malloc_trim) at most every
 * couple of seconds per worker, and only after many conns hibernated.
 *
 * Lifetime: the conn is freed by conn.c, never by a callback. env->on_close
 * is called for conns whose upgrade on_open accepted or that became SSE
 * streams (sw_conn_sse_start), exactly once, when they close for whatever
 * reason (peer, error, timeout, output bound, sw_conn_close); it runs
 * from the loop (the env's flush step), never inside
 * sw_conn_send/close/abort. The conn is freed right after on_close
 * returns, so callers may keep using the pointer until then and must drop
 * it in on_close. A closing conn gets 2 s to flush and finish the closing
 * handshake, then is closed (reset when output is still unsent). */
#ifndef SW_WORKER_CONN_H
#define SW_WORKER_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include <ev.h>

typedef struct sw_conn sw_conn_t;

/* Silence (no input, no output) after which an open WebSocket conn at a
 * message boundary frees its wslay context; see "Hibernation" above. */
#define SW_CONN_HIBERNATE_MS 1000

/* The worker's sndbuf_bytes: SO_SNDBUF of each client socket. The kernel
 * doubles it to 128 KiB of send buffer (bookkeeping included), which
 * bounds the kernel's share of a stalled reader (see "Bounds") at about
 * 130 KiB instead of the 4 MiB autotuning grows to. A healthy client is
 * limited to 128 KiB in flight per round trip: over 100 MB/s on a LAN
 * (RTT <= 1 ms), 2.5 MB/s at 50 ms, far above what state deltas need;
 * a big burst (a full state) is held by the server's own queue
 * (max_send_bytes) while the socket drains it. */
#define SW_CONN_SNDBUF_BYTES (64 * 1024)

/* A parsed non-upgrade HTTP request; every pointer borrowed for the
 * duration of env->on_http. */
typedef struct sw_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* path without query, percent-decoding not applied */
    const char *query;  /* raw query string without '?', "" if none */
    const char *body;   /* NULL if none */
    size_t body_len;
    /* Header lookup, case-insensitive; NULL if absent. */
    const char *(*header)(const struct sw_http_request *req, const char *name);
    void *priv; /* for header() */
} sw_http_request_t;

typedef struct sw_conn_env {
    struct ev_loop *loop;
    const char *ws_path;       /* "/_event" */
    size_t max_message_bytes;  /* WebSocket message bound */
    size_t max_send_bytes;     /* per-connection output bound (see "Bounds") */
    size_t sndbuf_bytes;       /* SO_SNDBUF of client sockets; 0: kernel default (autotuning) */
    size_t max_header_bytes;   /* HTTP request head bound (431 above) */
    size_t max_body_bytes;     /* HTTP body bound (413 above) */
    uint32_t ping_interval_ms; /* WebSocket silence before a ping; 0: no pings, no timeout */
    uint32_t ping_timeout_ms;  /* after a ping, silence before the close; 0: never close */
    /* HTTP: bound of each phase of a request (idle, head, body: 408); an
     * open WebSocket: bound before sw_conn_ws_greeted (1008). 0: off. */
    uint32_t http_timeout_ms;
    /* A valid upgrade request (GET ws_path, RFC 6455 §4.2.1) arrived; the
     * 101 is not queued yet and the conn is not yet a WebSocket
     * (sw_conn_send refuses). req (method, path, query, header()) is
     * borrowed for the call. Return 0 to accept: the 101 goes out, and
     * on_close is owed exactly once from then on (also after
     * sw_conn_abort or sw_conn_close made here). Return nonzero to refuse,
     * after answering the request with sw_conn_http_reply or
     * sw_conn_http_error (e.g. 403 for a forbidden Origin, RFC 6455
     * §4.2.2 item 4 and §10.2): no upgrade, on_close is not owed,
     * and the conn closes after the answer (Connection: close). A refusal
     * without an answer is answered 403 "forbidden" (logged). */
    int (*on_open)(sw_conn_t *c, const sw_http_request_t *req);
    void (*on_message)(sw_conn_t *c, const char *data, size_t len);
    void (*on_close)(sw_conn_t *c);
    void (*on_http)(sw_conn_t *c, const sw_http_request_t *req);
    void *udata; /* the worker */
    /* Managed by conn.c: */
    size_t nconns; /* live connections (HTTP and WebSocket) */
    size_t nws;    /* live WebSocket connections and SSE streams */
    TAILQ_HEAD(sw_conn_list, sw_conn) conns;
    uint64_t next_id;
    /* Runs once per loop iteration before the loop blocks: writes each
     * dirty conn's output (one write per conn), resumes pipelined HTTP
     * requests, calls on_close and frees closed conns. Started on the
     * first sw_conn_new (needs env->loop then); does not keep the loop
     * alive by itself. */
    ev_prepare flush;
    TAILQ_HEAD(sw_conn_pending, sw_conn) pending; /* conns with work for flush */
    size_t nhib; /* WebSocket conns hibernating (no wslay context) */
    /* Returns heap freed by hibernation (and by whoever else calls
     * sw_conn_env_heap_freed) to the OS (sw_alloc_release), at most once
     * per couple of seconds; not keeping the loop alive. */
    ev_timer trim;
    size_t trim_pending; /* units freed since the last trim */
    ev_tstamp last_trim;
} sw_conn_env_t;

/* Initialise env's managed fields (list, counters, the flush watcher);
 * the caller fills the rest, before or after. Does not touch env->loop. */
void sw_conn_env_init(sw_conn_env_t *env);

/* Tear down: close every conn now (on_close for those on_open accepted or
 * are SSE streams), free them and stop the flush watcher. For shutdown
 * and tests; env can be initialised again afterwards. */
void sw_conn_env_destroy(sw_conn_env_t *env);

/* Take ownership of an accepted socket fd (made non-blocking here) and
 * start reading. Returns the conn, or NULL (fd closed, logged). */
sw_conn_t *sw_conn_new(sw_conn_env_t *env, int fd);

/* Hold c: its struct stays allocated after it closes (on_close, when owed,
 * still runs as usual; sw_conn_http_reply and the send calls on a closed
 * conn do nothing) until the matching sw_conn_unref. For an upper layer
 * that answers an HTTP request later, from a callback of its own: the
 * client may be gone by then. Every ref needs one unref. */
void sw_conn_ref(sw_conn_t *c);
void sw_conn_unref(sw_conn_t *c);

/* Unique id of the conn within its worker process (never reused). */
uint64_t sw_conn_id(const sw_conn_t *c);

/* Peer address as "ip:port" (borrowed). */
const char *sw_conn_peer(const sw_conn_t *c);

/* Per-connection user data (the session). */
void sw_conn_set_udata(sw_conn_t *c, void *udata);
void *sw_conn_udata(const sw_conn_t *c);

/* Queue one WebSocket text message (copied). Returns 0; SW_ECLOSED when
 * the conn is closing; SW_ETOOLARGE when the output bound is reached
 * (nothing queued; the conn then closes with 1013 after what was queued,
 * or is reset when its socket cannot take that, see "Bounds"; on_close
 * follows); SW_ERR when a
 * hibernating conn cannot get a wslay context back (out of memory: the
 * conn is closed, on_close follows). Writes are batched: everything
 * queued during one loop iteration goes out in one send. The bound counts
 * the queued frames (headers included). data must be UTF-8 (not checked).
 * The frame (RFC 6455 §5.2: FIN, opcode text, unmasked, 7/16/64-bit
 * length) is written straight into the output buffer when wslay has
 * nothing waiting (no control frame, no partly sent frame); otherwise the
 * message is queued in wslay behind what waits there. */
int sw_conn_send(sw_conn_t *c, const char *data, size_t len);

/* sw_conn_send of one text message made of iovcnt pieces (their
 * concatenation), copied once into the output buffer; same returns, plus
 * SW_EINVAL for iovcnt < 0 (nothing queued). For a message encoded once
 * for many clients with a per-client prefix. */
int sw_conn_sendv(sw_conn_t *c, const struct iovec *iov, int iovcnt);

/* The upper layer accepted the peer's first protocol message (the
 * statewire hello): the hello deadline of an open WebSocket conn (see
 * "Timeouts") no longer applies. Idempotent; a no-op for other conns.
 * Touches no timer (the conn's timer catches up when it fires). */
void sw_conn_ws_greeted(sw_conn_t *c);

/* Start the WebSocket closing handshake with `code` and `reason` (RFC 6455
 * §5.5.1), flush what is queued, then close the socket (forcibly after 2 s).
 * For an HTTP conn: close after the pending reply. For an SSE stream:
 * flush the queued events, then close the socket (no close frame; code
 * and reason unused). Idempotent. */
void sw_conn_close(sw_conn_t *c, uint16_t code, const char *reason);

/* Close the socket now, dropping queued output: with output still unsent
 * (here or in the kernel) the socket is reset (RST), see "Bounds".
 * Idempotent. */
void sw_conn_abort(sw_conn_t *c);

/* Answer the current HTTP request. `extra_headers` is NULL or CRLF-
 * terminated header lines. Body copied. A 204 or 304 is sent without
 * Content-Length and without body (RFC 9110 §8.6, §15.3.5). */
void sw_conn_http_reply(sw_conn_t *c, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t len);

/* Answer the current HTTP request with an error (RFC 9110 §15.5, §15.6):
 * `status`, Content-Type application/json and the compact JSON body
 * {"error":{"code":<code>,"message":<message>}}, built by jansson (every
 * byte escaped as JSON needs). `code` is a short ASCII token
 * ("bad_request"); `message` (NULL: "") may quote client input of any
 * bytes: only its first 200 bytes are used, cut further to their longest
 * valid UTF-8 prefix (RFC 8259 §8.1; jansson refuses invalid UTF-8).
 * Both are borrowed. `extra_headers` and everything else as for
 * sw_conn_http_reply (keep-alive honoured, no body for HEAD, a logged
 * no-op without a pending request). Every answer conn.c gives by itself
 * goes through here. */
void sw_conn_http_error(sw_conn_t *c, int status, const char *code, const char *message,
                        const char *extra_headers);

/* ---- Server-Sent Events (WHATWG HTML "Server-sent events") -------------
 * From env->on_http, instead of sw_conn_http_reply(): answer the current
 * request with 200 and Content-Type: text/event-stream (Cache-Control:
 * no-cache, X-Accel-Buffering: no, Connection: keep-alive) and turn the
 * connection into an event stream. No further HTTP requests are parsed on
 * it (bytes the client sends are read and discarded; EOF closes it). From
 * then on it counts like a WebSocket for env->nws, and env->on_close is
 * called exactly once when it ends (peer gone, write error, output bound
 * reached, sw_conn_close). Liveness: a comment line ":\n" is written after
 * ping_interval_ms without other output (proxies and browsers keep the
 * stream open; a dead peer shows up as a write error); never closed for
 * silence, never hibernated (no wslay context; parser state and pipelined
 * input are dropped at the switch). No Content-Length, no chunked coding:
 * the body ends when the connection closes. env->on_open is not called
 * (the caller sets up its session in on_http). Returns 0; SW_ECLOSED when
 * the conn is closing (after sw_conn_close during the request: the conn
 * then closes without an answer); SW_EINVAL when no request waits for an
 * answer (logged). */
int sw_conn_sse_start(sw_conn_t *c);

/* 1 when the conn is an event stream. */
int sw_conn_is_sse(const sw_conn_t *c);

/* Queue one event (copied): "event: <event>\n" (when event is not NULL),
 * "id: <id>\n" (when id is not NULL), "data: <data>\n\n". data (len
 * bytes) must be one line (compact JSON). Batched like sw_conn_send (one
 * write per loop iteration, together with the conn's other output) and
 * bounded by max_send_bytes: at the bound the event is not queued; the
 * events queued before it are flushed and the stream ends if the socket
 * takes them at once, else the conn is reset (see "Bounds"); on_close
 * follows. Returns 0; SW_ECLOSED when the conn is closing or not an
 * event stream; SW_ETOOLARGE at the bound; SW_EINVAL when event, id or
 * data contains CR or LF (nothing queued). */
int sw_conn_sse_send(sw_conn_t *c, const char *event, const char *id, const char *data, size_t len);

/* Bytes queued for output and not yet written. */
size_t sw_conn_pending_bytes(const sw_conn_t *c);

/* The worker freed heap worth `units` hibernated conns (a wslay context
 * and buffers, about 9 KB each): once 64 units were freed, the heap is
 * handed back to the OS (sw_alloc_release) from env's timer, at most every
 * 2 s. Hibernation calls it with 1; other big frees (dropped state trees)
 * count their share, so that one throttle serves the whole worker. */
void sw_conn_env_heap_freed(sw_conn_env_t *env, size_t units);

/* Number of WebSocket conns of env hibernating right now (env->nhib; for
 * stats and tests). */
size_t sw_conn_env_hibernating(const sw_conn_env_t *env);

/* Compute Sec-WebSocket-Accept for a client key (RFC 6455 §4.2.2: base64
 * of SHA-1 of key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"). out must
 * hold 29 bytes (28 chars + NUL). Returns 0 or SW_EINVAL (key not 24
 * chars of base64 of 16 bytes). */
int sw_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
