/* fuzz_ws.c — WebSocket frames from a client into worker/conn.c after a
 * valid upgrade.
 *
 * Feeds: a fixed valid upgrade request (GET /_event, RFC 6455 §4.1), then
 * the input (after conn_driver.h's control byte and cuts) as what the
 * client sends next. The byte after the cuts picks how: even, the rest
 * goes out raw (any bytes, unmasked frames included); odd, the rest is a
 * list of frames that the harness encodes and masks as a client must
 * (RFC 6455 §5.2), each as
 *   [first byte: FIN, RSV1-3, opcode, as on the wire]
 *   [length: one byte 0..254, or 255 and two bytes big-endian]
 *   [payload: that many bytes, fewer when the input ends]
 * so that fragmentation, control frames between fragments, close codes,
 * UTF-8 (1007), message size (1009), binary (1003), the echo and close
 * commands of the driver's on_message, pings with the clock jumps,
 * hibernation and the wake-up are reached quickly.
 *
 * Checks: ASan / UBSan on conn.c (and the wslay callbacks in it), and the
 * driver's invariants (conn_driver.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/conn_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char UPGRADE[] = "GET /_event HTTP/1.1\r\n"
                              "Host: fuzz\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";

#define MAX_STREAM (sizeof(UPGRADE) + 4 * 65536)

/* Encode the frame list in[0..n) after out[0..*len). */
static void frames(const uint8_t *in, size_t n, uint8_t *out, size_t *len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t o = *len, i = 0;
    while (i < n && o + 14 < MAX_STREAM) {
        uint8_t b0 = in[i++];
        if (i >= n)
            break;
        size_t plen = in[i++];
        if (plen == 255) {
            if (i + 2 > n)
                break;
            plen = (size_t)in[i] << 8 | in[i + 1];
            i += 2;
        }
        out[o++] = b0;
        if (plen < 126) {
            out[o++] = (uint8_t)(0x80 | plen);
        } else {
            out[o++] = 0x80 | 126;
            out[o++] = (uint8_t)(plen >> 8);
            out[o++] = (uint8_t)plen;
        }
        memcpy(out + o, key, 4);
        o += 4;
        /* The declared length stays; the payload may be cut short. */
        size_t have = n - i < plen ? n - i : plen;
        if (have > MAX_STREAM - o)
            have = MAX_STREAM - o;
        for (size_t k = 0; k < have; k++)
            out[o + k] = in[i + k] ^ key[k & 3];
        o += have;
        i += have;
    }
    *len = o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t stream[MAX_STREAM];
    fz_plan_t plan;
    size_t hdr = fz_plan_parse(data, size, &plan);
    if (!hdr || hdr >= size)
        return 0;
    uint8_t mode = data[hdr++];
    size_t len = sizeof(UPGRADE) - 1;
    memcpy(stream, UPGRADE, len);
    if (mode & 1) {
        frames(data + hdr, size - hdr, stream, &len);
    } else {
        size_t n = size - hdr < MAX_STREAM - len ? size - hdr : MAX_STREAM - len;
        memcpy(stream + len, data + hdr, n);
        len += n;
    }
    fz_conn_run(&plan, stream, len, sizeof(UPGRADE) - 1);
    return 0;
}
