/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "build-config.h"
#include "cluster-fixture.h"
#include "exporter/exporter.h"
#include "exporter/process-metrics.h"
#include "node.h"
#include "openmetrics-check.h"
#include "run-until.h"
#include "tests.h"

static const MetricFamily queue_messages = {
        .name = "rupost_test_queue_messages", .type = METRIC_GAUGE, .help = "Messages in a queue."
};
static const MetricFamily queue_messages_counter = {
        .name = "rupost_test_queue_messages", .type = METRIC_COUNTER, .help = "Same name, other type."
};
static const MetricFamily latency = {
        .name = "rupost_test_latency_seconds", .type = METRIC_GAUGE, .help = "A latency\nwith \\ in its help."
};
static const MetricFamily clash = {
        .name = "rupost_probe_success", .type = METRIC_GAUGE, .help = "Reuses a name of the core."
};

static void add_sample(Probe *p, const MetricFamily *f, const char *labels, double value) {
        ProbeResult *r = &p->last;

        r->samples = realloc(r->samples, (r->n_samples + 1) * sizeof *r->samples);
        ASSERT_TRUE(r->samples);
        r->samples[r->n_samples++] = (Sample) {
                .family = f,
                .labels = labels ? strdup(labels) : NULL,
                .value = value,
        };
}

static Probe *make_probe(const char *type, const char *name) {
        const ProbeType *t = probe_type_find(type);
        Probe *p = NULL;

        ASSERT_TRUE(t);
        ASSERT_OK(probe_new(t, name, &p));
        p->interval = 30 * USEC_PER_SEC;
        p->timeout = 2500 * USEC_PER_MSEC;
        return p;
}

/* Three probes: one ok with samples, one critical with samples of the same
 * family, one that has not reported yet. */
typedef struct Fixture {
        Config config;
        Manager manager;
        Probe *probes[3];
        char state_dir[64];
        char state_file[96];
} Fixture;

static void fixture_init(Fixture *f) {
        Probe *smtp = make_probe("tcp", "smtp"), *imap = make_probe("tcp", "imap\"in \\quotes\n"),
              *unit = make_probe("systemd-unit", "postfix-unit");

        smtp->have_result = true;
        smtp->status = PROBE_OK;
        smtp->last.status = PROBE_OK;
        smtp->last.started_realtime = 1700000000123456;
        smtp->last.duration = 250 * USEC_PER_MSEC;
        smtp->changed_realtime = 1699999000 * USEC_PER_SEC;
        smtp->n_runs = 42;
        smtp->n_timeouts = 3;
        add_sample(smtp, &queue_messages, "queue=\"active\"", 17);
        add_sample(smtp, &latency, NULL, 0.125);
        add_sample(smtp, &queue_messages, "queue=\"deferred\"", 2);

        imap->have_result = true;
        imap->status = PROBE_CRITICAL;
        imap->last.status = PROBE_CRITICAL;
        imap->last.started_realtime = 1700000001 * USEC_PER_SEC;
        imap->last.duration = 1;
        imap->n_runs = 7;
        add_sample(imap, &queue_messages, "queue=\"a\\\"b\"", NAN);

        /* Not reported yet: the raw status field must not leak out. */
        unit->status = PROBE_OK;

        f->probes[0] = smtp;
        f->probes[1] = imap;
        f->probes[2] = unit;
        f->config = (Config) { .node = (char *) "mx1.example.org", .probes = f->probes, .n_probes = 3 };
        f->manager = (Manager) { .config = &f->config };
}

static void fixture_done(Fixture *f) {
        for (size_t i = 0; i < ELEMENTSOF(f->probes); i++)
                probe_free(f->probes[i]);
        f->manager.cluster = cluster_free(f->manager.cluster);
        if (f->manager.node) {
                f->manager.node = node_free(f->manager.node);
                (void) unlink(f->state_file);
                ASSERT_OK(rmdir(f->state_dir));
        }
}

/* Healing configured: the node withdrawn after its second recovery. */
static void fixture_add_node(Fixture *f) {
        NodeState st = { .id = NODE_WITHDRAWN, .reason = "imap: connection refused", .attempts = 2 };

        snprintf(f->state_dir, sizeof f->state_dir, "/tmp/test-metrics-XXXXXX");
        ASSERT_TRUE(mkdtemp(f->state_dir));
        snprintf(f->state_file, sizeof f->state_file, "%s/state", f->state_dir);
        f->config.healing = (HealingConfig) { .enabled = true, .max_attempts = 5, .state_file = f->state_file };
        ASSERT_OK(node_new_for_test(&f->manager, &f->config.healing, &st, 1700000100500000, &f->manager.node));
}

/* A cluster section: the registry of cf, on loop e. */
static void fixture_add_cluster(Fixture *f, ClusterFixture *cf, sd_event *e) {
        f->config.cluster = cf->config;
        ASSERT_OK(cluster_new(e, &f->config.cluster, f->config.node, &f->manager.cluster));
}

static bool sees_four_nodes_self_in_service(const Cluster *c) {
        const ClusterNode *nodes;
        size_t n = cluster_nodes(c, &nodes);

        for (size_t i = 0; i < n; i++)
                if (nodes[i].self && nodes[i].state == NODE_IN_SERVICE)
                        return n == 4;
        return false;
}

static bool db_lost(const Cluster *c) {
        return !cluster_db_ok(c);
}

static char *render(const Manager *m) {
        Buf b = BUF_INIT(EXPORTER_MAX_BODY);

        ASSERT_OK(metrics_render(m, METRICS_FORMAT_TEXT, &b));
        return buf_steal(&b);
}

