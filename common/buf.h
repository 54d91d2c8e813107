/* buf.h — a growable byte buffer with an optional hard bound.
 *
 * Bytes are data + len; data is always NUL-terminated past len so text can
 * be passed to C string functions. A bound (max > 0) caps len: appends that
 * would pass it fail with SW_ETOOLARGE and leave the buffer unchanged. */
#ifndef SW_COMMON_BUF_H
#define SW_COMMON_BUF_H

#include <stddef.h>
#include <sys/uio.h>

typedef struct sw_buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated (excluding the NUL slot) */
    size_t max; /* 0 = unbounded */
} sw_buf_t;

/* Initialise an embedded buffer; max 0 = unbounded. */
void sw_buf_init(sw_buf_t *b, size_t max);
/* Free the storage; the buffer is empty and reusable afterwards. */
void sw_buf_destroy(sw_buf_t *b);
/* Drop the contents, keep the storage. */
void sw_buf_reset(sw_buf_t *b);
/* Make room for n more bytes. 0 or SW_ETOOLARGE. */
int sw_buf_reserve(sw_buf_t *b, size_t n);
/* Append n bytes. 0 or SW_ETOOLARGE. */
int sw_buf_append(sw_buf_t *b, const void *p, size_t n);
int sw_buf_append_str(sw_buf_t *b, const char *s);
/* Append the pieces iov[0..iovcnt) (their concatenation); all or nothing.
 * 0 or SW_ETOOLARGE. */
int sw_buf_appendv(sw_buf_t *b, const struct iovec *iov, int iovcnt);
int sw_buf_printf(sw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Remove the first n bytes (n <= len). */
void sw_buf_consume(sw_buf_t *b, size_t n);
/* Hand the storage to the caller (heap, NUL-terminated); *len gets the
 * length. The buffer is empty afterwards. Returns NULL if empty. */
char *sw_buf_steal(sw_buf_t *b, size_t *len);

#endif
