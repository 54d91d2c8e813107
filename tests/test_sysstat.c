/* test_sysstat.c — what the bench reads from /proc and Redis INFO: the
 * machine's CPU and steal ticks, a process tree's CPU time, INFO parsing. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
/* sysstat lives in the bench executable, which the test support library
 * does not link: compile it into this test. */
#include "bench/sysstat.h"

static void burn_ms(int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile uint64_t x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

Test(sysstat, machine_cpu_ticks_grow_and_steal_stays_within)
{
    uint64_t s0, t0, s1, t1;
    cr_assert_eq(sw_sysstat_cpu(&s0, &t0), 0);
    burn_ms(300);
    cr_assert_eq(sw_sysstat_cpu(&s1, &t1), 0);
    cr_assert_gt(t1, t0, "total ticks grow while this process runs");
    cr_assert_geq(s1, s0);
    cr_assert_leq(s1 - s0, t1 - t0, "steal is a part of the total");
}

Test(sysstat, process_tree_cpu_counts_children)
{
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        burn_ms(60000); /* killed below */
        _exit(0);
    }
    static sw_proc_snap_t a, b;
    usleep(50 * 1000);
    cr_assert_eq(sw_sysstat_procs(getpid(), &a), 0);
    int found = 0;
    for (size_t i = 0; i < a.n; i++)
        found |= a.p[i].pid == child;
    cr_assert(found, "the child is followed");
    usleep(400 * 1000); /* the child burns CPU meanwhile */
    cr_assert_eq(sw_sysstat_procs(getpid(), &b), 0);
    double s = sw_sysstat_procs_delta_s(&a, &b);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cr_assert_gt(s, 0.1, "the child's CPU time is counted (%.3f s)", s);
    cr_assert_lt(s, 1.5, "no more than the wall time of two CPUs (%.3f s)", s);
}

Test(sysstat, info_cpu_and_command_calls)
{
    const char *info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n"
                       "# Commandstats\r\n"
                       "cmdstat_get:calls=10,usec=5,usec_per_call=0.5\r\n"
                       "cmdstat_evalsha:calls=32,usec=100,usec_per_call=3.1\r\n";
    sw_redis_snap_t r;
    cr_assert_eq(sw_sysstat_parse_info(info, &r), 0);
    cr_assert_float_eq(r.cpu_s, 3.75, 1e-9);
    cr_assert_eq(r.calls, 42);
    cr_assert_eq(sw_sysstat_parse_info("# Server\r\nredis_version:7.0\r\n", &r), SW_EINVAL);
}
