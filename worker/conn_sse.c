/* conn_sse.c — event streams (WHATWG HTML "Server-sent events"): an HTTP
 * request answered with the event-stream head (sw_conn_sse_start) turns
 * its conn into a stream of events (sw_conn_sse_send), kept alive by a
 * comment line after ping_interval_ms without output.
 *
 * sw_conn_sse_start() answers the pending request and switches the conn
 * to SW_CONN_MODE_SSE: parser state and pipelined input are dropped,
 * later input is read and discarded (only EOF and read errors matter),
 * events are appended to `out` and flushed with everything else. The
 * conn owes on_close like an opened WebSocket (`opened`). Its timer
 * writes the keep-alive comment after ping_interval_ms without output
 * (`last_act` stamps the last output). */
#include "worker/conn.h"

#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/conn_int.h"

#define SSE_HEAD                                                                                   \
    "HTTP/1.1 200 OK\r\n"                                                                          \
    "Content-Type: text/event-stream\r\n"                                                          \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Accel-Buffering: no\r\n"                                                                    \
    "Connection: keep-alive\r\n\r\n"

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
    if (now >= c->last_act + c->env->ping_interval_ms / 1000. - SW_CONN_TIMER_SLACK) {
        if (c->out.len == 0) {
            sw_buf_append(&c->out, ":\n", 2);
            sw_conn__mark_pending(c);
        }
        c->last_act = now;
    }
    sse_timer_arm(c);
}

/* An event stream ignores its input (EOF and read errors are conn.c's). */
static void sse_input(sw_conn_t *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static const sw_conn__ops_t sse_ops = {
    .input = sse_input,
    .timer = sse_timer,
};

/* ---- public API ------------------------------------------------------- */

int sw_conn_sse_start(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->dead || c->closing)
        return SW_ECLOSED;
    if (c->mode != SW_CONN_MODE_HTTP || !c->awaiting_reply) {
        sw_log(SW_LOG_WARN, "conn %llu: event stream without a pending request",
               (unsigned long long)c->id);
        return SW_EINVAL;
    }
    c->awaiting_reply = 0;
    if (c->close_after_reply) { /* sw_conn_close came first: no answer */
        sw_conn__start_closing(c);
        return SW_ECLOSED;
    }
    /* No Content-Length and no chunked coding: the body ends with the
     * connection (RFC 7230 §3.3.3 item 7). */
    sw_buf_append(&c->out, SSE_HEAD, sizeof(SSE_HEAD) - 1);
    c->mode = SW_CONN_MODE_SSE;
    c->ops = &sse_ops;
    c->deadline = 0.; /* an event stream has no deadline */
    c->opened = 1;
    c->need_parse = 0;
    env->nws++;
    if (!c->in_input) { /* answered outside on_http: drop the parser now */
        sw_conn__http_drop(c);
        sw_buf_destroy(&c->in);
    } /* else http_input() frees it once on_http returned (req borrows it) */
    sw_conn__mark_pending(c);
    if (!ev_is_active(&c->rio))
        ev_io_start(env->loop, &c->rio); /* EOF detection; input discarded */
    c->last_act = ev_now(env->loop);
    sse_timer_arm(c);
    return 0;
}

int sw_conn_is_sse(const sw_conn_t *c)
{
    return c->mode == SW_CONN_MODE_SSE;
}

/* 1 when s[0..len) holds a CR or LF (they end an SSE field). */
static int has_eol(const char *s, size_t len)
{
    return memchr(s, '\n', len) || memchr(s, '\r', len);
}

int sw_conn_sse_send(sw_conn_t *c, const char *event, const char *id, const char *data, size_t len)
{
    if (c->dead || c->closing || c->mode != SW_CONN_MODE_SSE)
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
        sw_conn__out_bound(c); /* what is queued goes out if it can, then FIN */
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
    sw_conn__mark_pending(c);
    return 0;
}
