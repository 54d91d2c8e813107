/* Integration: the server's other modes — development mode (in-memory
 * state, no Redis), an app loaded with --app, and the command line. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 5000

static void init(void)
{
    signal(SIGPIPE, SIG_IGN);
}

TestSuite(modes, .init = init, .timeout = 60);

static json_t *call(sw_wsc_t *c, int id, const char *name)
{
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
    for (;;) {
        json_t *r = sw_wsc_recv_json(c, T_MS);
        cr_assert(r, "no answer to %s", name);
        if (json_integer_value(json_object_get(r, "id")) == id)
            return r;
        json_decref(r);
    }
}

static json_int_t count_of(json_t *delta_msg)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(delta_msg, "delta"), "counter"), "count"));
}

Test(modes, development_mode_keeps_state_in_memory)
{
    sw_test_server_t *s = sw_test_server_start(0, NULL, 1, NULL);
    cr_assert(s);
    char *body = NULL;
    cr_assert_eq(sw_test_http("127.0.0.1", s->port, "GET", "/healthz", NULL, &body, T_MS), 200);
    cr_assert(strstr(body, "\"store\":\"memory\""), "healthz names the store: %s", body);
    free(body);

    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", s->port, "/_event", T_MS);
    cr_assert(c);
    json_decref(sw_wsc_hello(c, "tok-mem", NULL, T_MS));
    json_decref(call(c, 1, "hydrate"));
    json_decref(call(c, 2, "counter.increment"));
    json_t *d = call(c, 3, "counter.increment");
    cr_assert_eq(count_of(d), 2);
    json_decref(d);
    sw_wsc_free(c);

    /* A new connection with the same token finds the state. */
    c = sw_wsc_connect("127.0.0.1", s->port, "/_event", T_MS);
    json_decref(sw_wsc_hello(c, "tok-mem", NULL, T_MS));
    json_t *full = call(c, 1, "hydrate");
    cr_assert(json_is_true(json_object_get(full, "full")));
    cr_assert_eq(count_of(full), 2);
    json_decref(full);
    sw_wsc_free(c);

    /* Development mode runs one worker, whatever was asked. */
    pid_t pids[8];
    cr_assert_eq(sw_test_server_workers(s, pids, 8), 1);
    sw_test_server_stop(s, SIGTERM, 5000);
}

Test(modes, app_loaded_from_shared_object)
{
    sw_test_redis_t *r = sw_test_redis_start(0);
    cr_assert(r);
    const char *extra[] = {"--app", SW_TEST_COUNTER_APP, NULL};
    sw_test_server_t *s = sw_test_server_start(0, sw_test_redis_url(r), 2, extra);
    cr_assert(s, "server with --app did not start");
    char *body = NULL;
    sw_test_http("127.0.0.1", s->port, "GET", "/healthz", NULL, &body, T_MS);
    cr_assert(strstr(body, "counter-plugin"), "the plugin app is loaded: %s", body);
    free(body);
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", s->port, "/_event", T_MS);
    json_decref(sw_wsc_hello(c, "tok-plugin", NULL, T_MS));
    json_t *d = call(c, 1, "counter.increment");
    cr_assert_str_eq(json_string_value(json_object_get(d, "type")), "delta");
    cr_assert_eq(count_of(d), 1);
    json_decref(d);
    d = call(c, 2, "chat.send");
    cr_assert_str_eq(json_string_value(json_object_get(d, "code")), "unknown_event",
                     "the demo app is not loaded alongside");
    json_decref(d);

    /* A client action travels in the answering delta; the chained event
     * runs next on the server and its delta follows without id. */
    d = call(c, 3, "counter.reset");
    cr_assert_eq(count_of(d), 0);
    json_t *ev0 = json_array_get(json_object_get(d, "events"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev0, "name")), "_toast");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev0, "payload"), "text")),
                     "counter reset");
    json_int_t seq = json_integer_value(json_object_get(d, "seq"));
    json_decref(d);
    d = sw_wsc_recv_json(c, T_MS);
    cr_assert(d, "the chained event's delta follows");
    cr_assert_null(json_object_get(d, "id"));
    cr_assert_eq(count_of(d), 1);
    cr_assert_eq(json_integer_value(json_object_get(d, "seq")), seq + 1);
    json_decref(d);

    /* A yielding handler: every step is committed and sent with the id. */
    json_t *m = json_pack("{s:s,s:i,s:s,s:{s:i}}", "type", "event", "id", 4, "name",
                          "counter.count_up", "payload", "n", 5);
    sw_wsc_send_json(c, m);
    json_decref(m);
    for (int k = 1; k <= 5; k++) {
        d = sw_wsc_recv_json(c, T_MS);
        cr_assert(d, "yield step %d arrives", k);
        cr_assert_eq(json_integer_value(json_object_get(d, "id")), 4);
        cr_assert_eq(count_of(d), 1 + k);
        json_decref(d);
    }
    sw_wsc_free(c);
    sw_test_server_stop(s, SIGTERM, 5000);
    sw_test_redis_stop(r);
}

