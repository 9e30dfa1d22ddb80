/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The probe core: deadline, no overlapping runs, jitter bounds, cancellation,
 * rise/fall hysteresis, and exactly one report per run. A probe type of the
 * test's own drives each case on a real sd-event loop. */

#include <systemd/sd-event.h>

#include "lib/buf.h"
#include "manager.h"
#include "probe.h"
#include "run-until.h"
#include "tests.h"

typedef enum Behaviour {
        FINISH_AT_ONCE,  /* report synchronously from start() */
        FINISH_LATER,    /* report from a timer after `delay` */
        NEVER_FINISH,    /* hang: only the core's deadline ends the run */
} Behaviour;

typedef struct TestProbe {
        Behaviour behaviour;
        usec_t delay;
        ProbeStatus next_status;
        sd_event_source *later;
        unsigned starts;
        unsigned stops;
        unsigned in_flight;
        unsigned max_in_flight;
        usec_t start_times[64];
} TestProbe;

static int on_later(sd_event_source *s, uint64_t usec, void *userdata) {
        Probe *p = userdata;
        TestProbe *t = probe_get_userdata(p);
        return probe_finish(p, t->next_status, "finished later");
}

static int test_start(Probe *p) {
        TestProbe *t = probe_get_userdata(p);

        if (t->starts < ELEMENTSOF(t->start_times))
                t->start_times[t->starts] = now(CLOCK_MONOTONIC);
        t->starts++;
        t->in_flight++;
        t->max_in_flight = MAX(t->max_in_flight, t->in_flight);

        switch (t->behaviour) {
        case FINISH_AT_ONCE:
                return probe_finish(p, t->next_status, "run %u", t->starts);
        case FINISH_LATER:
                return sd_event_add_time_relative(probe_get_event(p), &t->later, CLOCK_MONOTONIC, t->delay, 0,
                                                  on_later, p);
        case NEVER_FINISH:
                probe_set_phase(p, "waiting forever");
                return 0;
        }
        return -EINVAL;
}

static void test_stop(Probe *p) {
        TestProbe *t = probe_get_userdata(p);
        t->later = sd_event_source_disable_unref(t->later);
        t->stops++;
        t->in_flight--;
}

static const ProbeType test_type = {
        .name = "test",
        .object_size = sizeof(TestProbe),
        .default_interval = 50 * USEC_PER_MSEC,
        .default_timeout = 20 * USEC_PER_MSEC,
        .default_rise = 2,
        .default_fall = 3,
        .start = test_start,
        .stop = test_stop,
};

typedef struct Fixture {
        sd_event *event;
        Manager manager;
        Probe *probe;
        TestProbe *t;
} Fixture;

static void fixture_setup(Fixture *f, Behaviour b) {
        *f = (Fixture) {};
        ASSERT_OK(sd_event_new(&f->event));
        f->manager.event = f->event;
        ASSERT_OK(probe_new(&test_type, "p1", &f->probe));
        f->t = probe_get_userdata(f->probe);
        f->t->behaviour = b;
        f->t->next_status = PROBE_OK;
}

static void fixture_teardown(Fixture *f) {
        f->probe = probe_free(f->probe);
        free(f->manager.last_status);
        f->event = sd_event_unref(f->event);
}

TEST(deadline_ends_a_hung_run) {
        Fixture f;
        fixture_setup(&f, NEVER_FINISH);
        f.probe->interval = 10 * USEC_PER_SEC; /* one run only */
        f.probe->timeout = 30 * USEC_PER_MSEC;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        /* The first run starts within a second; give the deadline a wide margin. */
        test_run_for(f.event, 1500 * USEC_PER_MSEC);

        ASSERT_EQ(f.t->starts, 1);
        ASSERT_EQ(f.t->stops, 1);
        ASSERT_TRUE(f.probe->have_result);
        ASSERT_FALSE(f.probe->running);
        ASSERT_EQ(f.probe->last.status, PROBE_CRITICAL);
        ASSERT_EQ(f.probe->n_timeouts, 1);
        ASSERT_STREQ(f.probe->last.reason, "no answer within 30ms while waiting forever");
        /* The run was cut at its deadline, not at the interval. */
        ASSERT_TRUE(f.probe->last.duration >= 30 * USEC_PER_MSEC);
        ASSERT_TRUE(f.probe->last.duration < 500 * USEC_PER_MSEC);
        fixture_teardown(&f);
}

