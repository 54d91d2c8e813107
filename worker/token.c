#include "worker/token.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "worker/shared.h"
#include "worker/wctx.h"

/* Internal events (chained, task steps) may use the queue up to this
 * multiple of max_queue: a handler's sw_ctx_chain fails past it; a task
 * step or on_load event that finds it full is dropped with a log line. */
#define SW_INTERNAL_QUEUE_FACTOR 2
/* Lease busy backoff: first delay, cap. */
#define SW_BUSY_FIRST_MS 5
#define SW_BUSY_MAX_MS 200
/* Compare-and-set retries of one event on contended shared state. */
#define SW_MAX_CONFLICTS 200

enum { WAIT_NONE = 0, WAIT_PREPARE, WAIT_LINK };

static void kick(sw_token_t *t);
static void run_current(sw_token_t *t);
static void run_step(sw_token_t *t);
static void finish_current(sw_token_t *t);
static void prepare(sw_token_t *t);
static void after_commit(sw_token_t *t);
static int clients_hold_state(const sw_token_t *t);
static void hello_sync(sw_token_t *t, sw_peer_t *s);
static int link_phase(sw_token_t *t);

/* ---- events -------------------------------------------------------------- */

sw_event_t *sw_event_new(sw_event_src_t kind, int64_t id, sw_peer_t *origin, const char *name,
                         json_t *payload, json_t *router)
{
    sw_event_t *ev = sw_xcalloc(1, sizeof(*ev));
    ev->kind = kind;
    ev->id = id;
    ev->origin = origin;
    ev->name = sw_xstrdup(name ? name : "");
    ev->payload = payload ? payload : json_object();
    ev->router = router;
    ev->t0_ns = sw_now_ns();
    return ev;
}

void sw_event_free(sw_event_t *ev)
{
    if (!ev)
        return;
    free(ev->name);
    json_decref(ev->payload);
    json_decref(ev->router);
    free(ev);
}

/* ---- tokens -------------------------------------------------------------- */

static void busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

sw_token_t *sw_token_get(sw_worker_t *w, const char *token)
{
    sw_token_t *t = NULL;
    HASH_FIND_STR(w->tokens, token, t);
    if (t)
        return t;
    t = sw_xcalloc(1, sizeof(*t));
    snprintf(t->token, sizeof(t->token), "%s", token);
    t->w = w;
    TAILQ_INIT(&t->queue);
    LIST_INIT(&t->peers);
    LIST_INIT(&t->tasks);
    ev_timer_init(&t->retry_w, busy_retry_cb, 0., 0.);
    HASH_ADD_STR(w->tokens, token, t);
    w->ntokens++;
    return t;
}

const char *sw_token_name(const sw_token_t *t)
{
    return t->token;
}

static int token_connected(const sw_token_t *t)
{
    return t->npeers > 0;
}

static const sw_shared_hooks_t SHARED_HOOKS = {
    .catchup = sw_token_catchup,
    .catchup_group = sw_token_catchup_group,
    .resume = sw_token_resume,
    .name = sw_token_name,
    .connected = token_connected,
};

void sw_token_init(sw_worker_t *w)
{
    w->shared_hooks = &SHARED_HOOKS;
}

int sw_token_idle(const sw_token_t *t)
{
    return !t->current && TAILQ_EMPTY(&t->queue) && !t->pending_store;
}

static void task_free(sw_task_t *task)
{
    ev_timer_stop(task->tok->w->loop, &task->timer);
    LIST_REMOVE(task, link);
    free(task->name);
    json_decref(task->payload);
    free(task);
}

/* Drop the cached state, with what was read along with it (the next event
 * loads again). */
static void drop_tree(sw_token_t *t)
{
    if (t->have_tree) {
        sw_tree_destroy(&t->tree);
        t->have_tree = 0;
    }
    t->old_view = 0;
    json_decref(t->conn_rec);
    t->conn_rec = NULL;
    free(t->live_seen);
    t->live_seen = NULL;
}

static void clear_step(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    if (!f)
        return;
    if (f->have_step) {
        sw_step_destroy(&f->step);
        f->have_step = 0;
    }
    json_decref(f->acc);
    f->acc = NULL;
    json_decref(f->new_links);
    f->new_links = NULL;
    f->link_idx = 0;
    for (size_t i = 0; i < f->nwrites; i++)
        json_decref(f->write_changed[i]);
    f->nwrites = 0;
}

/* t->private_copies, made if NULL (it stays NULL while nothing is linked). */
static json_t *private_copies_make(sw_token_t *t)
{
    if (!t->private_copies)
        t->private_copies = json_object();
    return t->private_copies;
}

/* Recycled in-flight records: one worker per process (worker.h), so this
 * is the worker's free list; at most SW_INFLIGHT_POOL entries. */
static sw_inflight_t *inflight_pool[SW_INFLIGHT_POOL];
static size_t inflight_npool;

/* Give the token an in-flight record (zeroed) unless it has one. */
static void flight_get(sw_token_t *t)
{
    if (t->flight)
        return;
    t->flight =
        inflight_npool ? inflight_pool[--inflight_npool] : sw_xcalloc(1, sizeof(*t->flight));
}

/* Return the token's in-flight record (after clear_step) to the pool. */
static void flight_put(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    if (!f)
        return;
    t->flight = NULL;
    if (inflight_npool < SW_INFLIGHT_POOL) {
        memset(f, 0, sizeof(*f));
        inflight_pool[inflight_npool++] = f;
    } else {
        free(f);
    }
}

/* ---- links to shared tokens ------------------------------------------------ */

static sw_tlink_t *tlink_find(sw_token_t *t, const char *name)
{
    for (size_t i = 0; i < t->ntl; i++)
        if (strcmp(t->tl[i].r->token, name) == 0)
            return &t->tl[i];
    return NULL;
}

/* Link record for shared token `name`, made (and subscribed) if new.
 * NULL past SW_MAX_TOKEN_SHARED (logged). */
static sw_tlink_t *tlink_add(sw_token_t *t, const char *name)
{
    sw_tlink_t *l = tlink_find(t, name);
    if (l)
        return l;
    if (t->ntl >= SW_MAX_TOKEN_SHARED) {
        sw_log(SW_LOG_WARN, "token %.8s…: more than %d shared tokens linked; ignoring %s", t->token,
               SW_MAX_TOKEN_SHARED, name);
        return NULL;
    }
    sw_shared_t *r = sw_shared_get(t->w, name);
    size_t pos = 0; /* keep sorted: write slots are taken in name order */
    while (pos < t->ntl && strcmp(t->tl[pos].r->token, name) < 0)
        pos++;
    t->tl = sw_xrealloc(t->tl, (t->ntl + 1) * sizeof(t->tl[0])); /* sized to the links */
    memmove(&t->tl[pos + 1], &t->tl[pos], (t->ntl - pos) * sizeof(t->tl[0]));
    t->tl[pos] = (sw_tlink_t){.r = r, .applied_seq = 0, .presence_seen = -1};
    t->ntl++;
    sw_shared_link(r, t);
    if (t->presence_on)
        sw_shared_presence(r, t, SW_PRESENCE_ADD);
    return &t->tl[pos];
}

static void tlink_remove(sw_token_t *t, sw_tlink_t *l, sw_presence_op_t op)
{
    sw_shared_t *r = l->r;
    if (t->presence_on)
        sw_shared_presence(r, t, op);
    size_t pos = (size_t)(l - t->tl);
    memmove(&t->tl[pos], &t->tl[pos + 1], (t->ntl - pos - 1) * sizeof(t->tl[0]));
    if (--t->ntl == 0) {
        free(t->tl);
        t->tl = NULL;
    }
    sw_shared_unlink(r, t);
}

/* Make the link records match `links` ({state: shared token}). */
static void sync_tlinks(sw_token_t *t, const json_t *links)
{
    for (size_t i = t->ntl; i-- > 0;) {
        int used = 0;
        const char *state;
        json_t *v;
        json_object_foreach((json_t *)links, state, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), t->tl[i].r->token) == 0)
                used = 1;
        }
        if (!used) /* unlinked by another connection of this token */
            tlink_remove(t, &t->tl[i], SW_PRESENCE_REMOVE);
    }
    const char *state;
    json_t *v;
    json_object_foreach((json_t *)links, state, v)
    {
        if (json_is_string(v))
            tlink_add(t, json_string_value(v));
    }
}

