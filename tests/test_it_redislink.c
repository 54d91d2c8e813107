/* Integration: every Redis connection of a worker is watched. Two hosts
 * (one worker each) reach a real redis-server through a loopback proxy
 * that can make the network fail silently (no FIN, no RST), and Redis
 * itself can be hung (SIGSTOP). A connection that died silently is found
 * and replaced within the stated bound, whether commands wait on it or
 * not, the pub/sub connection included, and rooms fan out again; a
 * connection counts as up only once Redis has answered on it, so
 * /healthz says 503 for as long as Redis does not answer.
 *
 * The stated bound (worker/store_link.h): ping after 1 s of silence
 * (found within 1.25 s) + 5 s reply timeout + 0.5 s watchdog tick, then a
 * reconnect (first retry after 100 ms): about 7 s. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/tcp_proxy.h"
#include "support/wsclient.h"

#define T_MS 10000
/* What the tests allow for the ~7 s bound above, on a loaded machine. */
#define RECOVER_MS 10000

static sw_test_redis_t *redis;
static sw_test_proxy_t *proxy;
static sw_test_server_t *host[2];
static int redis_stopped;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(1);
    cr_assert(redis, "redis-server did not start");
    proxy = sw_test_proxy_start(sw_test_redis_port(redis));
    cr_assert(proxy, "proxy did not start");
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", sw_test_proxy_port(proxy));
    const char *extra[] = {"--lease-ms", "3000", "--presence-ttl-ms", "1500", NULL};
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, url, 1, extra);
        cr_assert(host[i], "host %d did not start", i);
    }
}

static void teardown(void)
{
    if (redis_stopped)
        kill(sw_test_redis_pid(redis), SIGCONT);
    redis_stopped = 0;
    for (int i = 0; i < 2; i++) {
        if (host[i])
            sw_test_server_stop(host[i], SIGTERM, 5000);
        host[i] = NULL;
    }
    sw_test_proxy_stop(proxy);
    proxy = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(redislink, .init = setup, .fini = teardown, .timeout = 120);

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

/* A client in room `room` and what it last saw of the room's counter. */
typedef struct rc {
    sw_wsc_t *c;
    int next_id;
    json_int_t count;   /* counter.count, -1 before any */
    json_int_t viewers; /* counter.viewers, -1 before any */
} rc_t;

static void note(rc_t *r, const json_t *m)
{
    json_t *ctr = json_object_get(json_object_get(m, "delta"), "counter");
    json_t *n = json_object_get(ctr, "count"), *v = json_object_get(ctr, "viewers");
    if (json_is_integer(n))
        r->count = json_integer_value(n);
    if (json_is_integer(v))
        r->viewers = json_integer_value(v);
}

/* Apply messages for up to ms; 1 once *field == want. */
static int wait_for(rc_t *r, const json_int_t *field, json_int_t want, int ms)
{
    uint64_t end = mono_ms() + (uint64_t)ms;
    while (*field != want) {
        uint64_t now = mono_ms();
        if (now >= end)
            return 0;
        json_t *m = sw_wsc_recv_json(r->c, (int)(end - now));
        if (!m)
            return *field == want;
        note(r, m);
        json_decref(m);
    }
    return 1;
}

/* Send an event and apply everything until its answer (NULL on timeout). */
static json_t *call(rc_t *r, const char *name, const char *path, int ms)
{
    int id = r->next_id++;
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (path)
        json_object_set_new(m, "router", json_pack("{s:s}", "path", path));
    int rc = sw_wsc_send_json(r->c, m);
    json_decref(m);
    if (rc)
        return NULL;
    uint64_t end = mono_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = mono_ms();
        json_t *a = now < end ? sw_wsc_recv_json(r->c, (int)(end - now)) : NULL;
        if (!a)
            return NULL;
        note(r, a);
        if (json_integer_value(json_object_get(a, "id")) == id)
            return a;
        json_decref(a);
    }
}

static rc_t *join(int hi, const char *token, const char *room)
{
    rc_t *r = calloc(1, sizeof(*r));
    r->c = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
    cr_assert(r->c);
    json_t *w = sw_wsc_hello(r->c, token, NULL, T_MS);
    cr_assert(w && strcmp(type_of(w), "welcome") == 0);
    json_decref(w);
    r->next_id = 1;
    r->count = r->viewers = -1;
    json_t *h = call(r, "hydrate", room, T_MS);
    cr_assert(h && strcmp(type_of(h), "delta") == 0, "hydrate answered");
    json_decref(h);
    return r;
}

static void rc_free(rc_t *r)
{
    if (r)
        sw_wsc_free(r->c);
    free(r);
}

static int healthz(int hi)
{
    return sw_test_http("127.0.0.1", host[hi]->port, "GET", "/healthz", NULL, NULL, 2000);
}

