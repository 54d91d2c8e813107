/* fanout.c — delivery: deltas to a token's peers, a full delta to stale
 * peers, catching up with shared changes (fold), and the fan-out step:
 * it drains the rooms shared.c marked as changed and brings their linked
 * tokens' clients up to date, with group fan-out (one delta encoded for
 * many tokens that hold the same view of a room). */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

static int group_eligible(const sw_token_t *t, const sw_shared_t *r);
static void deliver_tail(sw_token_t *t, const sw_buf_t *tail);

/* ---- delivery -------------------------------------------------------------- */

/* Send a delta to the token's clients: with `id` to `origin`, without to
 * the others. Sessions not yet welcomed are skipped (their welcome carries
 * a seq at or after this one). */
void sw_tok__deliver(sw_token_t *t, sw_peer_t *origin, int64_t id, uint64_t seq,
                     const json_t *delta, const json_t *events, int full, int origin_only)
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

/* A client whose seq is behind the store's missed changes made elsewhere
 * (another worker or host, or a commit whose outcome was unknown): give it
 * the whole state before anything else. */
void sw_tok__resync_stale(sw_token_t *t, sw_peer_t *skip)
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
void sw_tok__fold_shared(sw_token_t *t, json_t *delta, int all)
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
        sw_tlink_t *l = sw_tok__tlink_find(t, json_string_value(v));
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
        sw_tok__deliver(t, NULL, -1, t->seq, f, NULL, 1, 0);
        json_decref(f);
    }
}

void sw_tok__do_catchup(sw_token_t *t)
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
    sw_tok__fold_shared(t, delta, 0);
    if (json_object_size(delta))
        sw_tok__deliver(t, NULL, -1, t->seq, delta, NULL, 0, 0);
    json_decref(delta);
}

/* Shared state changed (a fan-out message, a reread, presence): bring
 * the token's clients up to date now, or after its current event. */
static void catchup(sw_token_t *t)
{
    if (t->current || t->pending_store) {
        t->catchup_pending = 1;
        return;
    }
    sw_tok__do_catchup(t);
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

/* One change of shared token r to its linked local tokens toks[0..n)
 * (r's copy current): grouped by the view their clients hold. */
static void catchup_group(sw_shared_t *r, sw_token_t *const *toks, size_t n)
{
    fanout_group_t g[SW_FANOUT_GROUPS];
    size_t ng = 0;
    int grouping = r->synced && r->presence >= 0;
    if (grouping)
        sw_shared_snapshot(r, r->presence); /* what the groups get sent */
    for (size_t i = 0; i < n; i++) {
        sw_token_t *t = toks[i];
        if (!grouping || !group_eligible(t, r)) {
            catchup(t);
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
            catchup(t);
            continue;
        }
        if (!gr->have) {
            /* The first of the group folds the copy into its tree; what
             * its clients miss is what every client of the group misses. */
            json_t *delta = json_object();
            sw_tok__fold_shared(t, delta, 0);
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

void sw_tok__send_full(sw_token_t *t, sw_peer_t *s)
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

void sw_token_run_catchups(sw_worker_t *w)
{
    sw_shared_t *r;
    while ((r = sw_shared_take_changed(w))) {
        size_t n = r->ntokens;
        if (!n)
            continue;
        /* Tokens may unlink while catching up (never: catch-up runs no
         * handler), but iterate over a copy to stay safe. */
        sw_token_t **copy = sw_xmalloc(n * sizeof(*copy));
        memcpy(copy, r->tokens, n * sizeof(*copy));
        if (!sw_appdef_fanout_needs_private(w->app))
            catchup_group(r, copy, n);
        else
            for (size_t i = 0; i < n; i++)
                catchup(copy[i]);
        free(copy);
    }
}
