/* conn_int.h — the inside of a client connection, shared by the files of
 * the conn module and by nothing else: struct sw_conn, the hooks through
 * which conn.c reaches the protocol a conn speaks, and the functions one
 * file calls in another (prefixed sw_conn__).
 *
 * The files, from the bottom up (each calls only those below it; conn.c
 * reaches the others only through the hooks of sw_conn__ops_t, which each
 * protocol installs on its conns):
 *  - conn.c: the connection object (allocation, lists, reap), its socket
 *    I/O, its timer, the output buffer and its bound (backpressure), the
 *    closing phase, and the public calls that do not depend on the
 *    protocol.
 *  - conn_ws.c: WebSocket (RFC 6455) with wslay: the switch after the
 *    handshake, framing, close codes, liveness (pings), hibernation and
 *    the accept key.
 *  - conn_http.c: HTTP/1.1 with http-parser: request parsing and its
 *    bounds and timeouts, replies and errors, the pipelining bound, the
 *    request side of the WebSocket handshake, and sw_conn_new (every conn
 *    starts as HTTP).
 *  - conn_sse.c: event streams (an HTTP request turned into a stream of
 *    Server-Sent Events).
 * The public contract of all of it is worker/conn.h. */
#ifndef SW_WORKER_CONN_INT_H
#define SW_WORKER_CONN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>

#include "common/buf.h"
#include "worker/conn.h"

/* A WebSocket conn keeps its output buffer (and the buffer of the message
 * it receives) between uses up to this capacity (no malloc/free per
 * message); hibernation frees them. */
#define SW_CONN_OUT_KEEP 4096

/* Seconds: a deadline this close counts as reached. */
#define SW_CONN_TIMER_SLACK 0.0005

/* What a conn speaks (sw_conn_t.mode). */
enum { SW_CONN_MODE_HTTP = 0, SW_CONN_MODE_WS = 1, SW_CONN_MODE_SSE = 2 };

/* The parser state of the HTTP request being read (conn_http.c). */
struct sw_conn_http;
/* A wslay event context (wslay_event_context_ptr). */
struct wslay_event_context;

/* How conn.c reaches the protocol of a conn: each mode's file (conn_http.c,
 * conn_ws.c, conn_sse.c) has one table and installs it when a conn enters
 * that mode (sw_conn__open, sw_conn__ws_open, sw_conn_sse_start). The
 * hooks marked "optional" may be NULL: conn.c then does what it says. */
typedef struct sw_conn__ops {
    /* Bytes read from the socket (len > 0; EOF and read errors are
     * conn.c's). */
    void (*input)(sw_conn_t *c, const char *data, size_t len);
    /* The conn's timer fired while it is neither closing nor dead (the
     * closing phase's timeout is conn.c's). */
    void (*timer)(sw_conn_t *c);
    /* Optional: the flush step found need_parse set (pipelined input to
     * parse after a reply). NULL: nothing. */
    void (*resume)(sw_conn_t *c);
    /* Optional: sw_conn_close on an open conn. NULL: close after the reply
     * owed, if any, else start the closing phase. */
    void (*close)(sw_conn_t *c, uint16_t code, const char *reason);
    /* Optional: before the flush writes `out`, move output the protocol
     * holds elsewhere into it. 0, or SW_ERR with the conn closed. */
    int (*out_prepare)(sw_conn_t *c);
    /* Optional: the output bound was reached and everything queued before
     * it went out (the peer still reads): queue the protocol's end. 0 to
     * flush again at once, SW_ERR with the conn closed. NULL: nothing to
     * queue; the closing phase goes on (FIN). */
    int (*out_bound_end)(sw_conn_t *c);
    /* Optional: a closing conn has written everything: 1 when its write
     * side may be shut now. NULL: yes. */
    int (*shut_ready)(const sw_conn_t *c);
    /* Optional: 1 when the protocol holds output not yet in `out`. NULL:
     * none. */
    int (*out_unsent)(const sw_conn_t *c);
    /* Optional: bytes of output the protocol holds outside `out`
     * (sw_conn_pending_bytes). NULL: none. */
    size_t (*out_queued)(const sw_conn_t *c);
    /* Optional: the conn is reaped: free the protocol's state. */
    void (*release)(sw_conn_t *c);
} sw_conn__ops_t;

struct sw_conn {
    sw_conn_env_t *env;
    TAILQ_ENTRY(sw_conn) link;  /* env->conns */
    TAILQ_ENTRY(sw_conn) plink; /* env->pending */
    const sw_conn__ops_t *ops;  /* of the current mode */
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
    unsigned mode : 2; /* SW_CONN_MODE_* */
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
    struct sw_conn_http *hs;
    struct wslay_event_context *ws;
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
    /* HTTP answers queued reached their bound (conn_http.c): no reading or
     * parsing of pipelined requests until they are written. */
    unsigned http_blocked : 1;
    unsigned reaped : 1;
};

/* ---- conn.c ------------------------------------------------------------ */

/* Make the conn of an accepted socket fd (made non-blocking here) in HTTP
 * mode with `ops`, add it to env and start reading (its timer is not
 * started). Returns the conn, or NULL (fd closed, logged). */
sw_conn_t *sw_conn__open(sw_conn_env_t *env, int fd, const sw_conn__ops_t *ops);

/* Put c on env->pending: the flush step (once per loop iteration) writes
 * its output, resumes its parsing, or reaps it. Idempotent. */
void sw_conn__mark_pending(sw_conn_t *c);

/* Close the socket now, dropping output; the reap (on_close, free)
 * follows from the flush step. Idempotent. */
void sw_conn__finish(sw_conn_t *c);

/* Start the closing phase: input ignored, output flushed, then FIN (see
 * shut_ready), all bounded by 2 s. Idempotent. */
void sw_conn__start_closing(sw_conn_t *c);

/* The output bound is reached: no more output is taken (closing). The
 * next flush (this loop iteration) tries to write everything queued;
 * when the socket takes it all, the protocol ends the conn as for any
 * close (out_bound_end); otherwise the peer does not read and the conn is
 * reset. */
void sw_conn__out_bound(sw_conn_t *c);

/* ---- conn_ws.c ----------------------------------------------------------- */

/* A fresh wslay server context for c (c->ws): same callbacks and
 * configuration for the upgrade and for every wake-up. 0 or SW_ERR
 * (logged). */
int sw_conn__ws_ctx_new(sw_conn_t *c);

/* Free c->ws (none: nothing). */
void sw_conn__ws_ctx_free(sw_conn_t *c);

/* The upgrade of c (a context made by sw_conn__ws_ctx_new, on_open
 * accepted it) goes through: queue the 101 with `accept`
 * (Sec-WebSocket-Accept) and switch c to WebSocket mode. */
void sw_conn__ws_open(sw_conn_t *c, const char *accept);

/* Hand WebSocket input to c (the bytes that followed the upgrade
 * request). */
void sw_conn__ws_feed(sw_conn_t *c, const char *data, size_t len);

/* ---- conn_http.c --------------------------------------------------------- */

/* Free the parser state of c (none: nothing). */
void sw_conn__http_drop(sw_conn_t *c);

#endif
