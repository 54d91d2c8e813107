/* Integration: hostile input. Every case sends something a careless or
 * malicious client might send and checks the answer that the documents
 * promise (proto/PROTOCOL.md, PROTOCOL-CORE.md, and the RFCs they build on:
 * RFC 9112 for HTTP/1.1 framing, RFC 6455 for WebSocket), then that every
 * server still answers GET /healthz with 200, that no worker was restarted
 * (same worker pids) and that no sanitizer report appeared in a server's
 * log.
 *
 * Categories, one Test each:
 *  - http:       malformed request lines and headers, obs-fold, NUL and
 *                bare CR, oversized heads and too many headers, conflicting
 *                or bad Content-Length, Content-Length with
 *                Transfer-Encoding and other smuggling attempts, bad chunked
 *                bodies, bodies over the bound, path traversal on the
 *                static routes, absolute-form, CONNECT / TRACE / OPTIONS,
 *                HTTP/1.0 and 0.9, pipelining with garbage;
 *  - slow:       dribbled and stalled heads and bodies, idle keep-alive
 *                connections, silent sockets, a slowloris crowd, WebSockets
 *                that never say hello (all run at once, on threads);
 *  - handshake:  bad Sec-WebSocket-Key / Version, Upgrade without
 *                Connection, other methods on /_event;
 *  - frames:     WebSocket frames built by hand: unmasked, RSV bits,
 *                reserved opcodes, control-frame rules, close codes,
 *                lengths in every form, fragmentation, binary, UTF-8;
 *  - messages:   every field of hello and event with the wrong type, size
 *                or alphabet, JSON that is not a message, deep nesting,
 *                duplicate keys, \u0000, floods;
 *  - resume:     duplicate tabs and forged resumes (WebSocket and SSE, same
 *                host and the other host) never reach the victim's state;
 *  - sse_post:   bad event-stream parameters, forged or stale POST
 *                credentials on the owner's host and the other host, bad
 *                POST bodies;
 *  - auth_origin: the app's authentication hook refusing, the Origin
 *                allowlist on upgrade, event stream and POST.
 *
 * Each case is a row of a table (its name, the document section that sets
 * the answer, the bytes or steps, the expected answer), or a small function
 * for cases with several steps. A failing case does not stop the others:
 * every failure is listed at the end of its Test with what was expected,
 * per which section, and what the server did.
 *
 * Servers: one redis-server; two statewire instances ("two hosts", 2
 * workers each) with the demo app, and one with the trust test app
 * (tests/apps/trust_app.c: auth "user:<name>" admits <name>, "deny"
 * refuses) and an Origin allowlist. All run with --http-timeout-ms 1500 so
 * that the slow cases end quickly. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/util.h"
#include "support/rawconn.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 5000            /* time allowed for an answer */
#define HTTP_TIMEOUT_MS 1500 /* --http-timeout-ms of every server */
#define HTTP_TIMEOUT_STR "1500"
#define MAX_MESSAGE 65536 /* --max-message-bytes (default) */
#define GOOD_ORIGIN "http://good.example:8080"
#define PROBE_ID 900001 /* id of the event that shows a connection still works */

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BIN = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };

/* ---- servers ------------------------------------------------------------ */

static sw_test_redis_t *redis;
static sw_test_server_t *host[2]; /* demo app, 2 workers each */
static sw_test_server_t *app;     /* trust test app, Origin allowlist */

typedef struct watched {
    sw_test_server_t **s;
    const char *label;
    pid_t pids[8];
    int npids;
    long log_off; /* log bytes already scanned for sanitizer reports */
} watched_t;

static watched_t watch[3] = {
    {&host[0], "host0", {0}, 0, 0}, {&host[1], "host1", {0}, 0, 0}, {&app, "app", {0}, 0, 0}};

static void sort_pids(pid_t *p, int n)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && p[k - 1] > p[k]; k--) {
            pid_t t = p[k];
            p[k] = p[k - 1];
            p[k - 1] = t;
        }
}

static void watch_baseline(watched_t *w)
{
    w->npids = sw_test_server_workers(*w->s, w->pids, 8);
    sort_pids(w->pids, w->npids);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    const char *demo[] = {"--http-timeout-ms", HTTP_TIMEOUT_STR, NULL};
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, demo);
        cr_assert(host[i]);
    }
    const char *trust[] = {"--app",     SW_TEST_TRUST_APP,   "--allowed-origins",
                           GOOD_ORIGIN, "--http-timeout-ms", HTTP_TIMEOUT_STR,
                           NULL};
    app = sw_test_server_start(0, sw_test_redis_url(redis), 1, trust);
    cr_assert(app);
    for (int i = 0; i < 3; i++) {
        watch_baseline(&watch[i]);
        watch[i].log_off = 0;
    }
}

/* Stop a server and look at what its workers logged on the way out (leak
 * reports come at exit): a hard link keeps the log readable after the
 * harness has removed it. */
static void stop_and_scan(watched_t *w)
{
    if (!*w->s)
        return;
    char path[300];
    snprintf(path, sizeof(path), "%s.scan", (*w->s)->log_path);
    int linked = link((*w->s)->log_path, path) == 0;
    sw_test_server_stop(*w->s, SIGTERM, 5000);
    *w->s = NULL;
    FILE *f = linked ? fopen(path, "r") : NULL;
    if (f && fseek(f, w->log_off, SEEK_SET) == 0) {
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
            if (strstr(line, "AddressSanitizer") || strstr(line, "runtime error:") ||
                strstr(line, "LeakSanitizer")) {
                cr_expect(0, "%s: sanitizer report in the log: %s", w->label, line);
                break;
            }
        }
    }
    if (f)
        fclose(f);
    if (linked)
        unlink(path);
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        stop_and_scan(&watch[i]);
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 240);

/* ---- judging -------------------------------------------------------------- */

/* One case: what it found wrong, one line per failed expectation. */
typedef struct judge {
    const char *cat;
    const char *name;
    const char *doc;
    sw_buf_t why;
} judge_t;

static int ncases, nfailed;
static sw_buf_t failures; /* one paragraph per failed case */

static void judge_begin(judge_t *j, const char *cat, const char *name, const char *doc)
{
    j->cat = cat;
    j->name = name;
    j->doc = doc;
    sw_buf_init(&j->why, 0);
}

/* Record a failed expectation (when !ok); returns ok. */
__attribute__((format(printf, 3, 4))) static int expect(judge_t *j, int ok, const char *fmt, ...)
{
    if (ok)
        return 1;
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sw_buf_printf(&j->why, "    - %s\n", line);
    return 0;
}

/* Text for a report: control and non-ASCII bytes as \xNN, at most max
 * bytes of input. Returns a thread-local buffer (one use at a time per
 * thread). */
static const char *shown(const char *s, size_t n, size_t max)
{
    static _Thread_local char out[1200];
    size_t k = 0;
    if (!s)
        return "(none)";
    for (size_t i = 0; i < n && i < max && k + 5 < sizeof(out); i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            out[k++] = (char)ch;
        else
            k += (size_t)snprintf(out + k, sizeof(out) - k, "\\x%02x", ch);
    }
    if (n > max && k + 4 < sizeof(out))
        k += (size_t)snprintf(out + k, sizeof(out) - k, "...");
    out[k] = '\0';
    return out;
}

static const char *shown_str(const char *s)
{
    return shown(s, s ? strlen(s) : 0, 300);
}

/* New sanitizer reports in a server's log since the last look. */
static void scan_log(judge_t *j, watched_t *w)
{
    FILE *f = fopen((*w->s)->log_path, "r");
    if (!f)
        return;
    if (fseek(f, w->log_off, SEEK_SET) == 0) {
        char line[1024];
        int reported = 0;
        while (fgets(line, sizeof(line), f)) {
            if (!reported && (strstr(line, "AddressSanitizer") || strstr(line, "runtime error:") ||
                              strstr(line, "LeakSanitizer"))) {
                expect(j, 0, "%s: sanitizer report in the log: %s", w->label, shown_str(line));
                reported = 1;
            }
        }
        w->log_off = ftell(f);
    }
    fclose(f);
}

/* Every server answers /healthz with 200, has the same workers as before,
 * and logged no sanitizer report. A changed set becomes the new baseline
 * (reported once). */
static void check_servers(judge_t *j)
{
    for (int i = 0; i < 3; i++) {
        watched_t *w = &watch[i];
        if (!*w->s)
            continue;
        char *body = NULL;
        int st = sw_test_http("127.0.0.1", (*w->s)->port, "GET", "/healthz", NULL, &body, 3000);
        expect(j, st == 200, "%s: GET /healthz answered %d (%s), want 200", w->label, st,
               shown_str(body));
        free(body);
        pid_t now[8];
        int n = sw_test_server_workers(*w->s, now, 8);
        sort_pids(now, n);
        int same = n == w->npids;
        for (int k = 0; same && k < n; k++)
            same = now[k] == w->pids[k];
        if (!expect(j, same, "%s: a worker was restarted (workers %d -> %d, pids changed)",
                    w->label, w->npids, n)) {
            /* let the master respawn it, then watch the new set */
            usleep(300000);
            watch_baseline(w);
        }
        scan_log(j, w);
    }
}

/* Close the case: check the servers, report, count. */
static void judge_end(judge_t *j)
{
    check_servers(j);
    ncases++;
    if (j->why.len) {
        nfailed++;
        sw_buf_printf(&failures, "  FAIL %s/%s (expected per %s):\n%s", j->cat, j->name, j->doc,
                      j->why.data);
        fprintf(stderr, "FAIL %s/%s (per %s):\n%s", j->cat, j->name, j->doc, j->why.data);
    } else {
        fprintf(stderr, "ok   %s/%s\n", j->cat, j->name);
    }
    sw_buf_destroy(&j->why);
}

/* The end of a Test: no worker restart on record either, then the list. */
static void report(const char *cat)
{
    judge_t j;
    judge_begin(&j, cat, "(worker restarts counter)", "PROTOCOL.md \"Transport\" (/healthz)");
    for (int i = 0; i < 3; i++) {
        if (!*watch[i].s)
            continue;
        char *m = NULL;
        int st = sw_test_http("127.0.0.1", (*watch[i].s)->port, "GET", "/metrics", NULL, &m, 3000);
        const char *p = m ? strstr(m, "\nstatewire_worker_restarts_total ") : NULL;
        long v = p ? strtol(p + strlen("\nstatewire_worker_restarts_total "), NULL, 10) : -1;
        expect(&j, st == 200 && v == 0, "%s: statewire_worker_restarts_total is %ld (status %d)",
               watch[i].label, v, st);
        free(m);
    }
    if (j.why.len) {
        nfailed++;
        sw_buf_printf(&failures, "  FAIL %s/%s:\n%s", j.cat, j.name, j.why.data);
    }
    sw_buf_destroy(&j.why);
    fprintf(stderr, "== %s: %d cases, %d failed\n", cat, ncases, nfailed);
    cr_expect_eq(nfailed, 0, "%s: %d of %d hostile cases failed:\n%s", cat, nfailed, ncases,
                 failures.data ? failures.data : "");
    sw_buf_destroy(&failures);
    ncases = nfailed = 0;
}

/* ---- JSON helpers --------------------------------------------------------- */

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

char *dump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("(nothing)");
}

/* An HTTP error body per PROTOCOL.md "Every HTTP error body": one JSON
 * object {"error":{"code":C,"message":M}} with C = code (or alt). */
static void expect_error_body(judge_t *j, const char *what, const char *body, const char *code,
                              const char *alt)
{
    json_t *b = body ? json_loads(body, 0, NULL) : NULL;
    json_t *e = json_object_get(b, "error");
    const char *c = str(e, "code"), *m = str(e, "message");
    if (expect(j, c && m,
               "%s: the body is not {\"error\":{\"code\",\"message\"}} (want code %s): %s", what,
               code, shown(body, body ? strlen(body) : 0, 200)))
        expect(j, strcmp(c, code) == 0 || (alt && strcmp(c, alt) == 0),
               "%s: error code \"%s\", want \"%s\"%s%s", what, c, code, alt ? " or " : "",
               alt ? alt : "");
    json_decref(b);
}

int64_t id_of(const json_t *m)
{
    json_t *id = json_object_get(m, "id");
    return json_is_integer(id) ? (int64_t)json_integer_value(id) : -1;
}

json_int_t count_in(const json_t *m)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(m, "delta"), "counter"), "count"));
}

/* ==== HTTP ================================================================= */

#define HOST "Host: 127.0.0.1\r\n"
#define DOC_400 "PROTOCOL.md \"Every HTTP error body\": bad_request (400, malformed HTTP)"
#define DOC_431 "PROTOCOL.md \"Bounds\": HTTP request head 16 KiB, 64 headers -> 431"
#define DOC_413 "PROTOCOL.md \"Bounds\": HTTP request body --max-message-bytes -> 413"
#define DOC_404 "PROTOCOL.md \"Transport\": any other path gets 404 (not_found)"
#define DOC_405 "PROTOCOL.md \"Every HTTP error body\": method_not_allowed (405, with Allow)"
#define DOC_405_EVENT                                                                              \
    "PROTOCOL.md \"Transport\" (WebSocket): methods other than GET and POST on /_event get 405 "   \
    "(method_not_allowed, Allow: GET, POST)"
#define DOC_CL "RFC 9112 §6.3 item 5 (invalid Content-Length: 400, then close) and " DOC_400
#define DOC_TE "RFC 9112 §6.3 item 4 (Transfer-Encoding not ending in chunked: 400, close)"
#define DOC_CLTE                                                                                   \
    "RFC 9112 §6.1 (Content-Length with Transfer-Encoding: reject, or chunked wins and the "      \
    "connection closes after the answer)"
#define DOC_CHUNK "RFC 9112 §7.1 (chunked coding) and " DOC_400

/* An answer: its status, the error code of its JSON body (NULL: no error
 * body to check) and the methods its Allow header must list. */
typedef struct answer {
    int status;
    const char *code;
    const char *allow;
    const char *header; /* "Name: value" the answer must carry (value exact) */
} answer_t;

enum {
    THEN_ANY = 0, /* the connection may stay open */
    THEN_CLOSE,   /* the server closes the connection after the answers */
    THEN_QUIET    /* nothing more comes (no answer to bytes smuggled behind) */
};

typedef struct http_case {
    const char *name;
    const char *doc;
    const char *req; /* the bytes, NUL-terminated unless len is given */
    size_t len;
    void (*gen)(sw_buf_t *b); /* builds the bytes instead */
    answer_t want[3];         /* the answers in order */
    answer_t alt[2];          /* other first answers the documents allow */
    int repeat;               /* want[0] this many times (pipelining) */
    int then;                 /* THEN_* */
    const char *forbid;       /* text no answer may contain */
    int head;                 /* HEAD request: answers have no body */
} http_case_t;

static void check_allow(judge_t *j, const char *what, const sw_http_resp_t *resp, const char *want)
{
    char *allow = sw_http_resp_header(resp, "Allow");
    if (expect(j, allow != NULL, "%s: no Allow header (want \"%s\")", what, want)) {
        char methods[64];
        snprintf(methods, sizeof(methods), "%s", want);
        for (char *save = NULL, *m = strtok_r(methods, ", ", &save); m;
             m = strtok_r(NULL, ", ", &save)) {
            int found = 0;
            char list[256];
            snprintf(list, sizeof(list), "%s", allow);
            for (char *s2 = NULL, *a = strtok_r(list, ", ", &s2); a && !found;
                 a = strtok_r(NULL, ", ", &s2))
                found = strcmp(a, m) == 0;
            expect(j, found, "%s: Allow \"%s\" does not list %s", what, allow, m);
        }
    }
    free(allow);
}

/* alt: NULL or two alternatives (status 0: none). An alternative with the
 * same status as w names another error code that is allowed. */
static void check_answer(judge_t *j, int i, const sw_http_resp_t *resp, const answer_t *w,
                         const answer_t *alt, int head, const char *forbid)
{
    char what[32];
    snprintf(what, sizeof(what), "answer %d", i + 1);
    const answer_t *m = resp->status == w->status ? w : NULL;
    const char *other_code = NULL;
    char wanted[64];
    int wl = snprintf(wanted, sizeof(wanted), "%d", w->status);
    for (int k = 0; alt && k < 2 && alt[k].status; k++) {
        if (alt[k].status == w->status)
            other_code = alt[k].code;
        else
            wl += snprintf(wanted + wl, sizeof(wanted) - (size_t)wl, " or %d", alt[k].status);
        if (!m && resp->status == alt[k].status)
            m = &alt[k];
    }
    if (!expect(j, m != NULL, "%s: status %d, want %s (body: %s)", what, resp->status, wanted,
                shown(resp->body, resp->body_len, 200)))
        return;
    if (m->code && !head)
        expect_error_body(j, what, resp->body, m->code, m == w ? other_code : NULL);
    if (m->allow)
        check_allow(j, what, resp, m->allow);
    if (m->header) {
        char name[64];
        const char *colon = strchr(m->header, ':');
        snprintf(name, sizeof(name), "%.*s", (int)(colon - m->header), m->header);
        char *v = sw_http_resp_header(resp, name);
        expect(j, v && strcasecmp(v, colon + 2) == 0, "%s: header %s is \"%s\", want \"%s\"", what,
               name, v ? v : "(absent)", colon + 2);
        free(v);
    }
    if (forbid)
        expect(j,
               !strstr(resp->head, forbid) &&
                   !memmem(resp->body, resp->body_len, forbid, strlen(forbid)),
               "%s carries \"%s\": %s", what, forbid, shown(resp->body, resp->body_len, 200));
}

static int nwant(const http_case_t *c)
{
    if (c->repeat)
        return c->repeat;
    int n = 0;
    while (n < 3 && c->want[n].status)
        n++;
    return n;
}

/* What comes after the expected answers: a close, or nothing at all. */
static void check_then(judge_t *j, sw_raw_t *r, int then, const char *forbid)
{
    if (then == THEN_CLOSE)
        expect(j, sw_raw_wait_closed(r, 3000), "the connection stayed open after the answer");
    else if (then == THEN_QUIET) {
        uint64_t until = sw_now_ms() + 400;
        while (!r->eof && sw_now_ms() < until)
            (void)sw_raw_read_some(r, (int)(until - sw_now_ms()));
    }
    if (then != THEN_ANY)
        expect(j, r->in.len == 0, "more came after the answer: %s",
               shown(r->in.data, r->in.len, 200));
    if (forbid && r->in.len)
        expect(j, !memmem(r->in.data, r->in.len, forbid, strlen(forbid)),
               "a later answer carries \"%s\"", forbid);
}

static void run_http_case(const char *cat, const http_case_t *c, int port)
{
    judge_t j;
    judge_begin(&j, cat, c->name, c->doc);
    sw_buf_t req;
    sw_buf_init(&req, 0);
    if (c->gen)
        c->gen(&req);
    else
        sw_buf_append(&req, c->req, c->len ? c->len : strlen(c->req));
    sw_raw_t *r = sw_raw_connect(port, T_MS);
    if (expect(&j, r != NULL, "cannot connect")) {
        (void)sw_raw_send(r, req.data, req.len); /* the server may stop reading early */
        int n = nwant(c);
        int all = 1;
        for (int i = 0; i < n; i++) {
            const answer_t *w = c->repeat ? &c->want[0] : &c->want[i];
            sw_http_resp_t resp;
            int rc = sw_raw_http_response(r, c->head, T_MS, &resp);
            if (!expect(&j, rc == 1, "answer %d of %d (want %d): %s; received: %s", i + 1, n,
                        w->status,
                        rc == 0            ? "none within 5 s"
                        : rc == SW_ECLOSED ? "the connection closed first"
                                           : "not an HTTP answer",
                        shown(r->in.data, r->in.len, 200))) {
                all = 0;
                break;
            }
            check_answer(&j, i, &resp, w, i == 0 ? c->alt : NULL, c->head, c->forbid);
            sw_http_resp_clear(&resp);
        }
        if (all)
            check_then(&j, r, c->then, c->forbid);
    }
    sw_raw_free(r);
    sw_buf_destroy(&req);
    judge_end(&j);
}

static void fill(sw_buf_t *b, char ch, size_t n)
{
    sw_buf_reserve(b, n);
    for (size_t i = 0; i < n; i++)
        sw_buf_append(b, &ch, 1);
}

static void gen_big_header(sw_buf_t *b)
{
    sw_buf_append_str(b, "GET /healthz HTTP/1.1\r\n" HOST "X-Big: ");
    fill(b, 'a', 20000);
    sw_buf_append_str(b, "\r\n\r\n");
}

static void gen_big_head_many(sw_buf_t *b)
{
    sw_buf_append_str(b, "GET /healthz HTTP/1.1\r\n" HOST);
    for (int i = 0; i < 60; i++) { /* 60 headers of 300 bytes: 18 KB, under 64 headers */
        sw_buf_printf(b, "X-H%02d: ", i);
        fill(b, 'b', 300);
        sw_buf_append_str(b, "\r\n");
    }
    sw_buf_append_str(b, "\r\n");
}

static void gen_headers(sw_buf_t *b, int n)
{
    sw_buf_append_str(b, "GET /healthz HTTP/1.1\r\n" HOST);
    for (int i = 1; i < n; i++)
        sw_buf_printf(b, "X-H%d: %d\r\n", i, i);
    sw_buf_append_str(b, "\r\n");
}

static void gen_65_headers(sw_buf_t *b)
{
    gen_headers(b, 65);
}

static void gen_64_headers(sw_buf_t *b)
{
    gen_headers(b, 64);
}

static void gen_long_url(sw_buf_t *b)
{
    sw_buf_append_str(b, "GET /");
    fill(b, 'u', 20000);
    sw_buf_append_str(b, " HTTP/1.1\r\n" HOST "\r\n");
}

static void gen_url_8k(sw_buf_t *b)
{
    sw_buf_append_str(b, "GET /");
    fill(b, 'u', 8000);
    sw_buf_append_str(b, " HTTP/1.1\r\n" HOST "\r\n");
}

static void gen_huge_method(sw_buf_t *b)
{
    fill(b, 'G', 10000);
    sw_buf_append_str(b, " /healthz HTTP/1.1\r\n" HOST "\r\n");
}

#define SMUGGLED "GET /smuggled HTTP/1.1\r\n" HOST "\r\n"

