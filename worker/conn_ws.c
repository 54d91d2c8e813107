/* conn_ws.c — WebSocket conns (RFC 6455) with wslay's event API: the
 * switch to WebSocket mode once conn_http.c has checked the upgrade
 * request, framing (wslay's callbacks, and sw_conn_send framing text
 * messages itself while wslay has nothing waiting), the message bound
 * checked at frame headers (ws_scan), close codes, liveness (pings), the
 * hello deadline, hibernation, and the Sec-WebSocket-Accept key. Its
 * hooks (ws_ops) give conn.c what it needs of wslay: output to move into
 * `out`, the 1013 close at the output bound, the end of the closing
 * handshake.
 *
 * Hibernation frees the wslay context (about 8.8 KB: the frame context
 * alone has a 4 KB input buffer, the event context a 4 KB output buffer)
 * of an idle conn at a clean message boundary and creates a fresh one on
 * the next input, send, close or ping. A fresh context equals the old one
 * at such a boundary: wslay keeps no state across complete frames except
 * its configuration, which sw_conn__ws_ctx_new() applies again. */
#include "worker/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/conn_int.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PING_PAYLOAD "sw"
#define WS_MAX_HEADER 10 /* bytes of an unmasked frame header (RFC 6455 §5.2) */
#define HIBERNATE_AFTER (SW_CONN_HIBERNATE_MS / 1000.)

static int ws_wake(sw_conn_t *c);
static void ws_feed_wslay(sw_conn_t *c, const char *data, size_t len);

/* ---- timer ------------------------------------------------------------ */

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

/* ---- wslay callbacks ---------------------------------------------------- */

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
    sw_conn__mark_pending(c);
    return (ssize_t)len;
}

/* Queue a close frame behind everything already queued; 0, or SW_ERR with
 * the conn closed. For an open (awake) WebSocket conn. */
static int ws_queue_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    /* Move queued messages into `out` first: wslay sends control frames
     * ahead of queued data otherwise. */
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        sw_conn__finish(c);
        return SW_ERR;
    }
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123) /* RFC 6455 §5.5: control payload <= 125 bytes */
        rlen = 123;
    c->ws_idle_out = 0;
    int rv = wslay_event_queue_close(c->ws, code, (const uint8_t *)reason, rlen);
    if (rv != 0 && rv != WSLAY_ERR_NO_MORE_MSG) {
        sw_conn__finish(c);
        return SW_ERR;
    }
    sw_conn__mark_pending(c);
    return 0;
}

/* Start the closing handshake with code and reason (RFC 6455 §5.5.1): a
 * hibernating conn wakes for it. Nothing on a closing or dead conn. */
static void ws_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    if (c->dead || c->closing || ws_wake(c) != 0)
        return;
    if (ws_queue_close(c, code, reason) == 0)
        sw_conn__start_closing(c);
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
        if (c->rx.cap > SW_CONN_OUT_KEEP)
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

/* ---- context and hibernation ------------------------------------------- */

/* A fresh wslay server context for c: same callbacks and configuration
 * for the upgrade and for every wake-up. 0 or SW_ERR (logged). */
int sw_conn__ws_ctx_new(sw_conn_t *c)
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

void sw_conn__ws_ctx_free(sw_conn_t *c)
{
    if (c->ws)
        wslay_event_context_free(c->ws);
    c->ws = NULL;
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
    if (sw_conn__ws_ctx_new(c) != 0) {
        sw_conn__finish(c);
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
    return c->ws && c->mode == SW_CONN_MODE_WS && !c->closing && !c->dead && !c->in_pending &&
           c->ws_unframed == 0 && !c->ws_frag && c->out.len == 0 && c->in.len == 0 &&
           !ev_is_active(&c->wio) && wslay_event_get_queued_msg_count(c->ws) == 0 &&
           !wslay_event_want_write(c->ws) && wslay_event_get_read_enabled(c->ws) &&
           !wslay_event_get_close_sent(c->ws) && !wslay_event_get_close_received(c->ws);
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
    c->hibernating = 1;
    env->nhib++;
    sw_conn_env_heap_freed(env, 1);
}

/* ---- liveness ----------------------------------------------------------- */

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
        sw_conn__finish(c);
        return;
    }
    c->ping_out = 1;
    c->last_rx = c->last_act = ev_now(c->env->loop);
    sw_conn__mark_pending(c);
}

/* The timer of an open WebSocket conn fired: work out from the stamps
 * what is due. Liveness: last_rx + interval without a ping out: ping;
 * with a ping out, last_rx (the ping) + timeout: close, or without a
 * timeout, + interval: ping again. Input after a ping cleared ping_out
 * (ws_input). Hibernation: last_act + SW_CONN_HIBERNATE_MS. */
static void ws_timer(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    ev_tstamp now = ev_now(env->loop);
    if (c->deadline > 0. && now >= c->deadline - SW_CONN_TIMER_SLACK) {
        char reason[48]; /* RFC 6455 §7.4.1: 1008, policy violation */
        snprintf(reason, sizeof(reason), "no hello within %u ms", (unsigned)env->http_timeout_ms);
        sw_log(SW_LOG_INFO, "conn %llu: %s, closing", (unsigned long long)c->id, reason);
        c->deadline = 0.;
        ws_close(c, 1008, reason);
        return;
    }
    if (env->ping_interval_ms) {
        if (c->ping_out && env->ping_timeout_ms) {
            if (now >= c->last_rx + env->ping_timeout_ms / 1000. - SW_CONN_TIMER_SLACK) {
                sw_log(SW_LOG_INFO, "conn %llu: nothing received within %u ms of a ping, closing",
                       (unsigned long long)c->id, (unsigned)env->ping_timeout_ms);
                c->abandon = 1;
                ws_close(c, 1001, "ping timeout");
                return;
            }
        } else if (now >= c->last_rx + env->ping_interval_ms / 1000. - SW_CONN_TIMER_SLACK) {
            ws_ping(c);
            if (c->dead)
                return;
        }
    }
    if (!c->hibernating && now >= c->last_act + HIBERNATE_AFTER - SW_CONN_TIMER_SLACK) {
        if (ws_can_hibernate(c))
            ws_hibernate(c);
        else
            c->last_act = now; /* mid-message or output waiting: look again later */
    }
    ws_timer_arm(c);
}

