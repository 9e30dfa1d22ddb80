/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The text exposition format 0.0.4, and OpenMetrics 1.0.0 text for the
 * scrapers that ask for it, rendered from the cached probe results. The two
 * differ only in the metadata lines and the closing "# EOF": the samples are
 * the same bytes.
 *
 * Rendering runs on every scrape, on the event loop, so it avoids printf:
 * lines are assembled with memcpy and numbers are formatted by hand. Every
 * family is written as one block (HELP, TYPE, samples), also when several
 * probes report samples of the same family. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "exporter.h"
#include "lib/log.h"
#include "cluster.h"
#include "node.h"
#include "process-metrics.h"

/* The families the core renders for every probe. */
typedef enum ProbeFamilyId {
        PF_SUCCESS,
        PF_STATUS,
        PF_DURATION,
        PF_LAST_RUN,
        PF_STATUS_CHANGE,
        PF_RUNS,
        PF_TIMEOUTS,
        PF_INTERVAL,
        PF_TIMEOUT,
        _PF_MAX,
} ProbeFamilyId;

static const MetricFamily probe_families[_PF_MAX] = {
        [PF_SUCCESS] = { "rupost_probe_success", METRIC_GAUGE,
                         "Whether the reported status of the probe (after rise/fall) is ok." },
        [PF_STATUS] = { "rupost_probe_status", METRIC_GAUGE,
                        "Reported status of the probe (after rise/fall), one series per status; unknown until the first result." },
        [PF_DURATION] = { "rupost_probe_duration_seconds", METRIC_GAUGE,
                          "How long the last run of the probe took." },
        [PF_LAST_RUN] = { "rupost_probe_last_run_timestamp_seconds", METRIC_GAUGE,
                          "When the last run of the probe started; absent until the first result." },
        [PF_STATUS_CHANGE] = { "rupost_probe_status_change_timestamp_seconds", METRIC_GAUGE,
                               "When the reported status of the probe last changed; absent until it first did." },
        [PF_RUNS] = { "rupost_probe_runs_total", METRIC_COUNTER,
                      "Runs of the probe that finished, including timeouts." },
        [PF_TIMEOUTS] = { "rupost_probe_timeouts_total", METRIC_COUNTER,
                          "Runs of the probe that hit their deadline." },
        [PF_INTERVAL] = { "rupost_probe_interval_seconds", METRIC_GAUGE,
                          "Configured interval between runs of the probe." },
        [PF_TIMEOUT] = { "rupost_probe_timeout_seconds", METRIC_GAUGE,
                         "Configured deadline of one run of the probe." },
};

/* The node's healing state, when the config has a healing section. */
static const MetricFamily
        node_state_family = { "rupost_node_state", METRIC_GAUGE,
                              "Healing state of this node, one series per state (starting, in_service, withdrawn, "
                              "recovering, failed, maintenance); the current state is 1, the others 0." },
        node_state_change_family = { "rupost_node_state_change_timestamp_seconds", METRIC_GAUGE,
                                     "When this node entered its current healing state, or when the agent started." },
        node_attempts_family = { "rupost_node_recovery_attempts", METRIC_GAUGE,
                                 "Restarts of the mail group since this node was last stable in service; back to 0 "
                                 "once it stays in service for the stable period." },
        node_maintenance_family = { "rupost_node_maintenance", METRIC_GAUGE,
                                    "Whether an operator put this node in maintenance: drained from HAProxy, "
                                    "healing suspended." };

/* Names the core writes itself; a probe family may not reuse them. */
static const char *const reserved_names[] = {
        "rupost_build_info",
        "rupost_node_info",
        "rupost_node_state",
        "rupost_node_state_change_timestamp_seconds",
        "rupost_node_recovery_attempts",
        "rupost_node_maintenance",
        "rupost_cluster_nodes",
        "rupost_cluster_lease_renew_timestamp_seconds",
        "rupost_cluster_db_up",
        "rupost_cluster_self_fenced",
        "rupost_cluster_shared_outage",
        "rupost_cluster_peers_unreachable",
        "rupost_cluster_withdrawal_denied",
        "rupost_probe_failure_peers",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
};