static size_t count_occurrences(const char *haystack, const char *needle) {
        size_t n = 0;
        for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* Asserts that `line` appears as a whole line. */
#define ASSERT_LINE(text, line)                                                         \
        do {                                                                            \
                _cleanup_free_ char *_l = NULL;                                         \
                ASSERT_TRUE(asprintf(&_l, "\n%s\n", (line)) > 0);                       \
                ASSERT_CONTAINS((text), _l);                                            \
        } while (0)

TEST(core_families) {
        Fixture f;
        fixture_init(&f);
        _cleanup_free_ char *text = render(&f.manager);

        ASSERT_TRUE(strncmp(text, "# HELP rupost_build_info ", strlen("# HELP rupost_build_info ")) == 0);
        ASSERT_LINE(text, "# TYPE rupost_build_info gauge");
        ASSERT_LINE(text, "rupost_build_info{version=\"" PROJECT_VERSION "\",revision=\"" PROJECT_REVISION "\"} 1");
        ASSERT_LINE(text, "rupost_node_info{node=\"mx1.example.org\"} 1");

        ASSERT_LINE(text, "# TYPE rupost_probe_success gauge");
        ASSERT_LINE(text, "rupost_probe_success{probe=\"smtp\",type=\"tcp\"} 1");
        ASSERT_LINE(text, "rupost_probe_success{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\"} 0");
        ASSERT_LINE(text, "rupost_probe_success{probe=\"postfix-unit\",type=\"systemd-unit\"} 0");

        ASSERT_LINE(text, "rupost_probe_duration_seconds{probe=\"smtp\",type=\"tcp\"} 0.25");
        ASSERT_LINE(text, "rupost_probe_duration_seconds{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\"} 0.000001");
        ASSERT_LINE(text, "rupost_probe_last_run_timestamp_seconds{probe=\"smtp\",type=\"tcp\"} 1700000000.123456");
        ASSERT_LINE(text, "rupost_probe_status_change_timestamp_seconds{probe=\"smtp\",type=\"tcp\"} 1699999000");
        ASSERT_LINE(text, "# TYPE rupost_probe_runs_total counter");
        ASSERT_LINE(text, "rupost_probe_runs_total{probe=\"smtp\",type=\"tcp\"} 42");
        ASSERT_LINE(text, "rupost_probe_runs_total{probe=\"postfix-unit\",type=\"systemd-unit\"} 0");
        ASSERT_LINE(text, "# TYPE rupost_probe_timeouts_total counter");
        ASSERT_LINE(text, "rupost_probe_timeouts_total{probe=\"smtp\",type=\"tcp\"} 3");
        ASSERT_LINE(text, "rupost_probe_interval_seconds{probe=\"smtp\",type=\"tcp\"} 30");
        ASSERT_LINE(text, "rupost_probe_timeout_seconds{probe=\"smtp\",type=\"tcp\"} 2.5");

        /* A probe without a result has no duration, last-run or change samples. */
        ASSERT_NOT_CONTAINS(text, "rupost_probe_duration_seconds{probe=\"postfix-unit\"");
        ASSERT_NOT_CONTAINS(text, "rupost_probe_last_run_timestamp_seconds{probe=\"postfix-unit\"");
        ASSERT_NOT_CONTAINS(text, "rupost_probe_status_change_timestamp_seconds{probe=\"postfix-unit\"");
        ASSERT_NOT_CONTAINS(text, "rupost_probe_status_change_timestamp_seconds{probe=\"imap");

        fixture_done(&f);
}

TEST(state_set) {
        Fixture f;
        fixture_init(&f);
        _cleanup_free_ char *text = render(&f.manager);

        ASSERT_LINE(text, "rupost_probe_status{probe=\"smtp\",type=\"tcp\",status=\"ok\"} 1\n"
                          "rupost_probe_status{probe=\"smtp\",type=\"tcp\",status=\"warning\"} 0\n"
                          "rupost_probe_status{probe=\"smtp\",type=\"tcp\",status=\"critical\"} 0\n"
                          "rupost_probe_status{probe=\"smtp\",type=\"tcp\",status=\"unknown\"} 0");
        ASSERT_LINE(text, "rupost_probe_status{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\",status=\"ok\"} 0\n"
                          "rupost_probe_status{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\",status=\"warning\"} 0\n"
                          "rupost_probe_status{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\",status=\"critical\"} 1\n"
                          "rupost_probe_status{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\",status=\"unknown\"} 0");
        /* No result yet: unknown, whatever the status field says. */
        ASSERT_LINE(text, "rupost_probe_status{probe=\"postfix-unit\",type=\"systemd-unit\",status=\"ok\"} 0\n"
                          "rupost_probe_status{probe=\"postfix-unit\",type=\"systemd-unit\",status=\"warning\"} 0\n"
                          "rupost_probe_status{probe=\"postfix-unit\",type=\"systemd-unit\",status=\"critical\"} 0\n"
                          "rupost_probe_status{probe=\"postfix-unit\",type=\"systemd-unit\",status=\"unknown\"} 1");
        ASSERT_EQ(count_occurrences(text, "\nrupost_probe_status{"), 12);

        fixture_done(&f);
}

TEST(probe_samples_grouped_by_family) {
        Fixture f;
        fixture_init(&f);
        _cleanup_free_ char *text = render(&f.manager);

        /* Samples of one family from two probes form one block, in probe order. */
        ASSERT_EQ(count_occurrences(text, "# HELP rupost_test_queue_messages "), 1);
        ASSERT_EQ(count_occurrences(text, "# TYPE rupost_test_queue_messages "), 1);
        ASSERT_LINE(text, "# HELP rupost_test_queue_messages Messages in a queue.\n"
                          "# TYPE rupost_test_queue_messages gauge\n"
                          "rupost_test_queue_messages{probe=\"smtp\",type=\"tcp\",queue=\"active\"} 17\n"
                          "rupost_test_queue_messages{probe=\"smtp\",type=\"tcp\",queue=\"deferred\"} 2\n"
                          "rupost_test_queue_messages{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\",queue=\"a\\\"b\"} NaN");
        ASSERT_LINE(text, "# HELP rupost_test_latency_seconds A latency\\nwith \\\\ in its help.\n"
                          "# TYPE rupost_test_latency_seconds gauge\n"
                          "rupost_test_latency_seconds{probe=\"smtp\",type=\"tcp\"} 0.125");

        /* Every family has exactly one HELP and one TYPE line. */
        for (const char *p = text; (p = strstr(p, "# TYPE ")); p++) {
                char name[128], needle[160];
                ASSERT_EQ(sscanf(p, "# TYPE %127s", name), 1);
                snprintf(needle, sizeof needle, "# TYPE %s ", name);
                ASSERT_EQ(count_occurrences(text, needle), 1);
                snprintf(needle, sizeof needle, "# HELP %s ", name);
                ASSERT_EQ(count_occurrences(text, needle), 1);
        }

        fixture_done(&f);
}

TEST(family_conflicts) {
        Fixture f;
        Buf b = BUF_INIT(EXPORTER_MAX_BODY);

        fixture_init(&f);
        add_sample(f.probes[1], &queue_messages_counter, "queue=\"x\"", 1);
        ASSERT_ERROR(metrics_render(&f.manager, METRICS_FORMAT_TEXT, &b), ENOTUNIQ);
        buf_done(&b);
        fixture_done(&f);

        fixture_init(&f);
        add_sample(f.probes[0], &clash, NULL, 1);
        ASSERT_ERROR(metrics_render(&f.manager, METRICS_FORMAT_TEXT, &b), ENOTUNIQ);
        buf_done(&b);
        fixture_done(&f);
}

TEST(node_families) {
        Fixture f;
        _cleanup_free_ char *without = NULL, *text = NULL, *maintenance = NULL;

        fixture_init(&f);
        /* Without a healing section the agent claims no node state at all. */
        without = render(&f.manager);
        ASSERT_NOT_CONTAINS(without, "rupost_node_state");
        ASSERT_NOT_CONTAINS(without, "rupost_node_recovery_attempts");
        ASSERT_NOT_CONTAINS(without, "rupost_node_maintenance");

        fixture_add_node(&f);
        text = render(&f.manager);
        ASSERT_LINE(text, "# TYPE rupost_node_state gauge\n"
                          "rupost_node_state{state=\"starting\"} 0\n"
                          "rupost_node_state{state=\"in_service\"} 0\n"
                          "rupost_node_state{state=\"withdrawn\"} 1\n"
                          "rupost_node_state{state=\"recovering\"} 0\n"
                          "rupost_node_state{state=\"failed\"} 0\n"
                          "rupost_node_state{state=\"maintenance\"} 0");
        ASSERT_EQ(count_occurrences(text, "\nrupost_node_state{"), _NODE_STATE_MAX);
        ASSERT_LINE(text, "# TYPE rupost_node_state_change_timestamp_seconds gauge\n"
                          "rupost_node_state_change_timestamp_seconds 1700000100.5");
        ASSERT_LINE(text, "# TYPE rupost_node_recovery_attempts gauge\nrupost_node_recovery_attempts 2");
        ASSERT_LINE(text, "# TYPE rupost_node_maintenance gauge\nrupost_node_maintenance 0");
        ASSERT_CONTAINS(text, "# HELP rupost_node_maintenance Whether an operator put this node in maintenance");

        /* A scrape after a state change must not be served from the cache. */
        uint64_t h = metrics_state_hash(&f.manager);
        ASSERT_OK(node_set_maintenance(f.manager.node, true, "disk swap"));
        ASSERT_TRUE(metrics_state_hash(&f.manager) != h);
        maintenance = render(&f.manager);
        ASSERT_LINE(maintenance, "rupost_node_state{state=\"withdrawn\"} 0");
        ASSERT_LINE(maintenance, "rupost_node_state{state=\"maintenance\"} 1");
        ASSERT_LINE(maintenance, "rupost_node_maintenance 1");
        ASSERT_NOT_CONTAINS(maintenance, "rupost_node_state_change_timestamp_seconds 1700000100.5\n");

        fixture_done(&f);
}

TEST(cluster_families) {
        _cleanup_free_ char *without = NULL, *text = NULL, *cleared = NULL, *fenced = NULL, *renew_line = NULL;
        ClusterFixture cf;
        sd_event *e = NULL;
        const char *p;
        Fixture f;
        uint64_t h;

        if (!cluster_fixture_start(&cf))
                return;
        ASSERT_OK(sd_event_new(&e));
        fixture_init(&f);
        /* Without a cluster section no cluster family at all. */
        without = render(&f.manager);
        ASSERT_NOT_CONTAINS(without, "rupost_cluster_");

        fixture_add_cluster(&f, &cf, e);
        ASSERT_TRUE(RUN_UNTIL(e, cluster_db_ok(f.manager.cluster), 10 * USEC_PER_SEC));
        cluster_publish(f.manager.cluster, NODE_IN_SERVICE, "");
        /* Three other nodes: n2 withdrawn; n3 in a state of a newer agent;
         * n4 in service by its row, but its lease expired. */
        cluster_fixture_sql(&cf, "INSERT INTO rupost_agent.nodes (name, state, lease_expires, renewed_at, live_for) VALUES "
                                 "('n2', 'withdrawn', now() + interval '1 minute', now(), interval '1 minute'), "
                                 "('n3', 'evacuating', now() + interval '1 minute', now(), interval '1 minute'), "
                                 "('n4', 'in_service', now() - interval '1 second', now() - interval '1 hour', interval '3 seconds')");
        ASSERT_TRUE(RUN_UNTIL(e, sees_four_nodes_self_in_service(f.manager.cluster), 10 * USEC_PER_SEC));

        /* No other node in service with a live lease: imaps may not withdraw us. */
        h = metrics_state_hash(&f.manager);
        ASSERT_EQ(cluster_ask(e, f.manager.cluster, "imaps", true, NULL, 0), CLUSTER_DENY_LAST_IN_SERVICE);
        ASSERT_TRUE(metrics_state_hash(&f.manager) != h);

        text = render(&f.manager);
        ASSERT_LINE(text, "# TYPE rupost_cluster_nodes gauge\n"
                          "rupost_cluster_nodes{state=\"starting\"} 0\n"
                          "rupost_cluster_nodes{state=\"in_service\"} 1\n"
                          "rupost_cluster_nodes{state=\"withdrawn\"} 1\n"
                          "rupost_cluster_nodes{state=\"recovering\"} 0\n"
                          "rupost_cluster_nodes{state=\"failed\"} 0\n"
                          "rupost_cluster_nodes{state=\"maintenance\"} 0\n"
                          "rupost_cluster_nodes{state=\"fenced\"} 0\n"
                          "rupost_cluster_nodes{state=\"unknown\"} 1\n"
                          "rupost_cluster_nodes{state=\"lease_expired\"} 1");
        ASSERT_LINE(text, "# TYPE rupost_cluster_db_up gauge\nrupost_cluster_db_up 1");
        ASSERT_LINE(text, "# TYPE rupost_cluster_self_fenced gauge\nrupost_cluster_self_fenced 0");
        ASSERT_LINE(text, "# TYPE rupost_cluster_withdrawal_denied gauge\n"
                          "rupost_cluster_withdrawal_denied{reason=\"last-in-service\"} 1\n"
                          "rupost_cluster_withdrawal_denied{reason=\"max-withdrawn\"} 0\n"
                          "rupost_cluster_withdrawal_denied{reason=\"shared-failure\"} 0\n"
                          "rupost_cluster_withdrawal_denied{reason=\"db-unreachable\"} 0");
        /* The last renewal, on this host's clock, a moment ago. */
        p = strstr(text, "\nrupost_cluster_lease_renew_timestamp_seconds ");
        ASSERT_TRUE(p);
        double renewed = strtod(p + strlen("\nrupost_cluster_lease_renew_timestamp_seconds "), NULL);
        ASSERT_TRUE(fabs(usec_to_seconds(now(CLOCK_REALTIME)) - renewed) < 5);
        ASSERT_CONTAINS(text, "# TYPE rupost_cluster_lease_renew_timestamp_seconds gauge\n");

        /* Back in service (node.c clears the denial): all reasons 0. */
        cluster_clear_denial(f.manager.cluster);
        cleared = render(&f.manager);
        ASSERT_EQ(count_occurrences(cleared, "\nrupost_cluster_withdrawal_denied{"), _CLUSTER_VERDICT_MAX - 1);
        ASSERT_NOT_CONTAINS(cleared, "rupost_cluster_withdrawal_denied{reason=\"last-in-service\"} 1");

        /* The DB gone while n2 and n3 hold live leases and answer nothing
         * on their peer port: this node is the one cut off and fences
         * itself after self_fence_after (3 s). */
        pg_server_stop(&cf.server);
        ASSERT_TRUE(RUN_UNTIL(e, db_lost(f.manager.cluster), 5 * USEC_PER_SEC));
        ASSERT_TRUE(RUN_UNTIL(e, cluster_self_fenced(f.manager.cluster), 10 * USEC_PER_SEC));
        fenced = render(&f.manager);
        ASSERT_LINE(fenced, "rupost_cluster_db_up 0");
        ASSERT_LINE(fenced, "rupost_cluster_self_fenced 1");
        /* The last renewal is still the last one. */
        ASSERT_TRUE(asprintf(&renew_line, "\nrupost_cluster_lease_renew_timestamp_seconds %.*s", 10,
                             p + strlen("\nrupost_cluster_lease_renew_timestamp_seconds ")) > 0);
        ASSERT_CONTAINS(fenced, renew_line);
        /* The view it last read stays. */
        ASSERT_LINE(fenced, "rupost_cluster_nodes{state=\"unknown\"} 1");

        fixture_done(&f);
        sd_event_unref(e);
        cluster_fixture_stop(&cf);
}

static bool smtp_fails_on_two_peers(const Cluster *c) {
        return cluster_peers_failing(c, "smtp", NULL) == 2;
}

TEST(probe_failure_peers) {
        _cleanup_free_ char *without = NULL, *text = NULL, *lost = NULL;
        ClusterFixture cf;
        sd_event *e = NULL;
        unsigned live;
        Fixture f;
        uint64_t h;

        if (!cluster_fixture_start(&cf))
                return;
        ASSERT_OK(sd_event_new(&e));
        fixture_init(&f);
        without = render(&f.manager);
        ASSERT_NOT_CONTAINS(without, "rupost_probe_failure_peers");

        fixture_add_cluster(&f, &cf, e);
        ASSERT_TRUE(RUN_UNTIL(e, cluster_db_ok(f.manager.cluster), 10 * USEC_PER_SEC));
        /* Every probe has its series from the first view on, 0 while no peer fails. */
        text = render(&f.manager);
        ASSERT_LINE(text, "# HELP rupost_probe_failure_peers Other nodes of the cluster with a live lease that "
                          "report the probe of the same name critical now: 0 while this node's failure is its "
                          "own, more when a shared dependency fails; 0 while the cluster database cannot be read.\n"
                          "# TYPE rupost_probe_failure_peers gauge\n"
                          "rupost_probe_failure_peers{probe=\"smtp\",type=\"tcp\"} 0\n"
                          "rupost_probe_failure_peers{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\"} 0\n"
                          "rupost_probe_failure_peers{probe=\"postfix-unit\",type=\"systemd-unit\"} 0");
        h = metrics_state_hash(&f.manager);

        /* n2 and n3 see smtp failing, n3 postfix-unit too; n4 sees smtp
         * failing as well, but its lease expired; n2 saw imap fail, but it
         * recovered. */
        cluster_fixture_sql(&cf, "INSERT INTO rupost_agent.nodes (name, state, lease_expires, renewed_at, live_for) VALUES "
                                 "('n2', 'in_service', now() + interval '1 minute', now(), interval '1 minute'), "
                                 "('n3', 'in_service', now() + interval '1 minute', now(), interval '1 minute'), "
                                 "('n4', 'in_service', now() - interval '1 second', now() - interval '1 hour', interval '3 seconds')");
        cluster_fixture_sql(&cf, "INSERT INTO rupost_agent.probe_failures (node, probe, cleared_at) VALUES "
                                 "('n2', 'smtp', NULL), ('n3', 'smtp', NULL), ('n3', 'postfix-unit', NULL), "
                                 "('n4', 'smtp', NULL), ('n2', 'imap\"in \\quotes\n', now())");
        ASSERT_TRUE(RUN_UNTIL(e, smtp_fails_on_two_peers(f.manager.cluster), 10 * USEC_PER_SEC));
        ASSERT_EQ(cluster_peers_failing(f.manager.cluster, "smtp", &live), 2);
        ASSERT_EQ(live, 2);
        ASSERT_EQ(cluster_peers_failing(f.manager.cluster, "nosuchprobe", &live), 0);
        ASSERT_EQ(live, 2);
        ASSERT_TRUE(metrics_state_hash(&f.manager) != h);
        free(text);
        text = render(&f.manager);
        ASSERT_LINE(text, "rupost_probe_failure_peers{probe=\"smtp\",type=\"tcp\"} 2\n"
                          "rupost_probe_failure_peers{probe=\"imap\\\"in \\\\quotes\\n\",type=\"tcp\"} 0\n"
                          "rupost_probe_failure_peers{probe=\"postfix-unit\",type=\"systemd-unit\"} 1");

        /* The DB gone: nothing current is known about the peers. */
        pg_server_stop(&cf.server);
        ASSERT_TRUE(RUN_UNTIL(e, db_lost(f.manager.cluster), 5 * USEC_PER_SEC));
        ASSERT_EQ(cluster_peers_failing(f.manager.cluster, "smtp", &live), 0);
        ASSERT_EQ(live, 0);
        lost = render(&f.manager);
        ASSERT_LINE(lost, "rupost_probe_failure_peers{probe=\"smtp\",type=\"tcp\"} 0");

        fixture_done(&f);
        sd_event_unref(e);
        cluster_fixture_stop(&cf);
}

TEST(cluster_families_before_the_first_renewal) {
        _cleanup_free_ char *text = NULL;
        ClusterFixture cf;
        sd_event *e = NULL;
        Fixture f;

        ASSERT_OK(sd_event_new(&e));
        cluster_fixture_unreachable(&cf);
        fixture_init(&f);
        fixture_add_cluster(&f, &cf, e);
        text = render(&f.manager);
        ASSERT_LINE(text, "rupost_cluster_nodes{state=\"in_service\"} 0");
        ASSERT_LINE(text, "rupost_cluster_nodes{state=\"unknown\"} 0");
        ASSERT_LINE(text, "rupost_cluster_db_up 0");
        ASSERT_LINE(text, "rupost_cluster_self_fenced 0");
        ASSERT_NOT_CONTAINS(text, "rupost_cluster_lease_renew_timestamp_seconds");
        fixture_done(&f);
        sd_event_unref(e);
}

TEST(node_family_names_reserved) {
        static const MetricFamily fake = { "rupost_node_maintenance", METRIC_GAUGE, "A probe's own idea." };
        Fixture f;
        Buf b = BUF_INIT(EXPORTER_MAX_BODY);

        fixture_init(&f);
        add_sample(f.probes[0], &fake, NULL, 1);
        ASSERT_ERROR(metrics_render(&f.manager, METRICS_FORMAT_TEXT, &b), ENOTUNIQ);
        buf_done(&b);
        fixture_done(&f);
}

TEST(state_hash) {
        Fixture f;

        fixture_init(&f);
        uint64_t h = metrics_state_hash(&f.manager);
        ASSERT_TRUE(h == metrics_state_hash(&f.manager));

        f.probes[0]->last.samples[0].value = 18;
        uint64_t h2 = metrics_state_hash(&f.manager);
        ASSERT_TRUE(h2 != h);
        f.probes[2]->n_runs++;
        uint64_t h3 = metrics_state_hash(&f.manager);
        ASSERT_TRUE(h3 != h2);
        free(f.probes[1]->last.samples[0].labels);
        f.probes[1]->last.samples[0].labels = strdup("queue=\"c\"");
        ASSERT_TRUE(metrics_state_hash(&f.manager) != h3);
        fixture_done(&f);
}

TEST(overflow_is_an_error) {
        Fixture f;
        Buf b = BUF_INIT(1024);

        fixture_init(&f);
        ASSERT_ERROR(metrics_render(&f.manager, METRICS_FORMAT_TEXT, &b), ENOBUFS);
        buf_done(&b);
        fixture_done(&f);
}

TEST(no_probes) {
        Config config = { .node = (char *) "n\"1" };
        Manager m = { .config = &config };
        _cleanup_free_ char *text = render(&m);

        ASSERT_LINE(text, "rupost_node_info{node=\"n\\\"1\"} 1");
        ASSERT_NOT_CONTAINS(text, "rupost_probe_");
        ASSERT_CONTAINS(text, "\nprocess_open_fds ");
}

TEST(format_value) {
        static const struct {
                double v;
                const char *s;
        } cases[] = {
                { 0, "0" },
                { -0.0, "0" },
                { 1, "1" },
                { -3, "-3" },
                { 1.5, "1.5" },
                { 0.1, "0.1" },
                { 1.0 / 3.0, "0.3333333333333333" },
                { 123456789012.0, "123456789012" },
                { 9007199254740992.0, "9007199254740992" },
                { 1e300, "1e+300" },
                { -2.5e-7, "-2.5e-07" },
                { NAN, "NaN" },
                { INFINITY, "+Inf" },
                { -INFINITY, "-Inf" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[64];
                int n = metrics_format_value(buf, sizeof buf, cases[i].v);
                ASSERT_EQ(n, strlen(cases[i].s));
                ASSERT_STREQ(buf, cases[i].s);
                if (!isnan(cases[i].v))
                        ASSERT_TRUE(strtod(buf, NULL) == cases[i].v);
        }
}

TEST(process_stat_parse) {
        /* The command name may hold spaces and parentheses. */
        static const char stat[] =
                "4242 (rupost) (agent) S 1 4242 4242 0 -1 4194560 1200 0 0 0 "
                "250 150 0 0 20 0 1 0 123456 10485760 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1\n";
        ProcessMetrics pm = {};
        uint64_t start;

        ASSERT_OK(process_stat_parse(stat, 100, 4096, &pm, &start));
        ASSERT_EQ(pm.cpu_usec, 4 * USEC_PER_SEC);
        ASSERT_EQ(pm.virtual_bytes, 10485760);
        ASSERT_EQ(pm.resident_bytes, 2048 * 4096);
        ASSERT_EQ(start, 123456);

        ASSERT_ERROR(process_stat_parse("4242 (x) S 1 2 3", 100, 4096, &pm, &start), EINVAL);
        ASSERT_ERROR(process_stat_parse("no parenthesis", 100, 4096, &pm, &start), EINVAL);
        ASSERT_ERROR(process_stat_parse("1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 1 0 0 20 0 1 0 1 1 1", 100, 4096, &pm,
                                        &start),
                     EINVAL);
}

TEST(process_metrics) {
        Config config = {};
        Manager m = { .config = &config };
        _cleanup_free_ char *a = render(&m), *b = NULL;
        const char *p;

        ASSERT_LINE(a, "# TYPE process_cpu_seconds_total counter");
        ASSERT_CONTAINS(a, "\nprocess_resident_memory_bytes ");
        ASSERT_CONTAINS(a, "\nprocess_virtual_memory_bytes ");
        ASSERT_CONTAINS(a, "\nprocess_max_fds ");
        p = strstr(a, "\nprocess_start_time_seconds ");
        ASSERT_TRUE(p);
        ASSERT_TRUE(strtod(p + strlen("\nprocess_start_time_seconds "), NULL) > 1.6e9);
        p = strstr(a, "\nprocess_open_fds ");
        ASSERT_TRUE(p);
        ASSERT_TRUE(strtoull(p + strlen("\nprocess_open_fds "), NULL, 10) >= 3);

        /* The start time must not move between scrapes: alerts count its changes as restarts. */
        b = render(&m);
        ASSERT_STREQ(strstr(b, "\nprocess_start_time_seconds "), strstr(a, "\nprocess_start_time_seconds "));
}

static char *find_promtool(void) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin";
        _cleanup_free_ char *copy = strdup(path);
        char *state = NULL;

        ASSERT_TRUE(copy);
        for (char *dir = strtok_r(copy, ":", &state); dir; dir = strtok_r(NULL, ":", &state)) {
                char *candidate;
                ASSERT_TRUE(asprintf(&candidate, "%s/promtool", dir) > 0);
                if (access(candidate, X_OK) == 0)
                        return candidate;
                free(candidate);
        }
        return NULL;
}

/* Runs promtool with args (NULL-terminated) and text on stdin; returns its
 * exit status and everything it printed. */
static int run_promtool(const char *promtool, const char *text, char **ret_output, const char *const *args) {
        char in_path[] = "/tmp/test-metrics-in.XXXXXX", out_path[] = "/tmp/test-metrics-out.XXXXXX";
        _cleanup_close_ int in_fd = -EBADF, out_fd = -EBADF;
        char *argv[16] = { (char *) "promtool" };
        char *output;
        int status;

        for (size_t i = 0; args[i]; i++) {
                ASSERT_TRUE(i + 2 < ELEMENTSOF(argv));
                argv[i + 1] = (char *) args[i];
        }

        in_fd = mkstemp(in_path);
        out_fd = mkstemp(out_path);
        ASSERT_TRUE(in_fd >= 0 && out_fd >= 0);
        ASSERT_EQ(write(in_fd, text, strlen(text)), (ssize_t) strlen(text));
        ASSERT_EQ(lseek(in_fd, 0, SEEK_SET), 0);

        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
                    dup2(out_fd, STDERR_FILENO) < 0)
                        _exit(127);
                execv(promtool, argv);
                _exit(127);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);

        _cleanup_fclose_ FILE *out = fopen(out_path, "re");
        ASSERT_TRUE(out);
        output = calloc(1, 65536);
        ASSERT_TRUE(output);
        /* What promtool said, if anything: the caller reads it on failure. */
        size_t got = fread(output, 1, 65535, out);
        output[got] = 0;
        (void) unlink(in_path);
        (void) unlink(out_path);
        *ret_output = output;
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* Everything the renderer can show: probes, node, cluster (unreachable, so a
 * guard denial is on record). */
