/* wsclient.c — blocking WebSocket client for tests: wslay's event API on a
 * non-blocking socket, driven by poll() with deadlines. */
#include "wsclient.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/evp.h>
#include <utlist.h>
#include <wslay/wslay.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/conn.h"

#define IO_TIMEOUT_MS 5000
#define HEAD_MAX 16384
#define HTTP_BODY_MAX (16u * 1024u * 1024u)

typedef struct wsc_msg {
    char *text; /* heap, NUL-terminated */
    size_t len;
    json_t *json; /* parsed lazily; NULL until then or if not JSON */
    int parsed;
    struct wsc_msg *prev, *next;
} wsc_msg_t;

struct sw_wsc {
    int fd;
    wslay_event_context_ptr ws;
    char *pre; /* bytes read past the handshake response, fed to wslay first */
    size_t pre_len, pre_off;
    wsc_msg_t *queue;
    size_t nqueued;
    int closed;     /* peer close frame, EOF or socket error */
    int close_code; /* peer's close status code */
    int close_sent;
    int auto_pong; /* flush wslay's automatic pongs while reading */
};

/* ---- time and socket helpers -------------------------------------------- */

static uint64_t deadline_of(int timeout_ms)
{
    return sw_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = sw_now_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

/* Wait for `events` on fd until deadline: 1 ready, 0 timeout, SW_ERR. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, remaining_ms(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR) {
            sw_log(SW_LOG_WARN, "wsclient: poll: %s", strerror(errno));
            return SW_ERR;
        }
    }
}

/* Non-blocking TCP connect within the deadline; returns the fd or -1. */
static int tcp_connect(const char *host, int port, uint64_t deadline)
{
    char portstr[16];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int fd = -1;

    snprintf(portstr, sizeof(portstr), "%d", port);
    int gr = getaddrinfo(host, portstr, &hints, &res);
    if (gr != 0) {
        sw_log(SW_LOG_WARN, "wsclient: getaddrinfo %s: %s", host, gai_strerror(gr));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            sw_log(SW_LOG_WARN, "wsclient: socket: %s", strerror(errno));
            continue;
        }
        if (sw_fd_nonblock(fd) < 0)
            goto next;
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno != EINPROGRESS) {
            sw_log(SW_LOG_WARN, "wsclient: connect %s:%d: %s", host, port, strerror(errno));
            goto next;
        }
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w == 0) {
            sw_log(SW_LOG_WARN, "wsclient: connect %s:%d: timed out", host, port);
            goto next;
        }
        if (w < 0)
            goto next;
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err == 0)
            break;
        sw_log(SW_LOG_WARN, "wsclient: connect %s:%d: %s", host, port, strerror(err));
    next:
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Write all bytes before the deadline. 0, SW_ECLOSED (peer gone), SW_ERR. */
static int write_all(int fd, const void *bytes, size_t len, uint64_t deadline)
{
    const char *p = bytes;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w <= 0) {
                if (w == 0)
                    sw_log(SW_LOG_WARN, "wsclient: send: timed out");
                return SW_ERR;
            }
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return SW_ECLOSED;
        sw_log(SW_LOG_WARN, "wsclient: send: %s", strerror(errno));
        return SW_ERR;
    }
    return 0;
}

/* ---- HTTP response parsing (http-parser) --------------------------------- */

typedef struct resp_state {
    sw_buf_t field, value; /* current header being assembled */
    int in_value;
    char *upgrade; /* Upgrade header */
    char *accept;  /* Sec-WebSocket-Accept header */
    sw_buf_t body;
    int complete;
} resp_state_t;

static void resp_commit_header(resp_state_t *rs)
{
    if (rs->field.len == 0)
        goto done;
    const char *name = rs->field.data;
    const char *val = rs->value.data ? rs->value.data : "";
    if (strcasecmp(name, "upgrade") == 0) {
        free(rs->upgrade);
        rs->upgrade = sw_xstrdup(val);
    } else if (strcasecmp(name, "sec-websocket-accept") == 0) {
        free(rs->accept);
        rs->accept = sw_xstrdup(val);
    }
done:
    sw_buf_reset(&rs->field);
    sw_buf_reset(&rs->value);
    rs->in_value = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    resp_state_t *rs = p->data;
    if (rs->in_value)
        resp_commit_header(rs);
    return sw_buf_append(&rs->field, at, len) == 0 ? 0 : -1;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    resp_state_t *rs = p->data;
    rs->in_value = 1;
    return sw_buf_append(&rs->value, at, len) == 0 ? 0 : -1;
}

