/* test_pipeline.c — the token pipeline (worker/token.h) inside one process:
 * worker contexts (worker/wctx.h) on one loop, fake peers that record every
 * message with its metadata (worker/peer.h), a test app, and the in-memory
 * store or a real redis-server (each case runs against both, as in
 * test_store.c). Cases: hello, resume (replay log, up to date, refused),
 * duplicate tab, lease lost and retried, lease held elsewhere (give up),
 * compare-and-set conflict and rerun, group fan-out, chained events, yield
 * (handler steps, task sleeps), failures undoing the step. Only the
 * pipeline's contract is used, never its private header. */
#include "worker/token.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <ev.h>

#include "common/buf.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "core/config.h"
#include "core/stats.h"
#include "tests/support/redis_harness.h"
#include "worker/shared.h"
#include "worker/store.h"
#include "worker/wctx.h"

#include <statewire.h>

#define WAIT_MS 2000 /* every wait fails the test after this long */
#define MAXM 64      /* messages one fake peer records */
#define MAXW 4       /* worker contexts per test */
#define MAXP 16      /* fake peers per test */

static struct ev_loop *loop;
static sw_test_redis_t *redis;
static const char *url; /* NULL: the in-memory store */
static sw_config_t cfg;
static sw_appdef_t *app;
static sw_stats_t *stats;
static sw_worker_t *workers[MAXW];
static size_t nworkers;

/* ---- The test app ---------------------------------------------------------------- */

static unsigned calls_inc, calls_room_inc; /* handler calls, reruns included */

/* a.inc {"by": N}: x += N (1 by default). */
static int h_inc(sw_ctx_t *ctx, json_t *p)
{
    calls_inc++;
    json_t *by = json_object_get(p, "by");
    json_int_t n = json_is_integer(by) ? json_integer_value(by) : 1;
    return sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + n));
}

/* a.chain: y += 1, then a.inc {"by": 5} runs right after, on the server. */
static int h_chain(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "y", json_integer(sw_ctx_get_int(ctx, "a", "y") + 1));
    if (sw_ctx_chain(ctx, "a.inc", json_pack("{s:i}", "by", 5)) != 0)
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "chain refused");
    return SW_DONE;
}

/* a.steps: step 0 x += 1 and yields; step 1 x += 10. */
static int h_steps(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    unsigned step = sw_ctx_step(ctx);
    sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + (step ? 10 : 1)));
    return step ? SW_DONE : SW_YIELD;
}

/* a.fail: changes vars, chains, adds an action, then fails. */
static int h_fail(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(100));
    sw_ctx_set(ctx, "a", "y", json_integer(100));
    sw_ctx_chain(ctx, "a.inc", NULL);
    sw_ctx_action(ctx, "_toast", NULL);
    return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "no %d", 7);
}

/* a.steps_fail: step 0 x += 1 and yields (committed); step 1 sets x and
 * fails (undone). */
static int h_steps_fail(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    if (sw_ctx_step(ctx) == 0) {
        sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + 1));
        return SW_YIELD;
    }
    sw_ctx_set(ctx, "a", "x", json_integer(999));
    return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "late");
}

/* Task a.tick: three steps 30 ms apart, x += 1 each. */
#define TICK_SLEEP_MS 30
static int t_tick(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + 1));
    if (sw_ctx_step(ctx) < 2) {
        sw_ctx_sleep(ctx, TICK_SLEEP_MS);
        return SW_YIELD;
    }
    return SW_DONE;
}

/* room.join {"room": R}: link the shared state "room" to R. */
static int h_join(sw_ctx_t *ctx, json_t *p)
{
    const char *r = json_string_value(json_object_get(p, "room"));
    if (!r || sw_ctx_link(ctx, "room", r) != 0)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "bad room");
    return SW_DONE;
}

/* room.inc: n += 1 in whatever copy "room" is linked to. */
static int h_room_inc(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    calls_room_inc++;
    return sw_ctx_set(ctx, "room", "n", json_integer(sw_ctx_get_int(ctx, "room", "n") + 1));
}

static int app_init(sw_app_t *a)
{
    int rc = sw_app_name(a, "pipetest");
    rc |= sw_app_state(a, "a", 0);
    rc |= sw_app_var(a, "a", "x", "0", 0);
    rc |= sw_app_var(a, "a", "y", "0", 0);
    rc |= sw_app_handler(a, "a", "inc", h_inc);
    rc |= sw_app_handler(a, "a", "chain", h_chain);
    rc |= sw_app_handler(a, "a", "steps", h_steps);
    rc |= sw_app_handler(a, "a", "fail", h_fail);
    rc |= sw_app_handler(a, "a", "steps_fail", h_steps_fail);
    rc |= sw_app_task(a, "a", "tick", t_tick);
    rc |= sw_app_state(a, "room", SW_STATE_SHARED);
    rc |= sw_app_var(a, "room", "n", "0", 0);
    rc |= sw_app_handler(a, "room", "join", h_join);
    rc |= sw_app_handler(a, "room", "inc", h_room_inc);
    return rc ? -1 : 0;
}

/* ---- Fake peers ------------------------------------------------------------------ */

typedef struct rec {
    sw_out_t out;
    json_t *j;        /* the message, parsed */
    int iovcnt;       /* pieces it was sent in */
    const void *tail; /* iov[1].iov_base of a two-piece message (compared, never read) */
    uint64_t at_ms;   /* when it was sent */
} rec_t;

