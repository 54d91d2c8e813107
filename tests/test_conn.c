/* test_conn.c — HTTP/1.1 and WebSocket connections over loopback.
 *
 * A server thread runs an ev loop (ev_loop_new) with a listener on
 * 127.0.0.1:0 that hands accepted sockets to sw_conn_new. The test thread
 * talks to it with blocking sockets and hand-built (masked) frames. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "common/util.h"
#include "worker/conn.h"

#define MAX_MESSAGE 16384
#define MAX_SEND (1024 * 1024)
#define MAX_HEADER 4096
#define MAX_BODY 65536
#define FLOOD_MSG (64 * 1024)
#define FLOOD_TOTAL (10 * 1024 * 1024)
#define SLOW_MS 1200 /* GET /slow is answered this late */
#define FILL_MSGS 10 /* "fillclose": 640 KiB, under MAX_SEND, over what a socket takes */

/* ---- server thread ---------------------------------------------------- */

static struct {
    struct ev_loop *loop;
    sw_conn_env_t env;
    ev_io accept_w;
    ev_async stop_w;
    ev_timer stat_w;
    ev_timer async_w; /* answers GET /async later */
    ev_timer slow_w;  /* answers GET /slow much later (SLOW_MS) */
    sw_conn_t *async_conn;
    int lfd;
    int port;
    pthread_t thread;
} srv;

static atomic_int g_opens, g_closes, g_double_close, g_nconns, g_nws;
static atomic_int g_http_calls; /* on_http calls */
static atomic_int g_flood_done, g_flood_rc, g_flood_sent;
/* ev_now() in microseconds (server thread): when a flood or trickle hit
 * the output bound, and when the last on_close ran. */
static atomic_llong g_bound_at_us, g_close_at_us;

static long long now_us(void)
{
    return (long long)(ev_now(srv.loop) * 1e6);
}
static atomic_int g_nhib; /* hibernating conns, copied by stat_cb */

/* Open WebSocket conns, for messages that act on the others (server
 * thread only). */
#define MAX_OPEN 32
static sw_conn_t *g_open[MAX_OPEN];

static void open_add(sw_conn_t *c)
{
    for (int i = 0; i < MAX_OPEN; i++) {
        if (!g_open[i]) {
            g_open[i] = c;
            return;
        }
    }
}

static void open_del(sw_conn_t *c)
{
    for (int i = 0; i < MAX_OPEN; i++) {
        if (g_open[i] == c)
            g_open[i] = NULL;
    }
}

/* "trickle" (WebSocket) and GET /sse-trickle: one TRICKLE_MSG-byte
 * message per millisecond from a timer, across loop iterations, until the
 * conn refuses one; the most bytes ever queued for it are recorded. One
 * trickle at a time (server thread). */
#define TRICKLE_MSG (16 * 1024)
static struct {
    ev_timer w;
    sw_conn_t *c;
    int sse, sent;
    size_t max_pending;
} g_trickle;
static atomic_int g_trickle_done, g_trickle_rc, g_trickle_sent;
static atomic_long g_trickle_max_pending;

static void trickle_end(int rc)
{
    ev_timer_stop(srv.loop, &g_trickle.w);
    g_trickle.c = NULL;
    atomic_store(&g_bound_at_us, now_us());
    atomic_store(&g_trickle_sent, g_trickle.sent);
    atomic_store(&g_trickle_max_pending, (long)g_trickle.max_pending);
    atomic_store(&g_trickle_rc, rc);
    atomic_store(&g_trickle_done, 1);
}

static void trickle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    static char chunk[TRICKLE_MSG];
    memset(chunk, 't', sizeof(chunk));
    sw_conn_t *c = g_trickle.c;
    int rc = g_trickle.sse ? sw_conn_sse_send(c, "t", NULL, chunk, sizeof(chunk))
                           : sw_conn_send(c, chunk, sizeof(chunk));
    g_trickle.max_pending = SW_MAX(g_trickle.max_pending, sw_conn_pending_bytes(c));
    if (rc != 0)
        trickle_end(rc);
    else
        g_trickle.sent++;
}

static void trickle_start(sw_conn_t *c, int sse)
{
    g_trickle.c = c;
    g_trickle.sse = sse;
    g_trickle.sent = 0;
    g_trickle.max_pending = 0;
    ev_timer_init(&g_trickle.w, trickle_cb, 0.001, 0.001);
    ev_timer_start(srv.loop, &g_trickle.w);
}

/* Refuses the upgrade of a client whose Origin is http://evil.example
 * (403 quoting the origin, path and query), and without an answer that of
 * http://silent.example. */
static int on_open(sw_conn_t *c, const sw_http_request_t *req)
{
    if (sw_conn_send(c, "early", 5) != SW_ECLOSED) /* not a WebSocket yet */
        atomic_fetch_add(&g_double_close, 1);
    const char *origin = req->header(req, "origin");
    if (origin && strcmp(origin, "http://evil.example") == 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "origin %s may not open %s %s?%s", origin, req->method,
                 req->path, req->query);
        sw_conn_http_error(c, 403, "forbidden_origin", msg, NULL);
        return -1;
    }
    if (origin && strcmp(origin, "http://silent.example") == 0)
        return 1;
    int *count = calloc(1, sizeof(int)); /* on_close count of this conn */
    sw_conn_set_udata(c, count);
    open_add(c);
    atomic_fetch_add(&g_opens, 1);
    return 0;
}

static void on_close(sw_conn_t *c)
{
    int *count = sw_conn_udata(c);
    open_del(c);
    if (g_trickle.c == c)
        trickle_end(SW_ECLOSED); /* closed before its bound */
    if (++*count > 1)
        atomic_fetch_add(&g_double_close, 1);
    if (sw_conn_send(c, "late", 4) != SW_ECLOSED) /* no Criterion asserts off the main thread */
        atomic_fetch_add(&g_double_close, 1);
    free(count); /* a second on_close would be a use-after-free (ASan) */
    atomic_store(&g_close_at_us, now_us());
    atomic_fetch_add(&g_closes, 1);
}

/* Payload i of the "sizes" command: SIZES[i] bytes of a pattern. */
static const size_t SIZES[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};

static void fill_pattern(char *p, size_t len, size_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)('a' + (i * 7 + seed) % 26);
}

/* Commands of the framing tests (server thread). Returns 1 when handled. */
static int frame_command(sw_conn_t *c, const char *data, size_t len)
{
    if (len == 5 && memcmp(data, "sizes", 5) == 0) {
        char *p = malloc(70000);
        for (size_t i = 0; i < SW_ARRAY_SIZE(SIZES); i++) {
            fill_pattern(p, SIZES[i], i);
            if (sw_conn_send(c, p, SIZES[i]) != 0)
                atomic_fetch_add(&g_double_close, 1);
        }
        free(p);
        return 1;
    }
    if (len == 5 && memcmp(data, "sendv", 5) == 0) {
        /* The same messages by send and by sendv, pieces of every size. */
        char *p = malloc(70000);
        fill_pattern(p, 70000, 3);
        struct iovec iov[4] = {{p, 1}, {p + 1, 0}, {p + 1, 200}, {p + 201, 70000 - 201}};
        if (sw_conn_send(c, p, 70000) != 0 || sw_conn_sendv(c, iov, 4) != 0 ||
            sw_conn_send(c, "head+tail", 9) != 0)
            atomic_fetch_add(&g_double_close, 1);
        struct iovec two[2] = {{"head", 4}, {"+tail", 5}};
        if (sw_conn_sendv(c, two, 2) != 0 || sw_conn_sendv(c, two, 1) != 0 ||
            sw_conn_sendv(c, NULL, 0) != 0 || sw_conn_sendv(c, two, -1) != SW_EINVAL)
            atomic_fetch_add(&g_double_close, 1);
        free(p);
        return 1;
    }
    if (len == 5 && memcmp(data, "burst", 5) == 0) { /* three messages at once */
        struct iovec b3[2] = {{"b", 1}, {"3", 1}};
        if (sw_conn_send(c, "b1", 2) != 0 || sw_conn_send(c, "b2", 2) != 0 ||
            sw_conn_sendv(c, b3, 2) != 0)
            atomic_fetch_add(&g_double_close, 1);
        return 1;
    }
    if (len == 10 && memcmp(data, "burstclose", 10) == 0) { /* two, close, then refused */
        struct iovec b2[1] = {{"b2", 2}};
        if (sw_conn_send(c, "b1", 2) != 0 || sw_conn_sendv(c, b2, 1) != 0)
            atomic_fetch_add(&g_double_close, 1);
        sw_conn_close(c, 1000, "bye");
        if (sw_conn_send(c, "b3", 2) != SW_ECLOSED || sw_conn_sendv(c, b2, 1) != SW_ECLOSED)
            atomic_fetch_add(&g_double_close, 1);
        return 1;
    }
    return 0;
}

static void on_message(sw_conn_t *c, const char *data, size_t len)
{
    if (frame_command(c, data, len))
        return;
    if (len == 5 && memcmp(data, "hello", 5) == 0)
        sw_conn_ws_greeted(c); /* and echoed below */
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        sw_conn_close(c, 1000, "bye");
        return;
    }
    if (len == 4 && memcmp(data, "tell", 4) == 0) { /* "told" to every other conn */
        for (int i = 0; i < MAX_OPEN; i++) {
            if (g_open[i] && g_open[i] != c && sw_conn_send(g_open[i], "told", 4) != 0)
                atomic_fetch_add(&g_double_close, 1); /* fails expect_idle */
        }
        return;
    }
    if (len == 8 && memcmp(data, "closeall", 8) == 0) { /* close every other conn */
        for (int i = 0; i < MAX_OPEN; i++) {
            if (g_open[i] && g_open[i] != c)
                sw_conn_close(g_open[i], 1000, "bye");
        }
        return;
    }
    if (len >= 5 && memcmp(data, "flood", 5) == 0) { /* "flood" or "flood <size>" */
        size_t size = len > 6 ? strtoul(data + 6, NULL, 10) : FLOOD_MSG;
        char *chunk = malloc(size);
        memset(chunk, 'x', size);
        int rc = 0, sent = 0;
        for (size_t total = 0; total < FLOOD_TOTAL; total += size) {
            rc = sw_conn_send(c, chunk, size);
            if (rc != 0)
                break;
            sent++;
        }
        free(chunk);
        atomic_store(&g_flood_sent, sent);
        atomic_store(&g_flood_rc, rc);
        atomic_store(&g_bound_at_us, now_us());
        atomic_store(&g_flood_done, 1);
        return;
    }
    if (len == 9 && memcmp(data, "fillclose", 9) == 0) { /* FILL_MSGS x FLOOD_MSG, then close */
        char *chunk = malloc(FLOOD_MSG);
        memset(chunk, 'f', FLOOD_MSG);
        for (int i = 0; i < FILL_MSGS; i++) {
            if (sw_conn_send(c, chunk, FLOOD_MSG) != 0)
                atomic_fetch_add(&g_double_close, 1);
        }
        free(chunk);
        sw_conn_close(c, 1000, "bye");
        return;
    }
    if (len == 7 && memcmp(data, "trickle", 7) == 0) {
        trickle_start(c, 0);
        return;
    }
    sw_conn_send(c, data, len);
}

/* Event streams (GET /sse...). Each counts as an open (on_close owed),
 * with the same per-conn on_close counter as a WebSocket. Checks made on
 * the server thread end up in g_sse_bad (asserted 0 by the tests). */
static atomic_int g_sse_bad, g_sse_flood_done, g_sse_flood_rc, g_sse_flood_sent;
#define SSE_FLOOD_DATA (64 * 1024)