static int on_headers_complete(http_parser *p)
{
    resp_state_t *rs = p->data;
    if (rs->in_value)
        resp_commit_header(rs);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    resp_state_t *rs = p->data;
    return sw_buf_append(&rs->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(http_parser *p)
{
    resp_state_t *rs = p->data;
    rs->complete = 1;
    return 0;
}

static void resp_init(resp_state_t *rs, http_parser *p, http_parser_settings *s)
{
    memset(rs, 0, sizeof(*rs));
    sw_buf_init(&rs->field, 8192);
    sw_buf_init(&rs->value, 8192);
    sw_buf_init(&rs->body, HTTP_BODY_MAX);
    http_parser_init(p, HTTP_RESPONSE);
    p->data = rs;
    http_parser_settings_init(s);
    s->on_header_field = on_header_field;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

static void resp_destroy(resp_state_t *rs)
{
    sw_buf_destroy(&rs->field);
    sw_buf_destroy(&rs->value);
    sw_buf_destroy(&rs->body);
    free(rs->upgrade);
    free(rs->accept);
}

/* ---- wslay callbacks ------------------------------------------------------ */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    sw_wsc_t *c = user_data;
    if (c->pre_off < c->pre_len) {
        size_t n = SW_MIN(len, c->pre_len - c->pre_off);
        memcpy(buf, c->pre + c->pre_off, n);
        c->pre_off += n;
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0)
            return n;
        if (n == 0) {
            c->closed = 1;
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        if (errno != ECONNRESET)
            sw_log(SW_LOG_WARN, "wsclient: recv: %s", strerror(errno));
        c->closed = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    sw_wsc_t *c = user_data;
    for (;;) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        if (errno != EPIPE && errno != ECONNRESET)
            sw_log(SW_LOG_WARN, "wsclient: send: %s", strerror(errno));
        c->closed = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    sw_random_bytes(buf, len); /* RAND_bytes */
    return 0;
}

static void msg_free(wsc_msg_t *m)
{
    free(m->text);
    if (m->json)
        json_decref(m->json);
    free(m);
}

static void ws_on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user_data)
{
    sw_wsc_t *c = user_data;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        c->close_code = arg->status_code;
        c->closed = 1;
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    if (c->nqueued >= SW_WSC_MAX_QUEUED) {
        wsc_msg_t *old = c->queue;
        sw_log(SW_LOG_WARN, "wsclient: queue full (%d messages), dropping the oldest",
               SW_WSC_MAX_QUEUED);
        DL_DELETE(c->queue, old);
        msg_free(old);
        c->nqueued--;
    }
    wsc_msg_t *m = sw_xcalloc(1, sizeof(*m));
    m->text = sw_xstrndup((const char *)arg->msg, arg->msg_length);
    m->len = arg->msg_length;
    DL_APPEND(c->queue, m);
    c->nqueued++;
}

/* Send what wslay has queued, within the deadline. 0, SW_ECLOSED, SW_ERR. */
static int flush(sw_wsc_t *c, uint64_t deadline)
{
    while (wslay_event_want_write(c->ws)) {
        if (wslay_event_send(c->ws) < 0)
            return c->closed ? SW_ECLOSED : SW_ERR;
        if (!wslay_event_want_write(c->ws))
            break;
        int w = wait_fd(c->fd, POLLOUT, deadline);
        if (w <= 0) {
            if (w == 0)
                sw_log(SW_LOG_WARN, "wsclient: send: timed out");
            return SW_ERR;
        }
    }
    return 0;
}

/* Read once (waiting until the deadline for data): 0 after reading,
 * SW_EAGAIN on timeout, SW_ECLOSED when the connection is over. */
static int pump(sw_wsc_t *c, uint64_t deadline)
{
    if (c->closed || !wslay_event_want_read(c->ws)) {
        c->closed = 1;
        return SW_ECLOSED;
    }
    if (c->pre_off >= c->pre_len) {
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w == 0)
            return SW_EAGAIN;
        if (w < 0) {
            c->closed = 1;
            return SW_ECLOSED;
        }
    }
    int r = wslay_event_recv(c->ws);
    if (r < 0 || !wslay_event_want_read(c->ws))
        c->closed = 1;
    /* pongs, the reply to a close, or wslay's 1002 on a protocol error;
     * without auto_pong only the closing frames (pongs stay queued) */
    if (wslay_event_want_write(c->ws) && wslay_event_get_write_enabled(c->ws) &&
        (c->auto_pong || c->closed || !wslay_event_get_read_enabled(c->ws)))
        (void)flush(c, sw_now_ms() + 1000);
    return 0;
}

/* ---- public API ------------------------------------------------------------ */

sw_wsc_t *sw_wsc_connect(const char *host, int port, const char *path, int timeout_ms)
{
    return sw_wsc_connect_ex(host, port, path, NULL, timeout_ms, NULL, NULL);
}

sw_wsc_t *sw_wsc_connect_ex(const char *host, int port, const char *path, const char *extra_headers,
                            int timeout_ms, int *status, char **body)
{
    uint64_t deadline = deadline_of(timeout_ms);
    sw_wsc_t *c = NULL;
    char *req = NULL;
    resp_state_t rs;
    http_parser parser;
    http_parser_settings settings;
    sw_buf_t head;
    unsigned char raw[16];
    char key[32], want[29];
    int fd = -1;

    resp_init(&rs, &parser, &settings);
    sw_buf_init(&head, HEAD_MAX);
    if (status)
        *status = -1;
    if (body)
        *body = NULL;

    fd = tcp_connect(host, port, deadline);
    if (fd < 0)
        goto fail;

    sw_random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw)); /* 24 chars + NUL */
    if (sw_ws_accept_key(key, strlen(key), want) != 0) {
        sw_log(SW_LOG_WARN, "wsclient: sw_ws_accept_key failed for our own key");
        goto fail;
    }
    req = sw_xasprintf("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n%s\r\n",
                       path, host, port, key, extra_headers ? extra_headers : "");
    if (write_all(fd, req, strlen(req), deadline) != 0) {
        sw_log(SW_LOG_WARN, "wsclient: sending the upgrade request failed");
        goto fail;
    }

    /* Read until the end of the response head. */
    char *end = NULL;
    while (!end) {
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            if (sw_buf_append(&head, chunk, (size_t)n) != 0) {
                sw_log(SW_LOG_WARN, "wsclient: upgrade response head over %d bytes", HEAD_MAX);
                goto fail;
            }
            end = memmem(head.data, head.len, "\r\n\r\n", 4);
            continue;
        }
        if (n == 0) {
            sw_log(SW_LOG_WARN, "wsclient: connection closed during the upgrade (%zu bytes)",
                   head.len);
            goto fail;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            sw_log(SW_LOG_WARN, "wsclient: recv: %s", strerror(errno));
            goto fail;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            if (w == 0)
                sw_log(SW_LOG_WARN, "wsclient: upgrade response timed out");
            goto fail;
        }
    }
    size_t head_len = (size_t)(end - head.data) + 4;
    size_t np = http_parser_execute(&parser, &settings, head.data, head_len);
    if (np != head_len && !parser.upgrade) {
        sw_log(SW_LOG_WARN, "wsclient: bad upgrade response: %s",
               http_errno_description(HTTP_PARSER_ERRNO(&parser)));
        goto fail;
    }
    if (status)
        *status = (int)parser.status_code;
    if (parser.status_code != 101) {
        if (!status)
            sw_log(SW_LOG_WARN, "wsclient: upgrade answered %u, not 101", parser.status_code);
        /* The refusal's body: what followed the head, then until the
         * response ends. */
        if (head.len > head_len)
            http_parser_execute(&parser, &settings, head.data + head_len, head.len - head_len);
        while (body && !rs.complete && HTTP_PARSER_ERRNO(&parser) == HPE_OK) {
            char chunk[4096];
            ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (wait_fd(fd, POLLIN, deadline) <= 0)
                    break;
                continue;
            }
            if (n < 0)
                break;
            http_parser_execute(&parser, &settings, chunk, (size_t)n);
            if (n == 0)
                break;
        }
        if (body) {
            size_t blen;
            char *b = sw_buf_steal(&rs.body, &blen);
            *body = b ? b : sw_xstrdup("");
        }
        goto fail;
    }
    if (!rs.upgrade || strcasecmp(rs.upgrade, "websocket") != 0) {
        sw_log(SW_LOG_WARN, "wsclient: 101 without Upgrade: websocket");
        goto fail;
    }
    if (!rs.accept || strcmp(rs.accept, want) != 0) {
        sw_log(SW_LOG_WARN, "wsclient: wrong Sec-WebSocket-Accept \"%s\" (want %s)",
               rs.accept ? rs.accept : "", want);
        goto fail;
    }

    c = sw_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->auto_pong = 1;
    if (head.len > head_len) {
        c->pre_len = head.len - head_len;
        c->pre = sw_xmalloc(c->pre_len);
        memcpy(c->pre, head.data + head_len, c->pre_len);
    }
    struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .genmask_callback = ws_genmask_cb,
        .on_msg_recv_callback = ws_on_msg_cb,
    };
    if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0) {
        sw_log(SW_LOG_WARN, "wsclient: wslay_event_context_client_init failed");
        free(c->pre);
        free(c);
        c = NULL;
        goto fail;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, SW_WSC_MAX_MESSAGE);
    free(req);
    sw_buf_destroy(&head);
    resp_destroy(&rs);
    return c;

