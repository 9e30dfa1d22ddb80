/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Running the built rupost-health or rupost-agent ($TEST_BUILD_ROOT) as an operator would,
 * and collecting its exit code, what it printed and how long it took. */

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/time-util.h"
#include "tests.h"

typedef struct Run {
        int exit_code;
        char *out;
        char *err;
        usec_t took;
} Run;

static inline void run_done(Run *r) {
        free(r->out);
        free(r->err);
}

/* Runs the built `program` (rupost-health, rupost-agent) with args
 * (NULL-terminated), optionally as another user, and collects everything it
 * printed. */
static inline Run run_program_as(const char *program, uid_t uid, const char *const *args) {
        const char *root = getenv("TEST_BUILD_ROOT");
        char binary[512];
        const char *argv[16] = {};
        Buf out = BUF_INIT(1024 * 1024), err = BUF_INIT(1024 * 1024);
        int po[2], pe[2], status;
        usec_t start = now(CLOCK_MONOTONIC);
        size_t n = 0;
        Run run = {};
        pid_t pid;

        snprintf(binary, sizeof binary, "%s/%s", root ?: ".", program);
        argv[n++] = binary;
        for (; *args; args++) {
                ASSERT_TRUE(n + 1 < ELEMENTSOF(argv));
                argv[n++] = *args;
        }

        ASSERT_OK(pipe2(po, O_CLOEXEC));
        ASSERT_OK(pipe2(pe, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (dup2(po[1], STDOUT_FILENO) < 0 || dup2(pe[1], STDERR_FILENO) < 0)
                        _exit(127);
                if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
                        _exit(126);
                execv(binary, (char **) argv);
                _exit(127);
        }
        safe_close(po[1]);
        safe_close(pe[1]);

        /* Read both pipes as they fill, so a chatty child never blocks. */
        for (bool eo = false, ee = false; !eo || !ee;) {
                struct pollfd p[2] = { { .fd = eo ? -1 : po[0], .events = POLLIN },
                                       { .fd = ee ? -1 : pe[0], .events = POLLIN } };
                char buf[4096];
                ssize_t l;

                ASSERT_TRUE(poll(p, 2, 30000) > 0);
                if (p[0].revents) {
                        l = read(po[0], buf, sizeof buf);
                        if (l <= 0)
                                eo = true;
                        else
                                ASSERT_OK(buf_append(&out, buf, (size_t) l));
                }
                if (p[1].revents) {
                        l = read(pe[0], buf, sizeof buf);
                        if (l <= 0)
                                ee = true;
                        else
                                ASSERT_OK(buf_append(&err, buf, (size_t) l));
                }
        }
        safe_close(po[0]);
        safe_close(pe[0]);

        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        run.took = now(CLOCK_MONOTONIC) - start;
        ASSERT_TRUE(WIFEXITED(status));
        run.exit_code = WEXITSTATUS(status);
        ASSERT_TRUE(run.exit_code != 126 && run.exit_code != 127);
        ASSERT_OK(buf_puts(&out, ""));
        ASSERT_OK(buf_puts(&err, ""));
        run.out = buf_steal(&out);
        run.err = buf_steal(&err);
        ASSERT_TRUE(run.out && run.err);
        buf_done(&out);
        buf_done(&err);
        return run;
}

static inline Run run_cli_as(uid_t uid, const char *const *args) {
        return run_program_as("rupost-health", uid, args);
}

#define run_cli(...) run_cli_as(0, (const char *const[]) { __VA_ARGS__, NULL })
#define run_agent(...) run_program_as("rupost-agent", 0, (const char *const[]) { __VA_ARGS__, NULL })
