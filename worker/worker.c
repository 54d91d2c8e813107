#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "core/fdpass.h"
#include "worker/inbox.h"
#include "worker/metrics.h"
#include "worker/session.h"
#include "worker/shared.h"
#include "worker/static.h"
#include "worker/token.h"

/* HTTP request head bound. */
#define SW_MAX_HEADER_BYTES 16384
/* How often a draining worker looks for sessions it can close. */
#define SW_DRAIN_POLL_S 0.02
/* Grace after the last client closed, so lease releases reach Redis. */
#define SW_EXIT_GRACE_S 0.05

static void start_drain(sw_worker_t *w, const char *why);

/* What the context's per-iteration watchers run (worker/wctx.h). */
static const sw_wctx_steps_t STEPS = {
    .run_resumes = sw_token_run_resumes,
    .run_catchups = sw_token_run_catchups,
    .gc = sw_token_gc,
};

/* Leases idle this long are given up (at most half the lease). */
static uint64_t lease_idle_ms(const sw_worker_t *w)
{
    return SW_MIN(2000u, w->cfg->lease_ms / 2);
}

static void lease_sweep_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_worker_t *w = sw_container_of(tw, sw_worker_t, lease_sweep_w);
    sw_token_sweep_leases(w, lease_idle_ms(w));
    atomic_store_explicit(&w->stats->leases_held, (uint64_t)sw_token_leases_held(w),
                          memory_order_relaxed); /* metrics: the leases_held gauge */
}

/* The inbox (worker/inbox.h): another worker wants a lease this worker
 * holds, a resumed connection replaced one of this worker's sockets, a
 * POST for one of this worker's event streams, or the answer to a POST
 * this worker forwarded. */
static void inbox_cb(void *udata, const char *data, size_t len)
{
    sw_worker_t *w = udata;
    sw_inbox_msg_t m;
    if (sw_inbox_decode(data, len, &m) != 0) {
        sw_log(SW_LOG_WARN, "inbox: dropped a malformed message (%zu bytes)", len);
        return;
    }
    char token[SW_TOKEN_MAX + 1], sockid[SW_INBOX_ID_MAX + 1];
    switch (m.cmd) {
    case SW_INBOX_LEASE_WANTED:
        snprintf(token, sizeof(token), "%.*s", (int)m.token_len, m.token);
        sw_token_lease_wanted(w, token);
        break;
    case SW_INBOX_CLOSE_SOCKET:
        snprintf(token, sizeof(token), "%.*s", (int)m.token_len, m.token);
        snprintf(sockid, sizeof(sockid), "%.*s", (int)m.sockid_len, m.sockid);
        sw_token_close_socket(w, token, sockid);
        break;
    case SW_INBOX_POST:
        sw_session_post_forwarded(w, &m);
        break;
    case SW_INBOX_POST_ANSWER:
        sw_session_post_answered(w, m.post_id, m.result);
        break;
    }
}

/* Live keys of this worker's connections are refreshed every ttl/3. */
static void live_refresh_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_worker_t *w = sw_container_of(tw, sw_worker_t, live_w);
    sw_session_live_all(w, SW_LIVE_REFRESH);
}

/* The signing key (worker/credentials.h): from --secret, or the random
 * one every worker of one Redis shares (sw_store_secret), asked for until
 * the store answers. */
static void on_secret(void *udata, int status, const char *value, size_t len)
{
    sw_worker_t *w = udata;
    if (status != 0 || len == 0) {
        ev_timer_set(&w->secret_w, 0.5, 0.);
        ev_timer_start(w->loop, &w->secret_w);
        return;
    }
    sw_cred_key_init(&w->cred_key, value, len);
    w->have_cred_key = 1;
    /* For workers forked later (respawn, reload): they start with it. */
    uint32_t zero = 0;
    if (atomic_load_explicit(&w->stats_all->cred_key_set, memory_order_acquire) == 0) {
        memcpy(w->stats_all->cred_key, w->cred_key.k, sizeof(w->cred_key.k));
        atomic_compare_exchange_strong_explicit(&w->stats_all->cred_key_set, &zero, 1,
                                                memory_order_release, memory_order_relaxed);
    }
}

static void secret_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_worker_t *w = sw_container_of(tw, sw_worker_t, secret_w);
    char proposal[65];
    sw_random_hex(proposal, 32);
    if (sw_store_secret(w->store, proposal, 64, on_secret, w) != 0) {
        ev_timer_set(tw, 0.5, 0.);
        ev_timer_start(loop, tw);
    }
}