/* A body over the bound made of requests: none of them may be answered. */
static void gen_body_over_bound(sw_buf_t *b)
{
    size_t n = MAX_MESSAGE + 4096;
    sw_buf_printf(b,
                  "POST /_event HTTP/1.1\r\n" HOST "Content-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  n);
    size_t start = b->len;
    while (b->len - start + strlen(SMUGGLED) <= n)
        sw_buf_append_str(b, SMUGGLED);
    fill(b, ' ', n - (b->len - start));
}

static void gen_chunk_over_bound(sw_buf_t *b)
{
    size_t n = MAX_MESSAGE + 4096;
    sw_buf_printf(b, "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
                  n);
    fill(b, ' ', n);
    sw_buf_append_str(b, "\r\n0\r\n\r\n");
}

/* Two chunks each under the bound, together over it. */
static void gen_chunks_over_bound(sw_buf_t *b)
{
    size_t n = MAX_MESSAGE / 2 + 1024;
    sw_buf_append_str(b, "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n");
    for (int k = 0; k < 2; k++) {
        sw_buf_printf(b, "%zx\r\n", n);
        fill(b, ' ', n);
        sw_buf_append_str(b, "\r\n");
    }
    sw_buf_append_str(b, "0\r\n\r\n");
}

static void gen_pipeline_100(sw_buf_t *b)
{
    for (int i = 0; i < 100; i++)
        sw_buf_append_str(b, "GET /healthz HTTP/1.1\r\n" HOST "\r\n");
}

/* A GET with a body that holds a request: the body is read as a body. */
static void gen_get_body_smuggle(sw_buf_t *b)
{
    sw_buf_printf(b, "GET /healthz HTTP/1.1\r\n" HOST "Content-Length: %zu\r\n\r\n%s",
                  strlen(SMUGGLED), SMUGGLED);
    sw_buf_append_str(b, "GET /healthz HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n");
}

#define TRAVERSAL(nm, path)                                                                        \
    {                                                                                              \
        .name = nm, .doc = DOC_404 " (static routes serve only the embedded files)",               \
        .req = "GET " path " HTTP/1.1\r\n" HOST "\r\n", .want = {{404, "not_found", NULL}},        \
        .forbid = "root:"                                                                          \
    }

static const http_case_t http_cases[] = {
    /* request line */
    {.name = "request_line_garbage",
     .doc = DOC_400,
     .req = "\x01\x02\x03 garbage\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "method_not_a_token",
     .doc = DOC_400,
     .req = "G@T /healthz HTTP/1.1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "method_10k_bytes",
     .doc = DOC_400,
     .gen = gen_huge_method,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "version_not_http",
     .doc = DOC_400,
     .req = "GET /healthz HTTX/1.1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "version_without_minor",
     .doc = DOC_400,
     .req = "GET /healthz HTTP/1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "request_line_without_target",
     .doc = DOC_400,
     .req = "GET HTTP/1.1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "nul_in_target",
     .doc = DOC_400,
     .req = "GET /heal\0thz HTTP/1.1\r\n" HOST "\r\n",
     .len = sizeof("GET /heal\0thz HTTP/1.1\r\n" HOST "\r\n") - 1,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "del_in_target",
     .doc = DOC_400 " (RFC 3986: DEL is not allowed in a URI)",
     .req = "GET /heal\x7fthz HTTP/1.1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "raw_utf8_in_target",
     .doc = DOC_400 " (RFC 3986), or " DOC_404,
     .req = "GET /\xc3\xbc HTTP/1.1\r\n" HOST "\r\n",
     .want = {{400, "bad_request", NULL}},
     .alt = {{404, "not_found", NULL}}},
    /* header lines */
    {.name = "header_without_colon",
     .doc = DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-No-Colon\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "space_before_colon",
     .doc = "RFC 9112 §5.1 (whitespace between name and colon: MUST 400) and " DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-A : 1\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "space_in_header_name",
     .doc = DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X Bad: 1\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "nul_in_header_name",
     .doc = DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-\0A: 1\r\n\r\n",
     .len = sizeof("GET /healthz HTTP/1.1\r\n" HOST "X-\0A: 1\r\n\r\n") - 1,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "nul_in_header_value",
     .doc = "RFC 9110 §5.5 (NUL in a field value: reject, or replace with SP) and " DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n",
     .len = sizeof("GET /healthz HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n") - 1,
     .want = {{400, "bad_request", NULL}},
     .alt = {{200, NULL, NULL}}},
    {.name = "bare_cr_in_header_value",
     .doc = "RFC 9112 §2.2 (a bare CR: invalid, or replaced with SP) and " DOC_400,
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-A: a\rb\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .alt = {{200, NULL, NULL}}},
    {.name = "obs_fold",
     .doc = "RFC 9112 §5.2 (obs-fold: 400, or replace with SP)",
     .req = "GET /healthz HTTP/1.1\r\n" HOST "X-A: one\r\n  two\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .alt = {{200, NULL, NULL}}},
    {.name = "bare_lf_line_ends",
     .doc = "RFC 9112 §2.2 (a recipient MAY accept bare LF) or " DOC_400,
     .req = "GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
     .want = {{200, NULL, NULL}},
     .alt = {{400, "bad_request", NULL}}},
    /* bounds of the head */
    {.name = "header_value_20k",
     .doc = DOC_431,
     .gen = gen_big_header,
     .want = {{431, "headers_too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "head_18k_in_60_headers",
     .doc = DOC_431,
     .gen = gen_big_head_many,
     .want = {{431, "headers_too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "65_headers",
     .doc = DOC_431,
     .gen = gen_65_headers,
     .want = {{431, "headers_too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "64_headers_are_fine",
     .doc = DOC_431 " (64 is within the bound)",
     .gen = gen_64_headers,
     .want = {{200, NULL, NULL}}},
    {.name = "url_20k",
     .doc = DOC_431 " (the request line is part of the head)",
     .gen = gen_long_url,
     .want = {{431, "headers_too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "url_8k_unknown_path",
     .doc = DOC_404,
     .gen = gen_url_8k,
     .want = {{404, "not_found", NULL}}},
    /* Content-Length */
    {.name = "content_length_twice_different",
     .doc = DOC_CL,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 2\r\nContent-Length: 40\r\n\r\n"
            "{}" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "content_length_list",
     .doc = DOC_CL,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 2, 40\r\n\r\n{}" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "content_length_negative",
     .doc = DOC_CL,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: -1\r\n\r\n{}",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "content_length_hex",
     .doc = DOC_CL,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 0x2\r\n\r\n{}",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "content_length_plus",
     .doc = DOC_CL,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: +2\r\n\r\n{}",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "content_length_overflows_64_bits",
     .doc = DOC_CL " (or 413 when read as a number over the bound)",
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 184467440737095516160000\r\n\r\n{}",
     .want = {{400, "bad_request", NULL}},
     .alt = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "content_length_1mb_no_body",
     .doc = DOC_413,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 1000000\r\n\r\n",
     .want = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "expect_continue_over_bound",
     .doc = DOC_413 " (no 100 Continue for a body that will be refused, RFC 9110 §10.1.1)",
     .req = "POST /_event HTTP/1.1\r\n" HOST "Expect: 100-continue\r\n"
            "Content-Length: 1000000\r\n\r\n",
     .want = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "body_over_bound_made_of_requests",
     .doc = DOC_413,
     .gen = gen_body_over_bound,
     .want = {{413, "too_large", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    /* Transfer-Encoding and smuggling */
    {.name = "content_length_then_chunked",
     .doc = DOC_CLTE,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 4\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .alt = {{400, "bad_json", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "chunked_then_content_length",
     .doc = DOC_CLTE,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
            "Content-Length: 60\r\n\r\n0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .alt = {{400, "bad_json", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "transfer_encoding_gzip",
     .doc = DOC_TE,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "transfer_encoding_chunked_identity",
     .doc = DOC_TE,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, identity\r\n\r\n"
            "0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "transfer_encoding_xchunked",
     .doc = DOC_TE,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: xchunked\r\n\r\n"
            "0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "transfer_encoding_twice",
     .doc = DOC_TE " (the codings of both lines, in order: chunked, x)",
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
            "Transfer-Encoding: x\r\n\r\n0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "transfer_encoding_space_before_colon",
     .doc = "RFC 9112 §5.1 (MUST 400) and " DOC_400,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Content-Length: 4\r\n"
            "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    {.name = "get_body_holds_a_request",
     .doc = "RFC 9112 §6.3 (Content-Length frames the body of any request)",
     .gen = gen_get_body_smuggle,
     .want = {{200, NULL, NULL}, {200, NULL, NULL}},
     .then = THEN_CLOSE,
     .forbid = "smuggled"},
    /* chunked bodies */
    {.name = "chunk_size_not_hex",
     .doc = DOC_CHUNK,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
            "0\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "chunk_size_negative",
     .doc = DOC_CHUNK,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n"
            "0\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "chunk_size_overflows_64_bits",
     .doc = DOC_CHUNK " (or 413: a size over the bound)",
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
            "1ffffffffffffffff\r\n{}\r\n0\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .alt = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "chunk_data_longer_than_size",
     .doc = DOC_CHUNK,
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n"
            "0\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "chunked_body_decoded",
     .doc = "PROTOCOL.md \"Transport\" (POST /_event: 400 bad_json for a body that is not JSON)",
     .req = "POST /_event HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n"
            "4\r\njson\r\n0\r\n\r\n",
     .want = {{400, "bad_json", NULL}}},
    {.name = "chunk_over_bound",
     .doc = DOC_413,
     .gen = gen_chunk_over_bound,
     .want = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    {.name = "chunks_together_over_bound",
     .doc = DOC_413,
     .gen = gen_chunks_over_bound,
     .want = {{413, "too_large", NULL}},
     .then = THEN_CLOSE},
    /* pipelining */
    {.name = "garbage_after_a_valid_request",
     .doc = DOC_400 " (after the answer to the valid request)",
     .req = "GET /healthz HTTP/1.1\r\n" HOST "\r\n\x16\x03\x01 garbage\r\n\r\n",
     .want = {{200, NULL, NULL}, {400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "pipelined_100_requests",
     .doc = "RFC 9112 §9.3.2 (pipelining: answers in order)",
     .gen = gen_pipeline_100,
     .want = {{200, NULL, NULL}},
     .repeat = 100},
    /* forms and methods */
    {.name = "absolute_form",
     .doc = "RFC 9112 §3.2.2 (a server MUST accept the absolute-form)",
     .req = "GET http://evil.example/healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n",
     .want = {{200, NULL, NULL}}},
    {.name = "absolute_form_file_url",
     .doc = DOC_404 " or " DOC_400,
     .req = "GET file:///etc/passwd HTTP/1.1\r\n" HOST "\r\n",
     .want = {{404, "not_found", NULL}},
     .alt = {{400, "bad_request", NULL}},
     .forbid = "root:"},
    {.name = "connect_method",
     .doc = "no tunnel: a JSON error (" DOC_400 ")",
     .req = "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .alt = {{405, "method_not_allowed", NULL}, {404, "not_found", NULL}}},
    {.name = "trace_healthz",
     .doc = DOC_405 " (the request is never echoed)",
     .req = "TRACE /healthz HTTP/1.1\r\n" HOST "Cookie: secret=s3cr3t\r\n\r\n",
     .want = {{405, "method_not_allowed", "GET"}},
     .forbid = "s3cr3t"},
    {.name = "trace_page",
     .doc = DOC_405 " (the request is never echoed)",
     .req = "TRACE / HTTP/1.1\r\n" HOST "Cookie: secret=s3cr3t\r\n\r\n",
     .want = {{405, "method_not_allowed", "GET"}},
     .forbid = "s3cr3t"},
    {.name = "options_asterisk",
     .doc = DOC_404 " / " DOC_405 " / " DOC_400 " (the documents name no answer)",
     .req = "OPTIONS * HTTP/1.1\r\n" HOST "\r\n",
     .want = {{404, "not_found", NULL}},
     .alt = {{400, "bad_request", NULL}}},
    {.name = "options_event",
     .doc = DOC_405_EVENT,
     .req = "OPTIONS /_event HTTP/1.1\r\n" HOST "\r\n",
     .want = {{405, "method_not_allowed", "GET, POST"}}},
    {.name = "put_event",
     .doc = DOC_405_EVENT,
     .req = "PUT /_event HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}",
     .want = {{405, "method_not_allowed", "GET, POST"}}},
    {.name = "delete_event",
     .doc = DOC_405_EVENT,
     .req = "DELETE /_event HTTP/1.1\r\n" HOST "\r\n",
     .want = {{405, "method_not_allowed", "GET, POST"}}},
    {.name = "patch_event",
     .doc = DOC_405_EVENT,
     .req = "PATCH /_event HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}",
     .want = {{405, "method_not_allowed", "GET, POST"}}},
    {.name = "head_event",
     .doc = DOC_405_EVENT,
     .req = "HEAD /_event HTTP/1.1\r\n" HOST "\r\n",
     .want = {{405, "method_not_allowed", "GET, POST"}},
     .head = 1},
    {.name = "post_sse",
     .doc = DOC_405,
     .req = "POST /_sse HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}",
     .want = {{405, "method_not_allowed", "GET"}}},
    {.name = "post_healthz",
     .doc = DOC_405,
     .req = "POST /healthz HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}",
     .want = {{405, "method_not_allowed", "GET"}}},
    {.name = "delete_page",
     .doc = DOC_405,
     .req = "DELETE /statewire.js HTTP/1.1\r\n" HOST "\r\n",
     .want = {{405, "method_not_allowed", "GET"}}},
    /* versions */
    {.name = "http_1_0",
     .doc = "RFC 9112 §9.3 (HTTP/1.0 without keep-alive: close after the answer)",
     .req = "GET /healthz HTTP/1.0\r\n\r\n",
     .want = {{200, NULL, NULL}},
     .then = THEN_CLOSE},
    {.name = "http_0_9",
     .doc = "RFC 9112 §3 (a request-line without HTTP-version is invalid: 400) and " DOC_400,
     .req = "GET /healthz\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "http_2_preface",
     .doc = DOC_400,
     .req = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
     .want = {{400, "bad_request", NULL}},
     .then = THEN_CLOSE},
    {.name = "upgrade_h2c_ignored",
     .doc = "RFC 9110 §7.8 (a server may ignore Upgrade: the normal answer, no 101)",
     .req = "GET /healthz HTTP/1.1\r\n" HOST "Connection: Upgrade, HTTP2-Settings\r\n"
            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
     .want = {{200, NULL, NULL}}},
    /* traversal on the static routes */
    TRAVERSAL("dotdot", "/../../../../etc/passwd"),
    TRAVERSAL("dotdot_encoded", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
    TRAVERSAL("dotdot_encoded_upper", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"),
    TRAVERSAL("dotdot_encoded_slash", "/..%2f..%2f..%2fetc%2fpasswd"),
    TRAVERSAL("dotdot_double_encoded", "/%252e%252e/%252e%252e/etc/passwd"),
    TRAVERSAL("dotdot_overlong_utf8", "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"),
    TRAVERSAL("dotdot_backslash", "/..\\..\\..\\etc\\passwd"),
    TRAVERSAL("dotdot_after_room", "/room/../../../etc/passwd"),
    TRAVERSAL("dotdot_encoded_after_room", "/room/..%2f..%2f..%2fetc%2fpasswd"),
    TRAVERSAL("dotdot_after_file", "/statewire.js/../../../etc/passwd"),
    TRAVERSAL("double_slash_absolute", "//etc/passwd"),
    TRAVERSAL("proc_self", "/proc/self/environ"),
    TRAVERSAL("source_tree_path", "/web/index.html"),
    TRAVERSAL("nul_encoded_suffix", "/statewire.js%00.html"),
    TRAVERSAL("trailing_slash_on_file", "/statewire.js/"),
    TRAVERSAL("dotfile", "/.git/config"),
    {.name = "quote_in_path",
     .doc = DOC_404 " (and the body stays valid JSON)",
     .req = "GET /a\"b HTTP/1.1\r\n" HOST "\r\n",
     .want = {{404, "not_found", NULL}},
     .alt = {{400, "bad_request", NULL}}},
    {.name = "invalid_utf8_in_target",
     .doc = DOC_404 " or " DOC_400 " (either way the body is valid JSON, RFC 8259 §8.1: UTF-8)",
     .req = "GET /\xff\xfe HTTP/1.1\r\n" HOST "\r\n",
     .want = {{404, "not_found", NULL}},
     .alt = {{400, "bad_request", NULL}}},
};

Test(hostile, http)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(http_cases); i++)
        run_http_case("http", &http_cases[i], host[i % 2]->port);
    report("http");
}

/* ==== WebSocket helpers ===================================================== */

/* A masked text frame with FIN. */
static int ws_send_text(sw_raw_t *r, const char *text)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_ws_frame(&b, 1, 0, OP_TEXT, 1, text, strlen(text));
    int rc = sw_raw_send(r, b.data, b.len);
    sw_buf_destroy(&b);
    return rc;
}

/* The first text message (a JSON object) with the given type and, when id
 * >= 0, that id, within timeout_ms; other frames are skipped (texts are
 * appended to `seen` when not NULL). NULL on timeout or close. */
static json_t *ws_wait_json(sw_raw_t *r, const char *type, int64_t id, int timeout_ms,
                            sw_buf_t *seen)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = sw_now_ms();
        if (now >= deadline)
            return NULL;
        sw_ws_in_t f;
        if (sw_raw_ws_read(r, &f, (int)(deadline - now)) != 1)
            return NULL;
        if (f.opcode == OP_TEXT) {
            json_t *m = json_loadb(f.payload, f.len, 0, NULL);
            if (json_is_object(m) && (!type || (str(m, "type") && !strcmp(str(m, "type"), type))) &&
                (id < 0 || id_of(m) == id)) {
                sw_ws_in_clear(&f);
                return m;
            }
            json_decref(m);
            if (seen)
                sw_buf_printf(seen, "%s%s", seen->len ? " " : "", f.payload);
        } else if (f.opcode == OP_CLOSE) {
            sw_ws_in_clear(&f);
            return NULL;
        }
        sw_ws_in_clear(&f);
    }
}

/* A server close frame within timeout_ms. Returns 1 (code and reason
 * set), 0 when none came in time, SW_ECLOSED when the socket went without
 * one. Text messages before it are appended to `texts` when not NULL. */
static int ws_wait_close(sw_raw_t *r, int timeout_ms, int *code, char *reason, size_t cap,
                         sw_buf_t *texts)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    *code = -1;
    if (reason && cap)
        reason[0] = '\0';
    for (;;) {
        uint64_t now = sw_now_ms();
        if (now >= deadline)
            return 0;
        sw_ws_in_t f;
        int rc = sw_raw_ws_read(r, &f, (int)(deadline - now));
        if (rc != 1)
            return rc == 0 ? 0 : SW_ECLOSED;
        if (f.opcode == OP_CLOSE) {
            *code = f.len >= 2 ? sw_ws_close_code(&f) : 0;
            if (reason && cap)
                snprintf(reason, cap, "%.*s", (int)(f.len >= 2 ? f.len - 2 : 0),
                         f.len >= 2 ? f.payload + 2 : "");
            sw_ws_in_clear(&f);
            return 1;
        }
        if (f.opcode == OP_TEXT && texts)
            sw_buf_printf(texts, "%s%s", texts->len ? " " : "", f.payload);
        sw_ws_in_clear(&f);
    }
}

/* After the server's close frame: answer it (RFC 6455 §5.5.1) and expect
 * the socket to go. */
static void ws_finish_close(judge_t *j, sw_raw_t *r, int code)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    sw_ws_frame(&b, 1, 0, OP_CLOSE, 1, p, code > 0 ? 2 : 0);
    (void)sw_raw_send(r, b.data, b.len);
    sw_buf_destroy(&b);
    expect(j, sw_raw_wait_closed(r, 3000), "the socket stayed open after the closing handshake");
}

/* Open a raw WebSocket on port, say hello (token NULL: none) and wait for
 * the welcome (returned in *welcome when not NULL). NULL on failure
 * (recorded). */
static sw_raw_t *ws_open_hello(judge_t *j, int port, const char *token, json_t **welcome)
{
    int st = 0;
    sw_raw_t *r = sw_raw_ws_open(port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (status %d)", st))
        return NULL;
    char hello[160];
    if (token)
        snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"token\":\"%s\"}", token);
    else
        snprintf(hello, sizeof(hello), "{\"type\":\"hello\"}");
    ws_send_text(r, hello);
    json_t *w = ws_wait_json(r, "welcome", -1, T_MS, NULL);
    if (!expect(j, w != NULL, "no welcome after the hello")) {
        sw_raw_free(r);
        return NULL;
    }
    if (welcome)
        *welcome = w;
    else
        json_decref(w);
    return r;
}

/* The connection still works: an event gets its answer. */
static void ws_probe(judge_t *j, sw_raw_t *r, int64_t id)
{
    char ev[128];
    snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%lld,\"name\":\"counter.increment\"}",
             (long long)id);
    int rc = ws_send_text(r, ev);
    json_t *d = rc == 0 ? ws_wait_json(r, NULL, id, T_MS, NULL) : NULL;
    if (expect(j, d != NULL, "the connection no longer works: no answer to event %lld",
               (long long)id))
        expect(j, str(d, "type") && strcmp(str(d, "type"), "delta") == 0,
               "event %lld was answered with %s", (long long)id, shown_str(str(d, "type")));
    json_decref(d);
}

/* ==== slow clients ========================================================== */

#define DOC_408                                                                                    \
    "PROTOCOL.md \"Bounds\": HTTP request head, body, idle keep-alive connection: "                \
    "--http-timeout-ms -> 408 (timeout), then the connection closes"
#define DOC_1008                                                                                   \
    "PROTOCOL.md \"Transport\" and \"Bounds\": WebSocket before its hello: --http-timeout-ms -> "  \
    "close 1008, reason \"no hello within <N> ms\""
#define SLOW_MIN (HTTP_TIMEOUT_MS - 200)      /* no timeout before the bound */
#define SLOW_MAX (2 * HTTP_TIMEOUT_MS + 1000) /* and one soon after it */
#define SLOW_WAIT (SLOW_MAX + 1500)           /* how long to wait for it */

typedef struct slow_case {
    const char *name;
    const char *doc;
    void (*run)(judge_t *j);
    judge_t j;
    pthread_t th;
} slow_case_t;

static uint64_t ms_since(uint64_t t0)
{
    return sw_now_ms() - t0;
}

/* A 408 answer (JSON body, code timeout) between SLOW_MIN and SLOW_MAX ms
 * after t0, then the close. */
static void expect_408(judge_t *j, sw_raw_t *r, uint64_t t0)
{
    sw_http_resp_t resp;
    int rc = sw_raw_http_response(r, 0, (int)SW_MAX(0, (int64_t)SLOW_WAIT - (int64_t)ms_since(t0)),
                                  &resp);
    uint64_t el = ms_since(t0);
    if (!expect(j, rc == 1, "no 408 within %d ms (%s; received: %s)", SLOW_WAIT,
                rc == 0            ? "nothing"
                : rc == SW_ECLOSED ? "closed without an answer"
                                   : "not HTTP",
                shown(r->in.data, r->in.len, 120)))
        return;
    if (expect(j, resp.status == 408, "status %d, want 408 (body %s)", resp.status,
               shown(resp.body, resp.body_len, 120)))
        expect_error_body(j, "the 408", resp.body, "timeout", NULL);
    expect(j, el >= SLOW_MIN && el <= SLOW_MAX, "the 408 came after %llu ms, want %d..%d",
           (unsigned long long)el, SLOW_MIN, SLOW_MAX);
    sw_http_resp_clear(&resp);
    expect(j, sw_raw_wait_closed(r, 3000), "the connection stayed open after the 408");
}

static void slow_head_dribbled(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[0]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    char req[128];
    int n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    memset(req + n, 'a', sizeof(req) - (size_t)n); /* 1 byte per 50 ms: 6.4 s in all */
    uint64_t t0 = sw_now_ms();
    sw_raw_dribble(r, req, sizeof(req), 1, 50, 1);
    expect_408(j, r, t0);
    sw_raw_free(r);
}

static void slow_upgrade_head_dribbled(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[1]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    char req[160];
    int n = snprintf(req, sizeof(req),
                     "GET /_event HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nX-Slow: ");
    memset(req + n, 'a', sizeof(req) - (size_t)n);
    uint64_t t0 = sw_now_ms();
    sw_raw_dribble(r, req, sizeof(req), 1, 40, 1);
    expect_408(j, r, t0);
    sw_raw_free(r);
}

static void slow_head_stalled(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[0]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    uint64_t t0 = sw_now_ms();
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    sw_raw_send(r, req, strlen(req));
    expect_408(j, r, t0);
    sw_raw_free(r);
}

static void slow_no_bytes(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[1]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    uint64_t t0 = sw_now_ms();
    int closed = sw_raw_wait_closed(r, SLOW_WAIT);
    uint64_t el = ms_since(t0);
    if (expect(j, closed, "a silent socket was still open after %d ms", SLOW_WAIT)) {
        expect(j, el >= SLOW_MIN && el <= SLOW_MAX, "closed after %llu ms, want %d..%d",
               (unsigned long long)el, SLOW_MIN, SLOW_MAX);
        if (r->in.len) { /* a 408 may come first */
            sw_http_resp_t resp;
            int rc = sw_raw_http_response(r, 0, 0, &resp);
            if (expect(j, rc == 1 && resp.status == 408,
                       "what came before the close is not a 408: %s",
                       shown(r->in.data, r->in.len, 120)))
                expect_error_body(j, "the 408", resp.body, "timeout", NULL);
            if (rc == 1)
                sw_http_resp_clear(&resp);
        }
    }
    sw_raw_free(r);
}

static void slow_idle_keepalive(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[0]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    sw_raw_send(r, req, strlen(req));
    sw_http_resp_t resp;
    int rc = sw_raw_http_response(r, 0, T_MS, &resp);
    if (expect(j, rc == 1 && resp.status == 200, "the first request was not answered 200")) {
        sw_http_resp_clear(&resp);
        expect_408(j, r, sw_now_ms());
    }
    sw_raw_free(r);
}

static void slow_keepalive_within_bound(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[1]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        sw_raw_send(r, req, strlen(req));
        sw_http_resp_t resp;
        int rc = sw_raw_http_response(r, 0, T_MS, &resp);
        if (!expect(j, rc == 1 && resp.status == 200, "request %d on the connection: %s", i + 1,
                    rc == 1 ? "not 200" : "no answer"))
            break;
        sw_http_resp_clear(&resp);
        if (i == 0)
            usleep(HTTP_TIMEOUT_MS / 2 * 1000);
    }
    sw_raw_free(r);
}

static void slow_head_within_bound(judge_t *j)
{
    sw_raw_t *r = sw_raw_connect(host[0]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"; /* 42 bytes, 0.6 s */
    sw_raw_dribble(r, req, strlen(req), 1, 15, 1);
    sw_http_resp_t resp;
    int rc = sw_raw_http_response(r, 0, T_MS, &resp);
    expect(j, rc == 1 && resp.status == 200,
           "a head dribbled within the bound was not answered 200 (%d, %s)", rc,
           rc == 1 ? shown(resp.body, resp.body_len, 120) : "");
    if (rc == 1)
        sw_http_resp_clear(&resp);
    sw_raw_free(r);
}

static void slow_body(judge_t *j, int dribble)
{
    sw_raw_t *r = sw_raw_connect(host[dribble]->port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return;
    const char *head = "POST /_event HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n";
    sw_raw_send(r, head, strlen(head));
    uint64_t t0 = sw_now_ms();
    char body[200];
    memset(body, ' ', sizeof(body));
    if (dribble)
        sw_raw_dribble(r, body, 130, 1, 50, 1); /* 6.5 s */
    else
        sw_raw_send(r, body, 10);
    expect_408(j, r, t0);
    sw_raw_free(r);
}

static void slow_body_dribbled(judge_t *j)
{
    slow_body(j, 1);
}

static void slow_body_stalled(judge_t *j)
{
    slow_body(j, 0);
}

/* 40 sockets with a stalled head at once: the server still serves, and
 * closes each of them in time. */
static void slow_loris_crowd(judge_t *j)
{
    enum { N = 40 };
    sw_raw_t *r[N];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ";
    uint64_t t0 = sw_now_ms();
    for (int i = 0; i < N; i++) {
        r[i] = sw_raw_connect(host[1]->port, T_MS);
        if (r[i])
            sw_raw_send(r[i], req, strlen(req));
    }
    usleep(300000);
    char *body = NULL;
    int st = sw_test_http("127.0.0.1", host[1]->port, "GET", "/healthz", NULL, &body, 3000);
    expect(j, st == 200, "GET /healthz during the crowd: %d", st);
    free(body);
    int open = 0;
    for (int i = 0; i < N; i++) {
        if (!r[i]) {
            expect(j, 0, "socket %d could not connect", i);
            continue;
        }
        int left = (int)SW_MAX(0, (int64_t)SLOW_WAIT - (int64_t)ms_since(t0));
        if (!sw_raw_wait_closed(r[i], left))
            open++;
        sw_raw_free(r[i]);
    }
    expect(j, open == 0, "%d of %d stalled sockets were still open after %d ms", open, N,
           SLOW_WAIT);
}

/* A WebSocket that has not said hello: close 1008 at the bound. */
static void expect_1008(judge_t *j, sw_raw_t *r, uint64_t t0)
{
    int code;
    char reason[160];
    int rc = ws_wait_close(r, SLOW_WAIT, &code, reason, sizeof(reason), NULL);
    uint64_t el = ms_since(t0);
    if (!expect(j, rc == 1, "%s within %d ms",
                rc == 0 ? "still open, no close frame" : "the socket went without a close frame",
                SLOW_WAIT))
        return;
    expect(j, code == 1008, "close code %d, want 1008 (reason \"%s\")", code, shown_str(reason));
    char want[64];
    snprintf(want, sizeof(want), "no hello within %d ms", HTTP_TIMEOUT_MS);
    expect(j, strcmp(reason, want) == 0, "close reason \"%s\", want \"%s\"", shown_str(reason),
           want);
    expect(j, el >= SLOW_MIN && el <= SLOW_MAX, "closed after %llu ms, want %d..%d",
           (unsigned long long)el, SLOW_MIN, SLOW_MAX);
    ws_finish_close(j, r, code);
}

static void slow_ws_no_hello(judge_t *j)
{
    int st;
    sw_raw_t *r = sw_raw_ws_open(host[0]->port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (%d)", st))
        return;
    expect_1008(j, r, sw_now_ms());
    sw_raw_free(r);
}

static void slow_ws_pings_no_hello(judge_t *j)
{
    int st;
    sw_raw_t *r = sw_raw_ws_open(host[1]->port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (%d)", st))
        return;
    uint64_t t0 = sw_now_ms();
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < 2 * HTTP_TIMEOUT_MS / 200; i++) {
        sw_buf_reset(&b);
        sw_ws_frame(&b, 1, 0, OP_PING, 1, "hi", 2);
        if (sw_raw_send(r, b.data, b.len) != 0)
            break;
        usleep(200000);
        /* stop pinging once the server has closed (its frame stays in r->in) */
        (void)sw_raw_read_some(r, 0);
        if (r->in.len && memchr(r->in.data, 0x88, r->in.len))
            break;
    }
    sw_buf_destroy(&b);
    expect_1008(j, r, t0);
    sw_raw_free(r);
}

static void slow_ws_event_no_hello(judge_t *j)
{
    int st;
    sw_raw_t *r = sw_raw_ws_open(host[0]->port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (%d)", st))
        return;
    uint64_t t0 = sw_now_ms();
    ws_send_text(r, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}");
    json_t *e = ws_wait_json(r, "error", 1, T_MS, NULL);
    expect(j, e && str(e, "code") && strcmp(str(e, "code"), "bad_message") == 0,
           "an event before hello: want error bad_message");
    json_decref(e);
    expect_1008(j, r, t0);
    sw_raw_free(r);
}

static void slow_ws_partial_frame_no_hello(judge_t *j)
{
    int st;
    sw_raw_t *r = sw_raw_ws_open(host[1]->port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (%d)", st))
        return;
    uint64_t t0 = sw_now_ms();
    const uint8_t part[] = {0x81, 0x90, 0x37}; /* a 16-byte text frame, 1 byte of its key */
    sw_raw_send(r, part, sizeof(part));
    expect_1008(j, r, t0);
    sw_raw_free(r);
}

static void slow_ws_hello_dribbled(judge_t *j)
{
    int st;
    sw_raw_t *r = sw_raw_ws_open(host[0]->port, "/_event", NULL, T_MS, &st);
    if (!expect(j, r != NULL, "the upgrade failed (%d)", st))
        return;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    const char *hello = "{\"type\":\"hello\"}";
    sw_ws_frame(&b, 1, 0, OP_TEXT, 1, hello, strlen(hello)); /* 22 bytes, 0.55 s */
    sw_raw_dribble(r, b.data, b.len, 1, 25, 1);
    sw_buf_destroy(&b);
    json_t *w = ws_wait_json(r, "welcome", -1, T_MS, NULL);
    expect(j, w != NULL, "a hello dribbled within the bound got no welcome");
    json_decref(w);
    if (w) {
        /* the hello stopped the clock: nothing comes for twice the bound */
        sw_ws_in_t f;
        int rc = sw_raw_ws_read(r, &f, 2 * HTTP_TIMEOUT_MS + 500);
        expect(j, rc == 0, "after the welcome the server sent %s",
               rc == 1 ? (f.opcode == OP_CLOSE ? "a close frame" : "a frame") : "its FIN");
        if (rc == 1)
            sw_ws_in_clear(&f);
        ws_probe(j, r, 1);
    }
    sw_raw_free(r);
}

static slow_case_t slow_cases[] = {
    {.name = "head_dribbled_forever",
     .doc = DOC_408 " (the head as a whole, not per byte)",
     .run = slow_head_dribbled},
    {.name = "upgrade_head_dribbled_forever", .doc = DOC_408, .run = slow_upgrade_head_dribbled},
    {.name = "head_stalled", .doc = DOC_408, .run = slow_head_stalled},
    {.name = "no_bytes_at_all",
     .doc = DOC_408 " (closed within the bound; a 408 may come first)",
     .run = slow_no_bytes},
    {.name = "idle_keepalive", .doc = DOC_408, .run = slow_idle_keepalive},
    {.name = "body_dribbled_forever", .doc = DOC_408, .run = slow_body_dribbled},
    {.name = "body_stalled", .doc = DOC_408, .run = slow_body_stalled},
    {.name = "slowloris_crowd_of_40",
     .doc = DOC_408 " (each of them; the server serves meanwhile)",
     slow_loris_crowd},
    {.name = "head_dribbled_within_bound",
     .doc = DOC_408 " (a head complete within the bound is served)",
     slow_head_within_bound},
    {.name = "keepalive_reused_within_bound",
     .doc = DOC_408 " (an idle pause under the bound is fine)",
     slow_keepalive_within_bound},
    {.name = "ws_no_hello", .doc = DOC_1008, .run = slow_ws_no_hello},
    {.name = "ws_pings_but_no_hello",
     .doc = DOC_1008 " (pings are not a hello)",
     .run = slow_ws_pings_no_hello},
    {.name = "ws_event_but_no_hello",
     .doc = DOC_1008 " (an event is not a hello)",
     .run = slow_ws_event_no_hello},
    {.name = "ws_partial_frame_no_hello", .doc = DOC_1008, .run = slow_ws_partial_frame_no_hello},
    {.name = "ws_hello_dribbled_within_bound",
     .doc = DOC_1008 " (a hello within the bound stops the clock)",
     slow_ws_hello_dribbled},
};

static void *slow_thread(void *arg)
{
    slow_case_t *sc = arg;
    sc->run(&sc->j);
    return NULL;
}

Test(hostile, slow)
{
    /* all at once: the whole group takes about one slow case */
    for (size_t i = 0; i < SW_ARRAY_SIZE(slow_cases); i++) {
        slow_case_t *sc = &slow_cases[i];
        judge_begin(&sc->j, "slow", sc->name, sc->doc);
        cr_assert_eq(pthread_create(&sc->th, NULL, slow_thread, sc), 0);
    }
    for (size_t i = 0; i < SW_ARRAY_SIZE(slow_cases); i++)
        pthread_join(slow_cases[i].th, NULL);
    for (size_t i = 0; i < SW_ARRAY_SIZE(slow_cases); i++)
        judge_end(&slow_cases[i].j);
    report("slow");
}

/* ==== WebSocket handshake =================================================== */

#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define V13 "Sec-WebSocket-Version: 13\r\n"
#define UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define GET_EVENT "GET /_event HTTP/1.1\r\n" HOST
#define DOC_KEY "PROTOCOL.md \"Transport\" (WebSocket): a bad key gets 400 (bad_request)"
#define DOC_VERSION                                                                                \
    "PROTOCOL.md \"Transport\" (WebSocket): a wrong version gets 426 with "                        \
    "Sec-WebSocket-Version: 13"
#define DOC_426                                                                                    \
    "PROTOCOL.md \"Transport\" (WebSocket): a plain GET /_event gets 426 (upgrade_required)"

static const http_case_t handshake_cases[] = {
    {.name = "key_missing",
     .doc = DOC_KEY,
     .req = GET_EVENT UPGRADE V13 "\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_empty",
     .doc = DOC_KEY,
     .req = GET_EVENT UPGRADE V13 "Sec-WebSocket-Key: \r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_of_10_bytes",
     .doc = DOC_KEY " (RFC 6455 §4.1: 16 bytes)",
     .req = GET_EVENT UPGRADE V13 "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_of_17_bytes",
     .doc = DOC_KEY " (RFC 6455 §4.1: 16 bytes)",
     .req = GET_EVENT UPGRADE V13 "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_of_32_bytes",
     .doc = DOC_KEY " (RFC 6455 §4.1: 16 bytes)",
     .req = GET_EVENT UPGRADE V13
     "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_not_base64",
     .doc = DOC_KEY,
     .req = GET_EVENT UPGRADE V13 "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "key_twice",
     .doc = DOC_KEY " (RFC 6455 §11.3.1: the header MUST NOT appear more than once)",
     .req = GET_EVENT UPGRADE V13 KEY "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
     .want = {{400, "bad_request", NULL, NULL}}},
    {.name = "version_8",
     .doc = DOC_VERSION,
     .req = GET_EVENT UPGRADE KEY "Sec-WebSocket-Version: 8\r\n\r\n",
     .want = {{426, "upgrade_required", NULL, "Sec-WebSocket-Version: 13"}}},
    {.name = "version_missing",
     .doc = DOC_VERSION " (or 400: RFC 6455 §4.2.1)",
     .req = GET_EVENT UPGRADE KEY "\r\n",
     .want = {{426, "upgrade_required", NULL, "Sec-WebSocket-Version: 13"}},
     .alt = {{400, "bad_request", NULL, NULL}}},
    {.name = "version_list",
     .doc = DOC_VERSION,
     .req = GET_EVENT UPGRADE KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n",
     .want = {{426, "upgrade_required", NULL, "Sec-WebSocket-Version: 13"}}},
    {.name = "version_huge",
     .doc = DOC_VERSION,
     .req = GET_EVENT UPGRADE KEY "Sec-WebSocket-Version: 99999999999999999999\r\n\r\n",
     .want = {{426, "upgrade_required", NULL, "Sec-WebSocket-Version: 13"}}},
    {.name = "plain_get_event",
     .doc = DOC_426,
     .req = GET_EVENT "\r\n",
     .want = {{426, "upgrade_required", NULL, NULL}}},
    {.name = "upgrade_without_connection",
     .doc = DOC_426,
     .req = GET_EVENT "Upgrade: websocket\r\n" KEY V13 "\r\n",
     .want = {{426, "upgrade_required", NULL, NULL}}},
    {.name = "connection_without_upgrade",
     .doc = DOC_426,
     .req = GET_EVENT "Connection: Upgrade\r\n" KEY V13 "\r\n",
     .want = {{426, "upgrade_required", NULL, NULL}}},
    {.name = "upgrade_to_h2c",
     .doc = DOC_426,
     .req = GET_EVENT "Upgrade: h2c\r\nConnection: Upgrade\r\n" KEY V13 "\r\n",
     .want = {{426, "upgrade_required", NULL, NULL}}},
    {.name = "upgrade_over_http_1_0",
     .doc = "RFC 6455 §4.1 (the handshake is HTTP/1.1 or higher): 400 or 426, never 101",
     .req = "GET /_event HTTP/1.0\r\n" HOST UPGRADE KEY V13 "\r\n",
     .want = {{426, "upgrade_required", NULL, NULL}},
     .alt = {{400, "bad_request", NULL, NULL}}},
    {.name = "post_with_upgrade_headers",
     .doc = "PROTOCOL.md \"Transport\" (POST /_event: 400 bad_json for a body that is not JSON)",
     .req = "POST /_event HTTP/1.1\r\n" HOST UPGRADE KEY V13 "Content-Length: 0\r\n\r\n",
     .want = {{400, "bad_json", NULL, NULL}}},
    {.name = "put_with_upgrade_headers",
     .doc = DOC_405_EVENT,
     .req = "PUT /_event HTTP/1.1\r\n" HOST UPGRADE KEY V13 "Content-Length: 0\r\n\r\n",
     .want = {{405, "method_not_allowed", "GET, POST", NULL}}},
    {.name = "upgrade_on_other_path",
     .doc = DOC_404,
     .req = "GET /_eventx HTTP/1.1\r\n" HOST UPGRADE KEY V13 "\r\n",
     .want = {{404, "not_found", NULL, NULL}}},
    {.name = "upgrade_on_event_slash",
     .doc = DOC_404,
     .req = "GET /_event/ HTTP/1.1\r\n" HOST UPGRADE KEY V13 "\r\n",
     .want = {{404, "not_found", NULL, NULL}}},
    {.name = "upgrade_on_healthz_ignored",
     .doc = "PROTOCOL.md \"Transport\" (GET /healthz answers 200) and RFC 9110 §7.8",
     .req = "GET /healthz HTTP/1.1\r\n" HOST UPGRADE KEY V13 "\r\n",
     .want = {{200, NULL, NULL, NULL}}},
};

/* An upgrade request sent by hand; the 101's head in *resp. */
static sw_raw_t *upgrade_by_hand(judge_t *j, int port, const char *extra, sw_http_resp_t *resp)
{
    sw_raw_t *r = sw_raw_connect(port, T_MS);
    if (!expect(j, r != NULL, "cannot connect"))
        return NULL;
    char req[512];
    snprintf(req, sizeof(req), GET_EVENT UPGRADE KEY V13 "%s\r\n", extra);
    sw_raw_send(r, req, strlen(req));
    int rc = sw_raw_http_response(r, 1, T_MS, resp);
    if (!expect(j, rc == 1 && resp->status == 101, "the upgrade was answered %d",
                rc == 1 ? resp->status : -1)) {
        if (rc == 1)
            sw_http_resp_clear(resp);
        sw_raw_free(r);
        return NULL;
    }
    char *acc = sw_http_resp_header(resp, "Sec-WebSocket-Accept");
    expect(j, acc && strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
           "Sec-WebSocket-Accept \"%s\" (RFC 6455 §1.3)", acc ? acc : "(absent)");
    free(acc);
    return r;
}

static void hs_subprotocol_not_chosen(judge_t *j)
{
    sw_http_resp_t resp;
    sw_raw_t *r =
        upgrade_by_hand(j, host[0]->port, "Sec-WebSocket-Protocol: evil, chat\r\n", &resp);
    if (!r)
        return;
    char *p = sw_http_resp_header(&resp, "Sec-WebSocket-Protocol");
    expect(j, p == NULL, "the server chose a subprotocol it does not speak: %s", p);
    free(p);
    sw_http_resp_clear(&resp);
    ws_send_text(r, "{\"type\":\"hello\"}");
    json_t *w = ws_wait_json(r, "welcome", -1, T_MS, NULL);
    expect(j, w != NULL, "no welcome");
    json_decref(w);
    sw_raw_free(r);
}

static void hs_deflate_not_accepted(judge_t *j)
{
    sw_http_resp_t resp;
    sw_raw_t *r = upgrade_by_hand(
        j, host[1]->port,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", &resp);
    if (!r)
        return;
    char *x = sw_http_resp_header(&resp, "Sec-WebSocket-Extensions");
    expect(j, x == NULL, "the server accepted an extension: %s", x);
    free(x);
    sw_http_resp_clear(&resp);
    ws_send_text(r, "{\"type\":\"hello\"}");
    json_decref(ws_wait_json(r, "welcome", -1, T_MS, NULL));
    /* a "compressed" message: RSV1 without the extension is a protocol error */
    sw_buf_t b;
    sw_buf_init(&b, 0);
    static const uint8_t deflated[] = {0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2, 0x52};
    sw_ws_frame(&b, 1, 4, OP_TEXT, 1, deflated, sizeof(deflated));
    sw_raw_send(r, b.data, b.len);
    sw_buf_destroy(&b);
    int code;
    char reason[160];
    int rc = ws_wait_close(r, T_MS, &code, reason, sizeof(reason), NULL);
    if (expect(j, rc == 1, "RSV1 without the extension: %s",
               rc == 0 ? "no close frame" : "the socket went without a close frame"))
        expect(j, code == 1002, "close code %d, want 1002", code);
    sw_raw_free(r);
}

typedef struct step_case {
    const char *name;
    const char *doc;
    void (*run)(judge_t *j);
} step_case_t;

static const step_case_t handshake_steps[] = {
    {"subprotocol_offered_not_chosen",
     "RFC 6455 §4.2.2 (a server that speaks none of the offered subprotocols sends none)",
     hs_subprotocol_not_chosen},
    {"permessage_deflate_offered_then_rsv1",
     "RFC 6455 §9.1 / §5.2 (no extension negotiated: RSV1 fails the connection) and "
     "PROTOCOL.md \"Bounds\" (close 1002 for RSV bits)",
     hs_deflate_not_accepted},
};

static void run_steps(const char *cat, const step_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        judge_t j;
        judge_begin(&j, cat, cases[i].name, cases[i].doc);
        cases[i].run(&j);
        judge_end(&j);
    }
}

Test(hostile, handshake)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(handshake_cases); i++)
        run_http_case("handshake", &handshake_cases[i], host[i % 2]->port);
    run_steps("handshake", handshake_steps, SW_ARRAY_SIZE(handshake_steps));
    report("handshake");
}

/* ==== WebSocket frames ====================================================== */

#define DOC_1002                                                                                   \
    "PROTOCOL.md \"Bounds\" (WebSocket protocol errors: a close frame with 1002 for frames that "  \
    "break the framing rules) and RFC 6455 §5"
#define DOC_1002_CLOSE                                                                             \
    "RFC 6455 §5.5.1 / §7.4 (a close frame's body is a valid status code, then UTF-8) and "      \
    "PROTOCOL.md \"Bounds\" (1002)"
#define DOC_1003 "PROTOCOL.md \"Bounds\": close 1003 for binary messages"
#define DOC_1007 "PROTOCOL.md \"Bounds\": close 1007 for invalid UTF-8 (RFC 6455 §8.1)"
#define DOC_1009 "PROTOCOL.md \"Bounds\": client message over 65536 bytes -> close 1009"
#define DOC_CTRL "RFC 6455 §5.5 (control frames: pings answered, may come between fragments)"
#define EV1 "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}"
#define EV7_HEAD "{\"type\":\"event\",\"id\":7,\"name\":\"counter.in"
#define EV7_TAIL "crement\"}"

/* One frame: FIN unless nofin, RSV bits, opcode, masked unless unmasked,
 * the shortest length form unless lenform; payload data (len bytes, or
 * strlen) then `fill` bytes 'a'; the header claims `declared` bytes when
 * it is not 0. */
typedef struct fspec {
    int set;
    int nofin, rsv, op, unmasked, lenform;
    const char *data;
    size_t len, fill;
    uint64_t declared;
} fspec_t;

typedef struct frame_case {
    const char *name;
    const char *doc;
    int no_hello; /* the frames come before any hello */
    fspec_t f[4];
    int close;        /* the close code expected; 0: no close, the connection stays usable */
    int alt;          /* another close code allowed */
    const char *pong; /* a pong with this payload must come back */
    size_t pong_fill; /* ... or with this many 'a' */
    int64_t answer;   /* an answer with this id must come (0: none) */
} frame_case_t;

#define FR(...)                                                                                    \
    {                                                                                              \
        .set = 1, __VA_ARGS__                                                                      \
    }
#define TXT(d, ...) FR(.op = OP_TEXT, .data = d, __VA_ARGS__)
#define CODE(hi, lo) .data = (const char[]){(char)(hi), (char)(lo)}, .len = 2

static const frame_case_t frame_cases[] = {
    {.name = "unmasked_text",
     .doc = DOC_1002 " (§5.1: client frames are masked)",
     .f = {TXT(EV1, .unmasked = 1)},
     .close = 1002},
    {.name = "unmasked_text_before_hello",
     .doc = DOC_1002,
     .no_hello = 1,
     .f = {TXT(EV1, .unmasked = 1)},
     .close = 1002},
    {.name = "unmasked_ping",
     .doc = DOC_1002,
     .f = {FR(.op = OP_PING, .data = "x", .unmasked = 1)},
     .close = 1002},
    {.name = "rsv1_text", .doc = DOC_1002, .f = {TXT(EV1, .rsv = 4)}, .close = 1002},
    {.name = "rsv2_text", .doc = DOC_1002, .f = {TXT(EV1, .rsv = 2)}, .close = 1002},
    {.name = "rsv3_text", .doc = DOC_1002, .f = {TXT(EV1, .rsv = 1)}, .close = 1002},
    {.name = "rsv_all_text_before_hello",
     .doc = DOC_1002,
     .no_hello = 1,
     .f = {TXT(EV1, .rsv = 7)},
     .close = 1002},
    {.name = "rsv1_ping",
     .doc = DOC_1002,
     .f = {FR(.op = OP_PING, .data = "x", .rsv = 4)},
     .close = 1002},
    {.name = "rsv1_on_continuation",
     .doc = DOC_1002,
     .f = {TXT(EV7_HEAD, .nofin = 1), FR(.op = OP_CONT, .data = EV7_TAIL, .rsv = 4)},
     .close = 1002},
    {.name = "opcode_3", .doc = DOC_1002, .f = {FR(.op = 3, .data = EV1)}, .close = 1002},
    {.name = "opcode_4", .doc = DOC_1002, .f = {FR(.op = 4, .data = EV1)}, .close = 1002},
    {.name = "opcode_5", .doc = DOC_1002, .f = {FR(.op = 5, .data = EV1)}, .close = 1002},
    {.name = "opcode_6", .doc = DOC_1002, .f = {FR(.op = 6, .data = EV1)}, .close = 1002},
    {.name = "opcode_7", .doc = DOC_1002, .f = {FR(.op = 7, .data = EV1)}, .close = 1002},
    {.name = "opcode_b", .doc = DOC_1002, .f = {FR(.op = 0xB, .data = "x")}, .close = 1002},
    {.name = "opcode_c", .doc = DOC_1002, .f = {FR(.op = 0xC, .data = "x")}, .close = 1002},
    {.name = "opcode_d", .doc = DOC_1002, .f = {FR(.op = 0xD, .data = "x")}, .close = 1002},
    {.name = "opcode_e", .doc = DOC_1002, .f = {FR(.op = 0xE, .data = "x")}, .close = 1002},
    {.name = "opcode_f", .doc = DOC_1002, .f = {FR(.op = 0xF, .data = "x")}, .close = 1002},
    {.name = "opcode_3_before_hello",
     .doc = DOC_1002,
     .no_hello = 1,
     .f = {FR(.op = 3, .data = EV1)},
     .close = 1002},
    {.name = "opcode_3_inside_fragmented_text",
     .doc = DOC_1002,
     .f = {TXT(EV7_HEAD, .nofin = 1), FR(.op = 3, .data = "x"),
           FR(.op = OP_CONT, .data = EV7_TAIL)},
     .close = 1002},
    /* control frames */
    {.name = "ping_fragmented",
     .doc = DOC_1002 " (§5.5: control frames are not fragmented)",
     .f = {FR(.op = OP_PING, .data = "a", .nofin = 1), FR(.op = OP_CONT, .data = "b")},
     .close = 1002},
    {.name = "ping_126_bytes",
     .doc = DOC_1002 " (§5.5: control payloads are at most 125 bytes)",
     .f = {FR(.op = OP_PING, .fill = 126)},
     .close = 1002},
    {.name = "ping_length_in_64_bits",
     .doc = DOC_1002 " (§5.5 and §5.2)",
     .f = {FR(.op = OP_PING, .fill = 4, .lenform = SW_WS_LEN_64)},
     .close = 1002},
    {.name = "pong_126_bytes",
     .doc = DOC_1002,
     .f = {FR(.op = OP_PONG, .fill = 126)},
     .close = 1002},
    {.name = "close_126_bytes",
     .doc = DOC_1002,
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xe8), .fill = 124)},
     .close = 1002},
    {.name = "close_fragmented",
     .doc = DOC_1002,
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xe8), .nofin = 1)},
     .close = 1002},
    {.name = "close_one_byte_body",
     .doc = DOC_1002_CLOSE,
     .f = {FR(.op = OP_CLOSE, .data = "\x03", .len = 1)},
     .close = 1002},
    {.name = "close_code_0",
     .doc = DOC_1002_CLOSE,
     .f = {FR(.op = OP_CLOSE, CODE(0x00, 0x00))},
     .close = 1002},
    {.name = "close_code_999",
     .doc = DOC_1002_CLOSE,
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xe7))},
     .close = 1002},
    {.name = "close_code_1004",
     .doc = DOC_1002_CLOSE,
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xec))},
     .close = 1002},
    {.name = "close_code_1005",
     .doc = DOC_1002_CLOSE " (§7.4.1: 1005 is never sent)",
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xed))},
     .close = 1002},
    {.name = "close_code_1006",
     .doc = DOC_1002_CLOSE " (§7.4.1: 1006 is never sent)",
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xee))},
     .close = 1002},
    {.name = "close_code_1015",
     .doc = DOC_1002_CLOSE " (§7.4.1: 1015 is never sent)",
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xf7))},
     .close = 1002},
    {.name = "close_code_2999",
     .doc = DOC_1002_CLOSE " (§7.4.2: 1016..2999 unassigned)",
     .f = {FR(.op = OP_CLOSE, CODE(0x0b, 0xb7))},
     .close = 1002},
    {.name = "close_code_5000",
     .doc = DOC_1002_CLOSE " (§7.4.2: above 4999)",
     .f = {FR(.op = OP_CLOSE, CODE(0x13, 0x88))},
     .close = 1002},
    {.name = "close_code_65535",
     .doc = DOC_1002_CLOSE,
     .f = {FR(.op = OP_CLOSE, CODE(0xff, 0xff))},
     .close = 1002},
    {.name = "close_reason_invalid_utf8",
     .doc = DOC_1007 " (the close reason, §5.5.1)",
     .f = {FR(.op = OP_CLOSE, .data = "\x03\xe8\xff\xfe", .len = 4)},
     .close = 1007},
    {.name = "close_1000_then_an_event",
     .doc = "RFC 6455 §5.5.1 (the server answers the close; nothing after it is processed)",
     .f = {FR(.op = OP_CLOSE, CODE(0x03, 0xe8)), TXT(EV1)},
     .close = 1000},
    {.name = "close_private_code_4000",
     .doc = "RFC 6455 §5.5.1 / §7.4.2 (4000..4999 are valid)",
     .f = {FR(.op = OP_CLOSE, CODE(0x0f, 0xa0))},
     .close = 4000,
     .alt = 1000},
    /* fragmentation */
    {.name = "continuation_without_start",
     .doc = DOC_1002 " (a continuation with no message)",
     .f = {FR(.op = OP_CONT, .data = EV1)},
     .close = 1002},
    {.name = "continuation_without_start_before_hello",
     .doc = DOC_1002,
     .no_hello = 1,
     .f = {FR(.op = OP_CONT, .data = "x", .nofin = 1)},
     .close = 1002},
    {.name = "text_inside_fragmented_text",
     .doc = DOC_1002 " (a new message inside one)",
     .f = {TXT(EV7_HEAD, .nofin = 1), TXT(EV7_TAIL)},
     .close = 1002},
    {.name = "binary_inside_fragmented_text",
     .doc = DOC_1002,
     .f = {TXT(EV7_HEAD, .nofin = 1), FR(.op = OP_BIN, .data = EV7_TAIL)},
     .close = 1002},
    {.name = "fragmented_message_with_empty_fragments",
     .doc = "RFC 6455 §5.4 (valid)",
     .f = {TXT("", .nofin = 1), FR(.op = OP_CONT, .data = "", .nofin = 1),
           FR(.op = OP_CONT, .data = EV7_HEAD, .nofin = 1), FR(.op = OP_CONT, .data = EV7_TAIL)},
     .answer = 7},
    {.name = "ping_between_fragments",
     .doc = DOC_CTRL,
     .f = {TXT(EV7_HEAD, .nofin = 1), FR(.op = OP_PING, .data = "mid"),
           FR(.op = OP_CONT, .data = EV7_TAIL)},
     .pong = "mid",
     .answer = 7},
    /* lengths */
    {.name = "length_16_bit_form_for_5_bytes",
     .doc = DOC_1002 " (§5.2: the minimal length form)",
     .f = {TXT("hello", .lenform = SW_WS_LEN_16)},
     .close = 1002},
    {.name = "length_64_bit_form_for_200_bytes",
     .doc = DOC_1002 " (§5.2: the minimal length form)",
     .f = {FR(.op = OP_TEXT, .fill = 200, .lenform = SW_WS_LEN_64)},
     .close = 1002},
    {.name = "length_64_bit_top_bit_set",
     .doc = DOC_1002 " (a 64-bit length with its top bit set)",
     .f = {FR(.op = OP_TEXT, .declared = 0x8000000000000010ull, .lenform = SW_WS_LEN_64)},
     .close = 1002},
    {.name = "length_just_over_the_bound",
     .doc = DOC_1009,
     .f = {FR(.op = OP_TEXT, .declared = MAX_MESSAGE + 1)},
     .close = 1009},
    {.name = "length_2_pow_62",
     .doc = DOC_1009,
     .f = {FR(.op = OP_TEXT, .declared = 1ull << 62)},
     .close = 1009},
    {.name = "fragments_together_over_the_bound",
     .doc = DOC_1009,
     .f = {FR(.op = OP_TEXT, .fill = 40000, .nofin = 1), FR(.op = OP_CONT, .fill = 40000)},
     .close = 1009},
    {.name = "binary_over_the_bound",
     .doc = DOC_1009 " (or 1003: binary)",
     .f = {FR(.op = OP_BIN, .declared = MAX_MESSAGE + 1)},
     .close = 1009,
     .alt = 1003},
    /* binary */
    {.name = "binary", .doc = DOC_1003, .f = {FR(.op = OP_BIN, .data = EV1)}, .close = 1003},
    {.name = "binary_empty", .doc = DOC_1003, .f = {FR(.op = OP_BIN, .data = "")}, .close = 1003},
    {.name = "binary_fragmented",
     .doc = DOC_1003,
     .f = {FR(.op = OP_BIN, .data = EV7_HEAD, .nofin = 1), FR(.op = OP_CONT, .data = EV7_TAIL)},
     .close = 1003},
    {.name = "binary_before_hello",
     .doc = DOC_1003,
     .no_hello = 1,
     .f = {FR(.op = OP_BIN, .data = "x")},
     .close = 1003},
    /* UTF-8 */
    {.name = "utf8_invalid_bytes",
     .doc = DOC_1007,
     .f = {TXT("{\"type\":\"\xff\xfe\"}")},
     .close = 1007},
    {.name = "utf8_overlong_slash",
     .doc = DOC_1007 " (RFC 3629 §3: overlong forms)",
     .f = {TXT("{\"type\":\"\xc0\xaf\"}")},
     .close = 1007},
    {.name = "utf8_overlong_nul",
     .doc = DOC_1007,
     .f = {TXT("{\"type\":\"\xc0\x80\"}")},
     .close = 1007},
    {.name = "utf8_surrogate",
     .doc = DOC_1007 " (RFC 3629 §3: surrogates)",
     .f = {TXT("{\"type\":\"\xed\xa0\x80\"}")},
     .close = 1007},
    {.name = "utf8_above_u10ffff",
     .doc = DOC_1007,
     .f = {TXT("{\"type\":\"\xf4\x90\x80\x80\"}")},
     .close = 1007},
    {.name = "utf8_truncated_at_the_end",
     .doc = DOC_1007,
     .f = {TXT("{\"type\":\"\xe2\x82")},
     .close = 1007},
    {.name = "utf8_invalid_before_hello",
     .doc = DOC_1007,
     .no_hello = 1,
     .f = {TXT("\xff")},
     .close = 1007},
    {.name = "utf8_split_across_fragments_valid",
     .doc = "RFC 6455 §5.6 (UTF-8 of the whole message)",
     .f = {TXT("{\"type\":\"event\",\"id\":7,\"name\":\"counter.increment\",\"payload\":{\"x\":"
               "\"\xc3",
               .nofin = 1),
           FR(.op = OP_CONT, .data = "\xa9\"}}")},
     .answer = 7},
    {.name = "utf8_split_across_fragments_invalid",
     .doc = DOC_1007,
     .f = {TXT("{\"type\":\"event\",\"id\":7,\"name\":\"x\",\"payload\":{\"x\":\"\xc3", .nofin = 1),
           FR(.op = OP_CONT, .data = "\x28\"}}")},
     .close = 1007},
    /* valid control frames */
    {.name = "ping_125_bytes",
     .doc = DOC_CTRL " (§5.5.3: the pong echoes the payload)",
     .f = {FR(.op = OP_PING, .fill = 125)},
     .pong_fill = 125},
    {.name = "ping_empty", .doc = DOC_CTRL, .f = {FR(.op = OP_PING, .data = "")}, .pong = ""},
    {.name = "pong_unsolicited",
     .doc = "RFC 6455 §5.5.3 (an unsolicited pong is ignored)",
     .f = {FR(.op = OP_PONG, .data = "nobody asked")}},
};

