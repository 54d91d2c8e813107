/* client.h — the "events" scenario of statewire-bench: N WebSocket clients
 * (libev, non-blocking, wslay client mode) in a closed loop.
 *
 * Each connection: TCP connect -> HTTP upgrade (RFC 6455 §4.1) -> hello
 * with a random token -> welcome -> hydrate (event id 1, router
 * /room/bench) -> the delta or error with id 1 -> then, in a closed loop,
 * one event {"type":"event","id":k,"name":EVENT,"payload":PAYLOAD} at a
 * time: the next is sent as soon as the delta or error with id k arrives.
 * Messages without id (fan-out deltas) and with other ids are ignored.
 *
 * Timeline: connections open in batches of SW_BENCH_RAMP_BATCH per loop
 * iteration; once every connection has either reached the closed loop or
 * failed (or SW_BENCH_SETUP_TIMEOUT_S passed: the rest count as failed),
 * the warm-up runs for warmup_s (nothing recorded), then the measure
 * window for duration_s. An event counts when it was sent and answered
 * inside the window. SIGINT/SIGTERM end the window early.
 *
 * A connection the server closes after setup counts as dropped and is not
 * reopened. Bounds: messages over SW_BENCH_MAX_MESSAGE bytes fail the
 * connection (wslay answers 1009, counted as dropped); at most one event
 * per connection is in flight. */
#ifndef SW_BENCH_CLIENT_H
#define SW_BENCH_CLIENT_H

#include <stdint.h>

#include <jansson.h>

#include "hist.h"

#define SW_BENCH_RAMP_BATCH 100
#define SW_BENCH_SETUP_TIMEOUT_S 30.0
#define SW_BENCH_MAX_MESSAGE (64u * 1024u * 1024u)
#define SW_BENCH_RTT_MAX_NS (60ull * 1000 * 1000 * 1000) /* histogram bound: 60 s */

typedef struct sw_bench_opts {
    const char *host; /* numeric address or name */
    int port;
    const char *path; /* "/_event" */
    int connections;
    double duration_s; /* measure window */
    double warmup_s;
    const char *event;   /* event name, "counter.increment" */
    const char *payload; /* JSON object text, "{}" */
} sw_bench_opts_t;

typedef struct sw_bench_result {
    int conn_ok;            /* reached the closed loop */
    int conn_failed;        /* connect, upgrade, hello or hydrate failed or timed out */
    int conn_dropped;       /* closed by the server (or an error) after setup */
    uint64_t events;        /* events answered with a delta in the window */
    uint64_t errors;        /* events answered with an error in the window */
    json_t *errors_by_code; /* {"code": n} for `errors`; owned */
    uint64_t setup_errors;  /* hydrate answered with an error (not in the window) */
    double measured_s;      /* actual length of the window, seconds */
    sw_hist_t rtt;          /* round-trip times in ns of answered events */
} sw_bench_result_t;

/* Called (blocking is fine) right before the window opens and right after
 * it closes: the place for CPU snapshots. */
typedef void (*sw_bench_hook_fn)(void *udata);

/* Run the scenario. res is initialised by the call (release with
 * sw_bench_result_destroy) and filled when it returns. Returns 0, or
 * SW_EINVAL for bad options (the host does not resolve, payload is not a
 * JSON object; logged). */
int sw_bench_run(const sw_bench_opts_t *o, sw_bench_hook_fn on_start, sw_bench_hook_fn on_end,
                 void *udata, sw_bench_result_t *res);

void sw_bench_result_destroy(sw_bench_result_t *res);

#endif
