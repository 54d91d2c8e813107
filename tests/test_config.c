/* Tests for server/config.c: defaults, flags, STATEWIRE_* environment
 * variables (flag > env > default), validation. */
#include "core/config.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static const char *const all_env[] = {
    "STATEWIRE_HOST",
    "STATEWIRE_PORT",
    "STATEWIRE_WORKERS",
    "STATEWIRE_REDIS",
    "STATEWIRE_APP",
    "STATEWIRE_LOG_LEVEL",
    "STATEWIRE_LOG_FORMAT",
    "STATEWIRE_LOG_FILE",
    "STATEWIRE_TOKEN_TTL",
    "STATEWIRE_LEASE_MS",
    "STATEWIRE_MAX_MESSAGE_BYTES",
    "STATEWIRE_MAX_SEND_BYTES",
    "STATEWIRE_MAX_QUEUE",
    "STATEWIRE_MAX_CONNECTIONS",
    "STATEWIRE_DRAIN_TIMEOUT",
    "STATEWIRE_PRESENCE_TTL_MS",
    "STATEWIRE_PING_INTERVAL_MS",
    "STATEWIRE_PING_TIMEOUT_MS",
    "STATEWIRE_HTTP_TIMEOUT_MS",
    "STATEWIRE_ALLOWED_ORIGINS",
    "STATEWIRE_MAX_EVENTS_PER_S",
    "STATEWIRE_SECRET",
};

static void clean_env(void)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(all_env); i++)
        unsetenv(all_env[i]);
}

/* parse(cfg, "--port", "9000", NULL): defaults, then sw_config_parse on a
 * fresh, mutable argv (getopt permutes it). */
static int parse(sw_config_t *cfg, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = strdup("statewire");
    va_list ap;
    va_start(ap, cfg);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = strdup(a);
    va_end(ap);
    argv[argc] = NULL;
    char *copy[64];
    memcpy(copy, argv, sizeof(argv));
    sw_config_defaults(cfg);
    int rc = sw_config_parse(cfg, argc, argv);
    for (int i = 0; i < argc; i++)
        free(copy[i]);
    return rc;
}

/* Everything written to the redirected stderr so far. */
static char *stderr_text(void)
{
    static char buf[4096];
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

Test(config, defaults)
{
    sw_config_t c;
    sw_config_defaults(&c);
    cr_assert_str_eq(c.host, "0.0.0.0");
    cr_assert_eq(c.port, 8000);
    cr_assert(c.workers >= 1 && c.workers <= 256);
    cr_assert_str_eq(c.redis_url, "");
    cr_assert_str_eq(c.app_path, "");
    cr_assert_eq(c.log_level, SW_LOG_INFO);
    cr_assert_eq(c.log_json, 0);
    cr_assert_str_eq(c.log_file, "");
    cr_assert_eq(c.token_ttl_s, 3600);
    cr_assert_eq(c.lease_ms, 10000);
    cr_assert_eq(c.max_message_bytes, 65536);
    cr_assert_eq(c.max_send_bytes, 4194304);
    cr_assert_eq(c.max_queue, 256);
    cr_assert_eq(c.max_connections, 100000);
    cr_assert_eq(c.drain_timeout_ms, 10000);
    cr_assert_eq(c.ping_interval_ms, 25000);
    cr_assert_eq(c.ping_timeout_ms, 20000);
    cr_assert_eq(c.http_timeout_ms, 10000);
    cr_assert_str_eq(c.allowed_origins, "");
    cr_assert_eq(c.max_events_per_s, 1000);
    cr_assert_str_eq(c.secret, "");
}

Test(config, no_args_keeps_defaults)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_str_eq(c.host, "0.0.0.0");
    cr_assert_eq(c.port, 8000);
    cr_assert_eq(c.workers, 1, "no --redis: one worker");
    cr_assert_eq(c.drain_timeout_ms, 10000);
}

Test(config, every_flag)
{
    clean_env();
    sw_config_t c;
    int rc = parse(&c, "--host", "127.0.0.1", "--port", "9001", "--workers", "7", "--redis",
                   "redis://127.0.0.1:6380/2", "--app", "/tmp/app.so", "--log-level", "debug",
                   "--log-format", "json", "--log-file", "/tmp/sw.log", "--token-ttl", "60",
                   "--lease-ms", "1500", "--max-message-bytes", "1024", "--max-send-bytes", "2048",
                   "--max-queue", "8", "--max-connections", "50", "--drain-timeout", "0", NULL);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 9001);
    cr_assert_eq(c.workers, 7);
    cr_assert_str_eq(c.redis_url, "redis://127.0.0.1:6380/2");
    cr_assert_str_eq(c.app_path, "/tmp/app.so");
    cr_assert_eq(c.log_level, SW_LOG_DEBUG);
    cr_assert_eq(c.log_json, 1);
    cr_assert_str_eq(c.log_file, "/tmp/sw.log");
    cr_assert_eq(c.token_ttl_s, 60);
    cr_assert_eq(c.lease_ms, 1500);
    cr_assert_eq(c.max_message_bytes, 1024);
    cr_assert_eq(c.max_send_bytes, 2048);
    cr_assert_eq(c.max_queue, 8);
    cr_assert_eq(c.max_connections, 50);
    cr_assert_eq(c.drain_timeout_ms, 0);
}