/* ---- input -------------------------------------------------------------- */

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
    if (sw_conn__ws_ctx_new(c) != 0) {
        sw_conn__finish(c);
        return;
    }
    (void)wslay_event_queue_close(c->ws, 1002, NULL, 0); /* a fresh context takes it */
    wslay_event_shutdown_read(c->ws);
    sw_conn__start_closing(c);
    sw_conn__mark_pending(c);
}

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

/* Hand input to wslay; everything is consumed (or dropped once wslay
 * stops reading). */
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
        sw_conn__start_closing(c);
        sw_conn__mark_pending(c);
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
        sw_conn__finish(c);
        return;
    }
    /* Read disabled: the peer's close, or a close queued by wslay (1002,
     * 1007, 1009) or by ws_msg_cb (1003). */
    if (!wslay_event_get_read_enabled(c->ws)) {
        sw_conn__start_closing(c);
        sw_conn__mark_pending(c); /* the flush step finishes the closing handshake */
    }
    if (wslay_event_want_write(c->ws))
        sw_conn__mark_pending(c);
}

/* ---- hooks (ws_ops) ---------------------------------------------------- */

/* Input of an open WebSocket conn: a sign of life (see ws_timer), then
 * wslay's, unless the conn only drains after its FIN. */
static void ws_input(sw_conn_t *c, const char *data, size_t len)
{
    c->last_rx = c->last_act = ev_now(c->env->loop);
    if (ws_wake(c) != 0)
        return;
    if (c->ping_out && !c->closing) {
        /* The answer to a ping (once per ping, not per read): the
         * timer still waits for the ping timeout; re-arm it for the
         * next silence interval instead. */
        c->ping_out = 0;
        ws_timer_arm(c);
    }
    if (c->shut_wr)
        return; /* draining */
    ws_feed(c, data, len);
}

/* Frames wslay holds go into `out` ahead of the write. */
static int ws_out_prepare(sw_conn_t *c)
{
    if (!c->ws || c->ws_idle_out)
        return 0;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        sw_conn__finish(c);
        return SW_ERR;
    }
    c->ws_idle_out = !wslay_event_want_write(c->ws) && wslay_event_get_write_enabled(c->ws);
    return 0;
}

/* The peer took everything queued before the output bound: close 1013. */
static int ws_out_bound_end(sw_conn_t *c)
{
    return ws_queue_close(c, 1013, "backpressure");
}

/* The closing handshake is done, or wslay failed the conn. */
static int ws_shut_ready(const sw_conn_t *c)
{
    return wslay_event_get_close_sent(c->ws) &&
           (wslay_event_get_close_received(c->ws) || !wslay_event_get_read_enabled(c->ws));
}

static int ws_out_unsent(const sw_conn_t *c)
{
    return c->ws && wslay_event_want_write(c->ws);
}

static size_t ws_out_queued(const sw_conn_t *c)
{
    return c->ws ? wslay_event_get_queued_msg_length(c->ws) : 0;
}

static const sw_conn__ops_t ws_ops = {
    .input = ws_input,
    .timer = ws_timer,
    .close = ws_close,
    .out_prepare = ws_out_prepare,
    .out_bound_end = ws_out_bound_end,
    .shut_ready = ws_shut_ready,
    .out_unsent = ws_out_unsent,
    .out_queued = ws_out_queued,
    .release = sw_conn__ws_ctx_free,
};

/* ---- the switch from HTTP ---------------------------------------------- */

void sw_conn__ws_open(sw_conn_t *c, const char *accept)
{
    sw_conn_env_t *env = c->env;
    sw_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n",
                  accept);
    c->awaiting_reply = 0;
    c->mode = SW_CONN_MODE_WS;
    c->ops = &ws_ops;
    c->opened = 1;
    env->nws++;
    sw_conn__mark_pending(c);
    if (!ev_is_active(&c->rio))
        ev_io_start(env->loop, &c->rio);
    ws_timer_start(c);
    if (c->close_after_reply) /* sw_conn_close from on_open */
        ws_close(c, 1000, NULL);
}

void sw_conn__ws_feed(sw_conn_t *c, const char *data, size_t len)
{
    ws_feed(c, data, len);
}

/* ---- public API ------------------------------------------------------- */

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

int sw_conn_sendv(sw_conn_t *c, const struct iovec *iov, int iovcnt)
{
    if (c->dead || c->closing || c->mode != SW_CONN_MODE_WS)
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
        sw_conn__out_bound(c);
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
            sw_conn__mark_pending(c);
        return rc;
    }
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_text_header(hdr, len);
    sw_buf_reserve(&c->out, hlen + len); /* unbounded buffer: cannot fail */
    sw_buf_append(&c->out, hdr, hlen);
    sw_buf_appendv(&c->out, iov, iovcnt);
    sw_conn__mark_pending(c);
    return 0;
}

int sw_conn_send(sw_conn_t *c, const char *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return sw_conn_sendv(c, &iov, 1);
}

void sw_conn_ws_greeted(sw_conn_t *c)
{
    if (c->mode == SW_CONN_MODE_WS)
        c->deadline = 0.; /* the timer catches up when it fires */
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
