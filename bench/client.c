/* client.c — the bench's WebSocket clients: one libev loop, wslay client
 * contexts on non-blocking sockets. */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "sysstat.h"
#include "worker/conn.h"

#define HEAD_MAX 16384
#define LOG_FAILURES_MAX 5                 /* connection failures logged one by one */
#define SIO_EVENT_HEAD "42[\"event\","     /* client message M -> 42["event",M] */
#define SIO_MESSAGE_HEAD "42[\"message\"," /* 42["message",M] -> server message M */

enum {
    ST_IDLE,
    ST_CONNECTING,
    ST_UPGRADE_SEND,
    ST_UPGRADE_RECV,
    ST_EIO_OPEN,    /* socketio: waiting for the Engine.IO open packet */
    ST_SIO_CONNECT, /* socketio: CONNECT sent, waiting for its answer */
    ST_WELCOME,
    ST_HYDRATE,
    ST_ONLOAD, /* fanout: hydrate answered, waiting for the on_load delta */
    ST_RUNNING,
    ST_DEAD
};

/* PH_DRAIN: after the window (fanout grace, hotroom drain and read) */
enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

enum { ROLE_CLIENT, ROLE_SENDER, ROLE_READER };

/* resume: where a client stands after the kill */
enum {
    RS_NONE,      /* not dropped (or its last drop is settled: RS_DONE/RS_FAILED) */
    RS_RECONNECT, /* dropped: reconnecting, waiting for the welcome */
    RS_SYNC,      /* resumed welcome: waiting for the answer to the increment */
    RS_DONE,      /* answered: working again */
    RS_FAILED     /* welcome without resumed:true */
};

typedef struct bench bench_t;
typedef struct room room_t;

typedef struct bconn {
    bench_t *b;
    int fd;
    int state;
    int settled;      /* counted as ok or failed */
    int dead_pending; /* tear down once the current callback is over */
    ev_io io;
    int io_events;
    sw_buf_t hs; /* handshake: request out, then response in */
    size_t hs_off;
    char accept[29]; /* expected Sec-WebSocket-Accept */
    wslay_event_context_ptr ws;
    char *pre; /* bytes past the 101 head, fed to wslay first */
    size_t pre_len, pre_off;
    int64_t next_id;  /* id of the next event */
    int64_t wait_id;  /* id whose answer we wait for */
    uint64_t sent_ns; /* send time; open loop: the due time */
    int in_flight;    /* wait_id not answered yet */
    uint64_t *rq;     /* open loop: due times of the queued events, a ring */
    uint32_t rq_head, rq_len, rq_cap;
    int role;
    room_t *room;       /* fanout */
    int64_t last_count; /* fanout: last counter.count seen */
    uint64_t missed;    /* fanout: counts skipped */
    uint64_t onload_ns; /* fanout: when the hydrate was answered */
    int member;         /* fanout: set up when sending started */
    char token[65];
    /* resume */
    char conn_id[65], conn_token[65]; /* from the last welcome */
    int64_t last_seq;                 /* highest seq seen (welcome or delta) */
    int setup_left;                   /* increments left before set up */
    int rstate;                       /* RS_* */
    int ep_welcomed;                  /* this drop got its resumed welcome */
    int dropped_once;
    uint64_t drop_ns; /* when this drop was noticed */
    ev_timer retry;   /* next reconnect attempt */
} bconn_t;

/* fanout: one room, its sender and the send time of every increment */
struct room {
    bench_t *b;
    char path[48];
    bconn_t *sender;
    int members;       /* clients set up in the room */
    int active;        /* the sender reached the loop */
    int64_t base;      /* count when sending started */
    int64_t first_id;  /* id of the first increment */
    uint64_t *send_ns; /* send_ns[k]: increment that makes count base + k + 1 */
    size_t nsent, cap;
    uint64_t sends;   /* increments sent (errors included) */
    uint64_t errors;  /* of them answered with an error */
    uint64_t answers; /* of them answered (delta or error) */
    ev_timer timer;
};

struct bench {
    struct ev_loop *loop;
    const sw_bench_opts_t *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bconn_t *conns;
    int n, started, settled, failures_logged;
    ev_check ramp_check;
    ev_idle ramp_idle;
    ev_timer phase_timer;
    ev_signal sigint, sigterm;
    ev_timer sweep; /* setup: on_load fallback; drain: end early */
    int phase;
    uint64_t measure_start_ns;
    char path[64]; /* events, hotroom: hydrate route */
    room_t *rooms; /* fanout */
    int nrooms;
    bconn_t *reader;       /* hotroom: reads the final count */
    uint64_t open_drops;   /* resume: drops not settled yet */
    uint64_t last_drop_ns; /* resume: when the last drop was noticed */
    int reader_started;
    char *ev_suffix;        /* ,"name":...,"payload":...} */
    int open_loop;          /* events with events_rate > 0 */
    ev_timer rate_timer;    /* wakes the loop every tick ... */
    ev_check rate_check;    /* ... and every loop iteration releases what is due */
    uint64_t rate_start_ns; /* event k is due at rate_start_ns + k / rate */
    uint64_t released;      /* events released so far (k of the next one) */
    int rr;                 /* next connection, round robin */
    sw_bench_result_t *res;
    sw_bench_hook_fn on_start, on_end;
    void *udata;
};

static void conn_flush(bconn_t *c);
static void phase_next(bench_t *b);
static void end_window(bench_t *b);
static void resume_dropped(bconn_t *c, const char *what, const char *why);
static void conn_start(bench_t *b, bconn_t *c);

/* ---- settling and teardown ------------------------------------------------ */

static void conn_teardown(bconn_t *c)
{
    if (c->state == ST_DEAD || c->state == ST_IDLE)
        return;
    ev_io_stop(c->b->loop, &c->io);
    if (c->ws)
        wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    sw_buf_destroy(&c->hs);
    free(c->pre);
    c->pre = NULL;
    c->state = ST_DEAD;
}

static void settle(bconn_t *c, int ok)
{
    bench_t *b = c->b;
    if (c->settled)
        return;
    c->settled = 1;
    if (ok)
        b->res->conn_ok++;
    else
        b->res->conn_failed++;
    b->settled++;
    if (b->settled == b->n && b->phase == PH_SETUP)
        phase_next(b);
}

/* Mark the connection lost; freed after the current callback. */
static void conn_fail(bconn_t *c, const char *what, const char *why)
{
    bench_t *b = c->b;
    if (c->dead_pending || c->state == ST_DEAD)
        return;
    if (c->role == ROLE_READER) {
        sw_log(SW_LOG_WARN, "bench: final read: %s: %s", what, why);
        c->dead_pending = 1;
        end_window(b);
        return;
    }
    if (c->in_flight && c->settled && b->o->scenario == SW_BENCH_HOTROOM)
        b->res->unknown++;
    c->in_flight = 0;
    c->rq_len = 0; /* queued events are lost with the connection */
    if (!c->settled) {
        if (b->failures_logged < LOG_FAILURES_MAX)
            sw_log(SW_LOG_WARN, "bench: connection %d: %s: %s", (int)(c - b->conns), what, why);
        else if (b->failures_logged == LOG_FAILURES_MAX)
            sw_log(SW_LOG_WARN, "bench: more connection failures, not logged");
        b->failures_logged++;
        settle(c, 0);
    } else if (b->o->scenario == SW_BENCH_RESUME && b->phase == PH_MEASURE) {
        resume_dropped(c, what, why);
    } else if (b->phase != PH_DONE) {
        b->res->conn_dropped++;
        if (b->res->conn_dropped <= LOG_FAILURES_MAX)
            sw_log(SW_LOG_WARN, "bench: connection %d dropped: %s: %s", (int)(c - b->conns), what,
                   why);
    }
    c->dead_pending = 1;
}

