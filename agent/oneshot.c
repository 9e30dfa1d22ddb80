/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rupost-health's one-off run of the probes (oneshot.h). The probe core does
 * the work as it does in the agent, deadline and child abandonment included;
 * this file only starts every probe at once, waits for their reports within
 * a hard bound, and turns the results into the agent's answer. */

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "lib/child.h"
#include "lib/curl-glue.h"
#include "manager.h"
#include "oneshot.h"

struct OneShot {
        sd_event *event;
        Manager manager; /* bare: the loop, the config, the bus and libcurl on first use */
        Config *config;
        bool *reported;  /* per probe: a result is in */
        usec_t started_monotonic;
        usec_t duration;
        unsigned children_left;

        Rupost__Control__Response response;
        Rupost__Control__ProbeState *states;
        Rupost__Control__ProbeState **state_ptrs;
        Rupost__Control__Sample *samples;
        Rupost__Control__Sample **sample_ptrs;
};

OneShot *oneshot_free(OneShot *o) {
        if (!o)
                return NULL;
        /* Detaches every probe: a run still in flight is cancelled. */
        o->config = config_free(o->config);
        o->manager.curl = curl_glue_free(o->manager.curl);
        o->manager.bus = sd_bus_flush_close_unref(o->manager.bus);
        free(o->manager.last_status);
        o->event = sd_event_unref(o->event);
        free(o->reported);
        free(o->states);
        free(o->state_ptrs);
        free(o->samples);
        free(o->sample_ptrs);
        free(o);
        return NULL;
}

/* A probe that could not start, or did not report within the bound, still
 * gets a line that says why: unknown, the check itself did not run. */
static void set_unknown(OneShot *o, size_t i, const char *fmt, ...) _printf_(3, 4);
static void set_unknown(OneShot *o, size_t i, const char *fmt, ...) {
        Probe *p = o->config->probes[i];
        char *reason = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&reason, fmt, ap) < 0)
                reason = NULL;
        va_end(ap);

        probe_result_done(&p->last);
        p->last = (ProbeResult) {
                .status = PROBE_UNKNOWN,
                .reason = reason,
                .started_realtime = o->manager.start_realtime,
                .duration = now(CLOCK_MONOTONIC) - o->started_monotonic,
        };
        p->status = PROBE_UNKNOWN;
        p->have_result = true;
        p->changed_realtime = o->manager.start_realtime;
        o->reported[i] = true;
}

/* Checked after every event: a probe that reported is detached at once, so
 * that its next run (after its interval, which may be shorter than another
 * probe's timeout) never comes and its one result stays. */
static bool all_reported(OneShot *o) {
        bool all = true;

        for (size_t i = 0; i < o->config->n_probes; i++) {
                Probe *p = o->config->probes[i];

                if (!o->reported[i] && p->n_runs > 0) {
                        probe_detach(p);
                        o->reported[i] = true;
                }
                all = all && o->reported[i];
        }
        return all;
}