/* Ready: the store answers on its connections, and the key that signs
 * stream credentials is known (fetched from the store at start). What
 * /healthz reports, and what the master prefers when it hands out a new
 * connection. */
static int worker_ready(const sw_worker_t *w)
{
    return sw_store_ready(w->store) && w->have_cred_key;
}

static void publish_cb(struct ev_loop *loop, ev_prepare *pw, int revents)
{
    sw_worker_t *w = sw_container_of(pw, sw_worker_t, publish_w);
    atomic_store_explicit(&w->stats->connections, (uint64_t)w->conns.nconns, memory_order_relaxed);
    uint32_t ready = worker_ready(w) && !w->draining;
    if (atomic_load_explicit(&w->stats->ready, memory_order_relaxed) != ready)
        atomic_store_explicit(&w->stats->ready, ready, memory_order_relaxed);
}

static void channel_cb(struct ev_loop *loop, ev_io *iw, int revents)
{
    sw_worker_t *w = sw_container_of(iw, sw_worker_t, channel_w);
    static uint64_t last_full_log;
    for (int i = 0; i < 256; i++) {
        int fd = sw_fdpass_recv(w->channel_fd);
        if (fd == SW_EAGAIN)
            return;
        if (fd < 0) {
            ev_io_stop(loop, iw);
            start_drain(w, fd == SW_ECLOSED ? "master is gone" : "channel error");
            return;
        }
        if (w->draining) {
            close(fd);
            continue;
        }
        if (w->conns.nconns >= w->cfg->max_connections) {
            uint64_t now = sw_now_ms();
            if (now - last_full_log > 1000) {
                sw_log(SW_LOG_WARN, "connection limit %u reached; refusing new connections",
                       w->cfg->max_connections);
                last_full_log = now;
            }
            close(fd);
            continue;
        }
        sw_conn_t *c = sw_conn_new(&w->conns, fd);
        if (!c)
            continue;
        sw_conn_set_udata(c, w); /* replaced by the session on upgrade */
        SW_STAT_ADD(w->stats, accepted, 1);
    }
}

/* ---- HTTP routes other than the WebSocket endpoint ---------------------- */

/* GET /metrics: every worker's slot of the shared stats block. */
static void serve_metrics(sw_worker_t *w, sw_conn_t *c)
{
    sw_buf_t out;
    sw_buf_init(&out, 1 << 20);
    if (sw_metrics_render(sw_stats_block_of(w->stats, w->slot), &out) == 0)
        sw_conn_http_reply(c, 200, SW_METRICS_CONTENT_TYPE, "Cache-Control: no-store\r\n", out.data,
                           out.len);
    else
        sw_conn_http_error(c, 500, "internal_error", "metrics too large", NULL);
    sw_buf_destroy(&out);
}

/* Redis round trips into this worker's histogram (sw_store_opts_t.on_rtt). */
static void on_store_rtt(void *udata, uint64_t ns)
{
    sw_worker_t *w = udata;
    sw_stats_observe(w->stats, SW_HIST_REDIS_RTT, ns);
}

static void on_http(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_worker_t *w = sw_conn_udata(c);
    char body[512];
    if (strcmp(req->path, "/metrics") == 0 && strcmp(req->method, "GET") == 0) {
        serve_metrics(w, c);
        return;
    }
    if (strcmp(req->path, "/_sse") == 0) {
        if (strcmp(req->method, "GET") != 0) {
            sw_conn_http_error(c, 405, "method_not_allowed", "use GET", "Allow: GET\r\n");
            return;
        }
        sw_session_sse_open(c, req);
        return;
    }
    if (strcmp(req->path, "/_event") == 0) {
        if (strcmp(req->method, "POST") != 0) { /* GET is the upgrade (conn.c) */
            sw_conn_http_error(c, 405, "method_not_allowed", "use GET (WebSocket) or POST",
                               "Allow: GET, POST\r\n");
            return;
        }
        sw_session_sse_post(c, req);
        return;
    }
    if (strcmp(req->path, "/healthz") == 0) {
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
            sw_conn_http_error(c, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
            return;
        }
        int ready = worker_ready(w);
        int n = snprintf(body, sizeof(body),
                         "{\"status\":\"%s\",\"app\":\"%s\",\"worker\":%d,\"pid\":%d,"
                         "\"store\":\"%s\",\"store_ready\":%s,\"connections\":%zu,"
                         "\"draining\":%s}",
                         ready ? "ok" : "degraded", sw_appdef_name(w->app), w->slot, (int)getpid(),
                         sw_store_kind(w->store), ready ? "true" : "false", w->conns.nconns,
                         w->draining ? "true" : "false");
        sw_conn_http_reply(c, ready && !w->draining ? 200 : 503, "application/json",
                           "Cache-Control: no-store\r\n", body, (size_t)n);
        return;
    }
    if (sw_static_serve(c, req)) /* the demo page and /statewire.js */
        return;
    snprintf(body, sizeof(body), "no route %s %s", req->method, req->path);
    sw_conn_http_error(c, 404, "not_found", body, NULL); /* cut to valid UTF-8 there */
}