static void sse_http(sw_conn_t *c, const sw_http_request_t *req)
{
    if (sw_conn_is_sse(c))
        atomic_fetch_add(&g_sse_bad, 1);
    if (sw_conn_sse_start(c) != 0) {
        atomic_fetch_add(&g_sse_bad, 1);
        return;
    }
    sw_conn_set_udata(c, calloc(1, sizeof(int)));
    atomic_fetch_add(&g_opens, 1);
    if (!sw_conn_is_sse(c) || sw_conn_sse_start(c) != SW_EINVAL ||
        sw_conn_send(c, "ws", 2) != SW_ECLOSED)
        atomic_fetch_add(&g_sse_bad, 1);
    if (strcmp(req->path, "/sse") == 0 || strcmp(req->path, "/sse-close") == 0) {
        if (sw_conn_sse_send(c, "state", NULL, "{\"a\":1}", 7) != 0 ||
            sw_conn_sse_send(c, "delta", "7", "{\"b\":2}", 7) != 0 ||
            sw_conn_sse_send(c, "bye", NULL, "x", 1) != 0)
            atomic_fetch_add(&g_sse_bad, 1);
        /* CR / LF would end a field early: rejected, nothing queued. */
        if (sw_conn_sse_send(c, "state", NULL, "{\"a\":\n1}", 8) != SW_EINVAL ||
            sw_conn_sse_send(c, "state", NULL, "{\"a\":\r1}", 8) != SW_EINVAL ||
            sw_conn_sse_send(c, "st\nate", NULL, "{}", 2) != SW_EINVAL ||
            sw_conn_sse_send(c, "state", "1\r", "{}", 2) != SW_EINVAL)
            atomic_fetch_add(&g_sse_bad, 1);
    }
    if (strcmp(req->path, "/sse-close") == 0) {
        sw_conn_close(c, 1000, "bye");
        if (sw_conn_sse_send(c, "late", NULL, "x", 1) != SW_ECLOSED)
            atomic_fetch_add(&g_sse_bad, 1);
    }
    if (strcmp(req->path, "/sse-trickle") == 0)
        trickle_start(c, 1);
    if (strcmp(req->path, "/sse-flood") == 0) { /* ?<size>: of each event's data */
        size_t size = req->query[0] ? strtoul(req->query, NULL, 10) : SSE_FLOOD_DATA;
        char *chunk = malloc(size);
        memset(chunk, 'x', size);
        int rc = 0, sent = 0;
        for (size_t total = 0; total < FLOOD_TOTAL; total += size) {
            rc = sw_conn_sse_send(c, "big", NULL, chunk, size);
            if (rc != 0)
                break;
            sent++;
        }
        free(chunk);
        if (sw_conn_sse_send(c, "after", NULL, "x", 1) != SW_ECLOSED)
            atomic_fetch_add(&g_sse_bad, 1);
        atomic_store(&g_sse_flood_sent, sent);
        atomic_store(&g_sse_flood_rc, rc);
        atomic_store(&g_bound_at_us, now_us());
        atomic_store(&g_sse_flood_done, 1);
    }
}

static void on_http(sw_conn_t *c, const sw_http_request_t *req)
{
    atomic_fetch_add(&g_http_calls, 1);
    if (strncmp(req->path, "/sse", 4) == 0)
        sse_http(c, req);
    else if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/healthz") == 0)
        sw_conn_http_reply(c, 200, "text/plain", NULL, "ok", 2);
    else if (strcmp(req->path, "/async") == 0) {
        srv.async_conn = c;
        ev_timer_start(srv.loop, &srv.async_w);
    } else if (strcmp(req->path, "/slow") == 0) {
        srv.async_conn = c;
        ev_timer_start(srv.loop, &srv.slow_w);
    } else if (strcmp(req->path, "/err") == 0) {
        /* An error quoting client bytes (the X-Msg header). */
        sw_conn_http_error(c, 400, "bad_request", req->header(req, "X-Msg"), "X-Err: 1\r\n");
    } else if (strcmp(req->path, "/echo") == 0) {
        const char *h = req->header(req, "x-TEST");
        char body[256];
        int n = snprintf(body, sizeof(body), "%s|%s|%s|%.*s", req->method, req->query,
                         h ? h : "(none)", (int)req->body_len, req->body ? req->body : "");
        sw_conn_http_reply(c, 200, "text/plain", "X-Extra: 1\r\n", body, (size_t)n);
    } else
        sw_conn_http_reply(c, 404, "text/plain", NULL, "not found", 9);
}

static void async_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    sw_conn_http_reply(srv.async_conn, 200, "text/plain", NULL, "later", 5);
    srv.async_conn = NULL;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    int fd = accept(srv.lfd, NULL, NULL);
    if (fd >= 0)
        sw_conn_new(&srv.env, fd);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void stat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    atomic_store(&g_nconns, (int)srv.env.nconns);
    atomic_store(&g_nws, (int)srv.env.nws);
    atomic_store(&g_nhib, (int)sw_conn_env_hibernating(&srv.env));
}

static void *server_main(void *arg)
{
    (void)arg;
    ev_run(srv.loop, 0);
    return NULL;
}

/* What a suite changes in the server's env (zero: the defaults). */
typedef struct {
    uint32_t ping_interval_ms;
    uint32_t ping_timeout_ms;
    uint32_t http_timeout_ms;
    size_t max_send_bytes; /* 0: MAX_SEND */
    int no_on_http;        /* env->on_http NULL: conn.c answers every request itself */
} srv_opts_t;

