#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/log.h"

const char *sw_strerror(int err)
{
    switch (err) {
    case SW_OK:
        return "SW_OK";
    case SW_ERR:
        return "SW_ERR";
    case SW_EINVAL:
        return "SW_EINVAL";
    case SW_ENOMEM:
        return "SW_ENOMEM";
    case SW_EAGAIN:
        return "SW_EAGAIN";
    case SW_ELEASE:
        return "SW_ELEASE";
    case SW_EUNAVAIL:
        return "SW_EUNAVAIL";
    case SW_ECLOSED:
        return "SW_ECLOSED";
    case SW_ENOTFOUND:
        return "SW_ENOTFOUND";
    case SW_ETOOLARGE:
        return "SW_ETOOLARGE";
    case SW_EPROTO:
        return "SW_EPROTO";
    case SW_EPERM:
        return "SW_EPERM";
    case SW_EBUSY:
        return "SW_EBUSY";
    case SW_ECONFLICT:
        return "SW_ECONFLICT";
    default:
        return "SW_E?";
    }
}

static void oom(size_t n)
{
    sw_log(SW_LOG_CRIT, "out of memory allocating %zu bytes", n);
    abort();
}

void *sw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *sw_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size);
    return p;
}

void *sw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *sw_xstrdup(const char *s)
{
    return sw_xstrndup(s, strlen(s));
}

char *sw_xstrndup(const char *s, size_t n)
{
    char *p = sw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sw_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(strlen(fmt));
    return s;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sw_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t sw_now_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000ull;
}

uint64_t sw_wall_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000ull;
}

void sw_random_bytes(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        sw_log(SW_LOG_CRIT, "RAND_bytes failed: the CSPRNG is unusable");
        abort();
    }
}

void sw_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t k = SW_MIN(nbytes - done, sizeof(raw));
        sw_random_bytes(raw, k);
        for (size_t i = 0; i < k; i++) {
            out[2 * (done + i)] = hex[raw[i] >> 4];
            out[2 * (done + i) + 1] = hex[raw[i] & 15];
        }
        done += k;
    }
    out[2 * nbytes] = '\0';
}

size_t sw_u64_dec(char *out, uint64_t v)
{
    char tmp[SW_U64_DIGITS];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int sw_secure_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

int sw_fd_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        sw_log(SW_LOG_ERROR, "fcntl(O_NONBLOCK) on fd %d: %s", fd, strerror(errno));
        return SW_ERR;
    }
    int fdf = fcntl(fd, F_GETFD);
    if (fdf < 0 || fcntl(fd, F_SETFD, fdf | FD_CLOEXEC) < 0) {
        sw_log(SW_LOG_ERROR, "fcntl(FD_CLOEXEC) on fd %d: %s", fd, strerror(errno));
        return SW_ERR;
    }
    return 0;
}

size_t sw_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char u = p[0];
    size_t len;
    uint32_t cp;
    if (u < 0x80)
        return 1;
    if (u >= 0xC2 && u <= 0xDF) {
        len = 2;
        cp = u & 0x1F;
    } else if (u >= 0xE0 && u <= 0xEF) {
        len = 3;
        cp = u & 0x0F;
    } else if (u >= 0xF0 && u <= 0xF4) {
        len = 4;
        cp = u & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000))
        return 0;
    return len;
}

size_t sw_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = sw_utf8_seq(p + i, n - i);
        if (k == 0)
            break;
        i += k;
    }
    return i;
}
