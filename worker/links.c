/* links.c — links of a client token to shared tokens: the link records
 * (with presence), the links a step asks for, and switching a state
 * between its private copy and the shared one once the link is committed
 * (link_phase). */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static sw_tlink_t *tlink_add(sw_token_t *t, const char *name);

/* ---- links to shared tokens ------------------------------------------------ */

sw_tlink_t *sw_tok__tlink_find(sw_token_t *t, const char *name)
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
    sw_tlink_t *l = sw_tok__tlink_find(t, name);
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

void sw_tok__tlink_remove(sw_token_t *t, sw_tlink_t *l, sw_presence_op_t op)
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
void sw_tok__sync_tlinks(sw_token_t *t, const json_t *links)
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
            sw_tok__tlink_remove(t, &t->tl[i], SW_PRESENCE_REMOVE);
    }
    const char *state;
    json_t *v;
    json_object_foreach((json_t *)links, state, v)
    {
        if (json_is_string(v))
            tlink_add(t, json_string_value(v));
    }
}

void sw_tok__presence_all(sw_token_t *t, sw_presence_op_t op)
{
    for (size_t i = 0; i < t->ntl; i++)
        sw_shared_presence(t->tl[i].r, t, op);
}

void sw_tok__release_slots(sw_token_t *t)
{
    for (size_t i = 0; i < t->ntl; i++)
        sw_shared_release_slot(t->tl[i].r, t);
}

/* The links after applying the step's link ops, or NULL when unchanged. */
json_t *sw_tok__links_after(const sw_token_t *t, const sw_link_op_t *ops, size_t n)
{
    if (n == 0)
        return NULL;
    json_t *links = json_deep_copy(t->tree.links);
    for (size_t i = 0; i < n; i++) {
        if (ops[i].op == SW_LINK_OP_LINK)
            json_object_set_new(links, ops[i].state, json_string(ops[i].token));
        else
            json_object_del(links, ops[i].state);
    }
    if (json_equal(links, t->tree.links)) {
        json_decref(links);
        return NULL;
    }
    return links;
}

sw_verdict_t sw_tok__link_phase(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    size_t nops = f->have_step ? f->step.nlink_ops : 0;
    for (; f->link_idx < nops; f->link_idx++) {
        const sw_link_op_t *op = &f->step.link_ops[f->link_idx];
        const char *state = op->state;
        json_t *links = json_deep_copy(t->tree.links);
        if (op->op == SW_LINK_OP_LINK) {
            const char *rname = op->token;
            sw_tlink_t *l = rname ? tlink_add(t, rname) : NULL;
            if (!l) {
                json_decref(links);
                continue;
            }
            int rc = sw_shared_want_sync(l->r, t);
            if (rc == 0) {
                json_decref(links);
                t->waiting = 1;
                return SW_V_PARKED;
            }
            if (rc < 0) {
                /* The link is committed but the shared copy is out of
                 * reach: forget the view; the next event folds it in. */
                json_decref(links);
                sw_tok__drop_tree(t);
                return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE,
                                    "shared state unavailable; retry");
            }
            json_t *priv = sw_tree_state_vars(&t->tree, state);
            if (priv && !json_object_get(t->tree.links, state))
                json_object_set_new(sw_tok__private_copies_make(t), state, json_deep_copy(priv));
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
            sw_tlink_t *l = sw_tok__tlink_find(t, rcopy);
            if (l && !still)
                sw_tok__tlink_remove(t, l, SW_PRESENCE_UNLINK);
        }
    }
    f->phase = SW_PH_AFTER;
    return SW_V_NEXT;
}