TEST(runs_never_overlap_even_when_triggered) {
        Fixture f;
        fixture_setup(&f, FINISH_LATER);
        f.t->delay = 40 * USEC_PER_MSEC;
        f.probe->interval = 50 * USEC_PER_MSEC;
        f.probe->timeout = 45 * USEC_PER_MSEC;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        for (unsigned i = 0; i < 40; i++) {
                /* Hammer the probe with triggers while runs are in flight. */
                ASSERT_OK(probe_trigger(f.probe));
                test_run_for(f.event, 10 * USEC_PER_MSEC);
        }
        ASSERT_EQ(f.t->max_in_flight, 1);
        ASSERT_TRUE(f.t->starts >= 3);
        /* Every start got exactly one report. */
        ASSERT_EQ(f.probe->n_runs + (f.probe->running ? 1 : 0), f.t->starts);
        fixture_teardown(&f);
}

TEST(trigger_during_run_runs_once_more) {
        Fixture f;
        fixture_setup(&f, FINISH_LATER);
        /* Long enough that a loaded machine cannot finish the run before we look. */
        f.t->delay = 400 * USEC_PER_MSEC;
        f.probe->interval = 60 * USEC_PER_SEC;
        f.probe->timeout = 2 * USEC_PER_SEC;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        ASSERT_OK(probe_trigger(f.probe));
        test_run_for(f.event, 10 * USEC_PER_MSEC);
        ASSERT_TRUE(f.probe->running);
        /* Three triggers during one run collapse into a single rerun. */
        ASSERT_OK(probe_trigger(f.probe));
        ASSERT_OK(probe_trigger(f.probe));
        ASSERT_OK(probe_trigger(f.probe));
        test_run_for(f.event, 1500 * USEC_PER_MSEC);
        ASSERT_EQ(f.t->starts, 2);
        ASSERT_EQ(f.probe->n_runs, 2);
        fixture_teardown(&f);
}

TEST(interval_jitter_bounds) {
        Fixture f;
        fixture_setup(&f, FINISH_AT_ONCE);
        f.probe->interval = 100 * USEC_PER_MSEC;
        f.probe->timeout = 50 * USEC_PER_MSEC;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        test_run_for(f.event, 1300 * USEC_PER_MSEC);
        ASSERT_TRUE(f.t->starts >= 5);

        usec_t min = USEC_INFINITY, sum = 0;
        unsigned n = MIN(f.t->starts, (unsigned) ELEMENTSOF(f.t->start_times)) - 1;
        for (unsigned i = 1; i <= n; i++) {
                usec_t gap = f.t->start_times[i] - f.t->start_times[i - 1];
                min = MIN(min, gap);
                sum += gap;
        }
        /* Never earlier than the interval; on average within its tenth of jitter
         * (plus a wide margin for a loaded machine). */
        ASSERT_TRUE(min >= 100 * USEC_PER_MSEC);
        ASSERT_TRUE(sum / n <= 160 * USEC_PER_MSEC);
        fixture_teardown(&f);
}

TEST(cancel_releases_the_run_without_a_report) {
        Fixture f;
        fixture_setup(&f, NEVER_FINISH);
        f.probe->interval = 10 * USEC_PER_SEC;
        f.probe->timeout = 5 * USEC_PER_SEC;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        ASSERT_OK(probe_trigger(f.probe));
        test_run_for(f.event, 20 * USEC_PER_MSEC);
        ASSERT_TRUE(f.probe->running);

        probe_detach(f.probe);
        ASSERT_FALSE(f.probe->running);
        ASSERT_EQ(f.t->stops, 1);
        ASSERT_EQ(f.probe->n_runs, 0);
        ASSERT_FALSE(f.probe->have_result);
        /* Nothing fires after cancellation. */
        test_run_for(f.event, 100 * USEC_PER_MSEC);
        ASSERT_EQ(f.t->starts, 1);
        fixture_teardown(&f);
}

/* Feeds raw statuses through the hysteresis as the core does after each run. */
static ProbeStatus feed(Probe *p, ProbeStatus raw) {
        p->status = probe_hysteresis_step(p, raw);
        p->have_result = true;
        return p->status;
}