static void setup_opts(const srv_opts_t *o)
{
    memset(&srv, 0, sizeof(srv));
    srv.loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(srv.loop);
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(srv.lfd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(srv.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(srv.lfd, 64), 0);
    socklen_t sl = sizeof(sin);
    cr_assert_eq(getsockname(srv.lfd, (struct sockaddr *)&sin, &sl), 0);
    srv.port = ntohs(sin.sin_port);
    cr_assert_eq(sw_fd_nonblock(srv.lfd), 0);

    sw_conn_env_init(&srv.env);
    srv.env.loop = srv.loop;
    srv.env.ws_path = "/_event";
    srv.env.max_message_bytes = MAX_MESSAGE;
    srv.env.max_send_bytes = o->max_send_bytes ? o->max_send_bytes : MAX_SEND;
    srv.env.sndbuf_bytes = SW_CONN_SNDBUF_BYTES; /* as the worker */
    srv.env.max_header_bytes = MAX_HEADER;
    srv.env.max_body_bytes = MAX_BODY;
    srv.env.on_open = on_open;
    srv.env.on_message = on_message;
    srv.env.on_close = on_close;
    srv.env.on_http = o->no_on_http ? NULL : on_http;
    srv.env.ping_interval_ms = o->ping_interval_ms;
    srv.env.ping_timeout_ms = o->ping_timeout_ms;
    srv.env.http_timeout_ms = o->http_timeout_ms;

    ev_io_init(&srv.accept_w, accept_cb, srv.lfd, EV_READ);
    ev_io_start(srv.loop, &srv.accept_w);
    ev_async_init(&srv.stop_w, stop_cb);
    ev_async_start(srv.loop, &srv.stop_w);
    ev_timer_init(&srv.stat_w, stat_cb, 0.002, 0.002);
    ev_timer_start(srv.loop, &srv.stat_w);
    ev_timer_init(&srv.async_w, async_cb, 0.02, 0.);
    ev_timer_init(&srv.slow_w, async_cb, SLOW_MS / 1000., 0.);
    cr_assert_eq(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
}

static void setup_env(uint32_t ping_interval_ms, uint32_t ping_timeout_ms)
{
    srv_opts_t o = {.ping_interval_ms = ping_interval_ms, .ping_timeout_ms = ping_timeout_ms};
    setup_opts(&o);
}

static void setup(void)
{
    setup_env(0, 0); /* no liveness pings */
}

/* Liveness suite: tiny intervals. */
#define PING_INTERVAL_MS 100
#define PING_TIMEOUT_MS 300

static void setup_ping(void)
{
    setup_env(PING_INTERVAL_MS, PING_TIMEOUT_MS);
}

static void teardown(void)
{
    ev_async_send(srv.loop, &srv.stop_w);
    pthread_join(srv.thread, NULL);
    sw_conn_env_destroy(&srv.env);
    close(srv.lfd);
    ev_loop_destroy(srv.loop);
}

/* Wait (bounded) until the server has no connections and every opened
 * conn got its on_close; then check it. */
static void expect_idle(int opens)
{
    for (int i = 0; i < 2500; i++) {
        if (atomic_load(&g_nconns) == 0 && atomic_load(&g_closes) == atomic_load(&g_opens))
            break;
        usleep(2000);
    }
    cr_assert_eq(atomic_load(&g_nconns), 0, "nconns did not return to 0");
    cr_assert_eq(atomic_load(&g_nws), 0);
    cr_assert_eq(atomic_load(&g_opens), opens);
    cr_assert_eq(atomic_load(&g_closes), opens, "on_close once per opened conn");
    cr_assert_eq(atomic_load(&g_double_close), 0);
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 30);

/* ---- client helpers --------------------------------------------------- */

static int cli_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void cli_write(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

static void cli_write_str(int fd, const char *s)
{
    cli_write(fd, s, strlen(s));
}

/* Read exactly n bytes; returns 0, or -1 on EOF/error/timeout. */
static int read_exact(int fd, void *p, size_t n)
{
    char *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* 1 when the peer closed (EOF or reset) with nothing more to read. */
static int read_eof(int fd)
{
    char ch;
    ssize_t r = read(fd, &ch, 1);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* 1 when fd has input within ms. */
static int readable_within(int fd, int ms)
{
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return select(fd + 1, &rs, NULL, NULL, &tv) > 0;
}

typedef struct {
    int status;
    char head[8192];
    char body[8192];
    size_t body_len;
} http_resp_t;

/* Read one response (head byte by byte, then Content-Length bytes). */
static int read_response(int fd, http_resp_t *r)
{
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    while (n + 1 < sizeof(r->head)) {
        if (read_exact(fd, r->head + n, 1) < 0)
            return -1;
        n++;
        if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    r->head[n] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    size_t len = cl ? strtoul(cl + 17, NULL, 10) : 0;
    if (len >= sizeof(r->body))
        return -1;
    if (len && read_exact(fd, r->body, len) < 0)
        return -1;
    r->body_len = len;
    return r->status;
}

static int has_header(const http_resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* The response is conn.c's JSON error: `status`, Content-Type
 * application/json, and exactly {"error":{"code":<code>,"message":<msg>}}
 * (code and msg need no JSON escaping). */
static void expect_error(const http_resp_t *r, int status, const char *code, const char *msg)
{
    char want[512];
    snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    cr_assert_eq(r->status, status, "%s", r->head);
    cr_assert(has_header(r, "\r\nContent-Type: application/json\r\n"), "%s", r->head);
    cr_assert_str_eq(r->body, want);
    cr_assert_eq(r->body_len, strlen(want));
}

static int http_once(const char *request, http_resp_t *r)
{
    int fd = cli_connect();
    cli_write_str(fd, request);
    int st = read_response(fd, r);
    close(fd);
    return st;
}

/* Build a client frame: FIN bit, opcode, payload, masked or not. */
static void ws_send_frame(int fd, int fin, int opcode, const void *payload, size_t len, int masked)
{
    uint8_t *f = malloc(len + 14);
    size_t n = 0;
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    f[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mbit = masked ? 0x80 : 0;
    if (len < 126) {
        f[n++] = (uint8_t)(mbit | len);
    } else if (len < 65536) {
        f[n++] = mbit | 126;
        f[n++] = (uint8_t)(len >> 8);
        f[n++] = (uint8_t)len;
    } else {
        f[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            f[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        memcpy(f + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        f[n + i] = ((const uint8_t *)payload)[i] ^ (masked ? key[i % 4] : 0);
    cli_write(fd, f, n + len);
    free(f);
}

static void ws_send_text(int fd, const char *s)
{
    ws_send_frame(fd, 1, 0x1, s, strlen(s), 1);
}

static void ws_send_close(int fd, uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    ws_send_frame(fd, 1, 0x8, p, 2, 1);
}

typedef struct {
    int fin, opcode;
    int lencode;   /* the 7-bit length field: the length, or 126 / 127 */
    uint8_t *data; /* NUL-terminated, owned */
    size_t len;
} frame_t;

/* Read one server frame (must be unmasked). 0 or -1 on EOF/error. */
static int ws_read_frame(int fd, frame_t *fr)
{
    uint8_t h[2];
    memset(fr, 0, sizeof(*fr));
    if (read_exact(fd, h, 2) < 0)
        return -1;
    fr->fin = h[0] >> 7;
    fr->opcode = h[0] & 0x0f;
    cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
    cr_assert_eq(h[0] & 0x70, 0, "no RSV bits");
    uint64_t len = h[1] & 0x7f;
    fr->lencode = (int)len;
    if (len == 126) {
        uint8_t e[2];
        if (read_exact(fd, e, 2) < 0)
            return -1;
        len = ((uint64_t)e[0] << 8) | e[1];
    } else if (len == 127) {
        uint8_t e[8];
        if (read_exact(fd, e, 8) < 0)
            return -1;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | e[i];
    }
    cr_assert_lt(len, (uint64_t)64 << 20);
    fr->data = malloc(len + 1);
    if (len && read_exact(fd, fr->data, len) < 0) {
        free(fr->data);
        fr->data = NULL;
        return -1;
    }
    fr->data[len] = 0;
    fr->len = len;
    return 0;
}

/* Read frames until a close frame; returns its status code (-1 on EOF
 * first). `reason` gets the reason text if non-NULL. `skipped` counts the
 * payload bytes of data frames read before it. */
static int ws_expect_close(int fd, char *reason, size_t reason_cap, size_t *skipped)
{
    frame_t fr;
    size_t skip = 0;
    for (;;) {
        if (ws_read_frame(fd, &fr) < 0)
            return -1;
        if (fr.opcode == 0x8)
            break;
        skip += fr.len;
        free(fr.data);
    }
    int code = fr.len >= 2 ? (fr.data[0] << 8) | fr.data[1] : 1005;
    if (reason && reason_cap) {
        size_t rl = fr.len > 2 ? fr.len - 2 : 0;
        if (rl >= reason_cap)
            rl = reason_cap - 1;
        memcpy(reason, fr.data + 2, rl);
        reason[rl] = 0;
    }
    if (skipped)
        *skipped = skip;
    free(fr.data);
    return code;
}

#define UPGRADE_REQ(key)                                                                           \
    "GET /_event HTTP/1.1\r\n"                                                                     \
    "Host: localhost\r\n"                                                                          \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: keep-alive, Upgrade\r\n"                                                          \
    "Sec-WebSocket-Key: " key "\r\n"                                                               \
    "Sec-WebSocket-Version: 13\r\n\r\n"

/* Connect and upgrade; returns the socket. */
static int ws_connect(void)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, UPGRADE_REQ("dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert_eq(read_response(fd, &r), 101, "%s", r.head);
    return fd;
}

/* Client-initiated close: close frame, expect the echo, then EOF. */
static void ws_close_clean(int fd)
{
    ws_send_close(fd, 1000);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1000);
    cr_assert(read_eof(fd), "server closes after the closing handshake");
    close(fd);
}

static void expect_text(int fd, const char *want)
{
    frame_t fr;
    cr_assert_eq(ws_read_frame(fd, &fr), 0);
    cr_assert_eq(fr.opcode, 0x1);
    cr_assert_eq(fr.fin, 1);
    cr_assert_eq(fr.len, strlen(want));
    cr_assert_str_eq((char *)fr.data, want);
    free(fr.data);
}

/* ---- WebSocket -------------------------------------------------------- */

Test(conn, upgrade_accept_header)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, UPGRADE_REQ("dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert_eq(read_response(fd, &r), 101);
    cr_assert(has_header(&r, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "%s",
              r.head);
    cr_assert(has_header(&r, "\r\nUpgrade: websocket\r\n"));
    cr_assert(has_header(&r, "\r\nConnection: Upgrade\r\n"));
    ws_close_clean(fd);
    expect_idle(1);
}

/* on_open refuses: its answer goes out, no 101, no on_close, and the
 * connection closes after the answer. */
Test(conn, on_open_refuses_with_403)
{
    int fd = cli_connect();
    cli_write_str(fd, "GET /_event?room=1 HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Origin: http://evil.example\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n");
    /* A frame right behind the request is not read as WebSocket input. */
    ws_send_text(fd, "ignored");
    http_resp_t r;
    cr_assert_eq(read_response(fd, &r), 403, "%s", r.head);
    expect_error(&r, 403, "forbidden_origin",
                 "origin http://evil.example may not open GET /_event?room=1");
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert(!has_header(&r, "Sec-WebSocket-Accept"));
    cr_assert(!has_header(&r, "Upgrade:"));
    cr_assert(read_eof(fd), "nothing after the answer");
    close(fd);

    /* Refused without an answer: conn.c answers 403 itself. */
    fd = cli_connect();
    cli_write_str(fd, "GET /_event HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Origin: http://silent.example\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 403, "%s", r.head);
    expect_error(&r, 403, "forbidden", "upgrade refused");
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(0); /* no open, no on_close */

    /* Any other origin is accepted. */
    fd = cli_connect();
    cli_write_str(fd, "GET /_event HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Origin: http://good.example\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 101, "%s", r.head);
    ws_send_text(fd, "hello");
    expect_text(fd, "hello");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn, echo_text)
{
    int fd = ws_connect();
    ws_send_text(fd, "hello");
    expect_text(fd, "hello");
    ws_send_text(fd, "");
    expect_text(fd, "");
    ws_send_text(fd, "h\xc3\xa9llo \xe2\x82\xac");
    expect_text(fd, "h\xc3\xa9llo \xe2\x82\xac");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn, frame_in_same_packet_as_head)
{
    /* Bytes after the request head are the first WebSocket bytes. */
    int fd = cli_connect();
    char buf[512];
    size_t n = strlen(UPGRADE_REQ("dGhlIHNhbXBsZSBub25jZQ=="));
    memcpy(buf, UPGRADE_REQ("dGhlIHNhbXBsZSBub25jZQ=="), n);
    /* masked "early" with a zero mask */
    const uint8_t frame[] = {0x81, 0x85, 0, 0, 0, 0, 'e', 'a', 'r', 'l', 'y'};
    memcpy(buf + n, frame, sizeof(frame));
    cli_write(fd, buf, n + sizeof(frame));
    http_resp_t r;
    cr_assert_eq(read_response(fd, &r), 101);
    expect_text(fd, "early");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn, fragmented_message_with_ping)
{
    int fd = ws_connect();
    ws_send_frame(fd, 0, 0x1, "hel", 3, 1);
    ws_send_frame(fd, 1, 0x9, "p1", 2, 1); /* ping between fragments */
    ws_send_frame(fd, 0, 0x0, "lo ", 3, 1);
    ws_send_frame(fd, 1, 0x0, "world", 5, 1);
    frame_t fr;
    cr_assert_eq(ws_read_frame(fd, &fr), 0);
    cr_assert_eq(fr.opcode, 0xA, "pong");
    cr_assert_eq(fr.len, 2);
    cr_assert_eq(memcmp(fr.data, "p1", 2), 0);
    free(fr.data);
    expect_text(fd, "hello world");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn, message_too_big_1009)
{
    int fd = ws_connect();
    size_t len = MAX_MESSAGE + 1000;
    char *big = malloc(len);
    memset(big, 'a', len);
    ws_send_frame(fd, 1, 0x1, big, len, 1);
    free(big);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1009);
    close(fd);
    expect_idle(1);
}

Test(conn, fragmented_too_big_1009)
{
    int fd = ws_connect();
    char *part = malloc(MAX_MESSAGE / 2 + 10);
    memset(part, 'b', MAX_MESSAGE / 2 + 10);
    ws_send_frame(fd, 0, 0x1, part, MAX_MESSAGE / 2 + 10, 1);
    ws_send_frame(fd, 1, 0x0, part, MAX_MESSAGE / 2 + 10, 1);
    free(part);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1009);
    close(fd);
    expect_idle(1);
}

Test(conn, binary_1003)
{
    int fd = ws_connect();
    ws_send_frame(fd, 1, 0x2, "\x01\x02", 2, 1);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1003);
    ws_send_close(fd, 1003);
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(1);
}

Test(conn, invalid_utf8_1007)
{
    int fd = ws_connect();
    ws_send_frame(fd, 1, 0x1, "ok\xc3\x28", 4, 1);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1007);
    close(fd);
    expect_idle(1);
}

Test(conn, truncated_utf8_across_fragments_1007)
{
    int fd = ws_connect();
    ws_send_frame(fd, 0, 0x1, "ab\xe2\x82", 4, 1);
    ws_send_frame(fd, 1, 0x0, "", 0, 1);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1007);
    close(fd);
    expect_idle(1);
}

Test(conn, unmasked_1002)
{
    int fd = ws_connect();
    ws_send_frame(fd, 1, 0x1, "hi", 2, 0);
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1002);
    close(fd);
    expect_idle(1);
}

/* ---- protocol errors: the close frame with the RFC 6455 code (§7.4.1),
 * then the socket goes (the server waits for no reply) ---------------- */

/* The next frame is a close with `code` and no reason, then EOF. */
static void expect_fail_close(int fd, int code)
{
    char reason[64];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), NULL), code);
    cr_assert_str_eq(reason, "");
    cr_assert(read_eof(fd), "the server closes after its close frame");
    close(fd);
}

/* A fresh WebSocket that has sent (and got back) one message. */
static int ws_connect_used(void)
{
    int fd = ws_connect();
    ws_send_text(fd, "first");
    expect_text(fd, "first");
    return fd;
}

Test(conn, fragmented_control_frame_1002)
{
    int fd = ws_connect_used();
    ws_send_frame(fd, 0, 0x9, "p", 1, 1); /* a ping without FIN (§5.5) */
    expect_fail_close(fd, 1002);
    fd = ws_connect_used();
    ws_send_frame(fd, 0, 0x8, "\x03\xe8", 2, 1); /* a close without FIN */
    expect_fail_close(fd, 1002);
    expect_idle(2);
}

Test(conn, control_frame_over_125_bytes_1002)
{
    int fd = ws_connect_used();
    char p[126];
    memset(p, 'p', sizeof(p));
    ws_send_frame(fd, 1, 0x9, p, sizeof(p), 1); /* 16-bit length form (§5.5) */
    expect_fail_close(fd, 1002);
    expect_idle(1);
}

Test(conn, length_with_top_bit_set_1002)
{
    int fd = ws_connect_used();
    /* 64-bit length 2^63 + 5: "the most significant bit MUST be 0" (§5.2) */
    const uint8_t f[] = {0x81, 0x80 | 127, 0x80, 0, 0,   0,   0,   0,   0,  5,
                         0,    0,          0,    0, 'h', 'e', 'l', 'l', 'o'};
    cli_write(fd, f, sizeof(f));
    expect_fail_close(fd, 1002);
    expect_idle(1);
}

Test(conn, non_minimal_length_1002)
{
    /* "the minimal number of bytes MUST be used to encode the length" (§5.2) */
    int fd = ws_connect_used();
    const uint8_t f16[] = {0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    cli_write(fd, f16, sizeof(f16));
    expect_fail_close(fd, 1002);
    fd = ws_connect_used();
    const uint8_t f64[] = {0x81, 0x80 | 127, 0, 0, 0,   0,   0,   0,   0,  5,
                           0,    0,          0, 0, 'h', 'e', 'l', 'l', 'o'};
    cli_write(fd, f64, sizeof(f64));
    expect_fail_close(fd, 1002);
    expect_idle(2);
}

Test(conn, reserved_opcodes_1002)
{
    static const int ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < SW_ARRAY_SIZE(ops); i++) {
        int fd = ws_connect_used();
        ws_send_frame(fd, 1, ops[i], "x", 1, 1);
        expect_fail_close(fd, 1002);
    }
    /* Also between the fragments of a message. */
    int fd = ws_connect_used();
    ws_send_frame(fd, 0, 0x1, "ab", 2, 1);
    ws_send_frame(fd, 1, 0xB, "", 0, 1);
    expect_fail_close(fd, 1002);
    expect_idle((int)SW_ARRAY_SIZE(ops) + 1);
}

Test(conn, rsv_bits_without_extension_1002)
{
    for (int rsv = 0x40; rsv >= 0x10; rsv >>= 1) { /* RSV1, RSV2, RSV3 (§5.2) */
        int fd = ws_connect_used();
        const uint8_t f[] = {(uint8_t)(0x81 | rsv), 0x82, 0, 0, 0, 0, 'h', 'i'};
        cli_write(fd, f, sizeof(f));
        expect_fail_close(fd, 1002);
    }
    int fd = ws_connect_used();
    const uint8_t ping[] = {0x89 | 0x40, 0x80, 0, 0, 0, 0}; /* RSV1 on a ping */
    cli_write(fd, ping, sizeof(ping));
    expect_fail_close(fd, 1002);
    expect_idle(4);
}

Test(conn, continuation_without_message_1002)
{
    int fd = ws_connect_used();
    ws_send_frame(fd, 1, 0x0, "tail", 4, 1); /* §5.4 */
    expect_fail_close(fd, 1002);
    expect_idle(1);
}

Test(conn, new_message_inside_fragmented_one_1002)
{
    int fd = ws_connect_used();
    ws_send_frame(fd, 0, 0x1, "part", 4, 1);
    ws_send_frame(fd, 1, 0x1, "new", 3, 1); /* §5.4: continuation expected */
    expect_fail_close(fd, 1002);
    fd = ws_connect_used();
    ws_send_frame(fd, 0, 0x1, "part", 4, 1);
    ws_send_frame(fd, 1, 0x2, "\x01", 1, 1);
    expect_fail_close(fd, 1002);
    expect_idle(2);
}

Test(conn, unmasked_control_frame_1002)
{
    int fd = ws_connect_used();
    ws_send_frame(fd, 1, 0x9, "p", 1, 0); /* §5.1: every client frame is masked */
    expect_fail_close(fd, 1002);
    expect_idle(1);
}

Test(conn, close_reason_invalid_utf8_1007)
{
    int fd = ws_connect_used();
    ws_send_frame(fd, 1, 0x8, "\x03\xe8ok\xc3\x28", 6, 1); /* §5.5.1, §8.1 */
    expect_fail_close(fd, 1007);
    expect_idle(1);
}

Test(conn, close_with_bad_status_1002)
{
    /* 1005, 1006 and 1015 never go on the wire; < 1000 and >= 5000 are not
     * codes (§7.4.1, §7.4.2); a 1-byte body has no room for a code. */
    static const uint8_t bodies[][2] = {
        {0x03, 0xed}, {0x03, 0xee}, {0x03, 0xf7}, {0x03, 0xe7}, {0x13, 0x88}};
    for (size_t i = 0; i < SW_ARRAY_SIZE(bodies); i++) {
        int fd = ws_connect_used();
        ws_send_frame(fd, 1, 0x8, bodies[i], 2, 1);
        expect_fail_close(fd, 1002);
    }
    int fd = ws_connect_used();
    ws_send_frame(fd, 1, 0x8, "\x03", 1, 1);
    expect_fail_close(fd, 1002);
    expect_idle((int)SW_ARRAY_SIZE(bodies) + 1);
}

Test(conn, server_close_1000_bye)
{
    int fd = ws_connect();
    ws_send_text(fd, "before");
    ws_send_text(fd, "close");
    expect_text(fd, "before");
    char reason[64];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), NULL), 1000);
    cr_assert_str_eq(reason, "bye");
    ws_send_close(fd, 1000);
    cr_assert(read_eof(fd), "server closes after the peer's close");
    close(fd);
    expect_idle(1);
}

Test(conn, server_close_timeout_without_peer_close)
{
    int fd = ws_connect();
    ws_send_text(fd, "close");
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1000);
    /* No close reply: the server gives up after its close timeout. */
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(1);
}

/* Read until the connection ends (bounded by SO_RCVTIMEO); returns the
 * bytes read. *err: 0 for EOF, else the errno (ECONNRESET: a reset). */
static size_t drain(int fd, int *err)
{
    static char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0) {
            *err = r == 0 ? 0 : errno;
            return total;
        }
        total += (size_t)r;
    }
}

