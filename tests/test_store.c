/* test_store.c — the state store against a real redis-server (through the
 * harness) and in memory. */
#include "worker/store.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
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
                           .release = release,
                           .renew = !release,
                           .refresh_ttl = 1};
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
    signal(SIGPIPE, SIG_IGN); /* as the master does (worker/store.h) */
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
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:7"), "{\"seq\":7}");
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
    long long h = cmd_int(c, "PTTL sw:{t}"), ls = cmd_int(c, "PTTL sw:{t}:lease");
    cr_assert(h > 0 && h <= 60000, "hash PTTL %lld", h);
    cr_assert(ls > 0 && ls <= 5000, "lease PTTL %lld", ls);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:1"), "e1", "the log lives in the hash");
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
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:1"), "e1");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:2"), "(nil)");
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
    /* A ring of log_max (3) fields: seq 4 and 5 overwrote 1 and 2. */
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:0"), "e3");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:1"), "e4");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _log:2"), "e5");
    cr_assert_eq(cmd_int(c, "HLEN sw:{t}"), 4, "3 log fields + _seq");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{t} _seq"), "5");
    /* The acquire never returns the log fields. */
    load_res_t r = load(a, "t");
    cr_assert_eq(r.nfields, 0);
    cr_assert_eq(r.seq, 5);
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

/* ---- Shared state: shared writes, read, presence, pub/sub ------------------------------ */

#define MAXMSG 64

typedef struct sub_rec {
    int nmsg;
    char msg[MAXMSG][64];
    size_t len[MAXMSG];
    int nresync;
} sub_rec_t;

static void rec_message(void *udata, const char *data, size_t len)
{
    sub_rec_t *r = udata;
    cr_assert_lt(r->nmsg, MAXMSG, "too many messages");
    cr_assert_leq(len, sizeof(r->msg[0]));
    memcpy(r->msg[r->nmsg], data, len);
    r->len[r->nmsg] = len;
    r->nmsg++;
}

static void rec_resync(void *udata)
{
    sub_rec_t *r = udata;
    r->nresync++;
}

/* Run the loop until *counter >= want (or WAIT_MS). */
static int wait_count(const int *counter, int want)
{
    int flag = 0;
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    uint64_t deadline = sw_now_ms() + WAIT_MS;
    while (*counter < want && sw_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    flag = *counter >= want;
    return flag;
}

static int msg_is(const sub_rec_t *r, int i, const char *s, size_t n)
{
    return i < r->nmsg && r->len[i] == n && memcmp(r->msg[i], s, n) == 0;
}

static void subscribe_ok(sw_store_t *s, const char *room, sub_rec_t *rec)
{
    cr_assert_eq(sw_store_subscribe(s, room, rec_message, rec_resync, rec), 0);
    int had = rec->nresync;
    cr_assert_eq(rec->nresync, had, "resync inside the call");
    cr_assert(wait_count(&rec->nresync, had + 1), "no resync after subscribe");
}

/* Commit on client token `tok` (field x=xval, seq) with shared writes. */
static int commit_shared(sw_store_t *s, const char *tok, uint64_t seq, const char *xval,
                         const sw_store_shared_write_t *sh, size_t nsh)
{
    sw_store_field_t f = {"x", 1, xval, strlen(xval)};
    sw_store_commit_t c = {.token = tok,
                           .seq = seq,
                           .log_entry = "L",
                           .log_len = 1,
                           .fields = &f,
                           .nfields = 1,
                           .shared = sh,
                           .nshared = nsh};
    commit_res_t r = {0};
    cr_assert_eq(sw_store_commit(s, &c, on_commit, &r), 0);
    cr_assert_eq(r.done, 0, "callback ran inside the call");
    cr_assert(wait_flag(&r.done, WAIT_MS), "no commit completion");
    return r.status;
}

typedef struct count_res {
    int done;
    int status;
    int64_t count;
} count_res_t;

static void on_count(void *udata, int status, int64_t count)
{
    count_res_t *r = udata;
    cr_assert_eq(r->done, 0, "count callback called twice");
    r->done = 1;
    r->status = status;
    r->count = count;
}

static int64_t presence(sw_store_t *s, const char *room, sw_presence_op_t op, const char *const *m,
                        size_t n, uint32_t ttl_ms)
{
    count_res_t r = {0};
    cr_assert_eq(sw_store_presence(s, room, op, m, n, ttl_ms, on_count, &r), 0);
    cr_assert_eq(r.done, 0);
    cr_assert(wait_flag(&r.done, WAIT_MS), "no presence completion");
    cr_assert_eq(r.status, 0);
    return r.count;
}

static load_res_t read_tok(sw_store_t *s, const char *token)
{
    load_res_t r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_read(s, token, on_load, &r), 0);
    cr_assert_eq(r.done, 0, "callback ran inside the call");
    cr_assert(wait_flag(&r.done, WAIT_MS), "no read completion");
    return r;
}