TEST(hysteresis_fall_and_rise) {
        _cleanup_(probe_freep) Probe *p = NULL;
        ASSERT_OK(probe_new(&test_type, "h", &p));
        p->rise = 2;
        p->fall = 3;

        /* The first result is taken as it comes. */
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_OK);
        /* Two failures are absorbed, the third turns it critical. */
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_OK);
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_OK);
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_CRITICAL);
        /* While failing, the severity follows the latest result at once. */
        ASSERT_EQ(feed(p, PROBE_WARNING), PROBE_WARNING);
        /* One success is not enough to recover... */
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_WARNING);
        /* ...a failure in between resets the count... */
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_CRITICAL);
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_CRITICAL);
        /* ...two in a row are. */
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_OK);
        /* An isolated failure between successes never shows. */
        ASSERT_EQ(feed(p, PROBE_UNKNOWN), PROBE_OK);
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_OK);
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_OK);
}

TEST(hysteresis_first_failure_is_reported) {
        _cleanup_(probe_freep) Probe *p = NULL;
        ASSERT_OK(probe_new(&test_type, "h", &p));
        p->rise = 2;
        p->fall = 3;
        ASSERT_EQ(feed(p, PROBE_CRITICAL), PROBE_CRITICAL);
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_CRITICAL);
        ASSERT_EQ(feed(p, PROBE_OK), PROBE_OK);
}

TEST(hysteresis_through_the_scheduler) {
        Fixture f;
        fixture_setup(&f, FINISH_AT_ONCE);
        f.probe->interval = 20 * USEC_PER_MSEC;
        f.probe->timeout = 10 * USEC_PER_MSEC;
        f.probe->fall = 2;

        ASSERT_OK(probe_attach(f.probe, &f.manager));
        test_run_for(f.event, 1200 * USEC_PER_MSEC);
        ASSERT_EQ(f.probe->status, PROBE_OK);

        f.t->next_status = PROBE_CRITICAL;
        uint64_t runs = f.probe->n_runs;
        while (f.probe->n_runs < runs + 1)
                ASSERT_OK(sd_event_run(f.event, USEC_INFINITY));
        ASSERT_EQ(f.probe->last.status, PROBE_CRITICAL);
        ASSERT_EQ(f.probe->status, PROBE_OK);
        while (f.probe->n_runs < runs + 2)
                ASSERT_OK(sd_event_run(f.event, USEC_INFINITY));
        ASSERT_EQ(f.probe->status, PROBE_CRITICAL);
        ASSERT_TRUE(f.probe->changed_realtime == f.probe->last.started_realtime);
        fixture_teardown(&f);
}

/* A type whose setup fails a given number of times first, as the
 * systemd-unit probe's does while there is no system bus. */
typedef struct FlakySetup {
        TestProbe t; /* first: test_start() and test_stop() use it */
        unsigned setup_failures_left;
        unsigned setups;
} FlakySetup;

static int flaky_setup(Probe *p) {
        FlakySetup *f = probe_get_userdata(p);

        f->setups++;
        if (f->setup_failures_left > 0) {
                f->setup_failures_left--;
                return probe_setup_error(p, -ENOENT, "no socket at /nowhere");
        }
        return 0;
}

static const ProbeType flaky_type = {
        .name = "flaky",
        .object_size = sizeof(FlakySetup),
        .default_interval = 50 * USEC_PER_MSEC,
        .default_timeout = 20 * USEC_PER_MSEC,
        .default_rise = 1,
        .default_fall = 1,
        .setup = flaky_setup,
        .start = test_start,
        .stop = test_stop,
};

/* Issue 11: a probe that cannot be set up took the agent down. Now it
 * reports unknown with the reason and is set up again later, while the
 * other probes go on reporting. */