static void set_io(bconn_t *c, int events)
{
    if (c->io_events == events)
        return;
    ev_io_stop(c->b->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->b->loop, &c->io);
    c->io_events = events;
}

/* ---- messages ---------------------------------------------------------------- */

/* One text frame as it is (wslay copies it). */
static void queue_frame(bconn_t *c, const char *text, size_t len)
{
    struct wslay_event_msg m = {
        .opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)text, .msg_length = len};
    int r = wslay_event_queue_msg(c->ws, &m);
    if (r != 0)
        conn_fail(c, "wslay_event_queue_msg", r == WSLAY_ERR_NO_MORE_MSG ? "closing" : "error");
}

/* One client message: as it is, or as 42["event",M] for socketio. */
static void queue_text(bconn_t *c, const char *text, size_t len)
{
    if (!c->b->o->socketio) {
        queue_frame(c, text, len);
        return;
    }
    size_t hl = sizeof(SIO_EVENT_HEAD) - 1, total = hl + len + 1;
    char stackbuf[1024];
    char *f = total <= sizeof(stackbuf) ? stackbuf : sw_xmalloc(total);
    memcpy(f, SIO_EVENT_HEAD, hl);
    memcpy(f + hl, text, len);
    f[hl + len] = ']';
    queue_frame(c, f, total);
    if (f != stackbuf)
        free(f);
}

/* Send the next event; its RTT runs from sent_ns (now, or in the open loop
 * its due time). */
static void send_event_at(bconn_t *c, uint64_t sent_ns)
{
    bench_t *b = c->b;
    char head[64];
    int hl = snprintf(head, sizeof(head), "{\"type\":\"event\",\"id\":%lld", (long long)c->next_id);
    size_t sl = strlen(b->ev_suffix);
    char stackbuf[1024];
    char *msg = (size_t)hl + sl <= sizeof(stackbuf) ? stackbuf : sw_xmalloc((size_t)hl + sl);
    memcpy(msg, head, (size_t)hl);
    memcpy(msg + hl, b->ev_suffix, sl);
    c->wait_id = c->next_id++;
    c->in_flight = 1;
    c->sent_ns = sent_ns;
    if (b->open_loop && b->phase == PH_MEASURE && sent_ns >= b->measure_start_ns)
        b->res->sent++;
    queue_text(c, msg, (size_t)hl + sl);
    if (msg != stackbuf)
        free(msg);
}

static void send_event(bconn_t *c)
{
    send_event_at(c, sw_now_ns());
}

static void count_error(bench_t *b, json_t *msg)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    if (!code)
        code = "(none)";
    json_t *n = json_object_get(b->res->errors_by_code, code);
    json_object_set_new(b->res->errors_by_code, code,
                        json_integer(n ? json_integer_value(n) + 1 : 1));
}

static void queue_hydrate(bconn_t *c, long long id)
{
    char msg[192];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"event\",\"id\":%lld,\"name\":\"hydrate\","
                     "\"router\":{\"path\":\"%s\"}}",
                     id, c->room ? c->room->path : c->b->path);
    if (n >= (int)sizeof(msg))
        n = (int)sizeof(msg) - 1; /* routes are bounded by the options check */
    queue_text(c, msg, (size_t)n);
}

/* ---- cheap scanning (fanout): the server writes compact JSON with "type",
 * "seq", "id" before "delta"; strings inside are escaped, so a quoted key
 * cannot appear inside a string value. */

/* Integer right after `key` (e.g. "\"id\":") in d[0..len); 1 if found. */
static int scan_int(const char *d, size_t len, const char *key, int64_t *out)
{
    size_t kl = strlen(key);
    const char *p = memmem(d, len, key, kl);
    if (!p)
        return 0;
    p += kl;
    const char *end = d + len;
    while (p < end && *p == ' ')
        p++;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return 0;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < INT64_MAX / 10 - 10)
        v = v * 10 + (*p++ - '0');
    *out = neg ? -v : v;
    return 1;
}

/* counter.count in a delta (the "counter" object holds no nested object). */
static int scan_count(const char *d, size_t len, int64_t *out)
{
    static const char key[] = "\"counter\":{";
    const char *p = memmem(d, len, key, sizeof(key) - 1);
    if (!p)
        return 0;
    p += sizeof(key) - 1;
    const char *close = memchr(p, '}', (size_t)(d + len - p));
    if (!close)
        return 0;
    return scan_int(p, (size_t)(close - p), "\"count\":", out);
}

static void count_error_text(bench_t *b, const char *data, size_t len)
{
    json_t *msg = json_loadb(data, len, 0, NULL);
    count_error(b, msg);
    json_decref(msg);
}

/* A delta with counter.count = cnt reached client c (fanout). */
static void deliver(bconn_t *c, int64_t cnt, uint64_t now)
{
    bench_t *b = c->b;
    room_t *r = c->room;
    if (!r->active || !c->member || b->phase < PH_WARMUP) {
        c->last_count = cnt;
        return;
    }
    if (cnt <= c->last_count) {
        b->res->stale++;
        return;
    }
    /* Skipped counts (changes folded into one delta) are missing when
     * their change was sent in the window; the warm-up's join wave does
     * not count. */
    for (int64_t m = c->last_count + 1; m < cnt; m++) {
        uint64_t km = (uint64_t)(m - r->base - 1);
        if (m > r->base && km < r->nsent && b->phase >= PH_MEASURE &&
            r->send_ns[km] >= b->measure_start_ns)
            c->missed++;
    }
    c->last_count = cnt;
    uint64_t k = (uint64_t)(cnt - r->base - 1);
    if (k >= r->nsent) {
        b->res->unexpected++;
        return;
    }
    if (b->phase >= PH_MEASURE && r->send_ns[k] >= b->measure_start_ns) {
        sw_hist_record(&b->res->delivery, now - r->send_ns[k]);
        b->res->deliveries++;
    }
}

/* The answer to the sender's increment `id`. Answers come in order, so
 * the k-th answer is the k-th increment; an error shifts the numbering. */
static void sender_answer(bconn_t *c, int64_t id, int is_error, const char *data, size_t len,
                          uint64_t now)
{
    bench_t *b = c->b;
    room_t *r = c->room;
    if (!r->active || id < r->first_id)
        return;
    uint64_t k = (uint64_t)(id - r->first_id) - r->errors;
    r->answers++;
    if (is_error) {
        if (k < r->nsent) {
            memmove(&r->send_ns[k], &r->send_ns[k + 1], (r->nsent - k - 1) * sizeof(uint64_t));
            r->nsent--;
        }
        r->errors++;
        b->res->sender_errors++;
        count_error_text(b, data, len);
        return;
    }
    if (k < r->nsent && b->phase >= PH_MEASURE && r->send_ns[k] >= b->measure_start_ns)
        b->res->changes_acked++;
    int64_t cnt;
    if (scan_count(data, len, &cnt))
        deliver(c, cnt, now);
}

