/* inbox.h — messages between workers (of one host or of several), sent
 * with PUBLISH to the channel "inbox:<holder id>" of the worker they are
 * for (worker/store.h: sw_store_publish, sw_store_subscribe).
 *
 * Four commands, one struct; encode and decode live here alone, like
 * nginx's ngx_channel_t with a switch on its command:
 *
 *   LEASE_WANTED  another worker waits for a token's lease this worker
 *                 holds (the oplock): finish and give it back.
 *                 Wire: "<token>"
 *   CLOSE_SOCKET  a resumed connection replaced one of this worker's
 *                 sockets of that token: close it.
 *                 Wire: "C:<token>:<sockid>"
 *   POST          a POST /_event for one of this worker's event streams,
 *                 received by another worker; answer to `reply_to`.
 *                 Wire: "P:<post id>:<reply holder>:<request body>"
 *   POST_ANSWER   the answer to a POST this worker forwarded: the number
 *                 of messages queued, or -403 / -404.
 *                 Wire: "A:<post id>:<result>"
 *
 * Bounds: token 1..SW_TOKEN_MAX bytes, sockid 1..SW_INBOX_ID_MAX, holder
 * 1..SW_INBOX_ID_MAX, post id up to 20 decimal digits, result a decimal
 * int; the body is any length (the HTTP body bound applies before). A
 * message outside them does not decode (SW_EINVAL): the receiver logs and
 * drops it; no command is half-applied. */
#ifndef SW_WORKER_INBOX_H
#define SW_WORKER_INBOX_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Longest holder id or socket id an inbox message carries. */
#define SW_INBOX_ID_MAX 64

/* "inbox:" + holder id + NUL. */
#define SW_INBOX_CHANNEL_MAX (6 + SW_INBOX_ID_MAX + 1)

typedef enum sw_inbox_cmd {
    SW_INBOX_LEASE_WANTED = 1,
    SW_INBOX_CLOSE_SOCKET,
    SW_INBOX_POST,
    SW_INBOX_POST_ANSWER,
} sw_inbox_cmd_t;

/* One inbox message. Every pointer + length is a view: into the caller's
 * bytes for sw_inbox_encode, into the decoded bytes for sw_inbox_decode
 * (valid while they are). */
typedef struct sw_inbox_msg {
    sw_inbox_cmd_t cmd;
    const char *token; /* LEASE_WANTED, CLOSE_SOCKET */
    size_t token_len;
    const char *sockid; /* CLOSE_SOCKET */
    size_t sockid_len;
    uint64_t post_id;     /* POST, POST_ANSWER: the forwarding worker's id */
    const char *reply_to; /* POST: the forwarding worker's holder id */
    size_t reply_to_len;
    const char *body; /* POST: the HTTP request body (JSON), as received */
    size_t body_len;
    int result; /* POST_ANSWER: messages queued (>= 0), or -403 / -404 */
} sw_inbox_msg_t;

/* Append the wire form of m to out. 0, or SW_EINVAL when a field is out
 * of its bound or holds the separator ':' where the format forbids it (out
 * is then unchanged). */
int sw_inbox_encode(const sw_inbox_msg_t *m, sw_buf_t *out);

/* Decode data[0..len) into *m (views into data). 0, or SW_EINVAL for a
 * message of no known shape or out of bounds (*m is then zeroed). */
int sw_inbox_decode(const char *data, size_t len, sw_inbox_msg_t *m);

/* The channel of holder id `holder` (holder_len bytes): "inbox:<holder>"
 * into out (SW_INBOX_CHANNEL_MAX bytes). 0, or SW_EINVAL when holder is
 * empty or longer than SW_INBOX_ID_MAX. */
int sw_inbox_channel(const char *holder, size_t holder_len, char out[SW_INBOX_CHANNEL_MAX]);

#endif