static char *render_everything(MetricsFormat fmt) {
        ClusterFixture cf;
        sd_event *e = NULL;
        Buf b = BUF_INIT(EXPORTER_MAX_BODY);
        Fixture f;

        ASSERT_OK(sd_event_new(&e));
        cluster_fixture_unreachable(&cf);
        fixture_init(&f);
        fixture_add_node(&f);
        fixture_add_cluster(&f, &cf, e);
        ASSERT_EQ(cluster_ask(e, f.manager.cluster, "imaps", true, NULL, 0), CLUSTER_DENY_DB_UNREACHABLE);
        ASSERT_OK(metrics_render(&f.manager, fmt, &b));
        fixture_done(&f);
        sd_event_unref(e);
        return buf_steal(&b);
}

TEST(promtool_check_metrics) {
        _cleanup_free_ char *promtool = find_promtool(), *text = NULL, *output = NULL;

        if (!promtool) {
                fprintf(stderr, "promtool not found, skipping\n");
                exit(77);
        }

        text = render_everything(METRICS_FORMAT_TEXT);
        ASSERT_CONTAINS(text, "rupost_cluster_withdrawal_denied{reason=\"db-unreachable\"} 1\n");
        ASSERT_CONTAINS(text, "# TYPE rupost_probe_failure_peers gauge\n");

        int status = run_promtool(promtool, text, &output, (const char *const[]) { "check", "metrics", NULL });
        if (output[0])
                fprintf(stderr, "promtool says:\n%s\n---\n%s", output, text);
        ASSERT_STREQ(output, "");
        ASSERT_EQ(status, 0);
}

