/* commit.c — the stages that write: a handler step and what it writes
 * (SW_PH_STEP: sw_tok__run_step), a hydrate (sw_tok__run_hydrate), the
 * fields of a commit (states, _meta, raw fields), the fenced commit itself
 * (private states, shared compare-and-set writes, the replay-log entry)
 * and what its result means (SW_PH_COMMITTED: sw_tok__committed). Each
 * returns a verdict to the runner (pipeline.c); the commit's completion is
 * the runner's (sw_tok__done.committed). */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"

static int add_state_field(sw_token_t *t, commit_fields_t *cf, const char *state);
static int add_meta_field(sw_token_t *t, commit_fields_t *cf, const json_t *links);
static void commit_fields_destroy(commit_fields_t *cf);
static void shared_writes_destroy(shared_writes_t *ws);
static void queue_on_load(sw_token_t *t);

/* Compare-and-set retries of one event on contended shared state. */
#define SW_MAX_CONFLICTS 200

static int add_state_field(sw_token_t *t, commit_fields_t *cf, const char *state)
{
    if (cf->n >= SW_ARRAY_SIZE(cf->f))
        return SW_ETOOLARGE;
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    int rc = sw_tree_encode_state(&t->tree, state, b);
    if (rc) {
        sw_buf_destroy(b);
        return rc;
    }
    cf->f[cf->n] = (sw_store_field_t){state, strlen(state), b->data, b->len};
    cf->n++;
    return 0;
}

static int add_meta_field(sw_token_t *t, commit_fields_t *cf, const json_t *links)
{
    if (cf->n >= SW_ARRAY_SIZE(cf->f))
        return SW_ETOOLARGE;
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    json_t *meta = json_pack("{s:O}", "router", t->tree.router);
    if (links && json_object_size(links))
        json_object_set(meta, "links", (json_t *)links);
    int rc = sw_mpjson_encode(meta, b);
    json_decref(meta);
    if (rc) {
        sw_buf_destroy(b);
        return rc;
    }
    cf->f[cf->n] = (sw_store_field_t){"_meta", 5, b->data, b->len};
    cf->n++;
    return 0;
}

int sw_tok__add_field(commit_fields_t *cf, const char *name, const void *data, size_t len)
{
    if (cf->n >= SW_ARRAY_SIZE(cf->f))
        return SW_ETOOLARGE;
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    sw_buf_append(b, data, len);
    cf->f[cf->n] = (sw_store_field_t){name, strlen(name), b->data, b->len};
    cf->n++;
    return 0;
}

static void commit_fields_destroy(commit_fields_t *cf)
{
    for (size_t i = 0; i < cf->n; i++)
        sw_buf_destroy(&cf->bufs[i]);
}

static void shared_writes_destroy(shared_writes_t *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        commit_fields_destroy(&ws->cf[i]);
        free(ws->msg[i]);
    }
    ws->n = 0;
}

sw_verdict_t sw_tok__commit(sw_token_t *t, commit_fields_t *cf, shared_writes_t *ws, uint64_t seq,
                            const char *log_entry, size_t log_len, int release)
{
    const sw_config_t *cfg = t->w->cfg;
    uint64_t now = sw_now_ms();
    if (!release && !sw_tok__keep_lease(t))
        release = 1;
    /* Renew the lease once half of it is gone; refresh the hash TTL every
     * quarter TTL (and on the first write): a steady-state commit is then
     * EVALSHA + GET + HSET. */
    int renew = !release && t->lease_until_ms < now + cfg->lease_ms / 2;
    int refresh = !t->exists || t->ttl_refreshed_ms == 0 ||
                  now - t->ttl_refreshed_ms > (uint64_t)cfg->token_ttl_s * 250u;
    sw_inflight_t *f = t->flight;
    f->commit_renew = renew;
    f->commit_refresh = refresh;
    f->commit_sent_ms = now;
    sw_store_commit_t c = {
        .renew = renew,
        .refresh_ttl = refresh,
        .token = t->token,
        .seq = seq,
        .log_entry = log_entry,
        .log_len = log_len,
        .fields = cf->f,
        .nfields = cf->n,
        .release = release,
        .shared = ws ? ws->sw : NULL,
        .nshared = ws ? ws->n : 0,
    };
    f->commit_seq = seq;
    f->commit_release = release;
    int rc = sw_store_commit(t->w->store, &c, sw_tok__done.committed, t);
    commit_fields_destroy(cf);
    if (ws)
        shared_writes_destroy(ws);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        for (size_t i = 0; i < f->nwrites; i++)
            sw_shared_commit_end(f->writes[i], rc, NULL, 0);
        sw_tok__drop_tree(t);
        return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
    }
    for (size_t i = 0; i < f->nwrites; i++)
        sw_shared_commit_begin(f->writes[i]);
    t->pending_store = 1;
    return SW_V_PARKED;
}

sw_verdict_t sw_tok__committed_now(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    f->commit_status = 0;
    f->commit_via_store = 0;
    f->phase = SW_PH_COMMITTED;
    return SW_V_NEXT;
}

