/* rawconn.c — raw TCP, hand-parsed HTTP answers and hand-built WebSocket
 * frames for hostile-input tests (see rawconn.h). */
#include "rawconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/util.h"
#include "worker/conn.h"

#define SEND_LIMIT_MS 5000

static int left_ms(uint64_t deadline)
{
    uint64_t now = sw_now_ms();
    return now >= deadline ? 0 : (int)SW_MIN(deadline - now, (uint64_t)0x7fffffff);
}

/* 1 when fd is ready for `events` before the deadline, 0 otherwise. */
static int wait_for(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left_ms(deadline));
        if (n > 0)
            return 1;
        if (n == 0 || errno != EINTR)
            return 0;
    }
}

sw_raw_t *sw_raw_connect(int port, int timeout_ms)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    if (sw_fd_nonblock(fd) < 0)
        goto fail;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (errno != EINPROGRESS || !wait_for(fd, POLLOUT, deadline))
            goto fail;
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            goto fail;
    }
    sw_raw_t *r = sw_xcalloc(1, sizeof(*r));
    r->fd = fd;
    sw_buf_init(&r->in, 0);
    return r;
fail:
    close(fd);
    return NULL;
}

void sw_raw_free(sw_raw_t *r)
{
    if (!r)
        return;
    close(r->fd);
    sw_buf_destroy(&r->in);
    free(r);
}

int sw_raw_send(sw_raw_t *r, const void *bytes, size_t len)
{
    uint64_t deadline = sw_now_ms() + SEND_LIMIT_MS;
    const char *p = bytes;
    while (len > 0) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_for(r->fd, POLLOUT, deadline))
                return SW_ERR;
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            /* what the peer sent before it went may still be unread */
            r->reset = errno == ECONNRESET;
            return SW_ECLOSED;
        }
        return SW_ERR;
    }
    return 0;
}

int sw_raw_read_some(sw_raw_t *r, int timeout_ms)
{
    if (r->eof)
        return SW_ECLOSED;
    uint64_t deadline = sw_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        char chunk[16384];
        ssize_t n = recv(r->fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            sw_buf_append(&r->in, chunk, (size_t)n);
            return (int)n;
        }
        if (n == 0) {
            r->eof = 1;
            return SW_ECLOSED;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(r->fd, POLLIN, deadline))
                return 0;
            continue;
        }
        r->eof = 1;
        r->reset = errno == ECONNRESET;
        return SW_ECLOSED;
    }
}

size_t sw_raw_dribble(sw_raw_t *r, const void *bytes, size_t len, size_t chunk, int gap_ms,
                      int stop_on_input)
{
    const char *p = bytes;
    size_t sent = 0;
    if (chunk == 0)
        chunk = 1;
    while (sent < len && !r->eof) {
        size_t n = SW_MIN(chunk, len - sent);
        if (sw_raw_send(r, p + sent, n) != 0)
            break;
        sent += n;
        if (sent == len)
            break;
        /* the pause doubles as a look for an early answer or a close */
        uint64_t until = sw_now_ms() + (uint64_t)gap_ms;
        int left;
        while ((left = left_ms(until)) > 0 && !r->eof) {
            size_t before = r->in.len;
            if (sw_raw_read_some(r, left) == SW_ECLOSED)
                break;
            if (stop_on_input && r->in.len > before)
                return sent;
        }
    }
    return sent;
}

int sw_raw_wait_closed(sw_raw_t *r, int timeout_ms)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    while (!r->eof) {
        int left = left_ms(deadline);
        if (left == 0)
            return 0;
        (void)sw_raw_read_some(r, left);
    }
    return 1;
}

/* ---- HTTP answers ----------------------------------------------------- */

static const char *find_crlf(const char *p, const char *end)
{
    const char *q = memchr(p, '\n', (size_t)(end - p));
    return q && q > p && q[-1] == '\r' ? q - 1 : q;
}

char *sw_http_resp_header(const sw_http_resp_t *resp, const char *name)
{
    if (!resp || !resp->head)
        return NULL;
    size_t nl = strlen(name);
    const char *p = strchr(resp->head, '\n'); /* skip the status line */
    while (p && *p) {
        p++;
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *e = p + ll;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                e--;
            return sw_xstrndup(v, (size_t)(e - v));
        }
        p = eol;
    }
    return NULL;
}

