/* Integration: a host stopped fast (SIGTERM, what systemd and docker stop
 * send) and started again on the same real redis-server. Its clients
 * resume at once: the stopped workers gave their leases back instead of
 * leaving them to expire (--lease-ms). */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 15000
#define NCLIENTS 20

static sw_test_redis_t *redis;
static sw_test_server_t *server;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis, "redis-server did not start");
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

TestSuite(restart, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *type_of(const json_t *m)
{
    return json_string_value(json_object_get(m, "type"));
}

/* The answer to event `id` (other messages skipped). */
static json_t *call(sw_wsc_t *c, int64_t id, const char *name)
{
    json_t *m = json_pack("{s:s, s:I, s:s}", "type", "event", "id", (json_int_t)id, "name", name);
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
    return sw_wsc_wait(c, NULL, id, T_MS);
}

Test(restart, term_then_start_resumes_active_clients_at_once)
{
    /* The default lease (10 s): a lease left behind would hold every
     * resume that long. */
    server = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL);
    cr_assert(server);
    int port = server->port;
    sw_wsc_t *c[NCLIENTS];
    char cid[NCLIENTS][80], ctok[NCLIENTS][80], tok[NCLIENTS][32];
    for (int i = 0; i < NCLIENTS; i++) {
        snprintf(tok[i], sizeof(tok[i]), "restart-%d", i);
        c[i] = sw_wsc_connect("127.0.0.1", port, "/_event", T_MS);
        cr_assert(c[i]);
        json_t *w = sw_wsc_hello(c[i], tok[i], NULL, T_MS);
        cr_assert(w && strcmp(type_of(w), "welcome") == 0);
        snprintf(cid[i], sizeof(cid[i]), "%s", json_string_value(json_object_get(w, "conn_id")));
        snprintf(ctok[i], sizeof(ctok[i]), "%s",
                 json_string_value(json_object_get(w, "conn_token")));
        json_decref(w);
        /* Active right before the stop: its worker keeps the lease
         * between events (the oplock). */
        json_decref(call(c[i], 1, "counter.increment"));
        json_t *d = call(c[i], 2, "counter.increment");
        cr_assert(d && strcmp(type_of(d), "delta") == 0);
        json_decref(d);
    }
    sw_test_server_stop(server, SIGTERM, 5000);
    server = NULL;
    for (int i = 0; i < NCLIENTS; i++)
        sw_wsc_free(c[i]);

    server = sw_test_server_start(port, sw_test_redis_url(redis), 2, NULL);
    cr_assert(server, "the host starts again on its port");
    uint64_t worst = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        uint64_t t0 = mono_ms();
        sw_wsc_t *r = sw_wsc_connect("127.0.0.1", port, "/_event", T_MS);
        cr_assert(r);
        json_t *resume = json_pack("{s:s, s:s, s:I}", "conn_id", cid[i], "conn_token", ctok[i],
                                   "last_seq", (json_int_t)2);
        json_t *w = sw_wsc_hello(r, tok[i], resume, T_MS);
        json_decref(resume);
        cr_assert(w, "client %d: no welcome", i);
        cr_assert_str_eq(type_of(w), "welcome");
        cr_assert(json_is_true(json_object_get(w, "resumed")), "client %d resumed", i);
        json_decref(w);
        uint64_t took = mono_ms() - t0;
        worst = took > worst ? took : worst;
        /* Its state is the store's: the next increment gives 3. */
        json_t *d = call(r, 3, "counter.increment");
        cr_assert(d && strcmp(type_of(d), "delta") == 0, "client %d: an answer", i);
        json_t *n =
            json_object_get(json_object_get(json_object_get(d, "delta"), "counter"), "count");
        cr_assert_eq(json_integer_value(n), 3, "client %d: count %lld", i,
                     (long long)json_integer_value(n));
        json_decref(d);
        sw_wsc_free(r);
    }
    cr_log_info("slowest welcome after the restart: %llu ms", (unsigned long long)worst);
    /* Well under the 10 s lease a stopped worker would have left behind. */
    cr_assert_lt(worst, 3000, "a resume waited %llu ms for a lease", (unsigned long long)worst);
}