static const char BIN_MSG[] = {'{', '"', 'd', '\0', '\xff', '}'};

/* Shared write, CAS conflict, lease first: the same steps on either store. */
static void shared_write_cas(const char *url)
{
    sw_store_t *a = mk(url, "w1", 0, 0, 0);
    sw_store_t *b = mk(url, "w2", 0, 0, 0);
    sub_rec_t rec = {0};
    subscribe_ok(b, "room:x", &rec);
    cr_assert_eq(load(a, "c1").status, 0);
    sw_store_field_t sf = {"counter", 7, "C1", 2};
    sw_store_shared_write_t sh = {.token = "room:x",
                                  .expect_seq = 0,
                                  .fields = &sf,
                                  .nfields = 1,
                                  .message = BIN_MSG,
                                  .message_len = sizeof(BIN_MSG)};
    cr_assert_eq(commit_shared(a, "c1", 1, "1", &sh, 1), 0);
    cr_assert(wait_count(&rec.nmsg, 1), "no message");
    cr_assert(msg_is(&rec, 0, BIN_MSG, sizeof(BIN_MSG)), "message bytes differ");
    load_res_t r = read_tok(b, "room:x");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 1);
    cr_assert_eq(r.seq, 1);
    cr_assert_str_eq(field(&r, "counter"), "C1");

    /* Stale expect_seq: nothing written, no message. */
    sf.data = "C2";
    cr_assert_eq(commit_shared(a, "c1", 2, "2", &sh, 1), SW_ECONFLICT);
    r = read_tok(b, "room:x");
    cr_assert_eq(r.seq, 1);
    cr_assert_str_eq(field(&r, "counter"), "C1");
    r = read_tok(b, "c1");
    cr_assert_eq(r.seq, 1);
    cr_assert_str_eq(field(&r, "x"), "1");

    /* The right expect_seq goes through. */
    sh.expect_seq = 1;
    sh.message = "m2";
    sh.message_len = 2;
    cr_assert_eq(commit_shared(a, "c1", 2, "2", &sh, 1), 0);
    cr_assert(wait_count(&rec.nmsg, 2));
    cr_assert(msg_is(&rec, 1, "m2", 2));
    r = read_tok(b, "room:x");
    cr_assert_eq(r.seq, 2);
    cr_assert_str_eq(field(&r, "counter"), "C2");

    /* Lease first: a lease that is not ours wins over a stale seq. */
    cr_assert_eq(sw_store_release(a, "c1"), 0);
    /* the release goes out on a's connection, the acquire on b's: retry
     * until Redis has run the release */
    int got = SW_EBUSY;
    for (int i = 0; i < 100 && got == SW_EBUSY; i++) {
        got = load(b, "c1").status;
        if (got == SW_EBUSY)
            spin(10);
    }
    cr_assert_eq(got, 0);
    sh.expect_seq = 0;
    cr_assert_eq(commit_shared(a, "c1", 3, "3", &sh, 1), SW_ELEASE);
    spin(100);
    cr_assert_eq(rec.nmsg, 2, "a refused commit published");
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, shared_write_cas_and_lease_first)
{
    shared_write_cas(sw_test_redis_url(redis));
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:x} _seq"), "2");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{c1} _seq"), "2");
    cr_assert_eq(cmd_int(c, "HEXISTS sw:{c1} _log:2"), 1);
    long long h = cmd_int(c, "PTTL sw:{room:x}");
    cr_assert(h > 0 && h <= 3600000, "shared hash PTTL %lld", h);
    redisFree(c);
}

