/* peer.c — the helpers of the peer interface (see peer.h). */
#include "worker/peer.h"

#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

int sw_peer_sendv(sw_peer_t *p, const sw_out_t *out, const struct iovec *iov, int iovcnt)
{
    if (p->closing)
        return SW_ECLOSED;
    return p->ops->send(p, out, iov, iovcnt);
}

int sw_peer_send(sw_peer_t *p, const sw_out_t *out, const char *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return sw_peer_sendv(p, out, &iov, 1);
}

void sw_peer_send_error(sw_peer_t *p, int64_t id, sw_errc_t code, const char *message)
{
    /* The message may quote client input or a library's text cut at a
     * fixed size: keep its whole UTF-8 characters only. */
    char msg[512];
    size_t n = message ? strlen(message) : 0;
    n = sw_utf8_valid_prefix(message ? message : "", SW_MIN(n, sizeof(msg) - 1));
    memcpy(msg, message ? message : "", n);
    msg[n] = '\0';
    sw_buf_t b;
    sw_buf_init(&b, 0);
    if (sw_msg_encode_error(&b, id, code, msg) != 0) {
        sw_log(SW_LOG_ERROR, "cannot encode error %s: %s", sw_errc_name(code), msg);
        sw_buf_destroy(&b);
        return;
    }
    sw_out_t out = {.kind = SW_OUT_ERROR, .code = code};
    sw_peer_send(p, &out, b.data, b.len);
    sw_buf_destroy(&b);
}

void sw_peer_close(sw_peer_t *p, uint16_t code, const char *reason)
{
    if (p->closing)
        return;
    p->closing = 1;
    p->ops->close(p, code, reason);
}

void sw_peer_welcomed(sw_peer_t *p)
{
    p->welcomed = 1;
    if (p->ops->welcomed)
        p->ops->welcomed(p);
}
