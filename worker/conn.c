/* conn.c — client sockets: HTTP/1.1 (http-parser), the WebSocket upgrade
 * (RFC 6455 §4.2) and WebSocket framing (wslay event API).
 *
 * Output never goes to the socket from inside a library callback: wslay's
 * send_callback, sw_conn_http_reply() and sw_conn_send() (which frames
 * text messages itself while wslay has nothing waiting, sparing wslay's
 * per-message copy and queue) append to the conn's `out` buffer and put
 * the conn on env->pending; the env's ev_prepare watcher
 * (`flush`) writes each pending conn once per loop iteration (one send()
 * per conn), resumes pipelined HTTP requests, and calls on_close and frees
 * closed conns. A conn whose socket would block waits for EV_WRITE.
 *
 * Closing: a closing conn stops processing input, flushes its output,
 * then (HTTP, or WebSocket once both close frames are exchanged) shuts
 * down its write side and drains input until the peer's EOF, so the peer
 * reads everything before the socket goes (no RST on unread input). The
 * whole closing phase is bounded by CLOSE_TIMEOUT. A socket closed while
 * output is still unsent (close timeout, dead peer, a stalled reader at
 * the output bound, sw_conn_abort) is reset instead (conn_reset), so the
 * kernel does not keep that output for a peer that does not take it.
 *
 * Liveness, timeouts and hibernation: the conn's one timer also watches
 * the deadlines of an HTTP conn and of an open WebSocket. Input only
 * stamps `last_rx` and `last_act`, output only `last_act`, the start of an
 * HTTP phase (or the upgrade) only `deadline`; the timer callback works
 * out what is due from those stamps and re-arms itself for the earliest
 * deadline (libev's "Be smart about timeouts", method 2), so busy conns
 * touch the timer heap at most once per SW_CONN_HIBERNATE_MS (WebSocket)
 * or http_timeout_ms (HTTP). The first input after a ping (the pong), a
 * wake-up from hibernation, and a reply after one whose wait outlasted
 * the timer, re-arm the timer once.
 *
 * Hibernation frees the wslay context (about 8.8 KB: the frame context
 * alone has a 4 KB input buffer, the event context a 4 KB output buffer)
 * of an idle conn at a clean message boundary and creates a fresh one on
 * the next input, send, close or ping. A fresh context equals the old one
 * at such a boundary: wslay keeps no state across complete frames except
 * its configuration, which ws_ctx_new() applies again.
 *
 * Server-Sent Events: sw_conn_sse_start() answers the pending request with
 * the event-stream head and switches the conn to MODE_SSE: parser state
 * and pipelined input are dropped, later input is read and discarded (only
 * EOF and read errors matter), events are appended to `out` and flushed
 * with everything else. The conn owes on_close like an opened WebSocket
 * (`opened`). Its timer writes the keep-alive comment after
 * ping_interval_ms without output (`last_act` stamps the last output). */
#include "worker/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#define READ_CHUNK 16384  /* bytes per read(2) */
#define MAX_HEADERS 64    /* request headers; 431 above */
#define CLOSE_TIMEOUT 2.0 /* seconds for the closing phase */
#define DEFAULT_MAX_HEADER 8192
#define DEFAULT_MAX_BODY (1024 * 1024)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PING_PAYLOAD "sw"
#define WS_MAX_HEADER 10 /* bytes of an unmasked frame header (RFC 6455 §5.2) */
/* A WebSocket conn keeps its output buffer between writes up to this
 * capacity (no malloc/free per message); hibernation frees it. */
#define OUT_KEEP 4096
/* Bytes of an error message that go into an error body (sw_conn_http_error). */
#define ERROR_MESSAGE_MAX 200
#define TIMER_SLACK 0.0005 /* seconds: a deadline this close counts as reached */
#define HIBERNATE_AFTER (SW_CONN_HIBERNATE_MS / 1000.)
/* Returning freed heap to the OS: at most every TRIM_INTERVAL seconds, and
 * only once TRIM_MIN_UNITS units (hibernated conns' worth) were freed since
 * the last time (about 0.5 MB). */
#define TRIM_INTERVAL 2.0
#define TRIM_MIN_UNITS 64

enum { MODE_HTTP = 0, MODE_WS = 1, MODE_SSE = 2 };
enum { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };
/* http_state_t.line_state: before the request line (empty lines before it
 * are skipped, RFC 9112 §2.2), inside it, or past its LF. */
enum { LINE_START = 0, LINE_IN, LINE_DONE };

/* Parser state of the request being read; allocated while a request is in
 * progress, freed when the conn is idle or upgraded. */
typedef struct http_state {
    http_parser parser;
    sw_buf_t hb; /* url \0 (name \0 value \0)* [path \0 query \0] */
    sw_buf_t body;
    size_t url_len;
    uint32_t name_off[MAX_HEADERS];
    uint32_t val_off[MAX_HEADERS];
    int nhdr;
    int last;   /* LAST_*: which callback appended last */
    int in_msg; /* a request has begun and not completed */
    int headers_done;
    int complete;     /* on_message_complete seen, not dispatched yet */
    int error_status; /* 413 / 431 decided in a callback */
    int keep_alive;
    size_t head_bytes; /* bytes fed while the head was incomplete */
    /* The request line's version, checked by conn.c (http-parser accepts
     * "HTTX/1.1" and HTTP/0.9 lines): LINE_* state, and the last bytes
     * of the line before its LF. */
    int line_state;
    char line_tail[10];
    size_t line_tail_n;
    const char *bad_why; /* a malformed head found by a callback (400) */
} http_state_t;

struct sw_conn {
    sw_conn_env_t *env;
    TAILQ_ENTRY(sw_conn) link;  /* env->conns */
    TAILQ_ENTRY(sw_conn) plink; /* env->pending */
    uint64_t id;
    int fd;
    ev_io rio;
    ev_io wio;
    ev_timer timer; /* bounds the closing phase; before it, the deadlines below */
    /* ev_now() by which the current phase must end, 0 for none: in HTTP
     * mode the phase (idle, head, body) started + http_timeout_ms (none
     * while the reply is owed); on an open WebSocket the hello (upgrade +
     * http_timeout_ms, none once greeted). Set when a phase starts, never
     * moved by input; the timer catches up lazily. */
    ev_tstamp deadline;
    /* ev_now() of the last WebSocket input; while ping_out, of the ping. */
    ev_tstamp last_rx;
    /* ev_now() of the last WebSocket input or output (or failed attempt
     * to hibernate): hibernation waits for SW_CONN_HIBERNATE_MS after it.
     * Event stream: of the last output (event or keep-alive comment). */
    ev_tstamp last_act;
    /* Bytes handed to wslay minus the full size (header + payload) of
     * every frame wslay has started: 0 exactly at a frame boundary with no
     * byte of the next frame read (see ws_frame_start_cb). */
    int64_t ws_unframed;
    unsigned mode : 2; /* MODE_* */
    unsigned in_pending : 1;
    unsigned closing : 1;        /* input ignored, output flushing */
    unsigned shut_wr : 1;        /* SHUT_WR done, draining until EOF */
    unsigned dead : 1;           /* socket closed, waiting for the reap */
    unsigned opened : 1;         /* on_open called or event stream: on_close owed */
    unsigned awaiting_reply : 1; /* an HTTP request waits for its reply */
    unsigned keep_alive : 1;     /* of the request being answered */
    unsigned head_req : 1;       /* the request being answered is HEAD */
    unsigned close_after_reply : 1;
    unsigned need_parse : 1; /* pipelined input to parse after a reply */
    unsigned in_input : 1;   /* inside http_input() */
    unsigned ping_out : 1;   /* a ping went out and no input came since */
    unsigned abandon : 1;    /* peer presumed dead: close once the output is tried */
    /* Output bound reached (a WebSocket or event stream): the next flush
     * tries the socket once, then sends the 1013 close (WebSocket) or ends
     * the stream when everything went, or resets the conn. */
    unsigned overflow : 1;
    unsigned ws_frag : 1;     /* the last data frame started had no FIN */
    unsigned hibernating : 1; /* WebSocket conn without a wslay context */
    /* wslay has nothing to write and writing is enabled, as of the last
     * flush: data frames go straight into `out` without asking wslay.
     * Cleared before every call that may make wslay queue a frame. */
    unsigned ws_idle_out : 1;
    unsigned rx_ctrl : 1; /* the frame being received is a control frame */
    unsigned rx_text : 1; /* the data message being received is text */
    unsigned rx_fin : 1;  /* the data frame being received ends its message */
    unsigned rx_drop : 1; /* the data message is over max_message_bytes (1009) */
    sw_buf_t in;          /* unparsed input: pipelined HTTP, first WebSocket bytes */
    sw_buf_t out;         /* bytes for the socket */
    /* The text message being received (wslay buffers no data frames, see
     * ws_chunk_cb): its bytes borrowed from wslay's input buffer when one
     * chunk holds it all (rx_ptr), else copied into rx. */
    sw_buf_t rx;
    const char *rx_ptr;
    size_t rx_plen;
    uint64_t rx_total; /* payload bytes of the data message so far */
    uint64_t rx_fleft; /* payload bytes of the data frame still to come */
    http_state_t *hs;
    wslay_event_context_ptr ws;
    const char *feed; /* input offered to wslay's recv_callback */
    size_t feed_len;
    char *peer;
    void *udata;
    /* Frame headers as they arrive, ahead of wslay (which announces a frame
     * only once payload bytes come): a data message declared over
     * max_message_bytes is refused at its header (ws_scan). */
    uint8_t sc_hdr[14];
    uint8_t sc_hlen;  /* header bytes of the frame being scanned so far */
    uint64_t sc_left; /* payload bytes of the current frame still to come */
    uint64_t sc_msg;  /* declared payload of the data message so far */
    unsigned refs;    /* sw_conn_ref holds: the struct outlives the socket */
    /* HTTP answers queued reached http_out_bound: no reading or parsing of
     * pipelined requests until they are written. */
    unsigned http_blocked : 1;
    unsigned reaped : 1;
};