typedef struct fpeer {
    sw_peer_t peer; /* first member */
    rec_t m[MAXM];
    size_t n;
    unsigned nwelcomed; /* ops->welcomed calls */
    unsigned nclosed;   /* ops->close calls */
    uint16_t close_code;
} fpeer_t;

static fpeer_t *peers[MAXP];
static size_t npeers;

static int fp_send(sw_peer_t *p, const sw_out_t *out, const struct iovec *iov, int iovcnt)
{
    fpeer_t *f = (fpeer_t *)p;
    cr_assert_lt(f->n, MAXM, "fake peer: too many messages");
    cr_assert(iovcnt >= 1 && iovcnt <= 2, "fake peer: %d pieces", iovcnt);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    (void)sw_buf_appendv(&b, iov, iovcnt);
    json_error_t err;
    json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, &err);
    cr_assert_not_null(j, "fake peer: not JSON (%s): %.*s", err.text, (int)b.len, b.data);
    sw_buf_destroy(&b);
    /* the metadata says what the JSON says */
    static const char *const TYPE[] = {
        [SW_OUT_WELCOME] = "welcome", [SW_OUT_DELTA] = "delta", [SW_OUT_ERROR] = "error"};
    cr_assert(out->kind >= SW_OUT_WELCOME && out->kind <= SW_OUT_ERROR);
    cr_assert_str_eq(json_string_value(json_object_get(j, "type")), TYPE[out->kind]);
    if (out->kind == SW_OUT_DELTA)
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(j, "seq")), out->seq);
    if (out->kind == SW_OUT_ERROR)
        cr_assert_eq(sw_errc_parse(json_string_value(json_object_get(j, "code"))), out->code);
    f->m[f->n++] = (rec_t){.out = *out,
                           .j = j,
                           .iovcnt = iovcnt,
                           .tail = iovcnt == 2 ? iov[1].iov_base : NULL,
                           .at_ms = sw_now_ms()};
    return 0;
}

static void fp_close(sw_peer_t *p, uint16_t code, const char *reason)
{
    (void)reason;
    fpeer_t *f = (fpeer_t *)p;
    f->nclosed++;
    f->close_code = code;
}

static void fp_welcomed(sw_peer_t *p)
{
    ((fpeer_t *)p)->nwelcomed++;
}

static const sw_peer_ops_t FAKE_PEER = {
    .send = fp_send,
    .close = fp_close,
    .welcomed = fp_welcomed,
};

/* A peer of worker w: socket id "<holder>.<n>", its own credentials. */
static fpeer_t *fp_new(sw_worker_t *w)
{
    cr_assert_lt(npeers, MAXP);
    fpeer_t *f = sw_xcalloc(1, sizeof(*f));
    f->peer.ops = &FAKE_PEER;
    snprintf(f->peer.sockid, sizeof(f->peer.sockid), "%s.%zu", w->holder_id, npeers + 1);
    snprintf(f->peer.conn_id, sizeof(f->peer.conn_id), "cid%zu", npeers + 1);
    snprintf(f->peer.conn_token, sizeof(f->peer.conn_token), "ctok%zu-secret", npeers + 1);
    peers[npeers++] = f;
    return f;
}

/* The client goes away (the transport closes, then detaches). */
static void fp_gone(fpeer_t *f)
{
    sw_peer_close(&f->peer, 1000, "bye");
    if (f->peer.tok)
        sw_token_detach(f->peer.tok, &f->peer);
}

static void fp_forget(fpeer_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->m[i].j);
    f->n = 0;
}

/* HELLO for `token` on worker w; resume: {"conn_id","conn_token","last_seq"}
 * (stolen) or NULL. */
static void hello(sw_worker_t *w, fpeer_t *f, const char *token, json_t *resume)
{
    sw_token_t *t = sw_token_get(w, token);
    sw_token_attach(t, &f->peer);
    sw_resume_t r = {0};
    if (resume) {
        snprintf(r.conn_id, sizeof(r.conn_id), "%s",
                 json_string_value(json_object_get(resume, "conn_id")));
        snprintf(r.conn_token, sizeof(r.conn_token), "%s",
                 json_string_value(json_object_get(resume, "conn_token")));
        r.last_seq = (uint64_t)json_integer_value(json_object_get(resume, "last_seq"));
        json_decref(resume);
    }
    sw_token_enqueue(t, sw_event_new_hello(&f->peer, resume ? &r : NULL));
}

/* A client event (payload stolen; NULL: {}). "hydrate" is the hydrate. */
static void send_ev(fpeer_t *f, int64_t id, const char *name, json_t *payload)
{
    cr_assert_not_null(f->peer.tok, "event before hello");
    sw_event_src_t kind = strcmp(name, "hydrate") == 0 ? SW_EV_HYDRATE : SW_EV_CLIENT;
    sw_token_enqueue(f->peer.tok, sw_event_new(kind, id, &f->peer, name, payload, NULL));
}

/* ---- Running the loop ------------------------------------------------------------ */

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l, (void)w, (void)revents;
}

typedef int (*pred_fn)(void *arg);