Test(store_mem, shared_write_cas_and_lease_first)
{
    shared_write_cas(NULL);
}

Test(store_redis, two_shared_writes)
{
    sw_store_t *a = mk_redis("w1");
    sw_store_t *b = mk_redis("w2");
    sub_rec_t r1 = {0}, r2 = {0};
    subscribe_ok(b, "room:1", &r1);
    subscribe_ok(b, "room:2", &r2);
    redisContext *c = sw_test_redis_connect(redis);
    freeReplyObject(cmd(c, "HSET sw:{room:2} _seq 5"));
    cr_assert_eq(load(a, "c").status, 0);
    sw_store_field_t f1 = {"chat", 4, "A", 1}, f2 = {"counter", 7, "B", 1};
    sw_store_shared_write_t sh[2] = {
        {.token = "room:1",
         .expect_seq = 0,
         .fields = &f1,
         .nfields = 1,
         .message = "one",
         .message_len = 3},
        {.token = "room:2",
         .expect_seq = 5,
         .fields = &f2,
         .nfields = 1,
         .message = "two",
         .message_len = 3},
    };
    cr_assert_eq(commit_shared(a, "c", 1, "v", sh, 2), 0);
    cr_assert(wait_count(&r1.nmsg, 1));
    cr_assert(wait_count(&r2.nmsg, 1));
    cr_assert(msg_is(&r1, 0, "one", 3));
    cr_assert(msg_is(&r2, 0, "two", 3));
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:1} chat"), "A");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:1} _seq"), "1");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:2} counter"), "B");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:2} _seq"), "6");
    /* The second one stale: neither is written. */
    sh[0].expect_seq = 1;
    cr_assert_eq(commit_shared(a, "c", 2, "w", sh, 2), SW_ECONFLICT);
    cr_assert_str_eq(cmd_str(c, "HGET sw:{room:1} _seq"), "1");
    cr_assert_str_eq(cmd_str(c, "HGET sw:{c} x"), "v");
    /* Bounds and duplicates. */
    sw_store_shared_write_t many[9];
    for (int i = 0; i < 9; i++)
        many[i] = (sw_store_shared_write_t){.token = "r"};
    sw_store_commit_t cm = {.token = "c", .shared = many, .nshared = 9};
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_commit(a, &cm, on_commit, &cres), SW_EINVAL);
    cm.nshared = 2; /* "r" twice */
    cr_assert_eq(sw_store_commit(a, &cm, on_commit, &cres), SW_EINVAL);
    sw_store_field_t bad = {"_seq", 4, "9", 1};
    sh[0].fields = &bad;
    cm = (sw_store_commit_t){.token = "c", .shared = sh, .nshared = 1};
    cr_assert_eq(sw_store_commit(a, &cm, on_commit, &cres), SW_EINVAL);
    spin(20);
    cr_assert_eq(cres.done, 0);
    redisFree(c);
    sw_store_free(a);
    sw_store_free(b);
}