static void fanout_text(bconn_t *c, const char *data, size_t len)
{
    bench_t *b = c->b;
    uint64_t now = sw_now_ns();
    const char *lim = memmem(data, len, "\"delta\":", 8);
    size_t plen = lim ? (size_t)(lim - data) : len;
    int64_t id = 0, cnt;
    int has_id = scan_int(data, plen, "\"id\":", &id);
    int is_delta = memmem(data, plen, "\"type\":\"delta\"", 14) != NULL;
    int is_error = !is_delta && memmem(data, plen, "\"type\":\"error\"", 14) != NULL;
    if (!is_delta && !is_error)
        return;
    if (c->state == ST_HYDRATE) {
        if (!has_id || id != 1)
            return;
        if (is_error) {
            b->res->setup_errors++;
            if (b->res->setup_errors <= LOG_FAILURES_MAX)
                sw_log(SW_LOG_WARN, "bench: hydrate answered with error %.200s", data);
            c->state = ST_RUNNING;
            settle(c, 1);
            return;
        }
        if (scan_count(data, len, &cnt))
            c->last_count = cnt;
        c->state = ST_ONLOAD;
        c->onload_ns = now;
        return;
    }
    if (has_id) {
        if (c->role == ROLE_SENDER && c->state == ST_RUNNING)
            sender_answer(c, id, is_error, data, len, now);
        return;
    }
    if (!is_delta)
        return;
    int has_count = scan_count(data, len, &cnt);
    if (c->state == ST_ONLOAD) {
        if (has_count)
            c->last_count = cnt;
        if (memmem(data, len, "\"loads\":", 8)) {
            c->state = ST_RUNNING;
            settle(c, 1);
        }
        return;
    }
    if (has_count && c->state == ST_RUNNING)
        deliver(c, cnt, now);
}

/* hotroom: the fresh client that reads the final count. */
static void reader_text(bconn_t *c, const char *data, size_t len)
{
    bench_t *b = c->b;
    json_t *msg = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type)
        goto done;
    if (c->state == ST_WELCOME) {
        if (strcmp(type, "welcome") == 0) {
            c->state = ST_HYDRATE;
            c->wait_id = 1;
            queue_hydrate(c, 1);
        } else if (strcmp(type, "error") == 0) {
            conn_fail(c, "hello answered with error",
                      json_string_value(json_object_get(msg, "code")));
        }
        goto done;
    }
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_integer(jid) || json_integer_value(jid) != c->wait_id)
        goto done;
    if (strcmp(type, "error") == 0) {
        const char *code = json_string_value(json_object_get(msg, "code"));
        conn_fail(c, "hydrate answered with error", code ? code : "?");
        goto done;
    }
    if (strcmp(type, "delta") != 0)
        goto done;
    if (c->wait_id == 1) {
        /* the second hydrate's full delta shows what on_load linked */
        c->wait_id = 2;
        queue_hydrate(c, 2);
        goto done;
    }
    json_t *count =
        json_object_get(json_object_get(json_object_get(msg, "delta"), "counter"), "count");
    if (!json_is_integer(count)) {
        conn_fail(c, "final read", "full delta without counter.count");
        goto done;
    }
    b->res->final_count = (long long)json_integer_value(count);
    b->res->reader_ok = 1;
    end_window(b);
done:
    json_decref(msg);
}

/* ---- scenario resume ------------------------------------------------------- */

/* Copy a credential of [A-Za-z0-9_-]{1,64} (PROTOCOL.md), else leave dst
 * empty: it goes into the hello's JSON as it is. */
