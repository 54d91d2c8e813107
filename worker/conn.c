/* conn.c — the connection object of a client socket: its allocation and
 * lifetime (lists, references, the reap and on_close), its socket I/O,
 * its one timer and the closing phase, the output buffer with its bound
 * (backpressure), the env's flush step and heap trimming, and the public
 * calls that do not depend on the protocol. What a conn speaks (HTTP:
 * conn_http.c, WebSocket: conn_ws.c, event streams: conn_sse.c) is
 * reached only through the hooks of its mode (sw_conn__ops_t,
 * worker/conn_int.h); this file calls none of those files.
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
 * HTTP phase (or the upgrade) only `deadline`; the timer callback (the
 * mode's timer hook) works out what is due from those stamps and re-arms
 * itself for the earliest deadline (libev's "Be smart about timeouts",
 * method 2), so busy conns touch the timer heap at most once per
 * SW_CONN_HIBERNATE_MS (WebSocket) or http_timeout_ms (HTTP). The first
 * input after a ping (the pong), a wake-up from hibernation, and a reply
 * after one whose wait outlasted the timer, re-arm the timer once. */
#include "worker/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/conn_int.h"

#define READ_CHUNK 16384  /* bytes per read(2) */
#define CLOSE_TIMEOUT 2.0 /* seconds for the closing phase */
/* Returning freed heap to the OS: at most every TRIM_INTERVAL seconds, and
 * only once TRIM_MIN_UNITS units (hibernated conns' worth) were freed since
 * the last time (about 0.5 MB). */
#define TRIM_INTERVAL 2.0
#define TRIM_MIN_UNITS 64

static void conn_flush(sw_conn_t *c);

/* ---- lifetime --------------------------------------------------------- */

void sw_conn__mark_pending(sw_conn_t *c)
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

void sw_conn__finish(sw_conn_t *c)
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
    sw_conn__mark_pending(c);
}

/* Close now, and with output still unsent (in `out`, in the protocol
 * (wslay), or in the socket's send queue: SIOCOUTQ) make the kernel drop
 * it too: SO_LINGER {1, 0} turns close() into a reset (RST) instead of a
 * FIN queued behind bytes a stalled or dead peer may never take, so that
 * neither the server nor the kernel keeps them. For the close timeout, an
 * abandoned peer, the output bound and sw_conn_abort. */
static void conn_reset(sw_conn_t *c)
{
    int outq = 0;
    if (c->dead)
        return;
    if (c->out.len || (c->ops->out_unsent && c->ops->out_unsent(c)) ||
        (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0)) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
            sw_log(SW_LOG_DEBUG, "conn %llu: SO_LINGER: %s", (unsigned long long)c->id,
                   strerror(errno));
    }
    sw_conn__finish(c);
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
    if (c->ops->release)
        c->ops->release(c);
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

void sw_conn__start_closing(sw_conn_t *c)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    ev_timer_stop(c->env->loop, &c->timer); /* may be the liveness timer */
    ev_timer_set(&c->timer, CLOSE_TIMEOUT, 0.);
    ev_timer_start(c->env->loop, &c->timer);
    sw_conn__mark_pending(c);
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
        sw_conn__finish(c);
        return;
    }
    if (!ev_is_active(&c->rio))
        ev_io_start(c->env->loop, &c->rio);
}

/* ---- timer ------------------------------------------------------------ */

/* Before the closing phase the mode's deadlines (its timer hook); in it,
 * the closing phase's bound. */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sw_conn_t *c = sw_container_of(w, sw_conn_t, timer);
    if (!c->closing && !c->dead) {
        c->ops->timer(c);
        return;
    }
    sw_log(SW_LOG_DEBUG, "conn %llu: close timeout", (unsigned long long)c->id);
    conn_reset(c);
}

/* ---- I/O -------------------------------------------------------------- */

static void conn_flush(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->dead)
        return;
    if (c->ops->out_prepare && c->ops->out_prepare(c) != 0)
        return;
    if (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            sw_log(SW_LOG_DEBUG, "conn %llu: send: %s", (unsigned long long)c->id, strerror(errno));
            sw_conn__finish(c);
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
        if (c->ops->out_bound_end) { /* WebSocket: close 1013 */
            if (c->ops->out_bound_end(c) == 0)
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
            sw_conn__mark_pending(c);
        }
    }
    /* An open WebSocket keeps a small buffer for its next messages until
     * it hibernates; other conns hold no output storage when idle. */
    if (c->mode == SW_CONN_MODE_WS && !c->closing && c->out.cap <= SW_CONN_OUT_KEEP)
        sw_buf_reset(&c->out);
    else
        sw_buf_destroy(&c->out);
    if (c->closing && c->abandon) {
        conn_reset(c); /* no closing handshake with a dead peer */
        return;
    }
    /* HTTP reply or event stream written; a WebSocket once its closing
     * handshake is done (else: wait for the peer's close frame, bounded
     * by the timer). */
    if (c->closing && !c->shut_wr && (!c->ops->shut_ready || c->ops->shut_ready(c)))
        shutdown_write(c);
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
            if (c->ops->resume)
                c->ops->resume(c);
        }
        /* A conn waiting for EV_WRITE is flushed from wio_cb, unless it
         * reached its output bound: its socket is tried once more now. */
        if (!c->dead && (!ev_is_active(&c->wio) || c->overflow))
            conn_flush(c);
        if (c->dead)
            conn_reap(c);
    }
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    static _Thread_local char scratch[READ_CHUNK];
    sw_conn_t *c = sw_container_of(w, sw_conn_t, rio);
    ssize_t n = read(c->fd, scratch, sizeof(scratch));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        sw_log(SW_LOG_DEBUG, "conn %llu: read: %s", (unsigned long long)c->id, strerror(errno));
        sw_conn__finish(c);
        return;
    }
    if (n == 0) {
        sw_conn__finish(c);
        return;
    }
    c->ops->input(c, scratch, (size_t)n);
}

/* ---- heap trimming ------------------------------------------------------ */

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
        sw_conn__finish(c);
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

sw_conn_t *sw_conn__open(sw_conn_env_t *env, int fd, const sw_conn__ops_t *ops)
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
    c->ops = ops;
    ev_io_init(&c->rio, rio_cb, fd, EV_READ);
    ev_io_init(&c->wio, wio_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, timer_cb, CLOSE_TIMEOUT, 0.);
    TAILQ_INSERT_TAIL(&env->conns, c, link);
    env->nconns++;
    if (!ev_is_active(&env->flush)) {
        ev_prepare_start(env->loop, &env->flush);
        ev_unref(env->loop); /* the flush watcher alone keeps no loop alive */
    }
    ev_io_start(env->loop, &c->rio);
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

void sw_conn__out_bound(sw_conn_t *c)
{
    c->overflow = 1;
    sw_conn__start_closing(c);
}

void sw_conn_close(sw_conn_t *c, uint16_t code, const char *reason)
{
    if (c->dead || c->closing)
        return;
    if (c->ops->close) /* WebSocket: the closing handshake */
        c->ops->close(c, code, reason);
    else if (c->awaiting_reply) /* HTTP */
        c->close_after_reply = 1;
    else /* HTTP, or an event stream: flush what is queued, then FIN */
        sw_conn__start_closing(c);
}

void sw_conn_abort(sw_conn_t *c)
{
    conn_reset(c);
}

size_t sw_conn_pending_bytes(const sw_conn_t *c)
{
    return c->out.len + (c->ops->out_queued ? c->ops->out_queued(c) : 0);
}

size_t sw_conn_env_hibernating(const sw_conn_env_t *env)
{
    return env->nhib;
}
