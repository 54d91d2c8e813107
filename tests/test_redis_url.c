/* test_redis_url.c — the Redis URLs --redis takes. */
#include "core/redis_url.h"

#include <criterion/criterion.h>

#include <ev.h>

#include "common/util.h"
#include "worker/store.h"

Test(redis_url, valid)
{
    char host[256];
    int port, db;
    cr_assert_eq(sw_redis_url_parse("redis://localhost", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "localhost");
    cr_assert_eq(port, 6379);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_redis_url_parse("redis://10.0.0.1:7000/5", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "10.0.0.1");
    cr_assert_eq(port, 7000);
    cr_assert_eq(db, 5);
    cr_assert_eq(sw_redis_url_parse("redis://h:1/", host, sizeof(host), &port, &db), 0);
    cr_assert_eq(port, 1);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_redis_url_parse("redis://[::1]:6380/2", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 6380);
    cr_assert_eq(db, 2);
    cr_assert_eq(sw_redis_url_parse("unix:///tmp/r.sock", host, sizeof(host), &port, &db), 0);
    cr_assert_str_eq(host, "/tmp/r.sock");
    cr_assert_eq(port, 0);
    cr_assert_eq(db, 0);
    cr_assert_eq(sw_redis_url_parse("unix:///var/run/r.sock?db=12", host, sizeof(host), &port, &db),
                 0);
    cr_assert_str_eq(host, "/var/run/r.sock");
    cr_assert_eq(db, 12);
}

Test(redis_url, invalid)
{
    char host[16];
    int port, db;
    const char *bad[] = {
        "",
        "localhost:6379",
        "http://h",
        "redis://",
        "redis://:6379",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:x",
        "redis://h:6379/x",
        "redis://h/1/2",
        "redis://user:pw@h",
        "redis://h?db=1",
        "redis://[::1",
        "unix://",
        "unix://rel/path",
        "unix:///p?db=",
        "unix:///p?db=-1",
        "unix:///p?x=1",
        "redis://a-host-name-longer-than-the-buffer:1",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++)
        cr_assert_eq(sw_redis_url_parse(bad[i], host, sizeof(host), &port, &db), SW_EINVAL,
                     "accepted \"%s\"", bad[i]);
    cr_assert_eq(sw_redis_url_parse(NULL, host, sizeof(host), &port, &db), SW_EINVAL);
    sw_store_opts_t o = {.redis_url = "redis://h:0", .holder_id = "w1"};
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    cr_assert_null(sw_store_new(l, &o));
    ev_loop_destroy(l);
}