static void copy_cred(char *dst, size_t cap, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    dst[0] = '\0';
    if (n == 0 || n >= cap ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_-") != n)
        return;
    memcpy(dst, v, n + 1);
}

/* One drop is settled (answered, or a welcome without resumed). */
static void drop_settled(bconn_t *c, int rstate)
{
    c->rstate = rstate;
    if (c->b->open_drops > 0)
        c->b->open_drops--;
}

/* A connection of a set-up client ended inside the window: a new drop,
 * or a failed attempt of the current one. Reconnects through c->retry
 * (the teardown runs first, after the current callback). */
static void resume_dropped(bconn_t *c, const char *what, const char *why)
{
    bench_t *b = c->b;
    double delay = 0.;
    if (c->rstate == RS_RECONNECT || c->rstate == RS_SYNC) {
        b->res->reconnect_errors++;
        if (b->res->reconnect_errors <= LOG_FAILURES_MAX)
            sw_log(SW_LOG_WARN, "bench: connection %d: reconnect failed: %s: %s",
                   (int)(c - b->conns), what, why);
        delay = SW_BENCH_RETRY_S;
    } else {
        c->drop_ns = sw_now_ns();
        b->last_drop_ns = c->drop_ns;
        b->res->drops++;
        b->open_drops++;
        c->ep_welcomed = 0;
        if (!c->dropped_once)
            b->res->clients_dropped++;
        c->dropped_once = 1;
    }
    c->rstate = RS_RECONNECT;
    ev_timer_stop(b->loop, &c->retry);
    ev_timer_set(&c->retry, delay, 0.);
    ev_timer_start(b->loop, &c->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bconn_t *c = sw_container_of(w, bconn_t, retry);
    if (c->b->phase != PH_MEASURE || c->rstate != RS_RECONNECT)
        return;
    conn_teardown(c); /* normally done already, after the failing callback */
    conn_start(c->b, c);
    if (c->dead_pending)
        conn_teardown(c);
}

/* SIGKILL the first worker of the master o->kill_pid (it needs 2 or more,
 * so a live one takes the reconnects). */
static void resume_kill(bench_t *b)
{
    int first = 0, count = 0;
    if (sw_sysstat_children(b->o->kill_pid, &first, &count) != 0 || count < 2) {
        if (count < 2)
            sw_log(SW_LOG_ERROR, "bench: master %d has %d worker(s), resume needs 2 or more",
                   b->o->kill_pid, count);
        b->res->kill_failed = 1;
        end_window(b);
        return;
    }
    b->res->workers = count;
    if (kill(first, SIGKILL) != 0) {
        sw_log(SW_LOG_ERROR, "bench: kill %d SIGKILL: %s", first, strerror(errno));
        b->res->kill_failed = 1;
        end_window(b);
        return;
    }
    b->res->killed_pid = first;
    sw_log(SW_LOG_NOTICE, "bench: worker %d of master %d killed (SIGKILL)", first, b->o->kill_pid);
}

static void resume_text(bconn_t *c, const char *data, size_t len)
{
    bench_t *b = c->b;
    uint64_t now = sw_now_ns();
    json_t *msg = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type) {
        conn_fail(c, "message", "not a JSON object with a type");
        goto done;
    }
    json_t *jseq = json_object_get(msg, "seq");
    if (json_is_integer(jseq) && json_integer_value(jseq) > c->last_seq)
        c->last_seq = json_integer_value(jseq);
    json_t *jid = json_object_get(msg, "id");
    int64_t id = json_is_integer(jid) ? json_integer_value(jid) : -1;
    int is_delta = strcmp(type, "delta") == 0, is_error = strcmp(type, "error") == 0;

    if (c->state == ST_WELCOME) {
        if (is_error) {
            const char *code = json_string_value(json_object_get(msg, "code"));
            if (c->rstate == RS_RECONNECT && code && strcmp(code, "bad_resume") == 0) {
                b->res->bad_resume++; /* the welcome follows, without resumed */
                count_error(b, msg);
                goto done;
            }
            conn_fail(c, "hello answered with error", code ? code : "?");
            goto done;
        }
        if (strcmp(type, "welcome") != 0)
            goto done;
        copy_cred(c->conn_id, sizeof(c->conn_id),
                  json_string_value(json_object_get(msg, "conn_id")));
        copy_cred(c->conn_token, sizeof(c->conn_token),
                  json_string_value(json_object_get(msg, "conn_token")));
        char tok[sizeof(c->token)];
        copy_cred(tok, sizeof(tok), json_string_value(json_object_get(msg, "token")));
        if (tok[0])
            memcpy(c->token, tok, sizeof(tok));
        c->state = ST_RUNNING;
        if (c->rstate == RS_NONE) { /* first connection: hydrate */
            c->state = ST_HYDRATE;
            c->wait_id = 1;
            c->next_id = 2;
            queue_hydrate(c, 1);
            goto done;
        }
        if (c->rstate != RS_RECONNECT)
            goto done;
        if (!json_is_true(json_object_get(msg, "resumed"))) {
            b->res->not_resumed++;
            if (b->res->not_resumed <= LOG_FAILURES_MAX)
                sw_log(SW_LOG_WARN, "bench: connection %d: welcome without resumed: %.200s",
                       (int)(c - b->conns), data);
            drop_settled(c, RS_FAILED);
            goto done;
        }
        if (!c->ep_welcomed) {
            c->ep_welcomed = 1;
            b->res->resumed++;
            sw_hist_record(&b->res->resume_welcome, now - c->drop_ns);
        }
        c->rstate = RS_SYNC;
        send_event(c); /* answered after the resume sync */
        goto done;
    }
    if (c->state == ST_HYDRATE) {
        if (id != 1 || (!is_delta && !is_error))
            goto done;
        if (is_error) {
            b->res->setup_errors++;
            if (b->res->setup_errors <= LOG_FAILURES_MAX)
                sw_log(SW_LOG_WARN, "bench: hydrate answered with error %.200s", data);
        }
        c->state = ST_RUNNING;
        c->setup_left = 2;
        send_event(c);
        goto done;
    }
    if (c->state != ST_RUNNING || (!is_delta && !is_error))
        goto done;
    if (c->in_flight && id == c->wait_id) {
        c->in_flight = 0;
        if (c->rstate == RS_SYNC) {
            b->res->synced++;
            if (is_delta) {
                b->res->events++;
                sw_hist_record(&b->res->resume_working, now - c->drop_ns);
            } else {
                b->res->errors++;
                count_error(b, msg);
            }
            drop_settled(c, RS_DONE);
            goto done;
        }
        if (is_error) {
            b->res->setup_errors++;
            count_error(b, msg);
        }
        if (--c->setup_left > 0)
            send_event(c);
        else
            settle(c, 1);
        goto done;
    }
    if (!is_delta)
        goto done;
    int full = json_is_true(json_object_get(msg, "full"));
    if (c->rstate == RS_SYNC) {
        if (full)
            b->res->full_deltas++;
        else
            b->res->replayed_deltas++; /* on a shared route fan-out deltas too */
    } else if (c->rstate == RS_DONE && full) {
        b->res->late_deltas++; /* a resume sync after the answer: out of order */
    }
done:
    json_decref(msg);
}

static void on_text(bconn_t *c, const char *data, size_t len)
{
    bench_t *b = c->b;
    if (b->o->scenario == SW_BENCH_RESUME) {
        resume_text(c, data, len);
        return;
    }
    if (c->role == ROLE_READER) {
        reader_text(c, data, len);
        return;
    }
    if (b->o->scenario == SW_BENCH_FANOUT && c->state >= ST_HYDRATE) {
        fanout_text(c, data, len);
        return;
    }
    /* Fan-out deltas carry no "id": skip them without parsing. */
    if (c->state != ST_WELCOME && !memmem(data, len, "\"id\"", 4))
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(msg)) {
        conn_fail(c, "message", "not a JSON object");
        goto done;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type)
        goto done;
    if (c->state == ST_WELCOME) {
        if (strcmp(type, "welcome") == 0) {
            c->state = ST_HYDRATE;
            c->wait_id = 1;
            c->next_id = 2;
            queue_hydrate(c, 1);
        } else if (strcmp(type, "error") == 0) {
            const char *code = json_string_value(json_object_get(msg, "code"));
            conn_fail(c, "hello answered with error", code ? code : "?");
        }
        goto done;
    }
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_integer(jid) || json_integer_value(jid) != c->wait_id)
        goto done;
    int is_delta = strcmp(type, "delta") == 0;
    int is_error = strcmp(type, "error") == 0;
    if (!is_delta && !is_error)
        goto done;
    if (c->state == ST_HYDRATE) {
        if (is_error) {
            b->res->setup_errors++;
            if (b->res->setup_errors <= LOG_FAILURES_MAX)
                sw_log(SW_LOG_WARN, "bench: hydrate answered with error %.200s", data);
        }
        c->state = ST_RUNNING;
        settle(c, 1);
    } else {
        uint64_t now = sw_now_ns();
        c->in_flight = 0;
        if (is_delta)
            b->res->acked_total++;
        else
            b->res->errors_total++;
        if (b->phase == PH_MEASURE && c->sent_ns >= b->measure_start_ns) {
            sw_hist_record(&b->res->rtt, now - c->sent_ns);
            if (is_delta) {
                b->res->events++;
            } else {
                b->res->errors++;
                count_error(b, msg);
            }
        }
    }
    if (b->phase >= PH_DRAIN || c->dead_pending || b->o->scenario == SW_BENCH_IDLE)
        goto done;
    if (!b->open_loop) {
        send_event(c);
    } else if (c->rq_len > 0) { /* the event queued behind this answer */
        uint64_t due = c->rq[c->rq_head];
        c->rq_head = (c->rq_head + 1) % c->rq_cap;
        c->rq_len--;
        send_event_at(c, due);
    }
done:
    json_decref(msg);
}

/* ---- wslay callbacks ------------------------------------------------------ */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    bconn_t *c = user_data;
    if (c->pre_off < c->pre_len) {
        size_t n = SW_MIN(len, c->pre_len - c->pre_off);
        memcpy(buf, c->pre + c->pre_off, n);
        c->pre_off += n;
        return (ssize_t)n;
    }
    ssize_t n;
    do
        n = recv(c->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    conn_fail(c, "recv", n == 0 ? "connection closed by the server" : strerror(errno));
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    bconn_t *c = user_data;
    ssize_t n;
    do
        n = send(c->fd, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    conn_fail(c, "send", strerror(errno));
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    sw_random_bytes(buf, len); /* RAND_bytes */
    return 0;
}

/* hello; after a drop (resume) with the credentials of the last welcome. */
static void queue_hello(bconn_t *c)
{
    char hello[320];
    int n;
    if (c->rstate == RS_RECONNECT && c->conn_id[0] && c->conn_token[0])
        n = snprintf(hello, sizeof(hello),
                     "{\"type\":\"hello\",\"token\":\"%s\",\"resume\":{\"conn_id\":\"%s\","
                     "\"conn_token\":\"%s\",\"last_seq\":%lld}}",
                     c->token, c->conn_id, c->conn_token, (long long)c->last_seq);
    else
        n = snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"token\":\"%s\"}", c->token);
    c->state = ST_WELCOME;
    queue_text(c, hello, (size_t)n);
}

/* socketio: one Engine.IO packet (type digit first, then for a MESSAGE a
 * Socket.IO packet). Engine.IO v4: 0 open, 1 close, 2 ping, 3 pong,
 * 4 message; Socket.IO v5: 0 CONNECT, 1 DISCONNECT, 2 EVENT,
 * 4 CONNECT_ERROR. */