/* A burst over the output bound that the client does not read: its
 * socket (SW_CONN_SNDBUF_BYTES) cannot take what is queued, so a 1013
 * could not reach it either: the conn is reset, the server's queued bytes
 * are dropped. (A client that can still take the close gets 1013: see
 * conn_bound.) */
Test(conn, flood_unread_burst_is_reset)
{
    int fd = ws_connect();
    ws_send_text(fd, "flood");
    for (int i = 0; i < 2500 && !atomic_load(&g_flood_done); i++)
        usleep(2000);
    cr_assert(atomic_load(&g_flood_done));
    cr_assert_eq(atomic_load(&g_flood_rc), SW_ETOOLARGE);
    size_t queued = (size_t)atomic_load(&g_flood_sent) * (FLOOD_MSG + 4);
    cr_assert_leq(queued, (size_t)MAX_SEND);
    cr_assert_gt(queued + FLOOD_MSG + 4, (size_t)MAX_SEND, "stopped at the bound");
    expect_idle(1);
    long long wait_ms = (atomic_load(&g_close_at_us) - atomic_load(&g_bound_at_us)) / 1000;
    cr_assert_lt(wait_ms, 1000, "dropped at once, not after the close timeout (%lld ms)", wait_ms);
    int err = 0;
    size_t got = drain(fd, &err);
    cr_assert_eq(err, ECONNRESET, "reset, not a close: %s", strerror(err));
    cr_assert_lt(got, queued, "what the socket did not take was dropped (%zu of %zu)", got, queued);
    close(fd);
}

/* The close timeout resets a conn whose output the client does not take:
 * the kernel keeps nothing for it. */
Test(conn, close_timeout_resets_unread_output)
{
    int fd = ws_connect();
    uint64_t t0 = mono_ms();
    ws_send_text(fd, "fillclose");
    expect_idle(1);
    cr_assert_geq(mono_ms() - t0, 1500, "after the close timeout (2 s)");
    int err = 0;
    size_t got = drain(fd, &err);
    cr_assert_eq(err, ECONNRESET, "reset, not a close: %s", strerror(err));
    cr_assert_lt(got, (size_t)FILL_MSGS * FLOOD_MSG, "unsent output dropped (%zu)", got);
    close(fd);
}

Test(conn, abrupt_client_close_calls_on_close)
{
    int fds[5];
    for (int i = 0; i < 5; i++)
        fds[i] = ws_connect();
    ws_send_text(fds[0], "x");
    expect_text(fds[0], "x");
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    /* And one that closes in the middle of a frame. */
    int fd = ws_connect();
    const uint8_t partial[] = {0x81, 0x85, 1, 2};
    cli_write(fd, partial, sizeof(partial));
    close(fd);
    expect_idle(6);
}

/* ---- HTTP ------------------------------------------------------------- */

Test(conn, healthz_keepalive_and_pipelining)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200, "%s", r.head);
    cr_assert_eq(r.body_len, 2);
    cr_assert_str_eq(r.body, "ok");
    cr_assert(has_header(&r, "\r\nContent-Type: text/plain\r\n"));
    cr_assert(!has_header(&r, "Connection: close"));
    /* second request on the same socket */
    cli_write_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_str_eq(r.body, "ok");
    /* pipelined: answered in order */
    cli_write_str(fd,
                  "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  "POST /echo?a=1 HTTP/1.1\r\nHost: x\r\nX-Test: v\r\nContent-Length: 4\r\n\r\nbody"
                  "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 404);
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_str_eq(r.body, "POST|a=1|v|body");
    cr_assert(has_header(&r, "\r\nX-Extra: 1\r\n"));
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(0);
}

Test(conn, async_reply_keeps_pipelined_order)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_str_eq(r.body, "later");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_str_eq(r.body, "ok");
    /* idle keep-alive conn, then another async request */
    cli_write_str(fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_str_eq(r.body, "later");
    close(fd);
    expect_idle(0);
}

Test(conn, http10_closes)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(0);
}

