/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Children with deadlines: the report arrives, an oversized one is refused,
 * and an abandoned child is killed, counted until reaped, then forgotten. */

#include <signal.h>
#include <unistd.h>

#include "lib/child.h"
#include "lib/time-util.h"
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

DEFINE_TEST_MAIN()
