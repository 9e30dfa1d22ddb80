/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The probe framework: the extension point every component check plugs into.
 *
 * A probe type is a const ProbeType table registered in probe_types[]
 * (probes/probe-types.c). The core owns scheduling (interval + jitter), the
 * per-run deadline, cancellation, rise/fall hysteresis and metrics; a probe
 * owns only its I/O and the parsing of what its peer says.
 *
 * Contract for a type:
 *  - start() begins one run and returns without blocking, after registering
 *    event sources on probe_get_event(). It may finish synchronously.
 *  - Every run ends with exactly one probe_finish(). Samples are added with
 *    probe_add_sample() before it.
 *  - stop() releases whatever a run holds (sockets, event sources, children).
 *    The core calls it right after probe_finish(), on the deadline, and on
 *    cancellation; it must be idempotent. Because it may run from inside the
 *    probe's own callback, that callback must not touch run state after
 *    calling probe_finish().
 *  - Probes never arm their own overall timeout and never retry internally.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"
#include "lib/time-util.h"

typedef struct Manager Manager;
typedef struct Probe Probe;
typedef struct ConfigItem ConfigItem;
typedef struct ConfigContext ConfigContext;

typedef enum ProbeStatus {
        PROBE_OK,
        PROBE_WARNING,
        PROBE_CRITICAL,
        PROBE_UNKNOWN,
        _PROBE_STATUS_MAX,
        _PROBE_STATUS_INVALID = -EINVAL,
} ProbeStatus;

const char *probe_status_to_string(ProbeStatus s) _pure_;
ProbeStatus probe_status_from_string(const char *s) _pure_;

typedef enum MetricType {
        METRIC_GAUGE,
        METRIC_COUNTER,
        _METRIC_TYPE_MAX,
        _METRIC_TYPE_INVALID = -EINVAL,
} MetricType;

const char *metric_type_to_string(MetricType t) _pure_;

/* A metric family a probe type may report. Declared static const by the
 * type, so that HELP and TYPE are written once per family. Names carry the
 * rupost_ prefix, base units and _total for counters. */
typedef struct MetricFamily {
        const char *name;
        MetricType type;
        const char *help;
} MetricFamily;

typedef struct Sample {
        const MetricFamily *family;
        char *labels; /* rendered and escaped: unit="a",state="b"; NULL for none */
        double value;
} Sample;

typedef struct ProbeResult {
        ProbeStatus status;
        char *reason;            /* one line an operator can act on */
        usec_t started_realtime; /* CLOCK_REALTIME when the run began */
        usec_t duration;
        Sample *samples;
        size_t n_samples;
} ProbeResult;

void probe_result_done(ProbeResult *r);

typedef struct ProbeType {
        const char *name;
        size_t object_size;               /* private object, zeroed, at probe_get_userdata() */
        const ConfigItem *config_items;   /* the type's own keys, offsets into the private object */
        usec_t default_interval;
        usec_t default_timeout;
        unsigned default_rise;
        unsigned default_fall;
        /* The probe sees this node's own state only (a unit that is not
         * running), never a dependency other nodes share: its failure is
         * never a shared one, whatever the other nodes report. */
        bool local_only;

        /* After the keys were parsed: check what the table cannot (required
         * combinations), reporting with config_error(). */
        int (*verify)(Probe *p, ConfigContext *c);
        /* Once the probe joined a running manager: subscribe to events.
         * A failure is the probe's, not the agent's: the probe reports
         * unknown with the reason (probe_setup_error() words it) and setup()
         * is called again later, with backoff, so it must pick up whatever a
         * failed call left half done. */
        int (*setup)(Probe *p);
        int (*start)(Probe *p);
        void (*stop)(Probe *p);
        /* Free what the private object owns (not the object itself). */
        void (*done)(Probe *p);
} ProbeType;

extern const ProbeType *const probe_types[];
const ProbeType *probe_type_find(const char *name);