static void sio_text(bconn_t *c, const char *d, size_t len)
{
    static const char head[] = SIO_MESSAGE_HEAD;
    if (len == 0)
        return;
    switch (d[0]) {
    case '0':
        if (c->state == ST_EIO_OPEN) {
            c->state = ST_SIO_CONNECT;
            queue_frame(c, "40", 2);
        }
        return;
    case '1':
        conn_fail(c, "engine.io", "close packet from the server");
        return;
    case '2':
        queue_frame(c, "3", 1); /* pong; payload-less pings only in v4 */
        return;
    case '4':
        break;
    default:
        return; /* pong, noop, upgrade: nothing to do */
    }
    if (len < 2)
        return;
    if (d[1] == '0') {
        if (c->state == ST_SIO_CONNECT)
            queue_hello(c);
    } else if (d[1] == '1') {
        conn_fail(c, "socket.io", "DISCONNECT from the server");
    } else if (d[1] == '4') {
        char why[160];
        snprintf(why, sizeof(why), "CONNECT_ERROR %.*s", (int)SW_MIN(len - 2, (size_t)120), d + 2);
        conn_fail(c, "socket.io", why);
    } else if (d[1] == '2' && len > sizeof(head) && memcmp(d, head, sizeof(head) - 1) == 0 &&
               d[len - 1] == ']') {
        on_text(c, d + sizeof(head) - 1, len - (sizeof(head) - 1) - 1);
    }
}

static void ws_on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user_data)
{
    bconn_t *c = user_data;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        char why[64];
        snprintf(why, sizeof(why), "close %u from the server", arg->status_code);
        conn_fail(c, "websocket", why);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME || c->dead_pending)
        return;
    if (c->b->o->socketio)
        sio_text(c, (const char *)arg->msg, arg->msg_length);
    else
        on_text(c, (const char *)arg->msg, arg->msg_length);
}

/* ---- handshake ---------------------------------------------------------------- */

typedef struct hs_parse {
    sw_buf_t field, value;
    int in_value;
    int upgrade_ok;
    int accept_ok;
    const char *want;
} hs_parse_t;

static void hs_commit(hs_parse_t *h)
{
    if (h->field.len) {
        const char *v = h->value.data ? h->value.data : "";
        if (strcasecmp(h->field.data, "upgrade") == 0 && strcasecmp(v, "websocket") == 0)
            h->upgrade_ok = 1;
        if (strcasecmp(h->field.data, "sec-websocket-accept") == 0 && strcmp(v, h->want) == 0)
            h->accept_ok = 1;
    }
    sw_buf_reset(&h->field);
    sw_buf_reset(&h->value);
    h->in_value = 0;
}

static int hs_on_field(http_parser *p, const char *at, size_t len)
{
    hs_parse_t *h = p->data;
    if (h->in_value)
        hs_commit(h);
    return sw_buf_append(&h->field, at, len) == 0 ? 0 : -1;
}

static int hs_on_value(http_parser *p, const char *at, size_t len)
{
    hs_parse_t *h = p->data;
    h->in_value = 1;
    return sw_buf_append(&h->value, at, len) == 0 ? 0 : -1;
}

static int hs_on_headers_complete(http_parser *p)
{
    hs_parse_t *h = p->data;
    if (h->in_value)
        hs_commit(h);
    return 1; /* no body */
}

/* Check the 101 head in hs[0..head_len); 0 or a reason. */
static const char *hs_check(bconn_t *c, size_t head_len)
{
    http_parser p;
    http_parser_settings s;
    hs_parse_t h = {.want = c->accept};
    const char *why = NULL;
    sw_buf_init(&h.field, 4096);
    sw_buf_init(&h.value, 4096);
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &h;
    http_parser_settings_init(&s);
    s.on_header_field = hs_on_field;
    s.on_header_value = hs_on_value;
    s.on_headers_complete = hs_on_headers_complete;
    http_parser_execute(&p, &s, c->hs.data, head_len);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK && !p.upgrade && p.status_code == 0)
        why = "bad HTTP response";
    else if (p.status_code != 101)
        why = "upgrade not answered 101";
    else if (!h.upgrade_ok)
        why = "101 without Upgrade: websocket";
    else if (!h.accept_ok)
        why = "wrong Sec-WebSocket-Accept";
    sw_buf_destroy(&h.field);
    sw_buf_destroy(&h.value);
    return why;
}

static void ws_open(bconn_t *c, size_t head_len)
{
    struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .genmask_callback = ws_genmask_cb,
        .on_msg_recv_callback = ws_on_msg_cb,
    };
    if (c->hs.len > head_len) {
        c->pre_len = c->hs.len - head_len;
        c->pre = sw_xmalloc(c->pre_len);
        memcpy(c->pre, c->hs.data + head_len, c->pre_len);
    }
    sw_buf_destroy(&c->hs);
    if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0) {
        c->ws = NULL;
        conn_fail(c, "wslay_event_context_client_init", "failed");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, SW_BENCH_MAX_MESSAGE);
    if (c->b->o->socketio)
        c->state = ST_EIO_OPEN; /* the server speaks first */
    else
        queue_hello(c);
}

/* ---- I/O -------------------------------------------------------------------- */

static void conn_io(bconn_t *c, int revents)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err) {
            conn_fail(c, "connect", strerror(err));
            return;
        }
        c->state = ST_UPGRADE_SEND;
    }
    if (c->state == ST_UPGRADE_SEND) {
        while (c->hs_off < c->hs.len) {
            ssize_t n = send(c->fd, c->hs.data + c->hs_off, c->hs.len - c->hs_off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n < 0) {
                conn_fail(c, "send", strerror(errno));
                return;
            }
            c->hs_off += (size_t)n;
        }
        sw_buf_reset(&c->hs);
        c->state = ST_UPGRADE_RECV;
        set_io(c, EV_READ);
        return;
    }
    if (c->state == ST_UPGRADE_RECV) {
        for (;;) {
            char chunk[4096];
            ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n <= 0) {
                conn_fail(c, "upgrade", n == 0 ? "closed by the server" : strerror(errno));
                return;
            }
            if (sw_buf_append(&c->hs, chunk, (size_t)n) != 0) {
                conn_fail(c, "upgrade", "response head too large");
                return;
            }
            char *end = memmem(c->hs.data, c->hs.len, "\r\n\r\n", 4);
            if (!end)
                continue;
            size_t head_len = (size_t)(end - c->hs.data) + 4;
            const char *why = hs_check(c, head_len);
            if (why) {
                char msg[200];
                const char *eol = memchr(c->hs.data, '\r', head_len);
                snprintf(msg, sizeof(msg), "%s (\"%.*s\")", why,
                         (int)SW_MIN((size_t)(eol - c->hs.data), 120), c->hs.data);
                conn_fail(c, "upgrade", msg);
                return;
            }
            ws_open(c, head_len);
            revents = EV_READ | EV_WRITE; /* data may sit in pre; hello is queued */
            break;
        }
    }
    if (!c->ws)
        return;
    if ((revents & EV_READ) && wslay_event_want_read(c->ws)) {
        if (wslay_event_recv(c->ws) != 0) {
            conn_fail(c, "websocket", "receive failed");
            return;
        }
    }
    conn_flush(c);
}

/* Send what wslay has queued and arm the watcher for what is left. */
static void conn_flush(bconn_t *c)
{
    if (c->dead_pending || !c->ws)
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        conn_fail(c, "websocket", "send failed");
        return;
    }
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
        conn_fail(c, "websocket", "closed");
        return;
    }
    set_io(c, EV_READ | (wslay_event_want_write(c->ws) ? EV_WRITE : 0));
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bconn_t *c = sw_container_of(w, bconn_t, io);
    conn_io(c, revents);
    if (c->dead_pending)
        conn_teardown(c);
}