static void conn_flush(sw_conn_t *c);
static void ws_feed_wslay(sw_conn_t *c, const char *data, size_t len);
static void http_resume(sw_conn_t *c);

/* ---- helpers ---------------------------------------------------------- */

static size_t max_header(const sw_conn_env_t *env)
{
    return env->max_header_bytes ? env->max_header_bytes : DEFAULT_MAX_HEADER;
}

/* Answers queued for an HTTP client before its pipelined requests wait
 * (max_send_bytes, as for the other kinds of output). */
static size_t http_out_bound(const sw_conn_env_t *env)
{
    return env->max_send_bytes ? env->max_send_bytes : (size_t)4 << 20;
}

static size_t max_body(const sw_conn_env_t *env)
{
    return env->max_body_bytes ? env->max_body_bytes : DEFAULT_MAX_BODY;
}

static void mark_pending(sw_conn_t *c)
{
    if (c->in_pending)
        return;
    TAILQ_INSERT_TAIL(&c->env->pending, c, plink);
    c->in_pending = 1;
}

static void unmark_pending(sw_conn_t *c)
{
    if (!c->in_pending)
        return;
    TAILQ_REMOVE(&c->env->pending, c, plink);
    c->in_pending = 0;
}

static void hs_free(sw_conn_t *c)
{
    if (!c->hs)
        return;
    sw_buf_destroy(&c->hs->hb);
    sw_buf_destroy(&c->hs->body);
    free(c->hs);
    c->hs = NULL;
}

/* Close the socket now; output is dropped. The reap (on_close, free)
 * follows from the flush watcher. */
static void conn_finish(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->dead)
        return;
    if (c->opened)
        (void)sw_conn_peer(c); /* keep the address for on_close */
    ev_io_stop(env->loop, &c->rio);
    ev_io_stop(env->loop, &c->wio);
    ev_timer_stop(env->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    c->dead = 1;
    c->closing = 1;
    sw_buf_reset(&c->out);
    if (c->hibernating) {
        c->hibernating = 0;
        env->nhib--;
    }
    env->nconns--;
    if (c->opened)
        env->nws--;
    mark_pending(c);
}

/* Close now, and with output still unsent (in `out`, in wslay, or in the
 * socket's send queue: SIOCOUTQ) make the kernel drop it too: SO_LINGER
 * {1, 0} turns close() into a reset (RST) instead of a FIN queued behind
 * bytes a stalled or dead peer may never take, so that neither the
 * server nor the kernel keeps them. For the close timeout, an abandoned
 * peer, the output bound and sw_conn_abort. */
static void conn_reset(sw_conn_t *c)
{
    int outq = 0;
    if (c->dead)
        return;
    if (c->out.len || (c->ws && wslay_event_want_write(c->ws)) ||
        (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0)) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
            sw_log(SW_LOG_DEBUG, "conn %llu: SO_LINGER: %s", (unsigned long long)c->id,
                   strerror(errno));
    }
    conn_finish(c);
}

static void conn_reap(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    unmark_pending(c);
    if (c->opened) {
        c->opened = 0;
        if (env->on_close)
            env->on_close(c);
    }
    unmark_pending(c); /* on_close may have touched the conn */
    TAILQ_REMOVE(&env->conns, c, link);
    if (c->ws)
        wslay_event_context_free(c->ws);
    hs_free(c);
    sw_buf_destroy(&c->in);
    sw_buf_destroy(&c->out);
    sw_buf_destroy(&c->rx);
    free(c->peer);
    c->peer = NULL;
    if (c->refs) { /* an upper layer still holds it (sw_conn_unref frees) */
        c->reaped = 1;
        return;
    }
    free(c);
}

static void start_closing(sw_conn_t *c)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    ev_timer_stop(c->env->loop, &c->timer); /* may be the liveness timer */
    ev_timer_set(&c->timer, CLOSE_TIMEOUT, 0.);
    ev_timer_start(c->env->loop, &c->timer);
    mark_pending(c);
}

/* Start an HTTP phase (idle, head or body) now: it must end within
 * http_timeout_ms (RFC 9110 §15.5.9). Only the stamp moves: the timer was
 * armed for an earlier phase's deadline (phases start in order), and
 * http_timer re-arms it for this one when it fires. */
static void http_phase_start(sw_conn_t *c)
{
    uint32_t ms = c->env->http_timeout_ms;
    c->deadline = ms ? ev_now(c->env->loop) + ms / 1000. : 0.;
}

/* After the phase stamp was set outside the timer's reach (the timer is
 * stopped while a reply is owed): arm it for the deadline. */
static void http_timer_arm(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->deadline <= 0. || ev_is_active(&c->timer))
        return;
    ev_tstamp after = c->deadline - ev_now(env->loop);
    ev_timer_set(&c->timer, after > 0. ? after : 0., 0.);
    ev_timer_start(env->loop, &c->timer);
}

/* Our side is done: send FIN, then read and discard until the peer's EOF
 * (or the close timer). */
static void shutdown_write(sw_conn_t *c)
{
    if (c->shut_wr || c->dead)
        return;
    c->shut_wr = 1;
    if (shutdown(c->fd, SHUT_WR) < 0) {
        sw_log(SW_LOG_DEBUG, "conn %llu: shutdown: %s", (unsigned long long)c->id, strerror(errno));
        conn_finish(c);
        return;
    }
    if (!ev_is_active(&c->rio))
        ev_io_start(c->env->loop, &c->rio);
}

static void ws_close(sw_conn_t *c, uint16_t code, const char *reason);
/* Queue a close frame behind everything already queued; 0, or SW_ERR with
 * the conn closed. For an open (awake) WebSocket conn. */
static int ws_queue_close(sw_conn_t *c, uint16_t code, const char *reason);
static void http_fail(sw_conn_t *c, int status, const char *code, const char *message,
                      const char *extra, int keep_alive);

static int ws_wake(sw_conn_t *c);
static int ws_can_hibernate(const sw_conn_t *c);
static void ws_hibernate(sw_conn_t *c);

/* Re-arm the timer of an open WebSocket conn for its earliest deadline:
 * the hello (until greeted, also while hibernating), the ping (or, with a
 * ping out, the ping timeout) and, unless it already hibernates,
 * hibernation. Stops it when nothing is due. */
static void ws_timer_arm(sw_conn_t *c)
{
    const sw_conn_env_t *env = c->env;
    ev_tstamp next = c->deadline > 0. ? c->deadline : -1.;
    if (env->ping_interval_ms) {
        uint32_t ms =
            c->ping_out && env->ping_timeout_ms ? env->ping_timeout_ms : env->ping_interval_ms;
        ev_tstamp p = c->last_rx + ms / 1000.;
        if (next < 0. || p < next)
            next = p;
    }
    if (!c->hibernating) {
        ev_tstamp h = c->last_act + HIBERNATE_AFTER;
        if (next < 0. || h < next)
            next = h;
    }
    ev_timer_stop(env->loop, &c->timer);
    if (next < 0.)
        return;
    ev_tstamp after = next - ev_now(env->loop);
    ev_timer_set(&c->timer, after > 0. ? after : 0., 0.);
    ev_timer_start(env->loop, &c->timer);
}

/* Start watching a freshly opened WebSocket conn; its hello is due
 * within http_timeout_ms (sw_conn_ws_greeted). */
static void ws_timer_start(sw_conn_t *c)
{
    uint32_t ms = c->env->http_timeout_ms;
    c->last_rx = c->last_act = ev_now(c->env->loop);
    c->ping_out = 0;
    c->deadline = ms ? c->last_rx + ms / 1000. : 0.;
    ws_timer_arm(c);
}

/* Ping a silent client (RFC 6455 §5.5.2); a hibernating conn gets its
 * wslay context back for it. */
static void ws_ping(sw_conn_t *c)
{
    if (ws_wake(c) != 0)
        return;
    struct wslay_event_msg msg = {
        .opcode = WSLAY_PING,
        .msg = (const uint8_t *)PING_PAYLOAD,
        .msg_length = sizeof(PING_PAYLOAD) - 1,
    };
    c->ws_idle_out = 0;
    int rv = wslay_event_queue_msg(c->ws, &msg);
    if (rv != 0 && rv != WSLAY_ERR_NO_MORE_MSG) {
        sw_log(SW_LOG_DEBUG, "conn %llu: wslay_event_queue_msg(ping): %d",
               (unsigned long long)c->id, rv);
        conn_finish(c);
        return;
    }
    c->ping_out = 1;
    c->last_rx = c->last_act = ev_now(c->env->loop);
    mark_pending(c);
}

/* The timer of an open WebSocket conn fired: work out from the stamps
 * what is due. Liveness: last_rx + interval without a ping out: ping;
 * with a ping out, last_rx (the ping) + timeout: close, or without a
 * timeout, + interval: ping again. Input after a ping cleared ping_out
 * (rio_cb). Hibernation: last_act + SW_CONN_HIBERNATE_MS. */
