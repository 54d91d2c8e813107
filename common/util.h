/* util.h — error codes, allocation, time and small helpers shared by every
 * module.
 *
 * Conventions (see README "House style"): functions return 0 on success or a
 * negative SW_E* code; constructors return NULL. Out-of-memory never
 * returns: sw_xmalloc() and friends log and abort(). */
#ifndef SW_COMMON_UTIL_H
#define SW_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Error codes. Negative on return; sw_strerror() names them. */
enum {
    SW_OK = 0,
    SW_ERR = -1,        /* generic failure, already logged */
    SW_EINVAL = -2,     /* bad argument or bad input */
    SW_ENOMEM = -3,     /* a bound was reached (not malloc: that aborts) */
    SW_EAGAIN = -4,     /* try again later (would block, lease busy) */
    SW_ELEASE = -5,     /* the lease is not ours (expired or stolen) */
    SW_EUNAVAIL = -6,   /* Redis (or another dependency) out of reach */
    SW_ECLOSED = -7,    /* peer or connection closed */
    SW_ENOTFOUND = -8,  /* no such key / event / state */
    SW_ETOOLARGE = -9,  /* input over a configured size bound */
    SW_EPROTO = -10,    /* protocol violation by the peer */
    SW_EBUSY = -11,     /* another holder has the resource */
    SW_ECONFLICT = -12, /* compare-and-set lost: the value changed since read */
    SW_EPERM = -13,     /* refused: not authenticated, not allowed */
};

/* Name of an SW_E* code ("SW_ELEASE"); never NULL. */
const char *sw_strerror(int err);

/* Allocation that never fails: on OOM logs once and aborts. */
void *sw_xmalloc(size_t n);
void *sw_xcalloc(size_t nmemb, size_t size);
void *sw_xrealloc(void *p, size_t n);
char *sw_xstrdup(const char *s);
char *sw_xstrndup(const char *s, size_t n);
/* printf into a fresh heap string; caller frees. */
char *sw_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Recover the owner of an embedded member (libev watchers). */
#define sw_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define SW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SW_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic clock in milliseconds / nanoseconds (CLOCK_MONOTONIC). */
uint64_t sw_now_ms(void);
uint64_t sw_now_ns(void);
/* Wall clock in milliseconds since the epoch (CLOCK_REALTIME). */
uint64_t sw_wall_ms(void);

/* Fill buf with n cryptographically random bytes (OpenSSL RAND_bytes).
 * Aborts if the CSPRNG fails: nothing secure can be made without it. */
void sw_random_bytes(void *buf, size_t n);
/* Write 2*nbytes lowercase hex chars of randomness + NUL into out
 * (out must hold 2*nbytes+1). Used for tokens, conn ids and lease ids. */
void sw_random_hex(char *out, size_t nbytes);

/* Constant-time comparison of two byte strings (CRYPTO_memcmp); returns 1
 * when equal. Lengths are compared too (length is not secret). */
int sw_secure_equal(const void *a, size_t alen, const void *b, size_t blen);

/* The decimal digits of v into out (no sign, no NUL; at most
 * SW_U64_DIGITS bytes); returns how many. For hot paths that must not go
 * through printf. */
#define SW_U64_DIGITS 20
size_t sw_u64_dec(char *out, uint64_t v);

/* Length of the UTF-8 sequence at p (n >= 1 bytes available), 0 when it
 * is invalid or cut short (RFC 3629 §3-4: no overlong forms, no
 * surrogates, at most U+10FFFF; the rules jansson applies to strings). */
size_t sw_utf8_seq(const unsigned char *p, size_t n);

/* Length of the longest prefix of s[0..n) that is valid UTF-8 and ends on
 * a character boundary: n when all of s is valid. For text that must go
 * into a JSON string (an error message quoting client input, a third-party
 * library's message cut at a fixed size). */
size_t sw_utf8_valid_prefix(const char *s, size_t n);

/* Set O_NONBLOCK and FD_CLOEXEC on fd. Returns 0 or SW_ERR (logged). */
int sw_fd_nonblock(int fd);

#endif