/* Read until the wanted pong and the answer with id `answer` came. */
static void collect(judge_t *j, sw_raw_t *r, const frame_case_t *c)
{
    int want_pong = c->pong != NULL || c->pong_fill;
    int got_pong = 0, got_answer = c->answer == 0;
    uint64_t deadline = sw_now_ms() + T_MS;
    while ((want_pong && !got_pong) || !got_answer) {
        uint64_t now = sw_now_ms();
        sw_ws_in_t f;
        if (now >= deadline || sw_raw_ws_read(r, &f, (int)(deadline - now)) != 1)
            break;
        if (f.opcode == OP_PONG && want_pong && !got_pong) {
            int same = c->pong ? f.len == strlen(c->pong) && !memcmp(f.payload, c->pong, f.len)
                               : f.len == c->pong_fill && strspn(f.payload, "a") == f.len;
            expect(j, same, "the pong carries %zu other bytes: %s", f.len,
                   shown(f.payload, f.len, 60));
            got_pong = 1;
        } else if (f.opcode == OP_TEXT) {
            json_t *m = json_loadb(f.payload, f.len, 0, NULL);
            if (c->answer && id_of(m) == c->answer) {
                expect(j, str(m, "type") && !strcmp(str(m, "type"), "delta"),
                       "event %lld was answered: %s", (long long)c->answer,
                       shown(f.payload, f.len, 200));
                got_answer = 1;
            }
            json_decref(m);
        } else if (f.opcode == OP_CLOSE) {
            expect(j, 0, "the server closed with %d", sw_ws_close_code(&f));
            sw_ws_in_clear(&f);
            return;
        }
        sw_ws_in_clear(&f);
    }
    expect(j, !want_pong || got_pong, "no pong");
    expect(j, got_answer, "no answer to event %lld", (long long)c->answer);
}

