/* store_redis.h — the Redis store backend. Reached only from store.c (the
 * interface, worker/store.h). */
#ifndef SW_WORKER_STORE_REDIS_H
#define SW_WORKER_STORE_REDIS_H

#include <ev.h>

#include "worker/store_types.h"

/* A Redis store on the loop: host and port from the parsed URL (port 0:
 * host is a unix socket path), db selected on every connection when not
 * 0. opts is checked by the caller (holder_id not empty); host is copied.
 * Starts connecting at once; never NULL. Freed through its ops table
 * (sw_store_free). */
sw_store_t *sw_store_redis_new(struct ev_loop *loop, const sw_store_opts_t *opts, const char *host,
                               int port, int db);

#endif
