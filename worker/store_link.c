/* store_link.c — one reconnecting Redis connection (worker/store_link.h). */
#include "worker/store_link.h"

#include <stdio.h>
#include <stdlib.h>

#include <hiredis/adapters/libev.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "common/log.h"
#include "common/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define WATCHDOG_PERIOD_S 0.5

struct sw_store_link {
    struct ev_loop *loop;
    sw_store_link_opts_t o; /* o.host is `host` */
    char *host;             /* owned */
    redisAsyncContext *ac;  /* NULL while down */
    int connected;          /* ac is connected (onConnect OK) */
    int answered;           /* Redis has answered on ac: the link is up */
    int ping_out;           /* an idle ping was sent, nothing heard since */
    int down;               /* lost / attempt failed, not back yet (logged) */
    int closing;            /* being freed */
    uint32_t backoff_ms;
    ev_timer retry_w;
    ev_timer watchdog_w;  /* drops a connection that stopped answering */
    ev_timer ping_w;      /* pings a connection that has been quiet */
    ev_prepare flush_w;   /* writes the commands of this loop pass before it blocks */
    uint32_t awaiting;    /* commands sent whose reply has not come */
    uint64_t progress_ms; /* last reply, or first send after a quiet spell */
    uint64_t heard_ms;    /* last time anything came from Redis */
};

static void link_connect(sw_store_link_t *l);

static int wanted(sw_store_link_t *l)
{
    return !l->o.wanted || l->o.wanted(l->o.udata);
}

