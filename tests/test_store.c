/* test_store.c — the state store against a real redis-server (through the
 * harness) and in memory. */
#include "worker/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <signal.h>
#include <ev.h>

#include "common/util.h"
#include "tests/support/redis_harness.h"

#define WAIT_MS 5000
#define MAXF 16

static struct ev_loop *loop;
static sw_test_redis_t *redis;

/* ---- Helpers ------------------------------------------------------------------------- */

typedef struct load_res {
    int done;
    int status;
    int exists;
    uint64_t seq;
    size_t nfields;
    char name[MAXF][64];
    char data[MAXF][128];
    size_t len[MAXF];
    int has_meta;
    char meta[128];
    size_t meta_len;
} load_res_t;

typedef struct commit_res {
    int done;
    int status;
} commit_res_t;

static void on_load(void *udata, const sw_store_loaded_t *r)
{
    load_res_t *lr = udata;
    cr_assert_eq(lr->done, 0, "load callback called twice");
    lr->done = 1;
    lr->status = r->status;
    lr->exists = r->exists;
    lr->seq = r->seq;
    lr->nfields = r->nfields;
    for (size_t i = 0; i < r->nfields && i < MAXF; i++) {
        snprintf(lr->name[i], sizeof(lr->name[i]), "%.*s", (int)r->fields[i].name_len,
                 r->fields[i].name);
        lr->len[i] = SW_MIN(r->fields[i].len, sizeof(lr->data[i]));
        memcpy(lr->data[i], r->fields[i].data, lr->len[i]);
    }
    if (r->meta) {
        lr->has_meta = 1;
        lr->meta_len = SW_MIN(r->meta_len, sizeof(lr->meta));
        memcpy(lr->meta, r->meta, lr->meta_len);
    }
}

static void on_commit(void *udata, int status)
{
    commit_res_t *cr = udata;
    cr_assert_eq(cr->done, 0, "commit callback called twice");
    cr->done = 1;
    cr->status = status;
}

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Run the loop until *flag is set (or `ms` pass). Returns *flag. */
static int wait_flag(const int *flag, int ms)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    uint64_t deadline = sw_now_ms() + (uint64_t)ms;
    while (!*flag && sw_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return *flag;
}

/* Run the loop for `ms` milliseconds. */
static void spin(int ms)
{
    int never = 0;
    wait_flag(&never, ms);
}

static void wait_ready(sw_store_t *s)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    uint64_t deadline = sw_now_ms() + WAIT_MS;
    while (!sw_store_ready(s) && sw_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    cr_assert(sw_store_ready(s), "store not ready");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static sw_store_t *mk(const char *url, const char *holder, uint32_t lease_ms, uint32_t ttl_s,
                      uint32_t log_max)
{
    sw_store_opts_t o = {.redis_url = url,
                         .holder_id = holder,
                         .token_ttl_s = ttl_s,
                         .lease_ms = lease_ms,
                         .log_max = log_max};
    sw_store_t *s = sw_store_new(loop, &o);
    cr_assert_not_null(s);
    return s;
}

static sw_store_t *mk_redis(const char *holder)
{
    return mk(sw_test_redis_url(redis), holder, 0, 0, 0);
}

static load_res_t load(sw_store_t *s, const char *token)
{
    load_res_t r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_acquire_load(s, token, on_load, &r), 0);
    cr_assert_eq(r.done, 0, "callback ran inside the call");
    cr_assert(wait_flag(&r.done, WAIT_MS), "no load completion");
    return r;
}

