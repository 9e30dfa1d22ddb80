/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The probe core: scheduling with jitter, one run at a time, the per-run
 * deadline, exactly one report per run, and rise/fall hysteresis. Policy
 * about what a status means for the node lives in the manager, not here. */

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "manager.h"
#include "probe.h"

/* Setup attempts of a probe that cannot be set up: soon at first, since what
 * was missing (the bus at boot) may come any moment, then less often. */
#define PROBE_SETUP_RETRY_MIN (1 * USEC_PER_SEC)
#define PROBE_SETUP_RETRY_MAX (1 * USEC_PER_MINUTE)

static const char *const probe_status_table[_PROBE_STATUS_MAX] = {
        [PROBE_OK] = "ok",
        [PROBE_WARNING] = "warning",
        [PROBE_CRITICAL] = "critical",
        [PROBE_UNKNOWN] = "unknown",
};

const char *probe_status_to_string(ProbeStatus s) {
        if (s < 0 || s >= _PROBE_STATUS_MAX)
                return NULL;
        return probe_status_table[s];
}

ProbeStatus probe_status_from_string(const char *s) {
        for (ProbeStatus i = 0; s && i < _PROBE_STATUS_MAX; i++)
                if (streq(s, probe_status_table[i]))
                        return i;
        return _PROBE_STATUS_INVALID;
}

static const char *const metric_type_table[_METRIC_TYPE_MAX] = {
        [METRIC_GAUGE] = "gauge",
        [METRIC_COUNTER] = "counter",
};

const char *metric_type_to_string(MetricType t) {
        if (t < 0 || t >= _METRIC_TYPE_MAX)
                return NULL;
        return metric_type_table[t];
}

ProbeStatus probe_status_worst(ProbeStatus a, ProbeStatus b) {
        static const int severity[_PROBE_STATUS_MAX] = {
                [PROBE_OK] = 0,
                [PROBE_WARNING] = 1,
                [PROBE_UNKNOWN] = 2,
                [PROBE_CRITICAL] = 3,
        };

        if (a < 0 || a >= _PROBE_STATUS_MAX)
                a = PROBE_UNKNOWN;
        if (b < 0 || b >= _PROBE_STATUS_MAX)
                b = PROBE_UNKNOWN;
        return severity[b] > severity[a] ? b : a;
}

void probe_reason_add(Buf *reason, ProbeStatus *worst, ProbeStatus s, const char *fmt, ...) {
        /* s goes first when it makes the run worse than what is already said. */
        bool lead = probe_status_worst(*worst, s) != *worst && reason->len > 0;
        Buf tail = {};
        va_list ap;

        if (lead) {
                tail = *reason;
                *reason = BUF_INIT(tail.limit);
        } else if (reason->len > 0)
                (void) buf_puts(reason, "; ");
        va_start(ap, fmt);
        (void) buf_vprintf(reason, fmt, ap);
        va_end(ap);
        if (lead) {
                (void) buf_printf(reason, "; %.*s", (int) tail.len, tail.data);
                buf_done(&tail);
        }
        *worst = probe_status_worst(*worst, s);
}

void probe_result_done(ProbeResult *r) {
        for (size_t i = 0; i < r->n_samples; i++)
                free(r->samples[i].labels);
        free(r->samples);
        free(r->reason);
        *r = (ProbeResult) {};
}

const ProbeType *probe_type_find(const char *name) {
        for (const ProbeType *const *t = probe_types; *t; t++)
                if (streq((*t)->name, name))
                        return *t;
        return NULL;
}