Test(config, equals_form_and_text_format)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--port=8123", "--log-format=text", "--host=::1", NULL), 0);
    cr_assert_eq(c.port, 8123);
    cr_assert_eq(c.log_json, 0);
    cr_assert_str_eq(c.host, "::1");
}

Test(config, every_env_var)
{
    clean_env();
    setenv("STATEWIRE_HOST", "10.0.0.1", 1);
    setenv("STATEWIRE_PORT", "9100", 1);
    setenv("STATEWIRE_WORKERS", "3", 1);
    setenv("STATEWIRE_REDIS", "redis://localhost:6379/0", 1);
    setenv("STATEWIRE_APP", "/opt/app.so", 1);
    setenv("STATEWIRE_LOG_LEVEL", "warn", 1);
    setenv("STATEWIRE_LOG_FORMAT", "json", 1);
    setenv("STATEWIRE_LOG_FILE", "/var/log/sw.log", 1);
    setenv("STATEWIRE_TOKEN_TTL", "61", 1);
    setenv("STATEWIRE_LEASE_MS", "1501", 1);
    setenv("STATEWIRE_MAX_MESSAGE_BYTES", "1025", 1);
    setenv("STATEWIRE_MAX_SEND_BYTES", "2049", 1);
    setenv("STATEWIRE_MAX_QUEUE", "9", 1);
    setenv("STATEWIRE_MAX_CONNECTIONS", "51", 1);
    setenv("STATEWIRE_DRAIN_TIMEOUT", "1234", 1);
    sw_config_t c;
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_str_eq(c.host, "10.0.0.1");
    cr_assert_eq(c.port, 9100);
    cr_assert_eq(c.workers, 3);
    cr_assert_str_eq(c.redis_url, "redis://localhost:6379/0");
    cr_assert_str_eq(c.app_path, "/opt/app.so");
    cr_assert_eq(c.log_level, SW_LOG_WARN);
    cr_assert_eq(c.log_json, 1);
    cr_assert_str_eq(c.log_file, "/var/log/sw.log");
    cr_assert_eq(c.token_ttl_s, 61);
    cr_assert_eq(c.lease_ms, 1501);
    cr_assert_eq(c.max_message_bytes, 1025);
    cr_assert_eq(c.max_send_bytes, 2049);
    cr_assert_eq(c.max_queue, 9);
    cr_assert_eq(c.max_connections, 51);
    cr_assert_eq(c.drain_timeout_ms, 1234);
}

Test(config, flag_beats_env_beats_default)
{
    clean_env();
    sw_config_t c;
    setenv("STATEWIRE_PORT", "9200", 1);
    setenv("STATEWIRE_LOG_LEVEL", "error", 1);
    cr_assert_eq(parse(&c, "--port", "9300", NULL), 0);
    cr_assert_eq(c.port, 9300, "flag over env");
    cr_assert_eq(c.log_level, SW_LOG_ERROR, "env over default");
    cr_assert_eq(c.lease_ms, 10000, "default when neither");
}

Test(config, empty_env_var_is_unset)
{
    clean_env();
    setenv("STATEWIRE_REDIS", "", 1);
    setenv("STATEWIRE_PORT", "", 1);
    sw_config_t c;
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_str_eq(c.redis_url, "");
    cr_assert_eq(c.port, 8000);
}

Test(config, no_redis_forces_one_worker)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--workers", "4", NULL), 0);
    cr_assert_eq(c.workers, 1);
    cr_assert_eq(parse(&c, "--workers", "4", "--redis", "redis://127.0.0.1:6379/0", NULL), 0);
    cr_assert_eq(c.workers, 4);
    setenv("STATEWIRE_WORKERS", "5", 1);
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_eq(c.workers, 1);
}

static void assert_rejected(const char *flag, const char *value)
{
    sw_config_t c;
    int rc = parse(&c, flag, value, NULL);
    cr_assert_eq(rc, SW_EINVAL, "%s %s accepted (rc %d)", flag, value, rc);
}

