/* Integration: connections that survive — WebSocket liveness (ping /
 * timeout) and reload (HUP: a new generation of workers, the old one
 * drained) on the real binary against a real redis-server. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 5000
#define PING_MS 200       /* --ping-interval-ms and --ping-timeout-ms */
#define DRAIN_MS 3000     /* --drain-timeout */
#define MARGIN_MS 1500    /* scheduling slack on a loaded machine (sanitizers) */
#define RELOAD_GRACE 2000 /* the master's SIGKILL grace after the drain timeout */

static sw_test_redis_t *redis;
static sw_test_server_t *server;

static void start(const char *const *extra)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis, "redis-server did not start");
    server = sw_test_server_start(0, sw_test_redis_url(redis), 2, extra);
    cr_assert(server, "statewire did not start");
}

static void setup_liveness(void)
{
    const char *extra[] = {"--ping-interval-ms", "200", "--ping-timeout-ms", "200", NULL};
    start(extra);
}

static void setup_reload(void)
{
    const char *extra[] = {"--lease-ms", "2000", "--drain-timeout", "3000", NULL};
    start(extra);
}

static void teardown(void)
{
    if (server)
        sw_test_server_stop(server, SIGTERM, 5000);
    server = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(liveness, .init = setup_liveness, .fini = teardown, .timeout = 60);
TestSuite(reload, .init = setup_reload, .fini = teardown, .timeout = 90);

/* ---- helpers ---------------------------------------------------------- */

/* The last welcome per token: a client that comes back resumes with its
 * credentials, as a real client does (without them a reconnect racing the
 * old socket's close could be taken for a duplicate tab). */
static struct {
    char token[32];
    json_t *welcome;
} seen[8];

static json_t *last_welcome(const char *token)
{
    for (size_t i = 0; token && i < 8; i++)
        if (seen[i].welcome && strcmp(seen[i].token, token) == 0)
            return seen[i].welcome;
    return NULL;
}

static void remember(const char *token, json_t *w)
{
    for (size_t i = 0; token && i < 8; i++) {
        if (!seen[i].welcome || strcmp(seen[i].token, token) == 0) {
            json_decref(seen[i].welcome);
            snprintf(seen[i].token, sizeof(seen[i].token), "%s", token);
            seen[i].welcome = json_incref(w);
            return;
        }
    }
}

static sw_wsc_t *connect_client(const char *token)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c, "WebSocket connect failed");
    json_t *prev = last_welcome(token);
    json_t *resume =
        prev ? json_pack("{s:O,s:O,s:i}", "conn_id", json_object_get(prev, "conn_id"), "conn_token",
                         json_object_get(prev, "conn_token"), "last_seq", 0)
             : NULL;
    json_t *w = sw_wsc_hello(c, token, resume, T_MS);
    json_decref(resume);
    cr_assert(w, "no welcome");
    if (token)
        cr_assert_str_eq(json_string_value(json_object_get(w, "token")), token,
                         "the token is kept (not taken for a duplicate tab)");
    if (prev)
        cr_assert(json_is_true(json_object_get(w, "resumed")), "the client resumes");
    remember(token, w);
    json_decref(w);
    return c;
}

static void send_event(sw_wsc_t *c, int64_t id, const char *name, const char *path)
{
    json_t *m = json_pack("{s:s, s:I, s:s}", "type", "event", "id", (json_int_t)id, "name", name);
    if (path)
        json_object_set_new(m, "router", json_pack("{s:s}", "path", path));
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
}

/* The message answering event `id`; others are dropped. */
static json_t *wait_answer(sw_wsc_t *c, int64_t id)
{
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "no answer for event %lld", (long long)id);
        json_t *jid = json_object_get(m, "id");
        if (jid && json_integer_value(jid) == id)
            return m;
        json_decref(m);
    }
}

static json_int_t count_of(json_t *delta)
{
    json_t *v =
        json_object_get(json_object_get(json_object_get(delta, "delta"), "counter"), "count");
    cr_assert(json_is_integer(v), "no delta.counter.count");
    return json_integer_value(v);
}

static json_int_t increment(sw_wsc_t *c, int64_t id)
{
    send_event(c, id, "counter.increment", NULL);
    json_t *d = wait_answer(c, id);
    cr_assert_str_eq(json_string_value(json_object_get(d, "type")), "delta");
    json_int_t n = count_of(d);
    json_decref(d);
    return n;
}

/* Hydrate "/": the full state's counter.count (the on_load delta that
 * follows is left queued). */
static json_int_t hydrate_count(sw_wsc_t *c, int64_t id)
{
    send_event(c, id, "hydrate", "/");
    json_t *full = wait_answer(c, id);
    cr_assert(json_is_true(json_object_get(full, "full")), "hydrate answers the full state");
    json_int_t n = count_of(full);
    json_decref(full);
    return n;
}