static void run_frame_case(const frame_case_t *c, int port)
{
    judge_t j;
    judge_begin(&j, "frames", c->name, c->doc);
    sw_raw_t *r;
    int st = 0;
    if (c->no_hello) {
        r = sw_raw_ws_open(port, "/_event", NULL, T_MS, &st);
        expect(&j, r != NULL, "the upgrade failed (%d)", st);
    } else {
        r = ws_open_hello(&j, port, NULL, NULL);
    }
    if (!r) {
        judge_end(&j);
        return;
    }
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < 4 && c->f[i].set; i++) {
        const fspec_t *f = &c->f[i];
        size_t dlen = f->data ? (f->len ? f->len : strlen(f->data)) : 0;
        uint64_t declared = f->declared ? f->declared : dlen + f->fill;
        uint8_t mask[4];
        sw_ws_frame_head(&b, !f->nofin, f->rsv, f->op, !f->unmasked, declared, f->lenform, mask);
        const uint8_t *m = f->unmasked ? NULL : mask;
        sw_ws_frame_payload(&b, m, f->data ? f->data : "", dlen, 0);
        if (f->fill) {
            char *a = malloc(f->fill);
            memset(a, 'a', f->fill);
            sw_ws_frame_payload(&b, m, a, f->fill, dlen);
            free(a);
        }
    }
    (void)sw_raw_send(r, b.data, b.len); /* the server may stop reading early */
    sw_buf_destroy(&b);
    if (c->close) {
        int code;
        char reason[160];
        sw_buf_t texts;
        sw_buf_init(&texts, 0);
        int rc = ws_wait_close(r, T_MS, &code, reason, sizeof(reason), &texts);
        if (expect(&j, rc == 1, "want close %d: %s", c->close,
                   rc == 0 ? "no close frame within 5 s, the socket is still open"
                           : "the socket went without a close frame")) {
            expect(&j, code == c->close || (c->alt && code == c->alt),
                   "close code %d (reason \"%s\"), want %d%s%.0d", code, shown_str(reason),
                   c->close, c->alt ? " or " : "", c->alt);
            expect(&j, sw_utf8_valid_prefix(reason, strlen(reason)) == strlen(reason),
                   "the close reason is not UTF-8");
            ws_finish_close(&j, r, code);
        }
        expect(&j,
               !strstr(texts.data ? texts.data : "", "\"id\":1,") &&
                   !strstr(texts.data ? texts.data : "", "\"id\":7,"),
               "the offending frame was acted upon: %s", shown(texts.data, texts.len, 200));
        sw_buf_destroy(&texts);
    } else {
        collect(&j, r, c);
        ws_probe(&j, r, PROBE_ID);
    }
    sw_raw_free(r);
    judge_end(&j);
}

Test(hostile, frames)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(frame_cases); i++)
        run_frame_case(&frame_cases[i], host[i % 2]->port);
    report("frames");
}

/* ==== messages ============================================================== */

#define DOC_JSON "PROTOCOL.md \"error\": bad_json, the message is not parseable JSON"
#define DOC_JSON_DUP "PROTOCOL.md \"error\": bad_json (also duplicate keys or \\u0000)"
#define DOC_MSG                                                                                    \
    "PROTOCOL.md \"error\": bad_message, valid JSON but not a valid message (not an object, "      \
    "unknown type, a field of the wrong type)"
#define DOC_HELLO "PROTOCOL.md \"hello\" (token: 1..64 of [A-Za-z0-9_-]; auth: at most 4096 bytes)"
#define DOC_RESUME_SHAPE                                                                           \
    "PROTOCOL.md \"hello\" (resume: conn_id and conn_token of [A-Za-z0-9_-], last_seq a "          \
    "non-negative integer) and \"error\" (bad_message)"
#define DOC_ID "PROTOCOL.md \"event\" (id: an integer from 0 to 2^53-1) and \"error\" (bad_message)"
#define DOC_NAME                                                                                   \
    "PROTOCOL.md \"event\" (name: 1 to 160 characters of [A-Za-z0-9_.]) and \"error\" "            \
    "(bad_message)"
#define DOC_UNKNOWN "PROTOCOL.md \"error\": unknown_event (no handler, setter or task of that name)"
#define DOC_PAYLOAD                                                                                \
    "PROTOCOL.md \"event\" (payload must be an object; anything else, null included, gets "        \
    "bad_payload)"
#define DOC_ROUTER                                                                                 \
    "PROTOCOL.md \"event\" (router: an object with a string path that starts with / and has at "   \
    "most 2048 bytes, an optional object query) and \"error\" (bad_message)"
#define DOC_DEEP                                                                                   \
    "PROTOCOL.md \"error\" (bad_json: not parseable; RFC 8259 §9 lets a parser limit nesting) "   \
    "and the connection stays open"
#define EV(extra) "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"" extra "}"

typedef struct msg_case {
    const char *name;
    const char *doc;
    int before_hello; /* sent before the hello (which must still work afterwards) */
    const char *text; /* the message; len 0: strlen */
    size_t len;
    void (*gen)(sw_buf_t *b);
    const char *want; /* the error code, or "delta", "welcome", "none" (no answer) */
    const char *alt;  /* another allowed answer */
    int64_t id;       /* the answer carries this id (0: not checked) */
} msg_case_t;