static void conn_start(bench_t *b, bconn_t *c)
{
    unsigned char raw[16];
    char key[32];

    c->b = b;
    c->fd = -1;
    c->state = ST_IDLE;
    c->dead_pending = 0;
    c->in_flight = 0;
    c->ws = NULL;
    c->hs_off = 0;
    c->pre = NULL;
    c->pre_len = c->pre_off = 0;
    sw_buf_init(&c->hs, HEAD_MAX);
    if (!c->token[0]) /* a reconnect keeps its token */
        sw_random_hex(c->token, 16);
    c->fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(c, "socket", strerror(errno));
        sw_buf_destroy(&c->hs);
        c->state = ST_DEAD;
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sw_random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    if (sw_ws_accept_key(key, strlen(key), c->accept) != 0)
        c->accept[0] = '\0';
    sw_buf_printf(&c->hs,
                  "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n",
                  b->o->path, b->o->host, b->o->port, key);
    ev_io_init(&c->io, io_cb, c->fd, EV_WRITE);
    c->io_events = EV_WRITE;
    c->state = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&b->addr, b->addrlen) != 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect", strerror(errno));
        conn_teardown(c);
        return;
    }
    ev_io_start(b->loop, &c->io);
}

/* ---- phases ------------------------------------------------------------------ */

static void ramp_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    bench_t *b = sw_container_of(w, bench_t, ramp_check);
    for (int i = 0; i < SW_BENCH_RAMP_BATCH && b->started < b->n; i++)
        conn_start(b, &b->conns[b->started++]);
    if (b->started == b->n) {
        ev_check_stop(loop, &b->ramp_check);
        ev_idle_stop(loop, &b->ramp_idle);
    }
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* only keeps the loop from blocking while connections are opened */
}

/* Close the measure window (once): its length and the CPU snapshot. */
static void close_window(bench_t *b)
{
    if (b->phase == PH_MEASURE) {
        b->res->measured_s = (double)(sw_now_ns() - b->measure_start_ns) / 1e9;
        if (b->on_end)
            b->on_end(b->udata);
    }
}

static void end_window(bench_t *b)
{
    close_window(b);
    b->phase = PH_DONE;
    ev_timer_stop(b->loop, &b->phase_timer);
    ev_timer_stop(b->loop, &b->sweep);
    for (int i = 0; i < b->nrooms; i++)
        ev_timer_stop(b->loop, &b->rooms[i].timer);
    ev_timer_stop(b->loop, &b->rate_timer);
    ev_check_stop(b->loop, &b->rate_check);
    ev_break(b->loop, EVBREAK_ALL);
}

/* events open loop: the next live connection after the last one used,
 * NULL when none is left. */
static bconn_t *rate_next_conn(bench_t *b)
{
    for (int i = 0; i < b->n; i++) {
        bconn_t *c = &b->conns[b->rr];
        b->rr = (b->rr + 1) % b->n;
        if (c->state == ST_RUNNING && !c->dead_pending)
            return c;
    }
    return NULL;
}

/* events open loop: the event due at `due` goes to c, at once or queued
 * behind the one in flight. */
static void rate_release(bconn_t *c, uint64_t due, int in_window)
{
    bench_t *b = c->b;
    if (!c->in_flight) {
        uint64_t now = sw_now_ns();
        send_event_at(c, due);
        if (in_window)
            sw_hist_record(&b->res->send_lag, now > due ? now - due : 0);
        conn_flush(c);
        if (c->dead_pending)
            conn_teardown(c);
        return;
    }
    if (c->rq_len == SW_BENCH_RATE_QUEUE_MAX) {
        if (in_window)
            b->res->queue_full++;
        return;
    }
    if (c->rq_len == c->rq_cap) { /* grow the ring, oldest first */
        uint32_t cap = c->rq_cap ? c->rq_cap * 2 : 4;
        uint64_t *q = sw_xmalloc(cap * sizeof(uint64_t));
        for (uint32_t i = 0; i < c->rq_len; i++)
            q[i] = c->rq[(c->rq_head + i) % c->rq_cap];
        free(c->rq);
        c->rq = q;
        c->rq_cap = cap;
        c->rq_head = 0;
    }
    c->rq[(c->rq_head + c->rq_len) % c->rq_cap] = due;
    c->rq_len++;
    if (c->rq_len > b->res->max_queue)
        b->res->max_queue = c->rq_len;
    if (in_window)
        b->res->queued++;
}

/* events open loop: release every event due by now. */
static void rate_release_due(bench_t *b)
{
    if (b->phase != PH_WARMUP && b->phase != PH_MEASURE)
        return;
    double period_ns = 1e9 / b->o->events_rate;
    uint64_t now = sw_now_ns();
    uint64_t due_count = (uint64_t)((double)(now - b->rate_start_ns) / period_ns) + 1;
    int none = 0;
    while (b->released < due_count && b->phase != PH_DONE) {
        uint64_t due = b->rate_start_ns + (uint64_t)((double)b->released * period_ns);
        b->released++;
        if (due > now)
            due = now;
        int in_window = b->phase == PH_MEASURE && due >= b->measure_start_ns;
        if (in_window)
            b->res->scheduled++;
        bconn_t *c = none ? NULL : rate_next_conn(b);
        if (!c) {
            none = 1;
            if (in_window)
                b->res->no_conn++;
            continue;
        }
        rate_release(c, due, in_window);
    }
}

static void rate_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rate_release_due(sw_container_of(w, bench_t, rate_timer));
}

static void rate_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    rate_release_due(sw_container_of(w, bench_t, rate_check));
}

static void room_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    room_t *r = sw_container_of(w, room_t, timer);
    bench_t *b = r->b;
    bconn_t *c = r->sender;
    if (b->phase != PH_WARMUP && b->phase != PH_MEASURE)
        return;
    if (c->state != ST_RUNNING || c->dead_pending) {
        ev_timer_stop(loop, w);
        return;
    }
    if (r->nsent == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->send_ns = sw_xrealloc(r->send_ns, r->cap * sizeof(uint64_t));
    }
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"event\",\"id\":%lld%s", (long long)c->next_id++,
                     b->ev_suffix);
    r->send_ns[r->nsent++] = sw_now_ns();
    r->sends++;
    if (b->phase == PH_MEASURE)
        b->res->changes_sent++;
    queue_text(c, msg, (size_t)n);
    conn_flush(c);
    if (c->dead_pending)
        conn_teardown(c);
}

/* fanout: the count each room starts from; start the senders' timers,
 * spread over one period. Returns the number of active rooms. */
static int rooms_start(bench_t *b)
{
    int active = 0;
    for (int k = 0; k < b->nrooms; k++) {
        room_t *r = &b->rooms[k];
        bconn_t *first = &b->conns[k * b->o->room_size];
        r->active = r->sender->state == ST_RUNNING && !r->sender->dead_pending;
        if (!r->active)
            continue;
        r->base = r->sender->last_count;
        r->first_id = r->sender->next_id;
        for (int i = 0; i < b->o->room_size; i++) {
            if (first[i].state == ST_RUNNING && !first[i].dead_pending) {
                first[i].member = 1;
                first[i].last_count = r->base;
                r->members++;
            }
        }
        double period = 1.0 / b->o->rate;
        ev_timer_set(&r->timer, 0.001 + period * k / b->nrooms, period);
        ev_timer_start(b->loop, &r->timer);
        active++;
    }
    b->res->rooms_active = active;
    return active;
}

