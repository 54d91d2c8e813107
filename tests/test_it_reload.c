/* Integration: a deploy under load. 100 clients on two hosts (2 workers
 * each, one real redis-server) increment their counters nonstop while host
 * 0 is reloaded (HUP: a new generation of workers) and then stopped
 * gracefully (QUIT). Dropped clients come back with their resume
 * credentials, on host 1 once host 0 is gone. At the end every
 * acknowledged event is in Redis and every client's state equals the
 * server's. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define N 100
#define T_MS 5000

static sw_test_redis_t *redis;
static sw_test_server_t *host[2];
static atomic_int stop_load;
static atomic_int host0_gone;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    const char *extra[] = {"--drain-timeout", "4000", "--lease-ms", "3000", NULL};
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, extra);
        cr_assert(host[i]);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        if (host[i])
            sw_test_server_stop(host[i], SIGTERM, 5000);
        host[i] = NULL;
    }
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 180);

typedef struct client {
    int idx;
    char token[32];
    sw_wsc_t *c;
    char conn_id[80], conn_token[80];
    json_int_t last_seq;
    json_int_t count; /* the client's view of counter.count */
    int acked;
    int resumes, fulls, failures;
} client_t;

static void track(client_t *k, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type || strcmp(type, "delta") != 0)
        return;
    json_int_t seq = json_integer_value(json_object_get(m, "seq"));
    if (seq > k->last_seq)
        k->last_seq = seq;
    json_t *c = json_object_get(json_object_get(json_object_get(m, "delta"), "counter"), "count");
    if (json_is_integer(c))
        k->count = json_integer_value(c);
    if (json_is_true(json_object_get(m, "full")))
        k->fulls++;
}

/* Connect (resuming when we have credentials) to host 0 unless it is gone. */
static int connect_k(client_t *k, int first)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int hi = atomic_load(&host0_gone) ? 1 : (first ? k->idx % 2 : (k->idx + attempt) % 2);
        sw_test_server_t *h = host[hi];
        if (!h)
            hi = 1, h = host[1];
        k->c = sw_wsc_connect("127.0.0.1", h->port, "/_event", 2000);
        if (!k->c) {
            usleep(50000);
            continue;
        }
        json_t *resume = NULL;
        if (!first)
            resume = json_pack("{s:s,s:s,s:I}", "conn_id", k->conn_id, "conn_token", k->conn_token,
                               "last_seq", k->last_seq);
        json_t *w = sw_wsc_hello(k->c, k->token, resume, T_MS);
        json_decref(resume);
        if (!w) {
            sw_wsc_free(k->c);
            k->c = NULL;
            usleep(50000);
            continue;
        }
        if (!first) {
            if (!json_is_true(json_object_get(w, "resumed")))
                k->failures++; /* must never happen: counted and reported */
            k->resumes++;
        }
        snprintf(k->conn_id, sizeof(k->conn_id), "%s",
                 json_string_value(json_object_get(w, "conn_id")));
        snprintf(k->conn_token, sizeof(k->conn_token), "%s",
                 json_string_value(json_object_get(w, "conn_token")));
        json_int_t ws = json_integer_value(json_object_get(w, "seq"));
        if (ws > k->last_seq && first)
            k->last_seq = ws;
        json_decref(w);
        return 0;
    }
    return -1;
}

static void *load_client(void *p)
{
    client_t *k = p;
    if (connect_k(k, 1) != 0) {
        k->failures++;
        return NULL;
    }
    json_t *m = json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "event", "id", 1, "name", "hydrate",
                          "router", "path", "/");
    sw_wsc_send_json(k->c, m);
    json_decref(m);
    json_t *h = sw_wsc_wait(k->c, "delta", 1, T_MS);
    if (h)
        track(k, h);
    json_decref(h);
    int id = 100;
    while (!atomic_load(&stop_load)) {
        id++;
        m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", "counter.increment");
        int sent = sw_wsc_send_json(k->c, m) == 0;
        json_decref(m);
        json_t *ans = NULL;
        while (sent) {
            json_t *r = sw_wsc_recv_json(k->c, T_MS);
            if (!r)
                break;
            track(k, r);
            json_t *rid = json_object_get(r, "id");
            if (rid && json_integer_value(rid) == id) {
                ans = r;
                break;
            }
            json_decref(r);
        }
        if (ans) {
            if (strcmp(json_string_value(json_object_get(ans, "type")), "delta") == 0)
                k->acked++;
            else
                usleep(20000); /* retryable error (draining): try again */
            json_decref(ans);
            continue;
        }
        /* dropped: come back with the resume credentials */
        sw_wsc_free(k->c);
        k->c = NULL;
        if (connect_k(k, 0) != 0) {
            k->failures++;
            return NULL;
        }
    }
    /* settle: whatever the server still sends (none expected) */
    json_t *r;
    while ((r = sw_wsc_recv_json(k->c, 300))) {
        track(k, r);
        json_decref(r);
    }
    return NULL;
}

static json_int_t redis_count(const char *token)
{
    json_t *v;
    sw_test_redis_state(redis, token, "counter", &v);
    json_int_t n = json_integer_value(json_object_get(v, "count")); /* 0 when absent */
    json_decref(v);
    return n;
}

Test(reload, hup_then_quit_under_load_loses_no_acknowledged_event)
{
    static client_t k[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&k[i], 0, sizeof(k[i]));
        k[i].idx = i;
        snprintf(k[i].token, sizeof(k[i].token), "tok-reload-%d", i);
        pthread_create(&th[i], NULL, load_client, &k[i]);
    }
    sleep(1);
    kill(host[0]->pid, SIGHUP); /* a new generation; the old one drains */
    sleep(2);
    atomic_store(&host0_gone, 1);
    int st = sw_test_server_stop(host[0], SIGQUIT, 10000); /* graceful stop */
    host[0] = NULL;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "host 0 stopped cleanly");
    sleep(1);
    atomic_store(&stop_load, 1);
    int acked = 0, resumes = 0, fulls = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        acked += k[i].acked;
        resumes += k[i].resumes;
        fulls += k[i].fulls;
    }
    cr_log_info("%d acknowledged increments, %d resumes, %d of them synced by a full delta", acked,
                resumes, fulls - N /* each client's hydrate */);
    cr_assert_gt(resumes, N / 2, "the reload and the stop moved clients (%d resumes)", resumes);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(k[i].failures, 0, "client %d: %d failed resumes", i, k[i].failures);
        json_int_t stored = redis_count(k[i].token);
        cr_assert_eq(stored, k[i].acked, "client %d: %d acknowledged, Redis holds %lld", i,
                     k[i].acked, (long long)stored);
        cr_assert_eq(k[i].count, stored, "client %d ends with the server's state (%lld vs %lld)", i,
                     (long long)k[i].count, (long long)stored);
        if (k[i].c)
            sw_wsc_free(k[i].c);
    }
}
