/* conn_driver.c — see conn_driver.h. */
#include "fuzz/conn_driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <ev.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/conn.h"
#include "worker/static.h"

#define F_SHUT 0x08
#define F_DEFER 0x10
#define F_CLOCK 0x60
#define F_NOREAD 0x80

#define SETTLE_MAX 64 /* loop passes per settle; quiet much sooner */

static void fz_abort(const char *what)
{
    fprintf(stderr, "conn_driver: %s\n", what);
    abort();
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_abort("check failed: " #cond);                                                      \
    } while (0)

/* ---- the clock -----------------------------------------------------------
 * libev reads CLOCK_MONOTONIC (timers) and CLOCK_REALTIME (ev_now) through
 * clock_gettime; this definition takes precedence over libc's (and over
 * the sanitizer runtime's weak interceptor) and adds clock_off_ns, which
 * only moves during an input (by at most 8 * 3.3 s + 3 s) and is back at 0
 * between inputs, when libFuzzer measures its own time. Its -timeout
 * alarm may still fire during an input and count the offset: fuzz/run.sh
 * gives -timeout=60. */

static int64_t clock_off_ns;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int rc =
        real_clock_gettime ? real_clock_gettime(id, ts) : (int)syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && clock_off_ns && (id == CLOCK_MONOTONIC || id == CLOCK_REALTIME)) {
        int64_t ns = (int64_t)ts->tv_nsec + clock_off_ns % 1000000000;
        ts->tv_sec += (time_t)(clock_off_ns / 1000000000 + ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
    }
    return rc;
}

/* ---- state of the input being run ----------------------------------------- */

static struct ev_loop *loop;
static sw_conn_env_t env;
static int client = -1;   /* our end of the socketpair */
static uint8_t flags;     /* fz_plan_t.flags of this input */
static int opens, closes; /* on_open + event streams started; on_close */
static char opened_mark;  /* udata of a conn owed an on_close */
static int greeted;       /* the WebSocket conn had its first message */

/* An HTTP request answered after the loop pass (F_DEFER). */
static struct {
    sw_conn_t *c; /* NULL: none waiting */
    int route;
    size_t body_len;
    char body[FZ_MAX_BODY];
} later;

enum { R_ECHO, R_SSE, R_CLOSE, R_204, R_304, R_ERROR };

static int route_of(const char *path)
{
    if (strcmp(path, "/sse") == 0)
        return R_SSE;
    if (strcmp(path, "/close") == 0)
        return R_CLOSE;
    if (strcmp(path, "/204") == 0)
        return R_204;
    if (strcmp(path, "/304") == 0)
        return R_304;
    if (strcmp(path, "/error") == 0)
        return R_ERROR;
    return R_ECHO;
}

/* Answer a request; req is NULL when answered later (the request's
 * borrowed pointers are gone by then). */
static void answer(sw_conn_t *c, int route, const sw_http_request_t *req, const char *body,
                   size_t len)
{
    switch (route) {
    case R_SSE: {
        int rc = sw_conn_sse_start(c);
        CHECK(rc == 0 || rc == SW_ECLOSED);
        if (rc != 0)
            return;
        opens++;
        sw_conn_set_udata(c, &opened_mark);
        (void)sw_conn_peer(c);
        rc = sw_conn_sse_send(c, "msg", "1", len ? body : "{}", len ? len : 2);
        int eol = len && (memchr(body, '\n', len) || memchr(body, '\r', len));
        CHECK(eol ? rc == SW_EINVAL : rc == 0 || rc == SW_ETOOLARGE);
        return;
    }
    case R_CLOSE:
        sw_conn_close(c, 1000, NULL);
        sw_conn_http_reply(c, 200, "text/plain", NULL, "bye\n", 4);
        return;
    case R_ERROR: /* the body, any bytes, quoted in the JSON error */
        sw_conn_http_error(c, 400, "bad_request", len ? body : NULL, NULL);
        return;
    case R_204:
    case R_304:
        sw_conn_http_reply(c, route == R_204 ? 204 : 304, NULL, "Cache-Control: no-store\r\n", NULL,
                           0);
        return;
    default:
        if (req && sw_static_serve(c, req))
            return;
        sw_conn_http_reply(c, 404, "application/json", NULL, len ? body : "{}", len ? len : 2);
    }
}

static void on_http(sw_conn_t *c, const sw_http_request_t *req)
{
    CHECK(req->method && req->path && req->query);
    CHECK(!req->body == !req->body_len && req->body_len <= FZ_MAX_BODY);
    /* The header lookups the worker and the session make. */
    static const char *const names[] = {"Host", "Origin", "Content-Type", "Last-Event-ID",
                                        "X-Forwarded-For"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = req->header(req, names[i]);
        if (v)
            (void)strlen(v);
    }
    (void)strlen(req->query);
    int route = route_of(req->path);
    if (flags & F_DEFER) {
        CHECK(!later.c);
        sw_conn_ref(c); /* the client may be gone by the answer */
        later.c = c;
        later.route = route;
        later.body_len = req->body_len;
        if (req->body_len)
            memcpy(later.body, req->body, req->body_len);
        return;
    }
    answer(c, route, req, req->body, req->body_len);
}