Test(config, bad_port, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--port", "0");
    assert_rejected("--port", "70000");
    assert_rejected("--port", "65536");
    assert_rejected("--port", "abc");
    assert_rejected("--port", "-1");
    assert_rejected("--port", "80x");
    assert_rejected("--port", "");
    const char *err = stderr_text();
    cr_assert(strstr(err, "--port") != NULL, "message names the flag: %s", err);
    cr_assert(strstr(err, "70000") != NULL);
}

Test(config, port_bounds_accepted)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--port", "1", NULL), 0);
    cr_assert_eq(c.port, 1);
    cr_assert_eq(parse(&c, "--port", "65535", NULL), 0);
    cr_assert_eq(c.port, 65535);
}

Test(config, bad_workers, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--workers", "0");
    assert_rejected("--workers", "257");
    assert_rejected("--workers", "two");
    cr_assert(strstr(stderr_text(), "--workers") != NULL);
}

Test(config, bad_sizes, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--max-message-bytes", "0");
    assert_rejected("--max-send-bytes", "0");
    assert_rejected("--max-queue", "0");
    assert_rejected("--max-connections", "0");
    assert_rejected("--token-ttl", "0");
    assert_rejected("--lease-ms", "0");
    assert_rejected("--max-queue", "4294967296");
    assert_rejected("--drain-timeout", "-5");
    cr_assert(strstr(stderr_text(), "--max-message-bytes") != NULL);
}

Test(config, bad_redis_url, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--redis", "http://localhost:6379");
    assert_rejected("--redis", "not a url");
    assert_rejected("--redis", "");
    cr_assert(strstr(stderr_text(), "--redis") != NULL);
}

Test(config, bad_log_settings, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--log-level", "verbose");
    assert_rejected("--log-format", "xml");
    const char *err = stderr_text();
    cr_assert(strstr(err, "--log-level") != NULL);
    cr_assert(strstr(err, "--log-format") != NULL);
}

Test(config, bad_env_value_names_variable, .init = cr_redirect_stderr)
{
    clean_env();
    setenv("STATEWIRE_PORT", "abc", 1);
    sw_config_t c;
    cr_assert_eq(parse(&c, NULL), SW_EINVAL);
    cr_assert(strstr(stderr_text(), "STATEWIRE_PORT") != NULL);
}

Test(config, unknown_flag_missing_value_extra_arg, .init = cr_redirect_stderr)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--frobnicate", NULL), SW_EINVAL);
    cr_assert_eq(parse(&c, "--port", NULL), SW_EINVAL);
    cr_assert_eq(parse(&c, "stray", NULL), SW_EINVAL);
    /* A later good parse still works (getopt state is reset). */
    cr_assert_eq(parse(&c, "--port", "8001", NULL), 0);
    cr_assert_eq(c.port, 8001);
}

Test(config, version, .init = cr_redirect_stdout)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--version", NULL), 1);
    fflush(stdout);
    cr_assert_stdout_eq_str("statewire " SW_VERSION "\n");
}

Test(config, help, .init = cr_redirect_stdout)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--help", NULL), 1);
    fflush(stdout);
    FILE *f = cr_get_redirected_stdout();
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    cr_assert(strstr(buf, "--drain-timeout") != NULL);
    cr_assert(strstr(buf, "STATEWIRE_REDIS") != NULL);
    cr_assert(strstr(buf, "--ping-interval-ms") != NULL);
    cr_assert(strstr(buf, "STATEWIRE_PING_INTERVAL_MS") != NULL);
    cr_assert(strstr(buf, "--ping-timeout-ms") != NULL);
    cr_assert(strstr(buf, "STATEWIRE_PING_TIMEOUT_MS") != NULL);
}

Test(config, ping_flags_and_env)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--ping-interval-ms", "100", "--ping-timeout-ms", "250", NULL), 0);
    cr_assert_eq(c.ping_interval_ms, 100);
    cr_assert_eq(c.ping_timeout_ms, 250);
    cr_assert_eq(parse(&c, "--ping-interval-ms", "0", NULL), 0, "0 turns pings off");
    cr_assert_eq(c.ping_interval_ms, 0);
    cr_assert_eq(c.ping_timeout_ms, 20000);
    cr_assert_eq(parse(&c, "--ping-interval-ms", "10", "--ping-timeout-ms", "10", NULL), 0);
    cr_assert_eq(c.ping_interval_ms, 10);
    cr_assert_eq(c.ping_timeout_ms, 10);
    cr_assert_eq(parse(&c, "--ping-interval-ms", "86400000", "--ping-timeout-ms", "86400000", NULL),
                 0);
    cr_assert_eq(c.ping_interval_ms, 86400000);

    setenv("STATEWIRE_PING_INTERVAL_MS", "3000", 1);
    setenv("STATEWIRE_PING_TIMEOUT_MS", "4000", 1);
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_eq(c.ping_interval_ms, 3000);
    cr_assert_eq(c.ping_timeout_ms, 4000);
    cr_assert_eq(parse(&c, "--ping-timeout-ms", "5000", NULL), 0);
    cr_assert_eq(c.ping_interval_ms, 3000, "env");
    cr_assert_eq(c.ping_timeout_ms, 5000, "flag over env");
    clean_env();
}

