/* rawconn.h — raw TCP for hostile-input tests: bytes go out exactly as
 * given (at once, split, or dribbled with pauses) and answers are read
 * with deadlines, so that malformed requests and frames reach the server
 * unchanged.
 *
 *  - HTTP/1.1 answers are parsed by hand: status line, header lines and a
 *    body framed by Content-Length, chunked coding or the end of the
 *    connection (RFC 9112 §6.3). Several answers on one connection
 *    (pipelining) are read one after the other.
 *  - WebSocket (RFC 6455): an upgrade with a valid key, client frames built
 *    byte by byte with any FIN, RSV bits and opcode, masked or not, with
 *    the payload length in the 7-, 16- or 64-bit form and a declared
 *    length that may differ from the bytes that follow (§5.2); server
 *    frames read and parsed, close frames with their status code and
 *    reason (§5.5.1).
 *
 * Everything blocks on the caller's thread (poll with deadlines on the
 * monotonic clock); distinct sw_raw_t may be used from distinct threads.
 * Nothing here asserts: results are returned for the caller to judge. */
#ifndef SW_TESTS_RAWCONN_H
#define SW_TESTS_RAWCONN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct sw_raw {
    int fd;
    sw_buf_t in; /* bytes read and not consumed yet */
    int eof;     /* the peer closed the connection (EOF or reset) */
    int reset;   /* ... with a reset (ECONNRESET) */
} sw_raw_t;

/* A TCP connection to 127.0.0.1:port within timeout_ms; NULL on failure. */
sw_raw_t *sw_raw_connect(int port, int timeout_ms);

/* Close the socket and free r (NULL is a no-op). */
void sw_raw_free(sw_raw_t *r);

/* Write all bytes (at most 5 s). 0, SW_ECLOSED when the peer is gone
 * (EPIPE, reset; what it sent before can still be read), SW_ERR on another
 * error or the time limit. */
int sw_raw_send(sw_raw_t *r, const void *bytes, size_t len);

/* Write bytes `chunk` at a time with gap_ms between the pieces. Stops early
 * when the peer closes, or (stop_on_input) as soon as the peer sent
 * anything (kept in r->in). Returns the number of bytes written. */
size_t sw_raw_dribble(sw_raw_t *r, const void *bytes, size_t len, size_t chunk, int gap_ms,
                      int stop_on_input);

/* Read what arrives within timeout_ms (once) into r->in: the byte count,
 * 0 on timeout, SW_ECLOSED when the peer closed (r->eof set). */
int sw_raw_read_some(sw_raw_t *r, int timeout_ms);

/* Read (keeping the bytes in r->in) until the peer closes: 1 when it did
 * within timeout_ms, 0 otherwise. */
int sw_raw_wait_closed(sw_raw_t *r, int timeout_ms);

/* ---- HTTP answers ----------------------------------------------------- */

typedef struct sw_http_resp {
    int status; /* from the status line */
    char *head; /* status line and header lines, CRLF separated (heap) */
    char *body; /* heap, NUL-terminated; "" when empty */
    size_t body_len;
} sw_http_resp_t;

/* Read one complete answer from r (bytes already in r->in first) within
 * timeout_ms and remove it from r->in. head_req: the request was HEAD (no
 * body follows the head). An event stream (Content-Type text/event-stream
 * without Content-Length) is returned with its head only: its body is
 * what follows in r->in, and never ends. Returns 1 with *out filled (free with
 * sw_http_resp_clear), 0 when no complete answer came in time,
 * SW_ECLOSED when the connection ended first (nothing or a partial
 * answer), SW_EINVAL when the bytes are not an HTTP/1.x answer. */
int sw_raw_http_response(sw_raw_t *r, int head_req, int timeout_ms, sw_http_resp_t *out);

/* The value of header `name` (case-insensitive, first occurrence, blanks
 * around it removed) as a heap string, or NULL. */
char *sw_http_resp_header(const sw_http_resp_t *resp, const char *name);

void sw_http_resp_clear(sw_http_resp_t *resp);

/* ---- WebSocket -------------------------------------------------------- */

/* Connect and upgrade `path` with a valid random key and version 13 (plus
 * extra_headers: NULL or CRLF-terminated lines). Returns the connection
 * after a 101 whose Sec-WebSocket-Accept matches; otherwise NULL, with
 * the status in *status (-1 without an answer) when status is not NULL.
 * Bytes after the 101 head stay in r->in. */
sw_raw_t *sw_raw_ws_open(int port, const char *path, const char *extra_headers, int timeout_ms,
                         int *status);

/* Length forms for sw_ws_frame_head: the shortest one, or a given one
 * (RFC 6455 §5.2 demands the shortest; the others are for hostile tests). */
enum { SW_WS_LEN_MIN = 0, SW_WS_LEN_7 = 7, SW_WS_LEN_16 = 16, SW_WS_LEN_64 = 64 };

/* Append a frame header: FIN bit, RSV bits (rsv: 0..7, RSV1 = 4), opcode
 * (0..15), the MASK bit and a masking key when masked, and `declared` as
 * the payload length in the form `lenform`. mask (4 bytes) gets the key
 * used (fixed, non-zero) for sw_ws_frame_payload. */
void sw_ws_frame_head(sw_buf_t *b, int fin, int rsv, int opcode, int masked, uint64_t declared,
                      int lenform, uint8_t mask[4]);

/* Append payload bytes masked with `mask` (NULL: unmasked), starting at
 * payload offset `off` (for a payload appended in pieces). */
void sw_ws_frame_payload(sw_buf_t *b, const uint8_t *mask, const void *data, size_t len,
                         size_t off);

/* Append a whole frame: head (declared length = len, shortest form) and
 * payload. */
void sw_ws_frame(sw_buf_t *b, int fin, int rsv, int opcode, int masked, const void *data,
                 size_t len);

/* A frame read from the server. */
typedef struct sw_ws_in {
    int fin, rsv, opcode, masked;
    char *payload; /* heap, NUL-terminated (unmasked) */
    size_t len;
} sw_ws_in_t;

/* Read one frame within timeout_ms: 1 (free with sw_ws_in_clear), 0 on
 * timeout, SW_ECLOSED when the connection ended first. */
int sw_raw_ws_read(sw_raw_t *r, sw_ws_in_t *f, int timeout_ms);

void sw_ws_in_clear(sw_ws_in_t *f);

/* The status code of a close frame's payload (0 when it has none). */
int sw_ws_close_code(const sw_ws_in_t *f);

#endif