/* Commit fields given as name, value, name, value, ..., NULL. */
static int commit_kv(sw_store_t *s, const char *token, uint64_t seq, const char *log_entry,
                     int release, ...)
{
    sw_store_field_t f[MAXF];
    size_t n = 0;
    va_list ap;
    va_start(ap, release);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        f[n++] = (sw_store_field_t){name, strlen(name), val, strlen(val)};
    }
    va_end(ap);
    sw_store_commit_t c = {.token = token,
                           .seq = seq,
                           .log_entry = log_entry,
                           .log_len = log_entry ? strlen(log_entry) : 0,
                           .fields = f,
                           .nfields = n,
                           .release = release};
    commit_res_t r = {0};
    cr_assert_eq(sw_store_commit(s, &c, on_commit, &r), 0);
    cr_assert_eq(r.done, 0, "callback ran inside the call");
    cr_assert(wait_flag(&r.done, WAIT_MS), "no commit completion");
    return r.status;
}

static const char *field(const load_res_t *r, const char *name)
{
    static char out[129];
    for (size_t i = 0; i < r->nfields && i < MAXF; i++)
        if (strcmp(r->name[i], name) == 0) {
            memcpy(out, r->data[i], r->len[i]);
            out[r->len[i]] = '\0';
            return out;
        }
    return NULL;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "redis command failed: %s", c->errstr);
    return r;
}

static long long cmd_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "reply type %d", r->type);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The string value of a reply, "(nil)" for nil; static buffer. */
static const char *cmd_str(redisContext *c, const char *fmt, ...)
{
    static char out[256];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    if (r->type == REDIS_REPLY_NIL)
        snprintf(out, sizeof(out), "(nil)");
    else
        snprintf(out, sizeof(out), "%.*s", (int)r->len, r->str);
    freeReplyObject(r);
    return out;
}

static void setup_loop(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
}

static void setup_redis(void)
{
    setup_loop();
    redis = sw_test_redis_start(0);
    cr_assert_not_null(redis);
}

static void teardown(void)
{
    sw_test_redis_stop(redis);
    redis = NULL;
    ev_loop_destroy(loop);
    loop = NULL;
}

/* ---- URL parsing ---------------------------------------------------------------------- */

Test(store_url, valid)
{
    char host[256];
    int port, db;
    cr_assert_eq(sw_store_parse_url("redis://localhost", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "localhost");
    cr_assert_eq(port, 6379);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_store_parse_url("redis://10.0.0.1:7000/5", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "10.0.0.1");
    cr_assert_eq(port, 7000);
    cr_assert_eq(db, 5);
    cr_assert_eq(sw_store_parse_url("redis://h:1/", host, sizeof(host), &port, &db), 0);
    cr_assert_eq(port, 1);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_store_parse_url("redis://[::1]:6380/2", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 6380);
    cr_assert_eq(db, 2);
    cr_assert_eq(sw_store_parse_url("unix:///tmp/r.sock", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "/tmp/r.sock");
    cr_assert_eq(port, 0);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_store_parse_url("unix:///var/run/r.sock?db=12", host, sizeof(host), &port, &db),
                 0);
    cr_assert_str_eq(host, "/var/run/r.sock");
    cr_assert_eq(db, 12);
}

Test(store_url, invalid)
{
    char host[16];
    int port, db;
    const char *bad[] = {
        "",
        "localhost:6379",
        "http://h",
        "redis://",
        "redis://:6379",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:x",
        "redis://h:6379/x",
        "redis://h/1/2",
        "redis://user:pw@h",
        "redis://h?db=1",
        "redis://[::1",
        "unix://",
        "unix://rel/path",
        "unix:///p?db=",
        "unix:///p?db=-1",
        "unix:///p?x=1",
        "redis://a-host-name-longer-than-the-buffer:1",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++)
        cr_assert_eq(sw_store_parse_url(bad[i], host, sizeof(host), &port, &db), SW_EINVAL,
                     "accepted \"%s\"", bad[i]);
    cr_assert_eq(sw_store_parse_url(NULL, host, sizeof(host), &port, &db), SW_EINVAL);
    sw_store_opts_t o = {.redis_url = "redis://h:0", .holder_id = "w1"};
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    cr_assert_null(sw_store_new(l, &o));
    ev_loop_destroy(l);
}

/* ---- Redis ----------------------------------------------------------------------------- */

TestSuite(store_redis, .init = setup_redis, .fini = teardown, .timeout = 30);

Test(store_redis, fresh_token)
{
    sw_store_t *s = mk_redis("w1");
    cr_assert_str_eq(sw_store_kind(s), "redis");
    load_res_t r = load(s, "tok1");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 0);
    cr_assert_eq(r.seq, 0);
    cr_assert_eq(r.nfields, 0);
    cr_assert_eq(r.has_meta, 0);
    cr_assert(sw_store_ready(s));
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "GET sw:{tok1}:lease"), "w1");
    redisFree(c);
    sw_store_free(s);
}