static void gen_repeat(sw_buf_t *b, const char *pre, char ch, size_t n, const char *post)
{
    sw_buf_append_str(b, pre);
    fill(b, ch, n);
    sw_buf_append_str(b, post);
}

static void gen_token_65(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"hello\",\"token\":\"", 't', 65, "\"}");
}

static void gen_token_64(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"hello\",\"token\":\"", 't', 64, "\"}");
}

static void gen_auth_4097(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"hello\",\"auth\":\"", 'a', 4097, "\"}");
}

static void gen_auth_4096(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"hello\",\"auth\":\"", 'a', 4096, "\"}");
}

static void gen_resume_id_65(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"hello\",\"resume\":{\"conn_token\":\"k\",\"conn_id\":\"", 'c', 65,
               "\"}}");
}

static void gen_name_161(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"event\",\"id\":1,\"name\":\"", 'n', 161, "\"}");
}

static void gen_name_160(sw_buf_t *b)
{
    gen_repeat(b, "{\"type\":\"event\",\"id\":1,\"name\":\"", 'n', 160, "\"}");
}

static void gen_router_2049(sw_buf_t *b)
{
    gen_repeat(
        b, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"router\":{\"path\":\"/",
        'r', 2048, "\"}}");
}

static void gen_nested(sw_buf_t *b, const char *pre, const char *open, const char *mid,
                       const char *close, int n, const char *post)
{
    sw_buf_append_str(b, pre);
    for (int i = 0; i < n; i++)
        sw_buf_append_str(b, open);
    sw_buf_append_str(b, mid);
    for (int i = 0; i < n; i++)
        sw_buf_append_str(b, close);
    sw_buf_append_str(b, post);
}

static void gen_payload_deep_10000(sw_buf_t *b)
{
    gen_nested(b, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":",
               "{\"a\":", "1", "}", 10000, "}");
}

static void gen_payload_deep_2000(sw_buf_t *b)
{
    gen_nested(b, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":",
               "{\"a\":", "1", "}", 2000, "}");
}

static void gen_array_deep_30000(sw_buf_t *b)
{
    gen_nested(b, "", "[", "", "]", 30000, "");
}

static void gen_payload_60k_string(sw_buf_t *b)
{
    gen_repeat(b,
               "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":{\"s\":\"",
               'x', 60000, "\"}}");
}

static void gen_payload_5000_keys(sw_buf_t *b)
{
    sw_buf_append_str(b,
                      "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":{");
    for (int i = 0; i < 5000; i++)
        sw_buf_printf(b, "%s\"k%d\":%d", i ? "," : "", i, i);
    sw_buf_append_str(b, "}}");
}

/* A valid event of exactly the message bound. */
static void gen_message_at_the_bound(sw_buf_t *b)
{
    const char *pre =
        "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":{\"s\":\"";
    gen_repeat(b, pre, 'x', MAX_MESSAGE - strlen(pre) - 3, "\"}}");
}

static const msg_case_t msg_cases[] = {
    /* before the hello */
    {.name = "event_before_hello",
     .doc = "PROTOCOL.md \"hello\" (an event before it is answered "
            "bad_message; hello is still accepted afterwards)",
     .before_hello = 1,
     .text = EV(""),
     .want = "bad_message",
     .id = 1},
    {.name = "garbage_before_hello",
     .doc = DOC_JSON,
     .before_hello = 1,
     .text = "hello?",
     .want = "bad_json"},
    {.name = "hello_token_65_chars",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .gen = gen_token_65,
     .want = "bad_message"},
    {.name = "hello_token_64_chars",
     .doc = DOC_HELLO " (64 is within)",
     .before_hello = 1,
     .gen = gen_token_64,
     .want = "welcome"},
    {.name = "hello_token_slash",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"../../x\"}",
     .want = "bad_message"},
    {.name = "hello_token_space",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"a b\"}",
     .want = "bad_message"},
    {.name = "hello_token_redis_pattern",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"*\"}",
     .want = "bad_message"},
    {.name = "hello_token_braces",
     .doc = DOC_HELLO " (a Redis hash tag)",
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"a}{b\"}",
     .want = "bad_message"},
    {.name = "hello_token_non_ascii",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"t\xc3\xb6k\"}",
     .want = "bad_message"},
    {.name = "hello_token_number",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":5}",
     .want = "bad_message"},
    {.name = "hello_token_null",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":null}",
     .want = "bad_message"},
    {.name = "hello_token_nul_escape",
     .doc = DOC_JSON_DUP,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"a\\u0000b\"}",
     .want = "bad_json"},
    {.name = "hello_auth_number",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"auth\":42}",
     .want = "bad_message"},
    {.name = "hello_auth_4097_bytes",
     .doc = DOC_HELLO,
     .before_hello = 1,
     .gen = gen_auth_4097,
     .want = "bad_message"},
    {.name = "hello_auth_4096_bytes",
     .doc = DOC_HELLO " (4096 is within; no hook: ignored)",
     .before_hello = 1,
     .gen = gen_auth_4096,
     .want = "welcome"},
    {.name = "hello_resume_string",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":\"c1\"}",
     .want = "bad_message"},
    {.name = "hello_resume_without_conn_token",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c1\"}}",
     .want = "bad_message"},
    {.name = "hello_resume_without_conn_id",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_token\":\"k1\"}}",
     .want = "bad_message"},
    {.name = "hello_resume_conn_id_traversal",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"../x\",\"conn_token\":\"k\"}}",
     .want = "bad_message"},
    {.name = "hello_resume_conn_id_65_chars",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .gen = gen_resume_id_65,
     .want = "bad_message"},
    {.name = "hello_resume_conn_token_object",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":{}}}",
     .want = "bad_message"},
    {.name = "hello_resume_last_seq_negative",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text =
         "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\",\"last_seq\":-1}}",
     .want = "bad_message"},
    {.name = "hello_resume_last_seq_string",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\",\"last_seq\":"
             "\"9\"}}",
     .want = "bad_message"},
    {.name = "hello_resume_last_seq_float",
     .doc = DOC_RESUME_SHAPE,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\",\"last_seq\":"
             "1.5}}",
     .want = "bad_message"},
    {.name = "hello_duplicate_token_keys",
     .doc = DOC_JSON_DUP,
     .before_hello = 1,
     .text = "{\"type\":\"hello\",\"token\":\"a\",\"token\":\"b\"}",
     .want = "bad_json"},
    {.name = "hello_type_capitalised",
     .doc = DOC_MSG,
     .before_hello = 1,
     .text = "{\"type\":\"Hello\"}",
     .want = "bad_message"},
    /* JSON that is not a message */
    {.name = "not_json", .doc = DOC_JSON, .text = "counter.increment", .want = "bad_json"},
    {.name = "truncated_json",
     .doc = DOC_JSON,
     .text = "{\"type\":\"event\",\"id\":1,",
     .want = "bad_json"},
    {.name = "empty_message", .doc = DOC_JSON, .text = "", .want = "bad_json"},
    {.name = "whitespace_only", .doc = DOC_JSON, .text = " \n\t ", .want = "bad_json"},
    {.name = "two_json_values", .doc = DOC_JSON, .text = EV("") EV(""), .want = "bad_json"},
    {.name = "trailing_comma", .doc = DOC_JSON, .text = EV(","), .want = "bad_json"},
    {.name = "single_quotes", .doc = DOC_JSON, .text = "{'type':'event'}", .want = "bad_json"},
    {.name = "nan_literal",
     .doc = DOC_JSON,
     .text = "{\"type\":\"event\",\"id\":NaN,\"name\":\"counter.increment\"}",
     .want = "bad_json"},
    {.name = "json_array", .doc = DOC_MSG, .text = "[" EV("") "]", .want = "bad_message"},
    {.name = "json_string", .doc = DOC_MSG, .text = "\"event\"", .want = "bad_message"},
    {.name = "json_number", .doc = DOC_MSG, .text = "42", .want = "bad_message"},
    {.name = "json_null", .doc = DOC_MSG, .text = "null", .want = "bad_message"},
    {.name = "json_true", .doc = DOC_MSG, .text = "true", .want = "bad_message"},
    {.name = "json_empty_object", .doc = DOC_MSG, .text = "{}", .want = "bad_message"},
    {.name = "type_missing",
     .doc = DOC_MSG,
     .text = "{\"id\":1,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "type_unknown",
     .doc = DOC_MSG,
     .text = "{\"type\":\"evil\",\"id\":1}",
     .want = "bad_message"},
    {.name = "type_number", .doc = DOC_MSG, .text = "{\"type\":1}", .want = "bad_message"},
    {.name = "type_null", .doc = DOC_MSG, .text = "{\"type\":null}", .want = "bad_message"},
    {.name = "type_object",
     .doc = DOC_MSG,
     .text = "{\"type\":{\"type\":\"event\"}}",
     .want = "bad_message"},
    {.name = "type_capitalised",
     .doc = DOC_MSG,
     .text = "{\"type\":\"EVENT\",\"id\":1,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "second_hello",
     .doc = "PROTOCOL.md \"hello\" (a second hello is answered bad_message)",
     .text = "{\"type\":\"hello\"}",
     .want = "bad_message"},
    {.name = "cancel_unknown_id",
     .doc = "PROTOCOL-CORE.md \"Cancelling an event\" (an unknown id is ignored: no answer)",
     .text = "{\"type\":\"cancel\",\"id\":424242}",
     .want = "none"},
    /* ids */
    {.name = "id_minus_one",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":-1,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_float",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":1.5,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_float_integral",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":2.0,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_2_pow_53",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":9007199254740992,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_2_pow_53_minus_1",
     .doc = DOC_ID " (the largest id is valid)",
     .text = "{\"type\":\"event\",\"id\":9007199254740991,\"name\":\"counter.increment\"}",
     .want = "delta",
     .id = 9007199254740991LL},
    {.name = "id_1e400",
     .doc = DOC_ID " or " DOC_JSON,
     .text = "{\"type\":\"event\",\"id\":1e400,\"name\":\"counter.increment\"}",
     .want = "bad_message",
     .alt = "bad_json"},
    {.name = "id_30_digits",
     .doc = DOC_ID " or " DOC_JSON,
     .text = "{\"type\":\"event\",\"id\":123456789012345678901234567890,\"name\":\"counter."
             "increment\"}",
     .want = "bad_message",
     .alt = "bad_json"},
    {.name = "id_string",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":\"7\",\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_true",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":true,\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    {.name = "id_array",
     .doc = DOC_ID,
     .text = "{\"type\":\"event\",\"id\":[1],\"name\":\"counter.increment\"}",
     .want = "bad_message"},
    /* names */
    {.name = "name_missing",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_empty",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"\"}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_161_chars",
     .doc = DOC_NAME,
     .gen = gen_name_161,
     .want = "bad_message",
     .id = 1},
    {.name = "name_160_chars_unknown",
     .doc = DOC_UNKNOWN " (160 is within)",
     .gen = gen_name_160,
     .want = "unknown_event",
     .id = 1},
    {.name = "name_slash",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter/increment\"}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_traversal",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"../../etc/passwd\"}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_space",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter. increment\"}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_non_ascii",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.\xc3\xafncrement\"}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_number",
     .doc = DOC_NAME,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":5}",
     .want = "bad_message",
     .id = 1},
    {.name = "name_nul_escape",
     .doc = DOC_JSON_DUP,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\\u0000x\"}",
     .want = "bad_json"},
    {.name = "name_unknown_handler",
     .doc = DOC_UNKNOWN,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.explode\"}",
     .want = "unknown_event",
     .id = 1},
    {.name = "name_unknown_state",
     .doc = DOC_UNKNOWN,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"nosuch.state.deep.name\"}",
     .want = "unknown_event",
     .id = 1},
    {.name = "name_only_dots",
     .doc = DOC_UNKNOWN,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"....\"}",
     .want = "unknown_event",
     .id = 1},
    {.name = "name_setter_of_a_plain_var",
     .doc = DOC_UNKNOWN " (count is not settable)",
     .text =
         "{\"type\":\"event\",\"id\":1,\"name\":\"counter.set_count\",\"payload\":{\"value\":9}}",
     .want = "unknown_event",
     .id = 1},
    {.name = "name_setter_of_a_computed_var",
     .doc = DOC_UNKNOWN,
     .text =
         "{\"type\":\"event\",\"id\":1,\"name\":\"counter.set_viewers\",\"payload\":{\"value\":9}}",
     .want = "unknown_event",
     .id = 1},
    {.name = "name_on_load_handler_called",
     .doc = "PROTOCOL.md \"event\" (a handler of that name runs; an answer either way)",
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"room.on_load\"}",
     .want = "delta",
     .alt = "handler_error",
     .id = 1},
    /* payloads */
    {.name = "payload_null",
     .doc = DOC_PAYLOAD,
     .text = EV(",\"payload\":null"),
     .want = "bad_payload",
     .id = 1},
    {.name = "payload_array",
     .doc = DOC_PAYLOAD,
     .text = EV(",\"payload\":[1,2]"),
     .want = "bad_payload",
     .id = 1},
    {.name = "payload_string",
     .doc = DOC_PAYLOAD,
     .text = EV(",\"payload\":\"{}\""),
     .want = "bad_payload",
     .id = 1},
    {.name = "payload_number",
     .doc = DOC_PAYLOAD,
     .text = EV(",\"payload\":0"),
     .want = "bad_payload",
     .id = 1},
    {.name = "payload_false",
     .doc = DOC_PAYLOAD,
     .text = EV(",\"payload\":false"),
     .want = "bad_payload",
     .id = 1},
    {.name = "setter_value_of_the_wrong_type",
     .doc = "PROTOCOL.md \"error\": bad_payload (a setter's value must match the type of the "
            "var's default)",
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"room.set_name\",\"payload\":{\"value\":5}}",
     .want = "bad_payload",
     .id = 1},
    {.name = "add_amount_float",
     .doc = "the demo's counter.add (an integer amount) and " DOC_PAYLOAD,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\",\"payload\":{\"amount\":1.5}}",
     .want = "bad_payload",
     .id = 1},
    {.name = "add_amount_1e308",
     .doc = "the demo's counter.add and " DOC_PAYLOAD,
     .text =
         "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\",\"payload\":{\"amount\":1e308}}",
     .want = "bad_payload",
     .id = 1},
    {.name = "add_amount_30_digits",
     .doc = "the demo's counter.add and " DOC_PAYLOAD " / " DOC_JSON,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\",\"payload\":{\"amount\":"
             "999999999999999999999999999999}}",
     .want = "bad_payload",
     .alt = "bad_json"},
    {.name = "add_amount_int64_min",
     .doc = "the demo's counter.add (|amount| <= 1e9) and " DOC_PAYLOAD,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\",\"payload\":{\"amount\":"
             "-9223372036854775808}}",
     .want = "bad_payload",
     .id = 1},
    {.name = "add_amount_missing",
     .doc = "the demo's counter.add and " DOC_PAYLOAD,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\"}",
     .want = "bad_payload",
     .id = 1},
    {.name = "payload_nested_10000_deep",
     .doc = DOC_DEEP,
     .gen = gen_payload_deep_10000,
     .want = "bad_json",
     .alt = "bad_payload"},
    {.name = "payload_nested_2000_deep",
     .doc = "PROTOCOL.md \"event\" (a payload object: answered)",
     .gen = gen_payload_deep_2000,
     .want = "delta",
     .id = 1},
    {.name = "array_nested_30000_deep",
     .doc = DOC_DEEP,
     .gen = gen_array_deep_30000,
     .want = "bad_json",
     .alt = "bad_message"},
    {.name = "payload_60k_string",
     .doc = "PROTOCOL.md \"Bounds\" (under the message bound)",
     .gen = gen_payload_60k_string,
     .want = "delta",
     .id = 1},
    {.name = "payload_5000_keys",
     .doc = "PROTOCOL.md \"Bounds\" (under the message bound)",
     .gen = gen_payload_5000_keys,
     .want = "delta",
     .id = 1},
    {.name = "message_of_exactly_the_bound",
     .doc = "PROTOCOL.md \"Bounds\" (65536 bytes is within)",
     .gen = gen_message_at_the_bound,
     .want = "delta",
     .id = 1},
    {.name = "duplicate_keys_top_level",
     .doc = DOC_JSON_DUP,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"name\":\"counter."
             "decrement\"}",
     .want = "bad_json"},
    {.name = "duplicate_type_keys",
     .doc = DOC_JSON_DUP,
     .text = "{\"type\":\"event\",\"type\":\"hello\",\"id\":1,\"name\":\"counter.increment\"}",
     .want = "bad_json"},
    {.name = "duplicate_keys_in_payload",
     .doc = DOC_JSON_DUP,
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.add\",\"payload\":{\"amount\":1,"
             "\"amount\":2}}",
     .want = "bad_json"},
    {.name = "nul_escape_in_payload",
     .doc = DOC_JSON_DUP,
     .text = EV(",\"payload\":{\"s\":\"a\\u0000b\"}"),
     .want = "bad_json"},
    {.name = "nul_escape_in_key",
     .doc = DOC_JSON_DUP,
     .text = EV(",\"payload\":{\"a\\u0000\":1}"),
     .want = "bad_json"},
    {.name = "raw_control_char_in_string",
     .doc = DOC_JSON " (RFC 8259 §7)",
     .text = EV(",\"payload\":{\"s\":\"a\x01b\"}"),
     .want = "bad_json"},
    {.name = "lone_surrogate_escape",
     .doc = DOC_JSON " (RFC 8259 §8.2: not valid Unicode; a parser may refuse it)",
     .text = EV(",\"payload\":{\"s\":\"\\ud800\"}"),
     .want = "bad_json",
     .alt = "delta"},
    {.name = "unknown_fields_ignored",
     .doc = "proto/msg.h (unknown extra fields are ignored)",
     .text = EV(",\"__proto__\":{\"admin\":true},\"constructor\":1"),
     .want = "delta",
     .id = 1},
    /* routers */
    {.name = "router_string",
     .doc = DOC_ROUTER,
     .text = EV(",\"router\":\"/\""),
     .want = "bad_message",
     .id = 1},
    {.name = "router_without_path",
     .doc = DOC_ROUTER,
     .text = EV(",\"router\":{}"),
     .want = "bad_message",
     .id = 1},
    {.name = "router_relative_path",
     .doc = DOC_ROUTER,
     .text = EV(",\"router\":{\"path\":\"room/a\"}"),
     .want = "bad_message",
     .id = 1},
    {.name = "router_path_number",
     .doc = DOC_ROUTER,
     .text = EV(",\"router\":{\"path\":7}"),
     .want = "bad_message",
     .id = 1},
    {.name = "router_path_2049_bytes",
     .doc = DOC_ROUTER,
     .gen = gen_router_2049,
     .want = "bad_message",
     .id = 1},
    {.name = "router_query_array",
     .doc = DOC_ROUTER,
     .text = EV(",\"router\":{\"path\":\"/\",\"query\":[1]}"),
     .want = "bad_message",
     .id = 1},
    {.name = "router_path_traversal",
     .doc = "PROTOCOL.md \"event\" (a path that starts with /: answered)",
     .text = EV(",\"router\":{\"path\":\"/../../etc/passwd\"}"),
     .want = "delta",
     .id = 1},
    {.name = "hydrate_room_id_too_long",
     .doc = "PROTOCOL.md \"Hydrate\" (answered: a full delta, or an error answering the event)",
     .text = "{\"type\":\"event\",\"id\":1,\"name\":\"hydrate\",\"router\":{\"path\":\"/room/"
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}",
     .want = "delta",
     .alt = "handler_error",
     .id = 1},
};

/* The next message that is not a delta without id (fan-out, catch-up). */
static json_t *next_answer(sw_wsc_t *ws, int timeout_ms)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = sw_now_ms();
        json_t *m = sw_wsc_recv_json(ws, now >= deadline ? 0 : (int)(deadline - now));
        if (!m)
            return NULL;
        if (str(m, "type") && !strcmp(str(m, "type"), "delta") && id_of(m) < 0) {
            json_decref(m);
            continue;
        }
        return m;
    }
}

/* "delta", "welcome", or the error's code. */
static const char *kind_of(const json_t *m)
{
    const char *t = str(m, "type");
    if (t && strcmp(t, "error") == 0)
        return str(m, "code") ? str(m, "code") : "error without code";
    return t ? t : "(no type)";
}

/* The connection still works: an event is answered with a delta. */
static void wsc_probe(judge_t *j, sw_wsc_t *ws, int64_t id)
{
    char ev[128];
    snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%lld,\"name\":\"counter.increment\"}",
             (long long)id);
    json_t *d = sw_wsc_send_text(ws, ev, strlen(ev)) == 0 ? sw_wsc_wait(ws, NULL, id, T_MS) : NULL;
    if (expect(j, d != NULL, "the connection no longer works: no answer to event %lld%s",
               (long long)id, sw_wsc_closed(ws) ? " (closed)" : ""))
        expect(j, !strcmp(kind_of(d), "delta"), "event %lld was answered %s", (long long)id,
               kind_of(d));
    json_decref(d);
}

static void run_msg_case(const msg_case_t *c, int port)
{
    judge_t j;
    judge_begin(&j, "messages", c->name, c->doc);
    sw_wsc_t *ws = sw_wsc_connect("127.0.0.1", port, "/_event", T_MS);
    if (!expect(&j, ws != NULL, "cannot connect")) {
        judge_end(&j);
        return;
    }
    if (!c->before_hello) {
        json_t *w = sw_wsc_hello(ws, NULL, NULL, T_MS);
        expect(&j, w != NULL, "no welcome");
        json_decref(w);
    }
    sw_buf_t b;
    sw_buf_init(&b, 0);
    if (c->gen)
        c->gen(&b);
    else
        sw_buf_append(&b, c->text, c->len ? c->len : strlen(c->text));
    expect(&j, sw_wsc_send_text(ws, b.data ? b.data : "", b.len) == 0, "sending failed");
    sw_buf_destroy(&b);
    if (strcmp(c->want, "none") == 0) {
        json_t *a = next_answer(ws, 500);
        char *s = dump(a);
        expect(&j, a == NULL, "want no answer, got %s", shown_str(s));
        free(s);
        json_decref(a);
    } else {
        json_t *a = next_answer(ws, T_MS);
        if (expect(&j, a != NULL, "no answer (want %s)%s", c->want,
                   sw_wsc_closed(ws) ? "; the connection was closed" : "")) {
            const char *k = kind_of(a);
            char *s = dump(a);
            if (expect(&j, !strcmp(k, c->want) || (c->alt && !strcmp(k, c->alt)),
                       "answered %s, want %s%s%s: %s", k, c->want, c->alt ? " or " : "",
                       c->alt ? c->alt : "", shown_str(s)) &&
                c->id)
                expect(&j, id_of(a) == c->id, "the answer carries id %lld, want %lld",
                       (long long)id_of(a), (long long)c->id);
            if (!strcmp(str(a, "type") ? str(a, "type") : "", "error"))
                expect(&j, json_is_string(json_object_get(a, "message")),
                       "the error has no message: %s", shown_str(s));
            free(s);
        }
        json_decref(a);
    }
    if (c->before_hello && strcmp(c->want, "welcome") != 0) {
        json_t *w = sw_wsc_hello(ws, NULL, NULL, T_MS);
        expect(&j, w != NULL, "a hello after it got no welcome");
        json_decref(w);
    }
    wsc_probe(&j, ws, PROBE_ID);
    sw_wsc_free(ws);
    judge_end(&j);
}