/* Run the loop until pred(arg) holds; fails the test after WAIT_MS. */
static void run_until(pred_fn pred, void *arg, const char *what)
{
    ev_timer tick; /* the loop never blocks longer than this */
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    uint64_t deadline = sw_now_ms() + WAIT_MS;
    int ok;
    while (!(ok = pred(arg)) && sw_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    cr_assert(ok, "timed out after %d ms waiting for %s", WAIT_MS, what);
}

/* Run the loop for `ms` (to see that nothing more arrives). */
static void settle(int ms)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    uint64_t end = sw_now_ms() + (uint64_t)ms;
    while (sw_now_ms() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

typedef struct want {
    fpeer_t *f;
    size_t n;
} want_t;

static int has_n(void *arg)
{
    want_t *w = arg;
    return w->f->n >= w->n;
}

/* Wait until f has recorded n messages in all. */
static void wait_msgs(fpeer_t *f, size_t n)
{
    want_t w = {f, n};
    char what[64];
    snprintf(what, sizeof(what), "%zu messages (have %zu)", n, f->n);
    run_until(has_n, &w, what);
}

/* ---- Assertions on messages ------------------------------------------------------ */

static const json_t *msg(const fpeer_t *f, size_t i)
{
    cr_assert_lt(i, f->n, "message %zu missing (have %zu)", i, f->n);
    return f->m[i].j;
}

/* Message i is a welcome for `token` (NULL: any), resumed or not, at seq. */
static void expect_welcome(const fpeer_t *f, size_t i, const char *token, int resumed, uint64_t seq)
{
    const json_t *m = msg(f, i);
    cr_assert_eq(f->m[i].out.kind, SW_OUT_WELCOME, "message %zu is not a welcome", i);
    if (token)
        cr_assert_str_eq(json_string_value(json_object_get(m, "token")), token);
    cr_assert_str_eq(json_string_value(json_object_get(m, "conn_id")), f->peer.conn_id);
    cr_assert_str_eq(json_string_value(json_object_get(m, "conn_token")), f->peer.conn_token);
    cr_assert_eq(json_is_true(json_object_get(m, "resumed")), resumed);
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(m, "seq")), seq);
}

/* Message i is a delta at seq with id (< 0: none), exactly `delta`
 * (JSON text), full or not. */
static void expect_delta(const fpeer_t *f, size_t i, uint64_t seq, int64_t id, const char *delta,
                         int full)
{
    const json_t *m = msg(f, i);
    char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_eq(f->m[i].out.kind, SW_OUT_DELTA, "message %zu is not a delta: %s", i, text);
    cr_assert_eq(f->m[i].out.seq, seq, "message %zu: seq %llu, want %llu: %s", i,
                 (unsigned long long)f->m[i].out.seq, (unsigned long long)seq, text);
    json_t *jid = json_object_get(m, "id");
    if (id < 0)
        cr_assert_null(jid, "message %zu has an id: %s", i, text);
    else
        cr_assert(json_is_integer(jid) && json_integer_value(jid) == id,
                  "message %zu: want id %lld: %s", i, (long long)id, text);
    json_t *want = json_loads(delta, 0, NULL);
    cr_assert_not_null(want, "bad expected delta %s", delta);
    cr_assert(json_equal(json_object_get(m, "delta"), want), "message %zu: want delta %s: %s", i,
              delta, text);
    json_decref(want);
    cr_assert_eq(json_is_true(json_object_get(m, "full")), full, "message %zu: full: %s", i, text);
    cr_assert_null(json_object_get(m, "events"), "message %zu: events: %s", i, text);
    free(text);
}

/* Message i is an error answering id (< 0: none) with code. */
static void expect_error(const fpeer_t *f, size_t i, int64_t id, sw_errc_t code,
                         const char *message)
{
    const json_t *m = msg(f, i);
    char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_eq(f->m[i].out.kind, SW_OUT_ERROR, "message %zu is not an error: %s", i, text);
    cr_assert_eq(f->m[i].out.code, code, "message %zu: %s", i, text);
    json_t *jid = json_object_get(m, "id");
    if (id < 0)
        cr_assert_null(jid, "message %zu has an id: %s", i, text);
    else
        cr_assert(json_integer_value(jid) == id, "message %zu: want id %lld: %s", i, (long long)id,
                  text);
    if (message)
        cr_assert_str_eq(json_string_value(json_object_get(m, "message")), message);
    free(text);
}

/* ---- Worker contexts and stores -------------------------------------------------- */

static const sw_wctx_steps_t STEPS = {
    .run_resumes = sw_token_run_resumes,
    .run_catchups = sw_token_run_catchups,
    .gc = sw_token_gc,
};

/* A store for `holder` whose leases last lease_ms (0: cfg.lease_ms). */
static sw_store_t *store_new(const char *holder, uint32_t lease_ms)
{
    sw_store_opts_t o = {.redis_url = url,
                         .holder_id = holder,
                         .token_ttl_s = cfg.token_ttl_s,
                         .lease_ms = lease_ms ? lease_ms : cfg.lease_ms,
                         .log_max = 256};
    sw_store_t *s = sw_store_new(loop, &o);
    cr_assert_not_null(s);
    return s;
}

/* A worker context as worker.c sets it up, without sockets or signals;
 * its store's leases last store_lease_ms (0: cfg.lease_ms, as in the
 * server). */
static sw_worker_t *worker_new_lease(const char *holder, uint32_t store_lease_ms)
{
    cr_assert_lt(nworkers, MAXW);
    sw_worker_t *w = sw_xcalloc(1, sizeof(*w));
    sw_wctx_init(w, loop, &cfg, app, &STEPS);
    w->slot = (int)nworkers;
    w->stats = &stats->slot[nworkers];
    w->stats_all = stats;
    snprintf(w->holder_id, sizeof(w->holder_id), "%s", holder);
    sw_token_init(w);
    sw_conn_env_init(&w->conns);
    w->conns.loop = loop;
    w->store = store_new(w->holder_id, store_lease_ms);
    workers[nworkers++] = w;
    return w;
}

static sw_worker_t *worker_new(const char *holder)
{
    return worker_new_lease(holder, 0);
}

