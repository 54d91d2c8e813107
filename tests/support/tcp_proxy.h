/* tcp_proxy.h — a loopback TCP proxy for fault tests: it forwards every
 * connection it accepts to 127.0.0.1:to_port, and can make the network
 * fail silently, the way a dropped route or a dead NAT entry does: bytes
 * stop flowing with no FIN and no RST, and neither end is told.
 *
 * The proxy runs on its own thread (poll(2) over every pair of sockets);
 * the calls below may come from any thread. A silenced connection is no
 * longer read or written by the proxy: what either end sends sits in the
 * kernel's buffers, unanswered. Its sockets stay open until the proxy
 * stops. At most SW_TEST_PROXY_MAX_PAIRS connections are forwarded at
 * once; one more is closed at accept. */
#ifndef SW_TESTS_TCP_PROXY_H
#define SW_TESTS_TCP_PROXY_H

#include <stddef.h>

#define SW_TEST_PROXY_MAX_PAIRS 256

typedef struct sw_test_proxy sw_test_proxy_t;

/* Listen on a free 127.0.0.1 port and forward to 127.0.0.1:to_port.
 * NULL on failure (logged with cr_log_error). */
sw_test_proxy_t *sw_test_proxy_start(int to_port);

/* The port the proxy listens on. */
int sw_test_proxy_port(const sw_test_proxy_t *p);

/* Silence every connection open now (see above). Connections accepted
 * later are forwarded, unless the proxy is a black hole. */
void sw_test_proxy_silence(sw_test_proxy_t *p);

/* on != 0: every connection accepted from now on is silenced at once
 * (the kernel completes the connect; nothing ever answers). on == 0:
 * forward new connections again (silenced ones stay silent). */
void sw_test_proxy_blackhole(sw_test_proxy_t *p, int on);

/* Connections accepted so far. */
size_t sw_test_proxy_accepted(sw_test_proxy_t *p);

/* Stop the thread, close every socket and free p. NULL is a no-op. */
void sw_test_proxy_stop(sw_test_proxy_t *p);

#endif