static void schedule_retry(sw_store_link_t *l)
{
    ev_timer_stop(l->loop, &l->retry_w);
    ev_timer_set(&l->retry_w, l->backoff_ms / 1000.0, 0.);
    ev_timer_start(l->loop, &l->retry_w);
    l->backoff_ms = SW_MIN(l->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void went_down(sw_store_link_t *l, const char *why)
{
    l->ac = NULL;
    l->connected = 0;
    l->answered = 0;
    l->ping_out = 0;
    l->awaiting = 0;
    if (l->closing)
        return;
    if (!l->down) {
        l->down = 1;
        sw_log(SW_LOG_WARN, "redis: %s lost: %s", l->o.what, why && why[0] ? why : "closed");
    }
    if (l->o.on_down)
        l->o.on_down(l->o.udata);
    if (wanted(l))
        schedule_retry(l);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_store_link_t *l = sw_container_of(w, sw_store_link_t, watchdog_w);
    if (!l->ac || !l->awaiting)
        return;
    uint64_t quiet = sw_now_ms() - l->progress_ms;
    if (quiet < l->o.reply_timeout_ms)
        return;
    sw_log(SW_LOG_WARN, "redis: no reply for %llu ms with %u command(s) waiting; reconnecting",
           (unsigned long long)quiet, l->awaiting);
    redisAsyncContext *ac = l->ac;
    redisAsyncFree(ac); /* waiting callbacks get NULL */
    if (l->ac == ac)    /* no disconnect callback came: mark it down here */
        went_down(l, "reply timeout");
}

/* Ping a connection from which nothing has come for ping_ms (one ping
 * at a time: an unanswered one is the watchdog's). */
static void on_ping(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sw_store_link_t *l = sw_container_of(w, sw_store_link_t, ping_w);
    if (!l->ac || !l->connected || l->ping_out)
        return;
    if (sw_now_ms() - l->heard_ms < l->o.ping_ms)
        return;
    if (l->o.ping(l->o.udata, l->ac) != 0)
        return;
    l->ping_out = 1;
    sw_store_link_sent(l);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_store_link_t *l = sw_container_of(w, sw_store_link_t, retry_w);
    if (!l->ac && wanted(l))
        link_connect(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sw_store_link_t *l = ac->data;
    if (status != REDIS_OK) {
        went_down(l, ac->errstr); /* hiredis frees ac after this */
        return;
    }
    l->connected = 1;
    l->heard_ms = sw_now_ms(); /* the ping period counts from here */
    if (l->o.port && redisEnableKeepAlive((redisContext *)&ac->c) != REDIS_OK)
        sw_log(SW_LOG_WARN, "redis: %s: keepalive: %s", l->o.what, ac->c.errstr);
}

/* Something came from Redis on the current connection. */
static void heard(sw_store_link_t *l)
{
    uint64_t now = sw_now_ms();
    l->progress_ms = now;
    l->heard_ms = now;
    l->ping_out = 0;
    if (l->answered || !l->ac)
        return;
    l->answered = 1;
    l->backoff_ms = BACKOFF_MIN_MS;
    if (l->down) {
        l->down = 0;
        sw_log(SW_LOG_NOTICE, "redis: %s restored", l->o.what);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sw_store_link_t *l = ac->data;
    went_down(l, status == REDIS_OK ? "closed" : ac->errstr);
}

/* Commands issued during a loop pass sit in hiredis's output buffer, and
 * the libev adapter would start the write watcher, wait a poll for
 * writability and stop it again: two epoll_ctl and an extra wake-up per
 * batch. Writing them here, right before the loop polls, sends them in one
 * write(2); the watcher started and stopped within the pass costs libev
 * no epoll_ctl (fd changes are applied lazily). A partial write leaves
 * the watcher on, as before. */
static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    sw_store_link_t *l = sw_container_of(w, sw_store_link_t, flush_w);
    if (l->ac && l->connected && l->ac->c.obuf && sdslen(l->ac->c.obuf) > 0)
        redisAsyncHandleWrite(l->ac);
}

/* Start an async connection (TCP or unix socket) attached to the loop,
 * then let the owner queue its first commands (they also arm the write
 * watcher that completes the connect). */
static void link_connect(sw_store_link_t *l)
{
    ev_timer_stop(l->loop, &l->retry_w);
    redisAsyncContext *ac =
        l->o.port ? redisAsyncConnect(l->o.host, l->o.port) : redisAsyncConnectUnix(l->o.host);
    if (!ac) {
        went_down(l, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(l, why);
        return;
    }
    ac->data = l;
    redisLibevAttach(l->loop, ac);
    l->ac = ac;
    l->connected = 0;
    l->answered = 0;
    l->ping_out = 0;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (l->o.on_open)
        l->o.on_open(l->o.udata, ac);
}

sw_store_link_t *sw_store_link_new(struct ev_loop *loop, const sw_store_link_opts_t *o)
{
    sw_store_link_t *l = sw_xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->o = *o;
    l->host = sw_xstrdup(o->host);
    l->o.host = l->host;
    l->backoff_ms = BACKOFF_MIN_MS;
    ev_timer_init(&l->retry_w, on_retry, 0., 0.);
    if (o->reply_timeout_ms) {
        ev_timer_init(&l->watchdog_w, on_watchdog, WATCHDOG_PERIOD_S, WATCHDOG_PERIOD_S);
        ev_timer_start(loop, &l->watchdog_w);
        ev_unref(loop); /* the watchdog alone does not keep the loop alive */
    }
    if (o->ping_ms && o->reply_timeout_ms && o->ping) {
        double period = o->ping_ms / 4000.0; /* a quiet spell is found within ping_ms * 1.25 */
        ev_timer_init(&l->ping_w, on_ping, period, period);
        ev_timer_start(loop, &l->ping_w);
        ev_unref(loop); /* nor the pings */
    }
    ev_prepare_init(&l->flush_w, on_flush);
    ev_prepare_start(loop, &l->flush_w);
    ev_unref(loop); /* nor does the flush step */
    return l;
}

void sw_store_link_free(sw_store_link_t *l)
{
    if (!l)
        return;
    l->closing = 1;
    ev_timer_stop(l->loop, &l->retry_w);
    if (l->o.reply_timeout_ms) {
        ev_ref(l->loop);
        ev_timer_stop(l->loop, &l->watchdog_w);
    }
    if (ev_is_active(&l->ping_w)) {
        ev_ref(l->loop);
        ev_timer_stop(l->loop, &l->ping_w);
    }
    ev_ref(l->loop);
    ev_prepare_stop(l->loop, &l->flush_w);
    if (l->ac) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks get NULL */
    }
    free(l->host);
    free(l);
}

void sw_store_link_open(sw_store_link_t *l)
{
    if (!l->ac && !ev_is_active(&l->retry_w))
        link_connect(l);
}

redisAsyncContext *sw_store_link_ctx(const sw_store_link_t *l)
{
    return l->ac;
}

int sw_store_link_up(const sw_store_link_t *l)
{
    return l->ac && l->connected && l->answered;
}

int sw_store_link_failing(const sw_store_link_t *l)
{
    return l->down;
}

void sw_store_link_sent(sw_store_link_t *l)
{
    if (l->awaiting++ == 0)
        l->progress_ms = sw_now_ms();
}

void sw_store_link_replied(sw_store_link_t *l)
{
    if (l->awaiting > 0)
        l->awaiting--;
    heard(l);
}

void sw_store_link_heard(sw_store_link_t *l)
{
    heard(l);
}