/* The upgrade request: refused with an answer for Origin
 * "http://refused" (403, as the worker does for an Origin outside its
 * allowlist), refused without one for "http://silent" (conn.c answers
 * 403), accepted and closed at once for "http://close". */
static int on_open(sw_conn_t *c, const sw_http_request_t *req)
{
    CHECK(sw_conn_udata(c) == NULL);
    CHECK(req && req->method && req->path && req->query);
    const char *origin = req->header(req, "Origin");
    if (origin && strcmp(origin, "http://refused") == 0) {
        sw_conn_http_error(c, 403, "forbidden", origin, NULL);
        return 1;
    }
    if (origin && strcmp(origin, "http://silent") == 0)
        return 1;
    /* Not a WebSocket yet: nothing can be sent. */
    CHECK(sw_conn_send(c, "x", 1) != 0);
    opens++;
    sw_conn_set_udata(c, &opened_mark);
    (void)sw_conn_peer(c);
    if (origin && strcmp(origin, "http://close") == 0)
        sw_conn_close(c, 1000, "bye");
    return 0;
}

static int starts(const char *data, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(data, word, n) == 0;
}

static void on_message(sw_conn_t *c, const char *data, size_t len)
{
    CHECK(sw_conn_udata(c) == &opened_mark);
    CHECK(len <= FZ_MAX_MESSAGE);
    CHECK(sw_utf8_valid_prefix(data, len) == len);
    int rc;
    if (!greeted) { /* the first message is the hello: welcome it */
        greeted = 1;
        sw_conn_ws_greeted(c);
        static const char welcome[] = "{\"type\":\"welcome\",\"token\":\"t\"}";
        rc = sw_conn_send(c, welcome, sizeof(welcome) - 1);
        /* Over the bound when replies to requests pipelined before the
         * upgrade still wait in the output. */
        CHECK(rc == 0 || rc == SW_ETOOLARGE || rc == SW_ECLOSED);
    }
    if (starts(data, len, "close")) {
        sw_conn_close(c, 1000, "bye");
        return;
    }
    if (starts(data, len, "big")) { /* over max_send_bytes: closed with 1013 */
        static char big[FZ_MAX_SEND + 1];
        memset(big, 'x', sizeof(big));
        rc = sw_conn_send(c, big, sizeof(big));
        CHECK(rc == SW_ETOOLARGE || rc == SW_ECLOSED);
        return;
    }
    if (starts(data, len, "sendv")) { /* the fan-out's head + shared tail */
        struct iovec iov[3] = {{(void *)"{\"seq\":1", 8}, {(void *)data, len}, {(void *)"}", 1}};
        rc = sw_conn_sendv(c, iov, 3);
    } else {
        rc = sw_conn_send(c, data, len);
    }
    CHECK(rc == 0 || rc == SW_ETOOLARGE || rc == SW_ECLOSED);
}

static void on_close(sw_conn_t *c)
{
    CHECK(sw_conn_udata(c) == &opened_mark);
    CHECK(later.c != c);
    sw_conn_set_udata(c, NULL);
    closes++;
}

/* The env's configuration and callbacks: the one place to adapt when
 * conn.h changes. */
static void env_wire(sw_conn_env_t *e)
{
    sw_conn_env_init(e);
    e->loop = loop;
    e->ws_path = "/_event";
    e->max_message_bytes = FZ_MAX_MESSAGE;
    e->max_send_bytes = FZ_MAX_SEND;
    e->max_header_bytes = FZ_MAX_HEADER;
    e->max_body_bytes = FZ_MAX_BODY;
    e->ping_interval_ms = 2000;
    e->ping_timeout_ms = 1500;
    e->http_timeout_ms = 1500;
    e->sndbuf_bytes = (flags & F_NOREAD) ? 1 : 0; /* 1: the kernel's smallest */
    e->on_open = on_open;
    e->on_message = on_message;
    e->on_close = on_close;
    e->on_http = on_http;
    e->udata = NULL;
}

/* ---- driving the loop ----------------------------------------------------- */

