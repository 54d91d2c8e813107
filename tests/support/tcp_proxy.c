/* tcp_proxy.c — a loopback TCP proxy for fault tests (tcp_proxy.h). */
#include "tcp_proxy.h"

#include <criterion/logging.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct pair {
    int fd[2]; /* accepted client, upstream; -1 when the slot is free */
    int silent;
} pair_t;

struct sw_test_proxy {
    pthread_t thread;
    pthread_mutex_t mu;     /* guards the flags below */
    pthread_cond_t applied; /* silence_now went back to 0 */
    int silence_now;        /* silence every open pair (set by a caller) */
    int blackhole;          /* silence new pairs */
    int stopping;
    size_t accepted;
    int lfd;
    int port;
    int to_port;
    int wake[2]; /* a byte wakes the thread's poll */
    pair_t pairs[SW_TEST_PROXY_MAX_PAIRS];
};

static void pair_close(pair_t *pr)
{
    for (int i = 0; i < 2; i++) {
        if (pr->fd[i] >= 0)
            close(pr->fd[i]);
        pr->fd[i] = -1;
    }
    pr->silent = 0;
}

static int upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void do_accept(sw_test_proxy_t *p)
{
    int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    pthread_mutex_lock(&p->mu);
    int hole = p->blackhole;
    p->accepted++;
    pthread_mutex_unlock(&p->mu);
    pair_t *pr = NULL;
    for (int i = 0; i < SW_TEST_PROXY_MAX_PAIRS && !pr; i++)
        if (p->pairs[i].fd[0] < 0)
            pr = &p->pairs[i];
    if (!pr) {
        close(cfd);
        return;
    }
    int ufd = hole ? -1 : upstream(p->to_port);
    if (!hole && ufd < 0) { /* the server is down: so is the proxied one */
        close(cfd);
        return;
    }
    pr->fd[0] = cfd;
    pr->fd[1] = ufd;
    pr->silent = hole;
}

/* Move what is readable on pr->fd[from] to the other end. -1 when the
 * pair is done (EOF or error on either side). */
static int forward(pair_t *pr, int from)
{
    char buf[65536];
    ssize_t n = read(pr->fd[from], buf, sizeof(buf));
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN) ? 0 : -1;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(pr->fd[!from], buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += w;
    }
    return 0;
}

static void *run(void *arg)
{
    sw_test_proxy_t *p = arg;
    struct pollfd fds[2 + 2 * SW_TEST_PROXY_MAX_PAIRS];
    int who[2 + 2 * SW_TEST_PROXY_MAX_PAIRS]; /* pair index * 2 + side */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stopping;
        if (p->silence_now) {
            for (int i = 0; i < SW_TEST_PROXY_MAX_PAIRS; i++)
                if (p->pairs[i].fd[0] >= 0)
                    p->pairs[i].silent = 1;
            p->silence_now = 0;
            pthread_cond_broadcast(&p->applied);
        }
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        int n = 0;
        fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < SW_TEST_PROXY_MAX_PAIRS; i++) {
            pair_t *pr = &p->pairs[i];
            if (pr->fd[0] < 0 || pr->silent)
                continue;
            for (int side = 0; side < 2; side++) {
                who[n] = i * 2 + side;
                fds[n++] = (struct pollfd){.fd = pr->fd[side], .events = POLLIN};
            }
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            cr_log_error("tcp proxy: poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents) {
            char c[64];
            (void)!read(p->wake[0], c, sizeof(c));
        }
        if (fds[1].revents & POLLIN)
            do_accept(p);
        for (int k = 2; k < n; k++) {
            if (!fds[k].revents)
                continue;
            pair_t *pr = &p->pairs[who[k] / 2];
            if (pr->fd[0] < 0 || pr->silent)
                continue; /* closed or silenced earlier in this pass */
            if (forward(pr, who[k] % 2) < 0)
                pair_close(pr);
        }
    }
    return NULL;
}

static void poke(sw_test_proxy_t *p)
{
    (void)!write(p->wake[1], "x", 1);
}

sw_test_proxy_t *sw_test_proxy_start(int to_port)
{
    sw_test_proxy_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->to_port = to_port;
    p->lfd = -1;
    p->wake[0] = p->wake[1] = -1;
    for (int i = 0; i < SW_TEST_PROXY_MAX_PAIRS; i++)
        p->pairs[i].fd[0] = p->pairs[i].fd[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->applied, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    int one = 1;
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(p->lfd, 128) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &al) != 0) {
        cr_log_error("tcp proxy: listen: %s", strerror(errno));
        goto fail;
    }
    p->port = ntohs(a.sin_port);
    if (pipe2(p->wake, O_CLOEXEC) != 0) {
        cr_log_error("tcp proxy: pipe2: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        cr_log_error("tcp proxy: pthread_create failed");
        goto fail;
    }
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->applied);
    free(p);
    return NULL;
}

int sw_test_proxy_port(const sw_test_proxy_t *p)
{
    return p->port;
}

void sw_test_proxy_silence(sw_test_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->silence_now = 1;
    poke(p);
    while (p->silence_now) /* applied before this returns */
        pthread_cond_wait(&p->applied, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void sw_test_proxy_blackhole(sw_test_proxy_t *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->blackhole = on;
    pthread_mutex_unlock(&p->mu);
    poke(p);
}

size_t sw_test_proxy_accepted(sw_test_proxy_t *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void sw_test_proxy_stop(sw_test_proxy_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_mutex_unlock(&p->mu);
    poke(p);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < SW_TEST_PROXY_MAX_PAIRS; i++)
        pair_close(&p->pairs[i]);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->applied);
    free(p);
}
