/* fuzz_http.c — bytes from a client into worker/conn.c.
 *
 * Feeds: the input (after conn_driver.h's control byte and cuts) as the
 * raw byte stream of one client connection: HTTP/1.1 request heads and
 * bodies (http-parser and conn.c's callbacks), pipelining, keep-alive,
 * the 400 / 403 / 405 / 408 / 413 / 426 / 431 answers, event streams, and whatever
 * follows a WebSocket upgrade. The server's answers go through the real
 * sw_conn_http_reply, sw_static_serve and sw_conn_sse_* paths.
 *
 * Checks: ASan / UBSan on conn.c and what it calls, and the driver's
 * invariants (conn_driver.h: on_close pairing, bounds, deferred replies,
 * an empty env and loop after teardown). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz/conn_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_plan_t plan;
    size_t hdr = fz_plan_parse(data, size, &plan);
    if (!hdr)
        return 0;
    fz_conn_run(&plan, data + hdr, size - hdr, 0);
    return 0;
}
