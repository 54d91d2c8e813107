/* step_json.c — see step_json.h. */
#include "step_json.h"

json_t *sw_test_link_ops_json(const sw_step_t *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->nlink_ops; i++) {
        const sw_link_op_t *op = &s->link_ops[i];
        if (op->op == SW_LINK_OP_LINK)
            json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "op", "link", "state", op->state,
                                               "token", op->token));
        else
            json_array_append_new(a, json_pack("{s:s, s:s}", "op", "unlink", "state", op->state));
    }
    return a;
}

json_t *sw_test_chained_json(const sw_step_t *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->nchained; i++)
        json_array_append_new(a, json_pack("{s:s, s:O}", "name", s->chained[i].name, "payload",
                                           s->chained[i].payload));
    return a;
}
