/* sseclient.h — a minimal blocking EventSource for the integration tests:
 * one GET /_sse over loopback TCP, then the "event:" / "id:" / "data:"
 * blocks of the stream (WHATWG HTML "Server-sent events"). */
#ifndef SW_TESTS_SSECLIENT_H
#define SW_TESTS_SSECLIENT_H

#include <jansson.h>

typedef struct sw_ssec {
    int fd;
    char buf[1 << 16];
    size_t len;
    char last_id[32]; /* the last "id:" seen (the seq of the last delta) */
} sw_ssec_t;

/* Connect to 127.0.0.1:port and send GET /_sse?<query> with the
 * Last-Event-ID header when last_event_id is not NULL and extra_headers
 * (NULL, or CRLF-terminated lines) after it. Asserts on connect/write
 * failure (Criterion). Free with sw_ssec_close. */
sw_ssec_t *sw_ssec_open(int port, const char *query, const char *last_event_id,
                        const char *extra_headers);

void sw_ssec_close(sw_ssec_t *e);

/* The next event's data as JSON (new reference), skipping the response
 * head (asserted to be 200 text/event-stream) and keep-alive comments;
 * updates e->last_id from "id:" lines. NULL on timeout or EOF. */
json_t *sw_ssec_next(sw_ssec_t *e, int timeout_ms);

/* 1 when the server closed the stream within timeout_ms (EOF or reset),
 * reading and dropping what still arrives; 0 otherwise. */
int sw_ssec_closed(sw_ssec_t *e, int timeout_ms);

#endif