fail:
    if (fd >= 0)
        close(fd);
    free(req);
    sw_buf_destroy(&head);
    resp_destroy(&rs);
    return NULL;
}

int sw_wsc_send_text(sw_wsc_t *c, const char *data, size_t len)
{
    if (c->closed || c->close_sent)
        return SW_ECLOSED;
    struct wslay_event_msg m = {
        .opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)data, .msg_length = len};
    int r = wslay_event_queue_msg(c->ws, &m);
    if (r == WSLAY_ERR_NO_MORE_MSG)
        return SW_ECLOSED;
    if (r != 0) {
        sw_log(SW_LOG_WARN, "wsclient: wslay_event_queue_msg: %d", r);
        return SW_ERR;
    }
    return flush(c, deadline_of(IO_TIMEOUT_MS));
}

int sw_wsc_send_json(sw_wsc_t *c, const json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    if (!s) {
        sw_log(SW_LOG_WARN, "wsclient: json_dumps failed");
        return SW_EINVAL;
    }
    int r = sw_wsc_send_text(c, s, strlen(s));
    free(s);
    return r;
}

int sw_wsc_send_raw(sw_wsc_t *c, const void *bytes, size_t len)
{
    if (c->closed)
        return SW_ECLOSED;
    return write_all(c->fd, bytes, len, deadline_of(IO_TIMEOUT_MS));
}

