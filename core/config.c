#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "core/redis_url.h"

#define WORKERS_MAX 256

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_WORKERS,
    OPT_REDIS,
    OPT_APP,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_LOG_FILE,
    OPT_TOKEN_TTL,
    OPT_LEASE_MS,
    OPT_MAX_MESSAGE_BYTES,
    OPT_MAX_SEND_BYTES,
    OPT_MAX_QUEUE,
    OPT_MAX_CONNECTIONS,
    OPT_DRAIN_TIMEOUT,
    OPT_PRESENCE_TTL,
    OPT_PING_INTERVAL,
    OPT_PING_TIMEOUT,
    OPT_HTTP_TIMEOUT,
    OPT_ALLOWED_ORIGINS,
    OPT_MAX_EVENTS_PER_S,
    OPT_SECRET,
};

/* Liveness bounds: below 10 ms a ping timer would fire every few loop
 * iterations; a day is long enough for any deployment. */
#define PING_MIN_MS 10
#define PING_MAX_MS 86400000ULL

/* One row per setting: its flag, its environment variable, its id. */
static const struct setting {
    const char *flag; /* without the leading "--" */
    const char *env;
    int id;
} settings[] = {
    {"host", "STATEWIRE_HOST", OPT_HOST},
    {"port", "STATEWIRE_PORT", OPT_PORT},
    {"workers", "STATEWIRE_WORKERS", OPT_WORKERS},
    {"redis", "STATEWIRE_REDIS", OPT_REDIS},
    {"app", "STATEWIRE_APP", OPT_APP},
    {"log-level", "STATEWIRE_LOG_LEVEL", OPT_LOG_LEVEL},
    {"log-format", "STATEWIRE_LOG_FORMAT", OPT_LOG_FORMAT},
    {"log-file", "STATEWIRE_LOG_FILE", OPT_LOG_FILE},
    {"token-ttl", "STATEWIRE_TOKEN_TTL", OPT_TOKEN_TTL},
    {"lease-ms", "STATEWIRE_LEASE_MS", OPT_LEASE_MS},
    {"max-message-bytes", "STATEWIRE_MAX_MESSAGE_BYTES", OPT_MAX_MESSAGE_BYTES},
    {"max-send-bytes", "STATEWIRE_MAX_SEND_BYTES", OPT_MAX_SEND_BYTES},
    {"max-queue", "STATEWIRE_MAX_QUEUE", OPT_MAX_QUEUE},
    {"max-connections", "STATEWIRE_MAX_CONNECTIONS", OPT_MAX_CONNECTIONS},
    {"drain-timeout", "STATEWIRE_DRAIN_TIMEOUT", OPT_DRAIN_TIMEOUT},
    {"presence-ttl-ms", "STATEWIRE_PRESENCE_TTL_MS", OPT_PRESENCE_TTL},
    {"ping-interval-ms", "STATEWIRE_PING_INTERVAL_MS", OPT_PING_INTERVAL},
    {"ping-timeout-ms", "STATEWIRE_PING_TIMEOUT_MS", OPT_PING_TIMEOUT},
    {"http-timeout-ms", "STATEWIRE_HTTP_TIMEOUT_MS", OPT_HTTP_TIMEOUT},
    {"allowed-origins", "STATEWIRE_ALLOWED_ORIGINS", OPT_ALLOWED_ORIGINS},
    {"max-events-per-s", "STATEWIRE_MAX_EVENTS_PER_S", OPT_MAX_EVENTS_PER_S},
    {"secret", "STATEWIRE_SECRET", OPT_SECRET},
};

static int default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

void sw_config_defaults(sw_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->host, sizeof(cfg->host), "%s", "0.0.0.0");
    cfg->port = 8000;
    cfg->workers = default_workers();
    cfg->log_level = SW_LOG_INFO;
    cfg->log_json = 0;
    cfg->token_ttl_s = 3600;
    cfg->lease_ms = 10000;
    cfg->max_message_bytes = 65536;
    cfg->max_send_bytes = 4194304;
    cfg->max_queue = 256;
    cfg->max_connections = 100000;
    cfg->drain_timeout_ms = 10000;
    cfg->presence_ttl_ms = 15000;
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 20000;
    cfg->http_timeout_ms = 10000;
    cfg->max_events_per_s = 1000;
}