Test(store_redis, commit_then_load_elsewhere)
{
    sw_store_t *a = mk_redis("w1");
    sw_store_t *b = mk_redis("w2");
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 7, "{\"seq\":7}", 1, "counter",
                           "\x81\xa5"
                           "count\x05",
                           "_meta", "M1", "room", "R", NULL),
                 0);
    load_res_t r = load(b, "t");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 1);
    cr_assert_eq(r.seq, 7);
    cr_assert_eq(r.nfields, 2);
    cr_assert_str_eq(field(&r, "counter"), "\x81\xa5"
                                           "count\x05");
    cr_assert_str_eq(field(&r, "room"), "R");
    cr_assert(r.has_meta);
    cr_assert_eq(r.meta_len, 2);
    cr_assert_eq(memcmp(r.meta, "M1", 2), 0);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "LINDEX sw:{t}:log -1"), "{\"seq\":7}");
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "w2");
    redisFree(c);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, binary_safe_fields)
{
    sw_store_t *s = mk_redis("w1");
    cr_assert_eq(load(s, "bin").status, 0);
    const char val[] = {'a', '\0', 'b', '\xff', '\0'};
    sw_store_field_t f = {"st\0x", 4, val, sizeof(val)};
    sw_store_commit_t c = {.token = "bin", .fields = &f, .nfields = 1};
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_commit(s, &c, on_commit, &cres), 0);
    cr_assert(wait_flag(&cres.done, WAIT_MS));
    cr_assert_eq(cres.status, 0);
    load_res_t r = load(s, "bin");
    cr_assert_eq(r.nfields, 1);
    cr_assert_eq(r.len[0], sizeof(val));
    cr_assert_eq(memcmp(r.data[0], val, sizeof(val)), 0);
    sw_store_free(s);
}

Test(store_redis, ttls)
{
    sw_store_t *s = mk(sw_test_redis_url(redis), "w1", 5000, 60, 0);
    cr_assert_eq(load(s, "t").status, 0);
    cr_assert_eq(commit_kv(s, "t", 1, "e1", 0, "a", "1", NULL), 0);
    redisContext *c = sw_test_redis_connect(redis);
    long long h = cmd_int(c, "PTTL sw:{t}"), l = cmd_int(c, "PTTL sw:{t}:log"),
              ls = cmd_int(c, "PTTL sw:{t}:lease");
    cr_assert(h > 0 && h <= 60000, "hash PTTL %lld", h);
    cr_assert(l > 0 && l <= 60000, "log PTTL %lld", l);
    cr_assert(ls > 0 && ls <= 5000, "lease PTTL %lld", ls);
    redisFree(c);
    sw_store_free(s);
}

