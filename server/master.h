/* master.h — the master process: listen socket, accept loop, worker
 * supervision and signals (after nginx's ngx_process_cycle.c).
 *
 * The master binds cfg->host:cfg->port, forks cfg->workers workers (each
 * gets one end of a SOCK_SEQPACKET pair, see server/fdpass.h, and its slot
 * in the shared stats block, see server/stats.h), then accepts connections
 * and passes each to the live worker with the fewest connections (ties:
 * round-robin). A full channel (SW_EAGAIN) moves on to the next worker; when
 * no worker can take the socket it is closed. The master never reads client
 * bytes.
 *
 * Supervision: a worker that dies is logged (exit code or signal) and
 * respawned into its slot at once; when the slot died more than 3 times in
 * the last 10 s, after a backoff of 250 ms doubling up to 5 s. While no
 * worker is live, accepting pauses (clients wait in the kernel backlog,
 * 4096).
 *
 * Signals (handled in loop context through ev_signal):
 *   TERM, INT  fast stop: SIGTERM to workers, SIGKILL after 5 s.
 *   QUIT       graceful stop: stop accepting, close the listen socket,
 *              SIGQUIT to workers, SIGKILL after drain_timeout_ms + 2000.
 *   USR1       reopen the log file, forward USR1 to workers.
 *   HUP        reload is not implemented: logged and ignored.
 *   PIPE       ignored (process-wide, inherited by workers).
 * On EMFILE/ENFILE accepting pauses for 100 ms (logged at most once a
 * second). */
#ifndef SW_SERVER_MASTER_H
#define SW_SERVER_MASTER_H

#include "server/config.h"
#include "worker/runtime.h"

/* Run the master on libev's default loop until a stop signal and every
 * worker has exited. cfg and app are borrowed and must outlive the call
 * (workers inherit them across fork()). Returns the process exit status:
 * 0 after a TERM/INT/QUIT stop, 1 when startup fails (bind, mmap, loop;
 * logged). Call once per process. */
int sw_master_run(const sw_config_t *cfg, const sw_appdef_t *app);

#endif
