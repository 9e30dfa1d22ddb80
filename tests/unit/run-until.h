/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Running a test's sd-event loop until something happened or a deadline
 * passed, so that a broken case fails in time instead of hanging; and
 * SIGCHLD blocked, so that its child sources collect children as the
 * agent's do. */

#include <signal.h>
#include <systemd/sd-event.h>

#include "lib/time-util.h"
#include "tests.h"

/* Runs the loop until `cond` holds or `limit` has passed; evaluates to
 * whether `cond` holds in the end, for the caller to assert. */
#define RUN_UNTIL(e, cond, limit)                                                               \
        ({                                                                                      \
                usec_t _end = now(CLOCK_MONOTONIC) + (limit);                                   \
                while (!(cond) && now(CLOCK_MONOTONIC) < _end)                                  \
                        ASSERT_OK(sd_event_run((e), 20 * USEC_PER_MSEC));                       \
                (bool) (cond);                                                                  \
        })

/* Runs the loop for `d` of wall time, whatever happens meanwhile; to the
 * end exactly, for the tests of timers. */
static inline void test_run_for(sd_event *e, usec_t d) {
        usec_t end = now(CLOCK_MONOTONIC) + d;
        for (usec_t n; (n = now(CLOCK_MONOTONIC)) < end;)
                ASSERT_OK(sd_event_run(e, end - n));
}

static inline void test_block_sigchld(void) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_BLOCK, &mask, NULL));
}