Test(store_redis, busy_while_held)
{
    sw_store_t *a = mk_redis("w1");
    sw_store_t *b = mk_redis("w2");
    cr_assert_eq(commit_kv(a, "t", 0, NULL, 0, "x", "1", NULL), SW_ELEASE);
    cr_assert_eq(load(a, "t").status, 0);
    load_res_t r = load(b, "t");
    cr_assert_eq(r.status, SW_EBUSY);
    cr_assert_eq(r.nfields, 0);
    cr_assert_eq(commit_kv(b, "t", 0, NULL, 0, "x", "1", NULL), SW_ELEASE);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, same_holder_refreshes)
{
    sw_store_t *a = mk(sw_test_redis_url(redis), "w1", 60000, 0, 0);
    cr_assert_eq(load(a, "t").status, 0);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_eq(cmd_int(c, "PEXPIRE sw:{t}:lease 1000"), 1);
    cr_assert_eq(load(a, "t").status, 0);
    long long ls = cmd_int(c, "PTTL sw:{t}:lease");
    cr_assert(ls > 1000 && ls <= 60000, "lease PTTL %lld not refreshed", ls);
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, stolen_lease_refused)
{
    sw_store_t *a = mk_redis("w1");
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, "e1", 0, "x", "old", NULL), 0);
    redisContext *c = sw_test_redis_connect(redis);
    freeReplyObject(cmd(c, "SET sw:{t}:lease thief PX 60000"));
    cr_assert_eq(commit_kv(a, "t", 2, "e2", 0, "x", "new", "y", "new", NULL), SW_ELEASE);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} x"), "old");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} y"), "(nil)");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _seq"), "1");
    cr_assert_eq(cmd_int(c, "LLEN sw:{t}:log"), 1);
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "thief");
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, expired_lease_refused)
{
    sw_store_t *a = mk(sw_test_redis_url(redis), "w1", 100, 0, 0);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, NULL, 0, "x", "old", NULL), 0);
    sleep_ms(250);
    cr_assert_eq(commit_kv(a, "t", 2, "e", 0, "x", "new", NULL), SW_ELEASE);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} x"), "old");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _seq"), "1");
    cr_assert_eq(cmd_int(c, "EXISTS sw:{t}:log"), 0);
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, release_only_own_lease)
{
    sw_store_t *a = mk_redis("w1");
    sw_store_t *b = mk_redis("w2");
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(sw_store_release(b, "t"), 0);
    /* Same connection as the release, so it ran first. */
    cr_assert_eq(load(b, "t").status, SW_EBUSY);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "w1");
    cr_assert_eq(sw_store_release(a, "t"), 0);
    cr_assert_eq(commit_kv(a, "t", 0, NULL, 0, "x", "1", NULL), SW_ELEASE);
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "(nil)");
    cr_assert_eq(load(b, "t").status, 0);
    redisFree(c);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, log_trimmed)
{
    sw_store_t *a = mk(sw_test_redis_url(redis), "w1", 0, 0, 3);
    cr_assert_eq(load(a, "t").status, 0);
    const char *entries[] = {"e1", "e2", "e3", "e4", "e5"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(commit_kv(a, "t", (uint64_t)i + 1, entries[i], 0, NULL), 0);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_eq(cmd_int(c, "LLEN sw:{t}:log"), 3);
    cr_assert_str_eq(cmd_str(c, "LINDEX sw:{t}:log 0"), "e3");
    cr_assert_str_eq(cmd_str(c, "LINDEX sw:{t}:log 2"), "e5");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _seq"), "5");
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, free_completes_pending)
{
    sw_store_t *a = mk_redis("w1");
    load_res_t r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_acquire_load(a, "t", on_load, &r), 0);
    sw_store_free(a);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, SW_EUNAVAIL);
}

Test(store_redis, bad_arguments)
{
    sw_store_t *a = mk_redis("w1");
    load_res_t r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_acquire_load(a, "", on_load, &r), SW_EINVAL);
    cr_assert_eq(sw_store_acquire_load(a, "a{b}", on_load, &r), SW_EINVAL);
    cr_assert_eq(sw_store_acquire_load(a, "a b", on_load, &r), SW_EINVAL);
    sw_store_field_t f = {"_seq", 4, "1", 1};
    sw_store_commit_t c = {.token = "t", .fields = &f, .nfields = 1};
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_commit(a, &c, on_commit, &cres), SW_EINVAL);
    spin(50);
    cr_assert_eq(r.done, 0);
    cr_assert_eq(cres.done, 0);
    sw_store_free(a);
}

