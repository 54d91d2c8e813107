/* redis_url.c — Redis URLs (see redis_url.h). */
#include "core/redis_url.h"

#include <limits.h>
#include <string.h>

#include "common/util.h"

#define DEFAULT_PORT 6379

/* Parse a decimal in [min, max] from s[0..n). */
static int parse_num(const char *s, size_t n, long min, long max, int *out)
{
    if (n == 0 || n > 10)
        return SW_EINVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SW_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return SW_EINVAL;
    *out = (int)v;
    return 0;
}

static int copy_out(char *dst, size_t dstlen, const char *s, size_t n)
{
    if (n == 0 || n >= dstlen)
        return SW_EINVAL;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int sw_redis_url_parse(const char *url, char *host, size_t hostlen, int *port, int *db)
{
    if (!url || !host || !port || !db)
        return SW_EINVAL;
    *db = 0;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path[0] != '/')
            return SW_EINVAL;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (q) {
            if (strncmp(q, "?db=", 4) != 0)
                return SW_EINVAL;
            if (parse_num(q + 4, strlen(q + 4), 0, INT_MAX, db) < 0)
                return SW_EINVAL;
        }
        if (copy_out(host, hostlen, path, plen) < 0)
            return SW_EINVAL;
        *port = 0;
        return 0;
    }
    if (strncmp(url, "redis://", 8) == 0) {
        const char *h = url + 8;
        const char *hend, *rest;
        if (h[0] == '[') { /* IPv6 literal */
            const char *close = strchr(h, ']');
            if (!close)
                return SW_EINVAL;
            if (copy_out(host, hostlen, h + 1, (size_t)(close - h - 1)) < 0)
                return SW_EINVAL;
            rest = close + 1;
        } else {
            hend = h + strcspn(h, ":/?@");
            if (*hend == '?' || *hend == '@') /* credentials, options: unsupported */
                return SW_EINVAL;
            if (copy_out(host, hostlen, h, (size_t)(hend - h)) < 0)
                return SW_EINVAL;
            rest = hend;
        }
        *port = DEFAULT_PORT;
        if (*rest == ':') {
            size_t n = strcspn(rest + 1, "/");
            if (parse_num(rest + 1, n, 1, 65535, port) < 0)
                return SW_EINVAL;
            rest += 1 + n;
        }
        if (*rest == '/') {
            rest++;
            if (*rest && parse_num(rest, strlen(rest), 0, INT_MAX, db) < 0)
                return SW_EINVAL;
        } else if (*rest) {
            return SW_EINVAL;
        }
        return 0;
    }
    return SW_EINVAL;
}
