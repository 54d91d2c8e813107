/* wsclient.h — a blocking WebSocket client (RFC 6455, client side framing
 * by wslay) and a one-shot HTTP/1.1 client, for the integration tests.
 *
 * Everything runs on the caller's thread over TCP: each call blocks until it
 * is done or its timeout (milliseconds, measured on the monotonic clock)
 * passes. Failures are logged once with sw_log(SW_LOG_WARN, ...) (stderr)
 * and reported by the return value.
 *
 * Incoming messages: every complete text message the client reads goes to
 * one FIFO queue (the backlog). sw_wsc_recv_text()/sw_wsc_recv_json() take
 * the oldest queued message first and read from the socket only when the
 * queue is empty; sw_wsc_wait() takes the first queued or newly read
 * message that matches and leaves the others queued, in order, for later
 * calls. Nothing is lost. Bound: at most SW_WSC_MAX_QUEUED messages are
 * queued; past it the oldest is dropped with a warning. Messages over
 * SW_WSC_MAX_MESSAGE bytes fail the connection (close 1009, wslay).
 * Pings are answered with pongs (wslay) while reading, unless turned off
 * with sw_wsc_set_auto_pong(); binary messages are ignored. */
#ifndef SW_TESTS_WSCLIENT_H
#define SW_TESTS_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SW_WSC_MAX_QUEUED 4096
#define SW_WSC_MAX_MESSAGE (16u * 1024u * 1024u)

typedef struct sw_wsc sw_wsc_t;

/* Connect to host:port over TCP (host: numeric address or name,
 * getaddrinfo) and upgrade `path` ("/_event") to a WebSocket: GET with a
 * random 16-byte Sec-WebSocket-Key, then check for "101", "Upgrade:
 * websocket" and a Sec-WebSocket-Accept equal to sw_ws_accept_key() of our
 * key (RFC 6455 §4.1, §4.2.2). The whole handshake must finish within
 * timeout_ms. Returns the client (free with sw_wsc_free), or NULL on
 * failure (reason logged). */
sw_wsc_t *sw_wsc_connect(const char *host, int port, const char *path, int timeout_ms);

/* sw_wsc_connect with `extra_headers` (NULL, or CRLF-terminated header
 * lines such as "Origin: http://a.example\r\n") in the upgrade request.
 * When status is not NULL it gets the HTTP status of the answer (101, or
 * a refusal such as 403; -1 when there was none), and a refusal is not
 * logged; when body is not NULL it gets the refusal's body (heap, caller
 * frees; NULL after a 101 or without an answer). */
sw_wsc_t *sw_wsc_connect_ex(const char *host, int port, const char *path, const char *extra_headers,
                            int timeout_ms, int *status, char **body);

/* Send one text message (a single masked frame; masks from RAND_bytes).
 * data need not be NUL-terminated and need not be valid UTF-8 (hostile
 * tests). Blocks until written (at most 5 s). Returns 0, SW_ECLOSED when
 * the connection is closed or closing, SW_ERR on a socket error
 * (logged). */
int sw_wsc_send_text(sw_wsc_t *c, const char *data, size_t len);

/* Send msg (borrowed) encoded as compact JSON in one text message. Same
 * returns as sw_wsc_send_text, SW_EINVAL if msg cannot be encoded. */
int sw_wsc_send_json(sw_wsc_t *c, const json_t *msg);

/* Write raw bytes to the socket, bypassing the framing (for hostile tests:
 * bad frames, unmasked frames, garbage). Blocks until written (at most
 * 5 s). Returns 0, SW_ECLOSED, or SW_ERR (logged). */
int sw_wsc_send_raw(sw_wsc_t *c, const void *bytes, size_t len);

/* The next complete text message: a heap copy, NUL-terminated (caller
 * frees), with its length in *len if len is not NULL. Queued messages come
 * first. Returns NULL on timeout, or when the peer closed and the queue is
 * empty (then sw_wsc_closed() is 1 and sw_wsc_close_code() holds the
 * peer's close code, if it sent one). timeout_ms 0 only drains what is
 * already readable. */
char *sw_wsc_recv_text(sw_wsc_t *c, size_t *len, int timeout_ms);

/* The next message parsed as JSON: new reference, or NULL on timeout,
 * close, or a message that is not JSON (consumed, logged). */
json_t *sw_wsc_recv_json(sw_wsc_t *c, int timeout_ms);

/* The first message (queued or new) that is a JSON object whose "type"
 * equals `type` (any type when NULL) and, when id >= 0, whose integer
 * "id" equals id. Other
 * messages stay queued, in order. Returns a new reference, or NULL on
 * timeout or close. */
json_t *sw_wsc_wait(sw_wsc_t *c, const char *type, int64_t id, int timeout_ms);

/* Send {"type":"hello"} with "token" (when token is not NULL) and "resume"
 * (when resume is not NULL; borrowed, e.g. {"conn_id":..,"conn_token":..,
 * "last_seq":..}) and wait for the "welcome". Messages before it (e.g. an
 * error bad_resume) stay queued. Returns the welcome (new reference) or
 * NULL on timeout / close / send failure. */
json_t *sw_wsc_hello(sw_wsc_t *c, const char *token, const json_t *resume, int timeout_ms);

/* 1 when the connection is over: the peer's close frame arrived, or the
 * socket reached EOF or an error. Does not read from the socket (call a
 * recv function to learn about a close). */
int sw_wsc_closed(const sw_wsc_t *c);

/* The status code of the peer's close frame (RFC 6455 §7.4), 0 if none
 * was received (or it carried none). */
int sw_wsc_close_code(const sw_wsc_t *c);

/* Start the closing handshake: send a close frame with `code` (0: no
 * status code). Does not wait for the peer's close; later recv calls
 * still return queued messages and see the peer's close. Idempotent. */
void sw_wsc_close(sw_wsc_t *c, int code);

/* Close the socket and free everything, queued messages included. NULL is
 * a no-op. Sends no close frame (call sw_wsc_close first for a clean
 * close). */
void sw_wsc_free(sw_wsc_t *c);

/* on = 0: stop answering pings (a peer that looks dead to the server's
 * liveness check). wslay still queues a pong for each ping read; they stay
 * queued (unbounded, a few bytes each) and go out with the next message
 * sent or the reply to the server's close. on = 1 (the default): pongs go
 * out as pings are read. */
void sw_wsc_set_auto_pong(sw_wsc_t *c, int on);

/* The socket fd (for poll or shutdown in tests); owned by c. */
int sw_wsc_fd(const sw_wsc_t *c);

/* One HTTP/1.1 request with "Connection: close" to host:port: `method`
 * ("GET", "POST"), `path` (with query), and `body` (NULL for none; sent
 * with Content-Type: application/json and Content-Length). Reads the whole
 * response (until EOF, parsed by http-parser, chunked bodies decoded;
 * body bound 16 MiB) within timeout_ms. Returns the status code and, if
 * resp_body is not NULL, the body in *resp_body (heap, NUL-terminated,
 * "" if empty; caller frees; NULL on failure). Returns -1 on a connect,
 * I/O, parse error or timeout (logged). */
int sw_test_http(const char *host, int port, const char *method, const char *path, const char *body,
                 char **resp_body, int timeout_ms);

/* sw_test_http with extra request headers: NULL, or CRLF-terminated
 * lines ("Origin: http://a.example\r\n"). */
int sw_test_http_ex(const char *host, int port, const char *method, const char *path,
                    const char *extra_headers, const char *body, char **resp_body, int timeout_ms);

#endif