/* fanout: every answer back and every member at the last count. */
static int fanout_settled(bench_t *b)
{
    for (int k = 0; k < b->nrooms; k++) {
        room_t *r = &b->rooms[k];
        if (!r->active)
            continue;
        if (r->answers < r->sends && r->sender->state == ST_RUNNING)
            return 0;
        int64_t last = r->base + (int64_t)r->nsent;
        bconn_t *first = &b->conns[k * b->o->room_size];
        for (int i = 0; i < b->o->room_size; i++)
            if (first[i].member && first[i].state == ST_RUNNING && first[i].last_count < last)
                return 0;
    }
    return 1;
}

static void fanout_tally(bench_t *b)
{
    for (int k = 0; k < b->nrooms; k++) {
        room_t *r = &b->rooms[k];
        if (!r->active)
            continue;
        uint64_t win = 0;
        for (size_t i = 0; i < r->nsent; i++)
            if (b->measure_start_ns && r->send_ns[i] >= b->measure_start_ns)
                win++;
        int64_t last = r->base + (int64_t)r->nsent;
        bconn_t *first = &b->conns[k * b->o->room_size];
        for (int i = 0; i < b->o->room_size; i++) {
            bconn_t *c = &first[i];
            if (!c->member)
                continue;
            uint64_t miss =
                c->missed + (c->last_count < last ? (uint64_t)(last - c->last_count) : 0);
            if (miss)
                b->res->receivers_missing++;
            b->res->missing += miss;
            b->res->expected += win;
        }
    }
}

static void reader_start(bench_t *b)
{
    for (int i = 0; i < b->n; i++) {
        if (b->conns[i].in_flight) {
            b->res->unknown++;
            b->conns[i].in_flight = 0;
        }
    }
    b->reader_started = 1;
    ev_timer_stop(b->loop, &b->sweep);
    ev_timer_stop(b->loop, &b->phase_timer);
    ev_timer_set(&b->phase_timer, SW_BENCH_DRAIN_S, 0.);
    ev_timer_start(b->loop, &b->phase_timer);
    b->reader->role = ROLE_READER;
    conn_start(b, b->reader);
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bench_t *b = sw_container_of(w, bench_t, sweep);
    if (b->phase == PH_SETUP) {
        uint64_t now = sw_now_ns();
        uint64_t wait = (uint64_t)(SW_BENCH_ONLOAD_WAIT_S * 1e9);
        for (int i = 0; i < b->n && b->phase == PH_SETUP; i++) {
            bconn_t *c = &b->conns[i];
            if (c->state == ST_ONLOAD && now - c->onload_ns > wait) {
                b->res->onload_missing++;
                c->state = ST_RUNNING;
                settle(c, 1);
            }
        }
        return;
    }
    if (b->phase == PH_MEASURE && b->o->scenario == SW_BENCH_RESUME) {
        /* every drop settled, and no new one for a while */
        if (b->res->drops > 0 && b->open_drops == 0 &&
            sw_now_ns() - b->last_drop_ns >= (uint64_t)(SW_BENCH_RESUME_QUIET_S * 1e9))
            end_window(b);
        return;
    }
    if (b->phase != PH_DRAIN)
        return;
    if (b->o->scenario == SW_BENCH_FANOUT) {
        if (fanout_settled(b))
            end_window(b);
        return;
    }
    for (int i = 0; i < b->n; i++)
        if (b->conns[i].in_flight && b->conns[i].state == ST_RUNNING)
            return;
    reader_start(b);
}

static void phase_next(bench_t *b)
{
    ev_timer_stop(b->loop, &b->phase_timer);
    switch (b->phase) {
    case PH_SETUP:
        /* connections still opening past the setup timeout have failed */
        for (int i = 0; i < b->n; i++) {
            bconn_t *c = &b->conns[i];
            if (!c->settled && c->state != ST_IDLE) {
                conn_fail(c, "setup", "timed out");
                conn_teardown(c);
            }
        }
        ev_timer_stop(b->loop, &b->sweep);
        if (b->res->conn_ok == 0) {
            end_window(b);
            return;
        }
        if (b->o->scenario == SW_BENCH_FANOUT && rooms_start(b) == 0) {
            sw_log(SW_LOG_WARN, "bench: no room has a sender");
            end_window(b);
            return;
        }
        b->phase = PH_WARMUP;
        if (b->open_loop) {
            b->rate_start_ns = sw_now_ns();
            ev_timer_set(&b->rate_timer, 0., SW_BENCH_RATE_TICK_S);
            ev_timer_start(b->loop, &b->rate_timer);
            ev_check_start(b->loop, &b->rate_check);
        }
        if (b->o->warmup_s > 0) {
            ev_timer_set(&b->phase_timer, b->o->warmup_s, 0.);
            ev_timer_start(b->loop, &b->phase_timer);
            return;
        }
        /* fall through */
    case PH_WARMUP:
        b->phase = PH_MEASURE;
        if (b->on_start)
            b->on_start(b->udata);
        b->measure_start_ns = sw_now_ns();
        ev_timer_set(&b->phase_timer, b->o->duration_s, 0.);
        ev_timer_start(b->loop, &b->phase_timer);
        if (b->o->scenario == SW_BENCH_RESUME) {
            ev_timer_set(&b->sweep, 0.02, 0.02);
            ev_timer_start(b->loop, &b->sweep);
            if (b->o->kill_pid)
                resume_kill(b);
        }
        return;
    case PH_MEASURE:
        if (b->o->scenario == SW_BENCH_EVENTS || b->o->scenario == SW_BENCH_IDLE ||
            b->o->scenario == SW_BENCH_RESUME) {
            end_window(b);
            return;
        }
        close_window(b);
        b->phase = PH_DRAIN;
        for (int i = 0; i < b->nrooms; i++)
            ev_timer_stop(b->loop, &b->rooms[i].timer);
        ev_timer_set(&b->phase_timer,
                     b->o->scenario == SW_BENCH_FANOUT ? SW_BENCH_GRACE_S : SW_BENCH_DRAIN_S, 0.);
        ev_timer_start(b->loop, &b->phase_timer);
        ev_timer_set(&b->sweep, 0.02, 0.02);
        ev_timer_start(b->loop, &b->sweep);
        return;
    case PH_DRAIN:
        if (b->o->scenario == SW_BENCH_HOTROOM && !b->reader_started) {
            reader_start(b);
            return;
        }
        if (b->o->scenario == SW_BENCH_HOTROOM)
            sw_log(SW_LOG_WARN, "bench: final read timed out");
        end_window(b);
        return;
    default:
        end_window(b);
    }
}

static void phase_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bench_t *b = sw_container_of(w, bench_t, phase_timer);
    phase_next(b);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    bench_t *b = w->data;
    sw_log(SW_LOG_NOTICE, "bench: signal %d, ending the run", w->signum);
    end_window(b);
}

/* ---- run -------------------------------------------------------------------- */

