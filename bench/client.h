/* client.h — the scenarios of statewire-bench: N WebSocket clients (libev,
 * non-blocking, wslay client mode, one thread). See bench/README.md.
 *
 * Scenario "events":
 * Each connection: TCP connect -> HTTP upgrade (RFC 6455 §4.1) -> hello
 * with a random token -> welcome -> hydrate (event id 1, router
 * `route`, /room/bench by default) -> the delta or error with id 1 -> then, in a closed loop,
 * one event {"type":"event","id":k,"name":EVENT,"payload":PAYLOAD} at a
 * time: the next is sent as soon as the delta or error with id k arrives.
 * Messages without id (fan-out deltas) and with other ids are ignored.
 *
 * Open loop (opts.events_rate > 0, scenario events only): no event follows
 * an answer by itself. From the start of the warm-up, a timer (every
 * SW_BENCH_RATE_TICK_S) and each loop iteration release the events due by
 * then: event k (from 0) is due at start + k / events_rate and goes to the
 * next live connection in round-robin order. A connection with no event in
 * flight sends it at once; otherwise it is queued on that connection
 * (counted as queued behind a previous event) and sent when the previous
 * answer arrives. Its RTT runs from its due time, not from its actual
 * send, so a slow answer also delays the measure of the events behind it
 * (no coordinated omission); the release lag (due -> sent, events sent at
 * once) is reported apart. Bound: SW_BENCH_RATE_QUEUE_MAX queued events
 * per connection; an event due on a full queue is not sent and counts as
 * queue_full. Figures count the events due inside the window.
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
 * per connection is in flight.
 *
 * Scenario "fanout": rooms * room_size clients, client i hydrates on
 * /room/bench-<i / room_size>; a client is set up once the answer to its
 * hydrate and then its on_load delta (a delta without id that carries
 * room.loads; SW_BENCH_ONLOAD_WAIT_S at most) arrived. Then the first
 * client of each room (the sender) sends counter.increment open loop,
 * timer-driven, `rate` per second, through warm-up and window; every
 * client of the room (the sender too, by its answer) records for each
 * delta carrying counter.count = c the time since the send of the
 * increment that produced c (count c is the k-th increment after the
 * room's count at the start, the sender's last seen count; an increment
 * answered with an error is taken out of that numbering). Only increments
 * sent in the window are recorded. After the window, up to
 * SW_BENCH_GRACE_S for the last counts to arrive; a count skipped or never
 * reached counts as a missing delivery.
 *
 * Scenario "hotroom": like "events" with counter.increment, all clients on
 * /room/hot-<random>. After the window no event is sent any more; up to
 * SW_BENCH_DRAIN_S for the answers in flight, then one fresh client
 * hydrates on the room twice (the second full delta holds what the
 * first's on_load linked) and reads counter.count.
 *
 * Scenario "idle": every client sends hello and hydrate (route `route`,
 * "/" by default), then sends nothing; the window (duration_s, no
 * warm-up) holds the connections open. The report reads the server's
 * memory before the first connect and at the end of the window.
 *
 * Scenario "resume" (statewire protocol only): every client sends hello,
 * hydrate (route `route`, "/" by default) and two increments in a closed
 * loop, keeping the welcome's conn_id / conn_token and the highest seq
 * seen (welcome or delta). Once all are set up the window opens (no
 * warm-up) and, with kill_pid, the first child of that master
 * (/proc/PID/task/PID/children; it must have 2 or more) gets SIGKILL. A
 * client whose connection then ends (EOF, close, error) reconnects at
 * once (new TCP connection, upgrade, hello with resume {conn_id,
 * conn_token, last_seq}); a failed attempt counts as a reconnect error
 * and is retried after SW_BENCH_RETRY_S. Per drop: "welcome" time = drop
 * noticed -> welcome with resumed:true; then one increment is sent and
 * "working" time = drop -> its answer; deltas in between are the resume
 * sync (full or replayed). A welcome without resumed:true ends the
 * client's episode as a failed resume. The window ends after duration_s,
 * or earlier once at least one drop happened, every drop is settled and
 * SW_BENCH_RESUME_QUIET_S passed since the last drop.
 *
 * Protocol socketio (opts.socketio): the same messages inside Engine.IO v4
 * / Socket.IO v5 framing over the WebSocket, for a Socket.IO server
 * (https://socket.io/docs/v4/socket-io-protocol/,
 * https://socket.io/docs/v4/engine-io-protocol/): the path is
 * /socket.io/?EIO=4&transport=websocket; after the upgrade the client waits
 * for the Engine.IO open packet `0{...}`, sends `40` (CONNECT to the main
 * namespace), waits for `40{"sid":..}`, then sends each client message M
 * as `42["event",M]` and takes each server message from
 * `42["message",M]`. Engine.IO pings `2` are answered `3` at once; `41`
 * (DISCONNECT), `44` (CONNECT_ERROR) and `1` (close) fail the
 * connection. */
#ifndef SW_BENCH_CLIENT_H
#define SW_BENCH_CLIENT_H

#include <stdint.h>

#include <jansson.h>

#include "hist.h"

#define SW_BENCH_RAMP_BATCH 100
#define SW_BENCH_SETUP_TIMEOUT_S 30.0
#define SW_BENCH_MAX_MESSAGE (64u * 1024u * 1024u)
#define SW_BENCH_RTT_MAX_NS (60ull * 1000 * 1000 * 1000) /* histogram bound: 60 s */
#define SW_BENCH_ONLOAD_WAIT_S 2.0   /* fanout: wait for the on_load delta at most */
#define SW_BENCH_GRACE_S 2.0         /* fanout: wait for the last counts after the window */
#define SW_BENCH_DRAIN_S 10.0        /* hotroom: wait for answers in flight, then for the reader */
#define SW_BENCH_RETRY_S 0.05        /* resume: pause before another reconnect attempt */
#define SW_BENCH_RESUME_QUIET_S 1.0  /* resume: end early this long after the last drop */
#define SW_BENCH_RATE_TICK_S 0.001   /* events open loop: release period of the timer */
#define SW_BENCH_RATE_QUEUE_MAX 4096 /* events open loop: queued events per connection */