/* promtool check metrics reads text 0.0.4 only (it takes OpenMetrics counter
 * metadata for families without samples), but its backfill command parses
 * OpenMetrics with Prometheus' own parser, which wants a timestamp on every
 * sample: give it one, and make it write the block. */
TEST(promtool_parses_openmetrics) {
        _cleanup_free_ char *promtool = find_promtool(), *text = NULL, *output = NULL;
        char dir[] = "/tmp/test-metrics-om.XXXXXX", in_path[96], out_path[96];
        Buf stamped = BUF_INIT(0);

        if (!promtool) {
                fprintf(stderr, "promtool not found, skipping\n");
                exit(77);
        }
        text = render_everything(METRICS_FORMAT_OPENMETRICS);

        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                ASSERT_TRUE(nl);
                ASSERT_OK(buf_append(&stamped, p, (size_t) (nl - p)));
                ASSERT_OK(buf_puts(&stamped, p[0] == '#' ? "\n" : " 1700000000\n"));
                p = nl + 1;
        }
        ASSERT_TRUE(mkdtemp(dir));
        snprintf(in_path, sizeof in_path, "%s/in.om", dir);
        snprintf(out_path, sizeof out_path, "%s/blocks", dir);
        _cleanup_fclose_ FILE *in = fopen(in_path, "we");
        ASSERT_TRUE(in);
        ASSERT_EQ(fwrite(stamped.data, 1, stamped.len, in), stamped.len);
        ASSERT_EQ(fflush(in), 0);

        int status = run_promtool(promtool, "", &output,
                                  (const char *const[]) { "tsdb", "create-blocks-from", "openmetrics", in_path,
                                                          out_path, NULL });
        if (status != 0)
                fprintf(stderr, "promtool says:\n%s\n---\n%s", output, stamped.data);
        ASSERT_EQ(status, 0);
        /* It read every sample. */
        char expected[64];
        size_t n_samples = 0;
        for (const char *p = text; (p = strchr(p, '\n')); p++)
                n_samples += p[1] && p[1] != '#';
        snprintf(expected, sizeof expected, " %zu ", n_samples);
        ASSERT_CONTAINS(output, expected);

        buf_done(&stamped);
        _cleanup_free_ char *rm = NULL;
        ASSERT_TRUE(asprintf(&rm, "rm -rf '%s'", dir) > 0);
        ASSERT_EQ(system(rm), 0);
}

