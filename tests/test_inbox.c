/* test_inbox.c — messages between workers (worker/inbox.h): every command
 * round-trips, the wire form is the documented one, and malformed or
 * out-of-bound messages are refused whole. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "proto/msg.h"
#include "worker/inbox.h"

static void encode_ok(const sw_inbox_msg_t *m, const char *want)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_inbox_encode(m, &b), 0);
    cr_assert_eq(b.len, strlen(want));
    cr_assert(memcmp(b.data, want, b.len) == 0, "got %.*s", (int)b.len, b.data);
    sw_buf_destroy(&b);
}

static void decode_bad(const char *wire)
{
    sw_inbox_msg_t m;
    memset(&m, 0x55, sizeof(m));
    cr_assert_eq(sw_inbox_decode(wire, strlen(wire), &m), SW_EINVAL, "accepted \"%s\"", wire);
    cr_assert_eq(m.cmd, 0);
    cr_assert_null(m.token);
}

static int view_eq(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

Test(inbox, lease_wanted_round_trip)
{
    sw_inbox_msg_t m = {.cmd = SW_INBOX_LEASE_WANTED, .token = "tok-1_A", .token_len = 7};
    encode_ok(&m, "tok-1_A");
    sw_inbox_msg_t d;
    cr_assert_eq(sw_inbox_decode("tok-1_A", 7, &d), 0);
    cr_assert_eq(d.cmd, SW_INBOX_LEASE_WANTED);
    cr_assert(view_eq(d.token, d.token_len, "tok-1_A"));
}

Test(inbox, close_socket_round_trip)
{
    sw_inbox_msg_t m = {.cmd = SW_INBOX_CLOSE_SOCKET,
                        .token = "abc",
                        .token_len = 3,
                        .sockid = "0-123-ff.42",
                        .sockid_len = 11};
    encode_ok(&m, "C:abc:0-123-ff.42");
    sw_inbox_msg_t d;
    const char *wire = "C:abc:0-123-ff.42";
    cr_assert_eq(sw_inbox_decode(wire, strlen(wire), &d), 0);
    cr_assert_eq(d.cmd, SW_INBOX_CLOSE_SOCKET);
    cr_assert(view_eq(d.token, d.token_len, "abc"));
    cr_assert(view_eq(d.sockid, d.sockid_len, "0-123-ff.42"));
}

Test(inbox, post_round_trip_body_keeps_colons)
{
    const char *body = "{\"conn_id\":\"h_1_x\",\"messages\":[{\"a\":\"b:c\"}]}";
    sw_inbox_msg_t m = {.cmd = SW_INBOX_POST,
                        .post_id = 18446744073709551615ull,
                        .reply_to = "1-99-abc",
                        .reply_to_len = 8,
                        .body = body,
                        .body_len = strlen(body)};
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_inbox_encode(&m, &b), 0);
    sw_inbox_msg_t d;
    cr_assert_eq(sw_inbox_decode(b.data, b.len, &d), 0);
    cr_assert_eq(d.cmd, SW_INBOX_POST);
    cr_assert_eq(d.post_id, 18446744073709551615ull);
    cr_assert(view_eq(d.reply_to, d.reply_to_len, "1-99-abc"));
    cr_assert(view_eq(d.body, d.body_len, body));
    sw_buf_destroy(&b);
    /* an empty body decodes (the receiver answers -404 for it) */
    cr_assert_eq(sw_inbox_decode("P:7:h:", 6, &d), 0);
    cr_assert_eq(d.body_len, 0);
}

Test(inbox, post_answer_round_trip)
{
    int results[] = {0, 1, 64, -403, -404};
    for (size_t i = 0; i < SW_ARRAY_SIZE(results); i++) {
        sw_inbox_msg_t m = {.cmd = SW_INBOX_POST_ANSWER, .post_id = 9, .result = results[i]};
        sw_buf_t b;
        sw_buf_init(&b, 0);
        cr_assert_eq(sw_inbox_encode(&m, &b), 0);
        sw_inbox_msg_t d;
        cr_assert_eq(sw_inbox_decode(b.data, b.len, &d), 0);
        cr_assert_eq(d.cmd, SW_INBOX_POST_ANSWER);
        cr_assert_eq(d.post_id, 9);
        cr_assert_eq(d.result, results[i]);
        sw_buf_destroy(&b);
    }
    sw_inbox_msg_t m = {.cmd = SW_INBOX_POST_ANSWER, .post_id = 12, .result = -404};
    encode_ok(&m, "A:12:-404");
}

