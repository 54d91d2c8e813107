/* credentials.h — signed credentials of event streams.
 *
 * An event stream's client sends its messages with POST /_event to any
 * worker of any host; the worker that owns the stream is named in the
 * stream's conn_id. So that every worker can refuse a made-up conn_id or
 * a wrong conn_token by itself, without asking Redis or the owner, both
 * are derived from a key that every worker of the deployment shares
 * (--secret, or the random key kept in Redis: sw_store_secret):
 *
 *   conn_id    = <holder> "_" <n> "_" hex(HMAC-SHA256(K, "id|" <holder> "_" <n>))[0..16)
 *   conn_token = hex(HMAC-SHA256(K, "token|" conn_id))[0..32)
 *
 * where K = SHA-256("statewire stream credentials|" secret), <holder> is
 * the owning worker's lease holder id ([A-Za-z0-9-], no "_") and <n> its
 * connection number. HMAC per RFC 2104 with SHA-256 (FIPS 180-4), through
 * OpenSSL's EVP_Q_mac; comparisons in constant time (CRYPTO_memcmp). The
 * 64-bit tag of a conn_id only says "made by a worker of this deployment";
 * the 128-bit conn_token is the secret that proves the client is the
 * stream's. */
#ifndef SW_WORKER_CREDENTIALS_H
#define SW_WORKER_CREDENTIALS_H

#include <stddef.h>
#include <stdint.h>

/* Hex characters of a conn_id's tag and of a conn_token. */
#define SW_CRED_TAG_HEX 16
#define SW_CRED_TOKEN_HEX 32

typedef struct sw_cred_key {
    unsigned char k[32];
} sw_cred_key_t;

/* Derive the key from the deployment's secret (len > 0 bytes). */
void sw_cred_key_init(sw_cred_key_t *key, const void *secret, size_t len);

/* Make the conn_id of connection n of worker `holder` into out (cap
 * bytes). Returns its length, or SW_EINVAL (holder empty, holding "_", or
 * out too small). */
int sw_cred_stream_id(const sw_cred_key_t *key, const char *holder, uint64_t n, char *out,
                      size_t cap);

/* The conn_token of conn_id (SW_CRED_TOKEN_HEX chars + NUL into out). */
void sw_cred_stream_token(const sw_cred_key_t *key, const char *conn_id,
                          char out[SW_CRED_TOKEN_HEX + 1]);

/* 1 when conn_id has the form above and a valid tag; then *holder_len is
 * the length of its <holder> part. 0 otherwise. */
int sw_cred_check_id(const sw_cred_key_t *key, const char *conn_id, size_t *holder_len);

/* 1 when conn_token is conn_id's (constant time), else 0. */
int sw_cred_check_token(const sw_cred_key_t *key, const char *conn_id, const char *conn_token);

#endif
