/* store_sub.c — the Redis store's subscriptions (worker/store_sub.h).
 *
 * The connection's reply callback gets the subscription set (never a
 * subscription) as private data and looks the subscription up by
 * channel, so a subscription can be dropped at once locally while Redis
 * still confirms its UNSUBSCRIBE. */
#include "worker/store_sub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uthash.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/store_int.h"
#include "worker/store_link.h"

/* A subscription (channel sw:{R}:ch). A subscription dropped locally while
 * its UNSUBSCRIBE is unconfirmed stays in the table as `live == 0` (no
 * callbacks) so that a new subscribe of the same channel waits for that
 * confirmation (hiredis 0.14 forgets a channel's callback on its
 * "unsubscribe" reply). */
typedef struct rsub {
    UT_hash_handle hh;
    char *channel; /* "sw:{R}:ch" */
    size_t channel_len;
    int live;          /* subscribed by the user */
    int sent;          /* SUBSCRIBE sent on the current connection */
    int unsub_pending; /* UNSUBSCRIBEs sent, not yet confirmed */
    sw_store_message_cb on_message;
    sw_store_resync_cb on_resync;
    void *udata;
} rsub_t;

/* The heartbeat channel: subscribed first on every connection and
 * subscribed again as the idle ping. A plain PING would do in RESP2
 * subscribed mode, but hiredis 0.14 queues its callback where no reply
 * ever reaches it (one leaked callback per ping); a repeated SUBSCRIBE
 * replaces the channel's callback and is answered like any subscribe.
 * Nothing is published on it. */
#define PING_CHANNEL "sw:ping"

struct sw_store_sub {
    sw_store_link_t *link; /* the pub/sub connection */
    rsub_t *subs;          /* channel -> subscription */
    size_t nlive;          /* live subscriptions */
    int freeing;
};

static void rsub_free(sw_store_sub_t *b, rsub_t *sub)
{
    HASH_DEL(b->subs, sub);
    free(sub->channel);
    free(sub);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv);

static void sub_send(sw_store_sub_t *b, rsub_t *sub, const char *verb)
{
    const char *argv[2] = {verb, sub->channel};
    size_t argvlen[2] = {strlen(verb), sub->channel_len};
    /* The callback is the channel's for every later reply (hiredis keeps
     * it per channel); UNSUBSCRIBE registers none. */
    if (redisAsyncCommandArgv(sw_store_link_ctx(b->link), on_sub_reply, b, 2, argv, argvlen) !=
        REDIS_OK) {
        sw_log(SW_LOG_WARN, "redis: %s %s: not sent", verb, sub->channel);
        return;
    }
    sw_store_link_sent(b->link); /* one reply per channel, either verb */
    if (verb[0] == 'S')
        sub->sent = 1;
    else
        sub->unsub_pending++;
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    sw_store_sub_t *b = priv;
    redisReply *rep = reply;
    if (!rep || b->freeing)
        return; /* connection gone: sub_on_down handles it */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        sw_store_link_heard(b->link);
        return;
    }
    const char *type = rep->element[0]->str;
    if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0)
        sw_store_link_replied(b->link); /* answers a (UN)SUBSCRIBE, the ping's too */
    else
        sw_store_link_heard(b->link);
    rsub_t *sub = NULL;
    HASH_FIND(hh, b->subs, rep->element[1]->str, (size_t)rep->element[1]->len, sub);
    if (!sub)
        return;
    if (strcmp(type, "message") == 0) {
        if (sub->live && rep->element[2]->type == REDIS_REPLY_STRING)
            sub->on_message(sub->udata, rep->element[2]->str, (size_t)rep->element[2]->len);
    } else if (strcmp(type, "subscribe") == 0) {
        if (sub->live && sub->on_resync)
            sub->on_resync(sub->udata);
    } else if (strcmp(type, "unsubscribe") == 0) {
        if (sub->unsub_pending > 0)
            sub->unsub_pending--;
        if (sub->unsub_pending > 0)
            return;
        if (sub->live) /* subscribed again meanwhile: hiredis forgot it */
            sub_send(b, sub, "SUBSCRIBE");
        else
            rsub_free(b, sub);
    }
}

/* The connection is gone: forget what was sent on it. */
static void sub_on_down(void *udata)
{
    sw_store_sub_t *b = udata;
    rsub_t *sub, *tmp;
    HASH_ITER(hh, b->subs, sub, tmp)
    {
        if (!sub->live) {
            rsub_free(b, sub);
            continue;
        }
        sub->sent = 0;
        sub->unsub_pending = 0;
    }
}

