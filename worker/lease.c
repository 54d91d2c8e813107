/* lease.c — the oplock: keeping a token's lease between events, giving it
 * up when idle, about to expire or asked for by another worker. */
#include "worker/token_int.h"

#include "common/log.h"
#include "common/util.h"

void sw_tok__release_lease(sw_token_t *t)
{
    if (t->lease_held) {
        sw_store_release(t->w->store, t->token);
        t->lease_held = 0;
    }
    t->release_asked = 0;
}

/* Keep the lease between events (the oplock) unless someone asked for it,
 * the worker drains or stops, or nothing is cached to use it with. */
int sw_tok__keep_lease(const sw_token_t *t)
{
    return t->have_tree && !t->release_asked && !t->w->draining && !t->w->stopping;
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
            !sw_tok__keep_lease(t)) {
            sw_tok__release_lease(t);
            /* Without the lease the cached state may go stale, and a token
             * linked to nothing gets no fan-out: its tree is only memory
             * now (the next event reloads). Linked tokens keep the client
             * view that fan-out deltas are computed against. */
            if (t->ntl == 0) {
                dropped += t->have_tree ? 1 : 0;
                sw_tok__drop_tree(t);
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
        sw_tok__release_lease(t);
}