static void ws_timer(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    ev_tstamp now = ev_now(env->loop);
    if (c->deadline > 0. && now >= c->deadline - TIMER_SLACK) {
        char reason[48]; /* RFC 6455 §7.4.1: 1008, policy violation */
        snprintf(reason, sizeof(reason), "no hello within %u ms", (unsigned)env->http_timeout_ms);
        sw_log(SW_LOG_INFO, "conn %llu: %s, closing", (unsigned long long)c->id, reason);
        c->deadline = 0.;
        ws_close(c, 1008, reason);
        return;
    }
    if (env->ping_interval_ms) {
        if (c->ping_out && env->ping_timeout_ms) {
            if (now >= c->last_rx + env->ping_timeout_ms / 1000. - TIMER_SLACK) {
                sw_log(SW_LOG_INFO, "conn %llu: nothing received within %u ms of a ping, closing",
                       (unsigned long long)c->id, (unsigned)env->ping_timeout_ms);
                c->abandon = 1;
                ws_close(c, 1001, "ping timeout");
                return;
            }
        } else if (now >= c->last_rx + env->ping_interval_ms / 1000. - TIMER_SLACK) {
            ws_ping(c);
            if (c->dead)
                return;
        }
    }
    if (!c->hibernating && now >= c->last_act + HIBERNATE_AFTER - TIMER_SLACK) {
        if (ws_can_hibernate(c))
            ws_hibernate(c);
        else
            c->last_act = now; /* mid-message or output waiting: look again later */
    }
    ws_timer_arm(c);
}

/* Re-arm the timer of an event stream for its next keep-alive (last
 * output + ping_interval_ms); no timer without an interval. */
static void sse_timer_arm(sw_conn_t *c)
{
    const sw_conn_env_t *env = c->env;
    ev_timer_stop(env->loop, &c->timer);
    if (!env->ping_interval_ms)
        return;
    ev_tstamp after = c->last_act + env->ping_interval_ms / 1000. - ev_now(env->loop);
    ev_timer_set(&c->timer, after > 0. ? after : 0., 0.);
    ev_timer_start(env->loop, &c->timer);
}

/* The timer of an event stream fired: after ping_interval_ms without
 * output, queue the comment line ":" (WHATWG HTML §9.2.5: lines starting
 * with a colon are ignored by the client). Nothing is added while earlier
 * output still waits for the socket; a dead peer shows up as a write
 * error, there is no timeout (the client cannot answer). */
static void sse_timer(sw_conn_t *c)
{
    ev_tstamp now = ev_now(c->env->loop);
    if (now >= c->last_act + c->env->ping_interval_ms / 1000. - TIMER_SLACK) {
        if (c->out.len == 0) {
            sw_buf_append(&c->out, ":\n", 2);
            mark_pending(c);
        }
        c->last_act = now;
    }
    sse_timer_arm(c);
}

/* The phase timer of an HTTP conn fired. While a reply is owed no
 * deadline runs: the timer stays stopped until sw_conn_http_reply starts
 * the idle phase. Past the phase's deadline: 408 and close (RFC 9110
 * §15.5.9); before it (a later phase started since the timer was armed):
 * re-arm. */
static void http_timer(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->awaiting_reply || c->deadline <= 0.)
        return;
    ev_tstamp left = c->deadline - ev_now(env->loop);
    if (left > TIMER_SLACK) {
        ev_timer_set(&c->timer, left, 0.);
        ev_timer_start(env->loop, &c->timer);
        return;
    }
    const char *phase = !c->hs || !c->hs->in_msg ? "request"
                        : !c->hs->headers_done   ? "request head"
                                                 : "request body";
    char msg[96];
    snprintf(msg, sizeof(msg), "no complete %s within %u ms", phase,
             (unsigned)env->http_timeout_ms);
    sw_log(SW_LOG_INFO, "conn %llu: %s, closing (408)", (unsigned long long)c->id, msg);
    c->deadline = 0.;
    c->head_req = 0;
    http_fail(c, 408, "timeout", msg, NULL, 0);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sw_conn_t *c = sw_container_of(w, sw_conn_t, timer);
    if (!c->closing && !c->dead && c->mode == MODE_HTTP) {
        http_timer(c);
        return;
    }
    if (!c->closing && !c->dead && c->mode == MODE_WS) {
        ws_timer(c);
        return;
    }
    if (!c->closing && !c->dead && c->mode == MODE_SSE) {
        sse_timer(c);
        return;
    }
    sw_log(SW_LOG_DEBUG, "conn %llu: close timeout", (unsigned long long)c->id);
    conn_reset(c);
}

/* ---- output ----------------------------------------------------------- */

static void conn_flush(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->dead)
        return;
    if (c->ws && !c->ws_idle_out) {
        if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
            conn_finish(c);
            return;
        }
        c->ws_idle_out = !wslay_event_want_write(c->ws) && wslay_event_get_write_enabled(c->ws);
    }
    if (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            sw_log(SW_LOG_DEBUG, "conn %llu: send: %s", (unsigned long long)c->id, strerror(errno));
            conn_finish(c);
            return;
        }
        if (n > 0)
            sw_buf_consume(&c->out, (size_t)n);
        if (c->out.len) {
            /* A dead peer's full socket never drains; a stalled reader at
             * the output bound cannot take the close frame either. */
            if (c->abandon || c->overflow) {
                if (c->overflow)
                    sw_log(SW_LOG_INFO, "conn %llu: stalled reader at the output bound, reset",
                           (unsigned long long)c->id);
                conn_reset(c);
            } else {
                ev_io_start(env->loop, &c->wio);
            }
            return;
        }
    }
    if (c->overflow) { /* everything queued went: the peer still reads */
        c->overflow = 0;
        if (c->mode == MODE_WS) {
            if (ws_queue_close(c, 1013, "backpressure") == 0)
                conn_flush(c); /* the close frame, in this same step */
            return;
        }
    }
    ev_io_stop(env->loop, &c->wio);
    if (c->http_blocked && !c->closing) { /* its answers have left: go on */
        c->http_blocked = 0;
        if (!c->awaiting_reply && !ev_is_active(&c->rio))
            ev_io_start(env->loop, &c->rio);
        if (c->in.len) {
            c->need_parse = 1;
            mark_pending(c);
        }
    }
    /* An open WebSocket keeps a small buffer for its next messages until
     * it hibernates; other conns hold no output storage when idle. */
    if (c->mode == MODE_WS && !c->closing && c->out.cap <= OUT_KEEP)
        sw_buf_reset(&c->out);
    else
        sw_buf_destroy(&c->out);
    if (c->closing && c->abandon) {
        conn_reset(c); /* no closing handshake with a dead peer */
        return;
    }
    if (c->closing && !c->shut_wr) {
        if (c->mode != MODE_WS)
            shutdown_write(c); /* HTTP reply or event stream written */
        else if (wslay_event_get_close_sent(c->ws) &&
                 (wslay_event_get_close_received(c->ws) || !wslay_event_get_read_enabled(c->ws)))
            shutdown_write(c); /* handshake done, or wslay failed the conn */
        /* else: wait for the peer's close frame, bounded by the timer */
    }
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(sw_container_of(w, sw_conn_t, wio));
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    sw_conn_env_t *env = sw_container_of(w, sw_conn_env_t, flush);
    sw_conn_t *c;
    while ((c = TAILQ_FIRST(&env->pending))) {
        unmark_pending(c);
        if (!c->dead && c->need_parse) {
            c->need_parse = 0;
            http_resume(c);
        }
        /* A conn waiting for EV_WRITE is flushed from wio_cb, unless it
         * reached its output bound: its socket is tried once more now. */
        if (!c->dead && (!ev_is_active(&c->wio) || c->overflow))
            conn_flush(c);
        if (c->dead)
            conn_reap(c);
    }
}

/* ---- WebSocket -------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    (void)flags;
    sw_conn_t *c = user_data;
    if (c->dead || c->feed_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = SW_MIN(len, c->feed_len);
    memcpy(buf, c->feed, n);
    c->feed += n;
    c->feed_len -= n;
    c->ws_unframed += (int64_t)n;
    return (ssize_t)n;
}

/* wslay has parsed a frame header (RFC 6455 §5.2). Its full size is known
 * now: 2 bytes, + 2 or 8 bytes of extended length for payloads over 125 or
 * 65535 bytes (wslay rejects longer encodings with 1002), + 4 bytes of
 * masking key (client frames are always masked, wslay closes with 1002
 * otherwise), + the payload. Subtracting it from ws_unframed, which counts
 * the bytes handed to wslay, leaves 0 exactly when every byte read so far
 * belongs to frames wslay has started and each of them has been read to
 * its end: below 0 the last frame is incomplete, above 0 bytes of the next
 * one are buffered in wslay. As ws_feed() lets wslay consume everything
 * handed to it, 0 after a feed means those frames are also processed.
 * Frames wslay rejects never reach here but fail the conn (1002). */
