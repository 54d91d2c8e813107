/* conn_driver.h — runs one fuzz input through worker/conn.c, for the
 * connection harnesses (fuzz_http.c, fuzz_ws.c).
 *
 * One connection per input: a socketpair, one end handed to sw_conn_new
 * on a libev loop, the input written into the other end in pieces, the
 * loop run with EVRUN_NOWAIT until quiet after each piece, the server's
 * output read and discarded, then sw_conn_env_destroy, so that nothing is
 * carried from one input to the next.
 *
 * An input starts with a control byte, then one gap byte per cut:
 *   bits 0-2  number of cuts (0..7): the stream is written in that many
 *             pieces + 1, cut after gap[0], gap[0] + gap[1], ... bytes
 *             (of the part after `fixed_len` bytes written first, see
 *             fz_conn_run); a gap of 0 cuts right there
 *   bit 3     half-close (SHUT_WR) the client side after the last piece
 *   bit 4     HTTP requests are answered later by the harness, not inside
 *             on_http (as a forwarded SSE POST is, on the publish's ack):
 *             after the piece that carried them was written and the loop
 *             went quiet; a pipelined request parsed after that answer
 *             waits for the next piece, or for the client's half-close or
 *             close, to be answered
 *   bits 5-6  after each piece the clock jumps by 0, 1.1, 2.2 or 3.3 s
 *             (pings, ping timeout, hibernation, close timeout); the
 *             clock is the process's own (clock_gettime is wrapped), up
 *             to 30 s ahead during an input: libFuzzer's -timeout must
 *             be longer (its alarm reads the same clock)
 *   bit 7     small socket buffers, and the client reads the server's
 *             output only at the end (output waiting for EV_WRITE)
 *
 * The callbacks act as the worker's do (worker/worker.c, session.c):
 * routes answered with sw_conn_http_reply, sw_conn_http_error (the body
 * quoted in the message), sw_static_serve, event streams
 * (sw_conn_sse_start / sw_conn_sse_send); upgrades accepted or refused
 * by on_open (by the Origin header: "http://refused" answered 403,
 * "http://silent" refused without an answer, "http://close" accepted and
 * closed at once); the first WebSocket message greeted
 * (sw_conn_ws_greeted) and welcomed, the others echoed with sw_conn_send /
 * sw_conn_sendv, closes with sw_conn_close; a request answered later is
 * held with sw_conn_ref as session.c holds a forwarded POST's. Timeouts
 * (http_timeout_ms 1.5 s, pings) fire with the clock jumps. Checked
 * (abort() on failure): on_close exactly once for each conn that on_open
 * accepted or that became an event stream and only for those, no message
 * over max_message_bytes or not UTF-8 reaches on_message, nothing can be
 * sent from on_open, and the env is empty after sw_conn_env_destroy. */
#ifndef SW_FUZZ_CONN_DRIVER_H
#define SW_FUZZ_CONN_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/* The bounds the driver's env uses (small, so that inputs reach them). */
#define FZ_MAX_MESSAGE 1024
#define FZ_MAX_SEND 4096
#define FZ_MAX_HEADER 1024
#define FZ_MAX_BODY 2048

/* Split off the control byte and the gaps. Returns the number of header
 * bytes used (0 when the input is too short for them). */
typedef struct fz_plan {
    uint8_t flags;
    int ncuts;
    uint8_t gaps[7];
} fz_plan_t;

size_t fz_plan_parse(const uint8_t *data, size_t size, fz_plan_t *plan);

/* Run stream[0..len) through a fresh connection per plan; the first
 * fixed_len bytes are written with the first piece (cuts count from
 * there). */
void fz_conn_run(const fz_plan_t *plan, const uint8_t *stream, size_t len, size_t fixed_len);

#endif
