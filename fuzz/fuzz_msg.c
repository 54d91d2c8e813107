/* fuzz_msg.c — client messages into sw_msg_decode (proto/msg.c), fast path
 * against the jansson path.
 *
 * Feeds: the input as one client message (a WebSocket text message or an
 * SSE POST entry) to sw_msg_decode, to the jansson path alone
 * (decode_jansson) and to the fast path alone (fast_decode). msg.c is
 * compiled into this harness to reach both, as in tests/test_msg_fast.c.
 *
 * Checks (abort() on any difference; the comparison is
 * tests/test_msg_fast.c's check_same, plus auth and the resume fields):
 * sw_msg_decode and the jansson path agree on the code, the reason, the
 * type, id, name, token, auth, resume fields, payload and router; when the
 * fast path takes a message, the jansson path accepts it and decodes it to
 * the same fields; when it declines, it leaves nothing owned; the router
 * keeps at most "path" and "query". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/msg.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void differ(const char *in, size_t len, const char *what)
{
    fprintf(stderr, "fuzz_msg: %s differs for %zu bytes: %.*s\n", what, len,
            (int)(len > 512 ? 512 : len), in);
    abort();
}

/* Is the decoded message `a` equal to `b`? */
static void check_same(const char *in, size_t len, sw_errc_t ra, const sw_msg_t *a, const char *wa,
                       sw_errc_t rb, const sw_msg_t *b, const char *wb)
{
    if (ra != rb)
        differ(in, len, "the code");
    if (strcmp(wa, wb) != 0)
        differ(in, len, "the reason");
    if (a->type != b->type)
        differ(in, len, "type");
    if (a->id != b->id)
        differ(in, len, "id");
    if (strcmp(a->name, b->name) != 0)
        differ(in, len, "name");
    if (strcmp(a->token, b->token) != 0)
        differ(in, len, "token");
    if (a->has_resume != b->has_resume || strcmp(a->conn_id, b->conn_id) != 0 ||
        strcmp(a->conn_token, b->conn_token) != 0 || a->last_seq != b->last_seq)
        differ(in, len, "resume");
    if (!a->auth != !b->auth || (a->auth && strcmp(a->auth, b->auth) != 0))
        differ(in, len, "auth");
    if (!a->payload != !b->payload || (a->payload && !json_equal(a->payload, b->payload)))
        differ(in, len, "payload");
    if (!a->router != !b->router || (a->router && !json_equal(a->router, b->router)))
        differ(in, len, "router");
    if (a->router && json_object_size(a->router) > 2)
        differ(in, len, "router size");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    sw_msg_t a, b, f;
    char wa[128], wb[128];
    sw_errc_t ra = sw_msg_decode(in, size, &a, wa, sizeof(wa));
    decode_init(&b, wb, sizeof(wb));
    sw_errc_t rb = decode_jansson(in, size, &b, wb, sizeof(wb));
    check_same(in, size, ra, &a, wa, rb, &b, wb);
    if (ra != SW_ERRC_NONE && (a.payload || a.router || a.auth))
        differ(in, size, "ownership after an error");
    decode_init(&f, NULL, 0);
    if (fast_decode(in, size, &f)) {
        if (rb != SW_ERRC_NONE)
            differ(in, size, "acceptance (the fast path took a bad message)");
        check_same(in, size, SW_ERRC_NONE, &f, "", rb, &b, wb);
    } else if (f.payload || f.router || f.auth) {
        differ(in, size, "ownership after the fast path declined");
    }
    sw_msg_destroy(&a);
    sw_msg_destroy(&b);
    sw_msg_destroy(&f);
    return 0;
}
