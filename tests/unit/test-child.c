/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Children with deadlines: the report arrives, an oversized one is refused,
 * an abandoned child is killed, counted until reaped, then forgotten; a
 * child holds none of the agent's descriptors; a spawn that fails after the
 * fork does not wait for the child. */

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "lib/child.h"
#include "lib/log.h"
#include "lib/time-util.h"
#include "loopback.h"
#include "run-until.h"
#include "tests.h"

typedef struct Outcome {
        bool called;
        int status;
        char output[256];
} Outcome;

static void on_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        Outcome *o = userdata;
        o->called = true;
        o->status = status;
        snprintf(o->output, sizeof o->output, "%.*s", (int) size, output);
        child_abandon(c);
}

static int say_hello(int fd, void *arg) {
        (void) !write(fd, "hello from the child", 20);
        return 3;
}

static int write_too_much(int fd, void *arg) {
        char b[1024];
        memset(b, 'x', sizeof b);
        for (int i = 0; i < 64; i++)
                (void) !write(fd, b, sizeof b);
        return 0;
}

static int hang(int fd, void *arg) {
        for (;;)
                pause();
        return 0;
}

TEST(child_reports_output_and_status) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};

        test_block_sigchld();
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(child_spawn(e, "test-hello", say_hello, NULL, 1024, on_done, &o, &c));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_EQ(o.status, 3);
        ASSERT_STREQ(o.output, "hello from the child");
        sd_event_unref(e);
}

TEST(child_output_limit) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};

        test_block_sigchld();
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(child_spawn(e, "test-big", write_too_much, NULL, 4096, on_done, &o, &c));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_EQ(o.status, -E2BIG);
        sd_event_unref(e);
}

TEST(abandoned_child_is_killed_and_reaped) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};

        test_block_sigchld();
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(child_spawn(e, "test-hang", hang, NULL, 1024, on_done, &o, &c));
        pid_t pid = child_pid(c);
        ASSERT_EQ(child_abandoned_alive("test-hang"), 0);
        child_abandon(c);
        ASSERT_EQ(child_abandoned_alive("test-hang"), 1);

        (void) RUN_UNTIL(e, child_abandoned_alive("test-hang") <= 0, 5 * USEC_PER_SEC);
        ASSERT_EQ(child_abandoned_alive("test-hang"), 0);
        /* Reaped: the pid is gone, and the owner was never called. */
        ASSERT_TRUE(kill(pid, 0) < 0 && errno == ESRCH);
        ASSERT_FALSE(o.called);
        sd_event_unref(e);
}

/* Whether a new socket can listen on 127.0.0.1:port. */
static bool can_bind(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        ASSERT_TRUE(fd >= 0);
        ok = bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0 && listen(fd, 1) == 0;
        close(fd);
        return ok;
}

/* The descriptors a process holds, from /proc/<pid>/fd, as "0 1 2 5". */
static void list_fds(pid_t pid, char *out, size_t size) {
        char path[64];
        DIR *d;
        size_t l = 0;

        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        d = opendir(path);
        ASSERT_TRUE(d);
        out[0] = '\0';
        for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.' && l < size)
                        l += (size_t) snprintf(out + l, size - l, "%s%s", l ? " " : "", de->d_name);
        closedir(d);
}

static unsigned count_fds(pid_t pid) {
        char list[1024];
        unsigned n = 0;

        list_fds(pid, list, sizeof list);
        for (const char *p = list; *p; p++)
                n += *p == ' ';
        return list[0] ? n + 1 : 0;
}

/* The agent restarted while a probe child hangs (issue 10, item 6): the
 * child must not hold the listening port, nor anything else of the agent's. */
TEST(child_holds_no_descriptor_of_the_parent) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};
        uint16_t port;
        int listener, extra;
        char list[1024];

        test_block_sigchld();
        ASSERT_OK(sd_event_new(&e));
        listener = test_loopback_socket(SOCK_STREAM, &port);
        /* Without O_CLOEXEC, as a library might open one: no exec runs anyway. */
        extra = open("/dev/null", O_RDONLY);
        ASSERT_TRUE(extra >= 0);

        ASSERT_OK(child_spawn(e, "test-fds", hang, NULL, 1024, on_done, &o, &c));
        pid_t pid = child_pid(c);
        close(listener);
        close(extra);

        /* The child closes right after the fork: wait for that, boundedly. */
        ASSERT_TRUE(RUN_UNTIL(e, can_bind(port), 5 * USEC_PER_SEC));
        /* stdio and the pipe, nothing else. */
        ASSERT_TRUE(RUN_UNTIL(e, count_fds(pid) <= 4, 5 * USEC_PER_SEC));
        list_fds(pid, list, sizeof list);
        log_info("the hung child holds: %s", list);
        ASSERT_EQ(count_fds(pid), 4u);
        ASSERT_TRUE(kill(pid, 0) == 0);

        child_abandon(c);
        (void) RUN_UNTIL(e, child_abandoned_alive("test-fds") <= 0, 5 * USEC_PER_SEC);
        ASSERT_EQ(child_abandoned_alive("test-fds"), 0);
        ASSERT_FALSE(o.called);
        sd_event_unref(e);
}

/* A child that writes its report through a pipe that pipe2() put on fd 0,
 * as it does in an agent started with stdin closed. */
static int say_hi(int fd, void *arg) {
        (void) !write(fd, "hi", 2);
        return 0;
}

TEST(child_pipe_survives_closed_stdin) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};
        int saved = dup(STDIN_FILENO);

        ASSERT_TRUE(saved >= 0);
        test_block_sigchld();
        ASSERT_OK(sd_event_new(&e));
        close(STDIN_FILENO);
        ASSERT_OK(child_spawn(e, "test-stdin", say_hi, NULL, 1024, on_done, &o, &c));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_OK(dup2(saved, STDIN_FILENO));
        close(saved);
        ASSERT_EQ(o.status, 0);
        ASSERT_STREQ(o.output, "hi");
        sd_event_unref(e);
}

/* sd-event refuses a child source while SIGCHLD is not blocked: the spawn
 * fails after the fork. It must return at once, not wait for the child,
 * and still count and reap it. */
TEST(failed_spawn_does_not_wait_for_the_child) {
        sd_event *e = NULL;
        Child *c = NULL;
        Outcome o = {};
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_UNBLOCK, &mask, NULL));
        ASSERT_OK(sd_event_new(&e));

        usec_t t0 = now(CLOCK_MONOTONIC);
        r = child_spawn(e, "test-unwatched", hang, NULL, 1024, on_done, &o, &c);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t0 < USEC_PER_SEC);

        usec_t end = now(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (child_abandoned_alive("test-unwatched") > 0 && now(CLOCK_MONOTONIC) < end)
                usleep(10 * 1000);
        ASSERT_EQ(child_abandoned_alive("test-unwatched"), 0);
        ASSERT_FALSE(o.called);
        test_block_sigchld();
        sd_event_unref(e);
}

DEFINE_TEST_MAIN()