/* A hello on a fresh connection; NULL (recorded) on failure. */
static sw_wsc_t *wsc_hello(judge_t *j, int port, const char *token, json_t **welcome)
{
    sw_wsc_t *ws = sw_wsc_connect("127.0.0.1", port, "/_event", T_MS);
    if (!expect(j, ws != NULL, "cannot connect"))
        return NULL;
    json_t *w = sw_wsc_hello(ws, token, NULL, T_MS);
    if (!expect(j, w != NULL, "no welcome")) {
        sw_wsc_free(ws);
        return NULL;
    }
    if (welcome)
        *welcome = w;
    else
        json_decref(w);
    return ws;
}

/* Append one masked text frame for each message to b. */
static void frames_of(sw_buf_t *b, const char *text)
{
    sw_ws_frame(b, 1, 0, OP_TEXT, 1, text, strlen(text));
}

static void msg_event_flood(judge_t *j)
{
    enum { N = 1500 };
    sw_wsc_t *ws = wsc_hello(j, host[0]->port, NULL, NULL);
    if (!ws)
        return;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 1; i <= N; i++) {
        char m[96];
        snprintf(m, sizeof(m), "{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}", i);
        frames_of(&b, m);
    }
    expect(j, sw_wsc_send_raw(ws, b.data, b.len) == 0, "sending the flood failed");
    sw_buf_destroy(&b);
    int ok = 0, limited = 0, other = 0;
    json_int_t count = 0;
    static char seen[N + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++) {
        json_t *m = next_answer(ws, 20000);
        if (!expect(j, m != NULL, "answer %d of %d missing", i + 1, N))
            break;
        int64_t id = id_of(m);
        expect(j, id >= 1 && id <= N && !seen[id], "an answer with id %lld (unknown or twice)",
               (long long)id);
        if (id >= 1 && id <= N)
            seen[id] = 1;
        if (!strcmp(kind_of(m), "delta")) {
            ok++;
            if (count_in(m) > count)
                count = count_in(m);
        } else if (!strcmp(kind_of(m), "rate_limited")) {
            limited++;
        } else {
            other++;
        }
        json_decref(m);
    }
    expect(j, ok + limited == N && other == 0,
           "answers: %d deltas, %d rate_limited, %d others, want %d in all", ok, limited, other, N);
    expect(j, limited > 0, "%d events in one write, none answered rate_limited (1000/s)", N);
    expect(j, count == ok, "the count is %lld after %d accepted events", (long long)count, ok);
    usleep(1100000); /* the bucket refills */
    wsc_probe(j, ws, PROBE_ID);
    sw_wsc_free(ws);
}

static void msg_bad_json_flood(judge_t *j)
{
    enum { N = 1000 };
    sw_wsc_t *ws = wsc_hello(j, host[1]->port, NULL, NULL);
    if (!ws)
        return;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < N; i++)
        frames_of(&b, "{{{{");
    expect(j, sw_wsc_send_raw(ws, b.data, b.len) == 0, "sending the flood failed");
    sw_buf_destroy(&b);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        json_t *m = next_answer(ws, T_MS);
        if (!m)
            break;
        bad += !strcmp(kind_of(m), "bad_json");
        json_decref(m);
    }
    expect(j, bad == N, "%d of %d answered bad_json", bad, N);
    wsc_probe(j, ws, PROBE_ID);
    sw_wsc_free(ws);
}

static void msg_hello_flood(judge_t *j)
{
    enum { N = 100 };
    sw_wsc_t *ws = sw_wsc_connect("127.0.0.1", host[0]->port, "/_event", T_MS);
    if (!expect(j, ws != NULL, "cannot connect"))
        return;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < N; i++) {
        char m[64];
        snprintf(m, sizeof(m), "{\"type\":\"hello\",\"token\":\"flood-%d\"}", i);
        frames_of(&b, m);
    }
    expect(j, sw_wsc_send_raw(ws, b.data, b.len) == 0, "sending the flood failed");
    sw_buf_destroy(&b);
    int welcomes = 0, bad = 0;
    const char *token = NULL;
    json_t *w = NULL;
    for (int i = 0; i < N; i++) {
        json_t *m = next_answer(ws, T_MS);
        if (!m)
            break;
        if (!strcmp(kind_of(m), "welcome")) {
            welcomes++;
            json_decref(w);
            w = json_incref(m);
        }
        bad += !strcmp(kind_of(m), "bad_message");
        json_decref(m);
    }
    token = str(w, "token");
    expect(j, welcomes == 1 && bad == N - 1, "%d welcomes and %d bad_message, want 1 and %d",
           welcomes, bad, N - 1);
    expect(j, token && !strcmp(token, "flood-0"), "the welcome names %s, want flood-0",
           shown_str(token));
    json_decref(w);
    wsc_probe(j, ws, PROBE_ID);
    sw_wsc_free(ws);
}

static void msg_ping_flood(judge_t *j)
{
    enum { N = 1000 };
    sw_raw_t *r = ws_open_hello(j, host[1]->port, NULL, NULL);
    if (!r)
        return;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < N; i++)
        sw_ws_frame(&b, 1, 0, OP_PING, 1, "p", 1);
    expect(j, sw_raw_send(r, b.data, b.len) == 0, "sending the flood failed");
    sw_buf_destroy(&b);
    ws_probe(j, r, PROBE_ID); /* pongs are skipped on the way */
    sw_raw_free(r);
}

/* An id that is not above the connection's highest applied id is not
 * applied again: an empty delta answers it. */
static void msg_id_not_increasing(judge_t *j, int64_t second)
{
    sw_wsc_t *ws = wsc_hello(j, host[0]->port, NULL, NULL);
    if (!ws)
        return;
    const char *ev5 = "{\"type\":\"event\",\"id\":5,\"name\":\"counter.increment\"}";
    sw_wsc_send_text(ws, ev5, strlen(ev5));
    json_t *d = sw_wsc_wait(ws, NULL, 5, T_MS);
    expect(j, d && count_in(d) == 1, "the first event: count 1");
    json_decref(d);
    char ev[96];
    snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%lld,\"name\":\"counter.increment\"}",
             (long long)second);
    sw_wsc_send_text(ws, ev, strlen(ev));
    d = sw_wsc_wait(ws, NULL, second, T_MS);
    char *s = dump(d);
    if (expect(j, d != NULL, "no answer to the event with id %lld", (long long)second))
        expect(j,
               !strcmp(kind_of(d), "delta") && json_object_size(json_object_get(d, "delta")) == 0,
               "id %lld after id 5: want an empty delta (not applied again), got %s",
               (long long)second, shown_str(s));
    free(s);
    json_decref(d);
    const char *ev9 = "{\"type\":\"event\",\"id\":9,\"name\":\"counter.increment\"}";
    sw_wsc_send_text(ws, ev9, strlen(ev9));
    d = sw_wsc_wait(ws, NULL, 9, T_MS);
    expect(j, d && count_in(d) == 2, "the next event: count %lld, want 2 (applied once)",
           d ? (long long)count_in(d) : -1LL);
    json_decref(d);
    sw_wsc_free(ws);
}

static void msg_id_reused(judge_t *j)
{
    msg_id_not_increasing(j, 5);
}

static void msg_id_decreasing(judge_t *j)
{
    msg_id_not_increasing(j, 3);
}

static void msg_second_hello_other_token(judge_t *j)
{
    sw_wsc_t *ws = wsc_hello(j, host[1]->port, "msg-own-token", NULL);
    if (!ws)
        return;
    const char *ev = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}";
    sw_wsc_send_text(ws, ev, strlen(ev));
    json_decref(sw_wsc_wait(ws, NULL, 1, T_MS));
    const char *hello = "{\"type\":\"hello\",\"token\":\"msg-other-token\"}";
    sw_wsc_send_text(ws, hello, strlen(hello));
    json_t *e = next_answer(ws, T_MS);
    expect(j, e && !strcmp(kind_of(e), "bad_message"), "a second hello: %s, want bad_message",
           e ? kind_of(e) : "no answer");
    json_decref(e);
    const char *ev2 = "{\"type\":\"event\",\"id\":2,\"name\":\"counter.increment\"}";
    sw_wsc_send_text(ws, ev2, strlen(ev2));
    json_t *d = sw_wsc_wait(ws, NULL, 2, T_MS);
    expect(j, d && count_in(d) == 2, "the connection stays on its token: count %lld, want 2",
           d ? (long long)count_in(d) : -1LL);
    json_decref(d);
    json_t *other = NULL;
    expect(j, sw_test_redis_state(redis, "msg-other-token", "counter", &other) == 0,
           "the other token got state: %s", other ? "counter" : "?");
    json_decref(other);
    sw_wsc_free(ws);
}

/* 150 WebSockets at once, each with a hello and an event. */
static void msg_many_connections(judge_t *j)
{
    enum { N = 150 };
    sw_raw_t *r[N];
    sw_buf_t b;
    sw_buf_init(&b, 0);
    frames_of(&b, "{\"type\":\"hello\"}");
    frames_of(&b, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}");
    for (int i = 0; i < N; i++) {
        int st;
        r[i] = sw_raw_ws_open(host[i % 2]->port, "/_event", NULL, T_MS, &st);
        if (r[i])
            sw_raw_send(r[i], b.data, b.len);
    }
    sw_buf_destroy(&b);
    int answered = 0;
    for (int i = 0; i < N; i++) {
        if (!r[i])
            continue;
        json_t *d = ws_wait_json(r[i], "delta", 1, T_MS, NULL);
        answered += d != NULL;
        json_decref(d);
        sw_raw_free(r[i]);
    }
    expect(j, answered == N, "%d of %d connections got their answer", answered, N);
}

static const step_case_t msg_steps[] = {
    {"flood_1500_events_in_one_write",
     "PROTOCOL.md \"Bounds\" (events per connection per second: 1000, then rate_limited; "
     "nothing else is lost) and \"Every event is answered once\"",
     msg_event_flood},
    {"flood_1000_bad_json", DOC_JSON " (each answered, the connection stays)", msg_bad_json_flood},
    {"flood_100_hellos", "PROTOCOL.md \"hello\" (a second hello is answered bad_message)",
     msg_hello_flood},
    {"flood_1000_pings", "RFC 6455 §5.5.2 (the connection stays usable)", msg_ping_flood},
    {"id_reused", "PROTOCOL.md \"Every event is answered once, and applied at most once\"",
     msg_id_reused},
    {"id_decreasing", "PROTOCOL.md \"Every event is answered once, and applied at most once\"",
     msg_id_decreasing},
    {"second_hello_naming_another_token",
     "PROTOCOL.md \"hello\" (a second hello is answered bad_message; the connection keeps its "
     "token)",
     msg_second_hello_other_token},
    {"150_connections_at_once", "PROTOCOL.md \"Bounds\" (connections per worker: 100000)",
     msg_many_connections},
};

Test(hostile, messages)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(msg_cases); i++)
        run_msg_case(&msg_cases[i], host[i % 2]->port);
    run_steps("messages", msg_steps, SW_ARRAY_SIZE(msg_steps));
    report("messages");
}

/* ==== resume and duplicate tabs ============================================ */

#define DOC_TAKEOVER                                                                               \
    "PROTOCOL.md \"Who may connect\" (No takeover: a connection naming a live token never sees, "  \
    "changes or closes it without that connection's valid resume credentials, whatever it sends "  \
    "before its welcome)"
#define DOC_DUP                                                                                    \
    "PROTOCOL.md \"Resume\" (Duplicate tabs: a new token and a state of its own; every event "     \
    "sent before the welcome goes to the new token)"
#define DOC_WRONG_RESUME                                                                           \
    "PROTOCOL.md \"Resume\" (Wrong credentials: error bad_resume, the connection goes on as a "    \
    "fresh one) and \"Who may connect\" (No takeover)"
#define DOC_SSE_REUSE                                                                              \
    "PROTOCOL.md \"Transport\" (SSE, Automatic reconnect: while another connection of the token "  \
    "is live, a Last-Event-ID without credentials is a second tab: a new token, never sees, "      \
    "changes or closes the live connection)"

/* A victim: a WebSocket on token tok at route "/" with counter.count == n. */
static sw_wsc_t *victim_ws(judge_t *j, int hi, const char *tok, int n, json_t **welcome)
{
    sw_wsc_t *v = wsc_hello(j, host[hi]->port, tok, welcome);
    if (!v)
        return NULL;
    const char *hyd =
        "{\"type\":\"event\",\"id\":1,\"name\":\"hydrate\",\"router\":{\"path\":\"/\"}}";
    sw_wsc_send_text(v, hyd, strlen(hyd));
    json_decref(sw_wsc_wait(v, NULL, 1, T_MS));
    for (int i = 0; i < n; i++) {
        char ev[96];
        snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}",
                 2 + i);
        sw_wsc_send_text(v, ev, strlen(ev));
        json_t *d = sw_wsc_wait(v, NULL, 2 + i, T_MS);
        expect(j, d && count_in(d) == i + 1, "the victim's setup: increment %d", i + 1);
        json_decref(d);
    }
    /* on_load's deltas (no id) are not the attacker's doing */
    json_t *m;
    while ((m = sw_wsc_recv_json(v, 200)))
        json_decref(m);
    return v;
}

/* The count in Redis of token tok (-1 when it has no counter). */
static json_int_t stored_count(const char *tok)
{
    json_t *st = NULL;
    if (sw_test_redis_state(redis, tok, "counter", &st) != 1)
        return -1;
    json_int_t n = json_integer_value(json_object_get(st, "count"));
    json_decref(st);
    return n;
}

/* The victim saw nothing meanwhile, is still open, and its next event
 * takes its own count from n to n + 1. */
static void victim_intact(judge_t *j, sw_wsc_t *v, const char *tok, int n, int64_t id)
{
    json_t *m = sw_wsc_recv_json(v, 300);
    char *s = dump(m);
    expect(j, m == NULL, "the victim received %s", shown_str(s));
    free(s);
    json_decref(m);
    expect(j, !sw_wsc_closed(v), "the victim's connection was closed (code %d)",
           sw_wsc_close_code(v));
    expect(j, stored_count(tok) == n, "the victim's stored count is %lld, want %d",
           (long long)stored_count(tok), n);
    char ev[96];
    snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%lld,\"name\":\"counter.increment\"}",
             (long long)id);
    sw_wsc_send_text(v, ev, strlen(ev));
    json_t *d = sw_wsc_wait(v, NULL, id, T_MS);
    expect(j, d && count_in(d) == n + 1, "the victim's next increment gives %lld, want %d",
           d ? (long long)count_in(d) : -1LL, n + 1);
    json_decref(d);
}

/* hello naming the victim's token plus `nev` events, in one write. */
static void burst_on_live_token(judge_t *j, int attacker_host, const char *tok, int nev)
{
    sw_wsc_t *v = victim_ws(j, 0, tok, 3, NULL);
    if (!v)
        return;
    sw_wsc_t *a = sw_wsc_connect("127.0.0.1", host[attacker_host]->port, "/_event", T_MS);
    if (expect(j, a != NULL, "the attacker cannot connect")) {
        sw_buf_t b;
        sw_buf_init(&b, 0);
        char hello[96];
        snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"token\":\"%s\"}", tok);
        frames_of(&b, hello);
        for (int i = 1; i <= nev; i++) {
            char m[96];
            snprintf(m, sizeof(m), "{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}",
                     i);
            frames_of(&b, m);
        }
        sw_wsc_send_raw(a, b.data, b.len);
        sw_buf_destroy(&b);
        json_t *w = sw_wsc_wait(a, "welcome", -1, T_MS);
        if (expect(j, w != NULL, "the second tab got no welcome"))
            expect(j,
                   str(w, "token") && strcmp(str(w, "token"), tok) != 0 &&
                       !json_is_true(json_object_get(w, "resumed")),
                   "the second tab's welcome names the victim's token");
        json_decref(w);
        int ok = 0, limited = 0;
        json_int_t count = 0;
        for (int i = 0; i < nev; i++) {
            json_t *m = next_answer(a, T_MS);
            if (!m)
                break;
            if (!strcmp(kind_of(m), "delta")) {
                ok++;
                count = SW_MAX(count, count_in(m));
            } else {
                limited += !strcmp(kind_of(m), "rate_limited");
            }
            json_decref(m);
        }
        expect(j, ok + limited == nev, "%d deltas and %d rate_limited for %d events", ok, limited,
               nev);
        if (nev > 256)
            expect(j, limited >= nev - 256,
                   "%d events before the welcome, only %d rate_limited (--max-queue 256)", nev,
                   limited);
        expect(j, count == ok,
               "the second tab's count is %lld after %d events, want it on its "
               "own token from 0",
               (long long)count, ok);
        sw_wsc_free(a);
    }
    victim_intact(j, v, tok, 3, 100);
    sw_wsc_free(v);
}

static void rs_burst_same_host(judge_t *j)
{
    burst_on_live_token(j, 0, "hostile-burst-a", 20);
}

static void rs_burst_other_host(judge_t *j)
{
    burst_on_live_token(j, 1, "hostile-burst-b", 20);
}

static void rs_burst_over_max_queue(judge_t *j)
{
    burst_on_live_token(j, 1, "hostile-burst-c", 300);
}

/* A hello naming the victim's token with `resume`; expects bad_resume then
 * a fresh welcome on a token of its own. */
static void forged_resume(judge_t *j, int hi, const char *tok, json_t *resume)
{
    sw_wsc_t *a = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
    if (!expect(j, a != NULL, "cannot connect")) {
        json_decref(resume);
        return;
    }
    json_t *h = json_pack("{s:s,s:s,s:o}", "type", "hello", "token", tok, "resume", resume);
    sw_wsc_send_json(a, h);
    json_decref(h);
    json_t *e = next_answer(a, T_MS);
    expect(j, e && !strcmp(kind_of(e), "bad_resume"), "first answer %s, want error bad_resume",
           e ? kind_of(e) : "none");
    json_decref(e);
    json_t *w = sw_wsc_wait(a, "welcome", -1, T_MS);
    if (expect(j, w != NULL, "no welcome after bad_resume"))
        expect(j,
               !json_is_true(json_object_get(w, "resumed")) && str(w, "token") &&
                   strcmp(str(w, "token"), tok) != 0,
               "the welcome resumes or names the live token: %s", shown_str(str(w, "token")));
    json_decref(w);
    /* whatever it sends now is its own business */
    const char *ev = "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}";
    sw_wsc_send_text(a, ev, strlen(ev));
    json_t *d = sw_wsc_wait(a, NULL, 1, T_MS);
    expect(j, d && count_in(d) == 1, "the attacker's own count: %lld, want 1",
           d ? (long long)count_in(d) : -1LL);
    json_decref(d);
    sw_wsc_free(a);
}

static void rs_wrong_conn_token(judge_t *j)
{
    json_t *w = NULL;
    sw_wsc_t *v = victim_ws(j, 0, "hostile-rs-1", 2, &w);
    if (!v)
        return;
    forged_resume(j, 1, "hostile-rs-1",
                  json_pack("{s:s,s:s,s:i}", "conn_id", str(w, "conn_id"), "conn_token",
                            "00000000000000000000000000000000", "last_seq", 0));
    json_decref(w);
    victim_intact(j, v, "hostile-rs-1", 2, 100);
    sw_wsc_free(v);
}

static void rs_own_credentials_other_token(judge_t *j)
{
    sw_wsc_t *v = victim_ws(j, 1, "hostile-rs-2", 2, NULL);
    json_t *mine = NULL;
    sw_wsc_t *own = wsc_hello(j, host[0]->port, "hostile-rs-2-attacker", &mine);
    if (v && own)
        forged_resume(j, 0, "hostile-rs-2",
                      json_pack("{s:s,s:s,s:i}", "conn_id", str(mine, "conn_id"), "conn_token",
                                str(mine, "conn_token"), "last_seq", 0));
    json_decref(mine);
    if (v)
        victim_intact(j, v, "hostile-rs-2", 2, 100);
    sw_wsc_free(own);
    sw_wsc_free(v);
}

static void rs_made_up_conn_id(judge_t *j)
{
    sw_wsc_t *v = victim_ws(j, 0, "hostile-rs-3", 1, NULL);
    if (!v)
        return;
    forged_resume(j, 0, "hostile-rs-3",
                  json_pack("{s:s,s:s,s:i}", "conn_id", "0123456789abcdef", "conn_token",
                            "0123456789abcdef0123456789abcdef", "last_seq", 1));
    victim_intact(j, v, "hostile-rs-3", 1, 100);
    sw_wsc_free(v);
}

/* The victim's real credentials presented for another live token: that
 * token is not resumed, and the victim is not replaced (no 4001). */
static void rs_credentials_of_another_token(judge_t *j)
{
    json_t *vw = NULL;
    sw_wsc_t *v = victim_ws(j, 0, "hostile-rs-4v", 2, &vw);
    sw_wsc_t *o = victim_ws(j, 1, "hostile-rs-4o", 4, NULL);
    if (v && o)
        forged_resume(j, 1, "hostile-rs-4o",
                      json_pack("{s:s,s:s,s:i}", "conn_id", str(vw, "conn_id"), "conn_token",
                                str(vw, "conn_token"), "last_seq", 0));
    json_decref(vw);
    if (v)
        victim_intact(j, v, "hostile-rs-4v", 2, 100);
    if (o)
        victim_intact(j, o, "hostile-rs-4o", 4, 100);
    sw_wsc_free(v);
    sw_wsc_free(o);
}

/* A valid resume whose last_seq is ahead of the server's: one full delta. */
static void rs_last_seq_ahead(judge_t *j)
{
    json_t *w = NULL;
    sw_wsc_t *c = victim_ws(j, 0, "hostile-rs-5", 2, &w);
    if (!c)
        return;
    sw_wsc_free(c);
    usleep(200000);
    sw_wsc_t *r = sw_wsc_connect("127.0.0.1", host[1]->port, "/_event", T_MS);
    if (expect(j, r != NULL, "cannot connect")) {
        json_t *resume = json_pack("{s:s,s:s,s:I}", "conn_id", str(w, "conn_id"), "conn_token",
                                   str(w, "conn_token"), "last_seq", (json_int_t)1 << 60);
        json_t *rw = sw_wsc_hello(r, "hostile-rs-5", resume, T_MS);
        json_decref(resume);
        if (expect(j, rw != NULL, "no welcome"))
            expect(j, json_is_true(json_object_get(rw, "resumed")), "not resumed");
        json_decref(rw);
        json_t *d = sw_wsc_recv_json(r, T_MS);
        char *s = dump(d);
        expect(j,
               d && !strcmp(kind_of(d), "delta") && json_is_true(json_object_get(d, "full")) &&
                   count_in(d) == 2,
               "want one full delta with count 2 first, got %s", shown_str(s));
        free(s);
        json_decref(d);
        wsc_probe(j, r, PROBE_ID);
        sw_wsc_free(r);
    }
    json_decref(w);
}