static void ws_frame_start_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *arg,
                              void *user_data)
{
    (void)ctx;
    sw_conn_t *c = user_data;
    uint64_t hdr = 2 + 4 + (arg->payload_length > 65535 ? 8 : arg->payload_length > 125 ? 2 : 0);
    /* payload_length <= max_recv_msg_length (checked before this call). */
    c->ws_unframed -= (int64_t)(hdr + arg->payload_length);
    c->rx_ctrl = (arg->opcode & 0x8) != 0; /* RFC 6455 §5.5 */
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) {
        /* No room for a status code (§5.5.1): wslay would echo a close
         * without one; 1002 goes first, wslay's echo is then refused. */
        (void)wslay_event_queue_close(ctx, 1002, NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
    if (c->rx_ctrl)
        return; /* control frames may come between fragments; wslay buffers them */
    c->ws_frag = !arg->fin;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) { /* a new message */
        c->rx_text = arg->opcode == WSLAY_TEXT_FRAME;
        c->rx_total = 0;
        c->rx_ptr = NULL;
        sw_buf_reset(&c->rx);
    }
    c->rx_fin = arg->fin;
    c->rx_fleft = arg->payload_length;
    c->rx_total += arg->payload_length;
    /* wslay checks each frame against max_recv_msg_length, but the whole
     * message only when it buffers it: the rest of the check (fragments)
     * is here, with wslay's answer (close 1009, stop reading). */
    size_t max = c->env->max_message_bytes;
    if (max && c->rx_total > max && !c->rx_drop) {
        c->rx_drop = 1;
        (void)wslay_event_queue_close(ctx, 1009, NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
}

/* A piece of the payload of the frame being received, unmasked and UTF-8
 * checked so far by wslay, in wslay's input buffer (valid until wslay
 * reads again). Text data is kept for ws_msg_cb: borrowed when this piece
 * completes a message that has no earlier bytes (the usual case: no copy,
 * no allocation), copied otherwise. Binary data is dropped (1003). */
static void ws_chunk_cb(wslay_event_context_ptr ctx,
                        const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user_data)
{
    (void)ctx;
    sw_conn_t *c = user_data;
    if (c->rx_ctrl)
        return;
    c->rx_fleft -= arg->data_length;
    if (c->rx_drop || !c->rx_text || c->dead || arg->data_length == 0)
        return;
    if (c->rx_fin && c->rx_fleft == 0 && c->rx.len == 0) {
        c->rx_ptr = (const char *)arg->data;
        c->rx_plen = arg->data_length;
        return;
    }
    sw_buf_append(&c->rx, arg->data, arg->data_length); /* bounded by rx_drop */
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    (void)flags;
    sw_conn_t *c = user_data;
    if (c->dead) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    sw_buf_append(&c->out, data, len); /* unbounded buffer: cannot fail */
    mark_pending(c);
    return (ssize_t)len;
}

static int ws_queue_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    /* Move queued messages into `out` first: wslay sends control frames
     * ahead of queued data otherwise. */
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        conn_finish(c);
        return SW_ERR;
    }
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123) /* RFC 6455 §5.5: control payload <= 125 bytes */
        rlen = 123;
    c->ws_idle_out = 0;
    int rv = wslay_event_queue_close(c->ws, code, (const uint8_t *)reason, rlen);
    if (rv != 0 && rv != WSLAY_ERR_NO_MORE_MSG) {
        conn_finish(c);
        return SW_ERR;
    }
    mark_pending(c);
    return 0;
}

static void ws_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    if (c->dead || c->closing || ws_wake(c) != 0)
        return;
    if (ws_queue_close(c, code, reason) == 0)
        start_closing(c);
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user_data)
{
    sw_conn_t *c = user_data;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        const char *data = c->rx_ptr ? c->rx_ptr : c->rx.data ? c->rx.data : "";
        size_t len = c->rx_ptr ? c->rx_plen : c->rx.len;
        int drop = c->rx_drop;
        c->rx_ptr = NULL;
        c->rx_drop = 0;
        c->rx_total = 0;
        /* wslay has validated the UTF-8 of the whole message (1007). */
        if (!c->dead && !c->closing && !drop && arg->opcode == WSLAY_TEXT_FRAME &&
            c->env->on_message)
            c->env->on_message(c, data, len);
        if (c->rx.cap > OUT_KEEP)
            sw_buf_destroy(&c->rx);
        else
            sw_buf_reset(&c->rx);
    }
    if (c->dead || c->closing)
        return;
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        (void)ctx; /* keep reading: the peer's close reply ends the handshake */
        ws_close(c, 1003, "binary messages are not supported");
    }
}

static int ws_ctx_new(sw_conn_t *c);

/* wslay's framing layer refused a frame header: a control frame without
 * FIN or with more than 125 bytes (RFC 6455 §5.5), a payload length with
 * its top bit set or not in its minimal form (§5.2). wslay 1.1.1 then
 * queues a close frame *without* a status code, stops reading and returns
 * WSLAY_ERR_CALLBACK_FAILURE (our callbacks never fail inside
 * wslay_event_recv). Answer 1002 instead (§7.4.1): a fresh context queues
 * it, with reading shut, and the conn closes as after any close it sent.
 * Data messages still queued in the old context are dropped, as wslay
 * drops them once its close went out; every frame in `out` is whole
 * (ws_send_cb takes all), so the close frame follows them cleanly. */
static void ws_fail_framing(sw_conn_t *c)
{
    sw_log(SW_LOG_DEBUG, "conn %llu: bad frame header, closing (1002)", (unsigned long long)c->id);
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (ws_ctx_new(c) != 0) {
        conn_finish(c);
        return;
    }
    (void)wslay_event_queue_close(c->ws, 1002, NULL, 0); /* a fresh context takes it */
    wslay_event_shutdown_read(c->ws);
    start_closing(c);
    mark_pending(c);
}

/* Hand input to wslay; everything is consumed (or dropped once wslay
 * stops reading). */
/* Follow the frame headers in data (RFC 6455 §5.2: 2 bytes, then 2 or 8
 * bytes of extended length, then 4 of masking key when the mask bit is
 * set) without touching the payloads. Returns len when every data message
 * declared so far fits max_message_bytes, else the offset in data of the
 * first byte of the frame that goes over (0 when its header began in an
 * earlier read). */
static size_t ws_scan(sw_conn_t *c, const char *data, size_t len)
{
    size_t max = c->env->max_message_bytes;
    size_t i = 0;
    while (i < len) {
        if (c->sc_left) {
            size_t k = (size_t)SW_MIN(c->sc_left, (uint64_t)(len - i));
            c->sc_left -= k;
            i += k;
            continue;
        }
        size_t start = i >= c->sc_hlen ? i - c->sc_hlen : 0;
        c->sc_hdr[c->sc_hlen++] = (uint8_t)data[i++];
        if (c->sc_hlen < 2)
            continue;
        unsigned len7 = c->sc_hdr[1] & 0x7f;
        size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c->sc_hdr[1] & 0x80 ? 4 : 0);
        if (c->sc_hlen < need)
            continue;
        uint64_t plen = len7;
        if (len7 >= 126) {
            plen = 0;
            for (size_t k = 2; k < (len7 == 126 ? 4u : 10u); k++)
                plen = (plen << 8) | c->sc_hdr[k];
        }
        c->sc_hlen = 0;
        c->sc_left = plen;
        unsigned opcode = c->sc_hdr[0] & 0x0f;
        if ((opcode & 0x8) || (plen >> 63))
            continue; /* control frames, and a length with its top bit set:
                         wslay's rules (1002) */
        c->sc_msg = opcode ? plen : c->sc_msg + SW_MIN(plen, UINT64_MAX - c->sc_msg);
        if (max && c->sc_msg > max)
            return start;
    }
    return len;
}

static void ws_feed(sw_conn_t *c, const char *data, size_t len)
{
    size_t fits = ws_scan(c, data, len);
    if (fits < len) {
        /* A data message declared over the bound: what came before it
         * goes through wslay, then close 1009 (RFC 6455 §7.4.1) without
         * waiting for a payload that may never come. */
        if (fits)
            ws_feed_wslay(c, data, fits);
        if (c->dead || c->closing || !c->ws)
            return;
        sw_log(SW_LOG_DEBUG, "conn %llu: message declared over %zu bytes: 1009",
               (unsigned long long)c->id, c->env->max_message_bytes);
        c->ws_idle_out = 0;
        (void)wslay_event_queue_close(c->ws, 1009, NULL, 0);
        wslay_event_shutdown_read(c->ws);
        start_closing(c);
        mark_pending(c);
        return;
    }
    ws_feed_wslay(c, data, len);
}

/* Hand input to wslay (see ws_feed). */
static void ws_feed_wslay(sw_conn_t *c, const char *data, size_t len)
{
    c->feed = data;
    c->feed_len = len;
    c->ws_idle_out = 0; /* a pong, or a close, may be queued */
    int rv = wslay_event_recv(c->ws);
    c->feed = NULL;
    c->feed_len = 0;
    if (c->dead)
        return;
    if (rv == WSLAY_ERR_CALLBACK_FAILURE && !wslay_event_get_read_enabled(c->ws) &&
        !wslay_event_get_close_sent(c->ws)) {
        ws_fail_framing(c);
        return;
    }
    if (rv != 0) {
        sw_log(SW_LOG_DEBUG, "conn %llu: wslay_event_recv: %d", (unsigned long long)c->id, rv);
        conn_finish(c);
        return;
    }
    /* Read disabled: the peer's close, or a close queued by wslay (1002,
     * 1007, 1009) or by ws_msg_cb (1003). */
    if (!wslay_event_get_read_enabled(c->ws)) {
        start_closing(c);
        mark_pending(c); /* the flush step finishes the closing handshake */
    }
    if (wslay_event_want_write(c->ws))
        mark_pending(c);
}