typedef enum sw_bench_scenario {
    SW_BENCH_EVENTS,
    SW_BENCH_FANOUT,
    SW_BENCH_HOTROOM,
    SW_BENCH_IDLE,
    SW_BENCH_RESUME
} sw_bench_scenario_t;

typedef struct sw_bench_opts {
    const char *host; /* numeric address or name */
    int port;
    const char *path; /* "/_event" */
    int connections;
    double duration_s; /* measure window */
    double warmup_s;
    const char *event;   /* event name, "counter.increment" */
    const char *payload; /* JSON object text, "{}" */
    sw_bench_scenario_t scenario;
    int rooms;          /* fanout: number of rooms */
    int room_size;      /* fanout: clients per room (connections = rooms * room_size) */
    double rate;        /* fanout: increments per second per room */
    const char *route;  /* events, idle, resume: hydrate route path (NULL: events
                         * /room/bench, idle /); at most 47 bytes, no '"'
                         * or '\\' (checked: SW_EINVAL) */
    int socketio;       /* 1: Engine.IO / Socket.IO framing (see above) */
    int kill_pid;       /* resume: SIGKILL the first worker of this master when
                         * the window opens; 0: no kill (drops from outside) */
    double events_rate; /* events: open loop, events per second over all
                         * connections (see above); 0: closed loop */
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

    /* events open loop: figures of the events due inside the window */
    uint64_t scheduled;  /* due in the window */
    uint64_t sent;       /* ... and sent before the window closed */
    uint64_t queued;     /* ... of them queued behind a previous event */
    uint64_t queue_full; /* ... not sent: the connection's queue was full */
    uint64_t no_conn;    /* ... not sent: no live connection left */
    uint32_t max_queue;  /* deepest queue seen on one connection (whole run) */
    sw_hist_t send_lag;  /* ns, due time -> handed to the socket, for the events
                          * sent at once (not queued): the generator's own lag,
                          * part of every RTT */

    /* fanout */
    uint64_t onload_missing; /* set up without seeing the on_load delta */
    int rooms_active;        /* rooms whose sender reached the loop */
    uint64_t changes_sent;   /* increments sent in the window */
    uint64_t changes_acked;  /* ... answered with a delta */
    uint64_t sender_errors;  /* increments (any time) answered with an error */
    uint64_t deliveries;     /* deltas with a window count received (any client) */
    uint64_t expected;       /* changes_sent x clients set up in the room */
    uint64_t missing;        /* counts skipped or never reached (warm-up too) */
    int receivers_missing;   /* clients with at least one missing count */
    uint64_t stale;          /* deltas with a count not above the last seen */
    uint64_t unexpected;     /* deltas with a count above any sent */
    sw_hist_t delivery;      /* delivery latency, ns */

    /* hotroom */
    char room[64];         /* route path used */
    uint64_t acked_total;  /* increments answered with a delta, whole run */
    uint64_t errors_total; /* ... answered with an error, whole run */
    uint64_t unknown;      /* in flight when dropped or when the drain timed out */
    int reader_ok;         /* the final read succeeded */
    long long final_count; /* counter.count the fresh client read */

    /* resume (events / errors above: answers to the increment sent after
     * a resumed welcome) */
    int killed_pid;            /* worker killed, 0 = none */
    int workers;               /* children of the master before the kill */
    int kill_failed;           /* kill_pid set but no worker could be killed */
    int clients_dropped;       /* clients whose connection ended in the window */
    uint64_t drops;            /* connection ends in the window (a client may drop twice) */
    uint64_t resumed;          /* welcomes with resumed:true after a drop */
    uint64_t not_resumed;      /* welcomes without it (bad_resume included) */
    uint64_t bad_resume;       /* errors bad_resume answering the hello */
    uint64_t synced;           /* drops answered (delta or error) after a resumed welcome */
    uint64_t never_back;       /* drops with no resumed welcome by the end */
    uint64_t not_working;      /* resumed welcome, but no answer by the end */
    uint64_t reconnect_errors; /* failed attempts (connect, upgrade, close before welcome) */
    uint64_t full_deltas;      /* sync: deltas with "full":true before the answer */
    uint64_t replayed_deltas;  /* sync: other deltas before the answer (on a shared
                                * route fan-out deltas count here too) */
    uint64_t late_deltas;      /* full deltas after the answer (out of order) */
    sw_hist_t resume_welcome;  /* ns, drop -> resumed welcome */
    sw_hist_t resume_working;  /* ns, drop -> answer of the first increment */
} sw_bench_result_t;

/* Called (blocking is fine) right before the window opens and right after
 * it closes: the place for CPU snapshots. */
typedef void (*sw_bench_hook_fn)(void *udata);

/* Run the scenario o->scenario. res is initialised by the call (release with
 * sw_bench_result_destroy) and filled when it returns. Returns 0, or
 * SW_EINVAL for bad options (the host does not resolve, payload is not a
 * JSON object; logged). */
int sw_bench_run(const sw_bench_opts_t *o, sw_bench_hook_fn on_start, sw_bench_hook_fn on_end,
                 void *udata, sw_bench_result_t *res);

void sw_bench_result_destroy(sw_bench_result_t *res);

#endif
