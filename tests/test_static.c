/* Unit tests of worker/static.c: the embedded table, the route lookup and
 * the If-None-Match comparison. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "worker/static.h"

Test(static, table_holds_the_page_and_the_client)
{
    const char *want[] = {"/index.html", "/app.js", "/style.css", "/statewire.js"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int found = 0;
        for (size_t j = 0; j < sw_static_nfiles; j++) {
            const sw_static_file_t *f = &sw_static_files[j];
            if (strcmp(f->path, want[i]) != 0)
                continue;
            found = 1;
            cr_expect_gt(f->len, 0, "%s is empty", f->path);
            cr_expect_eq(strlen(f->etag), 18, "etag %s", f->etag);
            cr_expect_eq(f->etag[0], '"');
            cr_expect_eq(f->etag[17], '"');
        }
        cr_expect(found, "%s embedded", want[i]);
    }
}

Test(static, routes_to_index)
{
    const sw_static_file_t *root = sw_static_lookup("/");
    cr_assert_not_null(root);
    cr_expect_str_eq(root->path, "/index.html");
    cr_expect_str_eq(root->content_type, "text/html; charset=utf-8");
    cr_expect_not_null(memmem(root->data, root->len, "id=\"count\"", 10));
    cr_expect_eq(sw_static_lookup("/room/abc"), root);
    cr_expect_eq(sw_static_lookup("/room/A-b_9"), root);
    char id[80];
    memset(id, 'x', 64);
    id[64] = '\0';
    char path[96];
    snprintf(path, sizeof(path), "/room/%s", id);
    cr_expect_eq(sw_static_lookup(path), root, "64-character id");
}

Test(static, rejects_other_paths)
{
    const char *bad[] = {
        "/room/../x", "/room/..",     "/room/",         "/room",         "/room/a/b",
        "/room/a.b",  "/room/%2e%2e", "/room/a?x",      "/index.html",   "/nope",
        "",           "//",           "/statewire.js/", "/STATEWIRE.JS", "/room/abc/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_null(sw_static_lookup(bad[i]), "%s must not be served", bad[i]);
    cr_expect_null(sw_static_lookup(NULL));
    char path[96] = "/room/";
    memset(path + 6, 'x', 65);
    path[71] = '\0';
    cr_expect_null(sw_static_lookup(path), "65-character id");
}

Test(static, content_types)
{
    const sw_static_file_t *js = sw_static_lookup("/statewire.js");
    cr_assert_not_null(js);
    cr_expect_str_eq(js->content_type, "text/javascript; charset=utf-8");
    cr_expect_not_null(memmem(js->data, js->len, "export class Statewire", 22));
    const sw_static_file_t *app = sw_static_lookup("/app.js");
    cr_assert_not_null(app);
    cr_expect_str_eq(app->content_type, "text/javascript; charset=utf-8");
    const sw_static_file_t *css = sw_static_lookup("/style.css");
    cr_assert_not_null(css);
    cr_expect_str_eq(css->content_type, "text/css; charset=utf-8");
}

Test(static, etag_match)
{
    const char *tag = "\"0123456789abcdef\"";
    cr_expect(sw_static_etag_match("\"0123456789abcdef\"", tag));
    cr_expect(sw_static_etag_match("W/\"0123456789abcdef\"", tag), "weak comparison");
    cr_expect(sw_static_etag_match("\"x\", \"0123456789abcdef\"", tag), "in a list");
    cr_expect(sw_static_etag_match("\"x\",W/\"0123456789abcdef\" ", tag));
    cr_expect(sw_static_etag_match("*", tag));
    cr_expect_not(sw_static_etag_match(NULL, tag));
    cr_expect_not(sw_static_etag_match("", tag));
    cr_expect_not(sw_static_etag_match("\"0123456789abcde\"", tag), "prefix");
    cr_expect_not(sw_static_etag_match("\"0123456789abcdef0\"", tag), "longer");
    cr_expect_not(sw_static_etag_match("0123456789abcdef", tag), "unquoted");
    cr_expect_not(sw_static_etag_match("\"0123456789abcdef", tag), "unterminated");
    cr_expect_not(sw_static_etag_match("\"a\", \"b\"", tag));
}
