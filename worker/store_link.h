/* store_link.h — one Redis connection that keeps itself open: a hiredis
 * async context on the loop, reopened with backoff (100 ms, doubling up
 * to 2 s) whenever it is lost or cannot be opened. The Redis store runs
 * its command connection and its pub/sub connection on one each.
 *
 * A link counts as up only once Redis has answered on the connection
 * (the first sw_store_link_replied / sw_store_link_heard after it
 * opened), not when the kernel completes the TCP connect: a stopped or
 * hung Redis still accepts connections.
 *
 * A link with a reply timeout also watches its replies: when commands
 * wait (sw_store_link_sent) and nothing has come from Redis
 * (sw_store_link_replied, sw_store_link_heard) for that long, the
 * connection is dropped and reopened (hiredis 0.14 has no async
 * timeouts), so the waiting commands get their NULL reply instead of
 * hanging. A link with a ping period also sends its owner's ping command
 * whenever nothing has come for that long, so that a connection that
 * died silently (no FIN, no RST) is found even while no command waits:
 * within ping period + reply timeout (+ one watchdog tick, 0.5 s). TCP
 * connections also get kernel keepalive (SO_KEEPALIVE: 15 s idle, then
 * 3 probes 5 s apart). Commands issued during a loop pass are written
 * right before the loop polls, in one write(2).
 *
 * Logs (once per outage): "redis: <what> lost: <why>", "redis: <what>
 * restored". Sources: hiredis 0.14 async API (a pending callback gets a
 * NULL reply when the context is freed or the connection drops; the
 * disconnect callback comes after them; redisEnableKeepAlive), tcp(7)
 * (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). */
#ifndef SW_WORKER_STORE_LINK_H
#define SW_WORKER_STORE_LINK_H

#include <stdint.h>

#include <ev.h>
#include <hiredis/async.h>

typedef struct sw_store_link sw_store_link_t;

typedef struct sw_store_link_opts {
    const char *what; /* names the link in logs ("connection"); static */
    const char *host; /* host name, or unix socket path when port == 0; copied */
    int port;
    uint32_t reply_timeout_ms; /* 0 = no reply watchdog */
    /* Period of the idle ping, ms (0 = none; needs a reply timeout and
     * `ping`). */
    uint32_t ping_ms;
    /* Send one command whose answer reaches the owner, who then calls
     * sw_store_link_replied (the link counts it sent). 0 when sent, -1
     * when not. May be NULL. */
    int (*ping)(void *udata, redisAsyncContext *ac);
    /* A context was just opened (not yet connected; ac->data is the link):
     * queue the commands that must come before any other on it. May be
     * NULL. */
    void (*on_open)(void *udata, redisAsyncContext *ac);
    /* The connection is gone (lost, not opened, or dropped by the reply
     * timeout): every command pending on it has had its NULL reply. Not
     * called while the link is freed. May be NULL. */
    void (*on_down)(void *udata);
    /* 1 while the link should be open: asked when it went down and when
     * its retry comes; with 0 it stays closed until sw_store_link_open.
     * NULL = always. */
    int (*wanted)(void *udata);
    void *udata;
} sw_store_link_opts_t;

/* A closed link (sw_store_link_open connects it); o is copied. Never
 * NULL. */
sw_store_link_t *sw_store_link_new(struct ev_loop *loop, const sw_store_link_opts_t *o);

/* Close the connection (every pending command gets its NULL reply before
 * this returns; on_down is not called) and free the link. NULL is a
 * no-op. */
void sw_store_link_free(sw_store_link_t *l);

/* Connect now, unless a context is open or a retry is already set. */
void sw_store_link_open(sw_store_link_t *l);

/* The context to send on, or NULL while the link is down. It may not be
 * connected yet: commands sent then wait for the connection. */
redisAsyncContext *sw_store_link_ctx(const sw_store_link_t *l);

/* 1 when the connection is up: connected, answered at least once by
 * Redis, and not lost since. */
int sw_store_link_up(const sw_store_link_t *l);

/* 1 during an outage: the connection was lost (or could not be opened,
 * or left a command unanswered past the reply timeout) and Redis has not
 * answered on a new one since. Owners fail requests at once then instead
 * of queueing them behind a connection that may never answer. */
int sw_store_link_failing(const sw_store_link_t *l);

/* The reply watchdog's count: a command that expects a reply was sent /
 * its reply came (call only with a real reply, not the NULL one of a
 * dropped connection). */
void sw_store_link_sent(sw_store_link_t *l);
void sw_store_link_replied(sw_store_link_t *l);

/* Something came from Redis that answers no command (a pub/sub
 * message): the connection is alive. */
void sw_store_link_heard(sw_store_link_t *l);

#endif