static void worker_free(sw_worker_t *w)
{
    sw_token_free_all(w);
    sw_wctx_destroy(w);
    sw_store_free(w->store);
    sw_conn_env_destroy(&w->conns);
    free(w);
}

typedef struct load_res {
    int done, status, exists;
    uint64_t seq;
    json_t *states; /* {field: decoded msgpack} of state fields */
} load_res_t;

static void on_load(void *udata, const sw_store_loaded_t *res)
{
    load_res_t *r = udata;
    r->done = 1;
    r->status = res->status;
    r->exists = res->exists;
    r->seq = res->seq;
    r->states = json_object();
    for (size_t i = 0; i < res->nfields; i++) {
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)res->fields[i].name_len, res->fields[i].name);
        int err = 0;
        json_t *v = sw_mpjson_decode(res->fields[i].data, res->fields[i].len, &err);
        if (v)
            json_object_set_new(r->states, name, v);
    }
}

static int load_done(void *arg)
{
    return ((load_res_t *)arg)->done;
}

/* Read a token as the store has it: with its lease (acquire), or without
 * (a shared token). */
static load_res_t store_load(sw_store_t *s, const char *token, int acquire)
{
    load_res_t r = {0};
    int rc = acquire ? sw_store_acquire_load(s, token, on_load, &r)
                     : sw_store_read(s, token, on_load, &r);
    cr_assert_eq(rc, 0);
    run_until(load_done, &r, "a store read");
    return r;
}

