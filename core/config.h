/* config.h — the server's configuration: command-line flags, with
 * STATEWIRE_* environment variables as defaults (flag > env > built-in).
 *
 *   --host ADDR              STATEWIRE_HOST              0.0.0.0
 *   --port N                 STATEWIRE_PORT              8000
 *   --workers N              STATEWIRE_WORKERS           number of CPUs
 *   --redis URL              STATEWIRE_REDIS             (none: in-memory, 1 worker)
 *   --app PATH.so            STATEWIRE_APP               (built-in "rooms")
 *   --log-level LEVEL        STATEWIRE_LOG_LEVEL         info
 *   --log-format text|json   STATEWIRE_LOG_FORMAT        text
 *   --log-file PATH          STATEWIRE_LOG_FILE          stderr
 *   --token-ttl SECONDS      STATEWIRE_TOKEN_TTL         3600
 *   --lease-ms MS            STATEWIRE_LEASE_MS          10000
 *   --max-message-bytes N    STATEWIRE_MAX_MESSAGE_BYTES 65536
 *   --max-send-bytes N       STATEWIRE_MAX_SEND_BYTES    4194304
 *   --max-queue N            STATEWIRE_MAX_QUEUE         256 (events queued per token)
 *   --max-connections N      STATEWIRE_MAX_CONNECTIONS   100000 (per worker)
 *   --drain-timeout MS       STATEWIRE_DRAIN_TIMEOUT     10000
 *   --presence-ttl-ms MS     STATEWIRE_PRESENCE_TTL_MS   15000 (>= 300)
 *   --ping-interval-ms MS    STATEWIRE_PING_INTERVAL_MS  25000 (0 = no pings, else >= 10)
 *   --ping-timeout-ms MS     STATEWIRE_PING_TIMEOUT_MS   20000 (>= 10)
 *   --http-timeout-ms MS     STATEWIRE_HTTP_TIMEOUT_MS   10000 (>= 10)
 *   --allowed-origins LIST   STATEWIRE_ALLOWED_ORIGINS   (any origin)
 *   --max-events-per-s N     STATEWIRE_MAX_EVENTS_PER_S  1000 (0 = no limit)
 *   --secret KEY             STATEWIRE_SECRET            (one kept in Redis)
 *   --help, --version
 */
#ifndef SW_CORE_CONFIG_H
#define SW_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sw_config {
    char host[256];
    int port;
    int workers;
    char redis_url[512]; /* "" = in-memory store */
    char app_path[512];  /* "" = built-in rooms app */
    int log_level;       /* sw_log_level_t */
    int log_json;
    char log_file[512]; /* "" = stderr */
    uint32_t token_ttl_s;
    uint32_t lease_ms;
    size_t max_message_bytes;
    size_t max_send_bytes;
    uint32_t max_queue;
    uint32_t max_connections;
    uint32_t drain_timeout_ms;
    uint32_t presence_ttl_ms; /* presence entries expire after this; refreshed every ttl/3 */
    /* WebSocket liveness (worker/conn.h): a client silent for
     * ping_interval_ms gets a ping; nothing received within
     * ping_timeout_ms after it closes the connection. 0 interval: off. */
    uint32_t ping_interval_ms;
    uint32_t ping_timeout_ms;
    /* Time allowed for an HTTP request head, a request body, an idle
     * keep-alive connection, and a WebSocket before its hello
     * (worker/conn.h); 408 where an answer can still be written. */
    uint32_t http_timeout_ms;
    /* Origin allowlist: comma-separated origins ("https://a.example,
     * http://localhost:8000"), each "scheme://host[:port]", compared
     * exactly (sw_config_origin_allowed). "" = any origin. */
    char allowed_origins[2048];
    /* Events accepted per connection per second (a token bucket holding
     * one second's worth); above it events are answered rate_limited.
     * 0 = no limit. */
    uint32_t max_events_per_s;
    /* Key that signs event-stream credentials (any worker of any host
     * checks a POST's conn_id and conn_token without Redis). "" = a random
     * key kept in Redis (sw:secret), shared by every host of that Redis. */
    char secret[256];
} sw_config_t;

/* Fill cfg with built-in defaults. */
void sw_config_defaults(sw_config_t *cfg);

/* Apply STATEWIRE_* environment variables, then argv. Returns 0 to run,
 * 1 when --help/--version printed and the process should exit 0, or
 * SW_EINVAL on a bad flag or value (a message naming it is printed to
 * stderr). */
int sw_config_parse(sw_config_t *cfg, int argc, char **argv);

/* Is `origin` (an Origin header value, borrowed) allowed by
 * cfg->allowed_origins? 1 when the list is empty or holds it exactly
 * (RFC 6454 §6.1 serialisation: scheme, host and port, compared as
 * bytes, ASCII case-insensitively), else 0. NULL origin: 1 (requests
 * without Origin are not refused by the list). */
int sw_config_origin_allowed(const sw_config_t *cfg, const char *origin);

/* Print usage to stdout. */
void sw_config_usage(const char *argv0);

#endif