#define STRLEN(s) (sizeof(s) - 1)
#define PUT_LITERAL(b, s) buf_append((b), (s), STRLEN(s))

static int put_str(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

/* A label value: backslash, double quote and newline are escaped. */
static int put_label_value(Buf *b, const char *s) {
        for (;;) {
                size_t n = strcspn(s, "\\\"\n");

                (void) buf_append(b, s, n);
                s += n;
                if (*s == 0)
                        return buf_status(b);
                (void) buf_append(b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
                s++;
        }
}

/* HELP text: backslash and newline are escaped, quotes are not. */
static int put_help_text(Buf *b, const char *s) {
        for (;;) {
                size_t n = strcspn(s, "\\\n");

                (void) buf_append(b, s, n);
                s += n;
                if (*s == 0)
                        return buf_status(b);
                (void) buf_append(b, *s == '\n' ? "\\n" : "\\\\", 2);
                s++;
        }
}

static char *format_u64(char *end, uint64_t v) {
        /* Writes backwards from end; returns the first character. */
        do {
                *--end = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        return end;
}

static int put_u64(Buf *b, uint64_t v) {
        char buf[24], *end = buf + sizeof buf;
        char *p = format_u64(end, v);

        return buf_append(b, p, (size_t) (end - p));
}

/* Microseconds as seconds, exactly: 1500000 -> "1.5", 2000000 -> "2". */
static int put_usec_as_seconds(Buf *b, usec_t u) {
        char buf[32], *end = buf + sizeof buf, *p = end;
        uint64_t frac = u % USEC_PER_SEC;

        if (frac > 0) {
                unsigned digits = 6;

                while (frac % 10 == 0) {
                        frac /= 10;
                        digits--;
                }
                for (; digits > 0; digits--) {
                        *--p = (char) ('0' + frac % 10);
                        frac /= 10;
                }
                *--p = '.';
        }
        p = format_u64(p, u / USEC_PER_SEC);
        return buf_append(b, p, (size_t) (end - p));
}

/* Integers print as integers, anything else in the shortest form that reads
 * back to the same double; NaN and infinities as Prometheus spells them. */
int metrics_format_value(char *buf, size_t size, double v) {
        if (isnan(v))
                return snprintf(buf, size, "NaN");
        if (isinf(v))
                return snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        if (v == 0) /* also -0 */
                return snprintf(buf, size, "0");
        if (fabs(v) < 9007199254740992.0 && v == (double) (int64_t) v)
                return snprintf(buf, size, "%" PRId64, (int64_t) v);
        for (int precision = 15; precision < 17; precision++) {
                int n = snprintf(buf, size, "%.*g", precision, v);
                if (n > 0 && (size_t) n < size && strtod(buf, NULL) == v)
                        return n;
        }
        return snprintf(buf, size, "%.17g", v);
}

static int put_double(Buf *b, double v) {
        char buf[40];

        if (v >= 0 && v < 18446744073709551616.0 && v == (double) (uint64_t) v)
                return put_u64(b, (uint64_t) v);
        int n = metrics_format_value(buf, sizeof buf, v);
        return buf_append(b, buf, (size_t) n);
}

static bool has_suffix(const char *s, size_t n, const char *suffix, size_t suffix_len) {
        return n > suffix_len && memcmp(s + n - suffix_len, suffix, suffix_len) == 0;
}

#define HAS_SUFFIX(s, n, literal) has_suffix((s), (n), (literal), sizeof(literal) - 1)

static int put_header_text(Buf *b, const MetricFamily *f) {
        (void) PUT_LITERAL(b, "# HELP ");
        (void) put_str(b, f->name);
        (void) PUT_LITERAL(b, " ");
        (void) put_help_text(b, f->help);
        (void) PUT_LITERAL(b, "\n# TYPE ");
        (void) put_str(b, f->name);
        if (f->type == METRIC_COUNTER)
                return PUT_LITERAL(b, " counter\n");
        return PUT_LITERAL(b, " gauge\n");
}

/* OpenMetrics names a counter family without the _total its samples carry.
 * A counter whose name lacks _total would need its samples renamed, which
 * breaks queries (the same series under two names depending on the format):
 * it is declared unknown instead, samples as they are. The unit is the base
 * unit the name ends with, as the format requires of a UNIT line. */
static int put_header_openmetrics(Buf *b, const MetricFamily *f) {
        size_t n = strlen(f->name);
        const char *type = "gauge", *unit = NULL;

        if (f->type == METRIC_COUNTER) {
                if (HAS_SUFFIX(f->name, n, "_total")) {
                        n -= STRLEN("_total");
                        type = "counter";
                } else
                        type = "unknown";
        }
        if (HAS_SUFFIX(f->name, n, "_seconds"))
                unit = "seconds";
        else if (HAS_SUFFIX(f->name, n, "_bytes"))
                unit = "bytes";

        if (f->help && f->help[0]) {
                (void) PUT_LITERAL(b, "# HELP ");
                (void) buf_append(b, f->name, n);
                (void) PUT_LITERAL(b, " ");
                /* Escaped as a label value is: quotes too, unlike in text 0.0.4. */
                (void) put_label_value(b, f->help);
                (void) PUT_LITERAL(b, "\n");
        }
        (void) PUT_LITERAL(b, "# TYPE ");
        (void) buf_append(b, f->name, n);
        (void) PUT_LITERAL(b, " ");
        (void) put_str(b, type);
        (void) PUT_LITERAL(b, "\n");
        if (unit) {
                (void) PUT_LITERAL(b, "# UNIT ");
                (void) buf_append(b, f->name, n);
                (void) PUT_LITERAL(b, " ");
                (void) put_str(b, unit);
                (void) PUT_LITERAL(b, "\n");
        }
        return buf_status(b);
}

static int put_header(Buf *b, MetricsFormat fmt, const MetricFamily *f) {
        return fmt == METRICS_FORMAT_OPENMETRICS ? put_header_openmetrics(b, f) : put_header_text(b, f);
}

/* "name{probe="x",type="y"" without the closing brace, so callers can add labels. */
static int put_probe_series(Buf *b, const char *name, const Probe *p) {
        (void) put_str(b, name);
        (void) PUT_LITERAL(b, "{probe=\"");
        (void) put_label_value(b, p->name);
        (void) PUT_LITERAL(b, "\",type=\"");
        (void) put_label_value(b, p->type->name);
        return PUT_LITERAL(b, "\"");
}

static ProbeStatus probe_reported_status(const Probe *p) {
        if (!p->have_result || p->status < 0 || p->status >= _PROBE_STATUS_MAX)
                return PROBE_UNKNOWN;
        return p->status;
}

static int render_probe_family(Buf *b, MetricsFormat fmt, ProbeFamilyId id, Probe *const *probes, size_t n_probes) {
        const MetricFamily *f = &probe_families[id];

        if (n_probes == 0)
                return 0;
        (void) put_header(b, fmt, f);

        for (size_t i = 0; i < n_probes; i++) {
                const Probe *p = probes[i];

                switch (id) {
                case PF_SUCCESS:
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_u64(b, probe_reported_status(p) == PROBE_OK);
                        break;
                case PF_STATUS:
                        for (ProbeStatus s = 0; s < _PROBE_STATUS_MAX; s++) {
                                (void) put_probe_series(b, f->name, p);
                                (void) PUT_LITERAL(b, ",status=\"");
                                (void) put_str(b, probe_status_to_string(s));
                                (void) PUT_LITERAL(b, "\"} ");
                                (void) put_u64(b, probe_reported_status(p) == s);
                                if (s + 1 < _PROBE_STATUS_MAX)
                                        (void) PUT_LITERAL(b, "\n");
                        }
                        break;
                case PF_DURATION:
                        if (!p->have_result)
                                continue;
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_usec_as_seconds(b, p->last.duration);
                        break;
                case PF_LAST_RUN:
                        if (!p->have_result)
                                continue;
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_usec_as_seconds(b, p->last.started_realtime);
                        break;
                case PF_STATUS_CHANGE:
                        if (p->changed_realtime == 0)
                                continue;
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_usec_as_seconds(b, p->changed_realtime);
                        break;
                case PF_RUNS:
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_u64(b, p->n_runs);
                        break;
                case PF_TIMEOUTS:
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_u64(b, p->n_timeouts);
                        break;
                case PF_INTERVAL:
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_usec_as_seconds(b, p->interval);
                        break;
                case PF_TIMEOUT:
                        (void) put_probe_series(b, f->name, p);
                        (void) PUT_LITERAL(b, "} ");
                        (void) put_usec_as_seconds(b, p->timeout);
                        break;
                default:
                        abort();
                }
                (void) PUT_LITERAL(b, "\n");
        }
        return buf_status(b);
}

typedef struct SampleRef {
        const Probe *probe;
        const Sample *sample;
        size_t index; /* order of appearance, so that equal names keep probe order */
} SampleRef;

static int sample_ref_compare(const void *a, const void *b) {
        const SampleRef *x = a, *y = b;
        int c;

        if (x->sample->family != y->sample->family) {
                c = strcmp(x->sample->family->name, y->sample->family->name);
                if (c != 0)
                        return c;
        }
        return x->index < y->index ? -1 : x->index > y->index;
}

static bool family_name_reserved(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(reserved_names); i++)
                if (streq(reserved_names[i], name))
                        return true;
        for (size_t i = 0; i < _PF_MAX; i++)
                if (streq(probe_families[i].name, name))
                        return true;
        return false;
}

/* The samples the probes reported themselves, grouped by family name. */
static int render_probe_samples(Buf *b, MetricsFormat fmt, Probe *const *probes, size_t n_probes) {
        _cleanup_free_ SampleRef *refs = NULL;
        size_t n = 0, k = 0;

        for (size_t i = 0; i < n_probes; i++)
                if (probes[i]->have_result)
                        n += probes[i]->last.n_samples;
        if (n == 0)
                return 0;

        refs = malloc(n * sizeof *refs);
        if (!refs)
                return -ENOMEM;
        for (size_t i = 0; i < n_probes; i++) {
                if (!probes[i]->have_result)
                        continue;
                for (size_t j = 0; j < probes[i]->last.n_samples; j++) {
                        const Sample *s = &probes[i]->last.samples[j];

                        if (!s->family || !s->family->name)
                                continue;
                        refs[k] = (SampleRef) { .probe = probes[i], .sample = s, .index = k };
                        k++;
                }
        }
        n = k;
        qsort(refs, n, sizeof *refs, sample_ref_compare);

        for (size_t i = 0; i < n; i++) {
                const MetricFamily *f = refs[i].sample->family;
                const Sample *s = refs[i].sample;

                if (i == 0 || (f != refs[i - 1].sample->family && !streq(f->name, refs[i - 1].sample->family->name))) {
                        if (family_name_reserved(f->name)) {
                                log_debug("Metric family '%s' of probe '%s' clashes with a family of the core.",
                                          f->name, refs[i].probe->name);
                                return -ENOTUNIQ;
                        }
                        (void) put_header(b, fmt, f);
                } else if (f->type != refs[i - 1].sample->family->type) {
                        log_debug("Metric family '%s' is reported both as %s and as %s.", f->name,
                                  metric_type_to_string(refs[i - 1].sample->family->type),
                                  metric_type_to_string(f->type));
                        return -ENOTUNIQ;
                }

                (void) put_probe_series(b, f->name, refs[i].probe);
                if (s->labels && s->labels[0]) {
                        (void) PUT_LITERAL(b, ",");
                        (void) put_str(b, s->labels);
                }
                (void) PUT_LITERAL(b, "} ");
                (void) put_double(b, s->value);
                (void) PUT_LITERAL(b, "\n");
        }
        return buf_status(b);
}

static int render_info(Buf *b, MetricsFormat fmt, const Manager *m) {
        static const MetricFamily build_info = {
                "rupost_build_info", METRIC_GAUGE,
                "Version and revision rupost-agent was built from; always 1."
        };
        static const MetricFamily node_info = {
                "rupost_node_info", METRIC_GAUGE, "Name of the node this agent watches; always 1."
        };

        (void) put_header(b, fmt, &build_info);
        (void) PUT_LITERAL(b, "rupost_build_info{version=\"");
        (void) put_label_value(b, PROJECT_VERSION);
        (void) PUT_LITERAL(b, "\",revision=\"");
        (void) put_label_value(b, PROJECT_REVISION);
        (void) PUT_LITERAL(b, "\"} 1\n");

        (void) put_header(b, fmt, &node_info);
        (void) PUT_LITERAL(b, "rupost_node_info{node=\"");
        (void) put_label_value(b, manager_node_name(m));
        return PUT_LITERAL(b, "\"} 1\n");
}

/* Without a healing section the agent only watches: no node families at all,
 * rather than a state that would claim it heals. */
static int render_node(Buf *b, MetricsFormat fmt, const Manager *m) {
        const NodeState *st;

        if (!m->node)
                return 0;
        st = node_get_state(m->node);

        (void) put_header(b, fmt, &node_state_family);
        for (NodeStateId id = 0; id < _NODE_STATE_MAX; id++) {
                (void) PUT_LITERAL(b, "rupost_node_state{state=\"");
                (void) put_str(b, node_state_to_string(id));
                (void) PUT_LITERAL(b, "\"} ");
                (void) put_u64(b, st->id == id);
                (void) PUT_LITERAL(b, "\n");
        }
        (void) put_header(b, fmt, &node_state_change_family);
        (void) PUT_LITERAL(b, "rupost_node_state_change_timestamp_seconds ");
        (void) put_usec_as_seconds(b, node_state_since(m->node));
        (void) PUT_LITERAL(b, "\n");
        (void) put_header(b, fmt, &node_attempts_family);
        (void) PUT_LITERAL(b, "rupost_node_recovery_attempts ");
        (void) put_u64(b, st->attempts);
        (void) PUT_LITERAL(b, "\n");
        (void) put_header(b, fmt, &node_maintenance_family);
        (void) PUT_LITERAL(b, "rupost_node_maintenance ");
        (void) put_u64(b, st->id == NODE_MAINTENANCE);
        return PUT_LITERAL(b, "\n");
}

/* The cluster registry, when the config has a cluster section. */
static const MetricFamily
        cluster_nodes_family = { "rupost_cluster_nodes", METRIC_GAUGE,
                                 "Nodes in the cluster registry by the state they last published, as this node last "
                                 "read the registry; lease_expired counts other nodes whose lease ran out, whatever "
                                 "they last published; unknown counts states this agent does not know." },
        cluster_renew_family = { "rupost_cluster_lease_renew_timestamp_seconds", METRIC_GAUGE,
                                 "When this node last renewed its cluster lease; absent until it first did." },
        cluster_db_up_family = { "rupost_cluster_db_up", METRIC_GAUGE,
                                 "Whether this node reaches the cluster database and its last lease renewal "
                                 "succeeded." },
        cluster_fenced_family = { "rupost_cluster_self_fenced", METRIC_GAUGE,
                                  "Whether this node stopped its own mail group because it could not renew its "
                                  "cluster lease and no shared outage of the database was confirmed." },
        cluster_outage_family = { "rupost_cluster_shared_outage", METRIC_GAUGE,
                                  "Whether this node is past its fence deadline and serving because every peer with "
                                  "a lease confirmed that the cluster database is down for everyone." },
        cluster_unreachable_family = { "rupost_cluster_peers_unreachable", METRIC_GAUGE,
                                       "Peers with a lease that did not answer on their peer address at the last "
                                       "check: should the database fail, this node could not confirm a shared "
                                       "outage and would fence." },
        cluster_denied_family = { "rupost_cluster_withdrawal_denied", METRIC_GAUGE,
                                  "Whether the cluster guards refused this node's last withdrawal, one series per "
                                  "reason; stays 1 until a withdrawal is allowed or the node is back in service." };

/* Nodes of the view per state, then two slots: states this agent does not
 * know (a newer agent's, or a row written by hand), and other nodes whose
 * lease expired: an agent that died left "in_service" behind, and counting
 * it so would hide that the cluster has one node fewer serving. */
enum { SLOT_UNKNOWN = _NODE_STATE_MAX, SLOT_LEASE_EXPIRED, _SLOT_MAX };

static void cluster_count_states(const Cluster *c, uint64_t counts[static _SLOT_MAX]) {
        const ClusterNode *nodes;
        size_t n = cluster_nodes(c, &nodes);

        memset(counts, 0, _SLOT_MAX * sizeof counts[0]);
        for (size_t i = 0; i < n; i++) {
                if (!nodes[i].self && cluster_node_lease_remaining(&nodes[i]) <= 0)
                        counts[SLOT_LEASE_EXPIRED]++;
                else
                        counts[nodes[i].state >= 0 && nodes[i].state < _NODE_STATE_MAX ? nodes[i].state
                                                                                       : SLOT_UNKNOWN]++;
        }
}

static const char *cluster_slot_name(unsigned slot) {
        return slot < _NODE_STATE_MAX     ? node_state_to_string((NodeStateId) slot)
               : slot == SLOT_UNKNOWN ? "unknown"
                                      : "lease_expired";
}

static int render_cluster(Buf *b, MetricsFormat fmt, const Manager *m) {
        uint64_t counts[_SLOT_MAX];
        ClusterVerdict denial;
        usec_t renewed;

        if (!m->cluster)
                return 0;
        cluster_count_states(m->cluster, counts);

        (void) put_header(b, fmt, &cluster_nodes_family);
        for (unsigned slot = 0; slot < _SLOT_MAX; slot++) {
                (void) PUT_LITERAL(b, "rupost_cluster_nodes{state=\"");
                (void) put_str(b, cluster_slot_name(slot));
                (void) PUT_LITERAL(b, "\"} ");
                (void) put_u64(b, counts[slot]);
                (void) PUT_LITERAL(b, "\n");
        }

        renewed = cluster_last_renew(m->cluster);
        if (renewed > 0) {
                (void) put_header(b, fmt, &cluster_renew_family);
                (void) PUT_LITERAL(b, "rupost_cluster_lease_renew_timestamp_seconds ");
                (void) put_usec_as_seconds(b, renewed);
                (void) PUT_LITERAL(b, "\n");
        }

        (void) put_header(b, fmt, &cluster_db_up_family);
        (void) PUT_LITERAL(b, "rupost_cluster_db_up ");
        (void) put_u64(b, cluster_db_ok(m->cluster));
        (void) PUT_LITERAL(b, "\n");

        (void) put_header(b, fmt, &cluster_fenced_family);
        (void) PUT_LITERAL(b, "rupost_cluster_self_fenced ");
        (void) put_u64(b, cluster_self_fenced(m->cluster));
        (void) PUT_LITERAL(b, "\n");

        (void) put_header(b, fmt, &cluster_outage_family);
        (void) PUT_LITERAL(b, "rupost_cluster_shared_outage ");
        (void) put_u64(b, cluster_shared_outage(m->cluster));
        (void) PUT_LITERAL(b, "\n");

        (void) put_header(b, fmt, &cluster_unreachable_family);
        (void) PUT_LITERAL(b, "rupost_cluster_peers_unreachable ");
        (void) put_u64(b, cluster_peers_unreachable(m->cluster));
        (void) PUT_LITERAL(b, "\n");

        /* Every reason always, so that a query over the family sees 0s
         * rather than nothing while all is well. */
        denial = cluster_last_denial(m->cluster);
        (void) put_header(b, fmt, &cluster_denied_family);
        for (ClusterVerdict v = CLUSTER_ALLOW + 1; v < _CLUSTER_VERDICT_MAX; v++) {
                (void) PUT_LITERAL(b, "rupost_cluster_withdrawal_denied{reason=\"");
                (void) put_str(b, cluster_verdict_to_string(v));
                (void) PUT_LITERAL(b, "\"} ");
                (void) put_u64(b, denial == v);
                (void) PUT_LITERAL(b, "\n");
        }
        return buf_status(b);
}

static const MetricFamily failure_peers_family = {
        "rupost_probe_failure_peers", METRIC_GAUGE,
        "Other nodes of the cluster with a live lease that report the probe of the same name critical now: "
        "0 while this node's failure is its own, more when a shared dependency fails; 0 while the cluster "
        "database cannot be read."
};

/* Per probe, whatever its own status: an alert on this node's failure can
 * then tell "mine alone" from "everyone's" by a join on probe. */
static int render_failure_peers(Buf *b, MetricsFormat fmt, const Manager *m, Probe *const *probes, size_t n_probes) {
        if (!m->cluster || n_probes == 0)
                return 0;
        (void) put_header(b, fmt, &failure_peers_family);
        for (size_t i = 0; i < n_probes; i++) {
                (void) put_probe_series(b, failure_peers_family.name, probes[i]);
                (void) PUT_LITERAL(b, "} ");
                (void) put_u64(b, cluster_peers_failing(m->cluster, probes[i]->name, NULL));
                (void) PUT_LITERAL(b, "\n");
        }
        return buf_status(b);
}

/* FNV-1a, 64 bit: fast enough to run over the whole state on every scrape,
 * and collisions between two states a scrape apart are not a concern. */
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
        const unsigned char *c = p;
        for (size_t i = 0; i < n; i++)
                h = (h ^ c[i]) * FNV_PRIME;
        return h;
}

static uint64_t hash_u64(uint64_t h, uint64_t v) {
        return hash_bytes(h, &v, sizeof v);
}

static uint64_t hash_str(uint64_t h, const char *s) {
        /* Include the terminator, so that "ab"+"c" differs from "a"+"bc". */
        return s ? hash_bytes(h, s, strlen(s) + 1) : hash_u64(h, UINT64_MAX);
}

uint64_t metrics_state_hash(const Manager *m) {
        uint64_t h = FNV_OFFSET;
        size_t n_probes;
        Probe **probes = manager_probes(m, &n_probes);

        h = hash_str(h, manager_node_name(m));
        h = hash_u64(h, m->node != NULL);
        if (m->node) {
                const NodeState *st = node_get_state(m->node);

                h = hash_u64(h, (uint64_t) st->id);
                h = hash_u64(h, st->attempts);
                h = hash_u64(h, node_state_since(m->node));
        }
        h = hash_u64(h, m->cluster != NULL);
        if (m->cluster) {
                uint64_t counts[_SLOT_MAX];

                cluster_count_states(m->cluster, counts);
                h = hash_bytes(h, counts, sizeof counts);
                h = hash_u64(h, cluster_last_renew(m->cluster));
                h = hash_u64(h, cluster_db_ok(m->cluster));
                h = hash_u64(h, cluster_self_fenced(m->cluster));
                h = hash_u64(h, cluster_shared_outage(m->cluster));
                h = hash_u64(h, cluster_peers_unreachable(m->cluster));
                h = hash_u64(h, (uint64_t) cluster_last_denial(m->cluster));
                for (size_t i = 0; i < n_probes; i++)
                        h = hash_u64(h, cluster_peers_failing(m->cluster, probes[i]->name, NULL));
        }
        h = hash_u64(h, n_probes);
        for (size_t i = 0; i < n_probes; i++) {
                const Probe *p = probes[i];

                h = hash_str(h, p->name);
                h = hash_str(h, p->type->name);
                h = hash_u64(h, p->have_result);
                h = hash_u64(h, (uint64_t) p->status);
                h = hash_u64(h, p->interval);
                h = hash_u64(h, p->timeout);
                h = hash_u64(h, p->changed_realtime);
                h = hash_u64(h, p->n_runs);
                h = hash_u64(h, p->n_timeouts);
                if (!p->have_result)
                        continue;
                h = hash_u64(h, p->last.started_realtime);
                h = hash_u64(h, p->last.duration);
                h = hash_u64(h, p->last.n_samples);
                for (size_t j = 0; j < p->last.n_samples; j++) {
                        const Sample *s = &p->last.samples[j];

                        h = hash_u64(h, (uint64_t) (uintptr_t) s->family);
                        h = hash_str(h, s->family ? s->family->name : NULL);
                        h = hash_str(h, s->labels);
                        h = hash_bytes(h, &s->value, sizeof s->value);
                }
        }
        return h;
}

int metrics_render_state(const Manager *m, MetricsFormat fmt, Buf *out) {
        Probe **probes;
        size_t n_probes;
        int r;

        assert_return(m, -EINVAL);
        assert_return(out, -EINVAL);

        probes = manager_probes(m, &n_probes);

        (void) render_info(out, fmt, m);
        (void) render_node(out, fmt, m);
        (void) render_cluster(out, fmt, m);
        for (ProbeFamilyId id = 0; id < _PF_MAX; id++)
                (void) render_probe_family(out, fmt, id, probes, n_probes);
        (void) render_failure_peers(out, fmt, m, probes, n_probes);
        r = render_probe_samples(out, fmt, probes, n_probes);
        if (r < 0)
                return r;
        return buf_status(out);
}

static const MetricFamily
        process_cpu_family = { "process_cpu_seconds_total", METRIC_COUNTER,
                               "Total user and system CPU time spent in seconds." },
        process_open_fds_family = { "process_open_fds", METRIC_GAUGE, "Number of open file descriptors." },
        process_max_fds_family = { "process_max_fds", METRIC_GAUGE, "Maximum number of open file descriptors." },
        process_vsz_family = { "process_virtual_memory_bytes", METRIC_GAUGE, "Virtual memory size in bytes." },
        process_rss_family = { "process_resident_memory_bytes", METRIC_GAUGE, "Resident memory size in bytes." },
        process_start_family = { "process_start_time_seconds", METRIC_GAUGE,
                                 "Start time of the process since unix epoch in seconds." };

static int render_process(Buf *out, MetricsFormat fmt, const ProcessMetrics *pm) {
        (void) put_header(out, fmt, &process_cpu_family);
        (void) PUT_LITERAL(out, "process_cpu_seconds_total ");
        (void) put_usec_as_seconds(out, pm->cpu_usec);
        (void) PUT_LITERAL(out, "\n");
        (void) put_header(out, fmt, &process_open_fds_family);
        (void) PUT_LITERAL(out, "process_open_fds ");
        (void) put_u64(out, pm->open_fds);
        (void) PUT_LITERAL(out, "\n");
        (void) put_header(out, fmt, &process_max_fds_family);
        (void) PUT_LITERAL(out, "process_max_fds ");
        if (pm->max_fds == UINT64_MAX)
                (void) PUT_LITERAL(out, "+Inf");
        else
                (void) put_u64(out, pm->max_fds);
        (void) PUT_LITERAL(out, "\n");
        (void) put_header(out, fmt, &process_vsz_family);
        (void) PUT_LITERAL(out, "process_virtual_memory_bytes ");
        (void) put_u64(out, pm->virtual_bytes);
        (void) PUT_LITERAL(out, "\n");
        (void) put_header(out, fmt, &process_rss_family);
        (void) PUT_LITERAL(out, "process_resident_memory_bytes ");
        (void) put_u64(out, pm->resident_bytes);
        (void) PUT_LITERAL(out, "\n");
        (void) put_header(out, fmt, &process_start_family);
        (void) PUT_LITERAL(out, "process_start_time_seconds ");
        (void) put_usec_as_seconds(out, pm->start_time_usec);
        return PUT_LITERAL(out, "\n");
}

int metrics_render_process(MetricsFormat fmt, Buf *out) {
        ProcessMetrics pm;
        int r;

        assert_return(out, -EINVAL);

        r = process_metrics_read(&pm);
        if (r < 0)
                /* Without /proc the other metrics are still worth serving. */
                log_debug_errno(r, "Failed to read the process metrics, leaving them out: %m");
        else
                (void) render_process(out, fmt, &pm);
        /* The process part comes last, so it ends the exposition. */
        if (fmt == METRICS_FORMAT_OPENMETRICS)
                (void) PUT_LITERAL(out, "# EOF\n");
        return buf_status(out);
}

int metrics_render(const Manager *m, MetricsFormat fmt, Buf *out) {
        int r;

        r = metrics_render_state(m, fmt, out);
        if (r < 0)
                return r;
        return metrics_render_process(fmt, out);
}