/* The stored vars of `state` in `token` equal `want` (JSON text). */
static void expect_stored(sw_store_t *s, const char *token, const char *state, const char *want)
{
    load_res_t r = store_load(s, token, 0);
    cr_assert_eq(r.status, 0);
    json_t *w = json_loads(want, 0, NULL);
    char *have = json_dumps(json_object_get(r.states, state), JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert(json_equal(json_object_get(r.states, state), w), "stored %s.%s = %s, want %s", token,
              state, have ? have : "(none)", want);
    free(have);
    json_decref(w);
    json_decref(r.states);
}

typedef struct commit_res {
    int done, status;
} commit_res_t;

static void on_commit(void *udata, int status)
{
    commit_res_t *c = udata;
    c->done = 1;
    c->status = status;
}

static int commit_done(void *arg)
{
    return ((commit_res_t *)arg)->done;
}

/* ---- Setup ------------------------------------------------------------------------ */

static void setup_common(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = ev_default_loop(0);
    sw_config_defaults(&cfg);
    cfg.max_events_per_s = 0;
    app = sw_appdef_new(app_init);
    cr_assert_not_null(app);
    stats = sw_stats_new(MAXW);
    cr_assert_not_null(stats);
    calls_inc = calls_room_inc = 0;
}

static void setup_mem(void)
{
    setup_common();
    url = NULL;
}

static void setup_redis(void)
{
    setup_common();
    redis = sw_test_redis_start(0);
    cr_assert_not_null(redis);
    url = sw_test_redis_url(redis);
}

static void teardown(void)
{
    for (size_t i = 0; i < nworkers; i++)
        worker_free(workers[i]); /* clears the peers' tokens */
    nworkers = 0;
    for (size_t i = 0; i < npeers; i++) {
        fp_forget(peers[i]);
        free(peers[i]);
    }
    npeers = 0;
    sw_appdef_free(app);
    sw_stats_free(stats);
    sw_test_redis_stop(redis);
    redis = NULL;
}

/* One body, both stores (the convention of test_store.c). */
#define BOTH(name)                                                                                 \
    static void case_##name(void);                                                                 \
    Test(pipeline_mem, name, .init = setup_mem, .fini = teardown)                                  \
    {                                                                                              \
        case_##name();                                                                             \
    }                                                                                              \
    Test(pipeline_redis, name, .init = setup_redis, .fini = teardown)                              \
    {                                                                                              \
        case_##name();                                                                             \
    }                                                                                              \
    static void case_##name(void)

TestSuite(pipeline_mem, .timeout = 20);
TestSuite(pipeline_redis, .timeout = 20);

/* A client on `token` welcomed (fresh) and hydrated: 2 messages, seq 0
 * (a hydrate is no delta of the token's stream). */
static fpeer_t *client(sw_worker_t *w, const char *token)
{
    fpeer_t *f = fp_new(w);
    hello(w, f, token, NULL);
    send_ev(f, 1, "hydrate", NULL);
    wait_msgs(f, 2);
    expect_welcome(f, 0, token, 0, 0);
    expect_delta(f, 1, 0, 1, "{\"a\":{\"x\":0,\"y\":0},\"room\":{\"n\":0}}", 1);
    return f;
}

/* ---- hello ------------------------------------------------------------------------ */

BOTH(hello)
{
    sw_worker_t *w = worker_new("wk1-hello");
    fpeer_t *f = fp_new(w);
    hello(w, f, "tokhello", NULL);
    wait_msgs(f, 1);
    expect_welcome(f, 0, "tokhello", 0, 0);
    cr_assert_eq(f->nwelcomed, 1);
    cr_assert(f->peer.welcomed);
    cr_assert_str_eq(sw_token_name(f->peer.tok), "tokhello");

    send_ev(f, 1, "hydrate", NULL);
    send_ev(f, 2, "a.inc", NULL);
    send_ev(f, 3, "a.inc", json_pack("{s:i}", "by", 0)); /* changes nothing */
    send_ev(f, 4, "no.such_event", NULL);
    wait_msgs(f, 5);
    settle(30);
    cr_assert_eq(f->n, 5);
    expect_delta(f, 1, 0, 1, "{\"a\":{\"x\":0,\"y\":0},\"room\":{\"n\":0}}", 1);
    expect_delta(f, 2, 1, 2, "{\"a\":{\"x\":1}}", 0);
    expect_delta(f, 3, 1, 3, "{}", 0); /* an empty answer at the current seq */
    expect_error(f, 4, 4, SW_ERRC_UNKNOWN_EVENT, NULL);
    cr_assert(f->peer.hydrated);
    cr_assert_eq(f->peer.client_seq, 1);
    cr_assert(sw_token_idle(f->peer.tok));
    cr_assert_eq(calls_inc, 2);
    expect_stored(w->store, "tokhello", "a", "{\"x\":1,\"y\":0}");
}

/* ---- resume ----------------------------------------------------------------------- */

BOTH(resume)
{
    sw_worker_t *w = worker_new("wk1-resume");
    fpeer_t *p1 = client(w, "tokres");
    send_ev(p1, 2, "a.inc", NULL);
    send_ev(p1, 3, "a.inc", NULL);
    wait_msgs(p1, 4);
    expect_delta(p1, 3, 2, 3, "{\"a\":{\"x\":2}}", 0);
    fp_gone(p1);

    /* The same connection comes back holding seq 0: the welcome says so,
     * with its old credentials, then the deltas it missed from the
     * replay log, as they were logged (no id). */
    fpeer_t *p2 = fp_new(w);
    snprintf(p2->peer.conn_id, sizeof(p2->peer.conn_id), "%s", "other-id");
    json_t *resume = json_pack("{s:s,s:s,s:i}", "conn_id", p1->peer.conn_id, "conn_token",
                               p1->peer.conn_token, "last_seq", 0);
    hello(w, p2, "tokres", resume);
    wait_msgs(p2, 3);
    settle(30);
    cr_assert_eq(p2->n, 3);
    cr_assert_str_eq(p2->peer.conn_id, p1->peer.conn_id); /* a WebSocket keeps them */
    cr_assert_str_eq(p2->peer.conn_token, p1->peer.conn_token);
    expect_welcome(p2, 0, "tokres", 1, 2);
    expect_delta(p2, 1, 1, -1, "{\"a\":{\"x\":1}}", 0);
    expect_delta(p2, 2, 2, -1, "{\"a\":{\"x\":2}}", 0);
    cr_assert_eq(p2->peer.client_seq, 2);
    cr_assert(p2->peer.hydrated);
    send_ev(p2, 4, "a.inc", NULL);
    wait_msgs(p2, 4);
    expect_delta(p2, 3, 3, 4, "{\"a\":{\"x\":3}}", 0);

    /* Up to date already: the welcome alone. */
    fp_gone(p2);
    fpeer_t *p3 = fp_new(w);
    strcpy(p3->peer.conn_id, p1->peer.conn_id);
    strcpy(p3->peer.conn_token, p1->peer.conn_token);
    hello(w, p3, "tokres",
          json_pack("{s:s,s:s,s:i}", "conn_id", p1->peer.conn_id, "conn_token", p1->peer.conn_token,
                    "last_seq", 3));
    wait_msgs(p3, 1);
    settle(30);
    cr_assert_eq(p3->n, 1);
    expect_welcome(p3, 0, "tokres", 1, 3);
    cr_assert(p3->peer.hydrated);

    /* Wrong credentials: bad_resume, then a fresh welcome on the same
     * token (nobody else is connected) with the new connection's own. */
    fp_gone(p3);
    fpeer_t *p4 = fp_new(w);
    hello(w, p4, "tokres",
          json_pack("{s:s,s:s,s:i}", "conn_id", p1->peer.conn_id, "conn_token", "not-the-token",
                    "last_seq", 1));
    wait_msgs(p4, 2);
    settle(30);
    cr_assert_eq(p4->n, 2);
    expect_error(p4, 0, -1, SW_ERRC_BAD_RESUME, NULL);
    expect_welcome(p4, 1, "tokres", 0, 3);
    cr_assert_str_neq(p4->peer.conn_id, p1->peer.conn_id);
    cr_assert_not(p4->peer.hydrated);
}

/* ---- duplicate tab ---------------------------------------------------------------- */

BOTH(duplicate_tab)
{
    sw_worker_t *w = worker_new("wk1-dup");
    fpeer_t *p1 = client(w, "tokdup");
    send_ev(p1, 2, "a.inc", NULL);
    wait_msgs(p1, 3);

    /* A second live connection with the same token and no credentials
     * gets a token of its own, with its own state. */
    fpeer_t *p2 = fp_new(w);
    hello(w, p2, "tokdup", NULL);
    wait_msgs(p2, 1);
    const char *tok2 = json_string_value(json_object_get(msg(p2, 0), "token"));
    cr_assert_not_null(tok2);
    cr_assert_str_neq(tok2, "tokdup");
    cr_assert_eq(strlen(tok2), 32);
    expect_welcome(p2, 0, tok2, 0, 0);
    cr_assert_neq(p2->peer.tok, p1->peer.tok);
    cr_assert_str_eq(sw_token_name(p2->peer.tok), tok2);
    cr_assert_eq(p2->nwelcomed, 1);
    send_ev(p2, 1, "hydrate", NULL);
    send_ev(p2, 2, "a.inc", json_pack("{s:i}", "by", 7));
    wait_msgs(p2, 3);
    expect_delta(p2, 1, 0, 1, "{\"a\":{\"x\":0,\"y\":0},\"room\":{\"n\":0}}", 1);
    expect_delta(p2, 2, 1, 2, "{\"a\":{\"x\":7}}", 0);

    /* The first tab saw none of it, and its token is untouched. */
    settle(30);
    cr_assert_eq(p1->n, 3);
    cr_assert_eq(p1->nclosed, 0);
    expect_stored(w->store, "tokdup", "a", "{\"x\":1,\"y\":0}");
    expect_stored(w->store, tok2, "a", "{\"x\":7,\"y\":0}");
}

/* ---- lease lost and retried ------------------------------------------------------- */

BOTH(lease_lost_retried)
{
    /* The store's leases of this worker last 200 ms, while the worker
     * counts on cfg.lease_ms: its lease runs out without its knowing (a
     * worker stalled, a clock jump). */
    sw_worker_t *w = worker_new_lease("wk1-lease", 200);
    fpeer_t *p = client(w, "toklease");
    send_ev(p, 2, "a.inc", NULL);
    wait_msgs(p, 3);
    expect_delta(p, 2, 1, 2, "{\"a\":{\"x\":1}}", 0);
    cr_assert_eq(sw_token_leases_held(w), 1, "the worker keeps its lease between events");

    /* Once it has expired, another holder takes the lease and holds it. */
    settle(300);
    sw_store_t *other = store_new("thief-1", 0);
    load_res_t r = store_load(other, "toklease", 1);
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.seq, 1);
    json_decref(r.states);

    /* The event runs on the cached state, its commit is refused (lease
     * lost), it is retried from a fresh load, which finds the lease held
     * elsewhere and backs off meanwhile. */
    unsigned before = calls_inc;
    uint64_t lost = atomic_load(&w->stats->commit_lease_lost);
    send_ev(p, 3, "a.inc", NULL);
    settle(80);
    cr_assert_eq(p->n, 3, "nothing is answered while the lease is held elsewhere");
    cr_assert_eq(calls_inc, before + 1);
    cr_assert_eq(atomic_load(&w->stats->commit_lease_lost), lost + 1);

    /* The other holder writes x = 50 at seq 2 and lets go. */
    json_t *a = json_pack("{s:i,s:i}", "x", 50, "y", 0);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_mpjson_encode(a, &b), 0);
    json_decref(a);
    sw_store_field_t fld = {"a", 1, b.data, b.len};
    sw_store_commit_t c = {
        .token = "toklease", .seq = 2, .fields = &fld, .nfields = 1, .release = 1};
    commit_res_t cres = {0};
    cr_assert_eq(sw_store_commit(other, &c, on_commit, &cres), 0);
    run_until(commit_done, &cres, "the other holder's commit");
    cr_assert_eq(cres.status, 0);
    sw_buf_destroy(&b);

    /* The retry gets the lease: the client first gets the state it missed
     * (a full delta at seq 2), then the event's answer computed from it. */
    wait_msgs(p, 5);
    settle(30);
    cr_assert_eq(p->n, 5);
    expect_delta(p, 3, 2, -1, "{\"a\":{\"x\":50,\"y\":0},\"room\":{\"n\":0}}", 1);
    expect_delta(p, 4, 3, 3, "{\"a\":{\"x\":51}}", 0);
    cr_assert_eq(calls_inc, before + 2, "the handler ran once more, from fresh state");
    cr_assert_eq(atomic_load(&w->stats->commit_lease_lost), lost + 1);
    expect_stored(w->store, "toklease", "a", "{\"x\":51,\"y\":0}");
    sw_store_free(other);
}

