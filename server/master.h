/* master.h — the master process: listen socket, accept loop, worker
 * supervision and signals (after nginx's ngx_process_cycle.c).
 *
 * The master binds cfg->host:cfg->port, forks cfg->workers workers (each
 * gets one end of a SOCK_SEQPACKET pair, see core/fdpass.h, and its slot
 * in the shared stats block, see core/stats.h), then accepts connections
 * and passes each to the live worker of the current generation with the
 * fewest connections (ties: round-robin). The stats block and the slot
 * table hold 2 * cfg->workers slots: a generation lives in one half
 * ([0, N) or [N, 2N); the slot index is the worker number in logs and
 * /healthz), so that two generations overlap during a reload. A full
 * channel (SW_EAGAIN) moves on to the next worker; when no worker can take
 * the socket it is closed. The master never reads client bytes.
 *
 * Supervision: a worker of the current generation that dies is logged
 * (exit code or signal) and respawned into its slot at once; when the slot
 * died more than 3 times in the last 10 s, after a backoff of 250 ms
 * doubling up to 5 s. While no worker of the current generation is live,
 * accepting pauses (clients wait in the kernel backlog, 4096).
 *
 * Signals (handled in loop context through ev_signal):
 *   TERM, INT  fast stop: SIGTERM to workers, SIGKILL after 5 s.
 *   QUIT       graceful stop: stop accepting, close the listen socket,
 *              SIGQUIT to workers, SIGKILL after drain_timeout_ms + 2000.
 *   USR1       reopen the log file, forward USR1 to workers.
 *   HUP        reload: fork a new generation of cfg->workers workers into
 *              the other half of the slots and send every new connection
 *              to it at once; 100 ms later (so the old workers take the
 *              sockets already passed to them) SIGQUIT the old generation,
 *              which drains as for QUIT (clients closed with 1001 reconnect
 *              and land on the new generation); SIGKILL what is left of it
 *              after drain_timeout_ms + 2000. Deaths in the old generation
 *              are expected and not respawned. A HUP while the old
 *              generation still runs is remembered (several count as one)
 *              and starts the next reload once it has exited. New workers
 *              are forked from the master: same binary, app and config (a
 *              new binary or config needs a restart). Each step is logged.
 *   PIPE       ignored (process-wide, inherited by workers).
 * On EMFILE/ENFILE accepting pauses for 100 ms (logged at most once a
 * second). */
#ifndef SW_SERVER_MASTER_H
#define SW_SERVER_MASTER_H

#include "core/config.h"
#include "worker/runtime.h"

/* Run the master on libev's default loop until a stop signal and every
 * worker has exited. cfg and app are borrowed and must outlive the call
 * (workers inherit them across fork()). Returns the process exit status:
 * 0 after a TERM/INT/QUIT stop, 1 when startup fails (bind, mmap, loop;
 * logged). Call once per process. */
int sw_master_run(const sw_config_t *cfg, const sw_appdef_t *app);

#endif
