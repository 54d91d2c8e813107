/* redis_url.h — the Redis URLs statewire takes (--redis): used by the
 * configuration (to refuse a bad one at start), the store (to connect)
 * and the load generator.
 *
 *   redis://host[:port][/db]     TCP; port 6379 by default, db 0; an IPv6
 *                                host in brackets ("redis://[::1]:6380/2")
 *   unix:///path[?db=N]          a Unix socket (absolute path)
 *
 * Credentials ("user:pw@") and other options are not taken. */
#ifndef SW_CORE_REDIS_URL_H
#define SW_CORE_REDIS_URL_H

#include <stddef.h>

/* Parse url into host (hostlen bytes with the NUL: the host, or the
 * socket path), *port (0 for a Unix socket) and *db. Returns 0 or
 * SW_EINVAL (malformed, unsupported, or the host does not fit). */
int sw_redis_url_parse(const char *url, char *host, size_t hostlen, int *port, int *db);

#endif