BOTH(lease_held_elsewhere_gives_up)
{
    /* A lease that another holder keeps: the event waits (retrying with
     * backoff) for lease_ms + 1 s, then fails with state_unavailable; the
     * next event, once the lease is free, runs as usual. */
    cfg.lease_ms = 300;
    sw_worker_t *w = worker_new("wk1-held");
    fpeer_t *p = client(w, "tokheld");
    send_ev(p, 2, "a.inc", NULL);
    wait_msgs(p, 3);
    settle(400); /* the worker's own lease runs out (it never gave it up) */
    sw_store_t *other = store_new("holder-2", 10000);
    load_res_t r = store_load(other, "tokheld", 1);
    cr_assert_eq(r.status, 0);
    json_decref(r.states);

    uint64_t t0 = sw_now_ms();
    send_ev(p, 3, "a.inc", NULL);
    wait_msgs(p, 4);
    uint64_t waited = sw_now_ms() - t0;
    expect_error(p, 3, 3, SW_ERRC_STATE_UNAVAILABLE, NULL);
    cr_assert_geq(waited, 1300 - 5, "gave up after %llu ms", (unsigned long long)waited);
    cr_assert_eq(calls_inc, 1, "the handler never ran");

    cr_assert_eq(sw_store_release(other, "tokheld"), 0);
    send_ev(p, 4, "a.inc", NULL);
    wait_msgs(p, 5);
    settle(30);
    cr_assert_eq(p->n, 5);
    expect_delta(p, 4, 2, 4, "{\"a\":{\"x\":2}}", 0);
    sw_store_free(other);
}

/* ---- compare-and-set conflict and rerun -------------------------------------------- */

/* The last value of room.n a peer was sent, -1 if none. */
static json_int_t last_n(const fpeer_t *f)
{
    for (size_t i = f->n; i-- > 0;) {
        json_t *n =
            json_object_get(json_object_get(json_object_get(f->m[i].j, "delta"), "room"), "n");
        if (n)
            return json_integer_value(n);
    }
    return -1;
}