static const MetricFamily quoted_help = {
        .name = "rupost_test_quoted", .type = METRIC_GAUGE, .help = "Says \"hi\" \\ and\nmore."
};
static const MetricFamily bytes_counter = {
        .name = "rupost_test_sent_bytes_total", .type = METRIC_COUNTER, .help = "Bytes sent."
};
static const MetricFamily counter_without_total = {
        .name = "rupost_test_restarts", .type = METRIC_COUNTER, .help = "A counter named against the rules."
};
static const MetricFamily no_help = { .name = "rupost_test_silent", .type = METRIC_GAUGE, .help = "" };

/* The non-comment lines of an exposition. */
static char *samples_of(const char *text) {
        Buf b = BUF_INIT(0);

        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                ASSERT_TRUE(nl);
                if (p[0] != '#')
                        ASSERT_OK(buf_append(&b, p, (size_t) (nl - p + 1)));
                p = nl + 1;
        }
        return buf_steal(&b);
}

TEST(openmetrics) {
        _cleanup_free_ char *om = render_everything(METRICS_FORMAT_OPENMETRICS), *error = om_check(om);

        if (error)
                fprintf(stderr, "%s\n---\n%s", error, om);
        ASSERT_TRUE(!error);

        /* One "# EOF", at the very end. */
        ASSERT_TRUE(strlen(om) > 7 && streq(om + strlen(om) - 7, "\n# EOF\n"));
        ASSERT_EQ(count_occurrences(om, "# EOF"), 1);

        /* Counter metadata is named without _total, samples keep it. */
        ASSERT_LINE(om, "# HELP rupost_probe_runs Runs of the probe that finished, including timeouts.\n"
                        "# TYPE rupost_probe_runs counter\n"
                        "rupost_probe_runs_total{probe=\"smtp\",type=\"tcp\"} 42");
        ASSERT_LINE(om, "# TYPE rupost_probe_timeouts counter");
        ASSERT_LINE(om, "# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds");
        ASSERT_CONTAINS(om, "\nprocess_cpu_seconds_total ");
        ASSERT_NOT_CONTAINS(om, "# TYPE rupost_probe_runs_total");
        ASSERT_NOT_CONTAINS(om, "_total counter\n");

        /* Units where the name ends in one, nowhere else. */
        ASSERT_LINE(om, "# TYPE rupost_probe_duration_seconds gauge\n# UNIT rupost_probe_duration_seconds seconds");
        ASSERT_LINE(om, "# UNIT process_resident_memory_bytes bytes");
        ASSERT_LINE(om, "# TYPE rupost_probe_success gauge\nrupost_probe_success{probe=\"smtp\",type=\"tcp\"} 1");

        /* State sets stay gauges with a label, as in text. */
        ASSERT_LINE(om, "# TYPE rupost_node_state gauge");
        ASSERT_LINE(om, "# TYPE rupost_probe_status gauge");

        /* HELP escapes as text does for these. */
        ASSERT_LINE(om, "# HELP rupost_test_latency_seconds A latency\\nwith \\\\ in its help.");
}

