/* redis_harness.h — a real redis-server for tests.
 *
 * Each harness instance runs its own redis-server (the binary named by the
 * compile definition SW_TEST_REDIS_BIN) in a fresh temporary directory
 * (mkdtemp under /tmp) with persistence off, listening on a unix socket
 * DIR/redis.sock and, in TCP mode, on a free loopback port. The server
 * dies with the test process (PR_SET_PDEATHSIG), so a crashing test leaves
 * nothing behind but the temp dir.
 *
 * Failures are reported with Criterion's cr_log_error and a NULL / -1
 * return; tests should cr_assert_not_null() the result. */
#ifndef SW_TESTS_REDIS_HARNESS_H
#define SW_TESTS_REDIS_HARNESS_H

#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

typedef struct sw_test_redis sw_test_redis_t;

/* Start a redis-server and wait (PING, up to 5 s) until it answers.
 * tcp == 0: unix socket only (--port 0). tcp != 0: also listen on
 * 127.0.0.1 on a free port (picked by binding port 0; up to 5 attempts if
 * the server fails to start, e.g. when the port was taken meanwhile).
 * Returns the harness (free with sw_test_redis_stop), NULL on failure
 * (reason logged with cr_log_error). */
sw_test_redis_t *sw_test_redis_start(int tcp);

/* URL for sw_store_opts_t.redis_url: "unix://DIR/redis.sock" in unix
 * mode, "redis://127.0.0.1:PORT/0" in TCP mode. Borrowed, valid until
 * sw_test_redis_stop. */
const char *sw_test_redis_url(const sw_test_redis_t *r);

/* TCP port, 0 in unix mode. */
int sw_test_redis_port(const sw_test_redis_t *r);

/* Absolute path of the unix socket (always present). Borrowed. */
const char *sw_test_redis_socket(const sw_test_redis_t *r);

/* A new synchronous hiredis client on the unix socket (db 0; SELECT
 * yourself for another db). Caller frees with redisFree. NULL on failure
 * (logged). */
redisContext *sw_test_redis_connect(const sw_test_redis_t *r);

/* Read state `state` of token `token` as the server stores it (HGET
 * sw:{token} state, msgpack decoded). Returns 1 with *out a new reference,
 * 0 when the field does not exist (*out NULL), -1 on a connection error or
 * a value that is not a msgpack map (*out NULL). */
int sw_test_redis_state(const sw_test_redis_t *r, const char *token, const char *state,
                        json_t **out);

/* The redis-server process id (for SIGSTOP/SIGCONT in tests). */
pid_t sw_test_redis_pid(const sw_test_redis_t *r);

/* Stop the server (SIGTERM + waitpid), remove the temp dir and free r.
 * NULL is a no-op. */
void sw_test_redis_stop(sw_test_redis_t *r);

/* Stop the server (if running) and start it again on the same socket and
 * port, with an empty dataset and script cache: an outage for tests.
 * Waits until it answers PING. Returns 0, or -1 (logged; r stays valid
 * for sw_test_redis_stop). */
int sw_test_redis_restart(sw_test_redis_t *r);

/* Kill the server at once (SIGKILL + waitpid). r stays valid: call
 * sw_test_redis_restart to bring it back, or sw_test_redis_stop. */
void sw_test_redis_kill(sw_test_redis_t *r);

#endif
