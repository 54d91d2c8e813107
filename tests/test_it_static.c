/* Integration: the real binary serves the embedded demo page and browser
 * client (worker/static.h) with a real redis-server behind it. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"

#define T_MS 5000
#define RESP_MAX (1 << 20)

static sw_test_redis_t *redis;
static sw_test_server_t *srv;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    srv = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL);
    cr_assert(srv);
}

static void teardown(void)
{
    if (srv)
        sw_test_server_stop(srv, SIGTERM, 5000);
    srv = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(it_static, .init = setup, .fini = teardown, .timeout = 60);

/* One request with "Connection: close" and `extra` header lines (CRLF-
 * terminated, may be ""); the whole response, NUL-terminated (heap). */
static char *http_raw(const char *method, const char *path, const char *extra)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)srv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[1024];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
                     method, path, extra);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    char *resp = malloc(RESP_MAX + 1);
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, T_MS), 0, "response to %s %s timed out", method, path);
        ssize_t r = read(fd, resp + len, RESP_MAX - len);
        cr_assert_geq(r, 0);
        if (r == 0 || len + (size_t)r == RESP_MAX) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    resp[len] = '\0';
    return resp;
}

static int status_of(const char *resp)
{
    int st = 0;
    return sscanf(resp, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

/* The value of header `name` (copied into out), or NULL. */
static const char *header_of(const char *resp, const char *name, char *out, size_t outlen)
{
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            v += strspn(v, " ");
            size_t vl = strcspn(v, "\r");
            snprintf(out, outlen, "%.*s", (int)vl, v);
            return out;
        }
    }
    return NULL;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

Test(it_static, page_at_root_and_room)
{
    const char *ids[] = {"status",   "room",      "count",       "inc",      "dec",
                         "viewers",  "linked",    "toggle-link", "delayed",  "name",
                         "set-name", "chat-text", "send",        "messages", "toasts"};
    const char *paths[] = {"/", "/room/x", "/room/lobby-2_b"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(paths); i++) {
        char *r = http_raw("GET", paths[i], "");
        char v[128];
        cr_expect_eq(status_of(r), 200, "GET %s", paths[i]);
        cr_expect_str_eq(header_of(r, "Content-Type", v, sizeof(v)) ? v : "",
                         "text/html; charset=utf-8");
        cr_expect_str_eq(header_of(r, "Cache-Control", v, sizeof(v)) ? v : "", "no-cache");
        cr_expect_not_null(header_of(r, "ETag", v, sizeof(v)));
        for (size_t j = 0; j < SW_ARRAY_SIZE(ids); j++) {
            char needle[64];
            snprintf(needle, sizeof(needle), "id=\"%s\"", ids[j]);
            cr_expect_not_null(strstr(body_of(r), needle), "%s: #%s", paths[i], ids[j]);
        }
        cr_expect_not_null(strstr(body_of(r), "/app.js"));
        free(r);
    }
}

Test(it_static, client_module_and_assets)
{
    char v[128];
    char *r = http_raw("GET", "/statewire.js", "");
    cr_expect_eq(status_of(r), 200);
    cr_expect_not_null(strstr(header_of(r, "Content-Type", v, sizeof(v)) ? v : "", "javascript"));
    cr_expect_not_null(strstr(body_of(r), "export class Statewire"));
    free(r);
    r = http_raw("GET", "/app.js", "");
    cr_expect_eq(status_of(r), 200);
    cr_expect_not_null(strstr(body_of(r), "from '/statewire.js'"));
    free(r);
    r = http_raw("GET", "/style.css", "");
    cr_expect_eq(status_of(r), 200);
    cr_expect_str_eq(header_of(r, "Content-Type", v, sizeof(v)) ? v : "",
                     "text/css; charset=utf-8");
    free(r);
    r = http_raw("HEAD", "/statewire.js", "");
    cr_expect_eq(status_of(r), 200);
    cr_expect_str_eq(body_of(r), "", "HEAD has no body");
    cr_expect_gt(atoi(header_of(r, "Content-Length", v, sizeof(v)) ? v : "0"), 1000);
    free(r);
}

Test(it_static, if_none_match_gives_304)
{
    char etag[128], v[128], hdr[256];
    char *r = http_raw("GET", "/statewire.js", "");
    cr_assert_not_null(header_of(r, "ETag", etag, sizeof(etag)));
    free(r);
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    r = http_raw("GET", "/statewire.js", hdr);
    cr_expect_eq(status_of(r), 304);
    cr_expect_str_eq(body_of(r), "");
    cr_expect_null(header_of(r, "Content-Length", v, sizeof(v)),
                   "a 304 carries no Content-Length (RFC 9110 8.6)");
    cr_expect_str_eq(header_of(r, "ETag", v, sizeof(v)) ? v : "", etag);
    free(r);
    r = http_raw("GET", "/statewire.js", "If-None-Match: \"other\"\r\n");
    cr_expect_eq(status_of(r), 200, "another tag: the full answer");
    free(r);
    /* the page's tag is not the client's */
    r = http_raw("GET", "/room/a", hdr);
    cr_expect_eq(status_of(r), 200);
    free(r);
}

Test(it_static, other_paths_unchanged)
{
    char *r = http_raw("GET", "/nope", "");
    cr_expect_eq(status_of(r), 404);
    cr_expect_not_null(strstr(body_of(r), "\"not_found\""));
    free(r);
    const char *bad[] = {"/room/../x", "/room/a/b", "/index.html", "/room/"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        r = http_raw("GET", bad[i], "");
        cr_expect_eq(status_of(r), 404, "GET %s", bad[i]);
        free(r);
    }
    r = http_raw("POST", "/", "Content-Length: 0\r\n");
    cr_expect_eq(status_of(r), 405);
    free(r);
    r = http_raw("GET", "/healthz", "");
    cr_expect_eq(status_of(r), 200);
    free(r);
    r = http_raw("GET", "/_event", "");
    cr_expect_eq(status_of(r), 426, "a plain GET on the WebSocket path");
    free(r);
}