static int sub_ping(void *udata, redisAsyncContext *ac)
{
    return redisAsyncCommand(ac, on_sub_reply, udata, "SUBSCRIBE " PING_CHANNEL) == REDIS_OK ? 0
                                                                                             : -1;
}

/* A new connection: the heartbeat channel first (its answer makes the
 * link up), then SUBSCRIBE every live subscription. */
static void sub_on_open(void *udata, redisAsyncContext *ac)
{
    sw_store_sub_t *b = udata;
    if (sub_ping(b, ac) == 0)
        sw_store_link_sent(b->link);
    rsub_t *sub, *tmp;
    HASH_ITER(hh, b->subs, sub, tmp)
    {
        if (sub->live && !sub->sent)
            sub_send(b, sub, "SUBSCRIBE");
    }
}

/* Reconnect while anything is subscribed (else at the next subscribe). */
static int sub_wanted(void *udata)
{
    const sw_store_sub_t *b = udata;
    return b->nlive > 0;
}

sw_store_sub_t *sw_store_sub_new(struct ev_loop *loop, const char *host, int port,
                                 uint32_t reply_timeout_ms, uint32_t ping_ms)
{
    sw_store_sub_t *b = sw_xcalloc(1, sizeof(*b));
    sw_store_link_opts_t o = {.what = "pub/sub connection",
                              .host = host,
                              .port = port,
                              .reply_timeout_ms = reply_timeout_ms,
                              .ping_ms = ping_ms,
                              .ping = sub_ping,
                              .on_open = sub_on_open,
                              .on_down = sub_on_down,
                              .wanted = sub_wanted,
                              .udata = b};
    b->link = sw_store_link_new(loop, &o);
    return b;
}

void sw_store_sub_free(sw_store_sub_t *b)
{
    if (!b)
        return;
    b->freeing = 1;
    sw_store_link_free(b->link); /* subscription callbacks get NULL: ignored */
    rsub_t *sub, *tmp;
    HASH_ITER(hh, b->subs, sub, tmp)
    {
        rsub_free(b, sub);
    }
    free(b);
}

int sw_store_sub_up(const sw_store_sub_t *b)
{
    return b->nlive == 0 || sw_store_link_up(b->link);
}

int sw_store_sub_add(sw_store_sub_t *b, const char *token, sw_store_message_cb on_message,
                     sw_store_resync_cb on_resync, void *udata)
{
    char channel[SW_STORE_TOKEN_MAX + 16];
    int n = snprintf(channel, sizeof(channel), "sw:{%s}:ch", token);
    rsub_t *sub = NULL;
    HASH_FIND(hh, b->subs, channel, (size_t)n, sub);
    if (sub && sub->live)
        return SW_EBUSY;
    if (b->nlive >= SW_STORE_MAX_SUBS)
        return SW_ENOMEM;
    int fresh = !sub;
    if (fresh) {
        sub = sw_xcalloc(1, sizeof(*sub));
        sub->channel = sw_xstrndup(channel, (size_t)n);
        sub->channel_len = (size_t)n;
        HASH_ADD_KEYPTR(hh, b->subs, sub->channel, sub->channel_len, sub);
    }
    sub->live = 1;
    sub->on_message = on_message;
    sub->on_resync = on_resync;
    sub->udata = udata;
    b->nlive++;
    if (!sw_store_link_ctx(b->link)) {
        sw_store_link_open(b->link); /* sends SUBSCRIBE for it (no retry pending) */
    } else if (fresh || sub->unsub_pending == 0) {
        sub_send(b, sub, "SUBSCRIBE");
    } /* else: sent when its UNSUBSCRIBE is confirmed */
    return 0;
}

int sw_store_sub_remove(sw_store_sub_t *b, const char *token)
{
    char channel[SW_STORE_TOKEN_MAX + 16];
    int n = snprintf(channel, sizeof(channel), "sw:{%s}:ch", token);
    rsub_t *sub = NULL;
    HASH_FIND(hh, b->subs, channel, (size_t)n, sub);
    if (!sub || !sub->live)
        return SW_ENOTFOUND;
    sub->live = 0;
    sub->on_message = NULL;
    sub->on_resync = NULL;
    sub->udata = NULL;
    b->nlive--;
    if (sw_store_link_ctx(b->link) && sub->sent && sub->unsub_pending == 0) {
        sub->sent = 0;
        sub_send(b, sub, "UNSUBSCRIBE");
    }
    if (sub->unsub_pending == 0)
        rsub_free(b, sub);
    return 0;
}
