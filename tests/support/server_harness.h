/* server_harness.h — start and stop the real `statewire` binary for
 * integration tests (loopback only). */
#ifndef SW_TEST_SERVER_HARNESS_H
#define SW_TEST_SERVER_HARNESS_H

#include <sys/types.h>

typedef struct sw_test_server {
    pid_t pid; /* the master */
    int port;
    char log_path[256]; /* the server's stderr, kept for failure reports */
} sw_test_server_t;

/* A free loopback TCP port (bind 127.0.0.1:0 and close; small race). */
int sw_test_free_port(void);

/* Start statewire (SW_TEST_SERVER_BIN) on 127.0.0.1:port (0 = pick a free
 * one) with `redis_url` (NULL = in-memory) and `workers`, plus the extra
 * arguments `extra` (NULL-terminated, may be NULL). Waits until /healthz
 * answers 200 on every worker's behalf (up to 10 s). Returns NULL on
 * failure (the log is printed). The server's stderr goes to log_path. */
sw_test_server_t *sw_test_server_start(int port, const char *redis_url, int workers,
                                       const char *const *extra);

/* Wait until GET /healthz answers 200 (up to timeout_ms). 0 or -1. */
int sw_test_server_wait_healthy(const sw_test_server_t *s, int timeout_ms);

/* The worker pids (children of the master) into pids (max n); returns the
 * count. */
int sw_test_server_workers(const sw_test_server_t *s, pid_t *pids, int n);

/* Send sig to the master and wait for it to exit (up to timeout_ms, then
 * SIGKILL). Returns the exit status as from waitpid (or -1). Frees s.
 * The server's log is deleted unless SW_TEST_KEEP_LOGS is set;
 * SW_TEST_LOG_LEVEL sets its --log-level (default info). */
int sw_test_server_stop(sw_test_server_t *s, int sig, int timeout_ms);

/* Print the server's log to stderr (for failures). */
void sw_test_server_dump_log(const sw_test_server_t *s);

#endif