int probe_new(const ProbeType *type, const char *name, Probe **ret) {
        _cleanup_(probe_freep) Probe *p = NULL;

        assert_return(type, -EINVAL);
        assert_return(name, -EINVAL);

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->type = type;
        p->interval = type->default_interval;
        p->timeout = type->default_timeout;
        p->rise = type->default_rise;
        p->fall = type->default_fall;
        p->status = PROBE_UNKNOWN;
        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;
        if (type->object_size > 0) {
                p->userdata = calloc(1, type->object_size);
                if (!p->userdata)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

Probe *probe_free(Probe *p) {
        if (!p)
                return NULL;
        probe_detach(p);
        if (p->type->done && p->userdata)
                p->type->done(p);
        free(p->userdata);
        probe_result_done(&p->pending);
        probe_result_done(&p->last);
        free(p->setup_error);
        free(p->component);
        free(p->name);
        free(p);
        return NULL;
}

sd_event *probe_get_event(Probe *p) {
        return p->manager ? p->manager->event : NULL;
}

int probe_get_bus(Probe *p, sd_bus **ret) {
        assert_return(p->manager, -ESTALE);
        return manager_get_bus(p->manager, ret);
}

void probe_set_phase(Probe *p, const char *phase) {
        p->phase = phase;
}

/* Prometheus label values escape backslash, double quote and newline. */
static int append_label_value(Buf *b, const char *v) {
        for (; *v; v++) {
                int r;
                switch (*v) {
                case '\\':
                        r = buf_puts(b, "\\\\");
                        break;
                case '"':
                        r = buf_puts(b, "\\\"");
                        break;
                case '\n':
                        r = buf_puts(b, "\\n");
                        break;
                default:
                        r = buf_append(b, v, 1);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int probe_add_sample(Probe *p, const MetricFamily *family, double value, ...) {
        Buf labels = BUF_INIT(4096);
        Sample *s;
        va_list ap;
        int r = 0;

        assert_return(p->running, -ESTALE);

        va_start(ap, value);
        for (const char *key; (key = va_arg(ap, const char *));) {
                const char *v = va_arg(ap, const char *);
                (void) buf_printf(&labels, "%s%s=\"", labels.len > 0 ? "," : "", key);
                (void) append_label_value(&labels, v ?: "");
                (void) buf_puts(&labels, "\"");
        }
        va_end(ap);
        r = buf_status(&labels);
        if (r < 0) {
                buf_done(&labels);
                return r;
        }

        s = reallocarray(p->pending.samples, p->pending.n_samples + 1, sizeof *s);
        if (!s) {
                buf_done(&labels);
                return -ENOMEM;
        }
        p->pending.samples = s;
        p->pending.samples[p->pending.n_samples++] = (Sample) {
                .family = family,
                .labels = labels.len > 0 ? buf_steal(&labels) : NULL,
                .value = value,
        };
        buf_done(&labels);
        return 0;
}

ProbeStatus probe_hysteresis_step(Probe *p, ProbeStatus raw) {
        if (raw == PROBE_OK) {
                p->consecutive_ok++;
                p->consecutive_bad = 0;
        } else {
                p->consecutive_bad++;
                p->consecutive_ok = 0;
        }

        /* The first result is taken as it is: there is nothing to smooth yet. */
        if (!p->have_result)
                return raw;

        if (p->status == PROBE_OK)
                return p->consecutive_bad >= p->fall ? raw : PROBE_OK;
        if (raw == PROBE_OK)
                return p->consecutive_ok >= p->rise ? PROBE_OK : p->status;
        /* Already failing: follow the severity of the latest failure at once. */
        return raw;
}

static int probe_schedule(Probe *p, usec_t delay);
static int probe_try_setup(Probe *p);

static void probe_end_run(Probe *p) {
        p->deadline = sd_event_source_disable_unref(p->deadline);
        if (p->type->stop)
                p->type->stop(p);
        p->running = false;
        p->phase = NULL;
}

static void probe_complete(Probe *p, ProbeStatus status, char *reason) {
        ProbeStatus old = p->status;

        p->pending.status = status;
        p->pending.reason = reason;
        p->pending.duration = now(CLOCK_MONOTONIC) - p->run_started_monotonic;

        p->status = probe_hysteresis_step(p, status);
        probe_result_done(&p->last);
        p->last = p->pending;
        p->pending = (ProbeResult) {};
        p->have_result = true;
        p->n_runs++;

        probe_end_run(p);

        if (p->status != old || p->changed_realtime == 0) {
                p->changed_realtime = p->last.started_realtime;
                if (p->manager)
                        manager_probe_status_changed(p->manager, p, old);
        }

        if (!p->manager)
                return;
        if (p->rerun) {
                p->rerun = false;
                (void) probe_schedule(p, 0);
        } else
                (void) probe_schedule(p, p->interval);
}

int probe_finish(Probe *p, ProbeStatus status, const char *reason_fmt, ...) {
        char *reason = NULL;
        va_list ap;

        /* A second report for one run is a bug in the probe type. */
        assert(p->running);
        if (!p->running)
                return 0;

        va_start(ap, reason_fmt);
        if (vasprintf(&reason, reason_fmt, ap) < 0)
                reason = NULL;
        va_end(ap);

        probe_complete(p, status, reason);
        return 0;
}

int probe_finish_errno(Probe *p, int r, const char *what) {
        return probe_finish(p, PROBE_UNKNOWN, "%s: %s", what, strerror(r < 0 ? -r : r));
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Probe *p = userdata;
        char t[DURATION_MAX];

        p->n_timeouts++;
        /* A peer that does not answer in time is down as far as clients care. */
        return probe_finish(p, PROBE_CRITICAL, "no answer within %s%s%s",
                            format_duration(t, sizeof t, p->timeout),
                            p->phase ? " while " : "", p->phase ?: "");
}

static void probe_run(Probe *p) {
        int r;

        assert(!p->running);

        p->running = true;
        p->phase = NULL;
        p->run_started_monotonic = now(CLOCK_MONOTONIC);
        p->pending = (ProbeResult) { .started_realtime = now(CLOCK_REALTIME) };

        /* From the run's own start, not from the loop's cached "now" (which
         * a relative timer would use, and which may be older): a run is
         * never reported as cut off before its timeout. */
        r = sd_event_add_time(p->manager->event, &p->deadline, CLOCK_MONOTONIC,
                              p->run_started_monotonic + p->timeout, 1 * USEC_PER_MSEC, on_deadline, p);
        if (r < 0) {
                (void) probe_finish_errno(p, r, "cannot arm the deadline");
                return;
        }
        (void) sd_event_source_set_description(p->deadline, "probe-deadline");

        r = p->type->start(p);
        if (r < 0 && p->running)
                (void) probe_finish_errno(p, r, "cannot start the check");
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Probe *p = userdata;

        if (!p->set_up)
                return probe_try_setup(p);

        if (p->running) {
                /* Never two runs of one probe at once. */
                p->rerun = true;
                return 0;
        }
        probe_run(p);
        return 0;
}

/* A random share of up to a tenth of the delay, so that probes of many nodes
 * do not fire in lockstep (chrony's SCH_AddTimeoutInClass does the same). */
static usec_t jitter(usec_t delay) {
        uint64_t rnd = 0;

        if (delay < 10)
                return 0;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                rnd = (uint64_t) now(CLOCK_MONOTONIC) * 2654435761ULL;
        return rnd % (delay / 10);
}

static int probe_schedule(Probe *p, usec_t delay) {
        usec_t when = delay > 0 ? delay + jitter(delay) : 0;
        int r;

        if (p->timer) {
                r = sd_event_source_set_time_relative(p->timer, when);
                if (r < 0)
                        return r;
                return sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
        }
        /* An accuracy of 0 would mean sd-event's default slack of 250ms. */
        r = sd_event_add_time_relative(p->manager->event, &p->timer, CLOCK_BOOTTIME, when, 1 * USEC_PER_MSEC, on_timer,
                                       p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(p->timer, "probe-timer");
        return 0;
}

int probe_setup_error(Probe *p, int r, const char *fmt, ...) {
        va_list ap;

        free(p->setup_error);
        va_start(ap, fmt);
        if (vasprintf(&p->setup_error, fmt, ap) < 0)
                p->setup_error = NULL;
        va_end(ap);
        return r;
}

/* A probe that cannot be set up reports unknown with the reason, as a run
 * that could not check would, but without hysteresis: nothing was observed.
 * Its last run stays at the first failed attempt, so that a probe that never
 * gets going turns stale (RupostProbeStale) instead of looking fresh. */
static void probe_report_setup_failure(Probe *p, int r) {
        ProbeStatus old = p->status;
        bool first = p->setup_retry == 0; /* else an earlier attempt failed too */
        char *reason = NULL;
        usec_t started;

        if (asprintf(&reason, "cannot set up the check: %s", p->setup_error ?: strerror(-r)) < 0)
                reason = NULL;
        started = first ? now(CLOCK_REALTIME) : p->last.started_realtime;
        probe_result_done(&p->last);
        p->last = (ProbeResult) { .status = PROBE_UNKNOWN, .reason = reason, .started_realtime = started };
        p->have_result = true;
        p->status = PROBE_UNKNOWN;
        p->consecutive_ok = p->consecutive_bad = 0;
        if (old != p->status || p->changed_realtime == 0) {
                p->changed_realtime = started;
                manager_probe_status_changed(p->manager, p, old);
        }
}

/* The first run comes soon but spread out, so a node with many probes
 * does not open all its connections in the same millisecond. */
static int probe_try_setup(Probe *p) {
        int r;

        if (p->type->setup) {
                char t[DURATION_MAX];

                free(p->setup_error);
                p->setup_error = NULL;
                r = p->type->setup(p);
                if (r < 0) {
                        /* Logged once, as the status change; retries at debug level. */
                        probe_report_setup_failure(p, r);
                        p->setup_retry = MIN(MAX(p->setup_retry * 2, PROBE_SETUP_RETRY_MIN), PROBE_SETUP_RETRY_MAX);
                        log_internal(LOG_DEBUG, r, &(LogFields) { .probe = p->name },
                                     "Probe '%s' cannot be set up, trying again in %s: %s", p->name,
                                     format_duration(t, sizeof t, p->setup_retry), p->setup_error ?: strerror(-r));
                        return probe_schedule(p, p->setup_retry);
                }
                if (p->setup_retry > 0)
                        log_internal(LOG_NOTICE, 0, &(LogFields) { .probe = p->name },
                                     "Probe '%s' is set up now.", p->name);
        }
        p->set_up = true;
        p->setup_retry = 0;
        return probe_schedule(p, MIN(p->interval, 1 * USEC_PER_SEC));
}

int probe_attach(Probe *p, Manager *m) {
        assert_return(!p->manager, -EBUSY);

        p->manager = m;
        return probe_try_setup(p);
}

void probe_detach(Probe *p) {
        if (p->running) {
                /* Cancellation: the run ends without a report. */
                probe_end_run(p);
                probe_result_done(&p->pending);
        }
        p->timer = sd_event_source_disable_unref(p->timer);
        p->rerun = false;
        p->manager = NULL;
}

void probe_adopt_state(Probe *p, Probe *old) {
        if (!old->have_result)
                return;
        probe_result_done(&p->last);
        p->last = old->last;
        old->last = (ProbeResult) {};
        old->have_result = false;
        p->have_result = true;
        p->status = old->status;
        p->consecutive_ok = old->consecutive_ok;
        p->consecutive_bad = old->consecutive_bad;
        p->changed_realtime = old->changed_realtime;
        p->n_runs = old->n_runs;
        p->n_timeouts = old->n_timeouts;
}

int probe_trigger(Probe *p) {
        assert_return(p->manager, -ESTALE);

        if (!p->set_up)
                return 0; /* its next setup attempt is scheduled */

        if (p->running) {
                p->rerun = true;
                return 0;
        }
        return probe_schedule(p, 0);
}