static int log_has(int hi, const char *needle)
{
    FILE *f = fopen(host[hi]->log_path, "r");
    if (!f)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static json_int_t redis_count(void)
{
    json_t *v = NULL;
    json_int_t n = -1;
    if (sw_test_redis_state(redis, "room:t1", "counter", &v) == 1)
        n = json_integer_value(json_object_get(v, "count"));
    json_decref(v);
    return n;
}

/* Redis's flows die silently while the room is idle: nothing waits on
 * either connection, so only the pings can find it. Within the bound,
 * both hosts are connected again, the room fans out across them, and
 * presence is back; no answered increment is lost. */
Test(redislink, silently_dropped_flows_are_replaced_and_rooms_fan_out_again)
{
    rc_t *a = join(0, "link-a", "/room/t1");
    rc_t *b = join(1, "link-b", "/room/t1");
    cr_assert(wait_for(a, &a->viewers, 2, T_MS) && wait_for(b, &b->viewers, 2, T_MS));
    json_t *r = call(a, "counter.increment", NULL, T_MS);
    cr_assert(r && strcmp(type_of(r), "delta") == 0);
    json_decref(r);
    cr_assert(wait_for(b, &b->count, 1, T_MS), "fan-out works before the fault");
    size_t before = sw_test_proxy_accepted(proxy);

    sw_test_proxy_silence(proxy);
    uint64_t t0 = mono_ms();
    json_int_t acked = 1, errors = 0;
    uint64_t recovered = 0;
    while (!recovered && mono_ms() - t0 < 3 * RECOVER_MS) {
        r = call(a, "counter.increment", NULL, T_MS);
        cr_assert(r, "every event is answered (within %d ms)", T_MS);
        if (strcmp(type_of(r), "delta") == 0) {
            acked++;
            if (wait_for(b, &b->count, a->count, 1000))
                recovered = mono_ms() - t0;
        } else {
            errors++;
            usleep(200 * 1000);
        }
        json_decref(r);
    }
    cr_log_info("fan-out back %llu ms after the flows went silent (%lld acked, %lld errors, "
                "%zu new connections)",
                (unsigned long long)recovered, (long long)acked, (long long)errors,
                sw_test_proxy_accepted(proxy) - before);
    cr_assert(recovered, "the room never fanned out again");
    cr_assert_lt(recovered, RECOVER_MS, "fan-out back only after %llu ms",
                 (unsigned long long)recovered);
    /* Both connections of both hosts are replaced (the command
     * connection of host 1, where nothing waits but pings and live-key
     * refreshes, may come a little after the fan-out). */
    for (int i = 0; i < 2; i++) {
        uint64_t end = mono_ms() + RECOVER_MS;
        while (!(log_has(i, "redis: pub/sub connection lost") &&
                 log_has(i, "redis: connection lost") && healthz(i) == 200) &&
               mono_ms() < end)
            usleep(100 * 1000);
        cr_assert(log_has(i, "redis: pub/sub connection lost"), "host %d: pub/sub replaced", i);
        cr_assert(log_has(i, "redis: connection lost"), "host %d: commands replaced", i);
        cr_assert_eq(healthz(i), 200, "host %d healthy again", i);
    }
    cr_assert_geq(sw_test_proxy_accepted(proxy) - before, 4);
    /* Nothing answered was lost, nothing unanswered was applied. */
    cr_assert_eq(redis_count(), acked);
    cr_assert_eq(a->count, acked);
    /* Presence is resynced: both viewers are counted again. */
    json_decref(call(b, "counter.increment", NULL, T_MS));
    cr_assert(wait_for(a, &a->viewers, 2, T_MS), "viewers back to 2 (a sees %lld)",
              (long long)a->viewers);
    rc_free(a);
    rc_free(b);
}

/* A hung Redis (SIGSTOP) still completes TCP connects: the worker must
 * not count a connection as up before Redis answers. /healthz is 503
 * within the bound and stays 503 for as long as Redis is stopped, then
 * 200 again once it answers. */
Test(redislink, hung_redis_is_unhealthy_until_it_answers)
{
    rc_t *a = join(0, "hung-a", "/room/t1");
    cr_assert_eq(healthz(0), 200);
    cr_assert_eq(kill(sw_test_redis_pid(redis), SIGSTOP), 0);
    redis_stopped = 1;
    uint64_t t0 = mono_ms();
    while (healthz(0) != 503 && mono_ms() - t0 < 2 * RECOVER_MS)
        usleep(100 * 1000);
    uint64_t found = mono_ms() - t0;
    cr_log_info("/healthz 503 %llu ms after Redis stopped", (unsigned long long)found);
    cr_assert_lt(found, RECOVER_MS, "a hung Redis went unnoticed for %llu ms",
                 (unsigned long long)found);
    /* Past the reply timeout the links reconnect (the kernel completes
     * the connects) and must still not count as up. */
    uint64_t until = mono_ms() + 8000;
    int healthy = 0;
    while (mono_ms() < until) {
        int code = healthz(0);
        if (code == 200)
            healthy++;
        cr_assert(code == 503 || code == 200, "healthz answered %d", code);
        usleep(100 * 1000);
    }
    cr_assert_eq(healthy, 0, "/healthz said 200 %d time(s) while Redis was stopped", healthy);
    /* An event meanwhile gets a retryable error at once (the outage is
     * known: no wait for another reply timeout), not a hang. */
    uint64_t sent = mono_ms();
    json_t *r = call(a, "counter.increment", NULL, T_MS);
    uint64_t took = mono_ms() - sent;
    cr_assert(r, "an event is answered while Redis is stopped");
    cr_assert_str_eq(type_of(r), "error");
    cr_assert_str_eq(json_string_value(json_object_get(r, "code")), "state_unavailable");
    cr_assert_lt(took, 2000, "the error took %llu ms", (unsigned long long)took);
    json_decref(r);

    cr_assert_eq(kill(sw_test_redis_pid(redis), SIGCONT), 0);
    redis_stopped = 0;
    t0 = mono_ms();
    cr_assert_eq(sw_test_server_wait_healthy(host[0], RECOVER_MS), 0, "healthy again");
    cr_log_info("/healthz 200 %llu ms after Redis resumed", (unsigned long long)(mono_ms() - t0));
    r = call(a, "counter.increment", NULL, T_MS);
    char *dump = r ? json_dumps(r, JSON_COMPACT) : NULL;
    cr_assert(r && strcmp(type_of(r), "delta") == 0, "events flow again: %s", dump);
    free(dump);
    json_decref(r);
    rc_free(a);
}