/* 50 pipelined commits: messages arrive in commit order. */
static void message_order(const char *url)
{
    sw_store_t *a = mk(url, "w1", 0, 0, 0);
    sw_store_t *b = mk(url, "w2", 0, 0, 0);
    sub_rec_t rec = {0};
    subscribe_ok(b, "room:o", &rec);
    cr_assert_eq(load(a, "c").status, 0);
    commit_res_t res[50];
    char msgs[50][8];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 50; i++) {
        int n = snprintf(msgs[i], sizeof(msgs[i]), "m%d", i);
        sw_store_shared_write_t sh = {.token = "room:o",
                                      .expect_seq = (uint64_t)i,
                                      .message = msgs[i],
                                      .message_len = (size_t)n};
        sw_store_commit_t c = {.token = "c", .shared = &sh, .nshared = 1};
        cr_assert_eq(sw_store_commit(a, &c, on_commit, &res[i]), 0);
    }
    cr_assert(wait_flag(&res[49].done, WAIT_MS));
    for (int i = 0; i < 50; i++)
        cr_assert_eq(res[i].status, 0, "commit %d: %d", i, res[i].status);
    cr_assert(wait_count(&rec.nmsg, 50), "got %d messages", rec.nmsg);
    for (int i = 0; i < 50; i++)
        cr_assert(msg_is(&rec, i, msgs[i], strlen(msgs[i])), "message %d out of order", i);
    cr_assert_eq(read_tok(b, "room:o").seq, 50);
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, message_order)
{
    message_order(sw_test_redis_url(redis));
}

Test(store_mem, message_order)
{
    message_order(NULL);
}

Test(store_redis, read_without_lease)
{
    sw_store_t *a = mk_redis("w1");
    load_res_t r = read_tok(a, "nothing");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 0);
    redisContext *c = sw_test_redis_connect(redis);
    freeReplyObject(cmd(c, "HSET sw:{room:r} _seq 4 _meta M counter V"));
    r = read_tok(a, "room:r");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.exists, 1);
    cr_assert_eq(r.seq, 4);
    cr_assert_eq(r.nfields, 1);
    cr_assert_str_eq(field(&r, "counter"), "V");
    cr_assert(r.has_meta);
    cr_assert_str_eq(cmd_str(c, "GET sw:{room:r}:lease"), "(nil)");
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sw_store_read(a, "a b", on_load, &r), SW_EINVAL);
    redisFree(c);
    sw_store_free(a);
}

static const char *const M_A[] = {"ca"}, *const M_B[] = {"cb"}, *const M_AB[] = {"ca", "cb"},
                         *const M_C[] = {"cc"};

/* Presence ops, publish on change, expiry + reap from another store. */
static void presence_steps(const char *url)
{
    sw_store_t *a = mk(url, "w1", 0, 60, 0);
    sw_store_t *b = mk(url, "w2", 0, 60, 0);
    sub_rec_t rec = {0};
    subscribe_ok(b, "room:p", &rec);
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_ADD, M_AB, 2, 60000), 2);
    cr_assert(wait_count(&rec.nmsg, 1));
    cr_assert(msg_is(&rec, 0, "{\"presence\":2}", 14));
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_ADD, M_A, 1, 60000), 2);
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_REFRESH, M_AB, 2, 60000), 2);
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_REAP, NULL, 0, 60000), 2);
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_REMOVE, M_A, 1, 60000), 1);
    cr_assert(wait_count(&rec.nmsg, 2));
    cr_assert(msg_is(&rec, 1, "{\"presence\":1}", 14), "unchanged counts were published");
    /* REFRESH never re-adds a removed member. */
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_REFRESH, M_A, 1, 60000), 1);
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_UNLINK, M_B, 1, 60000), 0);
    cr_assert(wait_count(&rec.nmsg, 3));
    cr_assert(msg_is(&rec, 2, "{\"presence\":0}", 14));
    /* Expiry: ttl 200 ms, reaped by the other store. */
    cr_assert_eq(presence(a, "room:p", SW_PRESENCE_ADD, M_C, 1, 200), 1);
    cr_assert(wait_count(&rec.nmsg, 4));
    cr_assert(msg_is(&rec, 3, "{\"presence\":1}", 14));
    sleep_ms(300);
    cr_assert_eq(presence(b, "room:p", SW_PRESENCE_REAP, NULL, 0, 60000), 0);
    cr_assert(wait_count(&rec.nmsg, 5));
    cr_assert(msg_is(&rec, 4, "{\"presence\":0}", 14));
    spin(50);
    cr_assert_eq(rec.nmsg, 5);
    cr_assert_eq(sw_store_presence(a, "room:p", SW_PRESENCE_ADD, M_A, 1, 1000, NULL, NULL), 0);
    cr_assert_eq(sw_store_presence(a, "room:p", 99, M_A, 1, 1000, NULL, NULL), SW_EINVAL);
    cr_assert_eq(sw_store_presence(a, "room:p", SW_PRESENCE_ADD, M_A, 1, 0, NULL, NULL), SW_EINVAL);
    cr_assert(wait_count(&rec.nmsg, 6));
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, presence)
{
    presence_steps(sw_test_redis_url(redis));
    redisContext *c = sw_test_redis_connect(redis);
    cr_assert_eq(cmd_int(c, "SISMEMBER sw:{room:p}:members ca"), 1);
    cr_assert_eq(cmd_int(c, "SISMEMBER sw:{room:p}:members cb"), 0);
    cr_assert_eq(cmd_int(c, "SISMEMBER sw:{room:p}:members cc"), 1);
    cr_assert_eq(cmd_int(c, "ZCARD sw:{room:p}:presence"), 1);
    long long p = cmd_int(c, "PTTL sw:{room:p}:presence"),
              m = cmd_int(c, "PTTL sw:{room:p}:members");
    cr_assert(p > 0 && p <= 60000, "presence PTTL %lld", p);
    cr_assert(m > 0 && m <= 60000, "members PTTL %lld", m);
    redisFree(c);
}

