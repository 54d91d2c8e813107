/* worker.h — a worker process: one libev loop serving the connections the
 * master hands it.
 *
 * The master forks, then (in the child) stops its own watchers, calls
 * ev_loop_fork() and enters sw_worker_run() on the same loop. Connections
 * arrive over `channel_fd` (SOCK_SEQPACKET, one fd per message by
 * SCM_RIGHTS; see core/fdpass.h). Signals: TERM/INT stop at once, QUIT
 * drains (stop taking sockets, finish in-flight events, close clients with
 * 1001 "going away", exit within cfg->drain_timeout_ms). The worker also
 * drains when the channel closes (the master is gone). */
#ifndef SW_WORKER_WORKER_H
#define SW_WORKER_WORKER_H

#include <ev.h>

#include "core/config.h"
#include "core/stats.h"
#include "worker/wctx.h"

/* Run the worker until it stops. `slot` is its index (logs, stats).
 * Returns the process exit status (0 after a clean stop). */
int sw_worker_run(struct ev_loop *loop, const sw_config_t *cfg, const sw_appdef_t *app, int slot,
                  int channel_fd, sw_stats_t *stats);

#endif