static void presence_all(sw_token_t *t, sw_presence_op_t op)
{
    for (size_t i = 0; i < t->ntl; i++)
        sw_shared_presence(t->tl[i].r, t, op);
}

static void release_slots(sw_token_t *t)
{
    for (size_t i = 0; i < t->ntl; i++)
        sw_shared_release_slot(t->tl[i].r, t);
}

static void release_lease(sw_token_t *t);

static void token_free(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev;
    if (!w->stopping)
        release_lease(t); /* an oplock must not outlive its token */
    while ((ev = TAILQ_FIRST(&t->queue))) {
        TAILQ_REMOVE(&t->queue, ev, link);
        sw_event_free(ev);
    }
    sw_event_free(t->current);
    while (!LIST_EMPTY(&t->tasks))
        task_free(LIST_FIRST(&t->tasks));
    ev_timer_stop(w->loop, &t->retry_w);
    if (t->resume_queued)
        TAILQ_REMOVE(&w->resumes, t, resume_link);
    while (t->ntl)
        tlink_remove(t, &t->tl[t->ntl - 1], SW_PRESENCE_REMOVE);
    clear_step(t);
    flight_put(t);
    drop_tree(t);
    free(t->user);
    json_decref(t->private_copies);
    HASH_DEL(w->tokens, t);
    w->ntokens--;
    free(t);
}

void sw_token_gc(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        if (t->npeers == 0 && LIST_EMPTY(&t->tasks) && sw_token_idle(t) &&
            !ev_is_active(&t->retry_w) && !t->resume_queued)
            token_free(t);
    }
    sw_shared_gc(w);
}

void sw_token_free_all(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        sw_peer_t *s;
        LIST_FOREACH(s, &t->peers, tok_link)
        s->tok = NULL;
        t->presence_on = 0; /* the entries expire; no writes at exit */
        token_free(t);
    }
    sw_shared_free_all(w);
    while (inflight_npool)
        free(inflight_pool[--inflight_npool]);
}

void sw_token_attach(sw_token_t *t, sw_peer_t *s)
{
    LIST_INSERT_HEAD(&t->peers, s, tok_link);
    t->npeers++;
    s->tok = t;
    if (!t->presence_on) {
        t->presence_on = 1;
        presence_all(t, SW_PRESENCE_ADD);
    }
}

void sw_token_detach(sw_token_t *t, sw_peer_t *s)
{
    if (s->welcomed) {
        /* Before any presence removal, on the same connection: a newer
         * connection of this token (a resume elsewhere) keeps its key, and
         * presence removal then leaves the token counted. */
        const char *tok[1] = {t->token}, *sock[1] = {s->sockid};
        sw_store_live(t->w->store, SW_LIVE_DROP, tok, sock, 1, t->w->cfg->presence_ttl_ms);
    }
    LIST_REMOVE(s, tok_link);
    t->npeers--;
    s->tok = NULL;
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &t->queue, link)
    {
        if (ev->origin == s)
            ev->origin = NULL;
    }
    if (t->current && t->current->origin == s)
        t->current->origin = NULL;
    if (t->npeers == 0) {
        if (t->presence_on)
            presence_all(t, SW_PRESENCE_REMOVE);
        t->presence_on = 0;
        if (!t->current)
            drop_tree(t); /* no client view to keep */
    }
    sw_wctx_schedule_gc(t->w);
}

void sw_token_cancel(sw_token_t *t, sw_peer_t *s, int64_t id)
{
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &t->queue, link)
    {
        if (ev->origin == s && ev->id == id &&
            (ev->kind == SW_EV_CLIENT || ev->kind == SW_EV_HYDRATE)) {
            TAILQ_REMOVE(&t->queue, ev, link);
            t->qlen--;
            SW_STAT_ADD(t->w->stats, events_error, 1);
            sw_peer_send_error(s, id, SW_ERRC_CANCELLED, "cancelled");
            sw_event_free(ev);
            return;
        }
    }
    ev = t->current;
    if (ev && ev->origin == s && ev->id == id && ev->kind == SW_EV_CLIENT)
        ev->cancelled = 1; /* after_commit stops it before its next step */
}