static int run_cli(const char *const *args, char *out, size_t outlen)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        execv(SW_TEST_SERVER_BIN, (char *const *)args);
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < outlen && (k = read(pfd[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(modes, command_line)
{
    char out[8192];
    const char *help[] = {SW_TEST_SERVER_BIN, "--help", NULL};
    cr_assert_eq(run_cli(help, out, sizeof(out)), 0);
    cr_assert(strstr(out, "--redis"), "help lists the flags");
    const char *ver[] = {SW_TEST_SERVER_BIN, "--version", NULL};
    cr_assert_eq(run_cli(ver, out, sizeof(out)), 0);
    cr_assert(strstr(out, "statewire"));
    const char *bad[] = {SW_TEST_SERVER_BIN, "--port", "99999", NULL};
    cr_assert_neq(run_cli(bad, out, sizeof(out)), 0);
    cr_assert(strstr(out, "port"), "the error names the flag: %s", out);
    const char *badapp[] = {SW_TEST_SERVER_BIN, "--app", "/nonexistent/app.so",
                            "--port",           "1",     NULL};
    cr_assert_neq(run_cli(badapp, out, sizeof(out)), 0, "a missing app refuses to start");
}

Test(modes, usr1_reopens_the_log_file)
{
    char dir[] = "/tmp/sw-logs-XXXXXX";
    cr_assert(mkdtemp(dir));
    char log[128], rotated[128];
    snprintf(log, sizeof(log), "%s/statewire.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/statewire.log.1", dir);
    const char *extra[] = {"--log-file", log, NULL};
    sw_test_server_t *s = sw_test_server_start(0, NULL, 1, extra);
    cr_assert(s);
    cr_assert_eq(access(log, F_OK), 0, "the log file is written");
    cr_assert_eq(rename(log, rotated), 0); /* logrotate moves it away */
    cr_assert_eq(kill(s->pid, SIGUSR1), 0);
    usleep(300000);
    cr_assert_eq(access(log, F_OK), 0, "USR1 made a new log file");
    /* later lines (the graceful stop) go to the new file */
    sw_test_server_stop(s, SIGQUIT, 5000);
    FILE *f = fopen(log, "r");
    cr_assert(f);
    char line[512];
    int draining = 0;
    while (fgets(line, sizeof(line), f))
        draining |= strstr(line, "drain") != NULL || strstr(line, "stopping") != NULL;
    fclose(f);
    cr_assert(draining, "the stop was logged in the reopened file");
    unlink(log);
    unlink(rotated);
    rmdir(dir);
}

Test(modes, log_format_json_writes_one_object_per_line)
{
    char dir[] = "/tmp/sw-jlog-XXXXXX";
    cr_assert(mkdtemp(dir));
    char log[128];
    snprintf(log, sizeof(log), "%s/statewire.log", dir);
    const char *extra[] = {"--log-format", "json", "--log-file", log, NULL};
    sw_test_server_t *s = sw_test_server_start(0, NULL, 1, extra);
    cr_assert(s);
    sw_test_server_stop(s, SIGQUIT, 5000); /* more lines: the drain */
    FILE *f = fopen(log, "r");
    cr_assert(f);
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        cr_assert(json_is_object(o), "not a JSON object: %s", line);
        for (const char *const *k =
                 (const char *const[]){"ts", "level", "role", "pid", "msg", NULL};
             *k; k++)
            cr_assert(json_object_get(o, *k), "line without \"%s\": %s", *k, line);
        json_decref(o);
        n++;
    }
    fclose(f);
    cr_assert_geq(n, 3, "the master and the worker logged (%d lines)", n);
    unlink(log);
    rmdir(dir);
}
