/* fuzz_resp.c — Redis replies into the Redis store's reply handling
 * (worker/store_redis.c).
 *
 * Feeds: the input after its first byte as bytes from Redis to hiredis's
 * reply parser (redisReader, RESP), and every reply it yields, as hiredis
 * would hand it over, to one of the store's reply callbacks, picked by the
 * first byte and the reply's position: on_reply for each kind of request
 * (acquire + load, HGETALL read, commit, presence, HMGET of the replay
 * log, acked publish, release), the pub/sub connection's on_sub_reply
 * (message / subscribe / unsubscribe for three subscriptions, one of them
 * dropped locally and waiting for its UNSUBSCRIBE to be confirmed),
 * on_script_load, on_reaped and on_secret (the stream-signing key).
 * store_redis.c, store_sub.c, store_link.c and store_script.c are
 * compiled into this harness to reach those static functions; the completions go to callbacks that read every byte they
 * are handed the way token.c does (fields and _meta decoded as msgpack,
 * _conn as JSON, the holder and the live socket id copied). A NOSCRIPT
 * error is taken as an error: the resend as EVAL writes to a connection
 * and is not fed.
 *
 * Checks: ASan / UBSan on the reply handling and the views it hands out,
 * and (abort() on failure) that every request completes exactly once with
 * a status its caller knows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../worker/store_link.c"
#include "../worker/store_redis.c"
#include "../worker/store_script.c"
#include "../worker/store_sub.c"

#include "common/mpjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_resp: %s\n", what);
    abort();
}

static int completed;

static void touch(const char *p, size_t n)
{
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (unsigned char)(sum + (unsigned char)p[i]);
    (void)sum;
}

static void on_load(void *udata, const sw_store_loaded_t *res)
{
    completed++;
    if (res->status != 0 && res->status != SW_EBUSY && res->status != SW_EUNAVAIL)
        fail("load status");
    if (res->status == SW_EBUSY && res->holder_len) {
        char inbox[80];
        snprintf(inbox, sizeof(inbox), "inbox:%.*s", (int)res->holder_len, res->holder);
        touch(res->holder, res->holder_len);
    }
    if (res->status != 0)
        return;
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *f = &res->fields[i];
        touch(f->name, f->name_len);
        if (f->name_len == 5 && memcmp(f->name, "_conn", 5) == 0) {
            json_decref(json_loadb(f->data, f->len, 0, NULL));
            continue;
        }
        json_decref(sw_mpjson_decode(f->data, f->len, NULL));
    }
    if (res->meta)
        json_decref(sw_mpjson_decode(res->meta, res->meta_len, NULL));
    if (res->live && res->live_len)
        free(sw_xstrndup(res->live, SW_MIN(res->live_len, 63)));
}

static void on_commit(void *udata, int status)
{
    completed++;
    if (status != 0 && status != SW_ECONFLICT && status != SW_EAGAIN && status != SW_ELEASE &&
        status != SW_EUNAVAIL)
        fail("commit status");
}

static void on_count(void *udata, int status, int64_t count)
{
    completed++;
    if (status != 0 && status != SW_EUNAVAIL)
        fail("count status");
}

static void on_log(void *udata, int status, const char *const *entries, const size_t *lens,
                   size_t n)
{
    completed++;
    if (status != 0 && status != SW_EUNAVAIL)
        fail("log status");
    for (size_t i = 0; i < n; i++)
        if (entries[i])
            touch(entries[i], lens[i]);
}

static void on_value(void *udata, int status, const char *data, size_t len)
{
    completed++;
    if ((status != 0 && status != SW_EUNAVAIL) || !data || (status == 0 && !len))
        fail("value status");
    touch(data, len);
}

static void on_message(void *udata, const char *data, size_t len)
{
    touch(data, len);
}

static void on_resync(void *udata)
{
}

/* hiredis 0.14 allocates an array reply's declared element count up front:
 * a few bytes claiming 10^8 elements exhaust memory in hiredis itself, not
 * in the store. Redis answers the store's requests with arrays far below
 * this bound; larger declared counts fail the parse (as out of memory). */
#define MAX_ARRAY 65536

static void *(*hiredis_create_array)(const redisReadTask *, int);
static redisReplyObjectFunctions bounded_fn;

static void *create_array(const redisReadTask *task, int elements)
{
    return elements > MAX_ARRAY ? NULL : hiredis_create_array(task, elements);
}