void sw_token_enqueue(sw_token_t *t, sw_event_t *ev)
{
    const sw_config_t *cfg = t->w->cfg;
    int internal = ev->kind == SW_EV_CHAINED || ev->kind == SW_EV_TASK_STEP;
    uint32_t bound = internal ? cfg->max_queue * SW_INTERNAL_QUEUE_FACTOR : cfg->max_queue;
    if (t->qlen >= bound) {
        if (ev->origin) {
            char msg[96];
            snprintf(msg, sizeof(msg), "too many queued events (max %u)", cfg->max_queue);
            sw_peer_send_error(ev->origin, ev->id, SW_ERRC_RATE_LIMITED, msg);
        } else {
            sw_log(SW_LOG_WARN, "token %.8s…: event queue full, dropping %s", t->token, ev->name);
        }
        SW_STAT_ADD(t->w->stats, events_error, 1);
        sw_event_free(ev);
        return;
    }
    TAILQ_INSERT_TAIL(&t->queue, ev, link);
    t->qlen++;
    kick(t);
}

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
static void push_front_chained(sw_token_t *t, json_t *chained)
{
    size_t n = json_array_size(chained); /* bounded by the step (sw_step_in_t.max_chained) */
    for (size_t i = n; i-- > 0;) {
        json_t *c = json_array_get(chained, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *payload = json_object_get(c, "payload");
        if (!name)
            continue;
        sw_event_t *ev = sw_event_new(SW_EV_CHAINED, -1, NULL, name,
                                      payload ? json_incref(payload) : NULL, NULL);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        t->qlen++;
    }
}

/* ---- delivery -------------------------------------------------------------- */

/* Send a delta to the token's clients: with `id` to `origin`, without to
 * the others. Sessions not yet welcomed are skipped (their welcome carries
 * a seq at or after this one). */
static void deliver(sw_token_t *t, sw_peer_t *origin, int64_t id, uint64_t seq, const json_t *delta,
                    const json_t *events, int full, int origin_only)
{
    sw_buf_t plain, with_id;
    sw_buf_init(&plain, 0);
    sw_buf_init(&with_id, 0);
    sw_peer_t *s, *next;
    for (s = LIST_FIRST(&t->peers); s; s = next) {
        next = LIST_NEXT(s, tok_link);
        if (!s->welcomed || s->closing)
            continue;
        if (origin_only && s != origin)
            continue;
        sw_buf_t *b = &plain;
        if (s == origin && id >= 0) {
            b = &with_id;
            if (!b->len)
                sw_msg_encode_delta(b, seq, id, delta, events, full);
        } else if (!b->len) {
            sw_msg_encode_delta(b, seq, -1, delta, events, full);
        }
        if (seq > s->client_seq || full)
            s->client_seq = seq;
        if (full)
            s->hydrated = 1;
        sw_out_t out = {.kind = SW_OUT_DELTA, .seq = seq};
        if (sw_peer_send(s, &out, b->data, b->len) == 0) {
            SW_STAT_ADD(t->w->stats, deltas_sent, 1);
            SW_STAT_ADD(t->w->stats, deltas_fanout, b == &plain); /* metrics: sent without id */
        }
    }
    sw_buf_destroy(&plain);
    sw_buf_destroy(&with_id);
}

static void answer_error(sw_token_t *t, sw_event_t *ev, sw_errc_t code, const char *msg)
{
    SW_STAT_ADD(t->w->stats, events_error, 1);
    if (ev->origin) {
        sw_peer_send_error(ev->origin, ev->id, code, msg);
        return;
    }
    if (ev->kind == SW_EV_TASK_STEP || ev->kind == SW_EV_CHAINED) {
        /* No one asked: tell every client of the token, without id. */
        sw_peer_t *s;
        LIST_FOREACH(s, &t->peers, tok_link)
        {
            if (s->welcomed)
                sw_peer_send_error(s, -1, code, msg);
        }
    }
}

/* A client whose seq is behind the store's missed changes made elsewhere
 * (another worker or host, or a commit whose outcome was unknown): give it
 * the whole state before anything else. */
static void resync_stale(sw_token_t *t, sw_peer_t *skip)
{
    json_t *full = NULL;
    sw_peer_t *s;
    LIST_FOREACH(s, &t->peers, tok_link)
    {
        if (!s->welcomed || s->closing || s == skip || s->client_seq >= t->seq)
            continue;
        if (!full)
            full = sw_tree_full(&t->tree);
        sw_buf_t b;
        sw_buf_init(&b, 0);
        sw_msg_encode_delta(&b, t->seq, -1, full, NULL, 1);
        s->client_seq = t->seq;
        sw_out_t out = {.kind = SW_OUT_DELTA, .seq = t->seq};
        sw_peer_send(s, &out, b.data, b.len);
        sw_buf_destroy(&b);
    }
    json_decref(full);
}

/* ---- catching up with shared state -------------------------------------------- */

/* Fold the shared copies into the tree; what the clients did not have yet
 * goes into `delta`. `all` sends every var of the linked states (the tree
 * was not the client view).
 *
 * A link whose tree lags its clients' view (group fan-out, l->lag) first
 * has the view they were sent folded in without a delta (the shared
 * token's snapshot of it), so that what follows is exactly what they
 * miss. When that view is no longer kept, the tree is folded without a
 * delta and the token's clients get one full delta now instead. */
static void fold_shared(sw_token_t *t, json_t *delta, int all)
{
    const char *state;
    json_t *v;
    int full = 0;
    for (size_t i = 0; i < t->ntl; i++) {
        sw_tlink_t *l = &t->tl[i];
        if (!l->lag || !l->r->synced)
            continue;
        l->lag = 0;
        const json_t *snap = sw_shared_snapshot_find(l->r, l->sent_seq, l->sent_presence);
        if (!snap) {
            full = 1;
            continue;
        }
        json_object_foreach(t->tree.links, state, v)
        {
            if (strcmp(json_string_value(v), l->r->token) == 0)
                sw_tree_replace_state(&t->tree, state, json_object_get(snap, state), 0, NULL);
        }
        if (l->sent_presence >= 0)
            sw_tree_set_presence(&t->tree, l->r->token, l->sent_presence, NULL);
        l->applied_seq = l->sent_seq;
        l->presence_seen = l->sent_presence;
    }
    json_t *into = full ? NULL : delta;

    json_object_foreach(t->tree.links, state, v)
    {
        sw_tlink_t *l = tlink_find(t, json_string_value(v));
        if (!l || !l->r->synced)
            continue;
        sw_tree_replace_state(&t->tree, state, json_object_get(l->r->vars, state), all, into);
    }
    for (size_t i = 0; i < t->ntl; i++) {
        sw_tlink_t *l = &t->tl[i];
        if (l->lag)
            continue; /* its copy is being read: folded once it is current */
        if (l->r->synced)
            l->applied_seq = l->r->seq;
        if (l->r->presence >= 0 && (all || l->r->presence != l->presence_seen)) {
            sw_tree_set_presence(&t->tree, l->r->token, l->r->presence, into);
            l->presence_seen = l->r->presence;
        }
    }
    if (full && t->npeers) {
        sw_log(SW_LOG_DEBUG, "token %.8s…: shared view sent is gone; full delta", t->token);
        json_t *f = sw_tree_full(&t->tree);
        deliver(t, NULL, -1, t->seq, f, NULL, 1, 0);
        json_decref(f);
    }
}

static void do_catchup(sw_token_t *t)
{
    t->catchup_pending = 0;
    if (!t->have_tree || !t->old_view || t->npeers == 0)
        return;
    int behind = 0;
    for (size_t i = 0; i < t->ntl; i++) {
        sw_tlink_t *l = &t->tl[i];
        if ((l->r->synced && l->r->seq != l->applied_seq) ||
            (l->r->presence >= 0 && l->r->presence != l->presence_seen))
            behind = 1;
    }
    if (!behind)
        return;
    json_t *delta = json_object();
    fold_shared(t, delta, 0);
    if (json_object_size(delta))
        deliver(t, NULL, -1, t->seq, delta, NULL, 0, 0);
    json_decref(delta);
}

void sw_token_catchup(sw_token_t *t)
{
    if (t->current || t->pending_store) {
        t->catchup_pending = 1;
        return;
    }
    do_catchup(t);
}

/* ---- group fan-out ------------------------------------------------------------ */

/* Clients holding the same view of a shared token: one delta for all. */
typedef struct fanout_group {
    uint64_t seq;     /* the view: shared seq ... */
    int64_t presence; /* ... and presence count the clients hold */
    int have;         /* tail encoded (or found empty) */
    sw_buf_t tail;    /* the delta message after its seq; empty: nothing to send */
} fanout_group_t;

#define SW_FANOUT_GROUPS 4

/* Idle, its tree (or the view its clients were sent) current up to an
 * earlier view of r, linked to r alone with every shared state. */
static int group_eligible(const sw_token_t *t, const sw_shared_t *r)
{
    if (t->current || t->pending_store || !t->have_tree || !t->old_view || t->npeers == 0 ||
        t->ntl != 1 || t->tl[0].r != r)
        return 0;
    const sw_tlink_t *l = &t->tl[0];
    if (l->lag && !sw_shared_snapshot_find(r, l->sent_seq, l->sent_presence))
        return 0;
    return sw_tree_links_all_shared(&t->tree, r->token);
}

/* Send head (this token's seq) + the group's tail to every welcomed
 * client: one copy into each socket's output, no encoding. */
static void deliver_tail(sw_token_t *t, const sw_buf_t *tail)
{
    char head[SW_MSG_DELTA_HEAD_MAX];
    size_t hlen = sw_msg_delta_head(head, sizeof(head), t->seq);
    sw_peer_t *s, *next;
    for (s = LIST_FIRST(&t->peers); s; s = next) {
        next = LIST_NEXT(s, tok_link);
        if (!s->welcomed || s->closing)
            continue;
        struct iovec iov[2] = {{head, hlen}, {tail->data, tail->len}};
        sw_out_t out = {.kind = SW_OUT_DELTA, .seq = t->seq};
        if (sw_peer_sendv(s, &out, iov, 2) == 0) {
            SW_STAT_ADD(t->w->stats, deltas_sent, 1);
            SW_STAT_ADD(t->w->stats, deltas_fanout, 1); /* metrics: sent without id */
        }
    }
}

void sw_token_catchup_group(sw_shared_t *r, sw_token_t *const *toks, size_t n)
{
    fanout_group_t g[SW_FANOUT_GROUPS];
    size_t ng = 0;
    int grouping = r->synced && r->presence >= 0;
    if (grouping)
        sw_shared_snapshot(r, r->presence); /* what the groups get sent */
    for (size_t i = 0; i < n; i++) {
        sw_token_t *t = toks[i];
        if (!grouping || !group_eligible(t, r)) {
            sw_token_catchup(t);
            continue;
        }
        sw_tlink_t *l = &t->tl[0];
        uint64_t vseq = l->lag ? l->sent_seq : l->applied_seq;
        int64_t vpres = l->lag ? l->sent_presence : l->presence_seen;
        if (vseq == r->seq && vpres == r->presence)
            continue; /* its clients are current */
        fanout_group_t *gr = NULL;
        for (size_t k = 0; k < ng && !gr; k++)
            if (g[k].seq == vseq && g[k].presence == vpres)
                gr = &g[k];
        if (!gr && ng < SW_FANOUT_GROUPS) {
            gr = &g[ng++];
            *gr = (fanout_group_t){.seq = vseq, .presence = vpres};
            sw_buf_init(&gr->tail, 0);
        }
        if (!gr) {
            sw_token_catchup(t);
            continue;
        }
        if (!gr->have) {
            /* The first of the group folds the copy into its tree; what
             * its clients miss is what every client of the group misses. */
            json_t *delta = json_object();
            fold_shared(t, delta, 0);
            gr->have = 1;
            if (json_object_size(delta))
                sw_msg_encode_delta_tail(&gr->tail, delta, NULL, 0);
            json_decref(delta);
        } else {
            /* The others only remember what their clients were sent. */
            l->lag = 1;
            l->sent_seq = r->seq;
            l->sent_presence = r->presence;
        }
        if (gr->tail.len)
            deliver_tail(t, &gr->tail);
    }
    for (size_t k = 0; k < ng; k++)
        sw_buf_destroy(&g[k].tail);
}

void sw_token_resume(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    if (t->resume_queued)
        return;
    t->resume_queued = 1;
    TAILQ_INSERT_TAIL(&w->resumes, t, resume_link);
    ev_idle_start(w->loop, &w->resume_w);
}

void sw_token_run_resumes(sw_worker_t *w)
{
    sw_token_t *t;
    while ((t = TAILQ_FIRST(&w->resumes))) {
        TAILQ_REMOVE(&w->resumes, t, resume_link);
        t->resume_queued = 0;
        int waiting = t->waiting;
        if (!t->current || !waiting)
            continue;
        t->waiting = WAIT_NONE;
        if (waiting == WAIT_PREPARE)
            prepare(t);
        else if (link_phase(t))
            after_commit(t);
    }
}

/* ---- the pipeline ------------------------------------------------------------ */

static void on_loaded(void *udata, const sw_store_loaded_t *res);
static void on_committed(void *udata, int status);

static void start_load(sw_token_t *t)
{
    t->flight->load_sent_ms = sw_now_ms();
    int rc = sw_store_acquire_load(t->w->store, t->token, on_loaded, t);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return;
    }
    t->pending_store = 1;
}

