/* static.h — the demo page and the browser client, embedded in the binary
 * and served over plain HTTP by the workers.
 *
 * The files come from web/ and proto/js/statewire.js: at build time
 * worker/static_embed.cmake writes them into a generated C source as byte
 * arrays plus the table sw_static_files[] (one row per file, URL path
 * "/<file name>"). Nothing is read from disk at run time.
 *
 * Routes (GET and HEAD; other methods get 405 with Allow: GET, HEAD):
 *  - "/" and "/room/<id>" (id: 1 to 64 of [A-Za-z0-9_-], nothing after
 *    it) serve /index.html;
 *  - "/<name>" serves any other embedded file ("/statewire.js",
 *    "/app.js", "/style.css"); "/index.html" itself is not a route.
 * Paths are matched as sent (no percent-decoding, no dot segments), so
 * "/room/../x" or "/room/%2e" match nothing.
 *
 * Caching (RFC 9110 §8.8.3, §13.1.2; RFC 9111 §5.2.2.4): every answer
 * carries Cache-Control: no-cache and a strong ETag (the first 16 hex
 * digits of the file's SHA-256, computed at build time); a request whose
 * If-None-Match lists that tag (or "*") gets 304 without a body. */
#ifndef SW_WORKER_STATIC_H
#define SW_WORKER_STATIC_H

#include <stddef.h>

#include "worker/conn.h"

/* One embedded file. Everything is static data of the binary. */
typedef struct sw_static_file {
    const char *path;         /* URL path: "/statewire.js" */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const unsigned char *data;
    size_t len;       /* bytes of data */
    const char *etag; /* quoted strong entity tag: "\"0123456789abcdef\"" */
} sw_static_file_t;

/* The generated table (sw_static_data.c in the build directory). */
extern const sw_static_file_t sw_static_files[];
extern const size_t sw_static_nfiles;

/* The embedded file served at request path `path` (no query), per the
 * routes above; NULL when the path is no static route. */
const sw_static_file_t *sw_static_lookup(const char *path);

/* 1 when the If-None-Match field value `inm` (NULL when absent) matches
 * `etag`: "*", or a comma-separated list of entity tags holding it under
 * the weak comparison (a W/ prefix is ignored), RFC 9110 §13.1.2. */
int sw_static_etag_match(const char *inm, const char *etag);

/* From env->on_http: answer req when its path is a static route (200 with
 * the file, 304, or 405 for a method other than GET / HEAD) and return 1;
 * return 0 without answering otherwise. */
int sw_static_serve(sw_conn_t *c, const sw_http_request_t *req);

#endif