/* Pop the oldest queued message, reading until the deadline if needed. */
static wsc_msg_t *next_msg(sw_wsc_t *c, int timeout_ms)
{
    uint64_t deadline = deadline_of(timeout_ms);
    while (!c->queue) {
        if (pump(c, deadline) != 0)
            break;
    }
    wsc_msg_t *m = c->queue;
    if (m) {
        DL_DELETE(c->queue, m);
        c->nqueued--;
    }
    return m;
}

char *sw_wsc_recv_text(sw_wsc_t *c, size_t *len, int timeout_ms)
{
    wsc_msg_t *m = next_msg(c, timeout_ms);
    if (!m)
        return NULL;
    char *text = m->text;
    if (len)
        *len = m->len;
    m->text = NULL;
    msg_free(m);
    return text;
}

static json_t *msg_json(wsc_msg_t *m)
{
    if (!m->parsed) {
        json_error_t err;
        m->parsed = 1;
        m->json = json_loadb(m->text, m->len, JSON_DECODE_ANY, &err);
    }
    return m->json;
}

json_t *sw_wsc_recv_json(sw_wsc_t *c, int timeout_ms)
{
    wsc_msg_t *m = next_msg(c, timeout_ms);
    if (!m)
        return NULL;
    json_t *j = msg_json(m);
    if (j)
        json_incref(j);
    else
        sw_log(SW_LOG_WARN, "wsclient: message is not JSON: %.200s", m->text);
    msg_free(m);
    return j;
}

static int msg_matches(wsc_msg_t *m, const char *type, int64_t id)
{
    json_t *j = msg_json(m);
    if (!json_is_object(j))
        return 0;
    const char *t = json_string_value(json_object_get(j, "type"));
    if (type && (!t || strcmp(t, type) != 0))
        return 0;
    if (id < 0)
        return 1;
    json_t *jid = json_object_get(j, "id");
    return json_is_integer(jid) && json_integer_value(jid) == id;
}

json_t *sw_wsc_wait(sw_wsc_t *c, const char *type, int64_t id, int timeout_ms)
{
    uint64_t deadline = deadline_of(timeout_ms);
    wsc_msg_t *scanned = NULL; /* last queued message already looked at */
    for (;;) {
        wsc_msg_t *m = scanned ? scanned->next : c->queue;
        for (; m; m = m->next) {
            if (msg_matches(m, type, id)) {
                json_t *j = json_incref(msg_json(m));
                DL_DELETE(c->queue, m);
                c->nqueued--;
                msg_free(m);
                return j;
            }
            scanned = m;
        }
        if (pump(c, deadline) != 0)
            return NULL;
        /* the queue may have dropped its oldest entries at the bound */
        if (scanned && c->nqueued >= SW_WSC_MAX_QUEUED)
            scanned = NULL;
    }
}