/* Start the next queued event if none is in flight. Events that fail
 * without reaching the store are answered and the loop goes on. */
static void kick(sw_token_t *t)
{
    if (t->in_kick) /* an event finished inside the loop below: it goes on */
        return;
    t->in_kick = 1;
    while (!t->current && !t->pending_store && !ev_is_active(&t->retry_w)) {
        sw_event_t *ev = TAILQ_FIRST(&t->queue);
        if (!ev)
            break;
        TAILQ_REMOVE(&t->queue, ev, link);
        t->qlen--;
        t->current = ev;
        flight_get(t);
        t->flight->busy_since_ms = 0;
        t->flight->busy_delay_ms = 0;
        t->flight->asked_holder = 0;
        uint64_t now = sw_now_ms();
        t->last_active_ms = now;
        if (t->have_tree && t->lease_held && now + t->w->cfg->lease_ms / 4 < t->lease_until_ms) {
            /* The oplock: the lease is ours and the state cached, so the
             * event needs no load (one round trip: the commit). */
            prepare(t);
        } else {
            start_load(t);
        }
    }
    t->in_kick = 0;
}

static void release_lease(sw_token_t *t)
{
    if (t->lease_held) {
        sw_store_release(t->w->store, t->token);
        t->lease_held = 0;
    }
    t->release_asked = 0;
}

/* Keep the lease between events (the oplock) unless someone asked for it,
 * the worker drains, or nothing is cached to use it with. */
static int keep_lease(const sw_token_t *t)
{
    return t->have_tree && !t->release_asked && !t->w->draining;
}

void sw_token_close_socket(sw_worker_t *w, const char *token, const char *sockid)
{
    sw_token_t *t = NULL;
    HASH_FIND_STR(w->tokens, token, t);
    if (!t)
        return;
    sw_peer_t *s;
    LIST_FOREACH(s, &t->peers, tok_link)
    {
        if (strcmp(s->sockid, sockid) == 0) {
            sw_log(SW_LOG_INFO, "token %.8s…: closing a socket replaced by a resume", t->token);
            sw_peer_close(s, 4001, "replaced by a resumed connection");
            return;
        }
    }
}

/* What a dropped state tree frees, in sw_conn_env_heap_freed units
 * (hibernated conns' worth): 16 dropped trees make a release. */
#define SW_TREE_HEAP_UNITS 4

void sw_token_sweep_leases(sw_worker_t *w, uint64_t idle_ms)
{
    uint64_t now = sw_now_ms();
    size_t dropped = 0;
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        if (!t->lease_held || t->current || t->pending_store)
            continue;
        if (now - t->last_active_ms >= idle_ms || now + w->cfg->lease_ms / 4 >= t->lease_until_ms ||
            !keep_lease(t)) {
            release_lease(t);
            /* Without the lease the cached state may go stale, and a token
             * linked to nothing gets no fan-out: its tree is only memory
             * now (the next event reloads). Linked tokens keep the client
             * view that fan-out deltas are computed against. */
            if (t->ntl == 0) {
                dropped += t->have_tree ? 1 : 0;
                drop_tree(t);
            }
        }
    }
    /* The trees of idle tokens are the last heap an idle connection frees
     * (after its conn hibernated): the pages go back to the OS through the
     * worker's one release throttle. */
    if (dropped)
        sw_conn_env_heap_freed(&w->conns, dropped * SW_TREE_HEAP_UNITS);
}

void sw_token_lease_wanted(sw_worker_t *w, const char *token)
{
    sw_token_t *t = NULL;
    HASH_FIND_STR(w->tokens, token, t);
    if (!t || !t->lease_held)
        return;
    SW_STAT_ADD(w->stats, lease_handoffs, 1); /* metrics: now or after the event in flight */
    if (t->current || t->pending_store)
        t->release_asked = 1; /* released when the event in flight is done */
    else
        release_lease(t);
}

/* The current event is done (answered or failed): free it, give back the
 * lease and the shared write slots, catch up with shared changes that
 * arrived meanwhile, and start the next one. The tree stays as the client
 * view while the token has clients. */
static void finish_current(sw_token_t *t)
{
    if (t->current && t->current->kind == SW_EV_CLIENT) /* metrics: arrival to answer */
        sw_stats_observe(t->w->stats, SW_HIST_EVENT, sw_now_ns() - t->current->t0_ns);
    release_slots(t);
    clear_step(t);
    flight_put(t);
    t->waiting = WAIT_NONE;
    /* A hello's tree is nobody's view, unless other clients of the token
     * hold state: then it is theirs, and their catch-ups need it. */
    if (t->npeers == 0 || (t->current && t->current->kind == SW_EV_HELLO && !clients_hold_state(t)))
        drop_tree(t);
    if (!keep_lease(t))
        release_lease(t);
    t->last_active_ms = sw_now_ms();
    sw_event_free(t->current);
    t->current = NULL;
    if (t->catchup_pending)
        do_catchup(t);
    kick(t);
    if (sw_token_idle(t) && t->npeers == 0)
        sw_wctx_schedule_gc(t->w);
}

static void busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_token_t *t = sw_container_of(w, sw_token_t, retry_w);
    if (t->current)
        start_load(t);
    else
        kick(t);
}

static json_t *load_meta(sw_token_t *t, const char *mp, size_t len)
{
    int err = 0;
    json_t *meta = sw_mpjson_decode(mp, len, &err);
    if (!json_is_object(meta)) {
        sw_log(SW_LOG_WARN, "token %.8s…: unreadable _meta (%s), using defaults", t->token,
               sw_strerror(err));
        json_decref(meta);
        return NULL;
    }
    return meta;
}

