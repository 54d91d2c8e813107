#include "server_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wsclient.h"

int sw_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int sw_test_server_wait_healthy(const sw_test_server_t *s, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        int st = waitpid(s->pid, NULL, WNOHANG);
        if (st == s->pid)
            return -1; /* exited */
        char *body = NULL;
        int code = sw_test_http("127.0.0.1", s->port, "GET", "/healthz", NULL, &body, 1000);
        free(body);
        if (code == 200)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

sw_test_server_t *sw_test_server_start(int port, const char *redis_url, int workers,
                                       const char *const *extra)
{
    sw_test_server_t *s = calloc(1, sizeof(*s));
    s->port = port ? port : sw_test_free_port();
    snprintf(s->log_path, sizeof(s->log_path), "/tmp/statewire-test-%d-%d.log", (int)getpid(),
             s->port);
    char portbuf[16], wbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", s->port);
    snprintf(wbuf, sizeof(wbuf), "%d", workers);
    const char *argv[64];
    int n = 0;
    argv[n++] = SW_TEST_SERVER_BIN;
    argv[n++] = "--host";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = portbuf;
    argv[n++] = "--workers";
    argv[n++] = wbuf;
    argv[n++] = "--log-level";
    argv[n++] = getenv("SW_TEST_LOG_LEVEL") ? getenv("SW_TEST_LOG_LEVEL") : "info";
    if (redis_url) {
        argv[n++] = "--redis";
        argv[n++] = redis_url;
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid < 0) {
        free(s);
        return NULL;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    if (sw_test_server_wait_healthy(s, 10000) != 0) {
        fprintf(stderr, "statewire did not become healthy on port %d\n", s->port);
        sw_test_server_dump_log(s);
        sw_test_server_stop(s, SIGKILL, 1000);
        return NULL;
    }
    /* Wait until every worker is up: each registers itself in the log. */
    for (int waited = 0; waited < 5000; waited += 50) {
        pid_t pids[64];
        if (sw_test_server_workers(s, pids, 64) >= workers)
            break;
        sleep_ms(50);
    }
    return s;
}

int sw_test_server_workers(const sw_test_server_t *s, pid_t *pids, int n)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)s->pid, (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int k = 0;
    long p;
    while (k < n && fscanf(f, "%ld", &p) == 1)
        pids[k++] = (pid_t)p;
    fclose(f);
    return k;
}

int sw_test_server_stop(sw_test_server_t *s, int sig, int timeout_ms)
{
    if (!s)
        return -1;
    int status = -1;
    kill(s->pid, sig);
    int waited = 0;
    for (;;) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid)
            break;
        if (r < 0) {
            status = -1;
            break;
        }
        if (waited >= timeout_ms) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            status = -1;
            break;
        }
        sleep_ms(20);
        waited += 20;
    }
    if (!getenv("SW_TEST_KEEP_LOGS"))
        unlink(s->log_path);
    else
        fprintf(stderr, "server log kept: %s\n", s->log_path);
    free(s);
    return status;
}

void sw_test_server_dump_log(const sw_test_server_t *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- statewire log (%s) ----\n", s->log_path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}