/* ---- event streams (on raw sockets: a refusal must not stop the run) ---- */

/* GET /_sse?query: the connection after a 200 head, else NULL with the
 * status and body. */
static sw_raw_t *sse_open(int port, const char *query, const char *extra, int *status, char **body)
{
    *status = -1;
    if (body)
        *body = NULL;
    sw_raw_t *r = sw_raw_connect(port, T_MS);
    if (!r)
        return NULL;
    char req[1024];
    snprintf(req, sizeof(req),
             "GET /_sse?%s HTTP/1.1\r\n" HOST "Accept: text/event-stream\r\n%s\r\n", query,
             extra ? extra : "");
    sw_raw_send(r, req, strlen(req));
    uint64_t deadline = sw_now_ms() + T_MS;
    char *end;
    while (!(end = memmem(r->in.data ? r->in.data : "", r->in.len, "\r\n\r\n", 4))) {
        if (sw_now_ms() >= deadline || sw_raw_read_some(r, (int)(deadline - sw_now_ms())) <= 0)
            goto fail;
    }
    if (sscanf(r->in.data, "HTTP/1.1 %d", status) != 1)
        goto fail;
    if (*status == 200) {
        sw_buf_consume(&r->in, (size_t)(end - r->in.data) + 4);
        return r;
    }
    sw_http_resp_t resp;
    if (sw_raw_http_response(r, 0, T_MS, &resp) == 1) {
        if (body)
            *body = strdup(resp.body);
        sw_http_resp_clear(&resp);
    }
fail:
    sw_raw_free(r);
    return NULL;
}

/* The next event's data as JSON (comments skipped); NULL on timeout/EOF. */
static json_t *sse_next(sw_raw_t *r, int timeout_ms)
{
    uint64_t deadline = sw_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *d = r->in.data ? r->in.data : "";
        char *end = memmem(d, r->in.len, "\n\n", 2);
        if (end) {
            json_t *m = NULL;
            for (char *line = d; line < end;) {
                char *nl = memchr(line, '\n', (size_t)(end + 1 - line));
                if (strncmp(line, "data: ", 6) == 0)
                    m = json_loadb(line + 6, (size_t)(nl - line - 6), 0, NULL);
                line = nl + 1;
            }
            sw_buf_consume(&r->in, (size_t)(end - d) + 2);
            if (m)
                return m;
            continue;
        }
        uint64_t now = sw_now_ms();
        if (now >= deadline || sw_raw_read_some(r, (int)(deadline - now)) <= 0)
            return NULL;
    }
}

/* A victim event stream on token tok (host hi) with counter.count == n,
 * made through POSTs; its credentials in cid / ctok. */
static sw_raw_t *victim_sse(judge_t *j, int hi, const char *tok, int n, char cid[128],
                            char ctok[128])
{
    char q[128];
    snprintf(q, sizeof(q), "token=%s", tok);
    int st;
    sw_raw_t *e = sse_open(host[hi]->port, q, NULL, &st, NULL);
    if (!expect(j, e != NULL, "the victim's stream: status %d", st))
        return NULL;
    json_t *w = sse_next(e, T_MS);
    expect(j, w && str(w, "conn_id") && str(w, "conn_token"), "the victim's stream: no welcome");
    snprintf(cid, 128, "%s", w ? str(w, "conn_id") : "");
    snprintf(ctok, 128, "%s", w ? str(w, "conn_token") : "");
    json_decref(w);
    sw_buf_t body;
    sw_buf_init(&body, 0);
    sw_buf_printf(&body,
                  "{\"conn_id\":\"%s\",\"conn_token\":\"%s\",\"messages\":[{\"type\":\"event\","
                  "\"id\":1,\"name\":\"hydrate\",\"router\":{\"path\":\"/\"}}",
                  cid, ctok);
    for (int i = 0; i < n; i++)
        sw_buf_printf(&body, ",{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}",
                      2 + i);
    sw_buf_append_str(&body, "]}");
    char *resp = NULL;
    int pst = sw_test_http("127.0.0.1", host[hi]->port, "POST", "/_event", body.data, &resp, T_MS);
    expect(j, pst == 202, "the victim's POST: %d %s", pst, shown_str(resp));
    free(resp);
    sw_buf_destroy(&body);
    for (;;) { /* until the answer to the last event */
        json_t *m = sse_next(e, T_MS);
        if (!expect(j, m != NULL, "the victim's stream: an answer is missing"))
            break;
        int last = id_of(m) == 1 + n;
        json_decref(m);
        if (last)
            break;
    }
    json_t *m; /* on_load's deltas */
    while ((m = sse_next(e, 200)))
        json_decref(m);
    return e;
}

/* POST one event to the stream, on host hi; the status. */
static int post_event(int hi, const char *cid, const char *ctok, const char *messages, char **out)
{
    char body[2048];
    snprintf(body, sizeof(body), "{\"conn_id\":\"%s\",\"conn_token\":\"%s\",\"messages\":%s}", cid,
             ctok, messages);
    return sw_test_http("127.0.0.1", host[hi]->port, "POST", "/_event", body, out, T_MS);
}

/* The victim stream saw nothing meanwhile and still works: count n + 1. */
static void victim_sse_intact(judge_t *j, sw_raw_t *e, const char *tok, const char *cid,
                              const char *ctok, int n)
{
    json_t *m = sse_next(e, 300);
    char *s = dump(m);
    expect(j, m == NULL, "the victim's stream received %s", shown_str(s));
    free(s);
    json_decref(m);
    expect(j, stored_count(tok) == n, "the victim's stored count is %lld, want %d",
           (long long)stored_count(tok), n);
    char *resp = NULL;
    int st = post_event(1, cid, ctok,
                        "[{\"type\":\"event\",\"id\":100,\"name\":\"counter.increment\"}]", &resp);
    expect(j, st == 202, "the victim's POST after the attack: %d %s", st, shown_str(resp));
    free(resp);
    json_t *d = sse_next(e, T_MS);
    expect(j, d && id_of(d) == 100 && count_in(d) == n + 1,
           "the victim's stream: the answer with count %d is missing", n + 1);
    json_decref(d);
}

static void sse_second_tab(judge_t *j, int hi, const char *tok)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 0, tok, 4, cid, ctok);
    if (!v)
        return;
    char q[128];
    snprintf(q, sizeof(q), "token=%s", tok);
    int st;
    sw_raw_t *a = sse_open(host[hi]->port, q, "Last-Event-ID: 2\r\n", &st, NULL);
    if (expect(j, a != NULL, "the second stream was refused: %d", st)) {
        json_t *w = sse_next(a, T_MS);
        expect(j,
               w && !strcmp(kind_of(w), "welcome") && str(w, "token") &&
                   strcmp(str(w, "token"), tok) != 0 &&
                   !json_is_true(json_object_get(w, "resumed")),
               "the second stream's first event is not a welcome on a new token");
        json_decref(w);
        json_t *m = sse_next(a, 800);
        char *s = dump(m);
        expect(j, m == NULL, "the second stream received %s", shown_str(s));
        free(s);
        json_decref(m);
        sw_raw_free(a);
    }
    victim_sse_intact(j, v, tok, cid, ctok, 4);
    sw_raw_free(v);
}

static void rs_sse_last_event_id_same_host(judge_t *j)
{
    sse_second_tab(j, 0, "hostile-sse-1");
}

static void rs_sse_last_event_id_other_host(judge_t *j)
{
    sse_second_tab(j, 1, "hostile-sse-2");
}

static void rs_sse_wrong_credentials(judge_t *j)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 0, "hostile-sse-3", 2, cid, ctok);
    if (!v)
        return;
    char q[512];
    snprintf(q, sizeof(q), "token=hostile-sse-3&conn_id=%s&conn_token=%s&last_seq=0", cid,
             "ffffffffffffffffffffffffffffffff");
    int st;
    sw_raw_t *a = sse_open(host[1]->port, q, NULL, &st, NULL);
    if (expect(j, a != NULL, "the forged stream was refused: %d", st)) {
        json_t *e = sse_next(a, T_MS);
        expect(j, e && !strcmp(kind_of(e), "bad_resume"), "first event %s, want error bad_resume",
               e ? kind_of(e) : "none");
        json_decref(e);
        json_t *w = sse_next(a, T_MS);
        expect(j,
               w && !strcmp(kind_of(w), "welcome") && str(w, "token") &&
                   strcmp(str(w, "token"), "hostile-sse-3") != 0,
               "then a welcome on a new token");
        json_decref(w);
        sw_raw_free(a);
    }
    victim_sse_intact(j, v, "hostile-sse-3", cid, ctok, 2);
    sw_raw_free(v);
}

static void rs_ws_hello_on_live_stream(judge_t *j)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 1, "hostile-sse-4", 3, cid, ctok);
    if (!v)
        return;
    sw_wsc_t *a = sw_wsc_connect("127.0.0.1", host[0]->port, "/_event", T_MS);
    if (expect(j, a != NULL, "cannot connect")) {
        sw_buf_t b;
        sw_buf_init(&b, 0);
        frames_of(&b, "{\"type\":\"hello\",\"token\":\"hostile-sse-4\"}");
        frames_of(&b, "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\"}");
        sw_wsc_send_raw(a, b.data, b.len);
        sw_buf_destroy(&b);
        json_t *w = sw_wsc_wait(a, "welcome", -1, T_MS);
        expect(j, w && str(w, "token") && strcmp(str(w, "token"), "hostile-sse-4") != 0,
               "the WebSocket got the stream's token");
        json_decref(w);
        json_t *d = sw_wsc_wait(a, NULL, 1, T_MS);
        expect(j, d && count_in(d) == 1, "its event ran on its own token");
        json_decref(d);
        sw_wsc_free(a);
    }
    victim_sse_intact(j, v, "hostile-sse-4", cid, ctok, 3);
    sw_raw_free(v);
}

static void rs_stream_on_live_ws(judge_t *j)
{
    sw_wsc_t *v = victim_ws(j, 0, "hostile-sse-5", 3, NULL);
    if (!v)
        return;
    int st;
    sw_raw_t *a = sse_open(host[1]->port, "token=hostile-sse-5&last_seq=0", NULL, &st, NULL);
    if (expect(j, a != NULL, "the stream was refused: %d", st)) {
        json_t *w = sse_next(a, T_MS);
        expect(j,
               w && str(w, "token") && strcmp(str(w, "token"), "hostile-sse-5") != 0 &&
                   !json_is_true(json_object_get(w, "resumed")),
               "the stream got the WebSocket's token");
        json_decref(w);
        sw_raw_free(a);
    }
    victim_intact(j, v, "hostile-sse-5", 3, 100);
    sw_wsc_free(v);
}

static const step_case_t resume_steps[] = {
    {"hello_on_live_token_with_events_same_host", DOC_TAKEOVER " and " DOC_DUP, rs_burst_same_host},
    {"hello_on_live_token_with_events_other_host", DOC_TAKEOVER " and " DOC_DUP,
     rs_burst_other_host},
    {"hello_on_live_token_with_300_events",
     DOC_TAKEOVER " and PROTOCOL.md \"Bounds\" (messages before the welcome: --max-queue, then "
                  "rate_limited)",
     rs_burst_over_max_queue},
    {"resume_with_wrong_conn_token", DOC_WRONG_RESUME, rs_wrong_conn_token},
    {"resume_with_own_credentials_on_victims_token", DOC_WRONG_RESUME,
     rs_own_credentials_other_token},
    {"resume_with_made_up_conn_id", DOC_WRONG_RESUME, rs_made_up_conn_id},
    {"resume_with_credentials_of_another_token",
     DOC_WRONG_RESUME " (and the owner of the credentials is not replaced: no 4001)",
     rs_credentials_of_another_token},
    {"resume_with_last_seq_ahead",
     "PROTOCOL.md \"Resume\" (Valid credentials: one full delta when last_seq is ahead of the "
     "server's)",
     rs_last_seq_ahead},
    {"sse_last_event_id_on_live_stream_same_host", DOC_SSE_REUSE, rs_sse_last_event_id_same_host},
    {"sse_last_event_id_on_live_stream_other_host", DOC_SSE_REUSE, rs_sse_last_event_id_other_host},
    {"sse_wrong_credentials_on_live_stream", DOC_WRONG_RESUME, rs_sse_wrong_credentials},
    {"ws_hello_on_live_stream_token", DOC_TAKEOVER " (whatever the transport)",
     rs_ws_hello_on_live_stream},
    {"stream_on_live_ws_token", DOC_TAKEOVER " (whatever the transport)", rs_stream_on_live_ws},
};

Test(hostile, resume)
{
    run_steps("resume", resume_steps, SW_ARRAY_SIZE(resume_steps));
    report("resume");
}

/* ==== event streams and POSTs ============================================== */

#define DOC_SSE_400 "PROTOCOL.md \"Transport\" (SSE, Errors: bad parameters get 400 (bad_message))"
#define DOC_POST_400                                                                               \
    "PROTOCOL.md \"Transport\" (POST /_event: 400 for a body that is not JSON (bad_json) or not "  \
    "that shape (bad_message))"
#define DOC_POST_404                                                                               \
    "PROTOCOL.md \"Transport\" (POST /_event: 404 bad_resume when no live stream has this "        \
    "conn_id, a made-up or unsigned one refused by the worker the POST reaches; every worker of "  \
    "every host) and PROTOCOL-CORE.md \"Refusals over HTTP\""
#define DOC_POST_403                                                                               \
    "PROTOCOL.md \"Transport\" (POST /_event: 403 bad_resume for a wrong conn_token, on every "    \
    "worker of every host; a refused POST queues nothing)"
#define SSE_GET(q) "GET /_sse?" q " HTTP/1.1\r\n" HOST "\r\n"
static void gen_post(sw_buf_t *b, const char *body)
{
    sw_buf_printf(b,
                  "POST /_event HTTP/1.1\r\n" HOST
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                  strlen(body), body);
}

static void gen_post_not_json(sw_buf_t *b)
{
    gen_post(b, "conn_id=a&conn_token=b");
}

static void gen_post_empty(sw_buf_t *b)
{
    gen_post(b, "");
}

static void gen_post_array(sw_buf_t *b)
{
    gen_post(b, "[{\"conn_id\":\"a\",\"conn_token\":\"b\",\"messages\":[]}]");
}

static void gen_post_messages_object(sw_buf_t *b)
{
    gen_post(b, "{\"conn_id\":\"a\",\"conn_token\":\"b\",\"messages\":{\"type\":\"event\"}}");
}

static void gen_post_no_conn_token(sw_buf_t *b)
{
    gen_post(b, "{\"conn_id\":\"a\",\"messages\":[]}");
}

static void gen_post_conn_id_number(sw_buf_t *b)
{
    gen_post(b, "{\"conn_id\":5,\"conn_token\":\"b\",\"messages\":[]}");
}

static void gen_post_nul_escape(sw_buf_t *b)
{
    gen_post(b, "{\"conn_id\":\"a\\u0000_1\",\"conn_token\":\"b\",\"messages\":[]}");
}

static void gen_post_deep(sw_buf_t *b)
{
    sw_buf_t body;
    sw_buf_init(&body, 0);
    gen_nested(&body, "{\"conn_id\":\"a\",\"conn_token\":\"b\",\"messages\":", "[", "", "]", 20000,
               "}");
    gen_post(b, body.data);
    sw_buf_destroy(&body);
}

static void gen_post_over_bound(sw_buf_t *b)
{
    sw_buf_t body;
    sw_buf_init(&body, 0);
    gen_repeat(&body, "{\"conn_id\":\"a\",\"conn_token\":\"b\",\"messages\":[],\"pad\":\"", 'p',
               MAX_MESSAGE, "\"}");
    gen_post(b, body.data);
    sw_buf_destroy(&body);
}

static void gen_sse_auth_4097(sw_buf_t *b)
{
    sw_buf_append_str(b, "GET /_sse?token=hostile-sse-a&auth=");
    fill(b, 'a', 4097);
    sw_buf_append_str(b, " HTTP/1.1\r\n" HOST "\r\n");
}

static const http_case_t sse_http_cases[] = {
    {.name = "sse_token_with_space",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=a%20b"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_token_traversal",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=..%2F..%2Fetc"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_token_65_chars",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_token_bad_escape",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=%zz"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_token_truncated_escape",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=ab%4"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_token_nul_escape",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=a%00b"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_conn_id_without_conn_token",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=hostile-sse-a&conn_id=abc"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_conn_token_without_conn_id",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=hostile-sse-a&conn_token=abc"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_last_seq_not_a_number",
     .doc = DOC_SSE_400 " (last_seq: a non-negative integer)",
     .req = SSE_GET("token=hostile-sse-a&last_seq=abc"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_last_seq_negative",
     .doc = DOC_SSE_400 " (last_seq: a non-negative integer)",
     .req = SSE_GET("token=hostile-sse-a&last_seq=-1"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_auth_control_char",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=hostile-sse-a&auth=a%01b"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_auth_invalid_utf8",
     .doc = DOC_SSE_400,
     .req = SSE_GET("token=hostile-sse-a&auth=%ff%fe"),
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_auth_4097_bytes",
     .doc = DOC_SSE_400,
     .gen = gen_sse_auth_4097,
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "sse_put",
     .doc = DOC_405,
     .req = "PUT /_sse HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n",
     .want = {{405, "method_not_allowed", "GET", NULL}}},
    {.name = "post_body_not_json",
     .doc = DOC_POST_400,
     .gen = gen_post_not_json,
     .want = {{400, "bad_json", NULL, NULL}}},
    {.name = "post_body_empty",
     .doc = DOC_POST_400,
     .gen = gen_post_empty,
     .want = {{400, "bad_json", NULL, NULL}}},
    {.name = "post_body_array",
     .doc = DOC_POST_400,
     .gen = gen_post_array,
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "post_messages_not_an_array",
     .doc = DOC_POST_400,
     .gen = gen_post_messages_object,
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "post_without_conn_token",
     .doc = DOC_POST_400,
     .gen = gen_post_no_conn_token,
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "post_conn_id_number",
     .doc = DOC_POST_400,
     .gen = gen_post_conn_id_number,
     .want = {{400, "bad_message", NULL, NULL}}},
    {.name = "post_nul_escape_in_conn_id",
     .doc = DOC_POST_400 " (\\u0000: bad_json)",
     .gen = gen_post_nul_escape,
     .want = {{400, "bad_json", NULL, NULL}}},
    {.name = "post_nested_20000_deep",
     .doc = DOC_POST_400,
     .gen = gen_post_deep,
     .want = {{400, "bad_json", NULL, NULL}},
     .alt = {{400, "bad_message", NULL, NULL}}},
    {.name = "post_body_over_the_bound",
     .doc = "PROTOCOL.md \"Transport\" (POST /_event: 413 too_large above the body bound)",
     .gen = gen_post_over_bound,
     .want = {{413, "too_large", NULL, NULL}}},
};

/* A POST that must be refused with `status` and code bad_resume. */
static void expect_refused(judge_t *j, int hi, const char *cid, const char *ctok, int status)
{
    char *resp = NULL;
    int st = post_event(hi, cid, ctok,
                        "[{\"type\":\"event\",\"id\":50,\"name\":\"counter.increment\"}]", &resp);
    char what[64];
    snprintf(what, sizeof(what), "POST to host%d", hi);
    if (expect(j, st == status, "%s: status %d, want %d (%s)", what, st, status, shown_str(resp)))
        expect_error_body(j, what, resp, "bad_resume", NULL);
    free(resp);
}

/* A made-up conn_id: refused 404 on both hosts, four tries each (both
 * workers of a host). */
static void post_made_up(judge_t *j, const char *cid)
{
    for (int k = 0; k < 8; k++)
        expect_refused(j, k % 2, cid, "00000000000000000000000000000000", 404);
}

static void sp_unknown_conn_id(judge_t *j)
{
    post_made_up(j, "0123456789abcdef");
}

static void sp_made_up_conn_id_with_underscore(judge_t *j)
{
    post_made_up(j, "deadbeef_1");
}

static void sp_long_conn_id(judge_t *j)
{
    char cid[400];
    memset(cid, 'w', sizeof(cid) - 3);
    memcpy(cid + sizeof(cid) - 3, "_1", 3);
    post_made_up(j, cid);
}

/* A live stream's conn_id altered: another stream number of the same
 * worker, and the last character changed. */
static void sp_forged_from_live(judge_t *j)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 0, "hostile-post-1", 1, cid, ctok);
    if (!v)
        return;
    char forged[160];
    const char *us = strrchr(cid, '_');
    snprintf(forged, sizeof(forged), "%.*s_999999", us ? (int)(us - cid) : (int)strlen(cid), cid);
    post_made_up(j, forged);
    snprintf(forged, sizeof(forged), "%s", cid);
    size_t n = strlen(forged);
    if (n)
        forged[n - 1] = forged[n - 1] == '0' ? '1' : '0';
    post_made_up(j, forged);
    victim_sse_intact(j, v, "hostile-post-1", cid, ctok, 1);
    sw_raw_free(v);
}

static void sp_wrong_conn_token(judge_t *j, int hi)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 0, hi ? "hostile-post-2b" : "hostile-post-2a", 2, cid, ctok);
    if (!v)
        return;
    char wrong[128];
    snprintf(wrong, sizeof(wrong), "%s", ctok);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    for (int k = 0; k < 4; k++)
        expect_refused(j, hi, cid, wrong, 403);
    expect_refused(j, hi, cid, "", 403);
    victim_sse_intact(j, v, hi ? "hostile-post-2b" : "hostile-post-2a", cid, ctok, 2);
    sw_raw_free(v);
}

static void sp_wrong_conn_token_owner_host(judge_t *j)
{
    sp_wrong_conn_token(j, 0);
}

static void sp_wrong_conn_token_other_host(judge_t *j)
{
    sp_wrong_conn_token(j, 1);
}

/* Stream A's conn_id with stream B's conn_token. */
static void sp_token_of_another_stream(judge_t *j)
{
    char ca[128], ka[128], cb[128], kb[128];
    sw_raw_t *a = victim_sse(j, 0, "hostile-post-3a", 1, ca, ka);
    sw_raw_t *b = victim_sse(j, 0, "hostile-post-3b", 1, cb, kb);
    if (a && b)
        for (int k = 0; k < 4; k++)
            expect_refused(j, k % 2, ca, kb, 403);
    if (a)
        victim_sse_intact(j, a, "hostile-post-3a", ca, ka, 1);
    sw_raw_free(a);
    sw_raw_free(b);
}