void sw_config_usage(const char *argv0)
{
    printf("Usage: %s [options]\n"
           "\n"
           "Options (environment variable in brackets; flag > env > default):\n"
           "  --host ADDR              listen address [STATEWIRE_HOST] (0.0.0.0)\n"
           "  --port N                 listen port 1..65535 [STATEWIRE_PORT] (8000)\n"
           "  --workers N              worker processes 1..%d [STATEWIRE_WORKERS]\n"
           "                           (number of CPUs; forced to 1 without --redis)\n"
           "  --redis URL              redis://host:port/db or unix:///path[?db=N]\n"
           "                           [STATEWIRE_REDIS] (none: in-memory, 1 worker)\n"
           "  --app PATH.so            app to load [STATEWIRE_APP] (built-in \"rooms\")\n"
           "  --log-level LEVEL        debug|info|notice|warn|error|crit\n"
           "                           [STATEWIRE_LOG_LEVEL] (info)\n"
           "  --log-format text|json   [STATEWIRE_LOG_FORMAT] (text)\n"
           "  --log-file PATH          [STATEWIRE_LOG_FILE] (stderr)\n"
           "  --token-ttl SECONDS      token state TTL [STATEWIRE_TOKEN_TTL] (3600)\n"
           "  --lease-ms MS            token lease duration [STATEWIRE_LEASE_MS] (10000)\n"
           "  --max-message-bytes N    largest client message [STATEWIRE_MAX_MESSAGE_BYTES]\n"
           "                           (65536)\n"
           "  --max-send-bytes N       send buffer bound per connection\n"
           "                           [STATEWIRE_MAX_SEND_BYTES] (4194304)\n"
           "  --max-queue N            events queued per token [STATEWIRE_MAX_QUEUE] (256)\n"
           "  --max-connections N      connections per worker [STATEWIRE_MAX_CONNECTIONS]\n"
           "                           (100000)\n"
           "  --drain-timeout MS       graceful stop (QUIT) and reload (HUP) deadline\n"
           "                           [STATEWIRE_DRAIN_TIMEOUT] (10000)\n"
           "  --presence-ttl-ms MS     presence entry lifetime (>= 300); refreshed every\n"
           "                           third [STATEWIRE_PRESENCE_TTL_MS] (15000)\n"
           "  --ping-interval-ms MS    ping a WebSocket client silent this long; 0 = never,\n"
           "                           else >= 10 [STATEWIRE_PING_INTERVAL_MS] (25000)\n"
           "  --ping-timeout-ms MS     close a pinged client that sends nothing for this\n"
           "                           long (>= 10) [STATEWIRE_PING_TIMEOUT_MS] (20000)\n"
           "  --http-timeout-ms MS     time for a request head, a body, an idle keep-alive\n"
           "                           connection and a WebSocket's hello (>= 10)\n"
           "                           [STATEWIRE_HTTP_TIMEOUT_MS] (10000)\n"
           "  --allowed-origins LIST   comma-separated origins (scheme://host[:port]) that\n"
           "                           may connect; others get 403 [STATEWIRE_ALLOWED_ORIGINS]\n"
           "                           (any origin)\n"
           "  --max-events-per-s N     events per connection per second; above it they are\n"
           "                           answered rate_limited; 0 = no limit\n"
           "                           [STATEWIRE_MAX_EVENTS_PER_S] (1000)\n"
           "  --secret KEY             key signing event-stream credentials, the same on\n"
           "                           every host (16..255 bytes) [STATEWIRE_SECRET]\n"
           "                           (a random key kept in Redis)\n"
           "  -h, --help               show this help\n"
           "  -V, --version            show the version\n",
           argv0, WORKERS_MAX);
}

/* Parse a decimal integer in [min, max]; digits only (no sign, no
 * suffix). 0 or SW_EINVAL (message printed naming `name`). */
static int parse_uint(const char *name, const char *s, unsigned long long min,
                      unsigned long long max, unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        goto bad;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "statewire: invalid value '%s' for %s (expected an integer %llu..%llu)\n", s,
            name, min, max);
    return SW_EINVAL;
}