typedef struct both_n {
    fpeer_t *a, *b;
    json_int_t n;
} both_n_t;

static int both_have_n(void *arg)
{
    both_n_t *x = arg;
    return last_n(x->a) == x->n && last_n(x->b) == x->n;
}

/* The index of f's message answering id, or fails. */
static size_t answer_of(const fpeer_t *f, int64_t id)
{
    for (size_t i = 0; i < f->n; i++) {
        json_t *jid = json_object_get(f->m[i].j, "id");
        if (jid && json_integer_value(jid) == id)
            return i;
    }
    cr_assert_fail("no answer to event %lld", (long long)id);
    return 0;
}

/* A welcomed, hydrated client of `token` linked to `room` (3 messages). */
static fpeer_t *room_client(sw_worker_t *w, const char *token, const char *room)
{
    fpeer_t *f = client(w, token);
    send_ev(f, 2, "room.join", json_pack("{s:s}", "room", room));
    wait_msgs(f, 3);
    expect_delta(f, 2, 1, 2, "{\"room\":{\"n\":0}}", 0);
    return f;
}

BOTH(cas_conflict_rerun)
{
    /* Two workers (one process, one store), one client each, both linked
     * to one shared token. */
    sw_worker_t *wa = worker_new("wkA-cas");
    sw_worker_t *wb = worker_new("wkB-cas");
    fpeer_t *pa = room_client(wa, "tokcasa", "room:cas");
    fpeer_t *pb = room_client(wb, "tokcasb", "room:cas");
    settle(250); /* presence settles (coalesced over 100 ms) */
    fp_forget(pa);
    fp_forget(pb);

    /* Both write in the same loop iteration, from the same copy (seq 0):
     * one commit wins, the other gets a conflict, rereads the copy and
     * runs its handler again. */
    send_ev(pa, 10, "room.inc", NULL);
    send_ev(pb, 20, "room.inc", NULL);
    both_n_t x = {pa, pb, 2};
    run_until(both_have_n, &x, "both clients at n = 2");
    settle(50);
    cr_assert_eq(calls_room_inc, 3, "one handler ran twice (%u calls)", calls_room_inc);
    size_t ia = answer_of(pa, 10), ib = answer_of(pb, 20);
    json_int_t na = json_integer_value(
        json_object_get(json_object_get(json_object_get(msg(pa, ia), "delta"), "room"), "n"));
    json_int_t nb = json_integer_value(
        json_object_get(json_object_get(json_object_get(msg(pb, ib), "delta"), "room"), "n"));
    cr_assert((na == 1 && nb == 2) || (na == 2 && nb == 1), "answers n = %lld and %lld",
              (long long)na, (long long)nb);
    /* The winner's client then gets the loser's change, without id; the
     * loser's answer holds both. */
    fpeer_t *winner = na == 1 ? pa : pb;
    size_t iw = na == 1 ? ia : ib;
    cr_assert_eq(winner->n, iw + 2);
    cr_assert_eq(winner->m[iw].out.kind, SW_OUT_DELTA);
    cr_assert_null(json_object_get(msg(winner, iw + 1), "id"));
    cr_assert_eq(last_n(winner), 2);
    fpeer_t *loser = winner == pa ? pb : pa;
    for (size_t i = 0; i < loser->n; i++)
        cr_assert_eq(loser->m[i].out.kind, SW_OUT_DELTA);
    expect_stored(wa->store, "room:cas", "room", "{\"n\":2}");
    load_res_t r = store_load(wa->store, "room:cas", 0);
    cr_assert_eq(r.seq, 2, "two writes of the shared token, seq %llu", (unsigned long long)r.seq);
    json_decref(r.states);
}

/* ---- group fan-out ---------------------------------------------------------------- */

BOTH(group_fanout)
{
    /* Three clients of one worker linked to one room; a writer elsewhere. */
    sw_worker_t *wa = worker_new("wkA-grp");
    sw_worker_t *wb = worker_new("wkB-grp");
    fpeer_t *g[3];
    char tok[32];
    for (int i = 0; i < 3; i++) {
        snprintf(tok, sizeof(tok), "tokgrp%d", i);
        g[i] = room_client(wa, tok, "room:grp");
    }
    fpeer_t *writer = room_client(wb, "tokgrpw", "room:grp");
    settle(250);
    for (int i = 0; i < 3; i++)
        fp_forget(g[i]);
    fp_forget(writer);

    send_ev(writer, 5, "room.inc", NULL);
    wait_msgs(writer, 1);
    expect_delta(writer, 0, 1, 5, "{\"room\":{\"n\":1}}", 0);
    for (int i = 0; i < 3; i++)
        wait_msgs(g[i], 1);
    settle(50);
    /* One delta each, at its token's own seq, without id; encoded once:
     * every client got the same tail after its own seq. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(g[i]->n, 1, "client %d got %zu messages", i, g[i]->n);
        expect_delta(g[i], 0, 1, -1, "{\"room\":{\"n\":1}}", 0);
        cr_assert_eq(g[i]->m[0].iovcnt, 2, "client %d: not a group delta", i);
        cr_assert_not_null(g[i]->m[0].tail);
        cr_assert_eq(g[i]->m[0].tail, g[0]->m[0].tail, "client %d: encoded apart", i);
    }
    cr_assert_eq(writer->n, 1);

    /* A second change: one more delta each, still grouped. */
    send_ev(writer, 6, "room.inc", NULL);
    for (int i = 0; i < 3; i++)
        wait_msgs(g[i], 2);
    settle(50);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(g[i]->n, 2);
        expect_delta(g[i], 1, 1, -1, "{\"room\":{\"n\":2}}", 0);
        cr_assert_eq(g[i]->m[1].iovcnt, 2);
    }
    cr_assert_eq(calls_room_inc, 2);
}