void sw_http_resp_clear(sw_http_resp_t *resp)
{
    free(resp->head);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

/* Decode a chunked body starting at p: 1 complete (body appended, *used
 * set), 0 incomplete, -1 malformed. */
static int dechunk(const char *p, const char *end, sw_buf_t *body, size_t *used)
{
    const char *start = p;
    for (;;) {
        const char *eol = find_crlf(p, end);
        if (!eol)
            return 0;
        char *x;
        unsigned long long n = strtoull(p, &x, 16);
        if (x == p)
            return -1;
        const char *data = memchr(p, '\n', (size_t)(end - p)) + 1;
        if (n == 0) { /* trailers until an empty line */
            for (;;) {
                const char *t = find_crlf(data, end);
                if (!t)
                    return 0;
                const char *next = memchr(data, '\n', (size_t)(end - data)) + 1;
                if (t == data) {
                    *used = (size_t)(next - start);
                    return 1;
                }
                data = next;
            }
        }
        if ((uint64_t)(end - data) < n + 2)
            return 0;
        sw_buf_append(body, data, (size_t)n);
        p = data + n;
        p += (*p == '\r') ? 2 : 1;
    }
}

int sw_raw_http_response(sw_raw_t *r, int head_req, int timeout_ms, sw_http_resp_t *out)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    memset(out, 0, sizeof(*out));
    for (;;) {
        const char *d = r->in.data ? r->in.data : "";
        const char *end = d + r->in.len;
        if (r->in.len >= 5 && strncmp(d, "HTTP/", 5) != 0)
            return SW_EINVAL;
        const char *hend = memmem(d, r->in.len, "\r\n\r\n", 4);
        if (hend) {
            size_t hlen = (size_t)(hend - d);
            int status = 0;
            if (sscanf(d, "HTTP/%*d.%*d %d", &status) != 1)
                return SW_EINVAL;
            sw_http_resp_t resp = {.status = status, .head = sw_xstrndup(d, hlen)};
            const char *b = hend + 4;
            size_t avail = (size_t)(end - b);
            char *cl = sw_http_resp_header(&resp, "Content-Length");
            char *te = sw_http_resp_header(&resp, "Transfer-Encoding");
            char *ct = sw_http_resp_header(&resp, "Content-Type");
            /* an event stream's body never ends: its head is the answer */
            int stream = ct && strncasecmp(ct, "text/event-stream", 17) == 0 && !cl;
            free(ct);
            int no_body = head_req || stream || status / 100 == 1 || status == 204 || status == 304;
            int done = 0;
            size_t used = 0;
            sw_buf_t body;
            sw_buf_init(&body, 0);
            if (no_body) {
                done = 1;
            } else if (te && strcasestr(te, "chunked")) {
                int dc = dechunk(b, end, &body, &used);
                if (dc < 0) {
                    free(cl);
                    free(te);
                    sw_buf_destroy(&body);
                    sw_http_resp_clear(&resp);
                    return SW_EINVAL;
                }
                done = dc == 1;
            } else if (cl) {
                size_t n = (size_t)strtoull(cl, NULL, 10);
                if (avail >= n) {
                    sw_buf_append(&body, b, n);
                    used = n;
                    done = 1;
                }
            } else if (r->eof) { /* the body ends with the connection */
                sw_buf_append(&body, b, avail);
                used = avail;
                done = 1;
            }
            free(cl);
            free(te);
            if (done) {
                size_t blen;
                char *bs = sw_buf_steal(&body, &blen);
                resp.body = bs ? bs : sw_xstrdup("");
                resp.body_len = bs ? blen : 0;
                sw_buf_consume(&r->in, (size_t)(b - d) + used);
                *out = resp;
                return 1;
            }
            sw_buf_destroy(&body);
            sw_http_resp_clear(&resp);
        }
        if (r->eof)
            return SW_ECLOSED;
        int left = left_ms(deadline);
        if (left == 0)
            return 0;
        (void)sw_raw_read_some(r, left);
    }
}

/* ---- WebSocket -------------------------------------------------------- */

sw_raw_t *sw_raw_ws_open(int port, const char *path, const char *extra_headers, int timeout_ms,
                         int *status)
{
    if (status)
        *status = -1;
    sw_raw_t *r = sw_raw_connect(port, timeout_ms);
    if (!r)
        return NULL;
    unsigned char raw[16];
    char key[32], want[29];
    sw_random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    if (sw_ws_accept_key(key, strlen(key), want) != 0)
        goto fail;
    char *req = sw_xasprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                             "Sec-WebSocket-Version: 13\r\n%s\r\n",
                             path, port, key, extra_headers ? extra_headers : "");
    int rc = sw_raw_send(r, req, strlen(req));
    free(req);
    if (rc != 0)
        goto fail;
    sw_http_resp_t resp;
    /* a 101 has no body; a refusal's body is read as well */
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    while (!memmem(r->in.data ? r->in.data : "", r->in.len, "\r\n\r\n", 4)) {
        if (sw_raw_read_some(r, left_ms(deadline)) <= 0)
            goto fail;
    }
    int is101 = strncmp(r->in.data, "HTTP/1.1 101", 12) == 0;
    if (sw_raw_http_response(r, is101, left_ms(deadline), &resp) != 1)
        goto fail;
    if (status)
        *status = resp.status;
    char *accept = sw_http_resp_header(&resp, "Sec-WebSocket-Accept");
    int ok = resp.status == 101 && accept && strcmp(accept, want) == 0;
    free(accept);
    sw_http_resp_clear(&resp);
    if (!ok)
        goto fail;
    return r;