static int copy_str(const char *name, const char *s, char *dst, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0) {
        fprintf(stderr, "statewire: %s must not be empty\n", name);
        return SW_EINVAL;
    }
    if (n >= cap) {
        fprintf(stderr, "statewire: value for %s is too long (at most %zu bytes)\n", name, cap - 1);
        return SW_EINVAL;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

/* One origin of an allowlist: "scheme://host[:port]" with an http(s)
 * scheme, a non-empty host of [A-Za-z0-9.-] (or a bracketed IPv6
 * address), an optional port of 1..5 digits, and nothing after (no path,
 * no trailing slash): the form a browser sends (RFC 6454 §6.1). */
static int origin_valid(const char *o, size_t n)
{
    size_t i;
    if (n > 7 && strncasecmp(o, "http://", 7) == 0)
        i = 7;
    else if (n > 8 && strncasecmp(o, "https://", 8) == 0)
        i = 8;
    else
        return 0;
    size_t host = i;
    if (i < n && o[i] == '[') {
        while (i < n && o[i] != ']')
            i++;
        if (i == n)
            return 0;
        i++;
    } else {
        while (i < n && (isalnum((unsigned char)o[i]) || o[i] == '.' || o[i] == '-'))
            i++;
    }
    if (i == host)
        return 0;
    if (i < n && o[i] == ':') {
        size_t p = ++i;
        while (i < n && isdigit((unsigned char)o[i]))
            i++;
        if (i == p || i - p > 5)
            return 0;
    }
    return i == n;
}

/* The next entry of a comma-separated list at *p, spaces around it
 * trimmed: its start, with its length in *n; *p moves past its comma, or
 * to NULL after the last entry. */
static const char *list_next(const char **p, size_t *n)
{
    const char *s = *p;
    while (*s == ' ')
        s++;
    const char *end = strchr(s, ',');
    *n = end ? (size_t)(end - s) : strlen(s);
    while (*n && s[*n - 1] == ' ')
        (*n)--;
    *p = end ? end + 1 : NULL;
    return s;
}

/* Each comma-separated entry of an allowlist must be an origin; spaces
 * around entries are allowed. 0 or SW_EINVAL (message printed). */
static int check_origins(const char *name, const char *list)
{
    for (const char *p = list; p;) {
        size_t n;
        const char *o = list_next(&p, &n);
        if (!origin_valid(o, n)) {
            fprintf(stderr,
                    "statewire: invalid origin '%.*s' in %s (expected scheme://host[:port], "
                    "comma-separated)\n",
                    (int)n, o, name);
            return SW_EINVAL;
        }
    }
    return 0;
}

int sw_config_origin_allowed(const sw_config_t *cfg, const char *origin)
{
    if (!origin || !cfg->allowed_origins[0])
        return 1;
    size_t olen = strlen(origin);
    for (const char *p = cfg->allowed_origins; p;) {
        size_t n;
        const char *o = list_next(&p, &n);
        if (n == olen && strncasecmp(o, origin, n) == 0)
            return 1;
    }
    return 0;
}

/* Apply one setting; `name` is the flag ("--port") or the environment
 * variable it came from, for messages. */
static int apply(sw_config_t *cfg, int id, const char *name, const char *val)
{
    unsigned long long v = 0;
    switch (id) {
    case OPT_HOST:
        return copy_str(name, val, cfg->host, sizeof(cfg->host));
    case OPT_PORT:
        if (parse_uint(name, val, 1, 65535, &v) != 0)
            return SW_EINVAL;
        cfg->port = (int)v;
        return 0;
    case OPT_WORKERS:
        if (parse_uint(name, val, 1, WORKERS_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->workers = (int)v;
        return 0;
    case OPT_REDIS: {
        char host[512];
        int port = 0, db = 0;
        if (copy_str(name, val, cfg->redis_url, sizeof(cfg->redis_url)) != 0)
            return SW_EINVAL;
        if (sw_redis_url_parse(val, host, sizeof(host), &port, &db) != 0) {
            fprintf(stderr,
                    "statewire: invalid Redis URL '%s' for %s (expected redis://host:port/db "
                    "or unix:///path[?db=N])\n",
                    val, name);
            cfg->redis_url[0] = '\0';
            return SW_EINVAL;
        }
        return 0;
    }
    case OPT_APP:
        return copy_str(name, val, cfg->app_path, sizeof(cfg->app_path));
    case OPT_LOG_LEVEL: {
        int lvl = sw_log_parse_level(val);
        if (lvl < 0) {
            fprintf(stderr,
                    "statewire: invalid log level '%s' for %s (expected "
                    "debug|info|notice|warn|error|crit)\n",
                    val, name);
            return SW_EINVAL;
        }
        cfg->log_level = lvl;
        return 0;
    }
    case OPT_LOG_FORMAT:
        if (strcmp(val, "text") == 0)
            cfg->log_json = 0;
        else if (strcmp(val, "json") == 0)
            cfg->log_json = 1;
        else {
            fprintf(stderr, "statewire: invalid log format '%s' for %s (expected text|json)\n", val,
                    name);
            return SW_EINVAL;
        }
        return 0;
    case OPT_LOG_FILE:
        return copy_str(name, val, cfg->log_file, sizeof(cfg->log_file));
    case OPT_TOKEN_TTL:
        if (parse_uint(name, val, 1, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->token_ttl_s = (uint32_t)v;
        return 0;
    case OPT_LEASE_MS:
        if (parse_uint(name, val, 1, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->lease_ms = (uint32_t)v;
        return 0;
    case OPT_MAX_MESSAGE_BYTES:
        if (parse_uint(name, val, 1, SIZE_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->max_message_bytes = (size_t)v;
        return 0;
    case OPT_MAX_SEND_BYTES:
        if (parse_uint(name, val, 1, SIZE_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->max_send_bytes = (size_t)v;
        return 0;
    case OPT_MAX_QUEUE:
        if (parse_uint(name, val, 1, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->max_queue = (uint32_t)v;
        return 0;
    case OPT_MAX_CONNECTIONS:
        if (parse_uint(name, val, 1, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->max_connections = (uint32_t)v;
        return 0;
    case OPT_DRAIN_TIMEOUT:
        if (parse_uint(name, val, 0, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->drain_timeout_ms = (uint32_t)v;
        return 0;
    case OPT_PRESENCE_TTL:
        if (parse_uint(name, val, 300, UINT32_MAX, &v) != 0)
            return SW_EINVAL;
        cfg->presence_ttl_ms = (uint32_t)v;
        return 0;
    case OPT_PING_INTERVAL:
        if (parse_uint(name, val, 0, PING_MAX_MS, &v) != 0)
            return SW_EINVAL;
        if (v != 0 && v < PING_MIN_MS) {
            fprintf(stderr,
                    "statewire: invalid value '%s' for %s (expected 0 to turn pings off, or "
                    "%d..%llu)\n",
                    val, name, PING_MIN_MS, PING_MAX_MS);
            return SW_EINVAL;
        }
        cfg->ping_interval_ms = (uint32_t)v;
        return 0;
    case OPT_PING_TIMEOUT:
        if (parse_uint(name, val, PING_MIN_MS, PING_MAX_MS, &v) != 0)
            return SW_EINVAL;
        cfg->ping_timeout_ms = (uint32_t)v;
        return 0;
    case OPT_HTTP_TIMEOUT:
        if (parse_uint(name, val, PING_MIN_MS, PING_MAX_MS, &v) != 0)
            return SW_EINVAL;
        cfg->http_timeout_ms = (uint32_t)v;
        return 0;
    case OPT_ALLOWED_ORIGINS:
        if (copy_str(name, val, cfg->allowed_origins, sizeof(cfg->allowed_origins)) != 0)
            return SW_EINVAL;
        if (check_origins(name, val) != 0) {
            cfg->allowed_origins[0] = '\0';
            return SW_EINVAL;
        }
        return 0;
    case OPT_MAX_EVENTS_PER_S:
        if (parse_uint(name, val, 0, 1000000, &v) != 0)
            return SW_EINVAL;
        cfg->max_events_per_s = (uint32_t)v;
        return 0;
    case OPT_SECRET:
        if (strlen(val) < 16) {
            fprintf(stderr, "statewire: %s must be at least 16 bytes\n", name);
            return SW_EINVAL;
        }
        return copy_str(name, val, cfg->secret, sizeof(cfg->secret));
    default:
        return SW_EINVAL;
    }
}

static const struct setting *find_setting(int id)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(settings); i++)
        if (settings[i].id == id)
            return &settings[i];
    return NULL;
}

int sw_config_parse(sw_config_t *cfg, int argc, char **argv)
{
    /* Environment first: defaults for the flags. Empty variables count as
     * unset (compose files often carry "VAR=" lines). */
    for (size_t i = 0; i < SW_ARRAY_SIZE(settings); i++) {
        const char *v = getenv(settings[i].env);
        if (v && *v && apply(cfg, settings[i].id, settings[i].env, v) != 0)
            return SW_EINVAL;
    }

    struct option longopts[SW_ARRAY_SIZE(settings) + 3];
    size_t n = 0;
    for (size_t i = 0; i < SW_ARRAY_SIZE(settings); i++)
        longopts[n++] = (struct option){settings[i].flag, required_argument, NULL, settings[i].id};
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n++] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    const char *argv0 = argc > 0 && argv[0] ? argv[0] : "statewire";
    optind = 0; /* full re-initialisation (glibc): parse may run more than once */
    opterr = 1; /* getopt prints "unrecognized option" itself */
    for (;;) {
        int c = getopt_long(argc, argv, "hV", longopts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            sw_config_usage(argv0);
            return 1;
        }
        if (c == 'V') {
            printf("statewire %s\n", SW_VERSION);
            return 1;
        }
        const struct setting *s = find_setting(c);
        if (!s) {
            fprintf(stderr, "Try '%s --help' for more information.\n", argv0);
            return SW_EINVAL;
        }
        char name[64];
        snprintf(name, sizeof(name), "--%s", s->flag);
        if (apply(cfg, c, name, optarg) != 0)
            return SW_EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "statewire: unexpected argument '%s'\n", argv[optind]);
        return SW_EINVAL;
    }

    /* Without Redis, state lives in one process's memory: one worker. */
    if (!cfg->redis_url[0])
        cfg->workers = 1;
    return 0;
}