Test(store_redis, outage_and_recovery)
{
    sw_store_t *a = mk_redis("w1");
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, NULL, 0, "x", "1", NULL), 0);
    sw_test_redis_kill(redis);
    cr_assert_eq(commit_kv(a, "t", 2, NULL, 0, "x", "2", NULL), SW_EUNAVAIL);
    cr_assert_not(sw_store_ready(a));
    load_res_t r = load(a, "t");
    cr_assert_eq(r.status, SW_EUNAVAIL);
    cr_assert_eq(sw_test_redis_restart(redis), 0);
    wait_ready(a);
    /* The restarted server has an empty script cache: EVALSHA gets
     * NOSCRIPT and the request is resent as EVAL. */
    r = load(a, "t");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 0);
    cr_assert_eq(commit_kv(a, "t", 3, "e3", 0, "x", "3", NULL), 0);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} x"), "3");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _seq"), "3");
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, script_flush)
{
    sw_store_t *a = mk_redis("w1");
    cr_assert_eq(load(a, "t").status, 0);
    redisContext *c = sw_test_redis_connect(redis);
    freeReplyObject(cmd(c, "SCRIPT FLUSH"));
    cr_assert_eq(commit_kv(a, "t", 4, NULL, 0, "x", "v", NULL), 0);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} x"), "v");
    freeReplyObject(cmd(c, "SCRIPT FLUSH"));
    cr_assert_eq(load(a, "t").seq, 4);
    redisFree(c);
    sw_store_free(a);
}

Test(store_redis, hung_redis_times_out_then_recovers, .timeout = 30)
{
    sw_store_t *a = mk_redis("w1");
    cr_assert_eq(load(a, "t").status, 0);
    /* Redis stops answering but keeps the connection open. */
    cr_assert_eq(kill(sw_test_redis_pid(redis), SIGSTOP), 0);
    load_res_t r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_acquire_load(a, "t", on_load, &r), 0);
    uint64_t t0 = sw_now_ms();
    cr_assert(wait_flag(&r.done, 15000), "a hung Redis must not hang the request");
    uint64_t waited = sw_now_ms() - t0;
    cr_assert_eq(r.status, SW_EUNAVAIL);
    cr_assert(waited >= 4000, "not before the reply timeout (%llu ms)", (unsigned long long)waited);
    cr_assert_eq(kill(sw_test_redis_pid(redis), SIGCONT), 0);
    wait_ready(a);
    cr_assert_eq(load(a, "t2").status, 0);
    sw_store_free(a);
}

Test(store_redis, down_at_start)
{
    sw_test_redis_kill(redis);
    sw_store_t *a = mk_redis("w1");
    cr_assert_not(sw_store_ready(a));
    load_res_t r = load(a, "t");
    cr_assert_eq(r.status, SW_EUNAVAIL);
    cr_assert_eq(sw_test_redis_restart(redis), 0);
    wait_ready(a);
    cr_assert_eq(load(a, "t").status, 0);
    sw_store_free(a);
}

/* db selection needs the TCP form of the URL. */
static void setup_redis_tcp(void)
{
    setup_loop();
    redis = sw_test_redis_start(1);
    cr_assert_not_null(redis);
}

Test(store_redis_tcp, selects_db, .init = setup_redis_tcp, .fini = teardown, .timeout = 30)
{
    cr_assert_gt(sw_test_redis_port(redis), 0);
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", sw_test_redis_port(redis));
    sw_store_t *a = mk(url, "w1", 0, 0, 0);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, "e", 0, "x", "1", NULL), 0);
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_eq(cmd_int(c, "EXISTS sw:{t}"), 0);
    cr_assert_eq(cmd_int(c, "EXISTS sw:{t}:lease"), 0);
    freeReplyObject(cmd(c, "SELECT 3"));
    cr_assert_eq(cmd_int(c, "EXISTS sw:{t}"), 1);
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "w1");
    redisFree(c);
    sw_store_free(a);

    /* The unix form names the db as a query parameter. */
    snprintf(url, sizeof(url), "unix://%s?db=2", sw_test_redis_socket(redis));
    sw_store_t *u = mk(url, "w1", 0, 0, 0);
    cr_assert_eq(load(u, "t").status, 0);
    c = sw_test_redis_connect(redis);
    freeReplyObject(cmd(c, "SELECT 2"));
    cr_assert_str_eq(cmd_str(c, "GET sw:{t}:lease"), "w1");
    redisFree(c);
    sw_store_free(u);
}