fail:
    sw_raw_free(r);
    return NULL;
}

void sw_ws_frame_head(sw_buf_t *b, int fin, int rsv, int opcode, int masked, uint64_t declared,
                      int lenform, uint8_t mask[4])
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f));
    if (lenform == SW_WS_LEN_MIN)
        lenform = declared < 126 ? SW_WS_LEN_7 : declared <= 0xffff ? SW_WS_LEN_16 : SW_WS_LEN_64;
    uint8_t mbit = masked ? 0x80 : 0;
    if (lenform == SW_WS_LEN_7) {
        h[n++] = (uint8_t)(mbit | (declared & 0x7f));
    } else if (lenform == SW_WS_LEN_16) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(declared >> 8);
        h[n++] = (uint8_t)declared;
    } else {
        h[n++] = mbit | 127;
        for (int i = 0; i < 8; i++)
            h[n++] = (uint8_t)(declared >> (56 - 8 * i));
    }
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (masked) {
        memcpy(h + n, key, 4);
        n += 4;
    }
    if (mask)
        memcpy(mask, key, 4);
    sw_buf_append(b, h, n);
}

void sw_ws_frame_payload(sw_buf_t *b, const uint8_t *mask, const void *data, size_t len, size_t off)
{
    const uint8_t *p = data;
    sw_buf_reserve(b, len);
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = mask ? (uint8_t)(p[i] ^ mask[(off + i) & 3]) : p[i];
        sw_buf_append(b, &ch, 1);
    }
}

void sw_ws_frame(sw_buf_t *b, int fin, int rsv, int opcode, int masked, const void *data,
                 size_t len)
{
    uint8_t mask[4];
    sw_ws_frame_head(b, fin, rsv, opcode, masked, len, SW_WS_LEN_MIN, mask);
    sw_ws_frame_payload(b, masked ? mask : NULL, data, len, 0);
}

void sw_ws_in_clear(sw_ws_in_t *f)
{
    free(f->payload);
    memset(f, 0, sizeof(*f));
}

int sw_raw_ws_read(sw_raw_t *r, sw_ws_in_t *f, int timeout_ms)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    memset(f, 0, sizeof(*f));
    for (;;) {
        const uint8_t *d = (const uint8_t *)r->in.data;
        size_t have = r->in.len;
        if (have >= 2) {
            size_t hl = 2;
            uint64_t len = d[1] & 0x7f;
            int masked = (d[1] & 0x80) != 0;
            if (len == 126)
                hl += 2;
            else if (len == 127)
                hl += 8;
            if (masked)
                hl += 4;
            if (have >= hl) {
                if (len == 126)
                    len = ((uint64_t)d[2] << 8) | d[3];
                else if (len == 127) {
                    len = 0;
                    for (int i = 0; i < 8; i++)
                        len = (len << 8) | d[2 + i];
                }
                if (len > (uint64_t)64 << 20)
                    return SW_EINVAL;
                if (have >= hl + len) {
                    f->fin = (d[0] & 0x80) != 0;
                    f->rsv = (d[0] >> 4) & 7;
                    f->opcode = d[0] & 0x0f;
                    f->masked = masked;
                    f->len = (size_t)len;
                    f->payload = sw_xmalloc(f->len + 1);
                    for (size_t i = 0; i < f->len; i++)
                        f->payload[i] =
                            (char)(masked ? d[hl + i] ^ d[hl - 4 + (i & 3)] : d[hl + i]);
                    f->payload[f->len] = '\0';
                    sw_buf_consume(&r->in, hl + f->len);
                    return 1;
                }
            }
        }
        if (r->eof)
            return SW_ECLOSED;
        int left = left_ms(deadline);
        if (left == 0)
            return 0;
        (void)sw_raw_read_some(r, left);
    }
}

int sw_ws_close_code(const sw_ws_in_t *f)
{
    if (f->opcode != 0x8 || f->len < 2)
        return 0;
    return ((uint8_t)f->payload[0] << 8) | (uint8_t)f->payload[1];
}