Test(conn, unknown_path_404)
{
    http_resp_t r;
    cr_assert_eq(http_once("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    cr_assert_str_eq(r.body, "not found");
    expect_idle(0);
}

Test(conn, post_ws_path_goes_to_on_http)
{
    /* Only GET on the WebSocket path is a handshake; a POST there (the
     * messages of an event stream) is an ordinary request for on_http. */
    http_resp_t r;
    cr_assert_eq(http_once("POST /_event HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r),
                 404);
    cr_assert_str_eq(r.body, "not found", "answered by on_http");
    expect_idle(0);
}

Test(conn, missing_version_426)
{
    http_resp_t r;
    cr_assert_eq(
        http_once("GET /_event HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                  &r),
        426);
    cr_assert(has_header(&r, "\r\nSec-WebSocket-Version: 13\r\n"));
    expect_error(&r, 426, "upgrade_required", "Sec-WebSocket-Version 13 required");
    cr_assert_eq(http_once("GET /_event HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 8\r\n\r\n",
                           &r),
                 426);
    expect_error(&r, 426, "upgrade_required", "Sec-WebSocket-Version 13 required");
    expect_idle(0);
}

Test(conn, no_upgrade_headers_426)
{
    http_resp_t r;
    cr_assert_eq(http_once("GET /_event HTTP/1.1\r\nHost: x\r\n\r\n", &r), 426);
    cr_assert(has_header(&r, "\r\nUpgrade: websocket\r\n"));
    expect_error(&r, 426, "upgrade_required", "WebSocket upgrade required");
    expect_idle(0);
}

Test(conn, bad_key_400)
{
    http_resp_t r;
    cr_assert_eq(http_once(UPGRADE_REQ("c2hvcnQ="), &r), 400);
    expect_error(&r, 400, "bad_request", "missing or invalid Sec-WebSocket-Key");
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert_eq(http_once(UPGRADE_REQ("!!!!!!!!!!!!!!!!!!!!!!=="), &r), 400);
    expect_error(&r, 400, "bad_request", "missing or invalid Sec-WebSocket-Key");
    cr_assert_eq(http_once("GET /_event HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                           &r),
                 400);
    expect_error(&r, 400, "bad_request", "missing or invalid Sec-WebSocket-Key");
    expect_idle(0);
}

Test(conn, garbage_400)
{
    http_resp_t r;
    cr_assert_eq(http_once("\x01\x02 garbage \x7f\r\n\r\n", &r), 400);
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    expect_error(&r, 400, "bad_request", "malformed HTTP request: invalid HTTP method");
    cr_assert_eq(http_once("GET / HTTP/1.1\r\nBad Header\r\n\r\n", &r), 400);
    expect_error(&r, 400, "bad_request", "malformed HTTP request: invalid character in header");
    expect_idle(0);
}

Test(conn, head_too_large_431)
{
    size_t n = MAX_HEADER * 2;
    char *req = malloc(n + 256);
    int off = sprintf(req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + off, 'a', n);
    strcpy(req + off + n, "\r\n\r\n");
    http_resp_t r;
    cr_assert_eq(http_once(req, &r), 431);
    expect_error(&r, 431, "headers_too_large", "request head over 4096 bytes or 64 header fields");
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    free(req);
    /* a head that never ends */
    int fd = cli_connect();
    char *junk = malloc(MAX_HEADER * 3);
    memcpy(junk, "GET /healthz HTTP/1.1\r\nX-A: ", 28);
    memset(junk + 28, 'z', MAX_HEADER * 3 - 28);
    cli_write(fd, junk, MAX_HEADER * 3);
    free(junk);
    cr_assert_eq(read_response(fd, &r), 431);
    expect_error(&r, 431, "headers_too_large", "request head over 4096 bytes or 64 header fields");
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(0);
}

Test(conn, too_many_headers_431)
{
    char req[4096];
    int off = sprintf(req, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 70; i++)
        off += sprintf(req + off, "X-H%d: v\r\n", i);
    strcpy(req + off, "\r\n");
    http_resp_t r;
    cr_assert_eq(http_once(req, &r), 431);
    expect_error(&r, 431, "headers_too_large", "request head over 4096 bytes or 64 header fields");
    expect_idle(0);
}

Test(conn, body_too_large_413)
{
    http_resp_t r;
    cr_assert_eq(http_once("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", &r),
                 413);
    expect_error(&r, 413, "too_large", "request body over 65536 bytes");
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    /* chunked body over the bound */
    int fd = cli_connect();
    cli_write_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char *chunk = malloc(MAX_BODY + 64);
    int n = sprintf(chunk, "%x\r\n", MAX_BODY + 1);
    memset(chunk + n, 'q', MAX_BODY + 1);
    cli_write(fd, chunk, (size_t)n + MAX_BODY + 1);
    free(chunk);
    cr_assert_eq(read_response(fd, &r), 413);
    expect_error(&r, 413, "too_large", "request body over 65536 bytes");
    close(fd);
    expect_idle(0);
}

/* sw_conn_http_error: exact JSON bodies for messages quoting client
 * bytes, cut to 200 bytes and to valid UTF-8. */
Test(conn, http_error_json_body)
{
    static const struct {
        const char *msg;      /* X-Msg header value */
        const char *want_msg; /* the JSON string's content */
    } cases[] = {
        {"hi", "hi"},
        {"a\"b\\c\td", "a\\\"b\\\\c\\td"},       /* escaped by jansson */
        {"caf\xc3\xa9!", "caf\xc3\xa9!"},        /* UTF-8 kept as is */
        {"caf\xc3\xa9\xff tail", "caf\xc3\xa9"}, /* cut at the invalid byte */
        {"ok\xe2\x82", "ok"},                    /* cut short sequence */
        {"\xed\xa0\x80 surrogate", ""},          /* no surrogates (RFC 3629) */
    };
    int fd = cli_connect();
    http_resp_t r;
    char req[1024];
    for (size_t i = 0; i < SW_ARRAY_SIZE(cases); i++) {
        snprintf(req, sizeof(req), "GET /err HTTP/1.1\r\nHost: x\r\nX-Msg: %s\r\n\r\n",
                 cases[i].msg);
        cli_write_str(fd, req);
        cr_assert_eq(read_response(fd, &r), 400);
        expect_error(&r, 400, "bad_request", cases[i].want_msg);
        cr_assert(has_header(&r, "\r\nX-Err: 1\r\n"));
        cr_assert(!has_header(&r, "Connection: close"), "keep-alive honoured");
    }
    /* The message is bounded: 200 bytes, and a character cut there goes. */
    char big[512], want[512];
    memset(big, 'x', 300);
    big[300] = 0;
    memset(want, 'x', 200);
    want[200] = 0;
    snprintf(req, sizeof(req), "GET /err HTTP/1.1\r\nHost: x\r\nX-Msg: %s\r\n\r\n", big);
    cli_write_str(fd, req);
    cr_assert_eq(read_response(fd, &r), 400);
    expect_error(&r, 400, "bad_request", want);
    memcpy(big + 199, "\xc3\xa9", 3); /* é across the bound */
    want[199] = 0;
    snprintf(req, sizeof(req), "GET /err HTTP/1.1\r\nHost: x\r\nX-Msg: %s\r\n\r\n", big);
    cli_write_str(fd, req);
    cr_assert_eq(read_response(fd, &r), 400);
    expect_error(&r, 400, "bad_request", want);
    /* No header at all: an empty message. HEAD: the length, no body. */
    cli_write_str(fd, "GET /err HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 400);
    expect_error(&r, 400, "bad_request", "");
    cli_write_str(fd, "HEAD /err HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char head[512] = {0};
    size_t n = 0;
    while (n + 1 < sizeof(head) && read_exact(fd, head + n, 1) == 0)
        n++;
    cr_assert(strstr(head, "HTTP/1.1 400 Bad Request\r\n") == head, "%s", head);
    cr_assert(strstr(head, "\r\nContent-Length: 45\r\n"), "the body's length: %s", head);
    cr_assert(strstr(head, "\r\n\r\n") == head + n - 4, "no body after the head: %s", head);
    close(fd);
    expect_idle(0);
}

/* Without on_http, conn.c answers every request itself. */
static void setup_bare(void)
{
    srv_opts_t o = {.no_on_http = 1};
    setup_opts(&o);
}

TestSuite(conn_bare, .init = setup_bare, .fini = teardown, .timeout = 30);

Test(conn_bare, not_found_and_method_not_allowed)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 404);
    expect_error(&r, 404, "not_found", "no route");
    cr_assert(!has_header(&r, "Connection: close"));
    cli_write_str(fd, "POST /_event HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 405);
    expect_error(&r, 405, "method_not_allowed", "use GET");
    cr_assert(has_header(&r, "\r\nAllow: GET\r\n"));
    cli_write_str(fd, "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 404, "http-parser takes %%zz in a path");
    cli_write_str(fd, "GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 400);
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(0);
}

/* ---- liveness (ping / pong) -------------------------------------------- */

TestSuite(conn_ping, .init = setup_ping, .fini = teardown, .timeout = 30);

static void expect_ping(int fd)
{
    frame_t fr;
    cr_assert_eq(ws_read_frame(fd, &fr), 0, "a ping arrives");
    cr_assert_eq(fr.opcode, 0x9, "ping, got opcode %d", fr.opcode);
    cr_assert_eq(fr.fin, 1);
    cr_assert_leq(fr.len, 125, "control payload bound (RFC 6455 §5.5)");
    cr_assert_str_eq((char *)fr.data, "sw");
    free(fr.data);
}

Test(conn, no_pings_when_disabled)
{
    int fd = ws_connect();
    cr_assert_not(readable_within(fd, 300), "nothing is sent to a silent client");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn_ping, ping_after_silence)
{
    /* The server's silence clock starts when it reads the upgrade request,
     * which is after t0 here: the ping cannot come before t0 + interval
     * (less a little timer slack). */
    uint64_t t0 = mono_ms();
    int fd = ws_connect();
    expect_ping(fd);
    uint64_t waited = mono_ms() - t0;
    cr_assert_geq(waited, PING_INTERVAL_MS - 20, "not before the interval (%llu ms)",
                  (unsigned long long)waited);
    ws_send_frame(fd, 1, 0xA, "sw", 2, 1); /* pong */
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn_ping, answering_client_stays)
{
    int fd = ws_connect();
    uint64_t t0 = mono_ms();
    int pings = 0;
    /* 10 intervals, each ping answered with a pong echoing its payload. */
    while (mono_ms() - t0 < 10 * PING_INTERVAL_MS) {
        frame_t fr;
        cr_assert_eq(ws_read_frame(fd, &fr), 0, "the connection stays open");
        cr_assert_eq(fr.opcode, 0x9, "only pings, got opcode %d", fr.opcode);
        ws_send_frame(fd, 1, 0xA, fr.data, fr.len, 1);
        free(fr.data);
        pings++;
    }
    cr_assert_geq(pings, 3, "pinged on every silent interval (%d)", pings);
    cr_assert_eq(atomic_load(&g_closes), 0);
    /* Still a working connection. */
    ws_send_text(fd, "alive");
    for (;;) {
        frame_t fr;
        cr_assert_eq(ws_read_frame(fd, &fr), 0);
        if (fr.opcode == 0x9) {
            ws_send_frame(fd, 1, 0xA, fr.data, fr.len, 1);
            free(fr.data);
            continue;
        }
        cr_assert_eq(fr.opcode, 0x1);
        cr_assert_str_eq((char *)fr.data, "alive");
        free(fr.data);
        break;
    }
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn_ping, any_message_counts_as_an_answer)
{
    int fd = ws_connect();
    /* Never a pong: a text message after each ping keeps the conn alive. */
    for (int i = 0; i < 4; i++) {
        expect_ping(fd);
        ws_send_text(fd, "here");
        expect_text(fd, "here");
    }
    cr_assert_eq(atomic_load(&g_closes), 0);
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn_ping, silent_client_is_closed)
{
    /* The clock starts before the upgrade: the server's ping interval
     * starts at it, so took >= interval + timeout however long the
     * handshake takes on a loaded machine. */
    uint64_t t0 = mono_ms();
    int fd = ws_connect();
    expect_ping(fd);
    char reason[64];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), NULL), 1001);
    cr_assert_str_eq(reason, "ping timeout");
    /* No closing handshake with a dead peer: EOF follows at once, well
     * before the 2 s close timeout. */
    cr_assert(read_eof(fd), "socket closed");
    uint64_t took = mono_ms() - t0;
    cr_assert_geq(took, PING_INTERVAL_MS + PING_TIMEOUT_MS - 40, "not before the timeout (%llu ms)",
                  (unsigned long long)took);
    cr_assert_lt(took, PING_INTERVAL_MS + PING_TIMEOUT_MS + 1500,
                 "closed within interval + timeout (+ slack): %llu ms", (unsigned long long)took);
    close(fd);
    expect_idle(1); /* on_close exactly once */
}

Test(conn_ping, several_silent_clients_all_closed)
{
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = ws_connect();
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ws_expect_close(fds[i], NULL, 0, NULL), 1001);
        cr_assert(read_eof(fds[i]));
        close(fds[i]);
    }
    expect_idle(4);
}

Test(conn_ping, http_conns_are_not_pinged)
{
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    cr_assert_not(readable_within(fd, PING_INTERVAL_MS + PING_TIMEOUT_MS + 100),
                  "a keep-alive HTTP conn gets no frames and is not closed by liveness");
    close(fd);
    expect_idle(0);
}

/* ---- hibernation ------------------------------------------------------- */

/* Wait (bounded by ms) until `n` conns hibernate; returns the last count. */
static int wait_hibernating(int n, int ms)
{
    int v = -1;
    for (int i = 0; i < ms / 2; i++) {
        v = atomic_load(&g_nhib);
        if (v == n)
            break;
        usleep(2000);
    }
    return v;
}

static void expect_frame(int fd, int opcode, const void *payload, size_t len)
{
    frame_t fr;
    cr_assert_eq(ws_read_frame(fd, &fr), 0);
    cr_assert_eq(fr.opcode, opcode, "opcode %d, want %d", fr.opcode, opcode);
    cr_assert_eq(fr.fin, 1);
    cr_assert_eq(fr.len, len);
    cr_assert_eq(memcmp(fr.data, payload, len), 0);
    free(fr.data);
}

#define HIB_WAIT_MS (SW_CONN_HIBERNATE_MS * 3)

Test(conn, hibernate_at_message_boundaries_only)
{
    int a = ws_connect(); /* idle, echoes */
    int b = ws_connect(); /* a fragmented message across the delay */
    int c = ws_connect(); /* a frame header split across the delay */
    int d = ws_connect(); /* idle, gets sends from the server */
    ws_send_text(a, "a0");
    expect_text(a, "a0");

    ws_send_frame(b, 0, 0x1, "hel", 3, 1);
    ws_send_frame(b, 1, 0x9, "p", 1, 1); /* a ping between the fragments */
    expect_frame(b, 0xA, "p", 1);

    char big[128 + 1];
    memset(big, 'c', 128);
    big[128] = 0;
    uint8_t cf[2 + 2 + 4 + 128];
    const uint8_t key[4] = {1, 2, 3, 4};
    cf[0] = 0x81;
    cf[1] = 0x80 | 126; /* 126: 16-bit extended length */
    cf[2] = 0;
    cf[3] = 128;
    memcpy(cf + 4, key, 4);
    for (int i = 0; i < 128; i++)
        cf[8 + i] = (uint8_t)(big[i] ^ key[i % 4]);
    cli_write(c, cf, 3); /* first byte of the extended length only */

    cr_assert_eq(wait_hibernating(2, HIB_WAIT_MS), 2, "a and d hibernate");
    /* b and c are mid-message: they must stay awake through more checks. */
    usleep((SW_CONN_HIBERNATE_MS + 300) * 1000);
    cr_assert_eq(atomic_load(&g_nhib), 2, "no hibernation inside a message or frame");

    /* Server sends to hibernating d (and to b, c). */
    ws_send_text(a, "tell");
    expect_text(b, "told");
    expect_text(c, "told");
    expect_text(d, "told");

    ws_send_frame(b, 1, 0x0, "lo", 2, 1);
    expect_text(b, "hello");
    cli_write(c, cf + 3, sizeof(cf) - 3);
    expect_text(c, big);

    /* Several idle rounds: every conn hibernates, then still echoes. */
    int fds[4] = {a, b, c, d};
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(wait_hibernating(4, HIB_WAIT_MS), 4, "round %d: all hibernate", round);
        for (int i = 0; i < 4; i++) {
            char msg[32];
            snprintf(msg, sizeof(msg), "r%d-c%d", round, i);
            ws_send_text(fds[i], msg);
            expect_text(fds[i], msg);
        }
        /* A message split into fragments at the boundary of a round. */
        ws_send_frame(fds[round], 0, 0x1, "frag", 4, 1);
        ws_send_frame(fds[round], 1, 0x0, "ment", 4, 1);
        expect_text(fds[round], "fragment");
    }
    cr_assert_eq(atomic_load(&g_closes), 0);

    /* Close from hibernation: by the server (b, c, d) and by the peer (a). */
    cr_assert_eq(wait_hibernating(4, HIB_WAIT_MS), 4);
    ws_send_text(a, "closeall");
    for (int i = 1; i < 4; i++) {
        char reason[16];
        cr_assert_eq(ws_expect_close(fds[i], reason, sizeof(reason), NULL), 1000);
        cr_assert_str_eq(reason, "bye");
        ws_send_close(fds[i], 1000);
        cr_assert(read_eof(fds[i]));
        close(fds[i]);
    }
    cr_assert_eq(wait_hibernating(1, HIB_WAIT_MS), 1, "a hibernates again");
    ws_close_clean(a);
    expect_idle(4);
    cr_assert_eq(atomic_load(&g_nhib), 0);
}

/* Pings and the ping timeout of hibernating conns: the interval is longer
 * than the hibernation delay, the timeout too. */
#define HIB_PING_INTERVAL_MS (SW_CONN_HIBERNATE_MS + 500)
#define HIB_PING_TIMEOUT_MS (SW_CONN_HIBERNATE_MS + 500)

static void setup_hib_ping(void)
{
    setup_env(HIB_PING_INTERVAL_MS, HIB_PING_TIMEOUT_MS);
}

TestSuite(conn_hib_ping, .init = setup_hib_ping, .fini = teardown, .timeout = 30);

Test(conn_hib_ping, pings_and_timeout_from_hibernation)
{
    int e = ws_connect(); /* answers pings */
    int f = ws_connect(); /* silent */
    uint64_t t0 = mono_ms();
    cr_assert_eq(wait_hibernating(2, HIB_WAIT_MS), 2, "both hibernate before the first ping");
    cr_assert_lt(mono_ms() - t0, HIB_PING_INTERVAL_MS);

    expect_ping(e); /* sent from hibernation */
    ws_send_frame(e, 1, 0xA, "sw", 2, 1);
    expect_ping(f);

    /* Both hibernate again: e after its pong, f while its ping is out. */
    cr_assert_eq(wait_hibernating(2, HIB_WAIT_MS), 2, "hibernate again after the ping");

    char reason[64];
    cr_assert_eq(ws_expect_close(f, reason, sizeof(reason), NULL), 1001);
    cr_assert_str_eq(reason, "ping timeout");
    cr_assert(read_eof(f), "socket closed");
    close(f);
    uint64_t took = mono_ms() - t0;
    cr_assert_geq(took, HIB_PING_INTERVAL_MS + HIB_PING_TIMEOUT_MS - 40, "%llu ms",
                  (unsigned long long)took);

    expect_ping(e); /* the next interval, again from hibernation */
    ws_send_frame(e, 1, 0xA, "sw", 2, 1);
    ws_send_text(e, "still here");
    expect_text(e, "still here");
    cr_assert_eq(atomic_load(&g_closes), 1);
    ws_close_clean(e);
    expect_idle(2);
}

/* ---- Server-Sent Events ----------------------------------------------- */

#define SSE_HEAD                                                                                   \
    "HTTP/1.1 200 OK\r\n"                                                                          \
    "Content-Type: text/event-stream\r\n"                                                          \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Accel-Buffering: no\r\n"                                                                    \
    "Connection: keep-alive\r\n\r\n"
#define SSE_EVENTS                                                                                 \
    "event: state\ndata: {\"a\":1}\n\n"                                                            \
    "event: delta\nid: 7\ndata: {\"b\":2}\n\n"                                                     \
    "event: bye\ndata: x\n\n"

/* Connect, send `request` and expect exactly `want` back (no more bytes
 * within a short wait is checked by the caller). Returns the socket. */
static int sse_open(const char *request, const char *want)
{
    int fd = cli_connect();
    cli_write_str(fd, request);
    size_t n = strlen(want);
    char *got = calloc(1, n + 1);
    cr_assert_eq(read_exact(fd, got, n), 0, "the stream head and events arrive");
    cr_assert_str_eq(got, want);
    free(got);
    return fd;
}

Test(conn, sse_head_and_events_exact_bytes)
{
    int fd = sse_open("GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
                      SSE_HEAD SSE_EVENTS);
    cr_assert_not(readable_within(fd, 200), "nothing more: no keep-alive without an interval");
    cr_assert_eq(atomic_load(&g_sse_bad), 0, "server-side checks (EINVAL on CR/LF, is_sse)");
    cr_assert_eq(atomic_load(&g_nws), 1, "an event stream counts in nws");
    cr_assert_eq(atomic_load(&g_closes), 0);
    close(fd);
    expect_idle(1);
}

Test(conn, sse_client_close_calls_on_close_once)
{
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = sse_open("GET /sse-quiet HTTP/1.1\r\nHost: x\r\n\r\n", SSE_HEAD);
    for (int i = 0; i < 200 && atomic_load(&g_nws) != 3; i++)
        usleep(2000);
    cr_assert_eq(atomic_load(&g_nws), 3);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    expect_idle(3);
    cr_assert_eq(atomic_load(&g_sse_bad), 0);
}

Test(conn, sse_server_close_after_queued_events)
{
    int fd = sse_open("GET /sse-close HTTP/1.1\r\nHost: x\r\n\r\n", SSE_HEAD SSE_EVENTS);
    cr_assert(read_eof(fd), "EOF right after the queued events");
    close(fd);
    expect_idle(1);
    cr_assert_eq(atomic_load(&g_sse_bad), 0);
}

Test(conn, sse_ignores_input_after_the_switch)
{
    /* A pipelined request behind the stream request, and more later: no
     * HTTP answer, only the stream. */
    int fd = sse_open("GET /sse-quiet HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                      SSE_HEAD);
    cr_assert_not(readable_within(fd, 200), "the pipelined request gets no answer");
    cli_write_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nnot http at all\r\n\r\n");
    cr_assert_not(readable_within(fd, 200), "later input is discarded, not answered (400)");
    cr_assert_eq(atomic_load(&g_nconns), 1, "the stream stays open");
    cr_assert_eq(atomic_load(&g_closes), 0);
    close(fd);
    expect_idle(1);
}

Test(conn_ping, sse_keepalive_comment_no_timeout)
{
    int fd = sse_open("GET /sse-quiet HTTP/1.1\r\nHost: x\r\n\r\n", SSE_HEAD);
    uint64_t t0 = mono_ms();
    int comments = 0;
    /* Well past interval + timeout: an event stream is never closed for
     * silence, it gets ":\n" on every silent interval. */
    while (mono_ms() - t0 < 2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS)) {
        char got[3] = {0};
        cr_assert_eq(read_exact(fd, got, 2), 0, "the stream stays open");
        cr_assert_str_eq(got, ":\n");
        comments++;
    }
    uint64_t elapsed = mono_ms() - t0;
    cr_assert_geq(comments, 4, "a comment per silent interval (%d)", comments);
    /* Counted over the whole window, not per gap: a read delayed by the
     * scheduler makes the next gap look short. */
    cr_assert_leq((uint64_t)comments, elapsed / (PING_INTERVAL_MS - 20) + 1,
                  "not more often than the interval (%d in %llu ms)", comments,
                  (unsigned long long)elapsed);
    cr_assert_eq(atomic_load(&g_closes), 0);
    close(fd);
    expect_idle(1);
}

Test(conn, sse_output_bound_client_never_reads)
{
    int fd = cli_connect();
    cli_write_str(fd, "GET /sse-flood HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 2500 && !atomic_load(&g_sse_flood_done); i++)
        usleep(2000);
    cr_assert_eq(atomic_load(&g_sse_flood_rc), SW_ETOOLARGE);
    /* Never read: 1 MiB queued cannot go into the socket, reset at once,
     * on_close follows once. */
    expect_idle(1);
    long long wait_ms = (atomic_load(&g_close_at_us) - atomic_load(&g_bound_at_us)) / 1000;
    cr_assert_lt(wait_ms, 1000, "dropped at once, not after the close timeout (%lld ms)", wait_ms);
    size_t ev = strlen("event: big\ndata: \n\n") + SSE_FLOOD_DATA;
    size_t queued = strlen(SSE_HEAD) + (size_t)atomic_load(&g_sse_flood_sent) * ev;
    int err = 0;
    size_t got = drain(fd, &err);
    cr_assert_eq(err, ECONNRESET, "reset, not a close: %s", strerror(err));
    cr_assert_lt(got, queued, "what the socket did not take was dropped");
    close(fd);
    cr_assert_eq(atomic_load(&g_sse_bad), 0);
}

/* ---- output framing and input assembly ------------------------------------ */

/* Read one frame and check it is a final text frame with `want` (len
 * bytes) and the minimal length form (RFC 6455 §5.2). */
static void expect_text_n(int fd, const char *want, size_t len)
{
    frame_t fr;
    cr_assert_eq(ws_read_frame(fd, &fr), 0);
    cr_assert_eq(fr.opcode, 0x1);
    cr_assert_eq(fr.fin, 1);
    cr_assert_eq(fr.len, len);
    int code = len < 126 ? (int)len : len < 65536 ? 126 : 127;
    cr_assert_eq(fr.lencode, code, "length %zu: length field %d, want %d", len, fr.lencode, code);
    cr_assert_eq(memcmp(fr.data, want, len), 0, "payload of %zu bytes differs", len);
    free(fr.data);
}

Test(conn, length_forms_7_16_64_bit)
{
    int fd = ws_connect();
    ws_send_text(fd, "sizes");
    char *p = malloc(70000);
    for (size_t i = 0; i < SW_ARRAY_SIZE(SIZES); i++) {
        fill_pattern(p, SIZES[i], i);
        expect_text_n(fd, p, SIZES[i]);
    }
    free(p);
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn, sendv_equals_send)
{
    int fd = ws_connect();
    ws_send_text(fd, "sendv");
    char *p = malloc(70000);
    fill_pattern(p, 70000, 3);
    expect_text_n(fd, p, 70000);
    expect_text_n(fd, p, 70000);
    free(p);
    expect_text_n(fd, "head+tail", 9);
    expect_text_n(fd, "head+tail", 9);
    expect_text_n(fd, "head", 4);
    expect_text_n(fd, "", 0);
    ws_send_text(fd, "after");
    expect_text(fd, "after"); /* nothing else came in between */
    ws_close_clean(fd);
    expect_idle(1);
}

/* Append a masked client frame with a short payload (< 126 bytes) to buf. */
static size_t put_frame(uint8_t *buf, size_t n, int opcode, const char *payload)
{
    static const uint8_t key[4] = {9, 8, 7, 6};
    size_t l = strlen(payload);
    buf[n++] = (uint8_t)(0x80 | opcode);
    buf[n++] = (uint8_t)(0x80 | l);
    memcpy(buf + n, key, 4);
    n += 4;
    for (size_t i = 0; i < l; i++)
        buf[n++] = (uint8_t)(payload[i] ^ key[i % 4]);
    return n;
}

/* The server's answer to a "burst" message: b1, b2, b3. */
static void expect_burst(int fd)
{
    expect_text_n(fd, "b1", 2);
    expect_text_n(fd, "b2", 2);
    expect_text_n(fd, "b3", 2);
}

/* Server messages framed directly and control frames queued in wslay
 * share the output: every frame stays whole, in a valid order. */
Test(conn, direct_frames_and_control_frames_in_order)
{
    int fd = ws_connect();
    uint8_t buf[128];
    /* Ping and burst in one packet: the pong is queued in wslay before the
     * burst is sent, so the burst waits behind it (in wslay's queue). */
    size_t n = put_frame(buf, 0, 0x9, "p1");
    n = put_frame(buf, n, 0x1, "burst");
    cli_write(fd, buf, n);
    expect_frame(fd, 0xA, "p1", 2);
    expect_burst(fd);

    /* Burst, then a ping in the same packet: the burst is framed directly
     * and the pong follows it. */
    n = put_frame(buf, 0, 0x1, "burst");
    n = put_frame(buf, n, 0x9, "p2");
    cli_write(fd, buf, n);
    expect_burst(fd);
    expect_frame(fd, 0xA, "p2", 2);

    /* Ping, burst, ping: the burst waits in wslay behind the first pong,
     * and wslay sends control frames ahead of waiting data: both pongs,
     * then the burst. */
    n = put_frame(buf, 0, 0x9, "p3");
    n = put_frame(buf, n, 0x1, "burst");
    n = put_frame(buf, n, 0x9, "p4");
    cli_write(fd, buf, n);
    expect_frame(fd, 0xA, "p3", 2);
    expect_frame(fd, 0xA, "p4", 2);
    expect_burst(fd);

    /* Burst, ping, burst: the first burst direct, the pong, the second
     * burst behind the pong. */
    n = put_frame(buf, 0, 0x1, "burst");
    n = put_frame(buf, n, 0x9, "p5");
    n = put_frame(buf, n, 0x1, "burst");
    cli_write(fd, buf, n);
    expect_burst(fd);
    expect_frame(fd, 0xA, "p5", 2);
    expect_burst(fd);

    /* Direct frames, then the close: the close comes last, later sends
     * are refused (checked on the server side). */
    n = put_frame(buf, 0, 0x1, "burstclose");
    n = put_frame(buf, n, 0x1, "ignored after the close");
    cli_write(fd, buf, n);
    expect_text_n(fd, "b1", 2);
    expect_text_n(fd, "b2", 2);
    char reason[16];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), NULL), 1000);
    cr_assert_str_eq(reason, "bye");
    ws_send_close(fd, 1000);
    cr_assert(read_eof(fd));
    close(fd);
    expect_idle(1);
}

