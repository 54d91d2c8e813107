/* store_sub.h — the Redis store's subscriptions: one pub/sub connection
 * (a store_link, opened at the first subscribe, reopened while any
 * subscription is left) and the channels subscribed on it, one per shared
 * token (sw:{R}:ch). Messages are handed over in publish order. Each time
 * Redis confirms a subscription — at the first subscribe and after every
 * reconnect — its on_resync runs, since messages may have been missed.
 * Pub/sub channels do not depend on the db: no SELECT.
 *
 * The connection is watched like the command connection (a reply
 * timeout, an idle ping, TCP keepalive: worker/store_link.h), so one that
 * died silently is replaced and every channel subscribed again, each
 * with its on_resync.
 *
 * Sources: Redis docs "Pub/Sub" (SUBSCRIBE replies "subscribe" /
 * "unsubscribe" / "message" arrays); hiredis 0.14 keeps one callback per
 * channel and forgets it on the channel's "unsubscribe" reply. */
#ifndef SW_WORKER_STORE_SUB_H
#define SW_WORKER_STORE_SUB_H

#include <stdint.h>

#include <ev.h>

#include "worker/store_types.h"

typedef struct sw_store_sub sw_store_sub_t;

/* Subscriptions to the Redis at host:port (port 0: host is a unix socket
 * path; copied), on a connection dropped when Redis leaves a command
 * unanswered for reply_timeout_ms and pinged after ping_ms of silence
 * (0: not watched). Connects at the first subscribe. Never NULL. */
sw_store_sub_t *sw_store_sub_new(struct ev_loop *loop, const char *host, int port,
                                 uint32_t reply_timeout_ms, uint32_t ping_ms);

/* 1 when nothing is subscribed, or the connection is up (Redis has
 * answered on it and it has not been lost since). */
int sw_store_sub_up(const sw_store_sub_t *b);

/* Close the connection and drop every subscription without calling it.
 * NULL is a no-op. */
void sw_store_sub_free(sw_store_sub_t *b);

/* Subscribe to shared token R's channel (token checked by the caller).
 * on_resync may be NULL. 0, SW_EBUSY (R has a subscription), SW_ENOMEM
 * (SW_STORE_MAX_SUBS of them). */
int sw_store_sub_add(sw_store_sub_t *b, const char *token, sw_store_message_cb on_message,
                     sw_store_resync_cb on_resync, void *udata);

/* Drop R's subscription at once (no callback of it runs afterwards; Redis
 * confirms the UNSUBSCRIBE later). 0 or SW_ENOTFOUND. */
int sw_store_sub_remove(sw_store_sub_t *b, const char *token);

#endif