/* A fresh wslay server context for c: same callbacks and configuration
 * for the upgrade and for every wake-up. 0 or SW_ERR (logged). */
static int ws_ctx_new(sw_conn_t *c)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .on_frame_recv_start_callback = ws_frame_start_cb,
        .on_frame_recv_chunk_callback = ws_chunk_cb,
        .on_msg_recv_callback = ws_msg_cb,
    };
    if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0) {
        sw_log(SW_LOG_ERROR, "conn %llu: wslay_event_context_server_init failed",
               (unsigned long long)c->id);
        c->ws = NULL;
        return SW_ERR;
    }
    if (c->env->max_message_bytes)
        wslay_event_config_set_max_recv_msg_length(c->ws, c->env->max_message_bytes);
    /* Data frames reach ws_chunk_cb unbuffered: no allocation and copy per
     * message in wslay. */
    wslay_event_config_set_no_buffering(c->ws, 1);
    c->ws_idle_out = 0;
    c->ws_unframed = 0;
    c->ws_frag = 0;
    c->sc_hlen = 0; /* a fresh context starts at a frame boundary */
    c->sc_left = 0;
    c->sc_msg = 0;
    c->rx_ptr = NULL;
    c->rx_drop = 0;
    c->rx_total = 0;
    sw_buf_reset(&c->rx);
    return 0;
}

/* Give a hibernating conn its wslay context back (no-op otherwise) and
 * re-arm its timer for the next hibernation. 0, or SW_ERR with the conn
 * closed. */
static int ws_wake(sw_conn_t *c)
{
    if (!c->hibernating)
        return 0;
    c->hibernating = 0;
    c->env->nhib--;
    if (ws_ctx_new(c) != 0) {
        conn_finish(c);
        return SW_ERR;
    }
    c->last_act = ev_now(c->env->loop);
    ws_timer_arm(c);
    return 0;
}

/* At a clean message boundary with nothing in flight? (See
 * ws_frame_start_cb for the byte count.) */
static int ws_can_hibernate(const sw_conn_t *c)
{
    return c->ws && c->mode == MODE_WS && !c->closing && !c->dead && !c->in_pending &&
           c->ws_unframed == 0 && !c->ws_frag && c->out.len == 0 && c->in.len == 0 &&
           !ev_is_active(&c->wio) && wslay_event_get_queued_msg_count(c->ws) == 0 &&
           !wslay_event_want_write(c->ws) && wslay_event_get_read_enabled(c->ws) &&
           !wslay_event_get_close_sent(c->ws) && !wslay_event_get_close_received(c->ws);
}

/* Heap freed by hibernation stays in the process: the allocator keeps
 * freed pages (glibc returns memory only from the top of the heap, and the
 * freed contexts sit between live objects; jemalloc purges on its own only
 * while allocating). sw_alloc_release() hands the free pages back
 * (common/alloc.h: jemalloc's purge or glibc's malloc_trim); it walks the
 * heap, so it runs at most every TRIM_INTERVAL seconds and only after
 * TRIM_MIN_UNITS were freed (sw_conn_env_heap_freed), from this timer
 * rather than from each conn's hibernation. */
static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sw_conn_env_t *env = sw_container_of(w, sw_conn_env_t, trim);
    ev_ref(loop); /* the expired timer was stopped by libev after ev_unref */
    env->trim_pending = 0;
    env->last_trim = ev_now(loop);
    sw_alloc_release();
}

/* Drop the wslay context and empty buffers of an idle conn at a message
 * boundary (ws_can_hibernate). It stays registered for reads. */
static void ws_hibernate(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    sw_buf_destroy(&c->out);
    sw_buf_destroy(&c->in);
    sw_buf_destroy(&c->rx);
    hs_free(c);
    c->hibernating = 1;
    env->nhib++;
    sw_conn_env_heap_freed(env, 1);
}

void sw_conn_env_heap_freed(sw_conn_env_t *env, size_t units)
{
    env->trim_pending += units;
    if (env->trim_pending >= TRIM_MIN_UNITS && !ev_is_active(&env->trim)) {
        ev_tstamp after = env->last_trim + TRIM_INTERVAL - ev_now(env->loop);
        ev_timer_set(&env->trim, after > 0. ? after : 0., 0.);
        ev_timer_start(env->loop, &env->trim);
        ev_unref(env->loop); /* trimming alone keeps no loop alive */
    }
}

/* ---- HTTP ------------------------------------------------------------- */

static int hb_add(http_state_t *hs, sw_conn_t *c, const char *p, size_t n)
{
    if (hs->hb.len + n > max_header(c->env)) {
        hs->error_status = 431;
        return -1;
    }
    sw_buf_append(&hs->hb, p, n);
    return 0;
}

static int hp_message_begin(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    http_phase_start(c); /* head: from its first byte */
    sw_buf_reset(&hs->hb);
    sw_buf_destroy(&hs->body);
    hs->url_len = 0;
    hs->nhdr = 0;
    hs->last = LAST_NONE;
    hs->in_msg = 1;
    hs->headers_done = 0;
    hs->complete = 0;
    hs->head_bytes = 0;
    return 0;
}

static int hp_url(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    c->hs->last = LAST_URL;
    c->hs->url_len += len;
    return hb_add(c->hs, c, at, len);
}

/* A field name is a token (RFC 9110 §5.1, §5.6.2): no whitespace (a space
 * before the colon is a smuggling vector, RFC 9112 §5.1), no delimiters. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int hp_header_field(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->headers_done)
        return 0; /* trailers are ignored */
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            hs->bad_why = "header field name is not a token";
            return -1;
        }
    }
    if (hs->last != LAST_FIELD) {
        if (hb_add(hs, c, "", 1)) /* ends the url or the previous value */
            return -1;
        if (hs->nhdr == MAX_HEADERS) {
            hs->error_status = 431;
            return -1;
        }
        hs->name_off[hs->nhdr] = (uint32_t)hs->hb.len;
        hs->val_off[hs->nhdr] = UINT32_MAX;
        hs->nhdr++;
        hs->last = LAST_FIELD;
    }
    return hb_add(hs, c, at, len);
}

static int hp_header_value(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->headers_done || hs->nhdr == 0)
        return 0;
    if (hs->last != LAST_VALUE) {
        if (hb_add(hs, c, "", 1))
            return -1;
        hs->val_off[hs->nhdr - 1] = (uint32_t)hs->hb.len;
        hs->last = LAST_VALUE;
    }
    return hb_add(hs, c, at, len);
}

static int hp_headers_complete(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hb_add(hs, c, "", 1))
        return -1;
    if (p->http_major != 1) { /* HTTP/1.0 and 1.1 only (RFC 9112 §2.3) */
        hs->bad_why = "HTTP/1.0 or HTTP/1.1 required";
        return -1;
    }
    hs->headers_done = 1;
    http_phase_start(c); /* body */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > max_body(c->env)) {
        hs->error_status = 413;
        return -1;
    }
    return 0;
}

static int hp_body(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->body.len + len > max_body(c->env)) {
        hs->error_status = 413;
        return -1;
    }
    sw_buf_append(&hs->body, at, len);
    return 0;
}

static int hp_message_complete(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    hs->complete = 1;
    hs->in_msg = 0;
    hs->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* one request at a time: resume after the reply */
    return 0;
}

static const http_parser_settings hp_settings = {
    .on_message_begin = hp_message_begin,
    .on_url = hp_url,
    .on_header_field = hp_header_field,
    .on_header_value = hp_header_value,
    .on_headers_complete = hp_headers_complete,
    .on_body = hp_body,
    .on_message_complete = hp_message_complete,
};