static redis_store_t rs;
static sw_store_sub_t subs;      /* rs.subs */
static sw_store_link_t cmd_link; /* rs.link: only its reply count is used */
static sw_store_link_t sub_link; /* subs.link */
static redisAsyncContext *sac;   /* never connected: SUBSCRIBE is only buffered */

static void add_sub(const char *token, int live)
{
    rsub_t *sub = sw_xcalloc(1, sizeof(*sub));
    sub->channel = sw_xasprintf("sw:{%s}:ch", token);
    sub->channel_len = strlen(sub->channel);
    sub->live = live;
    sub->sent = 1;
    sub->unsub_pending = live ? 0 : 1;
    sub->on_message = live ? on_message : NULL;
    sub->on_resync = live ? on_resync : NULL;
    HASH_ADD_KEYPTR(hh, subs.subs, sub->channel, sub->channel_len, sub);
}

static void setup_once(void)
{
    if (sac)
        return;
    sw_log_init(getenv("SW_FUZZ_LOG") ? SW_LOG_DEBUG : SW_LOG_CRIT, 0, NULL);
    rs.base.ops = &REDIS_OPS;
    sac = redisAsyncConnectUnix("/nonexistent/statewire-fuzz.sock");
    if (!sac)
        fail("redisAsyncConnectUnix");
    sub_link.ac = sac;
    subs.link = &sub_link;
    rs.subs = &subs;
    rs.link = &cmd_link;
}

enum {
    C_LOAD,
    C_READ,
    C_COMMIT,
    C_PRESENCE,
    C_LOG,
    C_PUBLISH,
    C_RELEASE,
    C_SUB,
    C_MISC,
    C_SECRET,
    C__N
};

static void consume(int which, redisReply *rep)
{
    static const int kinds[] = {REQ_LOAD, REQ_READ,    REQ_COMMIT, REQ_PRESENCE,
                                REQ_LOG,  REQ_PUBLISH, REQ_RELEASE};
    static const int scripts[] = {SW_SCRIPT_ACQUIRE, -1, SW_SCRIPT_COMMIT, SW_SCRIPT_PRESENCE,
                                  -1,                -1, SW_SCRIPT_RELEASE};
    if (which == C_SUB) {
        on_sub_reply(sac, rep, &subs);
        return;
    }
    if (which == C_SECRET) { /* the stream-signing key */
        secret_req_t *sq = sw_xcalloc(1, sizeof(*sq));
        sq->rs = &rs;
        sq->cb = on_value;
        int before = completed;
        on_secret(sac, rep, sq);
        if (completed != before + 1)
            fail("the secret request did not complete exactly once");
        return;
    }
    if (which == C_MISC) {
        on_script_load(sac, rep, NULL);
        on_reaped(sac, rep, &rs);
        return;
    }
    rreq_t *q = req_new(&rs, kinds[which], scripts[which], 2);
    q->evaled = 1; /* see the header comment: NOSCRIPT is not resent */
    q->load_cb = on_load;
    q->commit_cb = on_commit;
    q->count_cb = on_count;
    q->log_cb = on_log;
    cmd_link.awaiting = 1;
    rs.base.inflight = 1;
    int before = completed;
    on_reply(sac, rep, q);
    if (completed != before + (which == C_RELEASE ? 0 : 1))
        fail("a request did not complete exactly once");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    setup_once();
    add_sub("a", 1);
    add_sub("room:lobby", 1);
    add_sub("gone", 0);
    subs.nlive = 2;
    redisReader *r = redisReaderCreate();
    if (!r)
        fail("redisReaderCreate");
    if (!hiredis_create_array) {
        bounded_fn = *r->fn;
        hiredis_create_array = bounded_fn.createArray;
        bounded_fn.createArray = create_array;
    }
    r->fn = &bounded_fn;
    if (redisReaderFeed(r, (const char *)data + 1, size - 1) == REDIS_OK) {
        void *reply = NULL;
        for (int i = 0; redisReaderGetReply(r, &reply) == REDIS_OK && reply; i++) {
            consume((data[0] + i) % C__N, reply);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(r);
    /* Nothing carried to the next input. */
    rsub_t *sub, *tmp;
    HASH_ITER(hh, subs.subs, sub, tmp)
    rsub_free(&subs, sub);
    while (rs.pool) {
        rreq_t *q = rs.pool;
        rs.pool = q->next_free;
        req_destroy(q);
    }
    rs.npool = 0;
    sdsclear(sac->c.obuf);
    return 0;
}