struct Probe {
        Manager *manager;
        const ProbeType *type;
        char *name;
        char *component; /* optional: the mail component it watches, for logs */
        usec_t interval;
        usec_t timeout;
        unsigned rise;
        unsigned fall;
        void *userdata;

        /* scheduling */
        sd_event_source *timer; /* the next run, or the next setup attempt while !set_up */
        bool set_up;
        usec_t setup_retry;  /* the delay before the next setup attempt */
        char *setup_error;   /* why the last setup() failed, from probe_setup_error() */
        sd_event_source *deadline;
        bool running;
        bool rerun;       /* a trigger arrived during a run */
        usec_t run_started_monotonic;
        const char *phase; /* static text: what the run is waiting for, for timeout reasons */
        ProbeResult pending;

        /* results */
        ProbeResult last;        /* the latest raw result */
        bool have_result;
        ProbeStatus status;      /* after rise/fall hysteresis */
        unsigned consecutive_ok;
        unsigned consecutive_bad;
        usec_t changed_realtime; /* when status last changed */
        uint64_t n_runs;
        uint64_t n_timeouts;
};

/* Allocation and configuration (no event loop needed). */
int probe_new(const ProbeType *type, const char *name, Probe **ret);
Probe *probe_free(Probe *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Probe *, probe_free);

static inline void *probe_get_userdata(Probe *p) {
        return p->userdata;
}

/* Scheduling, used by the manager. A setup that fails is no error here:
 * the probe reports unknown and retries (see ProbeType.setup); an error is
 * a failure to schedule at all. */
int probe_attach(Probe *p, Manager *m);
void probe_detach(Probe *p);
/* Copy the results and hysteresis state of a probe being replaced by a reload. */
void probe_adopt_state(Probe *p, Probe *old);
/* Run as soon as possible; if a run is in flight, once more after it. */
int probe_trigger(Probe *p);

/* For probe types. */
sd_event *probe_get_event(Probe *p);
/* The system bus shared by all probes, connected on first use. */
int probe_get_bus(Probe *p, sd_bus **ret);
void probe_set_phase(Probe *p, const char *phase);
/* For setup(): why it failed, in words an operator can act on (what is
 * missing, and where). Returns r, so "return probe_setup_error(p, r, ...)". */
int probe_setup_error(Probe *p, int r, const char *fmt, ...) _printf_(3, 4);
/* Labels as NULL-terminated key, value pairs; values are escaped here. */
int probe_add_sample(Probe *p, const MetricFamily *family, double value, ...) _sentinel_;
/* Ends the run. Returns 0 so callbacks can "return probe_finish(...)". */
int probe_finish(Probe *p, ProbeStatus status, const char *reason_fmt, ...) _printf_(3, 4);
/* Ends the run as UNKNOWN ("the check itself could not run") for error r. */
int probe_finish_errno(Probe *p, int r, const char *what);

/* The one way statuses are combined (findings of one run, probes of a node):
 * the worse of a and b in the order ok < warning < unknown < critical. The
 * enum's values are not that order (UNKNOWN is 3, CRITICAL 2), so never
 * compare them directly. Critical wins because it is what healing acts on: a
 * failure found must not be hidden by another check that could not run. A
 * check that could not run outranks a warning, since it may hide anything up
 * to a failure. A value outside the enum counts as unknown. */
ProbeStatus probe_status_worst(ProbeStatus a, ProbeStatus b) _pure_;

typedef struct Buf Buf;
/* Adds one finding to a reason being built: "; "-separated, the most severe
 * finding first, and raises *worst to s when s ranks higher. */
void probe_reason_add(Buf *reason, ProbeStatus *worst, ProbeStatus s, const char *fmt, ...) _printf_(4, 5);

/* The hysteresis rule, pure for tests: the next reported status given the
 * current one and a new raw result. */
ProbeStatus probe_hysteresis_step(Probe *p, ProbeStatus raw);