/* Input reaches on_message whole however it is cut: in one read with
 * other messages, across many reads, over wslay's 4 KB input buffer, in
 * fragments. */
Test(conn, messages_cut_anywhere)
{
    int fd = ws_connect();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    /* Several small messages in one write. */
    uint8_t buf[256];
    size_t n = 0;
    const char *msgs[] = {"m1", "", "m3"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(msgs[k]);
        buf[n++] = 0x81;
        buf[n++] = (uint8_t)(0x80 | l);
        memset(buf + n, 0, 4); /* zero mask */
        n += 4;
        memcpy(buf + n, msgs[k], l);
        n += l;
    }
    cli_write(fd, buf, n);
    for (int k = 0; k < 3; k++)
        expect_text_n(fd, msgs[k], strlen(msgs[k]));

    /* One message written a few bytes at a time. */
    char text[300];
    fill_pattern(text, sizeof(text) - 1, 5);
    text[sizeof(text) - 1] = 0;
    uint8_t f[8 + sizeof(text)];
    size_t fl = 0;
    f[fl++] = 0x81;
    f[fl++] = 0x80 | 126;
    f[fl++] = (uint8_t)((sizeof(text) - 1) >> 8);
    f[fl++] = (uint8_t)(sizeof(text) - 1);
    memset(f + fl, 0, 4);
    fl += 4;
    memcpy(f + fl, text, sizeof(text) - 1);
    fl += sizeof(text) - 1;
    for (size_t off = 0; off < fl; off += 37) {
        cli_write(fd, f + off, SW_MIN((size_t)37, fl - off));
        usleep(1000);
    }
    expect_text_n(fd, text, sizeof(text) - 1);

    /* Larger than wslay's input buffer, whole and in fragments. */
    size_t big_len = MAX_MESSAGE - 100;
    char *big = malloc(big_len);
    fill_pattern(big, big_len, 11);
    ws_send_frame(fd, 1, 0x1, big, big_len, 1);
    expect_text_n(fd, big, big_len);
    ws_send_frame(fd, 0, 0x1, big, 5000, 1);
    ws_send_frame(fd, 1, 0x9, "mid", 3, 1);
    ws_send_frame(fd, 0, 0x0, big + 5000, 5000, 1);
    ws_send_frame(fd, 1, 0x0, big + 10000, big_len - 10000, 1);
    expect_frame(fd, 0xA, "mid", 3);
    expect_text_n(fd, big, big_len);
    free(big);

    ws_send_text(fd, "last");
    expect_text(fd, "last");
    ws_close_clean(fd);
    expect_idle(1);
}