Test(inbox, malformed_is_refused_whole)
{
    static const char *bad[] = {
        "",                             /* empty */
        "C:",                           /* no token */
        "C:tok",                        /* no socket id */
        "C::sock",                      /* empty token */
        "C:tok:",                       /* empty socket id */
        "C:to k:s",                     /* space in the token */
        "C:tok:s:t",                    /* ':' in the socket id */
        "P:",                           /* nothing */
        "P:1:h",                        /* no body separator */
        "P::h:{}",                      /* empty id */
        "P:x1:h:{}",                    /* id not decimal */
        "P:-1:h:{}",                    /* negative id */
        "P:1::{}",                      /* empty reply holder */
        "P:123456789012345678901:h:{}", /* id longer than 20 digits */
        "P:99999999999999999999:h:{}",  /* id past 2^64 - 1 */
        "A:1:",                         /* no result */
        "A::1",                         /* no id */
        "A:1:x",                        /* result not decimal */
        "A:1:--3",                      /* two signs */
        "A:1:99999999999",              /* result out of range */
        "A:1:1:2",                      /* trailing field */
        "X:foo",                        /* unknown command */
        "to ken",                       /* a lease token with a space */
        "tok\x01",                      /* a control byte */
        "tok\x80",                      /* a non-ASCII byte */
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++)
        decode_bad(bad[i]);
    char longtok[SW_TOKEN_MAX + 2];
    memset(longtok, 'a', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    decode_bad(longtok); /* SW_TOKEN_MAX + 1 bytes */
    longtok[SW_TOKEN_MAX] = '\0';
    sw_inbox_msg_t d;
    cr_assert_eq(sw_inbox_decode(longtok, SW_TOKEN_MAX, &d), 0); /* the bound itself */
    char longsock[2 + 3 + 1 + SW_INBOX_ID_MAX + 2];
    snprintf(longsock, sizeof(longsock), "C:tok:%0*d", SW_INBOX_ID_MAX + 1, 0);
    decode_bad(longsock);
}

Test(inbox, encode_refuses_what_would_not_decode)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_inbox_msg_t m = {.cmd = SW_INBOX_LEASE_WANTED, .token = "", .token_len = 0};
    cr_assert_eq(sw_inbox_encode(&m, &b), SW_EINVAL);
    m = (sw_inbox_msg_t){.cmd = SW_INBOX_LEASE_WANTED, .token = "C:x", .token_len = 3};
    cr_assert_eq(sw_inbox_encode(&m, &b), SW_EINVAL);
    m = (sw_inbox_msg_t){.cmd = SW_INBOX_CLOSE_SOCKET,
                         .token = "t",
                         .token_len = 1,
                         .sockid = "a:b",
                         .sockid_len = 3};
    cr_assert_eq(sw_inbox_encode(&m, &b), SW_EINVAL);
    m = (sw_inbox_msg_t){.cmd = SW_INBOX_POST, .post_id = 1, .reply_to = "", .reply_to_len = 0};
    cr_assert_eq(sw_inbox_encode(&m, &b), SW_EINVAL);
    m = (sw_inbox_msg_t){.cmd = 0};
    cr_assert_eq(sw_inbox_encode(&m, &b), SW_EINVAL);
    cr_assert_eq(b.len, 0, "a refused message appends nothing");
    sw_buf_destroy(&b);
}

Test(inbox, channel)
{
    char ch[SW_INBOX_CHANNEL_MAX];
    cr_assert_eq(sw_inbox_channel("0-1-ab.7", 5, ch), 0); /* the holder part of a socket id */
    cr_assert_str_eq(ch, "inbox:0-1-a");
    cr_assert_eq(sw_inbox_channel("", 0, ch), SW_EINVAL);
    char big[SW_INBOX_ID_MAX + 1];
    memset(big, 'h', sizeof(big));
    cr_assert_eq(sw_inbox_channel(big, sizeof(big), ch), SW_EINVAL);
    cr_assert_eq(sw_inbox_channel(big, SW_INBOX_ID_MAX, ch), 0);
    cr_assert_eq(strlen(ch), 6 + SW_INBOX_ID_MAX);
}
