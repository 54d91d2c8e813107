/* redis_harness.c — start, stop, kill and restart a real redis-server. */
#include "tests/support/redis_harness.h"

#include "common/mpjson.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <criterion/logging.h>

#include "common/util.h"

#ifndef SW_TEST_REDIS_BIN
#define SW_TEST_REDIS_BIN "redis-server"
#endif

#define READY_TIMEOUT_MS 5000
#define PORT_ATTEMPTS 5

struct sw_test_redis {
    pid_t pid; /* 0 when not running */
    int tcp;
    int port; /* 0 in unix mode */
    char dir[64];
    char sock[128];
    char url[192];
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* A port the kernel considers free right now on 127.0.0.1, or -1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cr_log_error("redis harness: socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        cr_log_error("redis harness: bind: %s", strerror(errno));
        goto out;
    }
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        cr_log_error("redis harness: getsockname: %s", strerror(errno));
        goto out;
    }
    port = ntohs(sa.sin_port);
out:
    close(fd);
    return port;
}

static pid_t spawn(const sw_test_redis_t *r)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", r->tcp ? r->port : 0);
    char logfile[128];
    snprintf(logfile, sizeof(logfile), "%s/redis.log", r->dir);
    const char *argv[32];
    int n = 0;
    argv[n++] = SW_TEST_REDIS_BIN;
    argv[n++] = "--port";
    argv[n++] = port;
    if (r->tcp) {
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
    }
    argv[n++] = "--unixsocket";
    argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--loglevel";
    argv[n++] = "warning";
    argv[n++] = "--logfile";
    argv[n++] = logfile;
    argv[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        cr_log_error("redis harness: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            if (devnull > STDERR_FILENO)
                close(devnull);
        }
        execv(SW_TEST_REDIS_BIN, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* PING over the unix socket until it answers, the child dies, or the
 * timeout passes. 0 when ready. */
static int wait_ready(sw_test_redis_t *r)
{
    uint64_t deadline = sw_now_ms() + READY_TIMEOUT_MS;
    for (;;) {
        int st;
        pid_t w = waitpid(r->pid, &st, WNOHANG);
        if (w == r->pid) {
            cr_log_error("redis harness: redis-server exited early (status %d), see %s/redis.log",
                         st, r->dir);
            r->pid = 0;
            return -1;
        }
        struct timeval tv = {0, 200000};
        redisContext *c = r->tcp ? redisConnectWithTimeout("127.0.0.1", r->port, tv)
                                 : redisConnectUnixWithTimeout(r->sock, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        if (sw_now_ms() > deadline) {
            cr_log_error("redis harness: redis-server not ready after %d ms", READY_TIMEOUT_MS);
            return -1;
        }
        sleep_ms(20);
    }
}

static void reap(sw_test_redis_t *r, int sig)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    r->pid = 0;
}

/* Start the process with the current settings; 0 when it answers. */
static int launch(sw_test_redis_t *r)
{
    r->pid = spawn(r);
    if (r->pid < 0) {
        r->pid = 0;
        return -1;
    }
    if (wait_ready(r) < 0) {
        reap(r, SIGKILL);
        return -1;
    }
    return 0;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

sw_test_redis_t *sw_test_redis_start(int tcp)
{
    sw_test_redis_t *r = sw_xcalloc(1, sizeof(*r));
    r->tcp = tcp != 0;
    snprintf(r->dir, sizeof(r->dir), "/tmp/sw-redis-XXXXXX");
    if (!mkdtemp(r->dir)) {
        cr_log_error("redis harness: mkdtemp: %s", strerror(errno));
        free(r);
        return NULL;
    }
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);

    int attempts = r->tcp ? PORT_ATTEMPTS : 1;
    for (int i = 0; i < attempts; i++) {
        if (r->tcp) {
            r->port = free_port();
            if (r->port < 0)
                continue;
        }
        if (launch(r) == 0) {
            if (r->tcp)
                snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
            else
                snprintf(r->url, sizeof(r->url), "unix://%s", r->sock);
            return r;
        }
    }
    cr_log_error("redis harness: could not start %s", SW_TEST_REDIS_BIN);
    rm_dir(r->dir);
    free(r);
    return NULL;
}

const char *sw_test_redis_url(const sw_test_redis_t *r)
{
    return r->url;
}

int sw_test_redis_port(const sw_test_redis_t *r)
{
    return r->tcp ? r->port : 0;
}

const char *sw_test_redis_socket(const sw_test_redis_t *r)
{
    return r->sock;
}

redisContext *sw_test_redis_connect(const sw_test_redis_t *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    if (!c || c->err) {
        cr_log_error("redis harness: connect %s: %s", r->sock, c ? c->errstr : "no memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

void sw_test_redis_stop(sw_test_redis_t *r)
{
    if (!r)
        return;
    reap(r, SIGTERM);
    rm_dir(r->dir);
    free(r);
}

int sw_test_redis_restart(sw_test_redis_t *r)
{
    reap(r, SIGTERM);
    /* The port was ours a moment ago; retry briefly in case the kernel
     * has not let go of it yet. */
    for (int i = 0; i < PORT_ATTEMPTS; i++) {
        if (launch(r) == 0)
            return 0;
        sleep_ms(100);
    }
    cr_log_error("redis harness: restart failed");
    return -1;
}

void sw_test_redis_kill(sw_test_redis_t *r)
{
    reap(r, SIGKILL);
}

pid_t sw_test_redis_pid(const sw_test_redis_t *r)
{
    return r->pid;
}

int sw_test_redis_state(const sw_test_redis_t *r, const char *token, const char *state,
                        json_t **out)
{
    *out = NULL;
    redisContext *rc = sw_test_redis_connect(r);
    if (!rc)
        return -1;
    redisReply *rep = redisCommand(rc, "HGET sw:{%s} %s", token, state);
    int found = -1;
    if (rep && rep->type == REDIS_REPLY_NIL) {
        found = 0;
    } else if (rep && rep->type == REDIS_REPLY_STRING) {
        int err = 0;
        *out = sw_mpjson_decode(rep->str, (size_t)rep->len, &err);
        if (json_is_object(*out)) {
            found = 1;
        } else {
            json_decref(*out);
            *out = NULL;
        }
    }
    freeReplyObject(rep);
    redisFree(rc);
    return found;
}