/* ---- Memory ---------------------------------------------------------------------------- */

TestSuite(store_mem, .init = setup_loop, .fini = teardown, .timeout = 30);

Test(store_mem, fresh_and_round_trip)
{
    sw_store_t *a = mk(NULL, "w1", 0, 0, 0);
    sw_store_t *b = mk(NULL, "w2", 0, 0, 0);
    cr_assert_str_eq(sw_store_kind(a), "memory");
    cr_assert(sw_store_ready(a));
    load_res_t r = load(a, "t");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 0);
    cr_assert_eq(r.seq, 0);
    cr_assert_eq(r.nfields, 0);
    cr_assert_eq(commit_kv(a, "t", 9, "e", 1, "counter", "C", "_meta", "M", NULL), 0);
    r = load(b, "t");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 1);
    cr_assert_eq(r.seq, 9);
    cr_assert_eq(r.nfields, 1);
    cr_assert_str_eq(field(&r, "counter"), "C");
    cr_assert(r.has_meta);
    cr_assert_eq(memcmp(r.meta, "M", 1), 0);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_mem, busy_and_refresh)
{
    sw_store_t *a = mk(NULL, "w1", 0, 0, 0);
    sw_store_t *b = mk(NULL, "w2", 0, 0, 0);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(load(b, "t").status, SW_EBUSY);
    cr_assert_eq(commit_kv(b, "t", 0, NULL, 0, "x", "1", NULL), SW_ELEASE);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(sw_store_release(b, "t"), 0); /* not b's: no effect */
    cr_assert_eq(load(b, "t").status, SW_EBUSY);
    cr_assert_eq(sw_store_release(a, "t"), 0);
    cr_assert_eq(load(b, "t").status, 0);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_mem, expired_lease_refused)
{
    sw_store_t *a = mk(NULL, "w1", 50, 0, 0);
    sw_store_t *b = mk(NULL, "w2", 0, 0, 0);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, NULL, 0, "x", "old", NULL), 0);
    sleep_ms(100);
    cr_assert_eq(load(b, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 2, NULL, 0, "x", "new", NULL), SW_ELEASE);
    load_res_t r = load(b, "t");
    cr_assert_str_eq(field(&r, "x"), "old");
    cr_assert_eq(r.seq, 1);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_mem, ttl_expiry)
{
    sw_store_t *a = mk(NULL, "w1", 0, 1, 0);
    cr_assert_eq(load(a, "t").status, 0);
    cr_assert_eq(commit_kv(a, "t", 1, "e", 1, "x", "1", NULL), 0);
    cr_assert_eq(load(a, "t").exists, 1);
    sleep_ms(1100);
    load_res_t r = load(a, "t");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 0);
    cr_assert_eq(r.nfields, 0);
    sw_store_free(a);
}

Test(store_mem, free_completes_pending)
{
    sw_store_t *a = mk(NULL, "w1", 0, 0, 0);
    load_res_t r;
    memset(&r, 0, sizeof(r));
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_acquire_load(a, "t", on_load, &r), 0);
    sw_store_commit_t c = {.token = "t"};
    cr_assert_eq(sw_store_commit(a, &c, on_commit, &cres), 0);
    cr_assert_eq(r.done, 0);
    sw_store_free(a);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, SW_EUNAVAIL);
    cr_assert_eq(cres.done, 1);
    cr_assert_eq(cres.status, SW_EUNAVAIL);
}