static json_int_t redis_count(const char *token)
{
    json_t *v;
    cr_assert_eq(sw_test_redis_state(redis, token, "counter", &v), 1,
                 "no msgpack counter field for %s", token);
    json_int_t n = json_integer_value(json_object_get(v, "count"));
    json_decref(v);
    return n;
}

/* Read until the server closes; returns the ms it took (-1: still open
 * after timeout_ms). */
static int64_t wait_closed(sw_wsc_t *c, int timeout_ms)
{
    uint64_t t0 = sw_now_ms();
    while (!sw_wsc_closed(c) && sw_now_ms() - t0 < (uint64_t)timeout_ms) {
        char *m = sw_wsc_recv_text(c, NULL, 100);
        free(m);
    }
    return sw_wsc_closed(c) ? (int64_t)(sw_now_ms() - t0) : -1;
}

static int master_alive(void)
{
    return waitpid(server->pid, NULL, WNOHANG) == 0 && kill(server->pid, 0) == 0;
}

static int log_has(const char *needle)
{
    FILE *f = fopen(server->log_path, "r");
    if (!f)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int in_set(pid_t p, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

/* Wait until the master has exactly `want` workers, none of them in
 * `old` (n_old pids). 1 on success. */
static int wait_replaced(const pid_t *old, int n_old, int want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        pid_t now[16];
        int n = sw_test_server_workers(server, now, 16);
        int fresh = n == want;
        for (int i = 0; fresh && i < n; i++)
            fresh = !in_set(now[i], old, n_old);
        if (fresh)
            return 1;
        usleep(50000);
    }
    return 0;
}

/* ---- liveness ----------------------------------------------------------- */

Test(liveness, client_that_stops_answering_pings_is_dropped)
{
    sw_wsc_t *c = connect_client(NULL);
    sw_wsc_set_auto_pong(c, 0);
    /* Silent from here: ping after PING_MS, closed PING_MS later. */
    int64_t took = wait_closed(c, 2 * PING_MS + MARGIN_MS + 2000);
    cr_assert_geq(took, 0, "the connection was not closed");
    cr_assert_leq(took, 2 * PING_MS + MARGIN_MS, "closed within interval + timeout (%lld ms)",
                  (long long)took);
    cr_assert_eq(sw_wsc_close_code(c), 1001, "close code %d", sw_wsc_close_code(c));
    cr_assert_eq(sw_wsc_send_text(c, "{}", 2), SW_ECLOSED);
    sw_wsc_free(c);
    cr_assert(master_alive());
}

Test(liveness, client_that_answers_pings_stays)
{
    sw_wsc_t *c = connect_client("tok-alive");
    /* 1.5 s of silence but for the pongs (answered while reading). */
    uint64_t t0 = sw_now_ms();
    while (sw_now_ms() - t0 < 1500) {
        char *m = sw_wsc_recv_text(c, NULL, 100);
        free(m);
        cr_assert_not(sw_wsc_closed(c), "closed after %llu ms (code %d)",
                      (unsigned long long)(sw_now_ms() - t0), sw_wsc_close_code(c));
    }
    cr_assert_eq(hydrate_count(c, 1), 0);
    cr_assert_eq(increment(c, 2), 1, "the connection still works");
    sw_wsc_free(c);
}

/* ---- reload --------------------------------------------------------------- */

/* /healthz polled from a second thread during a reload. */
static struct {
    pthread_t thread;
    atomic_int stop;
    atomic_int ok, draining, failed;
    int port;
} poll_hz;

static void *healthz_poller(void *arg)
{
    (void)arg;
    while (!atomic_load(&poll_hz.stop)) {
        char *body = NULL;
        int code = sw_test_http("127.0.0.1", poll_hz.port, "GET", "/healthz", NULL, &body, T_MS);
        if (code == 200)
            atomic_fetch_add(&poll_hz.ok, 1);
        else if (code == 503 && body && strstr(body, "\"draining\":true"))
            atomic_fetch_add(&poll_hz.draining, 1); /* an old worker, still answering */
        else
            atomic_fetch_add(&poll_hz.failed, 1);
        free(body);
        usleep(20000);
    }
    return NULL;
}

static void poller_start(void)
{
    memset(&poll_hz, 0, sizeof(poll_hz));
    poll_hz.port = server->port;
    cr_assert_eq(pthread_create(&poll_hz.thread, NULL, healthz_poller, NULL), 0);
}

static void poller_stop(void)
{
    atomic_store(&poll_hz.stop, 1);
    pthread_join(poll_hz.thread, NULL);
}

Test(reload, hup_replaces_workers_and_clients_resume_their_state)
{
    pid_t master = server->pid;
    pid_t before[16];
    int nbefore = sw_test_server_workers(server, before, 16);
    cr_assert_eq(nbefore, 2);

    sw_wsc_t *c = connect_client("tok-reload");
    cr_assert_eq(hydrate_count(c, 1), 0);
    cr_assert_eq(increment(c, 2), 1);
    cr_assert_eq(increment(c, 3), 2);

    poller_start();
    usleep(100000);
    cr_assert_eq(kill(master, SIGHUP), 0);

    /* The old generation closes its clients with 1001 (going away). */
    int64_t took = wait_closed(c, DRAIN_MS + MARGIN_MS);
    cr_assert_geq(took, 0, "the client was not closed by the reload");
    cr_assert_leq(took, DRAIN_MS, "closed within the drain timeout (%lld ms)", (long long)took);
    cr_assert_eq(sw_wsc_close_code(c), 1001, "close code %d", sw_wsc_close_code(c));
    sw_wsc_free(c);

    /* It reconnects with its token, lands on the new generation and finds
     * its state. */
    c = connect_client("tok-reload");
    cr_assert_eq(hydrate_count(c, 10), 2, "state survives the reload");
    cr_assert_eq(increment(c, 11), 3);
    cr_assert_eq(redis_count("tok-reload"), 3);

    cr_assert(wait_replaced(before, nbefore, 2, DRAIN_MS + RELOAD_GRACE + MARGIN_MS),
              "the workers afterwards are two new processes");
    usleep(200000);
    poller_stop();

    cr_assert(master_alive(), "the master lives on");
    cr_assert_eq(server->pid, master);
    cr_assert_eq(atomic_load(&poll_hz.failed), 0,
                 "/healthz answered throughout (%d ok, %d draining, %d failed)",
                 atomic_load(&poll_hz.ok), atomic_load(&poll_hz.draining),
                 atomic_load(&poll_hz.failed));
    cr_assert_gt(atomic_load(&poll_hz.ok), 0);

    /* Every answer now comes from the new generation. */
    for (int i = 0; i < 4; i++) {
        char *body = NULL;
        cr_assert_eq(sw_test_http("127.0.0.1", server->port, "GET", "/healthz", NULL, &body, T_MS),
                     200);
        json_t *j = json_loads(body, 0, NULL);
        cr_assert(j);
        pid_t pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
        cr_assert_not(in_set(pid, before, nbefore), "healthz answered by an old worker %d", pid);
        json_decref(j);
        free(body);
    }
    /* And the connection resumed on the new generation stays usable. */
    cr_assert_eq(increment(c, 12), 4);
    sw_wsc_free(c);

    cr_assert(log_has("reload (HUP): starting generation 2"));
    cr_assert(log_has("reload: new connections go to generation 2"));
    cr_assert(log_has("reload: draining generation 1"));
    cr_assert(log_has("reload complete: generation 1 has exited"));
    cr_assert_not(log_has("unexpectedly"), "no worker death was taken for a crash");
    cr_assert_not(log_has("respawning"), "the old generation is not respawned");
}

Test(reload, second_hup_during_a_reload_runs_after_it)
{
    pid_t master = server->pid;
    pid_t before[16];
    int nbefore = sw_test_server_workers(server, before, 16);
    cr_assert_eq(nbefore, 2);
    /* A connected client keeps generation 1 draining for a moment. */
    sw_wsc_t *c = connect_client("tok-twice");
    cr_assert_eq(hydrate_count(c, 1), 0);
    cr_assert_eq(increment(c, 2), 1);

    cr_assert_eq(kill(master, SIGHUP), 0);
    usleep(30000); /* before generation 1 gets QUIT */
    cr_assert_eq(kill(master, SIGHUP), 0);

    cr_assert_geq(wait_closed(c, DRAIN_MS + MARGIN_MS), 0);
    sw_wsc_free(c);

    /* Generation 3 replaces generation 2 once generation 1 has gone. */
    int done = 0;
    for (int waited = 0; waited < 2 * (DRAIN_MS + RELOAD_GRACE) && !done; waited += 50) {
        done = log_has("reload complete: generation 2 has exited");
        if (!done)
            usleep(50000);
    }
    cr_assert(done, "the queued reload ran");
    cr_assert(log_has("reload (HUP): generation 1 is still draining"));
    cr_assert(log_has("reload (HUP): starting generation 3"));
    cr_assert_not(log_has("starting generation 4"), "two HUPs, two reloads");
    cr_assert(wait_replaced(before, nbefore, 2, T_MS));
    cr_assert(master_alive());

    c = connect_client("tok-twice");
    cr_assert_eq(hydrate_count(c, 10), 1, "state survives two reloads");
    cr_assert_eq(increment(c, 11), 2);
    sw_wsc_free(c);
}