/* A WebSocket's conn_id and conn_token: no live stream has them. */
static void sp_websocket_credentials(judge_t *j)
{
    json_t *w = NULL;
    sw_wsc_t *ws = wsc_hello(j, host[0]->port, "hostile-post-4", &w);
    if (!ws)
        return;
    for (int k = 0; k < 4; k++)
        expect_refused(j, k % 2, str(w, "conn_id"), str(w, "conn_token"), 404);
    json_t *m = sw_wsc_recv_json(ws, 300);
    expect(j, m == NULL, "the WebSocket received something");
    json_decref(m);
    json_decref(w);
    sw_wsc_free(ws);
}

/* The credentials of a stream that ended: 404 everywhere. */
static void sp_ended_stream(judge_t *j)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 1, "hostile-post-5", 1, cid, ctok);
    if (!v)
        return;
    sw_raw_free(v);
    usleep(300000);
    for (int k = 0; k < 8; k++)
        expect_refused(j, k % 2, cid, ctok, 404);
}

/* Messages that are not events, inside a valid POST: 202, then an error
 * event for each on the stream, which keeps its token. */
static void sp_bad_messages_inside(judge_t *j, const char *messages, int n, const char *tok)
{
    char cid[128], ctok[128];
    sw_raw_t *v = victim_sse(j, 0, tok, 1, cid, ctok);
    if (!v)
        return;
    char *resp = NULL;
    int st = post_event(1, cid, ctok, messages, &resp);
    expect(j, st == 202, "status %d, want 202 (%s)", st, shown_str(resp));
    free(resp);
    for (int i = 0; i < n; i++) {
        json_t *e = sse_next(v, T_MS);
        expect(j, e && !strcmp(kind_of(e), "bad_message"),
               "message %d of the POST: %s, want "
               "error bad_message",
               i + 1, e ? kind_of(e) : "no event");
        json_decref(e);
    }
    victim_sse_intact(j, v, tok, cid, ctok, 1);
    sw_raw_free(v);
}

static void sp_hello_inside(judge_t *j)
{
    sp_bad_messages_inside(j, "[{\"type\":\"hello\",\"token\":\"hostile-post-6-other\"}]", 1,
                           "hostile-post-6");
}

static void sp_non_objects_inside(judge_t *j)
{
    sp_bad_messages_inside(j, "[5,\"x\",null,[],{\"type\":\"nope\"}]", 5, "hostile-post-7");
}

static const step_case_t sse_steps[] = {
    {"post_unknown_conn_id", DOC_POST_404, sp_unknown_conn_id},
    {"post_made_up_conn_id_with_underscore", DOC_POST_404, sp_made_up_conn_id_with_underscore},
    {"post_400_byte_conn_id", DOC_POST_404, sp_long_conn_id},
    {"post_conn_id_forged_from_a_live_one", DOC_POST_404, sp_forged_from_live},
    {"post_wrong_conn_token_owner_host", DOC_POST_403, sp_wrong_conn_token_owner_host},
    {"post_wrong_conn_token_other_host", DOC_POST_403, sp_wrong_conn_token_other_host},
    {"post_conn_token_of_another_stream", DOC_POST_403, sp_token_of_another_stream},
    {"post_websocket_credentials", DOC_POST_404 " (a WebSocket is not an event stream)",
     sp_websocket_credentials},
    {"post_to_an_ended_stream", DOC_POST_404 " (a stream that ended)", sp_ended_stream},
    {"post_hello_inside_messages",
     "PROTOCOL.md \"Transport\" (POST /_event: any client messages but hello; errors about "
     "individual messages arrive on the stream) and \"hello\" (a second hello: bad_message)",
     sp_hello_inside},
    {"post_non_objects_inside_messages",
     "PROTOCOL.md \"Transport\" (errors about individual messages arrive on the stream) and "
     "\"error\" (bad_message)",
     sp_non_objects_inside},
};

Test(hostile, sse_post)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(sse_http_cases); i++)
        run_http_case("sse_post", &sse_http_cases[i], host[i % 2]->port);
    run_steps("sse_post", sse_steps, SW_ARRAY_SIZE(sse_steps));
    report("sse_post");
}

/* ==== authentication and Origin ============================================= */

#define DOC_REFUSED                                                                                \
    "PROTOCOL.md \"Who may connect\" (a refused hello gets error unauthorized and the WebSocket "  \
    "closes with 4401)"
#define DOC_SSE_401                                                                                \
    "PROTOCOL.md \"Who may connect\" (a refused SSE request gets 401 with "                        \
    "{\"error\":{\"code\":\"unauthorized\"}})"
#define DOC_ORIGIN                                                                                 \
    "PROTOCOL.md \"Who may connect\" (Origin allowlist: 403 forbidden_origin unless on the list; " \
    "exact match of scheme, host and port, ASCII case-insensitive; no Origin is not refused)"
#define DOC_BOUND                                                                                  \
    "PROTOCOL.md \"Who may connect\" (Tokens are bound to users: another user, or an anonymous "   \
    "client, gets a new token and never sees or changes the bound token's state)"

/* A hello with auth on the trust app: unauthorized, then close 4401,
 * and nothing of `events` runs. */
static void au_refused(judge_t *j, const char *auth, int events)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", app->port, "/_event", T_MS);
    if (!expect(j, c != NULL, "cannot connect"))
        return;
    char tok[64];
    snprintf(tok, sizeof(tok), "hostile-auth-%s-%d", auth[0] == 'd' ? "deny" : "bad", events);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    char hello[160];
    snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"token\":\"%s\",\"auth\":\"%s\"}", tok,
             auth);
    frames_of(&b, hello);
    for (int i = 1; i <= events; i++) {
        char m[96];
        snprintf(m, sizeof(m), "{\"type\":\"event\",\"id\":%d,\"name\":\"me.increment\"}", i);
        frames_of(&b, m);
    }
    sw_wsc_send_raw(c, b.data, b.len);
    sw_buf_destroy(&b);
    json_t *e = sw_wsc_recv_json(c, T_MS);
    char *s = dump(e);
    expect(j,
           e && !strcmp(kind_of(e), "unauthorized") &&
               json_is_string(json_object_get(e, "message")),
           "first answer %s, want error unauthorized with a message", shown_str(s));
    free(s);
    json_decref(e);
    int others = 0;
    json_t *m;
    while ((m = sw_wsc_recv_json(c, T_MS)))
        others++, json_decref(m);
    expect(j, others == 0, "%d more messages after unauthorized", others);
    expect(j, sw_wsc_closed(c) && sw_wsc_close_code(c) == 4401, "closed %d with %d, want 4401",
           sw_wsc_closed(c), sw_wsc_close_code(c));
    json_t *st = NULL;
    expect(j, sw_test_redis_state(redis, tok, "me", &st) == 0, "the refused token has state");
    json_decref(st);
    sw_wsc_free(c);
}

static void au_deny(judge_t *j)
{
    au_refused(j, "deny", 0);
}

static void au_bad_user(judge_t *j)
{
    au_refused(j, "bad-user", 0);
}

static void au_deny_with_events(judge_t *j)
{
    au_refused(j, "deny", 10);
}

static void au_auth_number(judge_t *j)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", app->port, "/_event", T_MS);
    if (!expect(j, c != NULL, "cannot connect"))
        return;
    const char *h = "{\"type\":\"hello\",\"auth\":12345}";
    sw_wsc_send_text(c, h, strlen(h));
    json_t *e = sw_wsc_recv_json(c, T_MS);
    expect(j, e && !strcmp(kind_of(e), "bad_message"), "want bad_message, got %s",
           e ? kind_of(e) : "nothing");
    json_decref(e);
    json_t *w = sw_wsc_hello(c, NULL, NULL, T_MS);
    expect(j, w != NULL, "a hello afterwards got no welcome");
    json_decref(w);
    sw_wsc_free(c);
}

/* An SSE request on the trust app: status and error code. */
static void sse_expect(judge_t *j, const char *query, const char *extra, int status,
                       const char *code)
{
    int st;
    char *body = NULL;
    sw_raw_t *e = sse_open(app->port, query, extra, &st, &body);
    if (expect(j, st == status, "GET /_sse?%s: status %d, want %d (%s)", shown_str(query), st,
               status, shown_str(body)) &&
        code)
        expect_error_body(j, "the refusal", body, code, NULL);
    if (e && status == 200) {
        json_t *w = sse_next(e, T_MS);
        expect(j, w && !strcmp(kind_of(w), "welcome"), "the stream starts without a welcome");
        json_decref(w);
    }
    free(body);
    sw_raw_free(e);
}

static void au_sse_deny(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-s1&auth=deny", NULL, 401, "unauthorized");
}

static void au_sse_bearer_deny(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-s2", "Authorization: Bearer deny\r\n", 401, "unauthorized");
}

static void au_sse_deny_param_wins(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-s3&auth=deny", "Authorization: Bearer user:eve\r\n", 401,
               "unauthorized");
}

/* An upgrade with Origin `origin` on the trust app: want (403 or 101). */
static void upgrade_origin(judge_t *j, const char *origin, int want)
{
    char hdr[9000];
    snprintf(hdr, sizeof(hdr), "Origin: %s\r\n", origin);
    int st = -1;
    char *body = NULL;
    sw_wsc_t *c =
        sw_wsc_connect_ex("127.0.0.1", app->port, "/_event", origin ? hdr : NULL, T_MS, &st, &body);
    if (expect(j, st == want, "Origin %s: status %d, want %d (%s)", shown_str(origin), st, want,
               shown_str(body)) &&
        want == 403)
        expect_error_body(j, "the refusal", body, "forbidden_origin", NULL);
    if (c && want == 101) {
        json_t *w = sw_wsc_hello(c, NULL, NULL, T_MS);
        expect(j, w != NULL, "no welcome");
        json_decref(w);
    }
    free(body);
    sw_wsc_free(c);
}

static void au_origin_evil(judge_t *j)
{
    upgrade_origin(j, "http://evil.example", 403);
}

static void au_origin_null(judge_t *j)
{
    upgrade_origin(j, "null", 403);
}

static void au_origin_other_port(judge_t *j)
{
    upgrade_origin(j, "http://good.example:8081", 403);
}

static void au_origin_no_port(judge_t *j)
{
    upgrade_origin(j, "http://good.example", 403);
}

static void au_origin_suffix(judge_t *j)
{
    upgrade_origin(j, "http://good.example:8080.evil.example", 403);
}

static void au_origin_prefix(judge_t *j)
{
    upgrade_origin(j, "http://evil.good.example:8080", 403);
}

static void au_origin_https(judge_t *j)
{
    upgrade_origin(j, "https://good.example:8080", 403);
}

static void au_origin_trailing_slash(judge_t *j)
{
    upgrade_origin(j, GOOD_ORIGIN "/", 403);
}

static void au_origin_8k(judge_t *j)
{
    static char o[8100];
    memcpy(o, GOOD_ORIGIN, strlen(GOOD_ORIGIN));
    memset(o + strlen(GOOD_ORIGIN), 'x', sizeof(o) - strlen(GOOD_ORIGIN) - 1);
    upgrade_origin(j, o, 403);
}

static void au_origin_upper_case(judge_t *j)
{
    upgrade_origin(j, "HTTP://GOOD.EXAMPLE:8080", 101);
}

static void au_origin_allowed(judge_t *j)
{
    upgrade_origin(j, GOOD_ORIGIN, 101);
}

static void au_origin_absent(judge_t *j)
{
    upgrade_origin(j, NULL, 101);
}

static void au_sse_origin_evil(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o1", "Origin: http://evil.example\r\n", 403,
               "forbidden_origin");
}

static void au_sse_origin_suffix(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o4", "Origin: http://good.example:8080.evil.example\r\n", 403,
               "forbidden_origin");
}

static void au_sse_origin_no_port(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o5", "Origin: http://good.example\r\n", 403,
               "forbidden_origin");
}

static void au_sse_origin_null(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o6", "Origin: null\r\n", 403, "forbidden_origin");
}

static void au_sse_origin_empty(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o7", "Origin: \r\n", 403, "forbidden_origin");
}

static void au_sse_origin_upper_case(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o8", "Origin: HTTP://Good.Example:8080\r\n", 200, NULL);
}

static void au_post_origin_suffix(judge_t *j)
{
    char *body = NULL;
    int st = sw_test_http_ex(
        "127.0.0.1", app->port, "POST", "/_event", "Origin: " GOOD_ORIGIN ".evil.example\r\n",
        "{\"conn_id\":\"x_1\",\"conn_token\":\"y\",\"messages\":[]}", &body, T_MS);
    if (expect(j, st == 403, "status %d, want 403 (%s)", st, shown_str(body)))
        expect_error_body(j, "the refusal", body, "forbidden_origin", NULL);
    free(body);
}

static void au_sse_origin_allowed(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o2", "Origin: " GOOD_ORIGIN "\r\n", 200, NULL);
}

static void au_post_origin_evil(judge_t *j)
{
    char *body = NULL;
    int st = sw_test_http_ex(
        "127.0.0.1", app->port, "POST", "/_event", "Origin: http://evil.example\r\n",
        "{\"conn_id\":\"x_1\",\"conn_token\":\"y\",\"messages\":[]}", &body, T_MS);
    if (expect(j, st == 403, "status %d, want 403 (%s)", st, shown_str(body)))
        expect_error_body(j, "the refusal", body, "forbidden_origin", NULL);
    free(body);
}

/* A POST that passes the Origin check: a made-up stream, so 404 bad_resume
 * (not 403 forbidden_origin). */
static void post_origin_passes(judge_t *j, const char *extra)
{
    char *body = NULL;
    int st = sw_test_http_ex(
        "127.0.0.1", app->port, "POST", "/_event", extra,
        "{\"conn_id\":\"0123456789abcdef\",\"conn_token\":\"y\",\"messages\":[]}", &body, T_MS);
    if (expect(j, st == 404, "status %d, want 404 (%s)", st, shown_str(body)))
        expect_error_body(j, "the answer", body, "bad_resume", NULL);
    free(body);
}

static void au_post_origin_allowed(judge_t *j)
{
    post_origin_passes(j, "Origin: " GOOD_ORIGIN "\r\n");
}

static void au_post_without_origin(judge_t *j)
{
    post_origin_passes(j, NULL);
}

static void au_sse_without_origin(judge_t *j)
{
    sse_expect(j, "token=hostile-auth-o3", NULL, 200, NULL);
}

static json_t *app_call(sw_wsc_t *c, int id, const char *name)
{
    char ev[96];
    snprintf(ev, sizeof(ev), "{\"type\":\"event\",\"id\":%d,\"name\":\"%s\"}", id, name);
    sw_wsc_send_text(c, ev, strlen(ev));
    return sw_wsc_wait(c, NULL, id, T_MS);
}

static json_int_t me_count(const json_t *d)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(d, "delta"), "me"), "count"));
}

static sw_wsc_t *app_hello(judge_t *j, const char *tok, const char *auth, json_t **welcome)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", app->port, "/_event", T_MS);
    if (!expect(j, c != NULL, "cannot connect"))
        return NULL;
    json_t *h = json_pack("{s:s,s:s}", "type", "hello", "token", tok);
    if (auth)
        json_object_set_new(h, "auth", json_string(auth));
    sw_wsc_send_json(c, h);
    json_decref(h);
    json_t *w = sw_wsc_wait(c, "welcome", -1, T_MS);
    if (!expect(j, w != NULL, "no welcome")) {
        sw_wsc_free(c);
        return NULL;
    }
    *welcome = w;
    return c;
}

/* alice binds the token; `who` (auth, NULL: anonymous) names it too. */
static void au_bound_token(judge_t *j, const char *tok, const char *who, int sse)
{
    json_t *w = NULL;
    sw_wsc_t *alice = app_hello(j, tok, "user:alice", &w);
    if (!alice)
        return;
    json_decref(w);
    json_t *d = app_call(alice, 1, "me.increment");
    expect(j, d && me_count(d) == 1, "alice's first increment");
    json_decref(d);
    if (sse) {
        char q[256];
        snprintf(q, sizeof(q), "token=%s%s%s", tok, who ? "&auth=" : "", who ? who : "");
        int st;
        sw_raw_t *e = sse_open(app->port, q, NULL, &st, NULL);
        if (expect(j, e != NULL, "the stream was refused: %d", st)) {
            json_t *sw = sse_next(e, T_MS);
            expect(j, sw && str(sw, "token") && strcmp(str(sw, "token"), tok) != 0,
                   "the stream got alice's token");
            json_decref(sw);
            sw_raw_free(e);
        }
    } else {
        sw_wsc_t *x = app_hello(j, tok, who, &w);
        if (x) {
            expect(j, str(w, "token") && strcmp(str(w, "token"), tok) != 0, "%s got alice's token",
                   who ? who : "an anonymous client");
            json_decref(w);
            d = app_call(x, 1, "me.increment");
            expect(j, d && me_count(d) == 1, "the other client's own count");
            json_decref(d);
            sw_wsc_free(x);
        }
    }
    d = app_call(alice, 2, "me.increment");
    expect(j, d && me_count(d) == 2, "alice's count went from 1 to %lld",
           d ? (long long)me_count(d) : -1LL);
    json_decref(d);
    sw_wsc_free(alice);
}

static void au_bound_other_user(judge_t *j)
{
    au_bound_token(j, "hostile-bound-1", "user:mallory", 0);
}

static void au_bound_anonymous(judge_t *j)
{
    au_bound_token(j, "hostile-bound-2", NULL, 0);
}

static void au_bound_sse_other_user(judge_t *j)
{
    au_bound_token(j, "hostile-bound-3", "user%3Amallory", 1);
}

static void au_bound_resume_other_user(judge_t *j)
{
    json_t *w = NULL;
    sw_wsc_t *alice = app_hello(j, "hostile-bound-4", "user:alice", &w);
    if (!alice)
        return;
    json_decref(app_call(alice, 1, "me.increment"));
    sw_wsc_t *m = sw_wsc_connect("127.0.0.1", app->port, "/_event", T_MS);
    if (expect(j, m != NULL, "cannot connect")) {
        json_t *h = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:i}}", "type", "hello", "token",
                              "hostile-bound-4", "auth", "user:mallory", "resume", "conn_id",
                              str(w, "conn_id"), "conn_token", str(w, "conn_token"), "last_seq", 0);
        sw_wsc_send_json(m, h);
        json_decref(h);
        json_t *e = sw_wsc_recv_json(m, T_MS);
        expect(j, e && !strcmp(kind_of(e), "bad_resume"), "want bad_resume first, got %s",
               e ? kind_of(e) : "nothing");
        json_decref(e);
        json_t *mw = sw_wsc_wait(m, "welcome", -1, T_MS);
        expect(j,
               mw && str(mw, "token") && strcmp(str(mw, "token"), "hostile-bound-4") != 0 &&
                   !json_is_true(json_object_get(mw, "resumed")),
               "mallory resumed alice's token");
        json_decref(mw);
        sw_wsc_free(m);
    }
    json_decref(w);
    json_t *d = app_call(alice, 2, "me.increment");
    expect(j, d && me_count(d) == 2 && !sw_wsc_closed(alice),
           "alice was replaced or her state changed");
    json_decref(d);
    sw_wsc_free(alice);
}

static const step_case_t auth_steps[] = {
    {"hello_auth_deny", DOC_REFUSED, au_deny},
    {"hello_auth_bad_user_id", DOC_REFUSED " (a user id with a control character is a refusal)",
     au_bad_user},
    {"hello_auth_deny_with_10_events", DOC_REFUSED " (nothing sent after the hello runs)",
     au_deny_with_events},
    {"hello_auth_number",
     "PROTOCOL.md \"hello\" (auth: a string) and \"error\" (bad_message); a hello still works",
     au_auth_number},
    {"sse_auth_deny", DOC_SSE_401, au_sse_deny},
    {"sse_bearer_deny", DOC_SSE_401, au_sse_bearer_deny},
    {"sse_auth_param_deny_beside_bearer",
     DOC_SSE_401 " (the auth parameter, else the Bearer token)", au_sse_deny_param_wins},
    {"upgrade_origin_evil", DOC_ORIGIN, au_origin_evil},
    {"upgrade_origin_null", DOC_ORIGIN, au_origin_null},
    {"upgrade_origin_other_port", DOC_ORIGIN, au_origin_other_port},
    {"upgrade_origin_without_port", DOC_ORIGIN, au_origin_no_port},
    {"upgrade_origin_allowed_as_prefix", DOC_ORIGIN, au_origin_suffix},
    {"upgrade_origin_subdomain", DOC_ORIGIN, au_origin_prefix},
    {"upgrade_origin_https", DOC_ORIGIN, au_origin_https},
    {"upgrade_origin_trailing_slash", DOC_ORIGIN, au_origin_trailing_slash},
    {"upgrade_origin_8k", DOC_ORIGIN, au_origin_8k},
    {"upgrade_origin_upper_case_allowed", DOC_ORIGIN, au_origin_upper_case},
    {"upgrade_origin_allowed", DOC_ORIGIN, au_origin_allowed},
    {"upgrade_without_origin", DOC_ORIGIN, au_origin_absent},
    {"sse_origin_evil", DOC_ORIGIN, au_sse_origin_evil},
    {"sse_origin_allowed", DOC_ORIGIN, au_sse_origin_allowed},
    {"sse_without_origin", DOC_ORIGIN, au_sse_without_origin},
    {"sse_origin_allowed_as_prefix", DOC_ORIGIN, au_sse_origin_suffix},
    {"sse_origin_without_port", DOC_ORIGIN, au_sse_origin_no_port},
    {"sse_origin_null", DOC_ORIGIN, au_sse_origin_null},
    {"sse_origin_empty", DOC_ORIGIN " (an empty Origin is an Origin header)", au_sse_origin_empty},
    {"sse_origin_upper_case_allowed", DOC_ORIGIN, au_sse_origin_upper_case},
    {"post_origin_allowed_as_prefix", DOC_ORIGIN, au_post_origin_suffix},
    {"post_origin_evil", DOC_ORIGIN, au_post_origin_evil},
    {"post_origin_allowed", DOC_ORIGIN " and " DOC_POST_404, au_post_origin_allowed},
    {"post_without_origin", DOC_ORIGIN " and " DOC_POST_404, au_post_without_origin},
    {"bound_token_other_user", DOC_BOUND, au_bound_other_user},
    {"bound_token_anonymous", DOC_BOUND, au_bound_anonymous},
    {"bound_token_stream_of_other_user", DOC_BOUND, au_bound_sse_other_user},
    {"bound_token_resume_by_other_user",
     DOC_BOUND " (with bad_resume first if it carried resume credentials)",
     au_bound_resume_other_user},
};

Test(hostile, auth_origin)
{
    run_steps("auth_origin", auth_steps, SW_ARRAY_SIZE(auth_steps));
    report("auth_origin");
}
