/* Tests for server/fdpass.c: passing descriptors over a SOCK_SEQPACKET
 * pair with SCM_RIGHTS, in-process and across fork(). */
#include "core/fdpass.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

static int fd_flags(int fd)
{
    return fcntl(fd, F_GETFD);
}

static int fl_flags(int fd)
{
    return fcntl(fd, F_GETFL);
}

Test(fdpass, pair_flags)
{
    int sv[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert(fd_flags(sv[0]) & FD_CLOEXEC);
    cr_assert(fd_flags(sv[1]) & FD_CLOEXEC);
    cr_assert(fl_flags(sv[0]) & O_NONBLOCK, "master end non-blocking");
    int type = 0;
    socklen_t len = sizeof(type);
    cr_assert_eq(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &len), 0);
    cr_assert_eq(type, SOCK_SEQPACKET);
    close(sv[0]);
    close(sv[1]);
}

Test(fdpass, pipe_in_process)
{
    int sv[2], p[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert_eq(pipe(p), 0);

    cr_assert_eq(sw_fdpass_send(sv[0], p[0]), 0);
    close(p[0]); /* the caller keeps ownership of its copy */

    int got = sw_fdpass_recv(sv[1]);
    cr_assert_geq(got, 0, "recv: %s", sw_strerror(got));
    cr_assert(fd_flags(got) & FD_CLOEXEC, "received fd is CLOEXEC");

    cr_assert_eq(write(p[1], "hello", 5), 5);
    char buf[16] = {0};
    cr_assert_eq(read(got, buf, sizeof(buf)), 5);
    cr_assert_str_eq(buf, "hello");

    /* Nothing else waiting. */
    cr_assert_eq(sw_fdpass_recv(sv[1]), SW_EAGAIN);
    close(got);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

Test(fdpass, one_fd_per_message_in_order)
{
    int sv[2], a[2], b[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert_eq(pipe(a), 0);
    cr_assert_eq(pipe(b), 0);
    cr_assert_eq(sw_fdpass_send(sv[0], a[0]), 0);
    cr_assert_eq(sw_fdpass_send(sv[0], b[0]), 0);
    cr_assert_eq(write(a[1], "A", 1), 1);
    cr_assert_eq(write(b[1], "B", 1), 1);
    int x = sw_fdpass_recv(sv[1]);
    int y = sw_fdpass_recv(sv[1]);
    cr_assert_geq(x, 0);
    cr_assert_geq(y, 0);
    char c1 = 0, c2 = 0;
    cr_assert_eq(read(x, &c1, 1), 1);
    cr_assert_eq(read(y, &c2, 1), 1);
    cr_assert_eq(c1, 'A');
    cr_assert_eq(c2, 'B');
    close(x);
    close(y);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    close(sv[0]);
    close(sv[1]);
}

Test(fdpass, across_fork)
{
    int sv[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Worker side: wait for one fd, read it to EOF, check the bytes. */
        close(sv[0]);
        struct pollfd pfd = {.fd = sv[1], .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1)
            _exit(10);
        int fd = sw_fdpass_recv(sv[1]);
        if (fd < 0)
            _exit(11);
        char buf[64];
        size_t off = 0;
        ssize_t n;
        while ((n = read(fd, buf + off, sizeof(buf) - 1 - off)) > 0)
            off += (size_t)n;
        buf[off] = '\0';
        _exit(strcmp(buf, "across fork") == 0 ? 0 : 12);
    }
    close(sv[1]);
    /* The pipe is made after fork: the child can only get it by SCM_RIGHTS. */
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(sw_fdpass_send(sv[0], p[0]), 0);
    close(p[0]);
    cr_assert_eq(write(p[1], "across fork", 11), 11);
    close(p[1]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child exit %d", WEXITSTATUS(status));
    close(sv[0]);
}

Test(fdpass, recv_on_closed_peer)
{
    int sv[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    close(sv[0]);
    cr_assert_eq(sw_fdpass_recv(sv[1]), SW_ECLOSED);
    close(sv[1]);
}

Test(fdpass, send_on_closed_peer)
{
    int sv[2], p[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert_eq(pipe(p), 0);
    close(sv[1]);
    cr_assert_eq(sw_fdpass_send(sv[0], p[0]), SW_ECLOSED);
    close(sv[0]);
    close(p[0]);
    close(p[1]);
}

Test(fdpass, recv_eagain_when_empty)
{
    int sv[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    /* Both ends, including the blocking worker end: recv never blocks. */
    cr_assert_eq(sw_fdpass_recv(sv[1]), SW_EAGAIN);
    cr_assert_eq(sw_fdpass_recv(sv[0]), SW_EAGAIN);
    close(sv[0]);
    close(sv[1]);
}

Test(fdpass, send_eagain_when_full)
{
    int sv[2], p[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert_eq(pipe(p), 0);
    int sent = 0, rc = 0;
    while (sent < 100000 && (rc = sw_fdpass_send(sv[0], p[0])) == 0)
        sent++;
    cr_assert_eq(rc, SW_EAGAIN, "channel never filled (sent %d, rc %d)", sent, rc);
    cr_assert_gt(sent, 0);
    /* Drain: every queued message carries one fd. */
    int got = 0, fd;
    while ((fd = sw_fdpass_recv(sv[1])) >= 0) {
        close(fd);
        got++;
    }
    cr_assert_eq(fd, SW_EAGAIN);
    cr_assert_eq(got, sent);
    /* Room again after draining. */
    cr_assert_eq(sw_fdpass_send(sv[0], p[0]), 0);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

Test(fdpass, message_without_fd_is_error)
{
    int sv[2];
    cr_assert_eq(sw_fdpass_pair(sv), 0);
    cr_assert_eq(send(sv[0], "x", 1, 0), 1);
    cr_assert_eq(sw_fdpass_recv(sv[1]), SW_ERR);
    close(sv[0]);
    close(sv[1]);
}