TEST(openmetrics_samples_match_text) {
        Buf text = BUF_INIT(EXPORTER_MAX_BODY), om = BUF_INIT(EXPORTER_MAX_BODY);
        _cleanup_free_ char *a = NULL, *b = NULL;
        Fixture f;

        fixture_init(&f);
        fixture_add_node(&f);
        /* The probe part: the process part changes from one call to the next. */
        ASSERT_OK(metrics_render_state(&f.manager, METRICS_FORMAT_TEXT, &text));
        ASSERT_OK(metrics_render_state(&f.manager, METRICS_FORMAT_OPENMETRICS, &om));
        a = samples_of(text.data);
        b = samples_of(om.data);
        ASSERT_TRUE(strlen(a) > 1000);
        ASSERT_STREQ(a, b);
        /* And the text format has none of the OpenMetrics additions. */
        ASSERT_NOT_CONTAINS(text.data, "# UNIT");
        ASSERT_NOT_CONTAINS(text.data, "# EOF");
        buf_done(&text);
        buf_done(&om);

        Buf process = BUF_INIT(EXPORTER_MAX_BODY);
        ASSERT_OK(metrics_render_process(METRICS_FORMAT_TEXT, &process));
        ASSERT_LINE(process.data, "# TYPE process_cpu_seconds_total counter");
        ASSERT_NOT_CONTAINS(process.data, "# EOF");
        buf_done(&process);
        fixture_done(&f);
}