/* ---- timeouts (http_timeout_ms) ----------------------------------------- */

#define TMO_MS 500

static void setup_timeout(void)
{
    srv_opts_t o = {.http_timeout_ms = TMO_MS};
    setup_opts(&o);
}

TestSuite(conn_timeout, .init = setup_timeout, .fini = teardown, .timeout = 30);

/* The next response is the 408 for `phase`, then EOF. */
static void expect_408(int fd, const char *phase)
{
    http_resp_t r;
    char msg[96];
    cr_assert_eq(read_response(fd, &r), 408, "%s", r.head);
    snprintf(msg, sizeof(msg), "no complete %s within %d ms", phase, TMO_MS);
    expect_error(&r, 408, "timeout", msg);
    cr_assert(has_header(&r, "\r\nConnection: close\r\n"));
    cr_assert(read_eof(fd), "closed after the 408");
}

/* Elapsed ms since t0 is at least the timeout (less timer slack) and
 * within a generous bound. */
static void expect_took_timeout(uint64_t t0)
{
    uint64_t took = mono_ms() - t0;
    cr_assert_geq(took, TMO_MS - 20, "not before the timeout: %llu ms", (unsigned long long)took);
    cr_assert_lt(took, TMO_MS + 1500, "soon after the timeout: %llu ms", (unsigned long long)took);
}

Test(conn_timeout, idle_connection_408)
{
    uint64_t t0 = mono_ms();
    int fd = cli_connect();
    expect_408(fd, "request");
    expect_took_timeout(t0);
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, keepalive_idle_counts_from_the_reply)
{
    int fd = cli_connect();
    usleep(TMO_MS * 1000 * 6 / 10); /* most of the first idle phase */
    http_resp_t r;
    cli_write_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200);
    uint64_t t1 = mono_ms();
    expect_408(fd, "request");
    expect_took_timeout(t1);
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, dribbled_head_is_cut_off)
{
    /* One byte per 100 ms: every byte is news, but the head's deadline
     * does not move. */
    int fd = cli_connect();
    const char *req =
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    uint64_t t0 = mono_ms();
    size_t i;
    for (i = 0; req[i] && !readable_within(fd, 100); i++)
        cli_write(fd, req + i, 1);
    cr_assert(req[i] != 0, "answered before the head was complete");
    expect_408(fd, "request head");
    expect_took_timeout(t0);
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, stalled_body_408)
{
    int fd = cli_connect();
    cli_write_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    uint64_t t0 = mono_ms();
    expect_408(fd, "request body");
    expect_took_timeout(t0);
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, each_phase_has_its_own_deadline)
{
    /* Idle, head and body each take 60% of the timeout: together well
     * over it, none over it alone. */
    int fd = cli_connect();
    const useconds_t part = TMO_MS * 1000 * 6 / 10;
    usleep(part);
    cli_write_str(fd, "POST /echo HTTP/1.1\r\n");
    usleep(part);
    cli_write_str(fd, "Host: x\r\nContent-Length: 4\r\n\r\nbo");
    usleep(part);
    cli_write_str(fd, "dy");
    http_resp_t r;
    cr_assert_eq(read_response(fd, &r), 200, "%s", r.head);
    cr_assert_str_eq(r.body, "POST||(none)|body");
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, no_deadline_while_the_reply_is_owed)
{
    cr_assert_gt(SLOW_MS, 2 * TMO_MS);
    int fd = cli_connect();
    http_resp_t r;
    cli_write_str(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(read_response(fd, &r), 200, "the late answer, no 408: %s", r.head);
    cr_assert_str_eq(r.body, "later");
    uint64_t t1 = mono_ms();
    expect_408(fd, "request"); /* then idle again */
    expect_took_timeout(t1);
    close(fd);
    expect_idle(0);
}

Test(conn_timeout, websocket_without_hello_1008)
{
    uint64_t t0 = mono_ms();
    int fd = ws_connect();
    ws_send_text(fd, "not a hello"); /* messages do not count */
    expect_text(fd, "not a hello");
    char reason[64], want[64];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), NULL), 1008);
    snprintf(want, sizeof(want), "no hello within %d ms", TMO_MS);
    cr_assert_str_eq(reason, want);
    expect_took_timeout(t0);
    ws_send_close(fd, 1008);
    cr_assert(read_eof(fd), "closing handshake finished");
    close(fd);
    expect_idle(1);
}

Test(conn_timeout, greeted_websocket_stays)
{
    int fd = ws_connect();
    ws_send_text(fd, "hello"); /* greets (sw_conn_ws_greeted) and echoes */
    expect_text(fd, "hello");
    cr_assert_not(readable_within(fd, 3 * TMO_MS), "no close for a greeted conn");
    ws_send_text(fd, "still");
    expect_text(fd, "still");
    ws_close_clean(fd);
    expect_idle(1);
}

Test(conn_timeout, event_stream_has_no_timeout)
{
    int fd = sse_open("GET /sse-quiet HTTP/1.1\r\nHost: x\r\n\r\n", SSE_HEAD);
    cr_assert_not(readable_within(fd, 3 * TMO_MS), "no 408, no close");
    cr_assert_eq(atomic_load(&g_nconns), 1);
    cr_assert_eq(atomic_load(&g_closes), 0);
    close(fd);
    expect_idle(1);
}

/* The hello deadline of a hibernating conn still fires. */
#define HIB_TMO_MS (SW_CONN_HIBERNATE_MS + 800)

static void setup_hib_timeout(void)
{
    srv_opts_t o = {.http_timeout_ms = HIB_TMO_MS};
    setup_opts(&o);
}