static int run_loop_until(OneShot *o, usec_t end, bool (*done)(OneShot *o)) {
        for (usec_t n; !done(o) && (n = now(CLOCK_MONOTONIC)) < end;) {
                int r = sd_event_run(o->event, end - n);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool children_reaped(OneShot *o) {
        return child_abandoned_alive(NULL) == 0;
}

static void start_probes(OneShot *o) {
        for (size_t i = 0; i < o->config->n_probes; i++) {
                Probe *p = o->config->probes[i];
                int r;

                /* Attaching schedules the first run a little later, as the
                 * agent spreads its probes; the trigger makes it now. */
                r = probe_attach(p, &o->manager);
                if (r < 0) {
                        set_unknown(o, i, "cannot start the check: %s", strerror(-r));
                        continue;
                }
                if (!p->set_up) {
                        /* Its setup (a bus connection, a subscription) failed:
                         * its result says why. One run only, so no retry. */
                        _cleanup_free_ char *reason = strdup(p->last.reason ?: "cannot set up the check");

                        probe_detach(p);
                        set_unknown(o, i, "%s", reason ?: "cannot set up the check");
                        continue;
                }
                r = probe_trigger(p);
                if (r < 0)
                        set_unknown(o, i, "cannot start the check: %s", strerror(-r));
        }
}

static int build_response(OneShot *o) {
        size_t n = o->config->n_probes, n_samples = 0, k = 0;

        for (size_t i = 0; i < n; i++)
                n_samples += o->config->probes[i]->last.n_samples;
        o->states = calloc(MAX(n, 1U), sizeof *o->states);
        o->state_ptrs = calloc(MAX(n, 1U), sizeof *o->state_ptrs);
        o->samples = calloc(MAX(n_samples, 1U), sizeof *o->samples);
        o->sample_ptrs = calloc(MAX(n_samples, 1U), sizeof *o->sample_ptrs);
        if (!o->states || !o->state_ptrs || !o->samples || !o->sample_ptrs)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const Probe *p = o->config->probes[i];
                Rupost__Control__ProbeState *st = &o->states[i];

                rupost__control__probe_state__init(st);
                st->name = p->name;
                st->type = (char *) p->type->name;
                /* One run: no hysteresis, the run's own status. */
                st->status = st->last_status = (char *) probe_status_to_string(p->last.status);
                st->reason = p->last.reason ?: (char *) "";
                st->have_result = true;
                st->last_run_at = usec_to_seconds(p->last.started_realtime);
                st->changed_at = st->last_run_at;
                st->duration_seconds = usec_to_seconds(p->last.duration);
                st->runs = p->n_runs;
                st->timeouts = p->n_timeouts;
                st->scope = (char *) "";
                st->samples = o->sample_ptrs + k;
                for (size_t j = 0; j < p->last.n_samples; j++) {
                        const Sample *x = &p->last.samples[j];
                        Rupost__Control__Sample *out = &o->samples[k];

                        rupost__control__sample__init(out);
                        out->family = (char *) x->family->name;
                        out->labels = x->labels ?: (char *) "";
                        out->value = x->value;
                        o->sample_ptrs[k++] = out;
                }
                st->n_samples = p->last.n_samples;
                o->state_ptrs[i] = st;
        }

        rupost__control__response__init(&o->response);
        o->response.error = (char *) "";
        o->response.node = o->config->node ?: (char *) "";
        o->response.version = (char *) PROJECT_VERSION;
        o->response.start_time = usec_to_seconds(o->manager.start_realtime);
        o->response.n_probes = n;
        o->response.probes = o->state_ptrs;
        return 0;
}

int oneshot_run(Config *config, OneShot **ret) {
        _cleanup_(oneshot_freep) OneShot *o = NULL;
        _cleanup_(config_freep) Config *c = config;
        usec_t longest = 0, end;
        sigset_t mask;
        int r;

        assert_return(config, -EINVAL);
        assert_return(ret, -EINVAL);

        o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        o->config = TAKE_PTR(c);
        o->reported = calloc(MAX(o->config->n_probes, 1U), sizeof *o->reported);
        if (!o->reported)
                return -ENOMEM;

        /* Children of probes are collected by the loop's child sources. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;

        /* A child stuck in the kernel outlives us: it must not hold the pipe
         * our output goes to, or whoever reads it waits for it too. */
        child_set_null_stdio(true);

        r = sd_event_new(&o->event);
        if (r < 0)
                return r;
        o->manager = (Manager) {
                .event = o->event,
                .config = o->config,
                .observe_only = true,
                .start_realtime = now(CLOCK_REALTIME),
        };
        o->started_monotonic = now(CLOCK_MONOTONIC);

        for (size_t i = 0; i < o->config->n_probes; i++)
                longest = MAX(longest, o->config->probes[i]->timeout);
        end = o->started_monotonic + longest + ONESHOT_MARGIN;

        start_probes(o);
        r = run_loop_until(o, end, all_reported);
        if (r < 0)
                return r;

        /* Only a probe whose deadline could not fire gets here, but the bound
         * is the bound. Detaching cancels its run and abandons its child. */
        for (size_t i = 0; i < o->config->n_probes; i++) {
                char t[DURATION_MAX];

                probe_detach(o->config->probes[i]);
                if (!o->reported[i])
                        set_unknown(o, i, "no report within the one-off run's limit of %s",
                                    format_duration(t, sizeof t, longest + ONESHOT_MARGIN));
        }
        o->duration = now(CLOCK_MONOTONIC) - o->started_monotonic;

        /* Children killed at their deadline die at once and are reaped here,
         * so that none outlives us as a zombie; one stuck in the kernel stays
         * until it is let go, then its new parent reaps it. */
        r = run_loop_until(o, end, children_reaped);
        if (r < 0)
                return r;
        o->children_left = child_abandoned_alive(NULL);

        r = build_response(o);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

const Rupost__Control__Response *oneshot_response(const OneShot *o) {
        return &o->response;
}

usec_t oneshot_duration(const OneShot *o) {
        return o->duration;
}

unsigned oneshot_children_left(const OneShot *o) {
        return o->children_left;
}