TEST(openmetrics_odd_families) {
        Buf b = BUF_INIT(EXPORTER_MAX_BODY);
        Fixture f;

        fixture_init(&f);
        add_sample(f.probes[0], &quoted_help, NULL, 1);
        add_sample(f.probes[0], &bytes_counter, NULL, 2048);
        add_sample(f.probes[0], &counter_without_total, NULL, 3);
        add_sample(f.probes[1], &no_help, NULL, 4);
        ASSERT_OK(metrics_render(&f.manager, METRICS_FORMAT_OPENMETRICS, &b));

        /* A double quote is escaped in OpenMetrics HELP, not in text 0.0.4. */
        ASSERT_LINE(b.data, "# HELP rupost_test_quoted Says \\\"hi\\\" \\\\ and\\nmore.");
        ASSERT_LINE(b.data, "# HELP rupost_test_sent_bytes Bytes sent.\n"
                            "# TYPE rupost_test_sent_bytes counter\n"
                            "# UNIT rupost_test_sent_bytes bytes\n"
                            "rupost_test_sent_bytes_total{probe=\"smtp\",type=\"tcp\"} 2048");
        /* Renaming the samples would change the series: unknown, names as they are. */
        ASSERT_LINE(b.data, "# TYPE rupost_test_restarts unknown\n"
                            "rupost_test_restarts{probe=\"smtp\",type=\"tcp\"} 3");
        /* An empty HELP is left out rather than written empty. */
        ASSERT_NOT_CONTAINS(b.data, "# HELP rupost_test_silent");
        ASSERT_LINE(b.data, "# TYPE rupost_test_silent gauge");
        buf_done(&b);

        ASSERT_OK(metrics_render(&f.manager, METRICS_FORMAT_TEXT, &b));
        ASSERT_LINE(b.data, "# HELP rupost_test_quoted Says \"hi\" \\\\ and\\nmore.");
        ASSERT_LINE(b.data, "# TYPE rupost_test_sent_bytes_total counter");
        buf_done(&b);
        fixture_done(&f);
}