Test(store_mem, presence)
{
    presence_steps(NULL);
}

static void unsubscribe_steps(const char *url)
{
    sw_store_t *a = mk(url, "w1", 0, 0, 0);
    sw_store_t *b = mk(url, "w2", 0, 0, 0);
    sub_rec_t rec = {0}, rec2 = {0};
    subscribe_ok(b, "room:u", &rec);
    cr_assert_eq(sw_store_subscribe(b, "room:u", rec_message, rec_resync, &rec), SW_EBUSY);
    cr_assert_eq(load(a, "c").status, 0);
    sw_store_shared_write_t sh = {.token = "room:u", .message = "m0", .message_len = 2};
    cr_assert_eq(commit_shared(a, "c", 0, "x", &sh, 1), 0);
    cr_assert(wait_count(&rec.nmsg, 1));
    /* Published before the unsubscribe, delivered after: dropped. */
    sh.expect_seq = 1;
    sw_store_commit_t cm = {.token = "c", .shared = &sh, .nshared = 1};
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_commit(a, &cm, on_commit, &cres), 0);
    cr_assert_eq(sw_store_unsubscribe(b, "room:u"), 0);
    cr_assert(wait_flag(&cres.done, WAIT_MS));
    cr_assert_eq(cres.status, 0);
    cr_assert_eq(sw_store_unsubscribe(b, "room:u"), SW_ENOTFOUND);
    sh.expect_seq = 2;
    cr_assert_eq(commit_shared(a, "c", 0, "x", &sh, 1), 0);
    spin(200);
    cr_assert_eq(rec.nmsg, 1, "delivered after unsubscribe");
    /* Subscribe again at once (its UNSUBSCRIBE may still be unconfirmed). */
    cr_assert_eq(sw_store_unsubscribe(b, "room:u"), SW_ENOTFOUND);
    subscribe_ok(b, "room:u", &rec2);
    cr_assert_eq(sw_store_unsubscribe(b, "room:u"), 0);
    cr_assert_eq(sw_store_subscribe(b, "room:u", rec_message, rec_resync, &rec2), 0);
    cr_assert(wait_count(&rec2.nresync, 2));
    sh.expect_seq = 3;
    sh.message = "m3";
    cr_assert_eq(commit_shared(a, "c", 0, "x", &sh, 1), 0);
    cr_assert(wait_count(&rec2.nmsg, 1));
    cr_assert(msg_is(&rec2, 0, "m3", 2));
    spin(100);
    cr_assert_eq(rec2.nmsg, 1);
    cr_assert_eq(rec.nmsg, 1);
    sw_store_free(a);
    sw_store_free(b); /* tears the subscription down without callbacks */
}