static const char *req_header(const sw_http_request_t *req, const char *name)
{
    const http_state_t *hs = req->priv;
    for (int i = 0; i < hs->nhdr; i++) {
        if (strcasecmp(hs->hb.data + hs->name_off[i], name) == 0)
            return hs->val_off[i] == UINT32_MAX ? "" : hs->hb.data + hs->val_off[i];
    }
    return NULL;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Does the comma-separated header value contain `token` (case-
 * insensitive)? RFC 7230 §7. */
static int has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    if (!p)
        return 0;
    while (*p) {
        while (is_ows(*p) || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Value with optional whitespace removed: *len gets its length. */
static const char *trimmed(const char *v, size_t *len)
{
    while (is_ows(*v))
        v++;
    size_t n = strlen(v);
    while (n && is_ows(v[n - 1]))
        n--;
    *len = n;
    return v;
}

/* Answer with an error decided by conn.c itself: the request being read
 * (or none) is the one answered. */
static void http_fail(sw_conn_t *c, int status, const char *code, const char *message,
                      const char *extra, int keep_alive)
{
    c->awaiting_reply = 1;
    c->keep_alive = keep_alive ? 1 : 0;
    sw_conn_http_error(c, status, code, message, extra);
}

static void ws_handshake(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_conn_env_t *env = c->env;
    size_t vlen, klen;
    if (strcmp(req->method, "GET") != 0) {
        http_fail(c, 405, "method_not_allowed", "use GET", "Allow: GET\r\n", c->keep_alive);
        return;
    }
    if (!has_token(req->header(req, "Upgrade"), "websocket") ||
        !has_token(req->header(req, "Connection"), "upgrade")) {
        http_fail(c, 426, "upgrade_required", "WebSocket upgrade required",
                  "Upgrade: websocket\r\n", c->keep_alive);
        return;
    }
    const char *version = req->header(req, "Sec-WebSocket-Version");
    if (version)
        version = trimmed(version, &vlen);
    if (!version || vlen != 2 || memcmp(version, "13", 2) != 0) {
        http_fail(c, 426, "upgrade_required", "Sec-WebSocket-Version 13 required",
                  "Sec-WebSocket-Version: 13\r\n", c->keep_alive);
        return;
    }
    const char *key = req->header(req, "Sec-WebSocket-Key");
    char accept[29];
    if (key)
        key = trimmed(key, &klen);
    /* RFC 6455 §4.1: HTTP/1.1 or higher, the key exactly once (§11.3.1). */
    const http_state_t *hs = req->priv;
    int nkeys = 0;
    for (int i = 0; i < hs->nhdr; i++)
        nkeys += strcasecmp(hs->hb.data + hs->name_off[i], "Sec-WebSocket-Key") == 0;
    if (hs->parser.http_major != 1 || hs->parser.http_minor < 1) {
        http_fail(c, 400, "bad_request", "the WebSocket handshake needs HTTP/1.1", NULL, 0);
        return;
    }
    if (!key || nkeys != 1 || sw_ws_accept_key(key, klen, accept) != 0) {
        http_fail(c, 400, "bad_request", "missing or invalid Sec-WebSocket-Key", NULL, 0);
        return;
    }
    if (ws_ctx_new(c) != 0) {
        conn_finish(c);
        return;
    }
    /* The upper layer may refuse (a forbidden Origin): then it has answered
     * the request, there is no upgrade and nothing is owed. No further
     * request is read either way (Connection: close on a refusal). */
    c->keep_alive = 0;
    if (env->on_open && env->on_open(c, req) != 0) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
        if (!c->dead && c->awaiting_reply) {
            sw_log(SW_LOG_WARN, "conn %llu: on_open refused the upgrade without an answer",
                   (unsigned long long)c->id);
            http_fail(c, 403, "forbidden", "upgrade refused", NULL, 0);
        }
        return;
    }
    if (c->dead) { /* sw_conn_abort from on_open: accepted, so on_close is owed */
        c->opened = 1;
        return;
    }
    sw_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n",
                  accept);
    c->awaiting_reply = 0;
    c->mode = MODE_WS;
    c->opened = 1;
    env->nws++;
    mark_pending(c);
    if (!ev_is_active(&c->rio))
        ev_io_start(env->loop, &c->rio);
    ws_timer_start(c);
    if (c->close_after_reply) /* sw_conn_close from on_open */
        ws_close(c, 1000, NULL);
}

/* Dispatch the complete request in c->hs. */
static void http_dispatch(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    http_state_t *hs = c->hs;
    http_parser *p = &hs->parser;
    struct http_parser_url u;

    c->awaiting_reply = 1;
    c->deadline = 0.; /* none while the reply is owed */
    /* After an Upgrade request http-parser does not parse further input. */
    c->keep_alive = hs->keep_alive && !p->upgrade && !c->close_after_reply;
    c->head_req = p->method == HTTP_HEAD;
    http_parser_url_init(&u);
    if (http_parser_parse_url(hs->hb.data, hs->url_len, p->method == HTTP_CONNECT, &u) != 0) {
        http_fail(c, 400, "bad_request", "malformed request target", NULL, 0);
        return;
    }
    /* path and query are copied from the url in the same buffer: make room
     * first so that the source does not move. */
    sw_buf_reserve(&hs->hb, hs->url_len + 2);
    size_t path_off = hs->hb.len;
    if (u.field_set & (1 << UF_PATH))
        sw_buf_append(&hs->hb, hs->hb.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    sw_buf_append(&hs->hb, "", 1);
    size_t query_off = hs->hb.len;
    if (u.field_set & (1 << UF_QUERY))
        sw_buf_append(&hs->hb, hs->hb.data + u.field_data[UF_QUERY].off,
                      u.field_data[UF_QUERY].len);
    sw_buf_append(&hs->hb, "", 1);

    sw_http_request_t req = {
        .method = http_method_str((enum http_method)p->method),
        .path = hs->hb.data + path_off,
        .query = hs->hb.data + query_off,
        .body = hs->body.len ? hs->body.data : NULL,
        .body_len = hs->body.len,
        .header = req_header,
        .priv = hs,
    };
    /* No more input until the reply (requests are answered in order). */
    ev_io_stop(env->loop, &c->rio);
    /* GET on ws_path is the WebSocket handshake; other methods there (the
     * POST of messages for an event stream) go to on_http like any route. */
    if (env->ws_path && strcmp(req.path, env->ws_path) == 0 &&
        (strcmp(req.method, "GET") == 0 || !env->on_http))
        ws_handshake(c, &req);
    else if (env->on_http)
        env->on_http(c, &req);
    else
        http_fail(c, 404, "not_found", "no route", NULL, c->keep_alive);
    if (c->hs && c->mode == MODE_HTTP) {
        sw_buf_reset(&c->hs->hb);
        sw_buf_destroy(&c->hs->body);
        c->hs->nhdr = 0;
    }
}

/* Answer input that cannot be parsed (status 400, 413 or 431, err the
 * parser's error), then close. */
static void http_bad_input(sw_conn_t *c, int status, enum http_errno err)
{
    char msg[128];
    const char *code = "bad_request";
    c->head_req = 0;
    if (status == 413) {
        code = "too_large";
        snprintf(msg, sizeof(msg), "request body over %zu bytes", max_body(c->env));
    } else if (status == 431) {
        code = "headers_too_large";
        snprintf(msg, sizeof(msg), "request head over %zu bytes or %d header fields",
                 max_header(c->env), MAX_HEADERS);
    } else {
        snprintf(msg, sizeof(msg), "malformed HTTP request: %s", http_errno_description(err));
    }
    http_fail(c, status, code, msg, NULL, 0);
}

/* Parse requests from data; returns the bytes used. Stops at a request
 * waiting for its reply, at the upgrade (the rest is WebSocket input), or
 * when closing (the rest is dropped). */
/* Check the version of the request line being read in data[0..len)
 * ("HTTP/1." DIGIT before its CR LF, RFC 9112 §3): 0 while it is fine or
 * not complete yet, -1 when it is malformed. Scans no further than the
 * line's LF, so pipelined requests are left to the next round. */
static int request_line_check(http_state_t *hs, const char *data, size_t len)
{
    for (size_t i = 0; i < len && hs->line_state != LINE_DONE; i++) {
        char ch = data[i];
        if (hs->line_state == LINE_START) {
            if (ch == '\r' || ch == '\n')
                continue;
            hs->line_state = LINE_IN;
            hs->line_tail_n = 0;
        }
        if (ch != '\n') {
            if (hs->line_tail_n == sizeof(hs->line_tail)) {
                memmove(hs->line_tail, hs->line_tail + 1, sizeof(hs->line_tail) - 1);
                hs->line_tail_n--;
            }
            hs->line_tail[hs->line_tail_n++] = ch;
            continue;
        }
        hs->line_state = LINE_DONE;
        size_t n = hs->line_tail_n;
        if (n && hs->line_tail[n - 1] == '\r')
            n--;
        const char *t = hs->line_tail + (n >= 9 ? n - 9 : 0);
        if (n < 9 || memcmp(t, " HTTP/1.", 8) != 0 || t[8] < '0' || t[8] > '9')
            return -1;
    }
    return 0;
}

static size_t http_input(sw_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    c->in_input = 1;
    while (off < len && !c->dead && !c->closing && !c->awaiting_reply && !c->http_blocked &&
           c->mode == MODE_HTTP) {
        if (!c->hs) {
            c->hs = sw_xcalloc(1, sizeof(*c->hs));
            http_parser_init(&c->hs->parser, HTTP_REQUEST);
            c->hs->parser.data = c;
            sw_buf_init(&c->hs->hb, 0);
            sw_buf_init(&c->hs->body, 0);
        }
        http_state_t *hs = c->hs;
        size_t n = http_parser_execute(&hs->parser, &hp_settings, data + off, len - off);
        enum http_errno err = HTTP_PARSER_ERRNO(&hs->parser);
        if ((err == HPE_OK || err == HPE_PAUSED) && request_line_check(hs, data + off, n) != 0) {
            http_fail(c, 400, "bad_request", "malformed request line (HTTP/1.x required)", NULL, 0);
            off = len;
            break;
        }
        off += n;
        if (err != HPE_OK && err != HPE_PAUSED && hs->bad_why) {
            http_fail(c, 400, "bad_request", hs->bad_why, NULL, 0);
            off = len;
            break;
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            int status = hs->error_status             ? hs->error_status
                         : err == HPE_HEADER_OVERFLOW ? 431
                                                      : 400;
            sw_log(SW_LOG_DEBUG, "conn %llu: bad request (%s): %d", (unsigned long long)c->id,
                   http_errno_name(err), status);
            http_bad_input(c, status, err);
            off = len;
            break;
        }
        if (hs->in_msg && !hs->headers_done) {
            hs->head_bytes += n;
            if (hs->head_bytes > max_header(c->env)) {
                http_bad_input(c, 431, HPE_OK);
                off = len;
                break;
            }
        }
        if (hs->complete) {
            hs->complete = 0;
            hs->line_state = LINE_START; /* the next request's line */
            http_parser_pause(&hs->parser, 0);
            http_dispatch(c);
            if (c->mode != MODE_HTTP)
                hs_free(c); /* upgraded or event stream: no more requests */
        } else if (n == 0) {
            break;
        }
    }
    c->in_input = 0;
    return off;
}

/* After input was parsed: hand leftover bytes of an upgraded conn to
 * wslay, drop input of a closing conn or an event stream, free idle
 * parser state. */
static void after_input(sw_conn_t *c)
{
    if (c->dead)
        return;
    if (c->mode == MODE_SSE) {
        sw_buf_destroy(&c->in);
        hs_free(c);
        return;
    }
    if (c->mode == MODE_WS && c->in.len) {
        ws_feed(c, c->in.data, c->in.len);
        sw_buf_destroy(&c->in);
        return;
    }
    if (c->closing)
        sw_buf_reset(&c->in);
    if (c->in.len == 0)
        sw_buf_destroy(&c->in);
    if (c->mode == MODE_HTTP && c->hs && !c->hs->in_msg && !c->awaiting_reply && !c->in.len)
        hs_free(c);
}

static void http_read(sw_conn_t *c, const char *data, size_t len)
{
    size_t used;
    if (c->in.len) {
        sw_buf_append(&c->in, data, len);
        used = http_input(c, c->in.data, c->in.len);
        if (c->dead)
            return;
        sw_buf_consume(&c->in, used);
    } else {
        used = http_input(c, data, len);
        if (c->dead)
            return;
        if (used < len)
            sw_buf_append(&c->in, data + used, len - used);
    }
    after_input(c);
}

/* Continue with pipelined input after a reply (from the flush watcher). */
static void http_resume(sw_conn_t *c)
{
    if (c->mode != MODE_HTTP || c->closing || c->awaiting_reply || !c->in.len)
        return;
    size_t used = http_input(c, c->in.data, c->in.len);
    if (c->dead)
        return;
    sw_buf_consume(&c->in, used);
    after_input(c);
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    static _Thread_local char scratch[READ_CHUNK];
    sw_conn_t *c = sw_container_of(w, sw_conn_t, rio);
    ssize_t n = read(c->fd, scratch, sizeof(scratch));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sw_log(SW_LOG_DEBUG, "conn %llu: read: %s", (unsigned long long)c->id, strerror(errno));
        conn_finish(c);
        return;
    }
    if (n == 0) {
        conn_finish(c);
        return;
    }
    if (c->mode == MODE_SSE)
        return;               /* an event stream ignores its input */
    if (c->mode == MODE_WS) { /* a sign of life: see ws_timer */
        c->last_rx = c->last_act = ev_now(loop);
        if (ws_wake(c) != 0)
            return;
        if (c->ping_out && !c->closing) {
            /* The answer to a ping (once per ping, not per read): the
             * timer still waits for the ping timeout; re-arm it for the
             * next silence interval instead. */
            c->ping_out = 0;
            ws_timer_arm(c);
        }
    }
    if (c->shut_wr || (c->closing && c->mode == MODE_HTTP))
        return; /* draining */
    if (c->mode == MODE_HTTP)
        http_read(c, scratch, (size_t)n);
    else
        ws_feed(c, scratch, (size_t)n);
}

/* ---- public API ------------------------------------------------------- */

void sw_conn_env_init(sw_conn_env_t *env)
{
    env->nconns = 0;
    env->nws = 0;
    TAILQ_INIT(&env->conns);
    TAILQ_INIT(&env->pending);
    env->next_id = 1;
    ev_prepare_init(&env->flush, flush_cb);
    env->nhib = 0;
    env->trim_pending = 0;
    env->last_trim = 0.;
    ev_timer_init(&env->trim, trim_cb, 0., 0.);
}

void sw_conn_env_destroy(sw_conn_env_t *env)
{
    sw_conn_t *c;
    while ((c = TAILQ_FIRST(&env->conns))) {
        conn_finish(c);
        conn_reap(c);
    }
    while ((c = TAILQ_FIRST(&env->pending)))
        unmark_pending(c);
    if (ev_is_active(&env->flush)) {
        ev_ref(env->loop);
        ev_prepare_stop(env->loop, &env->flush);
    }
    if (ev_is_active(&env->trim)) {
        ev_ref(env->loop);
        ev_timer_stop(env->loop, &env->trim);
    }
    env->trim_pending = 0;
}

sw_conn_t *sw_conn_new(sw_conn_env_t *env, int fd)
{
    if (sw_fd_nonblock(fd) < 0) {
        close(fd);
        return NULL;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on unix sockets */
    if (env->sndbuf_bytes) {
        /* Fixed: no autotuning up to tcp_wmem[2] (4 MiB) for a client that
         * does not read. The kernel doubles it (socket(7)). */
        int sndbuf = (int)SW_MIN(env->sndbuf_bytes, (size_t)(INT32_MAX / 2));
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0)
            sw_log(SW_LOG_DEBUG, "SO_SNDBUF %d: %s", sndbuf, strerror(errno));
    }
    sw_conn_t *c = sw_xcalloc(1, sizeof(*c));
    c->env = env;
    c->fd = fd;
    c->id = env->next_id++;
    sw_buf_init(&c->in, 0);
    sw_buf_init(&c->out, 0);
    sw_buf_init(&c->rx, 0);
    ev_io_init(&c->rio, rio_cb, fd, EV_READ);
    ev_io_init(&c->wio, wio_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, timer_cb, CLOSE_TIMEOUT, 0.);
    http_phase_start(c); /* idle: the first request is due */
    TAILQ_INSERT_TAIL(&env->conns, c, link);
    env->nconns++;
    if (!ev_is_active(&env->flush)) {
        ev_prepare_start(env->loop, &env->flush);
        ev_unref(env->loop); /* the flush watcher alone keeps no loop alive */
    }
    ev_io_start(env->loop, &c->rio);
    http_timer_arm(c);
    return c;
}

void sw_conn_ref(sw_conn_t *c)
{
    c->refs++;
}

void sw_conn_unref(sw_conn_t *c)
{
    if (c->refs == 0) {
        sw_log(SW_LOG_ERROR, "conn %llu: sw_conn_unref without a reference",
               (unsigned long long)c->id);
        return;
    }
    if (--c->refs == 0 && c->reaped)
        free(c);
}

uint64_t sw_conn_id(const sw_conn_t *c)
{
    return c->id;
}

const char *sw_conn_peer(const sw_conn_t *cc)
{
    sw_conn_t *c = (sw_conn_t *)cc; /* the formatted address is cached */
    if (c->peer)
        return c->peer;
    if (c->fd < 0)
        return "-";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0) {
        sw_log(SW_LOG_DEBUG, "conn %llu: getpeername: %s", (unsigned long long)c->id,
               strerror(errno));
        return "-";
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        c->peer = sw_xasprintf("%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        c->peer = sw_xasprintf("[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else {
        c->peer = sw_xstrdup("unix");
    }
    return c->peer;
}

void sw_conn_set_udata(sw_conn_t *c, void *udata)
{
    c->udata = udata;
}

void *sw_conn_udata(const sw_conn_t *c)
{
    return c->udata;
}

/* Header of an unmasked text frame with FIN carrying len bytes (RFC 6455
 * §5.2: a server never masks; payload length in 7 bits, or 126 + 16 bits,
 * or 127 + 64 bits, network byte order, minimal form). Returns its size. */
static size_t ws_text_header(uint8_t hdr[WS_MAX_HEADER], uint64_t len)
{
    hdr[0] = 0x80 | WSLAY_TEXT_FRAME; /* FIN, no RSV, opcode 1 */
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* Queue a message of len bytes in pieces iov[0..iovcnt) in wslay (which
 * copies it), behind what waits there. */
static int ws_queue_text(sw_conn_t *c, const struct iovec *iov, int iovcnt, size_t len)
{
    sw_buf_t flat; /* wslay takes one piece */
    sw_buf_init(&flat, 0);
    const uint8_t *msg = iovcnt == 1 ? iov[0].iov_base : NULL;
    if (iovcnt > 1) {
        (void)sw_buf_appendv(&flat, iov, iovcnt); /* unbounded buffer: cannot fail */
        msg = (const uint8_t *)flat.data;
    }
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = msg, .msg_length = len};
    c->ws_idle_out = 0;
    int rv = wslay_event_queue_msg(c->ws, &m);
    sw_buf_destroy(&flat);
    if (rv != 0)
        return rv == WSLAY_ERR_NO_MORE_MSG ? SW_ECLOSED : SW_ERR;
    return 0;
}

/* The output bound is reached: no more output is taken (closing). The
 * next flush (this loop iteration) tries to write everything queued;
 * when the socket takes it all, a WebSocket gets close 1013 and an event
 * stream its FIN, as for any close; otherwise the peer does not read and
 * the conn is reset (conn_flush). */
static void out_bound(sw_conn_t *c)
{
    c->overflow = 1;
    start_closing(c);
}

int sw_conn_sendv(sw_conn_t *c, const struct iovec *iov, int iovcnt)
{
    if (c->dead || c->closing || c->mode != MODE_WS)
        return SW_ECLOSED;
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return SW_EINVAL;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (ws_wake(c) != 0)
        return SW_ERR; /* the conn is closed, on_close follows */
    c->last_act = ev_now(c->env->loop);
    size_t queued = c->out.len + (c->ws_idle_out ? 0 : wslay_event_get_queued_msg_length(c->ws));
    size_t bound = c->env->max_send_bytes;
    if (bound && (len > bound || queued > bound - len)) {
        sw_log(SW_LOG_INFO, "conn %llu: output over %zu bytes, closing (backpressure)",
               (unsigned long long)c->id, bound);
        out_bound(c);
        return SW_ETOOLARGE;
    }
    /* Frames go out in the order they enter `out`. wslay appends a frame
     * to `out` only from wslay_event_send, whole (ws_send_cb takes every
     * byte), so when it wants to write nothing, no frame of it is partly
     * in `out` or still waiting, and this one can follow directly. While
     * something waits there (a pong or ping, a close), the message waits
     * behind it; write_enabled is off once a close went out (wslay then
     * refuses: SW_ECLOSED). */
    if (!c->ws_idle_out &&
        (!wslay_event_get_write_enabled(c->ws) || wslay_event_want_write(c->ws))) {
        int rc = ws_queue_text(c, iov, iovcnt, len);
        if (rc == 0)
            mark_pending(c);
        return rc;
    }
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_text_header(hdr, len);
    sw_buf_reserve(&c->out, hlen + len); /* unbounded buffer: cannot fail */
    sw_buf_append(&c->out, hdr, hlen);
    sw_buf_appendv(&c->out, iov, iovcnt);
    mark_pending(c);
    return 0;
}

int sw_conn_send(sw_conn_t *c, const char *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return sw_conn_sendv(c, &iov, 1);
}

void sw_conn_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    if (c->dead || c->closing)
        return;
    if (c->mode == MODE_SSE)
        start_closing(c); /* flush the queued events, then FIN */
    else if (c->mode == MODE_WS)
        ws_close(c, code, reason);
    else if (c->awaiting_reply)
        c->close_after_reply = 1;
    else
        start_closing(c);
}

void sw_conn_abort(sw_conn_t *c)
{
    conn_reset(c);
}

void sw_conn_http_reply(sw_conn_t *c, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t len)
{
    if (c->dead || c->mode != MODE_HTTP || !c->awaiting_reply) {
        if (!c->dead)
            sw_log(SW_LOG_WARN, "conn %llu: HTTP reply without a pending request",
                   (unsigned long long)c->id);
        return;
    }
    c->awaiting_reply = 0;
    int close_after = !c->keep_alive || c->close_after_reply || c->closing;
    sw_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, http_status_str((enum http_status)status));
    if (content_type)
        sw_buf_printf(&c->out, "Content-Type: %s\r\n", content_type);
    /* 204 and 304 have no content: no Content-Length (RFC 9110 §8.6: a
     * 304's would have to be the full representation's length). */
    int no_content = status == 204 || status == 304;
    if (!no_content)
        sw_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
    if (extra_headers)
        sw_buf_append_str(&c->out, extra_headers);
    if (close_after)
        sw_buf_append_str(&c->out, "Connection: close\r\n");
    sw_buf_append(&c->out, "\r\n", 2);
    if (!c->head_req && len && !no_content)
        sw_buf_append(&c->out, body, len);
    mark_pending(c);
    if (close_after) {
        start_closing(c);
        return;
    }
    http_phase_start(c); /* idle until the next request's first byte */
    http_timer_arm(c);
    if (c->out.len >= http_out_bound(c->env)) {
        /* A client that pipelines requests and reads no answers: read and
         * parse nothing more until its answers have left (conn_flush). */
        c->http_blocked = 1;
        return;
    }
    if (!ev_is_active(&c->rio))
        ev_io_start(c->env->loop, &c->rio);
    if (!c->in_input && c->in.len)
        c->need_parse = 1;
}

void sw_conn_http_error(sw_conn_t *c, int status, const char *code, const char *message,
                        const char *extra_headers)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"\"}}";
    const char *msg = message ? message : "";
    /* A cut at the byte bound may split a character: keep whole ones. */
    size_t len = sw_utf8_valid_prefix(msg, strnlen(msg, ERROR_MESSAGE_MAX));
    json_t *obj =
        json_pack("{s:{s:s,s:s%}}", "error", "code", code ? code : "", "message", msg, len);
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (!body)
        sw_log(SW_LOG_WARN, "conn %llu: cannot encode the error body (code not UTF-8?)",
               (unsigned long long)c->id);
    sw_conn_http_reply(c, status, "application/json", extra_headers, body ? body : fallback,
                       body ? strlen(body) : sizeof(fallback) - 1);
    free(body);
    json_decref(obj);
}