/* Read and drop what the server wrote; 1 when there was something. */
static int drain_client(void)
{
    static char buf[65536];
    int got = 0;
    for (;;) {
        ssize_t n = recv(client, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return got;
        got = 1;
    }
}

/* Bytes we wrote that the server has not read yet. */
static int client_outq(void)
{
    int q = 0;
    if (ioctl(client, SIOCOUTQ, &q) < 0)
        return 0;
    return q;
}

static int answer_later(void)
{
    if (!later.c)
        return 0;
    sw_conn_t *c = later.c;
    later.c = NULL;
    /* Held (sw_conn_ref): answering a conn closed meanwhile does nothing. */
    answer(c, later.route, NULL, later.body, later.body_len);
    sw_conn_unref(c);
    return 1;
}

/* Run the loop until nothing moves (a request waiting for its deferred
 * answer holds the rest of the input back). */
static void settle(void)
{
    for (int i = 0; i < SETTLE_MAX; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        int moved = !(flags & F_NOREAD) && drain_client();
        if (!moved && TAILQ_EMPTY(&env.pending) && (later.c || client_outq() == 0))
            return;
    }
}

/* Answer the deferred request, if any, and let the loop act on it (which
 * may parse the next pipelined request: it waits for the next step). */
static void step(void)
{
    if (answer_later())
        settle();
}

/* Write p[0..n) into the connection, letting the loop read when the
 * socket is full; gives up on what the server does not take. */
static void put(const uint8_t *p, size_t n)
{
    int stuck = 0;
    while (n && stuck < 2) {
        ssize_t w = send(client, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            stuck = 0;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return; /* the server closed */
        } else {
            stuck++;
            step();
        }
        settle();
    }
}

static void tick(void)
{
    static const int64_t steps_ms[4] = {0, 1100, 2200, 3300};
    int64_t ms = steps_ms[(flags & F_CLOCK) >> 5];
    if (!ms)
        return;
    clock_off_ns += ms * 1000000;
    settle();
}

static void setup_once(void)
{
    if (loop)
        return;
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    sw_log_init(getenv("SW_FUZZ_LOG") ? SW_LOG_DEBUG : SW_LOG_CRIT, 0, NULL);
    loop = ev_loop_new(EVBACKEND_POLL | EVFLAG_NOENV);
    if (!loop)
        fz_abort("ev_loop_new");
}

size_t fz_plan_parse(const uint8_t *data, size_t size, fz_plan_t *plan)
{
    memset(plan, 0, sizeof(*plan));
    if (size < 1)
        return 0;
    plan->flags = data[0];
    plan->ncuts = data[0] & 7;
    if (size < 1 + (size_t)plan->ncuts)
        return 0;
    memcpy(plan->gaps, data + 1, (size_t)plan->ncuts);
    return 1 + (size_t)plan->ncuts;
}

void fz_conn_run(const fz_plan_t *plan, const uint8_t *stream, size_t len, size_t fixed_len)
{
    setup_once();
    flags = plan->flags;
    opens = closes = 0;
    greeted = 0;
    later.c = NULL;
    clock_off_ns = 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        fz_abort("socketpair");
    if (flags & F_NOREAD) {
        int small = 1; /* the kernel's minimum */
        (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    client = sv[1];
    env_wire(&env);
    if (!sw_conn_new(&env, sv[0]))
        fz_abort("sw_conn_new");

    /* Pieces: the fixed part goes with the first one. */
    size_t at = 0, cut = fixed_len;
    for (int i = 0; i <= plan->ncuts; i++) {
        size_t end = len;
        if (i < plan->ncuts) {
            cut += plan->gaps[i];
            end = SW_MIN(cut, len);
        }
        if (end > at) {
            put(stream + at, end - at); /* settles */
            at = end;
        } else {
            settle();
        }
        step();
        tick();
    }
    if (flags & F_SHUT) {
        if (flags & F_NOREAD) { /* the client is gone */
            close(client);
            client = -1;
        } else {
            shutdown(client, SHUT_WR);
        }
        settle();
        tick();
    }
    if (client >= 0) /* read everything at last */
        flags &= (uint8_t)~F_NOREAD;
    settle();
    /* One step per pipelined request still waiting: at most one per
     * 14 input bytes ("GET / HTTP/1.1\r\n\r\n" less the version). */
    for (size_t i = 0; later.c && i <= len / 14 + 1; i++)
        step();
    CHECK(!later.c);

    sw_conn_env_destroy(&env);
    CHECK(env.nconns == 0 && env.nws == 0 && env.nhib == 0);
    CHECK(TAILQ_EMPTY(&env.conns) && TAILQ_EMPTY(&env.pending));
    CHECK(opens == closes);
    /* Nothing of the conn may be left on the loop: a stale watcher fires
     * here (ASan reports it) rather than in a later input. */
    clock_off_ns += 3000000000LL; /* past every deadline of conn.c (2 s at most) */
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(ev_pending_count(loop) == 0);
    if (client >= 0)
        close(client);
    client = -1;
    clock_off_ns = 0;
    ev_now_update(loop);
}