static void queue_on_load(sw_token_t *t)
{
    const char *names[32];
    const char *path = json_string_value(json_object_get(t->tree.router, "path"));
    size_t n = sw_appdef_on_load(t->w->app, path ? path : "/", names, SW_ARRAY_SIZE(names));
    n = SW_MIN(n, SW_ARRAY_SIZE(names));
    for (size_t i = n; i-- > 0;) {
        sw_event_t *ev = sw_event_new(SW_EV_CHAINED, -1, NULL, names[i], NULL, NULL);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        t->qlen++;
    }
}

sw_verdict_t sw_tok__run_hydrate(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    int router_changed = 0;
    if (ev->router && !json_equal(ev->router, t->tree.router)) {
        /* the event keeps its router: a retry from fresh state needs it */
        sw_tree_set_router(&t->tree, json_incref(ev->router), NULL);
        router_changed = 1;
    }
    t->flight->commit_full = 1;
    if (t->exists && !router_changed)
        return sw_tok__committed_now(t); /* nothing to write: answer now */
    commit_fields_t cf;
    cf.n = 0;
    int rc = 0;
    if (!t->exists) {
        for (size_t i = 0; i < sw_appdef_nstates(t->w->app) && !rc; i++) {
            const char *state = sw_appdef_state(t->w->app, i);
            if (!json_object_get(t->tree.links, state))
                rc = add_state_field(t, &cf, state);
        }
    }
    if (!rc)
        rc = add_meta_field(t, &cf, t->tree.links);
    if (rc) {
        commit_fields_destroy(&cf);
        return sw_tok__fail(t, SW_ERRC_HANDLER_ERROR, "state too large to store");
    }
    return sw_tok__commit(t, &cf, NULL, 0, NULL, 0, 0);
}

sw_verdict_t sw_tok__run_step(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (kind == SW_EVENT_UNKNOWN) {
        char msg[SW_EVENT_NAME_MAX + 32];
        snprintf(msg, sizeof(msg), "no handler %s", ev->name);
        return sw_tok__fail(t, SW_ERRC_UNKNOWN_EVENT, msg);
    }
    if (!f->acc)
        f->acc = json_object();
    int router_changed = 0;
    if (ev->router && !json_equal(ev->router, t->tree.router)) {
        sw_tree_set_router(&t->tree, json_incref(ev->router), f->acc);
        router_changed = 1;
    }
    if (f->have_step) {
        sw_step_destroy(&f->step);
        f->have_step = 0;
    }
    uint32_t bound = w->cfg->max_queue * SW_INTERNAL_QUEUE_FACTOR;
    sw_step_in_t in = {
        .token = t->token,
        .user = t->user,
        .name = ev->name,
        .payload = ev->payload,
        .step = ev->step,
        .max_chained = t->qlen < bound ? SW_MIN(bound - t->qlen, (uint32_t)SW_MAX_CHAINED) : 0,
    };
    sw_runtime_step(&t->tree, &in, &f->step);
    f->have_step = 1;
    if (f->step.status < 0)
        return sw_tok__fail(t, sw_errc_parse(f->step.error_code), f->step.error_msg);
    sw_tok__merge_delta(f->acc, f->step.delta);
    json_decref(f->new_links);
    f->new_links = sw_tok__links_after(t, f->step.link_ops, f->step.nlink_ops);

    commit_fields_t cf;
    cf.n = 0;
    shared_writes_t ws;
    ws.n = 0;
    for (size_t k = 0; k < f->nwrites; k++) /* from a previous yield step */
        json_decref(f->write_changed[k]);
    f->nwrites = 0;
    int rc = 0;
    size_t i;
    json_t *jstate;
    json_array_foreach(f->step.dirty, i, jstate)
    {
        const char *state = json_string_value(jstate);
        const char *rname = json_string_value(json_object_get(t->tree.links, state));
        if (!rname) {
            rc = add_state_field(t, &cf, state);
        } else {
            sw_tlink_t *l = sw_tok__tlink_find(t, rname);
            if (!l) {
                rc = SW_ENOTFOUND;
                break;
            }
            size_t k = 0;
            while (k < f->nwrites && f->writes[k] != l->r)
                k++;
            if (k == f->nwrites) {
                f->writes[k] = l->r;
                f->write_changed[k] = json_object();
                ws.cf[k].n = 0;
                ws.msg[k] = NULL;
                f->nwrites++;
                ws.n++;
            }
            json_object_set(f->write_changed[k], state, json_object_get(f->step.changed, state));
            rc = add_state_field(t, &ws.cf[k], state);
        }
        if (rc)
            break;
    }
    int private_change =
        cf.n > 0 || router_changed || f->new_links || json_array_size(f->step.actions) > 0;
    if (!rc && (router_changed || f->new_links))
        rc = add_meta_field(t, &cf, f->new_links ? f->new_links : t->tree.links);
    if (rc) {
        commit_fields_destroy(&cf);
        shared_writes_destroy(&ws);
        sw_tok__drop_tree(t);
        return sw_tok__fail(t, SW_ERRC_HANDLER_ERROR, "state too large to store");
    }
    for (size_t k = 0; k < ws.n; k++) {
        sw_shared_t *r = f->writes[k];
        json_t *msg = sw_shared_message(r->seq + 1, f->write_changed[k]);
        ws.msg[k] = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        f->write_seq[k] = r->seq + 1;
        ws.sw[k] = (sw_store_shared_write_t){
            .token = r->token,
            .expect_seq = r->seq,
            .fields = ws.cf[k].f,
            .nfields = ws.cf[k].n,
            .message = ws.msg[k],
            .message_len = strlen(ws.msg[k]),
            .claim = ev->conflicts >= 2,
        };
    }
    f->commit_full = 0;
    if (!private_change && ws.n == 0) {
        commit_fields_destroy(&cf);
        return sw_tok__committed_now(t);
    }
    if (!private_change)
        /* Only shared state changed: no delta of the token's own stream,
         * but the write is still fenced by the token's lease. */
        return sw_tok__commit(t, &cf, &ws, 0, NULL, 0, 0);
    sw_buf_t log;
    sw_buf_init(&log, 0);
    uint64_t seq = t->seq + 1;
    sw_msg_encode_delta(&log, seq, -1, f->acc, f->step.actions, 0);
    sw_verdict_t v = sw_tok__commit(t, &cf, &ws, seq, log.data, log.len, 0);
    sw_buf_destroy(&log);
    return v;
}