Test(store_redis, unsubscribe_stops_delivery)
{
    unsubscribe_steps(sw_test_redis_url(redis));
}

Test(store_mem, unsubscribe_stops_delivery)
{
    unsubscribe_steps(NULL);
}

Test(store_redis, resync_after_restart, .timeout = 30)
{
    sw_store_t *a = mk_redis("w1");
    sw_store_t *b = mk_redis("w2");
    sub_rec_t rec = {0};
    subscribe_ok(b, "room:z", &rec);
    cr_assert_eq(rec.nresync, 1);
    cr_assert_eq(sw_test_redis_restart(redis), 0);
    cr_assert(wait_count(&rec.nresync, 2), "no resync after the restart");
    wait_ready(a);
    cr_assert_eq(load(a, "c").status, 0);
    sw_store_shared_write_t sh = {.token = "room:z", .message = "after", .message_len = 5};
    cr_assert_eq(commit_shared(a, "c", 1, "x", &sh, 1), 0);
    cr_assert(wait_count(&rec.nmsg, 1));
    cr_assert(msg_is(&rec, 0, "after", 5));
    cr_assert_eq(rec.nresync, 2);
    sw_store_free(a);
    sw_store_free(b);
}

/* ---- the signing secret and acknowledged publishes --------------------------------- */

typedef struct value_res {
    int done;
    int status;
    char value[300];
} value_res_t;

static void on_value(void *udata, int status, const char *value, size_t len)
{
    value_res_t *v = udata;
    cr_assert_eq(v->done, 0, "value callback called twice");
    v->done = 1;
    v->status = status;
    snprintf(v->value, sizeof(v->value), "%.*s", (int)len, value);
}

/* The first proposal wins for every store of the deployment; an
 * acknowledged publish says how many subscribers got it. */
static void secret_and_receivers(const char *url)
{
    sw_store_t *a = mk(url, "w1", 0, 0, 0);
    sw_store_t *b = mk(url, "w2", 0, 0, 0);
    cr_assert_eq(sw_store_secret(a, "", 0, on_value, NULL), SW_EINVAL);
    value_res_t va = {0}, vb = {0};
    cr_assert_eq(sw_store_secret(a, "first-proposal", 14, on_value, &va), 0);
    cr_assert(wait_flag(&va.done, WAIT_MS));
    cr_assert_eq(sw_store_secret(b, "second-proposal", 15, on_value, &vb), 0);
    cr_assert(wait_flag(&vb.done, WAIT_MS));
    cr_assert_eq(va.status, 0);
    cr_assert_eq(vb.status, 0);
    cr_assert_str_eq(va.value, "first-proposal");
    cr_assert_str_eq(vb.value, "first-proposal", "the second store adopts the first key");

    count_res_t none = {0}, one = {0};
    cr_assert_eq(sw_store_publish_acked(a, "inbox:nobody", "x", 1, on_count, &none), 0);
    cr_assert(wait_flag(&none.done, WAIT_MS));
    cr_assert_eq(none.status, 0);
    cr_assert_eq(none.count, 0, "nobody subscribes");
    sub_rec_t rec = {0};
    subscribe_ok(b, "inbox:w2", &rec);
    cr_assert_eq(sw_store_publish_acked(a, "inbox:w2", "hi", 2, on_count, &one), 0);
    cr_assert(wait_flag(&one.done, WAIT_MS));
    cr_assert_eq(one.status, 0);
    cr_assert_eq(one.count, 1);
    cr_assert(wait_count(&rec.nmsg, 1));
    sw_store_free(a);
    sw_store_free(b);
}

Test(store_redis, secret_and_publish_receivers)
{
    secret_and_receivers(sw_test_redis_url(redis));
}

Test(store_mem, secret_and_publish_receivers)
{
    secret_and_receivers(NULL);
}