/* ---- stop and drain ---------------------------------------------------- */

static int all_quiet(sw_worker_t *w)
{
    return w->conns.nconns == 0 && !sw_token_any_pending(w);
}

static void exit_grace_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void drain_poll_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_worker_t *w = sw_container_of(tw, sw_worker_t, drain_poll_w);
    sw_session_t *s, *next;
    for (s = LIST_FIRST(&w->sessions); s; s = next) {
        next = LIST_NEXT(s, w_link);
        if (!s->peer.closing && (!s->peer.tok || sw_token_idle(s->peer.tok)))
            sw_session_close(s, 1001, "going away");
    }
    if (all_quiet(w)) {
        ev_timer_stop(loop, tw);
        ev_timer_stop(loop, &w->drain_w);
        sw_log(SW_LOG_INFO, "drained; exiting");
        ev_timer_set(tw, SW_EXIT_GRACE_S, 0.);
        ev_set_cb(tw, exit_grace_cb);
        ev_timer_start(loop, tw);
    }
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_worker_t *w = sw_container_of(tw, sw_worker_t, drain_w);
    sw_log(SW_LOG_WARN, "drain timeout (%u ms): closing %zu connections now",
           w->cfg->drain_timeout_ms, w->conns.nconns);
    ev_break(loop, EVBREAK_ALL);
}

static void start_drain(sw_worker_t *w, const char *why)
{
    if (w->draining)
        return;
    w->draining = 1;
    sw_log(SW_LOG_NOTICE, "draining (%s): %zu connections, timeout %u ms", why, w->conns.nconns,
           w->cfg->drain_timeout_ms);
    ev_io_stop(w->loop, &w->channel_w);
    /* Hand back every idle lease now; busy ones go when their event ends. */
    sw_token_sweep_leases(w, 0);
    ev_timer_init(&w->drain_w, drain_timeout_cb, w->cfg->drain_timeout_ms / 1000., 0.);
    ev_timer_start(w->loop, &w->drain_w);
    ev_timer_init(&w->drain_poll_w, drain_poll_cb, 0., SW_DRAIN_POLL_S);
    ev_timer_start(w->loop, &w->drain_poll_w);
}

static void signal_cb(struct ev_loop *loop, ev_signal *sw, int revents)
{
    sw_worker_t *w = sw->data;
    switch (sw->signum) {
    case SIGTERM:
    case SIGINT:
        sw_log(SW_LOG_INFO, "stopping (signal %d)", sw->signum);
        w->stopping = 1;
        /* Fast stop: the connections go, so do their live keys (a client
         * reconnecting without resume credentials is then no duplicate),
         * and the leases of idle tokens (a client resuming on another
         * worker or host is served at once, not after --lease-ms). Both
         * are written in this loop pass, before the exit grace; a lease
         * whose event is in flight expires. */
        sw_session_live_all(w, SW_LIVE_DROP);
        sw_token_sweep_leases(w, 0);
        ev_timer_stop(loop, &w->drain_w);
        ev_timer_stop(loop, &w->drain_poll_w);
        ev_timer_init(&w->drain_w, exit_grace_cb, SW_EXIT_GRACE_S, 0.);
        ev_timer_start(loop, &w->drain_w);
        break;
    case SIGQUIT:
        start_drain(w, "QUIT");
        break;
    case SIGUSR1:
        sw_log_reopen();
        break;
    default:
        break;
    }
}

static void signal_watch(sw_worker_t *w, ev_signal *sig, int signum)
{
    ev_signal_init(sig, signal_cb, signum);
    sig->data = w;
    ev_signal_start(w->loop, sig);
}

