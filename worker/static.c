#include "worker/static.h"

#include <stdio.h>
#include <string.h>

/* Longest room id in "/room/<id>" (a shared token "room:<id>" is at most
 * 64 characters; the app checks that bound itself). */
#define SW_STATIC_ROOM_ID_MAX 64

static const sw_static_file_t *find(const char *path)
{
    for (size_t i = 0; i < sw_static_nfiles; i++) {
        if (strcmp(sw_static_files[i].path, path) == 0)
            return &sw_static_files[i];
    }
    return NULL;
}

static int room_path(const char *path)
{
    static const char prefix[] = "/room/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    const char *id = path + sizeof(prefix) - 1;
    size_t n = strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    return n >= 1 && n <= SW_STATIC_ROOM_ID_MAX && id[n] == '\0';
}

const sw_static_file_t *sw_static_lookup(const char *path)
{
    if (!path)
        return NULL;
    if (strcmp(path, "/") == 0 || room_path(path))
        return find("/index.html");
    if (strcmp(path, "/index.html") == 0)
        return NULL;
    return find(path);
}

int sw_static_etag_match(const char *inm, const char *etag)
{
    if (!inm || !etag)
        return 0;
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        /* an entity-tag is a quoted string without inner quotes */
        const char *end = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!end)
            return 0; /* malformed: no match, the full answer is safe */
        size_t len = (size_t)(end - p) + 1;
        if (len == elen && memcmp(p, etag, elen) == 0)
            return 1;
        p = end + 1;
    }
    return 0;
}

int sw_static_serve(sw_conn_t *c, const sw_http_request_t *req)
{
    const sw_static_file_t *f = sw_static_lookup(req->path);
    if (!f)
        return 0;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        sw_conn_http_error(c, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return 1;
    }
    char headers[160];
    snprintf(headers, sizeof(headers),
             "Cache-Control: no-cache\r\nETag: %s\r\nX-Content-Type-Options: nosniff\r\n", f->etag);
    if (sw_static_etag_match(req->header(req, "If-None-Match"), f->etag))
        sw_conn_http_reply(c, 304, NULL, headers, NULL, 0);
    else
        sw_conn_http_reply(c, 200, f->content_type, headers, (const char *)f->data, f->len);
    return 1;
}