json_t *sw_wsc_hello(sw_wsc_t *c, const char *token, const json_t *resume, int timeout_ms)
{
    json_t *hello = json_pack("{s:s}", "type", "hello");
    if (token)
        json_object_set_new(hello, "token", json_string(token));
    if (resume)
        json_object_set(hello, "resume", (json_t *)resume);
    int r = sw_wsc_send_json(c, hello);
    json_decref(hello);
    if (r != 0)
        return NULL;
    return sw_wsc_wait(c, "welcome", -1, timeout_ms);
}

int sw_wsc_closed(const sw_wsc_t *c)
{
    return c->closed;
}

int sw_wsc_close_code(const sw_wsc_t *c)
{
    return c->close_code;
}

void sw_wsc_close(sw_wsc_t *c, int code)
{
    if (c->close_sent)
        return;
    c->close_sent = 1;
    if (c->closed && !wslay_event_get_write_enabled(c->ws))
        return;
    if (wslay_event_queue_close(c->ws, (uint16_t)code, NULL, 0) != 0)
        return; /* a close was already queued (reply to the peer's) */
    (void)flush(c, deadline_of(1000));
}

void sw_wsc_free(sw_wsc_t *c)
{
    if (!c)
        return;
    wsc_msg_t *m, *tmp;
    DL_FOREACH_SAFE(c->queue, m, tmp)
    {
        DL_DELETE(c->queue, m);
        msg_free(m);
    }
    wslay_event_context_free(c->ws);
    close(c->fd);
    free(c->pre);
    free(c);
}

void sw_wsc_set_auto_pong(sw_wsc_t *c, int on)
{
    c->auto_pong = on ? 1 : 0;
}

int sw_wsc_fd(const sw_wsc_t *c)
{
    return c->fd;
}

int sw_test_http(const char *host, int port, const char *method, const char *path, const char *body,
                 char **resp_body, int timeout_ms)
{
    return sw_test_http_ex(host, port, method, path, NULL, body, resp_body, timeout_ms);
}

int sw_test_http_ex(const char *host, int port, const char *method, const char *path,
                    const char *extra_headers, const char *body, char **resp_body, int timeout_ms)
{
    uint64_t deadline = deadline_of(timeout_ms);
    resp_state_t rs;
    http_parser parser;
    http_parser_settings settings;
    char *req = NULL;
    int status = -1;
    int fd = -1;

    if (resp_body)
        *resp_body = NULL;
    resp_init(&rs, &parser, &settings);
    fd = tcp_connect(host, port, deadline);
    if (fd < 0)
        goto fail;
    const char *xh = extra_headers ? extra_headers : "";
    if (body)
        req = sw_xasprintf("%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s"
                           "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                           method, path, host, port, xh, strlen(body), body);
    else
        req = sw_xasprintf("%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s\r\n", method,
                           path, host, port, xh);
    if (write_all(fd, req, strlen(req), deadline) != 0) {
        sw_log(SW_LOG_WARN, "http: sending %s %s failed", method, path);
        goto fail;
    }
    while (!rs.complete) {
        char chunk[8192];
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n >= 0) {
            size_t np = http_parser_execute(&parser, &settings, chunk, (size_t)n);
            if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || np != (size_t)n) {
                sw_log(SW_LOG_WARN, "http: bad response to %s %s: %s", method, path,
                       http_errno_description(HTTP_PARSER_ERRNO(&parser)));
                goto fail;
            }
            if (n == 0 && !rs.complete) {
                sw_log(SW_LOG_WARN, "http: connection closed before the response to %s %s ended",
                       method, path);
                goto fail;
            }
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            sw_log(SW_LOG_WARN, "http: recv: %s", strerror(errno));
            goto fail;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            if (w == 0)
                sw_log(SW_LOG_WARN, "http: response to %s %s timed out", method, path);
            goto fail;
        }
    }
    status = (int)parser.status_code;
    if (resp_body) {
        size_t len;
        char *b = sw_buf_steal(&rs.body, &len);
        *resp_body = b ? b : sw_xstrdup("");
    }
fail:
    if (fd >= 0)
        close(fd);
    free(req);
    resp_destroy(&rs);
    return status;
}