static void on_loaded(void *udata, const sw_store_loaded_t *res)
{
    sw_token_t *t = udata;
    sw_worker_t *w = t->w;
    t->pending_store = 0;
    if (!t->current) { /* cannot happen: loads are made for the current event */
        kick(t);
        return;
    }
    if (res->status == SW_EBUSY) {
        uint64_t now = sw_now_ms();
        sw_inflight_t *f = t->flight;
        if (!f->busy_since_ms)
            f->busy_since_ms = now;
        if (now - f->busy_since_ms > (uint64_t)w->cfg->lease_ms + 1000) {
            sw_log(SW_LOG_WARN, "token %.8s…: lease held elsewhere for %llu ms, giving up on %s",
                   t->token, (unsigned long long)(now - f->busy_since_ms), t->current->name);
            answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE,
                         "state is locked by another worker; retry");
            finish_current(t);
            return;
        }
        if (!f->asked_holder && res->holder_len > 0 && res->holder_len < 64) {
            /* Ask the holder (its inbox) to finish and hand the lease over;
             * no keyspace notifications involved. */
            char inbox[80];
            snprintf(inbox, sizeof(inbox), "inbox:%.*s", (int)res->holder_len, res->holder);
            sw_store_publish(w->store, inbox, t->token, strlen(t->token));
            f->asked_holder = 1;
        }
        f->busy_delay_ms =
            f->busy_delay_ms ? SW_MIN(f->busy_delay_ms * 2, SW_BUSY_MAX_MS) : SW_BUSY_FIRST_MS;
        ev_timer_set(&t->retry_w, f->busy_delay_ms / 1000., 0.);
        ev_timer_start(w->loop, &t->retry_w);
        return;
    }
    if (res->status != 0) {
        SW_STAT_ADD(w->stats, redis_errors, 1);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return;
    }
    t->lease_held = 1;
    t->lease_until_ms = t->flight->load_sent_ms + w->cfg->lease_ms;

    /* The new tree: private states from the store. */
    json_t *conn_rec = NULL;
    char *user = NULL;
    sw_tree_t fresh;
    sw_tree_init(&fresh, w->app);
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *f = &res->fields[i];
        char name[256];
        if (f->name_len >= sizeof(name))
            continue;
        memcpy(name, f->name, f->name_len);
        name[f->name_len] = '\0';
        if (strcmp(name, "_conn") == 0) {
            json_decref(conn_rec);
            conn_rec = json_loadb(f->data, f->len, 0, NULL);
            continue;
        }
        if (strcmp(name, "_user") == 0) {
            free(user);
            user = f->len ? sw_xstrndup(f->data, SW_MIN(f->len, (size_t)SW_USER_MAX)) : NULL;
            continue;
        }
        int rc = sw_tree_load_state(&fresh, name, f->data, f->len);
        if (rc == SW_EINVAL)
            sw_log(SW_LOG_WARN, "token %.8s…: state %s unreadable, using defaults", t->token, name);
    }
    json_t *meta = res->meta ? load_meta(t, res->meta, res->meta_len) : NULL;
    json_t *router = json_object_get(meta, "router");
    if (json_is_object(router))
        sw_tree_set_router(&fresh, json_incref(router), NULL);
    json_t *links = json_object_get(meta, "links");
    if (json_is_object(links) && json_object_size(links))
        sw_tree_set_links(&fresh, json_incref(links), NULL);
    sw_tree_recompute_all(&fresh);

    /* Keep the private copies of linked states (unlink restores them), and
     * start linked states from what the clients hold (the old view) so
     * that folding in the shared copy yields what they miss. */
    json_decref(t->private_copies);
    t->private_copies = NULL; /* made on first use: most tokens link nothing */
    int old_view = t->have_tree && t->old_view;
    const char *state;
    json_t *v;
    json_object_foreach(fresh.links, state, v)
    {
        json_t *priv = sw_tree_state_vars(&fresh, state);
        if (priv)
            json_object_set_new(private_copies_make(t), state, json_deep_copy(priv));
        if (old_view && json_equal(json_object_get(t->tree.links, state), v))
            sw_tree_replace_state(&fresh, state, sw_tree_state_vars(&t->tree, state), 1, NULL);
    }
    if (old_view) {
        const char *r;
        json_t *n;
        json_object_foreach(t->tree.presence, r, n)
            sw_tree_set_presence(&fresh, r, json_integer_value(n), NULL);
    }
    drop_tree(t);
    t->tree = fresh;
    t->have_tree = 1;
    t->old_view = old_view;
    t->conn_rec = conn_rec;
    free(t->user);
    t->user = user;
    if (res->live && res->live_len) /* sw:{T}:live, as the store had it */
        t->live_seen = sw_xstrndup(res->live, SW_MIN(res->live_len, 63));
    t->exists = res->exists;
    t->seq = res->seq;
    sync_tlinks(t, t->tree.links);
    json_decref(meta);
    prepare(t);
}

/* Before a hydrate or a handler step: take the write slot of every linked
 * shared token (in name order) with a current copy, then fold the copies
 * in. Waits (resumed later) when a slot is busy or a copy is being read. */