/* ---- chained events --------------------------------------------------------------- */

BOTH(chained)
{
    sw_worker_t *w = worker_new("wk1-chain");
    fpeer_t *p = client(w, "tokchain");
    /* The chained a.inc runs right after a.chain, before event 3 that was
     * queued before it existed. */
    send_ev(p, 2, "a.chain", NULL);
    send_ev(p, 3, "a.inc", NULL);
    wait_msgs(p, 5);
    settle(30);
    cr_assert_eq(p->n, 5);
    expect_delta(p, 2, 1, 2, "{\"a\":{\"y\":1}}", 0);
    expect_delta(p, 3, 2, -1, "{\"a\":{\"x\":5}}", 0);
    expect_delta(p, 4, 3, 3, "{\"a\":{\"x\":6}}", 0);
    cr_assert_eq(calls_inc, 2);
    expect_stored(w->store, "tokchain", "a", "{\"x\":6,\"y\":1}");
}

/* ---- yield -------------------------------------------------------------------------- */

BOTH(yield_steps)
{
    sw_worker_t *w = worker_new("wk1-yield");
    fpeer_t *p = client(w, "tokyield");
    /* Each step is committed and sent on its own, both answering id 2;
     * event 3 waits for the last step. */
    send_ev(p, 2, "a.steps", NULL);
    send_ev(p, 3, "a.inc", NULL);
    wait_msgs(p, 5);
    settle(30);
    cr_assert_eq(p->n, 5);
    expect_delta(p, 2, 1, 2, "{\"a\":{\"x\":1}}", 0);
    expect_delta(p, 3, 2, 2, "{\"a\":{\"x\":11}}", 0);
    expect_delta(p, 4, 3, 3, "{\"a\":{\"x\":12}}", 0);
}

BOTH(task_sleeps)
{
    sw_worker_t *w = worker_new("wk1-task");
    fpeer_t *p = client(w, "toktask");
    /* A task's first step answers the event (id 2); the next steps follow
     * without id, each TICK_SLEEP_MS after the last, and client events run
     * between them. */
    send_ev(p, 2, "a.tick", NULL);
    wait_msgs(p, 3);
    expect_delta(p, 2, 1, 2, "{\"a\":{\"x\":1}}", 0);
    send_ev(p, 3, "a.inc", json_pack("{s:i}", "by", 100));
    wait_msgs(p, 6);
    settle(TICK_SLEEP_MS + 30);
    cr_assert_eq(p->n, 6);
    /* x: in the order the events ran, each at the next seq */
    json_int_t want_x = 1;
    uint64_t last_step_ms = p->m[2].at_ms;
    unsigned steps = 0, incs = 0;
    for (size_t i = 3; i < p->n; i++) {
        json_t *jid = json_object_get(msg(p, i), "id");
        want_x += jid ? 100 : 1;
        char want[64];
        snprintf(want, sizeof(want), "{\"a\":{\"x\":%lld}}", (long long)want_x);
        expect_delta(p, i, i - 1, jid ? 3 : -1, want, 0);
        if (jid) {
            incs++;
            continue;
        }
        steps++;
        cr_assert_geq(p->m[i].at_ms - last_step_ms, TICK_SLEEP_MS - 5, "steps %llu ms apart",
                      (unsigned long long)(p->m[i].at_ms - last_step_ms));
        last_step_ms = p->m[i].at_ms;
    }
    cr_assert_eq(steps, 2);
    cr_assert_eq(incs, 1);
    cr_assert_eq(want_x, 103);
    expect_stored(w->store, "toktask", "a", "{\"x\":103,\"y\":0}");
}

/* ---- failures undo the step ----------------------------------------------------------- */

BOTH(failure_undoes_step)
{
    sw_worker_t *w = worker_new("wk1-fail");
    fpeer_t *p = client(w, "tokfail");
    send_ev(p, 2, "a.inc", NULL);
    /* x = 100, y = 100, a chained event and an action, then the failure:
     * none of it happens. */
    send_ev(p, 3, "a.fail", NULL);
    send_ev(p, 4, "a.inc", NULL);
    wait_msgs(p, 5);
    settle(30);
    cr_assert_eq(p->n, 5);
    expect_delta(p, 2, 1, 2, "{\"a\":{\"x\":1}}", 0);
    expect_error(p, 3, 3, SW_ERRC_HANDLER_ERROR, "no 7");
    expect_delta(p, 4, 2, 4, "{\"a\":{\"x\":2}}", 0); /* from x = 1, at the next seq */
    cr_assert_eq(calls_inc, 2, "the chained event was dropped");
    expect_stored(w->store, "tokfail", "a", "{\"x\":2,\"y\":0}");

    /* A failure after a yield undoes its own step only. */
    send_ev(p, 5, "a.steps_fail", NULL);
    send_ev(p, 6, "a.inc", NULL);
    wait_msgs(p, 8);
    settle(30);
    cr_assert_eq(p->n, 8);
    expect_delta(p, 5, 3, 5, "{\"a\":{\"x\":3}}", 0);
    expect_error(p, 6, 5, SW_ERRC_BAD_PAYLOAD, "late");
    expect_delta(p, 7, 4, 6, "{\"a\":{\"x\":4}}", 0);
    expect_stored(w->store, "tokfail", "a", "{\"x\":4,\"y\":0}");
}
