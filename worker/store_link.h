/* store_link.h — one Redis connection that keeps itself open: a hiredis
 * async context on the loop, reopened with backoff (100 ms, doubling up
 * to 2 s) whenever it is lost or cannot be opened. The Redis store runs
 * its command connection and its pub/sub connection on one each.
 *
 * A link with a reply timeout also watches its replies: when commands
 * wait (sw_store_link_sent) and nothing has answered
 * (sw_store_link_replied) for that long, the connection is dropped and
 * reopened (hiredis 0.14 has no async timeouts), so the waiting commands
 * get their NULL reply instead of hanging. Commands issued during a loop
 * pass are written right before the loop polls, in one write(2).
 *
 * Logs (once per outage): "redis: <what> lost: <why>", "redis: <what>
 * restored". Sources: hiredis 0.14 async API (a pending callback gets a
 * NULL reply when the context is freed or the connection drops; the
 * disconnect callback comes after them). */
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

/* 1 when the connection is up (connected and not lost since). */
int sw_store_link_up(const sw_store_link_t *l);

/* The reply watchdog's count: a command that expects a reply was sent /
 * a reply came. */
void sw_store_link_sent(sw_store_link_t *l);
void sw_store_link_replied(sw_store_link_t *l);

#endif