#define SSE_HEAD                                                                                   \
    "HTTP/1.1 200 OK\r\n"                                                                          \
    "Content-Type: text/event-stream\r\n"                                                          \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Accel-Buffering: no\r\n"                                                                    \
    "Connection: keep-alive\r\n\r\n"

void sw_conn_ws_greeted(sw_conn_t *c)
{
    if (c->mode == MODE_WS)
        c->deadline = 0.; /* the timer catches up when it fires */
}

int sw_conn_sse_start(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->dead || c->closing)
        return SW_ECLOSED;
    if (c->mode != MODE_HTTP || !c->awaiting_reply) {
        sw_log(SW_LOG_WARN, "conn %llu: event stream without a pending request",
               (unsigned long long)c->id);
        return SW_EINVAL;
    }
    c->awaiting_reply = 0;
    if (c->close_after_reply) { /* sw_conn_close came first: no answer */
        start_closing(c);
        return SW_ECLOSED;
    }
    /* No Content-Length and no chunked coding: the body ends with the
     * connection (RFC 7230 §3.3.3 item 7). */
    sw_buf_append(&c->out, SSE_HEAD, sizeof(SSE_HEAD) - 1);
    c->mode = MODE_SSE;
    c->deadline = 0.; /* an event stream has no deadline */
    c->opened = 1;
    c->need_parse = 0;
    env->nws++;
    if (!c->in_input) { /* answered outside on_http: drop the parser now */
        hs_free(c);
        sw_buf_destroy(&c->in);
    } /* else http_input() frees it once on_http returned (req borrows it) */
    mark_pending(c);
    if (!ev_is_active(&c->rio))
        ev_io_start(env->loop, &c->rio); /* EOF detection; input discarded */
    c->last_act = ev_now(env->loop);
    sse_timer_arm(c);
    return 0;
}