TestSuite(conn_hib_timeout, .init = setup_hib_timeout, .fini = teardown, .timeout = 30);

Test(conn_hib_timeout, hello_deadline_fires_from_hibernation)
{
    uint64_t t0 = mono_ms();
    int silent = ws_connect();
    int greeted = ws_connect();
    ws_send_text(greeted, "hello");
    expect_text(greeted, "hello");
    cr_assert_eq(wait_hibernating(2, HIB_WAIT_MS), 2, "both hibernate before the deadline");
    cr_assert_lt(mono_ms() - t0, HIB_TMO_MS);
    char reason[64], want[64];
    cr_assert_eq(ws_expect_close(silent, reason, sizeof(reason), NULL), 1008);
    snprintf(want, sizeof(want), "no hello within %d ms", HIB_TMO_MS);
    cr_assert_str_eq(reason, want);
    uint64_t took = mono_ms() - t0;
    cr_assert_geq(took, HIB_TMO_MS - 20, "%llu ms", (unsigned long long)took);
    cr_assert_lt(took, HIB_TMO_MS + 1500, "%llu ms", (unsigned long long)took);
    ws_send_close(silent, 1008);
    cr_assert(read_eof(silent));
    close(silent);
    /* The greeted one stays, hibernating again, and still works. */
    cr_assert_not(readable_within(greeted, 500));
    cr_assert_eq(wait_hibernating(1, HIB_WAIT_MS), 1);
    ws_send_text(greeted, "still");
    expect_text(greeted, "still");
    ws_close_clean(greeted);
    expect_idle(2);
}

/* ---- the output bound (a small max_send_bytes) --------------------------- */

#define BOUND_SEND (64 * 1024)
#define BOUND_MSG (16 * 1024)

static void setup_bound(void)
{
    srv_opts_t o = {.max_send_bytes = BOUND_SEND};
    setup_opts(&o);
}

TestSuite(conn_bound, .init = setup_bound, .fini = teardown, .timeout = 30);

/* A client that reads slowly but whose socket still takes everything
 * queued at the bound: what was queued arrives, then close 1013. */
Test(conn_bound, flood_backpressure_1013)
{
    int fd = ws_connect();
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "flood %d", BOUND_MSG);
    ws_send_text(fd, cmd);
    /* Do not read until the server has queued all it could. */
    for (int i = 0; i < 2500 && !atomic_load(&g_flood_done); i++)
        usleep(2000);
    cr_assert(atomic_load(&g_flood_done));
    cr_assert_eq(atomic_load(&g_flood_rc), SW_ETOOLARGE);
    size_t sent = (size_t)atomic_load(&g_flood_sent);
    cr_assert_eq(sent, BOUND_SEND / (BOUND_MSG + 4), "frames (4-byte headers) up to the bound");
    size_t skipped = 0;
    char reason[64];
    cr_assert_eq(ws_expect_close(fd, reason, sizeof(reason), &skipped), 1013);
    cr_assert_str_eq(reason, "backpressure");
    cr_assert_eq(skipped, sent * BOUND_MSG,
                 "messages queued before the bound are delivered, then the close");
    ws_send_close(fd, 1013);
    cr_assert(read_eof(fd), "closing handshake finished");
    close(fd);
    expect_idle(1);
}

Test(conn_bound, sse_output_bound_closes_stream)
{
    int fd = cli_connect();
    char req[64];
    snprintf(req, sizeof(req), "GET /sse-flood?%d HTTP/1.1\r\nHost: x\r\n\r\n", BOUND_MSG);
    cli_write_str(fd, req);
    /* Do not read until the server has queued all it could. */
    for (int i = 0; i < 2500 && !atomic_load(&g_sse_flood_done); i++)
        usleep(2000);
    cr_assert(atomic_load(&g_sse_flood_done));
    cr_assert_eq(atomic_load(&g_sse_flood_rc), SW_ETOOLARGE);
    size_t ev = strlen("event: big\ndata: \n\n") + BOUND_MSG;
    size_t sent = (size_t)atomic_load(&g_sse_flood_sent);
    cr_assert_gt(sent, 0);
    cr_assert_leq(strlen(SSE_HEAD) + sent * ev, (size_t)BOUND_SEND);
    cr_assert_gt(strlen(SSE_HEAD) + (sent + 1) * ev, (size_t)BOUND_SEND, "stopped at the bound");
    /* Events queued before the bound arrive, then EOF. */
    int err = -1;
    size_t total = drain(fd, &err);
    cr_assert_eq(err, 0, "EOF after the queued events: %s", strerror(err));
    cr_assert_eq(total, strlen(SSE_HEAD) + sent * ev);
    close(fd);
    expect_idle(1);
    cr_assert_eq(atomic_load(&g_sse_bad), 0);
}

/* A client that stops reading while the server keeps sending, one
 * message per loop iteration: the kernel buffers fill, then the server's
 * queue grows to the bound, never past it, and the conn is reset. */
static void expect_stalled_reset(int fd, uint64_t t0, size_t per_msg)
{
    for (int i = 0; i < 2500 && !atomic_load(&g_trickle_done); i++)
        usleep(2000);
    cr_assert(atomic_load(&g_trickle_done), "the server stopped sending");
    cr_assert_eq(atomic_load(&g_trickle_rc), SW_ETOOLARGE);
    size_t sent = (size_t)atomic_load(&g_trickle_sent);
    size_t maxp = (size_t)atomic_load(&g_trickle_max_pending);
    cr_assert_leq(maxp, (size_t)BOUND_SEND, "queued bytes within the bound (max %zu)", maxp);
    cr_assert_gt(maxp, (size_t)BOUND_SEND - per_msg, "the queue reached the bound (max %zu)", maxp);
    cr_assert_gt(sent * per_msg, (size_t)BOUND_SEND, "the socket took a share first");
    expect_idle(1);
    uint64_t took = mono_ms() - t0;
    cr_assert_lt(took, 5000, "dropped in %llu ms", (unsigned long long)took);
    long long wait_ms = (atomic_load(&g_close_at_us) - atomic_load(&g_bound_at_us)) / 1000;
    cr_assert_lt(wait_ms, 1000, "dropped at once, not after the close timeout (%lld ms)", wait_ms);
    int err = 0;
    size_t got = drain(fd, &err);
    cr_assert_eq(err, ECONNRESET, "reset, not a close: %s", strerror(err));
    cr_assert_lt(got, sent * per_msg, "queued bytes were dropped (%zu of %zu)", got,
                 sent * per_msg);
    close(fd);
}

Test(conn_bound, stalled_reader_is_reset)
{
    int fd = ws_connect();
    uint64_t t0 = mono_ms();
    ws_send_text(fd, "trickle");
    expect_stalled_reset(fd, t0, TRICKLE_MSG + 4);
}

Test(conn_bound, sse_stalled_reader_is_reset)
{
    uint64_t t0 = mono_ms();
    int fd = sse_open("GET /sse-trickle HTTP/1.1\r\nHost: x\r\n\r\n", SSE_HEAD);
    expect_stalled_reset(fd, t0, strlen("event: t\ndata: \n\n") + TRICKLE_MSG);
    cr_assert_eq(atomic_load(&g_sse_bad), 0);
}

Test(conn, message_declared_over_the_bound_1009_at_its_header)
{
    /* Only the header of a frame over the bound, no payload: refused at
     * once, not after a payload that may never come. */
    int fd = ws_connect();
    uint8_t h[14] = {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4};
    cli_write(fd, h, sizeof(h));
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1009);
    close(fd);
    /* A fragmented message whose second fragment's header goes over. */
    fd = ws_connect();
    char part[1000];
    memset(part, 'a', sizeof(part));
    ws_send_frame(fd, 0, 0x1, part, sizeof(part), 1);
    uint8_t h2[8] = {0x80, 0x80 | 126, (uint8_t)(MAX_MESSAGE >> 8), (uint8_t)MAX_MESSAGE, 1, 2,
                     3,    4};
    cli_write(fd, h2, sizeof(h2));
    cr_assert_eq(ws_expect_close(fd, NULL, 0, NULL), 1009);
    close(fd);
    expect_idle(2);
}

Test(conn, request_line_and_field_names_are_strict_400)
{
    static const char *bad[] = {
        "GET / HTTX/1.1\r\nHost: x\r\n\r\n",  /* not HTTP */
        "GET /\r\n\r\n",                      /* HTTP/0.9 */
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",  /* not HTTP/1.x */
        "GET / HTTP/1.1\r\nX-A : 1\r\n\r\n",  /* space before the colon (RFC 9112 §5.1) */
        "GET / HTTP/1.1\r\nX Bad: 1\r\n\r\n", /* space in a field name */
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        http_resp_t r;
        cr_assert_eq(http_once(bad[i], &r), 400, "%s", bad[i]);
        cr_assert(strstr(r.body, "\"bad_request\""), "%s: %s", bad[i], r.body);
    }
    http_resp_t r;
    cr_assert_eq(http_once("\r\nGET /nope HTTP/1.0\r\n\r\n", &r), 404,
                 "an empty line before is fine");
    expect_idle(0);
}

Test(conn, handshake_needs_http_1_1_and_one_key_400)
{
    static const char *bad[] = {
        "GET /_event HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /_event HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        http_resp_t r;
        cr_assert_eq(http_once(bad[i], &r), 400, "%s", bad[i]);
        cr_assert(strstr(r.body, "\"bad_request\""), "%s", r.body);
    }
    expect_idle(0);
}

/* A client that pipelines requests and reads no answer: the server stops
 * reading and parsing once the answers queued reach the bound, and goes on
 * when they have been read; every request is answered once, in order. */
Test(conn_bound, pipelined_requests_wait_while_answers_are_unread)
{
    enum { N = 20000 };
    static const char req[] = "GET /echo?0123456789012345678901234567890123456789 HTTP/1.1\r\n"
                              "Host: x\r\nX-Test: abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    /* A small receive buffer, set before the connection (the window it
     * advertises): the answers pile up in the server, not in the kernel. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    int sb = 4096;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sb, sizeof(sb));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    atomic_store(&g_http_calls, 0);
    size_t total = (sizeof(req) - 1) * N;
    char *all = malloc(total);
    for (int i = 0; i < N; i++)
        memcpy(all + (size_t)i * (sizeof(req) - 1), req, sizeof(req) - 1);
    /* Writing all of it may block once the server stops reading: write
     * from a thread-free loop with a deadline, reading nothing. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    for (int spins = 0; off < total && spins < 200; spins++) {
        ssize_t n = write(fd, all + off, total - off);
        if (n > 0)
            off += (size_t)n;
        else
            usleep(5000);
    }
    usleep(300000);
    int answered = atomic_load(&g_http_calls);
    /* Each answer is about 200 bytes: the bound holds a few hundred, the
     * socket buffers a few hundred more. */
    cr_assert_lt(answered, 3000, "%d requests parsed with no answer read", answered);
    cr_assert_gt(answered, 0);
    /* Now read everything: the rest is parsed and answered. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    char buf[65536];
    int answers = 0;
    size_t match = 0;
    while (answers < N) {
        if (off < total) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            ssize_t w = write(fd, all + off, total - off);
            if (w > 0)
                off += (size_t)w;
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        cr_assert_gt(n, 0, "answers stopped at %d of %d (%d parsed, %zu of %zu sent)", answers, N,
                     atomic_load(&g_http_calls), off, total);
        got += (size_t)n;
        /* Status lines, also those cut between two reads. */
        for (ssize_t i = 0; i < n; i++) {
            match = buf[i] == "HTTP/1.1 "[match] ? match + 1 : buf[i] == 'H' ? 1 : 0;
            if (match == 9) {
                answers++;
                match = 0;
            }
        }
    }
    cr_assert_eq(answers, N);
    cr_assert_eq(atomic_load(&g_http_calls), N, "each request answered once");
    free(all);
    close(fd);
    expect_idle(0);
}