/* The checker above must be able to fail. */
TEST(openmetrics_checker) {
        static const struct {
                const char *text;
                const char *error; /* NULL: valid */
        } cases[] = {
                /* text 0.0.4 counter metadata */
                { "# HELP a_total x\n# TYPE a_total counter\na_total 1\n# EOF\n", "not named for family" },
                { "# HELP a x\n# TYPE a counter\na_total 1\n# EOF\n", NULL },
                { "# HELP a x\n# TYPE a counter\na 1\n# EOF\n", "not named for family" },
                { "# HELP a x\n# TYPE a counter\na_total -1\n# EOF\n", "negative or NaN counter" },
                { "# HELP a x\n# TYPE a gauge\na 1\n", "no # EOF" },
                { "# HELP a x\n# TYPE a gauge\na 1\n# EOF", "no newline" },
                { "# HELP a x\n# TYPE a gauge\na 1\n# EOF\n\n", "data after # EOF" },
                { "# HELP a say \"x\"\n# TYPE a gauge\na 1\n# EOF\n", "badly escaped HELP" },
                { "# HELP a x\n# TYPE a gauge\na{l=\"x\\t\"} 1\n# EOF\n", "badly escaped label value" },
                { "# HELP a x\n# TYPE a gauge\n# a comment\na 1\n# EOF\n", "a comment other than" },
                { "# HELP a_seconds x\n# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n",
                  "not the name's suffix" },
                { "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\n# TYPE a gauge\n# EOF\n",
                  "appears twice" },
                { "# HELP a x\n# TYPE a gauge\na 1\n# HELP a y\n# EOF\n", "metadata after samples" },
                { "# HELP a x\n# TYPE a gauge\na 1 1700000000\n# EOF\n", "bad value" },
                { "# HELP a x\n# TYPE a gauge\na one\n# EOF\n", "bad value" },
                { "# TYPE a gauge\na 1\n# EOF\n", "sample without HELP" },
                { "# HELP a x\n# TYPE a gauge\na{l=\"v\",m=\"\\\"\"} +Inf\n# EOF\n", NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = om_check(cases[i].text);
                if (!cases[i].error) {
                        if (error)
                                fprintf(stderr, "case %zu: %s\n", i, error);
                        ASSERT_TRUE(!error);
                } else {
                        if (!error)
                                fprintf(stderr, "case %zu passed: %s", i, cases[i].text);
                        ASSERT_CONTAINS(error, cases[i].error);
                }
        }
}

DEFINE_TEST_MAIN();