int sw_worker_run(struct ev_loop *loop, const sw_config_t *cfg, const sw_appdef_t *app, int slot,
                  int channel_fd, sw_stats_t *stats)
{
    int rc = 1;
    sw_worker_t *w = sw_xcalloc(1, sizeof(*w));
    sw_wctx_init(w, loop, cfg, app, &STEPS);
    w->slot = slot;
    w->channel_fd = channel_fd;
    w->stats = &stats->slot[slot];
    w->stats_all = stats;
    sw_token_init(w);
    char rnd[13];
    sw_random_hex(rnd, 6);
    snprintf(w->holder_id, sizeof(w->holder_id), "w%d-%d-%s", slot, (int)getpid(), rnd);

    sw_store_opts_t opts = {
        .redis_url = cfg->redis_url[0] ? cfg->redis_url : NULL,
        .holder_id = w->holder_id,
        .token_ttl_s = cfg->token_ttl_s,
        .lease_ms = cfg->lease_ms,
        .log_max = SW_REPLAY_LOG_LEN,
        .on_rtt = on_store_rtt,
        .rtt_udata = w,
    };
    w->store = sw_store_new(loop, &opts);
    if (!w->store)
        goto out;
    snprintf(w->stats->holder_id, sizeof(w->stats->holder_id), "%s", w->holder_id);
    if (w->stats->prev_holder[0]) {
        /* A predecessor in this slot that was killed left its leases
         * behind: free its tokens now rather than after --lease-ms. */
        sw_store_reap(w->store, w->stats->prev_holder);
    }

    sw_conn_env_init(&w->conns);
    w->conns.loop = loop;
    w->conns.ws_path = "/_event";
    w->conns.max_message_bytes = cfg->max_message_bytes;
    w->conns.max_send_bytes = cfg->max_send_bytes;
    w->conns.sndbuf_bytes = SW_CONN_SNDBUF_BYTES;
    w->conns.max_header_bytes = SW_MAX_HEADER_BYTES;
    w->conns.max_body_bytes = cfg->max_message_bytes;
    w->conns.ping_interval_ms = cfg->ping_interval_ms;
    w->conns.ping_timeout_ms = cfg->ping_timeout_ms;
    w->conns.http_timeout_ms = cfg->http_timeout_ms;
    w->conns.on_open = sw_session_on_open;
    w->conns.on_message = sw_session_on_message;
    w->conns.on_close = sw_session_on_close;
    w->conns.on_http = on_http;
    w->conns.udata = w;

    if (sw_fd_nonblock(channel_fd))
        goto out;
    ev_io_init(&w->channel_w, channel_cb, channel_fd, EV_READ);
    ev_io_start(loop, &w->channel_w);
    signal_watch(w, &w->sig_term, SIGTERM);
    signal_watch(w, &w->sig_int, SIGINT);
    signal_watch(w, &w->sig_quit, SIGQUIT);
    signal_watch(w, &w->sig_usr1, SIGUSR1);
    signal_watch(w, &w->sig_hup, SIGHUP);
    ev_prepare_init(&w->publish_w, publish_cb);
    ev_prepare_start(loop, &w->publish_w);
    ev_timer_init(&w->lease_sweep_w, lease_sweep_cb, 0.25, 0.25);
    ev_timer_start(loop, &w->lease_sweep_w);
    double live_period = cfg->presence_ttl_ms / 3000.0;
    ev_timer_init(&w->live_w, live_refresh_cb, live_period, live_period);
    ev_timer_start(loop, &w->live_w);
    ev_timer_init(&w->secret_w, secret_cb, 0., 0.);
    if (cfg->secret[0]) {
        sw_cred_key_init(&w->cred_key, cfg->secret, strlen(cfg->secret));
        w->have_cred_key = 1;
    } else if (atomic_load_explicit(&stats->cred_key_set, memory_order_acquire)) {
        memcpy(w->cred_key.k, stats->cred_key, sizeof(w->cred_key.k)); /* an earlier worker's */
        w->have_cred_key = 1;
    } else {
        ev_timer_start(loop, &w->secret_w); /* asks the store from the loop */
    }
    sw_inbox_channel(w->holder_id, strlen(w->holder_id), w->inbox);
    if (sw_store_subscribe(w->store, w->inbox, inbox_cb, NULL, w) != 0)
        sw_log(SW_LOG_WARN, "cannot subscribe to %s: lease hand-off falls back to expiry",
               w->inbox);

    sw_log(SW_LOG_INFO, "worker %d started (store %s, lease holder %s)", slot,
           sw_store_kind(w->store), w->holder_id);
    ev_run(loop, 0);
    rc = 0;

out:
    /* The store first: the completions it still owes (SW_EUNAVAIL) reach
     * tokens and rooms that are still alive; what they ask of it then is
     * refused, and so is what freeing them asks (w->store NULL). */
    sw_store_free(w->store);
    w->store = NULL;
    sw_token_free_all(w);
    sw_session_posts_cancel(w);
    sw_wctx_destroy(w);
    free(w);
    return rc;
}
