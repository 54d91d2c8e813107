#include "core/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

int sw_fdpass_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        sw_log(SW_LOG_ERROR, "socketpair(AF_UNIX, SOCK_SEQPACKET): %s", strerror(errno));
        return SW_ERR;
    }
    if (sw_fd_nonblock(sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        sv[0] = sv[1] = -1;
        return SW_ERR;
    }
    /* Room for a burst of accepted sockets in flight to the worker (each
     * message costs a few hundred bytes of buffer); the kernel caps it at
     * net.core.wmem_max. */
    int size = SW_FDPASS_SNDBUF;
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) != 0)
        sw_log(SW_LOG_DEBUG, "setsockopt(SO_SNDBUF): %s", strerror(errno));
    if (setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0)
        sw_log(SW_LOG_DEBUG, "setsockopt(SO_RCVBUF): %s", strerror(errno));
    return 0;
}

int sw_fdpass_send(int sock, int fd)
{
    /* One fd per message, with a 1-byte payload: a zero-length message
     * cannot be told apart from EOF on a SEQPACKET socket. */
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));

    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == 1)
            return 0;
        if (n >= 0) {
            sw_log(SW_LOG_ERROR, "sendmsg(SCM_RIGHTS): short write (%zd)", n);
            return SW_ERR;
        }
        switch (errno) {
        case EINTR:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
        case ENOBUFS:
        case ETOOMANYREFS: /* too many fds in flight (RLIMIT_NOFILE): full */
            return SW_EAGAIN;
        case EPIPE:
        case ECONNRESET:
        case ECONNREFUSED:
        case ENOTCONN:
            return SW_ECLOSED;
        default:
            sw_log(SW_LOG_ERROR, "sendmsg(SCM_RIGHTS): %s", strerror(errno));
            return SW_ERR;
        }
    }
}

int sw_fdpass_recv(int sock)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    /* Room for a few fds so that a misbehaving sender cannot make us leak
     * descriptors through a truncated control message unnoticed. */
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg;
    ssize_t n;

    for (;;) {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n >= 0 || errno != EINTR)
            break;
    }
    if (n == 0)
        return SW_ECLOSED;
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SW_EAGAIN;
        if (errno == ECONNRESET || errno == ENOTCONN)
            return SW_ECLOSED;
        sw_log(SW_LOG_ERROR, "recvmsg(SCM_RIGHTS): %s", strerror(errno));
        return SW_ERR;
    }

    int got = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (got < 0)
                got = fd;
            else
                close(fd); /* one fd per message: extras are dropped */
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        sw_log(SW_LOG_ERROR, "recvmsg(SCM_RIGHTS): control message truncated");
        if (got >= 0)
            close(got);
        return SW_ERR;
    }
    if (got < 0) {
        sw_log(SW_LOG_ERROR, "recvmsg(SCM_RIGHTS): message without a file descriptor");
        return SW_ERR;
    }
    return got;
}