/* Hex SHA-256 of a conn_token: what the store keeps (never the token). */
static void conn_token_hash(const char *tok, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(tok, strlen(tok), md, &n, EVP_sha256(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32 && i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* Does the HELLO's resume match the stored connection record? Compared in
 * constant time; the conn_token itself is never stored or logged. */
static int resume_valid(const sw_token_t *t, const json_t *resume)
{
    const char *cid = json_string_value(json_object_get(resume, "conn_id"));
    const char *ctok = json_string_value(json_object_get(resume, "conn_token"));
    const char *rid = json_string_value(json_object_get(t->conn_rec, "id"));
    const char *rkh = json_string_value(json_object_get(t->conn_rec, "kh"));
    if (!cid || !ctok || !rid || !rkh || strlen(rkh) != 64)
        return 0;
    char kh[65];
    conn_token_hash(ctok, kh);
    int id_ok = sw_secure_equal(cid, strlen(cid), rid, strlen(rid));
    int kh_ok = sw_secure_equal(kh, 64, rkh, 64);
    return id_ok & kh_ok;
}

/* A session that holds state (it got a full delta) of a token whose state
 * is gone from the store (expired): the server rehydrates first. */
static int clients_hold_state(const sw_token_t *t)
{
    const sw_peer_t *s;
    LIST_FOREACH(s, &t->peers, tok_link)
    {
        if (s->hydrated)
            return 1;
    }
    return 0;
}

static void prepare(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    if (ev->kind == SW_EV_HELLO) {
        json_t *resume = json_object_get(ev->payload, "resume");
        sw_inflight_t *f = t->flight;
        f->hello_resume = SW_HELLO_FRESH;
        if (json_is_true(json_object_get(resume, "sse")))
            /* an EventSource reconnecting by itself (Last-Event-ID, same
             * URL, no credentials): run_hello decides */
            f->hello_resume = json_is_true(json_object_get(t->conn_rec, "sse")) ? SW_HELLO_BARE_SSE
                                                                                : SW_HELLO_FRESH;
        else if (resume)
            f->hello_resume = resume_valid(t, resume) ? SW_HELLO_RESUME : SW_HELLO_REFUSED;
        if (f->hello_resume > 0 && t->ntl) {
            /* a resumed client of shared state gets it current: the copies */
            for (size_t i = 0; i < t->ntl; i++) {
                int rc = sw_shared_want_sync(t->tl[i].r, t);
                if (rc == 0) {
                    t->waiting = WAIT_PREPARE;
                    return;
                }
            }
            fold_shared(t, NULL, 1);
        }
    } else {
        if (!t->exists && ev->kind != SW_EV_HYDRATE && clients_hold_state(t)) {
            /* The state expired in the store while clients hold it: run a
             * hydrate first (defaults + on_load, a full delta to every
             * client), then this event. */
            sw_peer_t *s = ev->origin ? ev->origin : LIST_FIRST(&t->peers);
            json_t *router = ev->router       ? json_incref(ev->router)
                             : s && s->router ? json_loads(s->router, 0, NULL)
                                              : NULL;
            sw_event_t *h = sw_event_new(SW_EV_HYDRATE, -1, NULL, "hydrate", NULL, router);
            sw_log(SW_LOG_INFO, "token %.8s…: state expired in the store; rehydrating", t->token);
            TAILQ_INSERT_HEAD(&t->queue, ev, link);
            TAILQ_INSERT_HEAD(&t->queue, h, link);
            t->qlen += 2;
            t->current = NULL;
            kick(t);
            return;
        }
        for (size_t i = 0; i < t->ntl; i++) {
            int rc = sw_shared_want_slot(t->tl[i].r, t);
            if (rc == 0) {
                t->waiting = WAIT_PREPARE;
                return;
            }
            if (rc < 0) {
                answer_error(t, ev, SW_ERRC_STATE_UNAVAILABLE, "shared state unavailable; retry");
                drop_tree(t);
                finish_current(t);
                return;
            }
        }
        clear_step(t);
        t->flight->acc = json_object();
        fold_shared(t, t->flight->acc, !t->old_view);
    }
    run_current(t);
}

static void send_welcome(sw_token_t *t, sw_peer_t *s, int resumed)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_msg_encode_welcome(&b, t->token, s->conn_id, s->conn_token, resumed, t->seq);
    s->client_seq = t->seq;
    sw_out_t out = {.kind = SW_OUT_WELCOME};
    sw_peer_send(s, &out, b.data, b.len);
    sw_buf_destroy(&b);
    /* What it sent before its welcome joins this token's queue, behind
     * the HELLO (and so after the resume sync). */
    sw_peer_welcomed(s);
}

static void send_full(sw_token_t *t, sw_peer_t *s)
{
    json_t *full = sw_tree_full(&t->tree);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_msg_encode_delta(&b, t->seq, -1, full, NULL, 1);
    sw_out_t out = {.kind = SW_OUT_DELTA, .seq = t->seq};
    sw_peer_send(s, &out, b.data, b.len);
    sw_buf_destroy(&b);
    json_decref(full);
    s->client_seq = t->seq;
    s->hydrated = 1;
    t->old_view = 1;
}

/* Replay of the missed deltas for a resumed session: every entry must be
 * there with the right seq, else the client gets one full delta. */
static void on_replay(void *udata, int status, const char *const *entries, const size_t *lens,
                      size_t n)
{
    sw_token_t *t = udata;
    t->pending_store = 0;
    sw_event_t *ev = t->current;
    if (!ev)
        return;
    sw_peer_t *s = ev->origin;
    uint64_t first = (uint64_t)json_integer_value(
                         json_object_get(json_object_get(ev->payload, "resume"), "last_seq")) +
                     1;
    int whole = status == 0 && n == t->seq - first + 1;
    for (size_t i = 0; whole && i < n; i++) {
        const char *p = entries[i] ? memmem(entries[i], lens[i], "\"seq\":", 6) : NULL;
        if (!p || strtoull(p + 6, NULL, 10) != first + i)
            whole = 0;
    }
    SW_STAT_ADD(t->w->stats, resumes[whole ? SW_RESUME_REPLAYED : SW_RESUME_FULL], 1); /* metrics */
    if (s && whole) {
        for (size_t i = 0; i < n; i++) {
            sw_out_t out = {.kind = SW_OUT_DELTA, .seq = first + i};
            sw_peer_send(s, &out, entries[i], lens[i]);
        }
        s->client_seq = t->seq;
        s->hydrated = 1;
    } else if (s) {
        send_full(t, s);
    }
    SW_STAT_ADD(t->w->stats, events_ok, 1);
    finish_current(t);
}

/* Encoded fields of a commit, kept until the store has copied them, which
 * sw_store_commit does before returning. */
typedef struct commit_fields {
    sw_store_field_t f[64];
    sw_buf_t bufs[64];
    size_t n;
} commit_fields_t;

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

/* The "_conn" field: the connection record a resume is checked against;
 * and "_user" when this connection binds the token to its user. */
static int add_conn_field(sw_token_t *t, commit_fields_t *cf, const sw_peer_t *s)
{
    if (s->user && !t->user) {
        sw_buf_t *u = &cf->bufs[cf->n];
        sw_buf_init(u, 0);
        sw_buf_append(u, s->user, strlen(s->user));
        cf->f[cf->n] = (sw_store_field_t){"_user", 5, u->data, u->len};
        cf->n++;
    }
    char kh[65];
    conn_token_hash(s->conn_token, kh);
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    sw_buf_printf(b, "{\"id\":\"%s\",\"kh\":\"%s\"%s}", s->conn_id, kh,
                  s->sse ? ",\"sse\":true" : "");
    cf->f[cf->n] = (sw_store_field_t){"_conn", 5, b->data, b->len};
    cf->n++;
    return 0;
}

static void commit_fields_destroy(commit_fields_t *cf)
{
    for (size_t i = 0; i < cf->n; i++)
        sw_buf_destroy(&cf->bufs[i]);
}

/* Shared writes of a commit, one per shared token. */
typedef struct shared_writes {
    sw_store_shared_write_t sw[SW_MAX_TOKEN_SHARED];
    commit_fields_t cf[SW_MAX_TOKEN_SHARED];
    char *msg[SW_MAX_TOKEN_SHARED];
    size_t n;
} shared_writes_t;

static void shared_writes_destroy(shared_writes_t *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        commit_fields_destroy(&ws->cf[i]);
        free(ws->msg[i]);
    }
    ws->n = 0;
}

/* Send the fenced commit. seq 0 keeps the seq (no delta of the stream);
 * log_entry NULL writes no log entry. The lease is kept (the oplock)
 * unless `release` or keep_lease() says otherwise. Returns 0 when the
 * commit is in flight; otherwise the event has been answered and finished. */
static int commit(sw_token_t *t, commit_fields_t *cf, shared_writes_t *ws, uint64_t seq,
                  const char *log_entry, size_t log_len, int release)
{
    const sw_config_t *cfg = t->w->cfg;
    uint64_t now = sw_now_ms();
    if (!release && !keep_lease(t))
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
    int rc = sw_store_commit(t->w->store, &c, on_committed, t);
    commit_fields_destroy(cf);
    if (ws)
        shared_writes_destroy(ws);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        for (size_t i = 0; i < f->nwrites; i++)
            sw_shared_commit_end(f->writes[i], rc, NULL, 0);
        drop_tree(t);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return rc;
    }
    for (size_t i = 0; i < f->nwrites; i++)
        sw_shared_commit_begin(f->writes[i]);
    t->pending_store = 1;
    return 0;
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

/* hydrate: persist a brand-new token's defaults and the router, answer one
 * full delta, then run the route's on_load handlers as chained events. */
static void run_hydrate(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    int router_changed = 0;
    if (ev->router && !json_equal(ev->router, t->tree.router)) {
        /* the event keeps its router: a retry from fresh state needs it */
        sw_tree_set_router(&t->tree, json_incref(ev->router), NULL);
        router_changed = 1;
    }
    t->flight->commit_full = 1;
    if (t->exists && !router_changed) {
        on_committed(t, 0); /* nothing to write: answer now */
        return;
    }
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
        answer_error(t, ev, SW_ERRC_HANDLER_ERROR, "state too large to store");
        finish_current(t);
        return;
    }
    commit(t, &cf, NULL, 0, NULL, 0, 0);
}

static void merge_delta(json_t *acc, json_t *delta)
{
    const char *state;
    json_t *vars;
    json_object_foreach(delta, state, vars)
    {
        json_t *dst = json_object_get(acc, state);
        if (!dst)
            json_object_set(acc, state, vars);
        else
            json_object_update(dst, vars);
    }
}

static void task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_task_t *task = sw_container_of(w, sw_task_t, timer);
    sw_event_t *ev =
        sw_event_new(SW_EV_TASK_STEP, -1, NULL, task->name, json_incref(task->payload), NULL);
    ev->task = task;
    ev->step = task->step;
    sw_token_enqueue(task->tok, ev);
}

static void task_schedule(sw_token_t *t, sw_event_t *ev, unsigned sleep_ms)
{
    sw_task_t *task = ev->task;
    if (!task) {
        task = sw_xcalloc(1, sizeof(*task));
        task->tok = t;
        task->name = sw_xstrdup(ev->name);
        task->payload = json_incref(ev->payload);
        ev_timer_init(&task->timer, task_timer_cb, 0., 0.);
        LIST_INSERT_HEAD(&t->tasks, task, link);
    }
    task->step = ev->step + 1;
    ev_timer_set(&task->timer, sleep_ms / 1000., 0.);
    ev_timer_start(t->w->loop, &task->timer);
}

/* The links after applying the step's link ops, or NULL when unchanged. */
static json_t *links_after(const sw_token_t *t, const json_t *ops)
{
    if (!json_array_size(ops))
        return NULL;
    json_t *links = json_deep_copy(t->tree.links);
    size_t i;
    json_t *op;
    json_array_foreach((json_t *)ops, i, op)
    {
        const char *kind = json_string_value(json_object_get(op, "op"));
        const char *state = json_string_value(json_object_get(op, "state"));
        if (!kind || !state)
            continue;
        if (strcmp(kind, "link") == 0)
            json_object_set(links, state, json_object_get(op, "token"));
        else
            json_object_del(links, state);
    }
    if (json_equal(links, t->tree.links)) {
        json_decref(links);
        return NULL;
    }
    return links;
}

static void fail_current(sw_token_t *t, sw_errc_t code, const char *msg)
{
    sw_event_t *ev = t->current;
    /* Shared changes folded in before the handler ran are in the tree:
     * the clients get them even though the event failed. */
    if (t->have_tree && t->flight->acc && json_object_size(t->flight->acc))
        deliver(t, NULL, -1, t->seq, t->flight->acc, NULL, 0, 0);
    answer_error(t, ev, code, msg);
    if (ev->task)
        task_free(ev->task);
    finish_current(t);
}

/* Run one handler step of the current event and commit what it changed:
 * private states with the token's own seq and log (fenced by its lease),
 * linked states into their shared tokens (compare-and-set, published). */