sw_verdict_t sw_tok__committed(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    int status = f->commit_status;
    int via_store = f->commit_via_store;
    if (via_store) {
        for (size_t i = 0; i < f->nwrites; i++) {
            sw_shared_commit_end(f->writes[i], status, f->write_changed[i], f->write_seq[i]);
            sw_tlink_t *l = sw_tok__tlink_find(t, f->writes[i]->token);
            if (status == 0 && l)
                l->applied_seq = f->write_seq[i]; /* the copy may be past it already */
        }
    }
    if (status == SW_ECONFLICT || status == SW_EAGAIN) {
        /* Another worker changed the shared copy first (reread it), or one
         * that kept losing claimed priority (step aside a moment): run the
         * event again from fresh state; the slots stay ours. */
        sw_tok__drop_tree(t);
        sw_tok__clear_step(t);
        t->lease_held = 1; /* nothing was written; the lease is still ours */
        if (++ev->conflicts > SW_MAX_CONFLICTS) {
            sw_log(SW_LOG_WARN, "token %.8s…: %s lost %u compare-and-set rounds; giving up",
                   t->token, ev->name, ev->conflicts - 1);
            return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "shared state too contended; retry");
        }
        f->phase = SW_PH_LOAD;
        if (status == SW_EAGAIN) {
            f->retry_ms = 2;
            return SW_V_LATER;
        }
        return SW_V_NEXT;
    }
    if (status == SW_ELEASE) {
        SW_STAT_ADD(w->stats, commit_lease_lost, 1);
        t->lease_held = 0;
        sw_tok__drop_tree(t);
        sw_tok__clear_step(t);
        if (!ev->retried) {
            sw_log(SW_LOG_WARN,
                   "token %.8s…: lease lost before the commit of %s (expired or taken); "
                   "retrying once from fresh state",
                   t->token, ev->name);
            ev->retried = 1;
            f->phase = SW_PH_LOAD;
            return SW_V_NEXT;
        }
        sw_log(SW_LOG_WARN, "token %.8s…: lease lost again for %s; giving up", t->token, ev->name);
        return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "state changed hands; retry");
    }
    if (status != 0) {
        /* Outcome unknown: drop the cache; the next load tells the truth and
         * sw_tok__resync_stale() brings clients up to date. */
        SW_STAT_ADD(w->stats, redis_errors, 1);
        t->lease_held = 0;
        sw_tok__drop_tree(t);
        return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
    }
    if (via_store) {
        SW_STAT_ADD(w->stats, commits, 1);
        t->exists = 1;
        if (f->commit_release) {
            t->lease_held = 0;
            t->release_asked = 0;
        }
        if (f->commit_renew)
            t->lease_until_ms = f->commit_sent_ms + w->cfg->lease_ms;
        if (f->commit_refresh)
            t->ttl_refreshed_ms = f->commit_sent_ms;
        if (f->commit_seq)
            t->seq = f->commit_seq;
    }
    if (ev->kind == SW_EV_HELLO) {
        f->phase = SW_PH_WELCOME;
        return SW_V_NEXT;
    }
    if (f->commit_full) {
        json_t *full = sw_tree_full(&t->tree);
        /* a rehydrate (no origin) replaces every client's state */
        sw_tok__deliver(t, ev->origin, ev->id, t->seq, full, NULL, 1, ev->origin != NULL);
        json_decref(full);
        t->old_view = 1;
        SW_STAT_ADD(w->stats, events_ok, 1);
        queue_on_load(t);
        return SW_V_DONE;
    }
    /* the links are committed: now switch the copies */
    f->phase = f->new_links ? SW_PH_LINK : SW_PH_AFTER;
    return SW_V_NEXT;
}
