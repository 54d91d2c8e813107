/* store_mem.h — the in-memory store backend (development mode: no Redis,
 * one worker). Reached only from store.c (the interface,
 * worker/store.h). */
#ifndef SW_WORKER_STORE_MEM_H
#define SW_WORKER_STORE_MEM_H

#include <ev.h>

#include "worker/store_types.h"

/* A memory store (all memory stores of the process share one table).
 * opts is checked by the caller (holder_id not empty); never NULL. Freed
 * through its ops table (sw_store_free). */
sw_store_t *sw_store_mem_new(struct ev_loop *loop, const sw_store_opts_t *opts);

#endif