static void run_step(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (kind == SW_EVENT_UNKNOWN) {
        char msg[SW_EVENT_NAME_MAX + 32];
        snprintf(msg, sizeof(msg), "no handler %s", ev->name);
        fail_current(t, SW_ERRC_UNKNOWN_EVENT, msg);
        return;
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
    if (f->step.status < 0) {
        fail_current(t, sw_errc_parse(f->step.error_code), f->step.error_msg);
        return;
    }
    merge_delta(f->acc, f->step.delta);
    json_decref(f->new_links);
    f->new_links = links_after(t, f->step.link_ops);

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
            sw_tlink_t *l = tlink_find(t, rname);
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
        drop_tree(t);
        fail_current(t, SW_ERRC_HANDLER_ERROR, "state too large to store");
        return;
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
        on_committed(t, 0);
        return;
    }
    if (!private_change) {
        /* Only shared state changed: no delta of the token's own stream,
         * but the write is still fenced by the token's lease. */
        commit(t, &cf, &ws, 0, NULL, 0, 0);
        return;
    }
    sw_buf_t log;
    sw_buf_init(&log, 0);
    uint64_t seq = t->seq + 1;
    sw_msg_encode_delta(&log, seq, -1, f->acc, f->step.actions, 0);
    commit(t, &cf, &ws, seq, log.data, log.len, 0);
    sw_buf_destroy(&log);
}

/* After a successful commit: apply link/unlink ops to the tree. Returns 1
 * when done, 0 when waiting for a shared copy (resumed later). */
static int link_phase(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    json_t *ops = f->have_step ? f->step.link_ops : NULL;
    for (; f->link_idx < json_array_size(ops); f->link_idx++) {
        json_t *op = json_array_get(ops, f->link_idx);
        const char *kind = json_string_value(json_object_get(op, "op"));
        const char *state = json_string_value(json_object_get(op, "state"));
        if (!kind || !state)
            continue;
        json_t *links = json_deep_copy(t->tree.links);
        if (strcmp(kind, "link") == 0) {
            const char *rname = json_string_value(json_object_get(op, "token"));
            sw_tlink_t *l = rname ? tlink_add(t, rname) : NULL;
            if (!l) {
                json_decref(links);
                continue;
            }
            int rc = sw_shared_want_sync(l->r, t);
            if (rc == 0) {
                json_decref(links);
                t->waiting = WAIT_LINK;
                return 0;
            }
            if (rc < 0) {
                /* The link is committed but the shared copy is out of
                 * reach: forget the view; the next event folds it in. */
                json_decref(links);
                drop_tree(t);
                fail_current(t, SW_ERRC_STATE_UNAVAILABLE, "shared state unavailable; retry");
                return 0;
            }
            json_t *priv = sw_tree_state_vars(&t->tree, state);
            if (priv && !json_object_get(t->tree.links, state))
                json_object_set_new(private_copies_make(t), state, json_deep_copy(priv));
            json_object_set_new(links, state, json_string(rname));
            sw_tree_set_links(&t->tree, links, f->acc);
            sw_tree_replace_state(&t->tree, state, json_object_get(l->r->vars, state), 1, f->acc);
            l->applied_seq = l->r->seq;
            if (l->r->presence >= 0) {
                sw_tree_set_presence(&t->tree, l->r->token, l->r->presence, f->acc);
                l->presence_seen = l->r->presence;
            }
        } else {
            const char *rname = json_string_value(json_object_get(t->tree.links, state));
            if (!rname) {
                json_decref(links);
                continue;
            }
            char rcopy[SW_SHARED_TOKEN_MAX + 1];
            snprintf(rcopy, sizeof(rcopy), "%s", rname);
            json_object_del(links, state);
            int still = 0;
            const char *s2;
            json_t *v2;
            json_object_foreach(links, s2, v2)
            {
                if (strcmp(json_string_value(v2), rcopy) == 0)
                    still = 1;
            }
            sw_tree_set_links(&t->tree, links, f->acc);
            sw_tree_replace_state(&t->tree, state, json_object_get(t->private_copies, state), 1,
                                  f->acc);
            json_object_del(t->private_copies, state); /* NULL: nothing to delete */
            if (t->private_copies && json_object_size(t->private_copies) == 0) {
                json_decref(t->private_copies);
                t->private_copies = NULL;
            }
            sw_tlink_t *l = tlink_find(t, rcopy);
            if (l && !still)
                tlink_remove(t, l, SW_PRESENCE_UNLINK);
        }
    }
    return 1;
}

static void on_committed(void *udata, int status)
{
    sw_token_t *t = udata;
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    int via_store = t->pending_store;
    t->pending_store = 0;
    if (!ev) {
        kick(t);
        return;
    }
    sw_inflight_t *f = t->flight;
    if (via_store) {
        for (size_t i = 0; i < f->nwrites; i++) {
            sw_shared_commit_end(f->writes[i], status, f->write_changed[i], f->write_seq[i]);
            sw_tlink_t *l = tlink_find(t, f->writes[i]->token);
            if (status == 0 && l)
                l->applied_seq = f->write_seq[i]; /* the copy may be past it already */
        }
    }
    if (status == SW_ECONFLICT || status == SW_EAGAIN) {
        /* Another worker changed the shared copy first (reread it), or one
         * that kept losing claimed priority (step aside a moment): run the
         * event again from fresh state; the slots stay ours. */
        drop_tree(t);
        clear_step(t);
        t->lease_held = 1; /* nothing was written; the lease is still ours */
        if (++ev->conflicts > SW_MAX_CONFLICTS) {
            sw_log(SW_LOG_WARN, "token %.8s…: %s lost %u compare-and-set rounds; giving up",
                   t->token, ev->name, ev->conflicts - 1);
            fail_current(t, SW_ERRC_STATE_UNAVAILABLE, "shared state too contended; retry");
            return;
        }
        if (status == SW_EAGAIN) {
            ev_timer_set(&t->retry_w, 0.002, 0.);
            ev_timer_start(w->loop, &t->retry_w);
            return;
        }
        start_load(t);
        return;
    }
    if (status == SW_ELEASE) {
        SW_STAT_ADD(w->stats, commit_lease_lost, 1);
        t->lease_held = 0;
        drop_tree(t);
        clear_step(t);
        if (!ev->retried) {
            sw_log(SW_LOG_WARN,
                   "token %.8s…: lease lost before commit of %s (expired or taken); "
                   "retrying once from fresh state",
                   t->token, ev->name);
            ev->retried = 1;
            start_load(t);
            return;
        }
        sw_log(SW_LOG_WARN, "token %.8s…: lease lost again for %s; giving up", t->token, ev->name);
        fail_current(t, SW_ERRC_STATE_UNAVAILABLE, "state changed hands; retry");
        return;
    }
    if (status != 0) {
        /* Outcome unknown: drop the cache; the next load tells the truth and
         * resync_stale() brings clients up to date. */
        SW_STAT_ADD(w->stats, redis_errors, 1);
        t->lease_held = 0;
        drop_tree(t);
        fail_current(t, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        return;
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
        if (ev->origin) {
            if (via_store && ev->origin->user && !t->user) /* the commit bound the token */
                t->user = sw_xstrdup(ev->origin->user);
            send_welcome(t, ev->origin, f->hello_resume == SW_HELLO_RESUME);
            if (f->hello_resume == SW_HELLO_RESUME) {
                hello_sync(t, ev->origin);
                return;
            }
        }
        finish_current(t);
        return;
    }
    if (f->commit_full) {
        json_t *full = sw_tree_full(&t->tree);
        /* a rehydrate (no origin) replaces every client's state */
        deliver(t, ev->origin, ev->id, t->seq, full, NULL, 1, ev->origin != NULL);
        json_decref(full);
        t->old_view = 1;
        SW_STAT_ADD(w->stats, events_ok, 1);
        queue_on_load(t);
        finish_current(t);
        return;
    }
    if (f->new_links) /* the links are committed: now switch the copies */
        if (!link_phase(t))
            return;
    after_commit(t);
}

/* Deliver the step's delta, queue what it chained, and go on (next step
 * of a yielding handler, next task step, or the next event). */
static void after_commit(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    int64_t id = ev->kind == SW_EV_CLIENT ? ev->id : -1;
    const json_t *actions = f->have_step ? f->step.actions : NULL;
    if (json_object_size(f->acc) || json_array_size(actions)) {
        deliver(t, ev->origin, id, t->seq, f->acc, actions, 0, 0);
    } else if (ev->kind == SW_EV_CLIENT && ev->origin && id >= 0 && ev->step == 0) {
        /* Nothing changed: answer with an empty delta at the current seq
         * (not a new delta of the stream, not logged). */
        deliver(t, ev->origin, id, t->seq, f->acc, NULL, 0, 1);
    }
    t->old_view = 1;
    if (ev->step == 0 && ev->kind == SW_EV_CLIENT)
        SW_STAT_ADD(w->stats, events_ok, 1);
    if (!f->have_step) {
        finish_current(t);
        return;
    }
    push_front_chained(t, f->step.chained);
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (f->step.status == SW_YIELD) {
        if (kind == SW_EVENT_TASK) {
            task_schedule(t, ev, f->step.sleep_ms);
        } else if (ev->cancelled) {
            /* Cancelled while it ran: its committed steps stay, their
             * deltas went out first; no next step. */
            SW_STAT_ADD(w->stats, events_error, 1);
            if (ev->origin)
                sw_peer_send_error(ev->origin, ev->id, SW_ERRC_CANCELLED, "cancelled");
        } else {
            ev->step++;
            json_decref(f->acc);
            f->acc = json_object();
            json_decref(f->new_links);
            f->new_links = NULL;
            f->link_idx = 0;
            run_step(t); /* the lease and slots are still ours, the tree current */
            return;
        }
    } else if (ev->task) {
        task_free(ev->task);
    }
    finish_current(t);
}

/* The token's previous socket `sockid` ("<holder>.<n>") is stale: close
 * it here, or ask its worker through its inbox. */
static void close_elsewhere(sw_token_t *t, const char *sockid)
{
    sw_worker_t *w = t->w;
    int mine;
    size_t hl = sw_wctx_id_holder(w, sockid, '.', &mine);
    if (hl == 0 || hl >= 48)
        return;
    if (mine) {
        sw_token_close_socket(w, t->token, sockid);
        return;
    }
    char inbox[64], msg[160];
    snprintf(inbox, sizeof(inbox), "inbox:%.*s", (int)hl, sockid);
    int n = snprintf(msg, sizeof(msg), "C:%s:%s", t->token, sockid);
    sw_store_publish(w->store, inbox, msg, (size_t)n);
}

/* After the welcome of a resumed session: before anything else, the
 * missed deltas of the token's own stream (from the replay log) or one full
 * delta (the log no longer reaches back, or shared state is linked). */
static void hello_sync(sw_token_t *t, sw_peer_t *s)
{
    json_t *resume = json_object_get(t->current->payload, "resume");
    uint64_t last = (uint64_t)json_integer_value(json_object_get(resume, "last_seq"));
    uint32_t log_max = 256;
    if (t->ntl || last > t->seq || t->seq - last > log_max) {
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_FULL], 1); /* metrics */
        send_full(t, s);
    } else if (last < t->seq) {
        if (sw_store_read_log(t->w->store, t->token, last + 1, t->seq, on_replay, t) == 0) {
            t->pending_store = 1;
            return;
        }
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_FULL], 1); /* metrics */
        send_full(t, s);
    } else {
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_NONE], 1); /* metrics */
        s->hydrated = 1; /* up to date: its state is the token's */
        t->old_view = 1;
    }
    SW_STAT_ADD(t->w->stats, events_ok, 1);
    finish_current(t);
}

