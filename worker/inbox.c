/* inbox.c — encode and decode the messages between workers (inbox.h). */
#include "worker/inbox.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "proto/msg.h"

/* Bytes that may appear in a token, a socket id or a holder id: printable
 * ASCII without ':' (the separator) or space. */
static int id_ok(const char *p, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ':')
            return 0;
    }
    return 1;
}

/* A decimal number of 1..max_digits digits, with an optional '-' when
 * `neg` is allowed; *out gets its value. */
static int parse_dec(const char *p, size_t n, int neg, size_t max_digits, int64_t *sval,
                     uint64_t *uval)
{
    int minus = neg && n > 0 && p[0] == '-';
    if (minus) {
        p++;
        n--;
    }
    if (n == 0 || n > max_digits)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (uval)
        *uval = v;
    if (sval)
        *sval = minus ? -(int64_t)v : (int64_t)v;
    return 1;
}

int sw_inbox_channel(const char *holder, size_t holder_len, char out[SW_INBOX_CHANNEL_MAX])
{
    if (!id_ok(holder, holder_len, SW_INBOX_ID_MAX))
        return SW_EINVAL;
    snprintf(out, SW_INBOX_CHANNEL_MAX, "inbox:%.*s", (int)holder_len, holder);
    return 0;
}

int sw_inbox_encode(const sw_inbox_msg_t *m, sw_buf_t *out)
{
    switch (m->cmd) {
    case SW_INBOX_LEASE_WANTED:
        if (!id_ok(m->token, m->token_len, SW_TOKEN_MAX))
            return SW_EINVAL;
        /* a bare token: it must not look like a command */
        if (m->token_len >= 2 && m->token[1] == ':')
            return SW_EINVAL;
        sw_buf_append(out, m->token, m->token_len);
        return 0;
    case SW_INBOX_CLOSE_SOCKET:
        if (!id_ok(m->token, m->token_len, SW_TOKEN_MAX) ||
            !id_ok(m->sockid, m->sockid_len, SW_INBOX_ID_MAX))
            return SW_EINVAL;
        sw_buf_printf(out, "C:%.*s:%.*s", (int)m->token_len, m->token, (int)m->sockid_len,
                      m->sockid);
        return 0;
    case SW_INBOX_POST:
        if (!id_ok(m->reply_to, m->reply_to_len, SW_INBOX_ID_MAX))
            return SW_EINVAL;
        sw_buf_printf(out, "P:%llu:%.*s:", (unsigned long long)m->post_id, (int)m->reply_to_len,
                      m->reply_to);
        sw_buf_append(out, m->body, m->body_len);
        return 0;
    case SW_INBOX_POST_ANSWER:
        sw_buf_printf(out, "A:%llu:%d", (unsigned long long)m->post_id, m->result);
        return 0;
    }
    return SW_EINVAL;
}

int sw_inbox_decode(const char *data, size_t len, sw_inbox_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    const char *end = data + len;
    if (len >= 2 && data[1] == ':') {
        const char *p = data + 2;
        const char *c1 = memchr(p, ':', (size_t)(end - p));
        switch (data[0]) {
        case 'C':
            if (!c1 || !id_ok(p, (size_t)(c1 - p), SW_TOKEN_MAX) ||
                !id_ok(c1 + 1, (size_t)(end - c1 - 1), SW_INBOX_ID_MAX))
                break;
            m->cmd = SW_INBOX_CLOSE_SOCKET;
            m->token = p;
            m->token_len = (size_t)(c1 - p);
            m->sockid = c1 + 1;
            m->sockid_len = (size_t)(end - c1 - 1);
            return 0;
        case 'P': {
            const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
            if (!c2 || !parse_dec(p, (size_t)(c1 - p), 0, 20, NULL, &m->post_id) ||
                !id_ok(c1 + 1, (size_t)(c2 - c1 - 1), SW_INBOX_ID_MAX))
                break;
            m->cmd = SW_INBOX_POST;
            m->reply_to = c1 + 1;
            m->reply_to_len = (size_t)(c2 - c1 - 1);
            m->body = c2 + 1;
            m->body_len = (size_t)(end - c2 - 1);
            return 0;
        }
        case 'A': {
            int64_t r = 0;
            if (!c1 || !parse_dec(p, (size_t)(c1 - p), 0, 20, NULL, &m->post_id) ||
                !parse_dec(c1 + 1, (size_t)(end - c1 - 1), 1, 10, &r, NULL) || r < -100000 ||
                r > 1000000000)
                break;
            m->cmd = SW_INBOX_POST_ANSWER;
            m->result = (int)r;
            return 0;
        }
        default:
            break;
        }
        memset(m, 0, sizeof(*m));
        return SW_EINVAL;
    }
    if (!id_ok(data, len, SW_TOKEN_MAX)) {
        memset(m, 0, sizeof(*m));
        return SW_EINVAL;
    }
    m->cmd = SW_INBOX_LEASE_WANTED;
    m->token = data;
    m->token_len = len;
    return 0;
}