static int resolve(bench_t *b)
{
    char portstr[16];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    snprintf(portstr, sizeof(portstr), "%d", b->o->port);
    int r = getaddrinfo(b->o->host, portstr, &hints, &ai);
    if (r != 0) {
        sw_log(SW_LOG_ERROR, "bench: getaddrinfo %s: %s", b->o->host, gai_strerror(r));
        return SW_EINVAL;
    }
    memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
    b->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static char *make_suffix(const sw_bench_opts_t *o)
{
    json_error_t err;
    json_t *payload = json_loads(o->payload, 0, &err);
    char *out = NULL;
    if (!json_is_object(payload)) {
        sw_log(SW_LOG_ERROR, "bench: --payload must be a JSON object: %s",
               payload ? "not an object" : err.text);
        goto done;
    }
    json_t *name = json_string(o->event);
    char *pj = json_dumps(payload, JSON_COMPACT);
    char *nj = json_dumps(name, JSON_ENCODE_ANY);
    out = sw_xasprintf(",\"name\":%s,\"payload\":%s}", nj, pj);
    free(pj);
    free(nj);
    json_decref(name);
done:
    json_decref(payload);
    return out;
}

int sw_bench_run(const sw_bench_opts_t *o, sw_bench_hook_fn on_start, sw_bench_hook_fn on_end,
                 void *udata, sw_bench_result_t *res)
{
    bench_t b = {.o = o, .res = res, .on_start = on_start, .on_end = on_end, .udata = udata};
    int ret = SW_EINVAL;

    memset(res, 0, sizeof(*res));
    res->errors_by_code = json_object();
    sw_hist_init(&res->rtt, SW_BENCH_RTT_MAX_NS, 3);
    sw_hist_init(&res->send_lag, SW_BENCH_RTT_MAX_NS, 3);
    sw_hist_init(&res->delivery, SW_BENCH_RTT_MAX_NS, 3);
    sw_hist_init(&res->resume_welcome, SW_BENCH_RTT_MAX_NS, 3);
    sw_hist_init(&res->resume_working, SW_BENCH_RTT_MAX_NS, 3);
    if (o->scenario == SW_BENCH_FANOUT && (o->rooms < 1 || o->room_size < 1 || !(o->rate > 0) ||
                                           (long long)o->rooms * o->room_size != o->connections)) {
        sw_log(SW_LOG_ERROR, "bench: fanout needs rooms, room_size >= 1, rate > 0 and "
                             "connections = rooms * room_size");
        return SW_EINVAL;
    }
    if (o->route && (strlen(o->route) > 47 || o->route[0] != '/' || strpbrk(o->route, "\"\\"))) {
        sw_log(SW_LOG_ERROR, "bench: route must start with / and have at most 47 bytes, "
                             "no quote or backslash");
        return SW_EINVAL;
    }
    if (o->scenario == SW_BENCH_RESUME && o->socketio) {
        sw_log(SW_LOG_ERROR, "bench: scenario resume speaks the statewire protocol only");
        return SW_EINVAL;
    }
    if (o->events_rate < 0 || (o->events_rate > 0 && o->scenario != SW_BENCH_EVENTS)) {
        sw_log(SW_LOG_ERROR, "bench: an open-loop rate applies to scenario events only");
        return SW_EINVAL;
    }
    b.open_loop = o->events_rate > 0;
    if (o->connections < 1 || resolve(&b) != 0)
        return SW_EINVAL;
    b.ev_suffix = make_suffix(o);
    if (!b.ev_suffix)
        return SW_EINVAL;

    b.loop = ev_loop_new(EVFLAG_AUTO);
    b.n = o->connections;
    /* one more for the hotroom reader, never opened by the ramp */
    b.conns = sw_xcalloc((size_t)b.n + 1, sizeof(bconn_t));
    b.reader = &b.conns[b.n];
    for (int i = 0; i <= b.n; i++)
        ev_timer_init(&b.conns[i].retry, retry_cb, 0., 0.);
    b.phase = PH_SETUP;
    if (o->scenario == SW_BENCH_HOTROOM) {
        char hex[17];
        sw_random_hex(hex, 8);
        snprintf(b.path, sizeof(b.path), "/room/hot-%s", hex);
    } else if (o->route) {
        snprintf(b.path, sizeof(b.path), "%s", o->route);
    } else {
        snprintf(b.path, sizeof(b.path), "%s", "/");
    }
    snprintf(res->room, sizeof(res->room), "%s", b.path);
    if (o->scenario == SW_BENCH_FANOUT) {
        b.nrooms = o->rooms;
        b.rooms = sw_xcalloc((size_t)b.nrooms, sizeof(room_t));
        for (int k = 0; k < b.nrooms; k++) {
            room_t *r = &b.rooms[k];
            r->b = &b;
            snprintf(r->path, sizeof(r->path), "/room/bench-%d", k);
            r->sender = &b.conns[k * o->room_size];
            r->sender->role = ROLE_SENDER;
            for (int i = 0; i < o->room_size; i++)
                b.conns[k * o->room_size + i].room = r;
            ev_timer_init(&r->timer, room_timer_cb, 1., 1.);
        }
        snprintf(res->room, sizeof(res->room), "/room/bench-0..%d", b.nrooms - 1);
    }
    ev_timer_init(&b.sweep, sweep_cb, 0.1, 0.1);
    ev_timer_init(&b.rate_timer, rate_timer_cb, 0., SW_BENCH_RATE_TICK_S);
    ev_check_init(&b.rate_check, rate_check_cb);
    if (o->scenario == SW_BENCH_FANOUT)
        ev_timer_start(b.loop, &b.sweep);
    ev_check_init(&b.ramp_check, ramp_check_cb);
    ev_check_start(b.loop, &b.ramp_check);
    ev_idle_init(&b.ramp_idle, idle_cb);
    ev_idle_start(b.loop, &b.ramp_idle);
    ev_timer_init(&b.phase_timer, phase_timer_cb, SW_BENCH_SETUP_TIMEOUT_S, 0.);
    ev_timer_start(b.loop, &b.phase_timer);
    ev_signal_init(&b.sigint, signal_cb, SIGINT);
    b.sigint.data = &b;
    ev_signal_start(b.loop, &b.sigint);
    ev_signal_init(&b.sigterm, signal_cb, SIGTERM);
    b.sigterm.data = &b;
    ev_signal_start(b.loop, &b.sigterm);

    ev_run(b.loop, 0);

    if (o->scenario == SW_BENCH_FANOUT)
        fanout_tally(&b);
    for (int i = 0; i <= b.n; i++) {
        bconn_t *c = &b.conns[i];
        if (c->rstate == RS_RECONNECT)
            res->never_back++;
        else if (c->rstate == RS_SYNC)
            res->not_working++;
        ev_timer_stop(b.loop, &c->retry);
        conn_teardown(c);
        free(c->rq);
    }
    for (int k = 0; k < b.nrooms; k++) {
        ev_timer_stop(b.loop, &b.rooms[k].timer);
        free(b.rooms[k].send_ns);
    }
    free(b.rooms);
    ev_timer_stop(b.loop, &b.sweep);
    ev_timer_stop(b.loop, &b.rate_timer);
    ev_check_stop(b.loop, &b.rate_check);
    ev_signal_stop(b.loop, &b.sigint);
    ev_signal_stop(b.loop, &b.sigterm);
    ev_check_stop(b.loop, &b.ramp_check);
    ev_idle_stop(b.loop, &b.ramp_idle);
    ev_timer_stop(b.loop, &b.phase_timer);
    ev_loop_destroy(b.loop);
    free(b.conns);
    free(b.ev_suffix);
    ret = 0;
    return ret;
}

void sw_bench_result_destroy(sw_bench_result_t *res)
{
    json_decref(res->errors_by_code);
    res->errors_by_code = NULL;
    sw_hist_destroy(&res->rtt);
    sw_hist_destroy(&res->send_lag);
    sw_hist_destroy(&res->delivery);
    sw_hist_destroy(&res->resume_welcome);
    sw_hist_destroy(&res->resume_working);
}