TEST(failed_setup_reports_unknown_and_retries) {
        Fixture f;
        Probe *flaky = NULL;
        FlakySetup *fs;

        fixture_setup(&f, FINISH_AT_ONCE);
        ASSERT_OK(probe_new(&flaky_type, "flaky", &flaky));
        fs = probe_get_userdata(flaky);
        fs->t.behaviour = FINISH_AT_ONCE;
        fs->t.next_status = PROBE_OK;
        fs->setup_failures_left = 1;

        /* Attaching is no error: the failure is the probe's own. */
        ASSERT_OK(probe_attach(flaky, &f.manager));
        ASSERT_OK(probe_attach(f.probe, &f.manager));
        ASSERT_FALSE(flaky->set_up);
        ASSERT_TRUE(flaky->have_result);
        ASSERT_EQ(flaky->status, PROBE_UNKNOWN);
        ASSERT_STREQ(flaky->last.reason, "cannot set up the check: no socket at /nowhere");
        ASSERT_TRUE(flaky->changed_realtime > 0);
        /* A trigger (a bus signal, a peer) does not run a probe that is not set up. */
        ASSERT_OK(probe_trigger(flaky));

        /* The other probe runs meanwhile; the failed one does not. */
        ASSERT_TRUE(RUN_UNTIL(f.event, f.t->starts >= 3, 2 * USEC_PER_SEC));
        ASSERT_EQ(fs->t.starts, 0);

        /* The retry comes after a backoff of about a second, then it runs. */
        ASSERT_TRUE(RUN_UNTIL(f.event, fs->t.starts >= 1, 5 * USEC_PER_SEC));
        ASSERT_EQ(fs->setups, 2);
        ASSERT_TRUE(flaky->set_up);
        ASSERT_EQ(flaky->status, PROBE_OK);
        ASSERT_TRUE(!flaky->setup_error);

        flaky = probe_free(flaky);
        fixture_teardown(&f);
}

/* Every pair, both ways round: ok < warning < unknown < critical. The enum's
 * own values put unknown (3) above critical (2), which is what this guards. */
TEST(status_worst_table) {
        static const struct {
                ProbeStatus a, b, worst;
        } table[] = {
                { PROBE_OK, PROBE_OK, PROBE_OK },
                { PROBE_OK, PROBE_WARNING, PROBE_WARNING },
                { PROBE_OK, PROBE_UNKNOWN, PROBE_UNKNOWN },
                { PROBE_OK, PROBE_CRITICAL, PROBE_CRITICAL },
                { PROBE_WARNING, PROBE_WARNING, PROBE_WARNING },
                { PROBE_WARNING, PROBE_UNKNOWN, PROBE_UNKNOWN },
                { PROBE_WARNING, PROBE_CRITICAL, PROBE_CRITICAL },
                { PROBE_UNKNOWN, PROBE_UNKNOWN, PROBE_UNKNOWN },
                { PROBE_UNKNOWN, PROBE_CRITICAL, PROBE_CRITICAL },
                { PROBE_CRITICAL, PROBE_CRITICAL, PROBE_CRITICAL },
                /* Outside the enum: unknown, never passed on. */
                { _PROBE_STATUS_INVALID, PROBE_OK, PROBE_UNKNOWN },
                { _PROBE_STATUS_MAX, PROBE_WARNING, PROBE_UNKNOWN },
                { _PROBE_STATUS_INVALID, PROBE_CRITICAL, PROBE_CRITICAL },
                { _PROBE_STATUS_INVALID, _PROBE_STATUS_MAX, PROBE_UNKNOWN },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                ASSERT_EQ(probe_status_worst(table[i].a, table[i].b), table[i].worst);
                ASSERT_EQ(probe_status_worst(table[i].b, table[i].a), table[i].worst);
        }
}

/* Findings in any order: the status is the worst, and its finding leads. */
TEST(reason_add_critical_beats_unknown) {
        ProbeStatus worst = PROBE_OK;
        Buf reason = BUF_INIT(256);

        probe_reason_add(&reason, &worst, PROBE_WARNING, "slow");
        probe_reason_add(&reason, &worst, PROBE_CRITICAL, "down");
        probe_reason_add(&reason, &worst, PROBE_UNKNOWN, "cannot tell");
        ASSERT_EQ(worst, PROBE_CRITICAL);
        ASSERT_TRUE(reason.data != NULL);
        ASSERT_STREQ(reason.data, "down; slow; cannot tell");
        buf_done(&reason);

        worst = PROBE_OK;
        reason = BUF_INIT(256);
        probe_reason_add(&reason, &worst, PROBE_WARNING, "slow");
        probe_reason_add(&reason, &worst, PROBE_UNKNOWN, "cannot tell");
        ASSERT_EQ(worst, PROBE_UNKNOWN);
        ASSERT_STREQ(reason.data, "cannot tell; slow");
        buf_done(&reason);
}

DEFINE_TEST_MAIN()