int sw_conn_is_sse(const sw_conn_t *c)
{
    return c->mode == MODE_SSE;
}

/* 1 when s[0..len) holds a CR or LF (they end an SSE field). */
static int has_eol(const char *s, size_t len)
{
    return memchr(s, '\n', len) || memchr(s, '\r', len);
}

int sw_conn_sse_send(sw_conn_t *c, const char *event, const char *id, const char *data, size_t len)
{
    if (c->dead || c->closing || c->mode != MODE_SSE)
        return SW_ECLOSED;
    size_t elen = event ? strlen(event) : 0;
    size_t ilen = id ? strlen(id) : 0;
    if ((data == NULL && len) || has_eol(event ? event : "", elen) || has_eol(id ? id : "", ilen) ||
        (len && has_eol(data, len)))
        return SW_EINVAL;
    /* "event: " e "\n" "id: " i "\n" "data: " d "\n\n" */
    size_t n = (event ? 8 + elen : 0) + (id ? 5 + ilen : 0) + 6 + len + 2;
    size_t bound = c->env->max_send_bytes;
    if (bound && (n > bound || c->out.len > bound - n)) {
        sw_log(SW_LOG_INFO, "conn %llu: event stream output over %zu bytes, closing (backpressure)",
               (unsigned long long)c->id, bound);
        out_bound(c); /* what is queued goes out if it can, then FIN */
        return SW_ETOOLARGE;
    }
    sw_buf_reserve(&c->out, n);
    if (event) {
        sw_buf_append(&c->out, "event: ", 7);
        sw_buf_append(&c->out, event, elen);
        sw_buf_append(&c->out, "\n", 1);
    }
    if (id) {
        sw_buf_append(&c->out, "id: ", 4);
        sw_buf_append(&c->out, id, ilen);
        sw_buf_append(&c->out, "\n", 1);
    }
    sw_buf_append(&c->out, "data: ", 6);
    if (len)
        sw_buf_append(&c->out, data, len);
    sw_buf_append(&c->out, "\n\n", 2);
    c->last_act = ev_now(c->env->loop); /* the keep-alive timer re-arms lazily */
    mark_pending(c);
    return 0;
}

size_t sw_conn_pending_bytes(const sw_conn_t *c)
{
    return c->out.len + (c->ws ? wslay_event_get_queued_msg_length(c->ws) : 0);
}

size_t sw_conn_env_hibernating(const sw_conn_env_t *env)
{
    return env->nhib;
}

int sw_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[18];
    char cat[24 + sizeof(WS_GUID) - 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /* 16 bytes encode as 22 base64 chars + "==" (RFC 6455 §4.1 item 7). */
    if (!key || key_len != 24 || key[22] != '=' || key[23] != '=')
        return SW_EINVAL;
    for (size_t i = 0; i < 22; i++) {
        if (!key[i] || !strchr(b64, key[i]))
            return SW_EINVAL;
    }
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18)
        return SW_EINVAL;
    memcpy(cat, key, 24);
    memcpy(cat + 24, WS_GUID, sizeof(WS_GUID) - 1);
    if (!EVP_Digest(cat, sizeof(cat), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        sw_log(SW_LOG_ERROR, "EVP_Digest(sha1) failed");
        return SW_ERR;
    }
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 28 chars + NUL */
    return 0;
}