Test(config, bad_ping_values, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--ping-interval-ms", "9");
    assert_rejected("--ping-interval-ms", "1");
    assert_rejected("--ping-interval-ms", "86400001");
    assert_rejected("--ping-interval-ms", "-1");
    assert_rejected("--ping-interval-ms", "soon");
    assert_rejected("--ping-timeout-ms", "0");
    assert_rejected("--ping-timeout-ms", "9");
    assert_rejected("--ping-timeout-ms", "86400001");
    const char *err = stderr_text();
    cr_assert(strstr(err, "--ping-interval-ms") != NULL, "message names the flag: %s", err);
    cr_assert(strstr(err, "--ping-timeout-ms") != NULL, "%s", err);
    setenv("STATEWIRE_PING_TIMEOUT_MS", "5", 1);
    sw_config_t c;
    cr_assert_eq(parse(&c, NULL), SW_EINVAL);
    cr_assert(strstr(stderr_text(), "STATEWIRE_PING_TIMEOUT_MS") != NULL);
    clean_env();
}

Test(config, trust_flags_and_env)
{
    clean_env();
    sw_config_t c;
    cr_assert_eq(parse(&c, "--http-timeout-ms", "250", "--max-events-per-s", "0", "--secret",
                       "0123456789abcdef", NULL),
                 0);
    cr_assert_eq(c.http_timeout_ms, 250);
    cr_assert_eq(c.max_events_per_s, 0, "0: no limit");
    cr_assert_str_eq(c.secret, "0123456789abcdef");
    cr_assert_eq(parse(&c, "--allowed-origins", "https://a.example, http://localhost:8000", NULL),
                 0);
    cr_assert(sw_config_origin_allowed(&c, "https://a.example"));
    cr_assert(sw_config_origin_allowed(&c, "HTTPS://A.example"), "case-insensitive");
    cr_assert(sw_config_origin_allowed(&c, "http://localhost:8000"));
    cr_assert(sw_config_origin_allowed(&c, NULL), "no Origin: not refused by the list");
    cr_assert_not(sw_config_origin_allowed(&c, "http://localhost:8001"), "port differs");
    cr_assert_not(sw_config_origin_allowed(&c, "http://a.example"), "scheme differs");
    cr_assert_not(sw_config_origin_allowed(&c, "https://a.example.evil"));
    cr_assert_not(sw_config_origin_allowed(&c, "https://a.exampl"));
    cr_assert_not(sw_config_origin_allowed(&c, "null"));
    cr_assert_not(sw_config_origin_allowed(&c, ""));
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert(sw_config_origin_allowed(&c, "https://anything.example"), "no list: any origin");

    setenv("STATEWIRE_HTTP_TIMEOUT_MS", "3000", 1);
    setenv("STATEWIRE_ALLOWED_ORIGINS", "http://[::1]:9000", 1);
    setenv("STATEWIRE_MAX_EVENTS_PER_S", "50", 1);
    cr_assert_eq(parse(&c, NULL), 0);
    cr_assert_eq(c.http_timeout_ms, 3000);
    cr_assert_eq(c.max_events_per_s, 50);
    cr_assert(sw_config_origin_allowed(&c, "http://[::1]:9000"));
    cr_assert_eq(parse(&c, "--max-events-per-s", "7", NULL), 0);
    cr_assert_eq(c.max_events_per_s, 7, "flag over env");
    clean_env();
}

Test(config, bad_trust_values, .init = cr_redirect_stderr)
{
    clean_env();
    assert_rejected("--http-timeout-ms", "0");
    assert_rejected("--http-timeout-ms", "9");
    assert_rejected("--max-events-per-s", "-1");
    assert_rejected("--max-events-per-s", "1000001");
    assert_rejected("--secret", "short");
    assert_rejected("--allowed-origins", "a.example");
    assert_rejected("--allowed-origins", "https://a.example/");
    assert_rejected("--allowed-origins", "https://a.example/path");
    assert_rejected("--allowed-origins", "ftp://a.example");
    assert_rejected("--allowed-origins", "https://a.example,");
    assert_rejected("--allowed-origins", "https://a.example:123456");
    assert_rejected("--allowed-origins", "https://");
    const char *err = stderr_text();
    cr_assert(strstr(err, "--allowed-origins") != NULL, "message names the flag: %s", err);
    cr_assert(strstr(err, "--secret") != NULL, "%s", err);
    clean_env();
}
