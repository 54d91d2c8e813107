/* sseclient.c — minimal blocking EventSource for tests (see sseclient.h). */
#include "sseclient.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

sw_ssec_t *sw_ssec_open(int port, const char *query, const char *last_event_id,
                        const char *extra_headers)
{
    sw_ssec_t *e = calloc(1, sizeof(*e));
    cr_assert(e);
    e->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(e->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[8192];
    int n =
        snprintf(req, sizeof(req),
                 "GET /_sse?%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s%s%s%s\r\n",
                 query, last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
                 last_event_id ? "\r\n" : "", extra_headers ? extra_headers : "");
    cr_assert(n > 0 && (size_t)n < sizeof(req));
    cr_assert_eq(write(e->fd, req, (size_t)n), n);
    return e;
}

void sw_ssec_close(sw_ssec_t *e)
{
    if (!e)
        return;
    close(e->fd);
    free(e);
}

json_t *sw_ssec_next(sw_ssec_t *e, int timeout_ms)
{
    uint64_t end = sw_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        e->buf[e->len] = '\0';
        char *head_end = strstr(e->buf, "\r\n\r\n");
        if (head_end && strncmp(e->buf, "HTTP/1.1", 8) == 0) {
            cr_assert(strstr(e->buf, "200") && strstr(e->buf, "text/event-stream"),
                      "stream head: %.*s", (int)(head_end - e->buf), e->buf);
            size_t skip = (size_t)(head_end + 4 - e->buf);
            memmove(e->buf, e->buf + skip, e->len - skip);
            e->len -= skip;
            e->buf[e->len] = '\0';
        }
        char *block_end = strstr(e->buf, "\n\n");
        if (block_end && strncmp(e->buf, "HTTP/1.1", 8) != 0) {
            *block_end = '\0';
            json_t *data = NULL;
            for (char *line = e->buf, *save = NULL; (line = strtok_r(line, "\n", &save));
                 line = NULL) {
                if (strncmp(line, "id: ", 4) == 0)
                    snprintf(e->last_id, sizeof(e->last_id), "%s", line + 4);
                else if (strncmp(line, "data: ", 6) == 0)
                    data = json_loads(line + 6, 0, NULL);
            }
            size_t skip = (size_t)(block_end + 2 - e->buf);
            memmove(e->buf, e->buf + skip, e->len - skip);
            e->len -= skip;
            if (data)
                return data;
            continue; /* a comment (keep-alive) */
        }
        uint64_t now = sw_now_ms();
        if (now >= end)
            return NULL;
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0)
            return NULL;
        ssize_t k = read(e->fd, e->buf + e->len, sizeof(e->buf) - 1 - e->len);
        if (k <= 0)
            return NULL;
        e->len += (size_t)k;
    }
}

int sw_ssec_closed(sw_ssec_t *e, int timeout_ms)
{
    uint64_t end = sw_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = sw_now_ms();
        if (now >= end)
            return 0;
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0)
            return 0;
        char scratch[4096];
        ssize_t k = read(e->fd, scratch, sizeof(scratch));
        if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}
