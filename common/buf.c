#include "common/buf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

void sw_buf_init(sw_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sw_buf_destroy(sw_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void sw_buf_reset(sw_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int sw_buf_reserve(sw_buf_t *b, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n))
        return SW_ETOOLARGE;
    size_t need = b->len + n;
    if (need <= b->cap && b->data)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = sw_xrealloc(b->data, cap + 1);
    b->cap = cap;
    return 0;
}

int sw_buf_append(sw_buf_t *b, const void *p, size_t n)
{
    int rc = sw_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int sw_buf_appendv(sw_buf_t *b, const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    int rc = sw_buf_reserve(b, n);
    if (rc)
        return rc;
    for (int i = 0; i < iovcnt; i++)
        (void)sw_buf_append(b, iov[i].iov_base, iov[i].iov_len); /* room reserved */
    return 0;
}

int sw_buf_append_str(sw_buf_t *b, const char *s)
{
    return sw_buf_append(b, s, strlen(s));
}

int sw_buf_printf(sw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return SW_EINVAL;
    if ((size_t)n < sizeof(small))
        return sw_buf_append(b, small, (size_t)n);
    int rc = sw_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void sw_buf_consume(sw_buf_t *b, size_t n)
{
    if (n >= b->len) {
        sw_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *sw_buf_steal(sw_buf_t *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (p && b->len == 0) {
        free(p);
        p = NULL;
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