/* Is `sockid` (the token's live connection as the store had it) one of
 * this worker's sockets that has closed already (its live key's drop may
 * simply not have reached Redis yet)? Such a socket, still open, would be
 * one of this token's peers. Sockets of other workers count as live. */
static int local_socket_gone(const sw_token_t *t, const char *sockid)
{
    int mine;
    sw_wctx_id_holder(t->w, sockid, '.', &mine);
    if (!mine)
        return 0;
    const sw_peer_t *x;
    LIST_FOREACH(x, &t->peers, tok_link)
    {
        if (strcmp(x->sockid, sockid) == 0)
            return x->closing;
    }
    return 1;
}

/* The session moves to a token of its own (a duplicate tab, or a client
 * that may not use this token): a fresh HELLO there. The events it sent
 * before its welcome are held by the session and follow it. */
static void move_to_new_token(sw_token_t *t, sw_peer_t *s)
{
    char fresh[SW_TOKEN_MAX + 1];
    sw_random_hex(fresh, 16);
    sw_token_t *t2 = sw_token_get(t->w, fresh);
    s->welcomed = 0;
    sw_token_detach(t, s);
    sw_token_attach(t2, s);
    sw_token_enqueue(t2, sw_event_new(SW_EV_HELLO, -1, s, "hello", NULL, NULL));
}

/* hello: a valid resume is the same connection coming back, on any worker
 * or host; on_load does not run. A WebSocket keeps its credentials and is
 * welcomed at once; an event stream gets new ones (its conn_id routes POSTs
 * to its worker), stored before its welcome. A fresh connection (no
 * resume, or a refused one: bad_resume) stores its credentials, then gets
 * its welcome. A client that may not use this token (bound to another
 * user) or a second live connection without valid credentials (a
 * duplicate tab) moves to a new token: it never reads, writes or closes
 * anything of this one. */
static void run_hello(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    sw_peer_t *s = ev->origin;
    if (!s) {
        finish_current(t);
        return;
    }
    json_t *resume = json_object_get(ev->payload, "resume");
    sw_worker_t *w = t->w;
    const char *tok1[1] = {t->token}, *sock1[1] = {s->sockid};
    if (t->user && (!s->user || strcmp(t->user, s->user) != 0)) {
        sw_log(SW_LOG_INFO, "token %.8s…: bound to another user; the client gets a new token",
               t->token);
        if (f->hello_resume == SW_HELLO_RESUME || f->hello_resume == SW_HELLO_REFUSED)
            sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                               "this token belongs to another user; continuing with a new token");
        move_to_new_token(t, s);
        finish_current(t);
        return;
    }
    int other_live = t->live_seen && t->live_seen[0] && strcmp(t->live_seen, s->sockid) != 0 &&
                     !local_socket_gone(t, t->live_seen);
    if (f->hello_resume == SW_HELLO_BARE_SSE) /* only once the last stream really ended */
        f->hello_resume = other_live ? SW_HELLO_FRESH : SW_HELLO_RESUME;
    if (f->hello_resume != SW_HELLO_RESUME && other_live) {
        sw_log(SW_LOG_INFO, "token %.8s…: duplicate tab gets a new token", t->token);
        if (f->hello_resume == SW_HELLO_REFUSED) /* refused credentials: said before the welcome */
            sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                               "unknown conn_id or conn_token; continuing as a new connection");
        move_to_new_token(t, s);
        finish_current(t);
        return;
    }
    if (f->hello_resume == SW_HELLO_RESUME && other_live) /* the stale socket, if still open */
        close_elsewhere(t, t->live_seen);
    sw_store_live(w->store, SW_LIVE_SET, tok1, sock1, 1, w->cfg->presence_ttl_ms);
    if (f->hello_resume == SW_HELLO_RESUME && !s->sse) {
        snprintf(s->conn_id, sizeof(s->conn_id), "%s",
                 json_string_value(json_object_get(resume, "conn_id")));
        snprintf(s->conn_token, sizeof(s->conn_token), "%s",
                 json_string_value(json_object_get(resume, "conn_token")));
        send_welcome(t, s, 1);
        hello_sync(t, s);
        return;
    }
    if (f->hello_resume == SW_HELLO_REFUSED)
        sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                           "unknown conn_id or conn_token; continuing as a new connection");
    commit_fields_t cf;
    cf.n = 0;
    add_conn_field(t, &cf, s);
    commit(t, &cf, NULL, 0, NULL, 0, 0); /* welcome once the credentials are stored */
}

static void run_current(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    switch (ev->kind) {
    case SW_EV_HELLO:
        run_hello(t);
        return;
    case SW_EV_HYDRATE:
        resync_stale(t, ev->origin);
        run_hydrate(t);
        return;
    default:
        resync_stale(t, NULL);
        run_step(t);
        return;
    }
}
