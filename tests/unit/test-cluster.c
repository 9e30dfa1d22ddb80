/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The cluster state against a real PostgreSQL started for the test: the
 * schema migrates once when two agents start at once, leases are kept on the
 * server's clock, a change reaches another agent through NOTIFY long before
 * its next renewal, the agent reconnects and listens again after the server
 * restarts, the guards refuse the withdrawals invariant 3 forbids, a node cut
 * off from the DB fences itself before its lease expires while a shared
 * outage fences nobody, and a DB that never answers blocks nothing. With
 * them, what node.c and the manager make of the registry: a node starting
 * after a restart of its agent asks the guards when it was in service
 * before, and a reload clears the failures of the probes it removed.
 * Skipped (77) when PostgreSQL is not installed. */

#include <signal.h>

#include "build-config.h"
#include "cluster-fixture.h"
#include "cluster-schema.h"
#include "cluster.h"
#include "config.h"
#include "manager.h"
#include "node.h"
#include "pg-server.h"
#include "run-until.h"

static PgServer server;

static void ensure_server(void) {
        if (server.running)
                return;
        int r = pg_server_start(&server, NULL, false);
        if (r == -ENOENT) {
                fprintf(stderr, "PostgreSQL is not installed, skipping\n");
                exit(77);
        }
        ASSERT_OK(r);
        ASSERT_EQ(pg_server_sql(&server, "postgres", "CREATE DATABASE rupost"), 0);
}

/* Blocking, from the test only: a connection of its own to the rupost DB. */
static PGconn *sql_connect(void) {
        char port[8];
        snprintf(port, sizeof port, "%u", server.port);
        const char *const k[] = { "hostaddr", "port", "user", "password", "dbname", "sslmode", NULL };
        const char *const v[] = { "127.0.0.1", port, "rupost", PG_SERVER_PASSWORD, "rupost", "disable", NULL };
        PGconn *pg = PQconnectdbParams(k, v, 0);
        ASSERT_EQ(PQstatus(pg), CONNECTION_OK);
        return pg;
}

/* One value of one query. */
static char *sql_value(const char *sql) {
        PGconn *pg = sql_connect();
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
                ASSERT_FAIL("%s: %s", sql, PQresultErrorMessage(r));
        char *s = strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
        PQclear(r);
        PQfinish(pg);
        ASSERT_TRUE(s);
        return s;
}

static void sql_exec(const char *sql) {
        free(sql_value(sql));
}

typedef struct Agent {
        ClusterConfig config;
        char conninfo[256];
        char peer[64];
        Cluster *cluster;
        bool fenced;
        unsigned fence_calls;
        usec_t fenced_at; /* CLOCK_REALTIME */
} Agent;

static void on_fence(Cluster *c, bool fenced, const char *reason, void *userdata) {
        Agent *a = userdata;
        a->fenced = fenced;
        a->fence_calls++;
        if (fenced) {
                a->fenced_at = now(CLOCK_REALTIME);
                ASSERT_CONTAINS(reason, "self-fenced: cannot renew the cluster lease");
        }
}

/* Timings short enough for a test, long enough for a loaded machine. */
static void agent_start(Agent *a, sd_event *e, const char *name, const char *user, const char *password,
                        uint16_t port, usec_t renew, usec_t fence, usec_t ttl) {
        *a = (Agent) {};
        snprintf(a->conninfo, sizeof a->conninfo,
                 "hostaddr=127.0.0.1 port=%u user=%s dbname=rupost sslmode=disable", port, user);
        snprintf(a->peer, sizeof a->peer, "127.0.0.1:%u", test_free_port());
        a->config = (ClusterConfig) {
                .enabled = true,
                .conninfo = a->conninfo,
                .password = (char *) password,
                .lease_ttl = ttl,
                .renew_interval = renew,
                .self_fence_after = fence,
                .max_withdrawn_share = 0.5,
                .shared_failure_share = 0.5,
                .shared_failure_window = 60 * USEC_PER_SEC,
                .peer_address = a->peer,
        };
        ASSERT_OK(cluster_new(e, &a->config, name, &a->cluster));
        cluster_set_fence_callback(a->cluster, on_fence, a);
}

static void agent_stop(Agent *a) {
        a->cluster = cluster_free(a->cluster);
}

typedef bool (*Cond)(void *userdata);

static bool run_until(sd_event *e, Cond cond, void *userdata, usec_t limit) {
        usec_t end = now(CLOCK_MONOTONIC) + limit;
        while (!cond(userdata)) {
                if (now(CLOCK_MONOTONIC) >= end)
                        return false;
                ASSERT_OK(sd_event_run(e, 20 * USEC_PER_MSEC));
        }
        return true;
}

static void run_for(sd_event *e, usec_t d) {
        usec_t end = now(CLOCK_MONOTONIC) + d;
        while (now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(e, 20 * USEC_PER_MSEC));
}

static bool db_ok(void *userdata) {
        return cluster_db_ok(((Agent *) userdata)->cluster);
}

static bool both_ok(void *userdata) {
        Agent *a = userdata;
        return cluster_db_ok(a[0].cluster) && cluster_db_ok(a[1].cluster);
}

static bool both_lost(void *userdata) {
        Agent *a = userdata;
        return !cluster_db_ok(a[0].cluster) && !cluster_db_ok(a[1].cluster);
}

static bool is_fenced(void *userdata) {
        return ((Agent *) userdata)->fenced;
}

static const ClusterNode *find_node(Cluster *c, const char *name) {
        const ClusterNode *nodes;
        size_t n = cluster_nodes(c, &nodes);
        for (size_t i = 0; i < n; i++)
                if (streq(nodes[i].name, name))
                        return &nodes[i];
        return NULL;
}

typedef struct Expect {
        Cluster *cluster;
        const char *name;
        NodeStateId state;
        size_t n_nodes;
} Expect;

static bool sees_state(void *userdata) {
        Expect *x = userdata;
        const ClusterNode *n = find_node(x->cluster, x->name);
        return n && n->state == x->state;
}

static bool sees_count(void *userdata) {
        Expect *x = userdata;
        const ClusterNode *nodes;
        return cluster_nodes(x->cluster, &nodes) == x->n_nodes;
}

static bool strv_contains_test(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static void reset_registry(void) {
        sql_exec("DO $$ BEGIN IF to_regclass('rupost_agent.nodes') IS NOT NULL THEN "
                 "DELETE FROM rupost_agent.nodes; END IF; END $$");
}

/* ---- config ---- */

static char *load_errors(const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;
        int r = config_load_string("agent.yaml", yaml, strlen(yaml), &config, &errors);
        config_free(config);
        if (r >= 0)
                return strdup("");
        size_t len = 0;
        for (char **e = errors; e && *e; e++)
                len += strlen(*e) + 1;
        char *s = calloc(len + 1, 1);
        for (char **e = errors; e && *e; e++) {
                strcat(s, *e);
                strcat(s, "\n");
        }
        return s;
}

TEST(config_cluster_section) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(config_freep) Config *config = NULL;
        const char *ok = "node: n1\n"
                         "cluster:\n"
                         "  conninfo: host=192.0.2.10,192.0.2.11 port=5432,5432 target_session_attrs=read-write\n"
                         "  max_withdrawn_share: 25%\n"
                         "  shared_failure_share: 0.75\n"
                         "  peer_address: 192.0.2.21:9471\n";
        ASSERT_OK(config_load_string("agent.yaml", ok, strlen(ok), &config, &errors));
        ASSERT_TRUE(config->cluster.enabled);
        ASSERT_EQ(config->cluster.lease_ttl, 15 * USEC_PER_SEC);
        ASSERT_EQ(config->cluster.renew_interval, 3 * USEC_PER_SEC);
        ASSERT_EQ(config->cluster.self_fence_after, 10 * USEC_PER_SEC);
        ASSERT_TRUE(fabs(config->cluster.max_withdrawn_share - 0.25) < 1e-9);
        ASSERT_TRUE(fabs(config->cluster.shared_failure_share - 0.75) < 1e-9);
        ASSERT_STREQ(config->cluster.peer_address, "192.0.2.21:9471");
        /* Never guessed (the database may see a pooler's address), never
         * only a port. */
        _cleanup_free_ char *p1 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n");
        ASSERT_CONTAINS(p1, "cluster.peer_address: is required: give the address this node's peers reach it on");
        _cleanup_free_ char *p2 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  peer_address: \":9471\"\n");
        ASSERT_CONTAINS(p2, "cluster.peer_address: needs a host, not only a port");

        _cleanup_free_ char *e1 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  renew_interval: 5s\n");
        ASSERT_CONTAINS(e1, "cluster.self_fence_after: must be longer than twice renew_interval (5s)");
        _cleanup_free_ char *e2 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  self_fence_after: 20s\n");
        ASSERT_CONTAINS(e2, "cluster.self_fence_after: must be at least 2s shorter than lease_ttl (15s)");
        /* Shorter, but without the margin in which a fenced node kills its group. */
        _cleanup_free_ char *e2b = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  self_fence_after: 14s\n");
        ASSERT_CONTAINS(e2b, "cluster.self_fence_after: must be at least 2s shorter than lease_ttl (15s)");
        _cleanup_free_ char *e3 = load_errors("cluster:\n  conninfo: host=db.example.org dbname=rupost\n");
        ASSERT_CONTAINS(e3, "host 'db.example.org' is a name");
        _cleanup_free_ char *e4 = load_errors("cluster:\n  conninfo: host=db.example.org hostaddr=192.0.2.1\n  peer_address: 192.0.2.21:9471\n");
        ASSERT_STREQ(e4, "");
        _cleanup_free_ char *e5 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  max_withdrawn_share: 150%\n");
        ASSERT_CONTAINS(e5, "cluster.max_withdrawn_share: '150%' is out of range");
        _cleanup_free_ char *e6 = load_errors("cluster:\n  conninfo: \"port='5432\"\n");
        ASSERT_CONTAINS(e6, "cluster.conninfo: is not a valid libpq connection string");
        _cleanup_free_ char *e7 = load_errors("cluster:\n  lease_ttl: 5s\n");
        ASSERT_CONTAINS(e7, "conninfo");
        _cleanup_free_ char *e8 = load_errors("cluster:\n  conninfo: hostaddr=127.0.0.1\n  password_file: /nonexistent/pw\n");
        ASSERT_CONTAINS(e8, "cluster.password_file: cannot use '/nonexistent/pw'");
}

/* ---- against the server ---- */

TEST(migrate_concurrently_and_register) {
        sd_event *e = NULL;
        Agent a[2];
        char q[256];

        ensure_server();
        sql_exec("DROP SCHEMA IF EXISTS rupost_agent CASCADE");
        ASSERT_OK(sd_event_new(&e));
        /* Two agents on an empty database at the same moment. */
        agent_start(&a[0], e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 200 * USEC_PER_MSEC,
                    1 * USEC_PER_SEC, 3 * USEC_PER_SEC);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, 200 * USEC_PER_MSEC,
                    1 * USEC_PER_SEC, 3 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        ASSERT_EQ(cluster_db_schema_version(a[0].cluster), cluster_schema_version());
        ASSERT_EQ(cluster_db_schema_version(a[1].cluster), cluster_schema_version());
        snprintf(q, sizeof q, "SELECT count(*) = %u AND min(version) = 1 FROM rupost_agent.schema_version",
                 cluster_schema_version());
        _cleanup_free_ char *once = sql_value(q);
        ASSERT_STREQ(once, "t");

        /* The lease is on the server's clock: now() + ttl, renewed. */
        _cleanup_free_ char *left = sql_value("SELECT extract(epoch FROM lease_expires - now()) BETWEEN 2.5 AND 3.0 "
                                              "FROM rupost_agent.nodes WHERE name = 'n1'");
        ASSERT_STREQ(left, "t");
        _cleanup_free_ char *st = sql_value("SELECT state || '/' || agent_version || '/' || (peer_address IS NOT NULL) "
                                            "FROM rupost_agent.nodes WHERE name = 'n2'");
        ASSERT_STREQ(st, "starting/" PROJECT_VERSION "/true");
        _cleanup_free_ char *t1 = sql_value("SELECT lease_expires FROM rupost_agent.nodes WHERE name = 'n1'");
        run_for(e, 500 * USEC_PER_MSEC);
        _cleanup_free_ char *t2 = sql_value("SELECT lease_expires FROM rupost_agent.nodes WHERE name = 'n1'");
        ASSERT_FALSE(streq(t1, t2));
        ASSERT_TRUE(cluster_last_renew(a[0].cluster) > now(CLOCK_REALTIME) - USEC_PER_SEC);

        /* Both see both; a later start migrates nothing again. */
        const ClusterNode *nodes;
        ASSERT_EQ(cluster_nodes(a[0].cluster, &nodes), 2u);
        ASSERT_STREQ(nodes[0].name, "n1");
        ASSERT_TRUE(nodes[0].self);
        ASSERT_TRUE(cluster_node_lease_remaining(&nodes[1]) > 1.0);

        agent_stop(&a[0]);
        agent_stop(&a[1]);
        sd_event_unref(e);
        reset_registry();
}

TEST(notify_reaches_peer_and_survives_restart) {
        sd_event *e = NULL;
        Agent a[2];

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        /* Renewals far apart: only a NOTIFY can bring the news quickly. */
        agent_start(&a[0], e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 3 * USEC_PER_SEC,
                    8 * USEC_PER_SEC, 20 * USEC_PER_SEC);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, 3 * USEC_PER_SEC,
                    8 * USEC_PER_SEC, 20 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        ASSERT_TRUE(run_until(e, sees_count, &(Expect) { .cluster = a[1].cluster, .n_nodes = 2 }, 5 * USEC_PER_SEC));

        usec_t t0 = now(CLOCK_MONOTONIC);
        cluster_publish(a[0].cluster, NODE_IN_SERVICE, "");
        ASSERT_TRUE(run_until(e, sees_state,
                              &(Expect) { .cluster = a[1].cluster, .name = "n1", .state = NODE_IN_SERVICE },
                              1 * USEC_PER_SEC));
        fprintf(stderr, "state change seen by the peer after %.1f ms\n",
                (double) (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
        _cleanup_free_ char *st = sql_value("SELECT state FROM rupost_agent.nodes WHERE name = 'n1'");
        ASSERT_STREQ(st, "in_service");

        /* Restart the server: both reconnect and LISTEN again. */
        pg_server_stop(&server);
        ASSERT_TRUE(run_until(e, both_lost, a, 10 * USEC_PER_SEC));
        pg_server_spawn(&server);
        server.running = true;
        pg_server_wait_ready(&server);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));

        t0 = now(CLOCK_MONOTONIC);
        cluster_publish(a[0].cluster, NODE_WITHDRAWN, "smtp: connection refused");
        ASSERT_TRUE(run_until(e, sees_state,
                              &(Expect) { .cluster = a[1].cluster, .name = "n1", .state = NODE_WITHDRAWN },
                              1 * USEC_PER_SEC));
        fprintf(stderr, "after the restart, seen after %.1f ms\n", (double) (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
        const ClusterNode *n1 = find_node(a[1].cluster, "n1");
        ASSERT_STREQ(n1->reason, "smtp: connection refused");
        ASSERT_TRUE(n1->updated_at > now(CLOCK_REALTIME) - 5 * USEC_PER_SEC);

        agent_stop(&a[0]);
        agent_stop(&a[1]);
        sd_event_unref(e);
        reset_registry();
}

static bool renewed(void *userdata) {
        return cluster_last_renew(((Agent *) userdata)->cluster) != 0;
}

TEST(restarted_agent_renews_its_own_lease_at_once) {
        sd_event *e = NULL;
        Agent a;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        /* A lease far longer than the wait below. */
        agent_start(&a, e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 200 * USEC_PER_MSEC,
                    1 * USEC_PER_SEC, 30 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, renewed, &a, 10 * USEC_PER_SEC));
        /* The agent goes away (a crash: nothing released) while its lease is live... */
        agent_stop(&a);
        /* ...and the restarted agent on the same machine renews its own row at
         * once, instead of waiting out the old lease and fencing meanwhile. */
        agent_start(&a, e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 200 * USEC_PER_MSEC,
                    1 * USEC_PER_SEC, 30 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, renewed, &a, 3 * USEC_PER_SEC));
        run_for(e, 1500 * USEC_PER_MSEC);
        ASSERT_FALSE(a.fenced);
        agent_stop(&a);
        sd_event_unref(e);
        reset_registry();
}

/* A row written by hand: `lease` ahead of now (or behind, "-1 second"). A
 * live row renews every minute, so it stays live through the test; an
 * expired one last renewed an hour ago. */
static void add_node(const char *name, const char *state, const char *lease) {
        char q[512];
        bool expired = lease[0] == '-';
        snprintf(q, sizeof q,
                 "INSERT INTO rupost_agent.nodes (name, state, lease_expires, renewed_at, live_for) "
                 "VALUES ('%s', '%s', now() + interval '%s', now() - interval '%s', interval '1 minute')",
                 name, state, lease, expired ? "1 hour" : "0 seconds");
        sql_exec(q);
}

static ClusterVerdict check(sd_event *e, Cluster *c, size_t n_nodes, const char *probe, char *why, size_t len) {
        ASSERT_TRUE(run_until(e, sees_count, &(Expect) { .cluster = c, .n_nodes = n_nodes }, 3 * USEC_PER_SEC));
        return cluster_ask(e, c, probe, true, why, len);
}

TEST(guards) {
        sd_event *e = NULL;
        Agent a;
        char why[256];

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        agent_start(&a, e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 3 * USEC_PER_SEC, 8 * USEC_PER_SEC,
                    20 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, db_ok, &a, 10 * USEC_PER_SEC));
        cluster_publish(a.cluster, NODE_IN_SERVICE, "");

        /* Alone: the last node in service stays. */
        ASSERT_EQ(check(e, a.cluster, 1, "smtp", why, sizeof why), CLUSTER_DENY_LAST_IN_SERVICE);
        ASSERT_CONTAINS(why, "no other node of 1 is in service");
        ASSERT_EQ(cluster_last_denial(a.cluster), CLUSTER_DENY_LAST_IN_SERVICE);

        /* A peer whose lease expired is not in service either. */
        add_node("n2", "in_service", "-1 second");
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_DENY_LAST_IN_SERVICE);
        sql_exec("UPDATE rupost_agent.nodes SET lease_expires = now() + interval '1 minute', reason = 'x' "
                 "WHERE name = 'n2'");
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_ALLOW);

        /* The peer sees the same probe failing: shared, an alert only. */
        sql_exec("INSERT INTO rupost_agent.probe_failures (node, probe, reason) VALUES ('n2', 'smtp', 'timeout')");
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_DENY_SHARED_FAILURE);
        ASSERT_CONTAINS(why, "1 of 1 other nodes in service see probe 'smtp' failing");
        /* A local fault (no probe to compare: a unit not running) is never
         * shared. */
        ASSERT_EQ(check(e, a.cluster, 2, NULL, why, sizeof why), CLUSTER_ALLOW);
        ASSERT_EQ(check(e, a.cluster, 2, "imap", why, sizeof why), CLUSTER_ALLOW);
        /* A withdrawn node's members fail because its group is stopped: that
         * says nothing about a shared dependency. n3 is withdrawn and fails
         * smtp; n2 serves and no longer does. */
        sql_exec("DELETE FROM rupost_agent.probe_failures");
        add_node("n3", "withdrawn", "1 minute");
        add_node("n4", "in_service", "1 minute");
        sql_exec("INSERT INTO rupost_agent.probe_failures (node, probe, reason) VALUES ('n3', 'smtp', 'refused')");
        ASSERT_EQ(check(e, a.cluster, 4, "smtp", why, sizeof why), CLUSTER_ALLOW);
        sql_exec("DELETE FROM rupost_agent.nodes WHERE name IN ('n3', 'n4')");
        sql_exec("INSERT INTO rupost_agent.probe_failures (node, probe, reason) VALUES ('n2', 'smtp', 'timeout')");
        run_for(e, 300 * USEC_PER_MSEC);
        /* Cleared long ago: no longer counts. */
        sql_exec("UPDATE rupost_agent.probe_failures SET cleared_at = now() - interval '10 minutes'");
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_ALLOW);
        /* Cleared within the window: still counts as seen at once. */
        sql_exec("UPDATE rupost_agent.probe_failures SET cleared_at = now() - interval '10 seconds'");
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_DENY_SHARED_FAILURE);
        sql_exec("DELETE FROM rupost_agent.probe_failures");

        /* 4 nodes, one out: a second may go (2 = 50% of 4). */
        add_node("n3", "withdrawn", "1 minute");
        add_node("n4", "in_service", "1 minute");
        ASSERT_EQ(check(e, a.cluster, 4, "smtp", why, sizeof why), CLUSTER_ALLOW);
        /* 5 nodes, two out: a third may not (floor(2.5) = 2). */
        add_node("n5", "maintenance", "1 minute");
        ASSERT_EQ(check(e, a.cluster, 5, "smtp", why, sizeof why), CLUSTER_DENY_MAX_WITHDRAWN);
        ASSERT_CONTAINS(why, "2 of 5 nodes are out of service already, at most 2 may be");

        /* Our own failure report reaches the DB for the others' guards. */
        cluster_report_probe(a.cluster, "imap", true, "no banner");
        run_for(e, 300 * USEC_PER_MSEC);
        _cleanup_free_ char *f = sql_value("SELECT probe || ':' || reason || ':' || (cleared_at IS NULL) "
                                           "FROM rupost_agent.probe_failures WHERE node = 'n1'");
        ASSERT_STREQ(f, "imap:no banner:true");
        cluster_report_probe(a.cluster, "imap", false, NULL);
        run_for(e, 300 * USEC_PER_MSEC);
        _cleanup_free_ char *g = sql_value("SELECT cleared_at IS NOT NULL FROM rupost_agent.probe_failures "
                                           "WHERE node = 'n1'");
        ASSERT_STREQ(g, "t");

        /* A peer whose agent or host died keeps a lease on the books for a
         * while, but counts as live, and so as serving, for only two of its
         * renew intervals after its last renewal (item 2 of issue 10). */
        sql_exec("DELETE FROM rupost_agent.nodes WHERE name <> 'n1'");
        add_node("n2", "in_service", "1 minute");
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_ALLOW);
        sql_exec("UPDATE rupost_agent.nodes SET live_for = interval '1 second',"
                 " renewed_at = now() - interval '2500 milliseconds', reason = 'dead' WHERE name = 'n2'");
        ASSERT_EQ(check(e, a.cluster, 2, "smtp", why, sizeof why), CLUSTER_DENY_LAST_IN_SERVICE);
        /* ...and the view says so too. */
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_FALSE(cluster_node_live(find_node(a.cluster, "n2")));
        ASSERT_TRUE(cluster_node_lease_remaining(find_node(a.cluster, "n2")) > 30);

        /* Without the DB the guards cannot be consulted: no withdrawal. */
        agent_stop(&a);
        agent_start(&a, e, "n1", "rupost", "wrong-password", server.port, 3 * USEC_PER_SEC, 8 * USEC_PER_SEC,
                    20 * USEC_PER_SEC);
        run_for(e, 300 * USEC_PER_MSEC);
        ASSERT_EQ(cluster_ask(e, a.cluster, "smtp", true, why, sizeof why), CLUSTER_DENY_DB_UNREACHABLE);
        ASSERT_CONTAINS(why, "the cluster database is unreachable");

        agent_stop(&a);
        sd_event_unref(e);
        reset_registry();
}

typedef struct PeersExpect {
        Cluster *cluster;
        const char *probe;
        unsigned failing, live;
} PeersExpect;

static bool sees_peers(void *userdata) {
        PeersExpect *x = userdata;
        unsigned live, failing = cluster_peers_failing(x->cluster, x->probe, &live);
        return failing == x->failing && live == x->live;
}

/* Any probe's failure, not only a mail group member's, reaches the other
 * agents through the registry (and NOTIFY, well before the next renewal),
 * and each counts the others failing the same probe now. */
TEST(peers_failing) {
        sd_event *e = NULL;
        Agent a[3];
        unsigned live;

        ensure_server();
        reset_registry();
        ASSERT_OK(sd_event_new(&e));
        /* Renewals 30 s apart: only NOTIFY can bring the news in time. */
        agent_start(&a[0], e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 30 * USEC_PER_SEC,
                    70 * USEC_PER_SEC, 80 * USEC_PER_SEC);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, 30 * USEC_PER_SEC,
                    70 * USEC_PER_SEC, 80 * USEC_PER_SEC);
        agent_start(&a[2], e, "n3", "rupost", PG_SERVER_PASSWORD, server.port, 30 * USEC_PER_SEC,
                    70 * USEC_PER_SEC, 80 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[0].cluster, "memcached", 0, 2 }, 10 * USEC_PER_SEC));

        cluster_report_probe(a[1].cluster, "memcached", true, "connection refused");
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[0].cluster, "memcached", 1, 2 }, 5 * USEC_PER_SEC));
        /* Its own report does not count for itself. */
        ASSERT_EQ(cluster_peers_failing(a[1].cluster, "memcached", &live), 0);
        ASSERT_EQ(live, 2);
        ASSERT_EQ(cluster_peers_failing(a[0].cluster, "postgres", NULL), 0);

        cluster_report_probe(a[2].cluster, "memcached", true, "connection refused");
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[0].cluster, "memcached", 2, 2 }, 5 * USEC_PER_SEC));
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[1].cluster, "memcached", 1, 2 }, 5 * USEC_PER_SEC));

        /* Recovered: no longer counted, although the withdrawal guard's
         * window still remembers it. */
        cluster_report_probe(a[1].cluster, "memcached", false, NULL);
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[0].cluster, "memcached", 1, 2 }, 5 * USEC_PER_SEC));
        ASSERT_TRUE(strv_contains_test(find_node(a[0].cluster, "n2")->failing_probes, "memcached"));

        /* A peer gone (its lease dropped) is not live, whatever it reported. */
        agent_stop(&a[2]);
        sql_exec("UPDATE rupost_agent.nodes SET lease_expires = now() - interval '1 second', reason = 'gone' "
                 "WHERE name = 'n3'");
        /* Apart: a change of the lease is a renewal to the trigger. */
        sql_exec("UPDATE rupost_agent.nodes SET renewed_at = now() - interval '1 hour' WHERE name = 'n3'");
        ASSERT_TRUE(run_until(e, sees_peers, &(PeersExpect) { a[0].cluster, "memcached", 0, 1 }, 5 * USEC_PER_SEC));

        agent_stop(&a[0]);
        agent_stop(&a[1]);
        sd_event_unref(e);
        reset_registry();
}

/* n1 connects as its own role so that the test can cut it off alone. */
static void cut_off_n1(bool cut) {
        sql_exec(cut ? "ALTER ROLE node1 NOLOGIN" : "ALTER ROLE node1 LOGIN");
        if (cut)
                sql_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'node1'");
}

static usec_t lease_expiry_of(const char *name) {
        char q[256];
        snprintf(q, sizeof q, "SELECT (extract(epoch FROM lease_expires) * 1000000)::bigint "
                              "FROM rupost_agent.nodes WHERE name = '%s'", name);
        _cleanup_free_ char *s = sql_value(q);
        return (usec_t) strtoull(s, NULL, 10);
}

TEST(self_fence) {
        sd_event *e = NULL;
        Agent a[2];
        /* Wide enough for a sanitizer build on a loaded machine. */
        const usec_t renew = 400 * USEC_PER_MSEC, fence = 2 * USEC_PER_SEC, ttl = 4 * USEC_PER_SEC;

        ensure_server();
        sql_exec("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'node1') THEN "
                 "CREATE ROLE node1 LOGIN SUPERUSER PASSWORD 'node1-pw'; END IF; END $$");
        ASSERT_OK(sd_event_new(&e));

        /* 1. Cut off alone while the peer renews: n1 fences itself before
         * its lease expires on the server's clock. */
        agent_start(&a[0], e, "n1", "node1", "node1-pw", server.port, renew, fence, ttl);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, renew, fence, ttl);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        run_for(e, 500 * USEC_PER_MSEC);
        cut_off_n1(true);
        usec_t expiry = lease_expiry_of("n1");
        ASSERT_TRUE(run_until(e, is_fenced, &a[0], 6 * USEC_PER_SEC));
        fprintf(stderr, "n1 fenced %.0f ms before its lease expired\n",
                ((double) expiry - (double) a[0].fenced_at) / USEC_PER_MSEC);
        ASSERT_TRUE(a[0].fenced_at < expiry);
        ASSERT_TRUE(cluster_self_fenced(a[0].cluster));
        ASSERT_FALSE(a[1].fenced);
        /* Back: the fence is lifted. */
        cut_off_n1(false);
        ASSERT_TRUE(run_until(e, db_ok, &a[0], 5 * USEC_PER_SEC));
        ASSERT_FALSE(a[0].fenced);
        ASSERT_EQ(a[0].fence_calls, 2u);

        /* 2. The DB down for everyone: peers reach each other and both say
         * they lost it, so nobody fences. */
        cluster_publish(a[0].cluster, NODE_IN_SERVICE, "");
        cluster_publish(a[1].cluster, NODE_IN_SERVICE, "");
        run_for(e, 500 * USEC_PER_MSEC);
        pg_server_stop(&server);
        run_for(e, ttl + 500 * USEC_PER_MSEC);
        ASSERT_FALSE(a[0].fenced);
        ASSERT_FALSE(a[1].fenced);
        ASSERT_TRUE(cluster_shared_outage(a[0].cluster) && cluster_shared_outage(a[1].cluster));

        /* The policy for such an outage: a node withdraws through its
         * agent-check alone when every peer serves with healthy members.
         * Both failing at once: each sees the other's failure, neither goes. */
        char why[512];
        cluster_set_members_failing(a[0].cluster, true);
        cluster_set_members_failing(a[1].cluster, true);
        WithdrawalAnswer w0 = {}, w1 = {};
        ASSERT_OK(cluster_request_withdrawal(a[0].cluster, "imap", NODE_WITHDRAWN, "imap: x", withdrawal_answered, &w0));
        ASSERT_OK(cluster_request_withdrawal(a[1].cluster, "imap", NODE_WITHDRAWN, "imap: x", withdrawal_answered, &w1));
        while (!w0.done || !w1.done)
                ASSERT_OK(sd_event_run(e, 20 * USEC_PER_MSEC));
        ASSERT_EQ(w0.verdict, CLUSTER_DENY_DB_UNREACHABLE);
        ASSERT_EQ(w1.verdict, CLUSTER_DENY_DB_UNREACHABLE);
        ASSERT_CONTAINS(w0.why, "only 0 of the 1 peers with a lease consent");
        /* Only n1 fails: n2 consents. */
        cluster_set_members_failing(a[1].cluster, false);
        ASSERT_EQ(cluster_ask(e, a[0].cluster, "imap", false, why, sizeof why), CLUSTER_ALLOW);
        cluster_publish(a[0].cluster, NODE_WITHDRAWN, "imap: x");
        /* n1 out, n2 may not follow it. */
        cluster_set_members_failing(a[1].cluster, true);
        ASSERT_EQ(cluster_ask(e, a[1].cluster, "imap", false, why, sizeof why), CLUSTER_DENY_DB_UNREACHABLE);
        cluster_set_members_failing(a[0].cluster, false);
        cluster_set_members_failing(a[1].cluster, false);
        cluster_publish(a[0].cluster, NODE_IN_SERVICE, "");

        pg_server_spawn(&server);
        server.running = true;
        pg_server_wait_ready(&server);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        /* Reconnecting one after the other fences nobody either. */
        run_for(e, 500 * USEC_PER_MSEC);
        ASSERT_EQ(a[0].fence_calls, 2u);
        ASSERT_EQ(a[1].fence_calls, 0u);
        ASSERT_TRUE(cluster_renewing_for(a[0].cluster) > 0);
        ASSERT_TRUE(cluster_renewing_for(a[0].cluster) < 5 * USEC_PER_SEC);

        /* 3. Cut off and the peer unreachable too (its agent is gone): n1
         * cannot reach a majority and fences. */
        run_for(e, 500 * USEC_PER_MSEC);
        agent_stop(&a[1]);
        cut_off_n1(true);
        ASSERT_TRUE(run_until(e, is_fenced, &a[0], 6 * USEC_PER_SEC));
        cut_off_n1(false);

        agent_stop(&a[0]);
        sd_event_unref(e);
        reset_registry();
}

/* ---- the node asks the guards before it withdraws (node.c) ---- */

typedef struct NodeRig {
        Config config;
        Manager manager;
        Probe *probes[1];
        char *members[2];
        char state_dir[64];
        char state_file[96];
} NodeRig;

/* A node named n1 in `state`, with one member probe "imap", on cluster c
 * (NULL: no cluster section). It has no mail group: its decisions are all
 * there is to see. The rig must stay where it is while the node lives. */
static void node_rig_init(NodeRig *r, sd_event *e, Cluster *c, NodeStateId state) {
        NodeState st = { .id = state };

        *r = (NodeRig) { .members = { (char *) "imap", NULL } };
        snprintf(r->state_dir, sizeof r->state_dir, "/tmp/test-cluster-XXXXXX");
        ASSERT_TRUE(mkdtemp(r->state_dir));
        snprintf(r->state_file, sizeof r->state_file, "%s/state", r->state_dir);
        ASSERT_OK(probe_new(probe_type_find("tcp"), "imap", &r->probes[0]));
        r->config = (Config) {
                .node = (char *) "n1",
                .probes = r->probes,
                .n_probes = 1,
                .healing = {
                        .enabled = true,
                        .member_probes = r->members,
                        .backoff_initial = 5 * USEC_PER_SEC,
                        .backoff_max = 60 * USEC_PER_SEC,
                        .stable_period = 600 * USEC_PER_SEC,
                        .round_interval = USEC_PER_SEC,
                        .healthy_rounds = 3,
                        .state_file = r->state_file,
                },
        };
        r->manager = (Manager) { .event = e, .config = &r->config, .cluster = c };
        ASSERT_OK(node_new_for_test(&r->manager, &r->config.healing, &st, now(CLOCK_REALTIME), &r->manager.node));
}

static void node_rig_done(NodeRig *r) {
        r->manager.node = node_free(r->manager.node);
        free(r->manager.last_status);
        probe_free(r->probes[0]);
        (void) unlink(r->state_file);
        ASSERT_OK(rmdir(r->state_dir));
}

/* The member turns critical, reported as the probe core does. */
static void member_fails(NodeRig *r, const char *why) {
        Probe *p = r->probes[0];
        ProbeStatus old = p->status;

        p->have_result = true;
        p->status = p->last.status = PROBE_CRITICAL;
        free(p->last.reason);
        p->last.reason = strdup(why);
        ASSERT_TRUE(p->last.reason);
        manager_probe_status_changed(&r->manager, p, old);
        /* The database answers a withdrawal request on the loop. */
        usec_t end = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        while (cluster_withdrawal_pending(r->manager.cluster)) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < end);
                ASSERT_OK(sd_event_run(r->manager.event, 20 * USEC_PER_MSEC));
        }
}

static NodeStateId node_rig_state(const NodeRig *r) {
        return node_get_state(r->manager.node)->id;
}

static char *registry_state(const char *name) {
        char q[128];
        snprintf(q, sizeof q, "SELECT state FROM rupost_agent.nodes WHERE name = '%s'", name);
        return sql_value(q);
}

static bool knows_previous(void *userdata) {
        NodeStateId s;
        return cluster_previous_state(((Agent *) userdata)->cluster, &s) >= 0 &&
               cluster_db_ok(((Agent *) userdata)->cluster);
}

/* A restart of n1's agent: a new Cluster on the same machine. */
static void restart_n1(Agent *a, sd_event *e, size_t n_nodes) {
        agent_stop(a);
        agent_start(a, e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 3 * USEC_PER_SEC, 8 * USEC_PER_SEC,
                    20 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, knows_previous, a, 10 * USEC_PER_SEC));
        ASSERT_TRUE(run_until(e, sees_count, &(Expect) { .cluster = a->cluster, .n_nodes = n_nodes }, 3 * USEC_PER_SEC));
}

/* After a restart of its agent a node is starting while its mail group runs
 * on. When the previous run had it in service, a member failure must ask
 * the guards like one in service: the last node serving mail (its peer
 * withdrawn) is kept in service, not withdrawn with its group stopped.
 * With a peer in service it withdraws (the reconcile of a half-running
 * group). A node that was not in service before, or that starts after
 * maintenance, takes nothing away and withdraws without asking: that is how
 * it restarts a stopped group when every node is down. */
TEST(starting_node_asks_the_guards) {
        sd_event *e = NULL;
        NodeRig rig;
        NodeStateId prev;
        Agent a;

        ensure_server();
        reset_registry();
        ASSERT_OK(sd_event_new(&e));
        /* The previous run of n1's agent had it in service; n2 is withdrawn. */
        agent_start(&a, e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 3 * USEC_PER_SEC, 8 * USEC_PER_SEC,
                    20 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, db_ok, &a, 10 * USEC_PER_SEC));
        ASSERT_OK(cluster_previous_state(a.cluster, &prev));
        ASSERT_EQ(prev, _NODE_STATE_INVALID); /* no row before */
        cluster_publish(a.cluster, NODE_IN_SERVICE, "");
        add_node("n2", "withdrawn", "1 minute");
        ASSERT_TRUE(run_until(e, sees_state, &(Expect) { .cluster = a.cluster, .name = "n1", .state = NODE_IN_SERVICE },
                              3 * USEC_PER_SEC));

        /* The agent restarts; its row said in service until it renewed. */
        restart_n1(&a, e, 2);
        ASSERT_OK(cluster_previous_state(a.cluster, &prev));
        ASSERT_EQ(prev, NODE_IN_SERVICE);
        _cleanup_free_ char *renewed = registry_state("n1");
        ASSERT_STREQ(renewed, "starting");
        node_rig_init(&rig, e, a.cluster, NODE_STARTING);
        member_fails(&rig, "no banner");
        /* Refused: kept in service (HAProxy sends it clients again), and
         * the refusal stays on record so that every round asks again. */
        ASSERT_EQ(node_rig_state(&rig), NODE_IN_SERVICE);
        ASSERT_EQ(cluster_last_denial(a.cluster), CLUSTER_DENY_LAST_IN_SERVICE);
        /* The peers count on it: the registry says so. */
        run_for(e, 300 * USEC_PER_MSEC);
        _cleanup_free_ char *kept = registry_state("n1");
        ASSERT_STREQ(kept, "in_service");
        node_rig_done(&rig);

        /* Starting after maintenance it was drained: it withdraws, and its
         * group would be started again, though nobody else serves. */
        node_rig_init(&rig, e, a.cluster, NODE_MAINTENANCE);
        ASSERT_OK(node_set_maintenance(rig.manager.node, false, NULL));
        ASSERT_EQ(node_rig_state(&rig), NODE_STARTING);
        member_fails(&rig, "connection refused");
        ASSERT_EQ(node_rig_state(&rig), NODE_WITHDRAWN);
        node_rig_done(&rig);

        /* n2 in service: a starting node may withdraw, and does. */
        sql_exec("UPDATE rupost_agent.nodes SET state = 'in_service' WHERE name = 'n2'");
        ASSERT_TRUE(run_until(e, sees_state, &(Expect) { .cluster = a.cluster, .name = "n2", .state = NODE_IN_SERVICE },
                              3 * USEC_PER_SEC));
        node_rig_init(&rig, e, a.cluster, NODE_STARTING);
        member_fails(&rig, "dovecot.service is failed");
        ASSERT_EQ(node_rig_state(&rig), NODE_WITHDRAWN);
        ASSERT_STREQ(node_get_state(rig.manager.node)->reason, "imap: dovecot.service is failed");
        ASSERT_EQ(cluster_last_denial(a.cluster), CLUSTER_ALLOW);
        run_for(e, 300 * USEC_PER_MSEC);
        _cleanup_free_ char *out = registry_state("n1");
        ASSERT_STREQ(out, "withdrawn");
        node_rig_done(&rig);

        /* Withdrawn before the restart, n2 withdrawn too: nobody serves, and
         * n1 withdraws to restart its group, without asking. */
        sql_exec("UPDATE rupost_agent.nodes SET state = 'withdrawn' WHERE name = 'n2'");
        restart_n1(&a, e, 2);
        ASSERT_OK(cluster_previous_state(a.cluster, &prev));
        ASSERT_EQ(prev, NODE_WITHDRAWN);
        node_rig_init(&rig, e, a.cluster, NODE_STARTING);
        member_fails(&rig, "connection refused");
        ASSERT_EQ(node_rig_state(&rig), NODE_WITHDRAWN);
        ASSERT_EQ(cluster_last_denial(a.cluster), CLUSTER_ALLOW);
        node_rig_done(&rig);
        agent_stop(&a);

        /* The registry not read yet (the DB refuses us): whether it was in
         * service is unknown, so it does not withdraw, and stays starting
         * to ask again every round. */
        agent_start(&a, e, "n1", "rupost", "wrong-password", server.port, 3 * USEC_PER_SEC, 8 * USEC_PER_SEC,
                    20 * USEC_PER_SEC);
        node_rig_init(&rig, e, a.cluster, NODE_STARTING);
        member_fails(&rig, "no banner");
        ASSERT_EQ(node_rig_state(&rig), NODE_STARTING);
        ASSERT_EQ(cluster_last_denial(a.cluster), CLUSTER_DENY_DB_UNREACHABLE);
        node_rig_done(&rig);
        agent_stop(&a);

        /* Without a cluster the node judges alone: it withdraws. */
        node_rig_init(&rig, e, NULL, NODE_STARTING);
        member_fails(&rig, "no banner");
        ASSERT_EQ(node_rig_state(&rig), NODE_WITHDRAWN);
        node_rig_done(&rig);

        sd_event_unref(e);
        reset_registry();
}

/* ---- a reload drops probes (manager.c) ---- */

typedef struct AgentFiles {
        char dir[64];
        char config[96];
        char password[96];
        char socket[96];
        uint16_t web_port, peer_port, closed_port;
} AgentFiles;

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_EQ(fclose(f), 0);
}

/* The agent's whole config file: node n1 on the test server, with `probes`. */
static void write_agent_config(const AgentFiles *f, const char *probes) {
        char yaml[4096];

        snprintf(yaml, sizeof yaml,
                 "node: n1\n"
                 "web:\n"
                 "  listen_address: 127.0.0.1:%u\n"
                 "control_socket: %s\n"
                 "cluster:\n"
                 "  conninfo: hostaddr=127.0.0.1 port=%u user=rupost dbname=rupost sslmode=disable\n"
                 "  password_file: %s\n"
                 "  lease_ttl: 20s\n"
                 "  renew_interval: 3s\n"
                 "  self_fence_after: 8s\n"
                 "  peer_address: 127.0.0.1:%u\n"
                 "probes:\n"
                 "%s",
                 f->web_port, f->socket, server.port, f->password, f->peer_port, probes);
        write_file(f->config, yaml);
}

/* A probe that fails at once: a TCP connect to a port nobody listens on. */
static char *failing_probe(const AgentFiles *f, const char *name) {
        char *s = NULL;
        ASSERT_TRUE(asprintf(&s,
                             "  - name: %s\n"
                             "    type: tcp\n"
                             "    address: 127.0.0.1:%u\n"
                             "    interval: 200ms\n"
                             "    timeout: 100ms\n",
                             name, f->closed_port) > 0);
        return s;
}

/* This node's failures now, as the registry holds them, from the view. */
static bool self_failing_now_is(Manager *m, const char *expected) {
        const ClusterNode *n = find_node(m->cluster, "n1");
        char got[256] = "";

        if (!n || !cluster_db_ok(m->cluster))
                return false;
        for (char **p = n->failing_now; p && *p; p++) {
                if (got[0])
                        strncat(got, " ", sizeof got - strlen(got) - 1);
                strncat(got, *p, sizeof got - strlen(got) - 1);
        }
        return streq(got, expected);
}

static Probe *manager_probe(Manager *m, const char *name) {
        size_t n;
        Probe **probes = manager_probes(m, &n);
        for (size_t i = 0; i < n; i++)
                if (streq(probes[i]->name, name))
                        return probes[i];
        return NULL;
}

/* SIGHUP with a config that no longer has a failing probe: its failure is
 * deleted from the registry (not merely cleared), or the peers count this
 * node as sharing it until the agent restarts. So is the failure of a probe
 * whose type changed (it starts over, unknown, and may never fail again);
 * a probe that is kept and still fails stays failing. */
TEST(reload_clears_failures_of_removed_probes) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_free_ char *smtp = NULL, *db = NULL, *imap = NULL, *before = NULL, *after = NULL;
        sigset_t saved;
        AgentFiles f = {};
        Manager *m = NULL;

        ensure_server();
        reset_registry();
        snprintf(f.dir, sizeof f.dir, "/tmp/test-cluster-XXXXXX");
        ASSERT_TRUE(mkdtemp(f.dir));
        snprintf(f.config, sizeof f.config, "%s/agent.yaml", f.dir);
        snprintf(f.password, sizeof f.password, "%s/password", f.dir);
        snprintf(f.socket, sizeof f.socket, "%s/control.sock", f.dir);
        f.web_port = test_free_port();
        f.peer_port = test_free_port();
        f.closed_port = test_free_port();
        write_file(f.password, PG_SERVER_PASSWORD "\n");

        smtp = failing_probe(&f, "smtp");
        db = failing_probe(&f, "db");
        imap = failing_probe(&f, "imap");
        ASSERT_TRUE(asprintf(&before, "%s%s%s", smtp, db, imap) > 0);
        write_agent_config(&f, before);

        /* The manager blocks the signals it handles; give them back after. */
        ASSERT_OK(sigprocmask(SIG_SETMASK, NULL, &saved));
        ASSERT_OK(manager_new(&(ManagerOptions) { .config_path = f.config }, &m));
        ASSERT_OK(config_load_file(f.config, &config, &errors));
        ASSERT_OK(manager_start(m, TAKE_PTR(config)));
        ASSERT_TRUE(RUN_UNTIL(m->event, self_failing_now_is(m, "db imap smtp"), 10 * USEC_PER_SEC));

        /* smtp goes; db becomes a postgres probe of the test server (which
         * answers, but not before a while); imap stays, failing. */
        ASSERT_TRUE(asprintf(&after,
                             "%s"
                             "  - name: db\n"
                             "    type: postgres\n"
                             "    host: 127.0.0.1\n"
                             "    port: %u\n"
                             "    user: rupost\n"
                             "    password_file: %s\n"
                             "    sslmode: disable\n"
                             "    databases: [rupost]\n"
                             "    interval: 1h\n",
                             imap, server.port, f.password) > 0);
        write_agent_config(&f, after);
        ASSERT_OK(manager_reload(m));
        ASSERT_TRUE(RUN_UNTIL(m->event, self_failing_now_is(m, "imap"), 5 * USEC_PER_SEC));
        /* Gone from the registry, not merely cleared: a cleared failure
         * would still count within the shared-failure window. */
        _cleanup_free_ char *cleared = sql_value("SELECT string_agg(probe, ' ' ORDER BY probe) "
                                                 "FROM rupost_agent.probe_failures WHERE node = 'n1'");
        ASSERT_STREQ(cleared, "imap");

        /* The new db probe reports ok: nothing to change, and nothing does. */
        Probe *p = manager_probe(m, "db");
        ASSERT_TRUE(p);
        ASSERT_TRUE(RUN_UNTIL(m->event, p->have_result, 10 * USEC_PER_SEC));
        ASSERT_EQ(p->status, PROBE_OK);
        run_for(m->event, 300 * USEC_PER_MSEC);
        ASSERT_TRUE(self_failing_now_is(m, "imap"));

        m = manager_free(m);
        ASSERT_OK(sigprocmask(SIG_SETMASK, &saved, NULL));
        (void) unlink(f.socket);
        ASSERT_OK(unlink(f.config));
        ASSERT_OK(unlink(f.password));
        ASSERT_OK(rmdir(f.dir));
        reset_registry();
}

/* ---- a DB that accepts the connection and never answers ---- */

typedef struct Ticker {
        unsigned ticks;
        usec_t last, max_gap;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        usec_t n = now(CLOCK_MONOTONIC);
        if (t->last)
                t->max_gap = MAX(t->max_gap, n - t->last);
        t->last = n;
        t->ticks++;
        ASSERT_OK(sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC));
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

TEST(black_holed_db_blocks_nothing) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        sd_event_source *tick = NULL;
        sd_event *e = NULL;
        Ticker t = {};
        Agent a;

        /* The kernel completes the handshake; nobody ever reads or writes. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 16));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(sd_event_add_time_relative(e, &tick, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1, on_tick, &t));
        agent_start(&a, e, "n1", "rupost", "pw", ntohs(sa.sin_port), 200 * USEC_PER_MSEC, 1 * USEC_PER_SEC,
                    2 * USEC_PER_SEC);
        run_for(e, 2 * USEC_PER_SEC);
        fprintf(stderr, "black hole: %u ticks in 2s, longest gap %.1f ms, error: %s\n", t.ticks,
                (double) t.max_gap / USEC_PER_MSEC, cluster_last_error(a.cluster));
        ASSERT_TRUE(t.max_gap < 100 * USEC_PER_MSEC);
        ASSERT_TRUE(t.ticks > 100);
        ASSERT_FALSE(cluster_db_ok(a.cluster));
        ASSERT_CONTAINS(cluster_last_error(a.cluster), "no answer within");
        /* Never saw a peer since the start: it cannot tell a shared outage
         * from being cut off, so it fences (see the man page). */
        ASSERT_TRUE(a.fenced);

        agent_stop(&a);
        sd_event_source_disable_unref(tick);
        sd_event_unref(e);
        close(fd);
}

/* While every node renews, the peer ports are checked every ten renew
 * intervals: a peer that cannot be asked is found before an outage of the
 * database needs it (issue 10, item 4). */
static bool peer_unreachable(void *userdata) {
        return cluster_peers_unreachable(((Agent *) userdata)->cluster) == 1;
}

TEST(peer_port_checked_while_renewing) {
        sd_event *e = NULL;
        Agent a[2];
        const usec_t renew = 300 * USEC_PER_MSEC;

        ensure_server();
        reset_registry();
        ASSERT_OK(sd_event_new(&e));
        agent_start(&a[0], e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, renew, 1 * USEC_PER_SEC,
                    30 * USEC_PER_SEC);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, renew, 1 * USEC_PER_SEC,
                    30 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        run_for(e, 11 * renew);
        ASSERT_EQ(cluster_peers_unreachable(a[0].cluster), 0u);
        /* n2's agent goes; its lease (30 s) stays on the books. */
        agent_stop(&a[1]);
        ASSERT_TRUE(run_until(e, peer_unreachable, &a[0], 12 * renew));
        ASSERT_FALSE(a[0].fenced);
        agent_stop(&a[0]);
        sd_event_unref(e);
        reset_registry();
}

/* ---- concurrent withdrawals (issue 10, item 1) ---- */

typedef struct Racer {
        Agent agent;
        WithdrawalAnswer answer;
        usec_t asked, answered; /* CLOCK_MONOTONIC */
        sd_event_source *timer;
} Racer;

static bool racers_registered(void *userdata) {
        Racer *r = userdata;
        for (size_t i = 0; r[i].agent.cluster; i++) {
                const ClusterNode *nodes;
                if (!cluster_db_ok(r[i].agent.cluster) || cluster_nodes(r[i].agent.cluster, &nodes) < i + 1)
                        return false;
        }
        return true;
}

static void racer_answered(Cluster *c, ClusterVerdict v, const char *why, void *userdata) {
        Racer *r = userdata;
        r->answered = now(CLOCK_MONOTONIC);
        withdrawal_answered(c, v, why, &r->answer);
}

static int racer_asks(sd_event_source *s, uint64_t usec, void *userdata) {
        Racer *r = userdata;
        r->asked = now(CLOCK_MONOTONIC);
        ASSERT_OK(cluster_request_withdrawal(r->agent.cluster, "imap", NODE_WITHDRAWN, "imap: refused", racer_answered,
                                             r));
        return 0;
}

static bool racers_answered(void *userdata) {
        Racer *r = userdata;
        for (size_t i = 0; r[i].agent.cluster; i++)
                if (!r[i].answer.done)
                        return false;
        return true;
}

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *) a, y = *(const usec_t *) b;
        return x < y ? -1 : x > y;
}

/* N agents in service, each with its own connection, ask to withdraw in the
 * same loop turn or `gap` apart, `rounds` times: never more granted than the
 * guards allow (two nodes: one; four with max_withdrawn_share 0.5: two), and
 * the registry agrees. */
static void race(size_t n, usec_t gap, unsigned rounds, usec_t *latencies, size_t *n_latencies) {
        Racer r[5] = {};
        sd_event *e = NULL;
        char name[8];

        ASSERT_OK(sd_event_new(&e));
        for (size_t i = 0; i < n; i++) {
                snprintf(name, sizeof name, "r%zu", i + 1);
                agent_start(&r[i].agent, e, name, "rupost", PG_SERVER_PASSWORD, server.port, 500 * USEC_PER_MSEC,
                            3 * USEC_PER_SEC, 10 * USEC_PER_SEC);
        }
        ASSERT_TRUE(run_until(e, racers_registered, r, 10 * USEC_PER_SEC));
        for (unsigned round = 0; round < rounds; round++) {
                unsigned granted = 0;

                for (size_t i = 0; i < n; i++) {
                        cluster_publish(r[i].agent.cluster, NODE_IN_SERVICE, "");
                        r[i].answer = (WithdrawalAnswer) {};
                }
                for (usec_t end = now(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;;) {
                        _cleanup_free_ char *serving = sql_value("SELECT count(*) FROM rupost_agent.nodes "
                                                                 "WHERE state = 'in_service'");
                        if (strtoul(serving, NULL, 10) == n)
                                break;
                        ASSERT_TRUE(now(CLOCK_MONOTONIC) < end);
                        ASSERT_OK(sd_event_run(e, 10 * USEC_PER_MSEC));
                }
                for (size_t i = 0; i < n; i++) {
                        if (gap == 0)
                                racer_asks(NULL, 0, &r[i]);
                        else
                                ASSERT_OK(sd_event_add_time_relative(e, &r[i].timer, CLOCK_MONOTONIC, i * gap, 1,
                                                                     racer_asks, &r[i]));
                }
                ASSERT_TRUE(run_until(e, racers_answered, r, 10 * USEC_PER_SEC));
                for (size_t i = 0; i < n; i++) {
                        r[i].timer = sd_event_source_disable_unref(r[i].timer);
                        granted += r[i].answer.verdict == CLUSTER_ALLOW;
                        if (latencies && *n_latencies < 64)
                                latencies[(*n_latencies)++] = r[i].answered - r[i].asked;
                }
                _cleanup_free_ char *in_service = sql_value("SELECT count(*) FROM rupost_agent.nodes "
                                                            "WHERE state = 'in_service'");
                ASSERT_EQ(granted, (unsigned) (n == 2 ? 1 : 2));
                ASSERT_EQ(strtoul(in_service, NULL, 10), n - granted);
        }
        for (size_t i = 0; i < n; i++)
                agent_stop(&r[i].agent);
        sd_event_unref(e);
        reset_registry();
}

/* An agent that died between the two halves of its withdrawal (after the
 * lock and the count, before the commit) holds the lock only until the
 * server's idle-in-transaction timeout: the next node's withdrawal waits for
 * it and is then decided, not lost. */
TEST(withdrawal_lock_of_a_vanished_agent_is_freed) {
        sd_event *e = NULL;
        Agent a[2];
        char why[256];

        ensure_server();
        reset_registry();
        ASSERT_OK(sd_event_new(&e));
        agent_start(&a[0], e, "n1", "rupost", PG_SERVER_PASSWORD, server.port, 1500 * USEC_PER_MSEC,
                    4 * USEC_PER_SEC, 10 * USEC_PER_SEC);
        agent_start(&a[1], e, "n2", "rupost", PG_SERVER_PASSWORD, server.port, 1500 * USEC_PER_MSEC,
                    4 * USEC_PER_SEC, 10 * USEC_PER_SEC);
        ASSERT_TRUE(run_until(e, both_ok, a, 10 * USEC_PER_SEC));
        cluster_publish(a[0].cluster, NODE_IN_SERVICE, "");
        cluster_publish(a[1].cluster, NODE_IN_SERVICE, "");
        run_for(e, 300 * USEC_PER_MSEC);

        /* The first half of a withdrawal, then silence, as from n3's agent
         * killed at that point (its connection stays open). */
        PGconn *dead = sql_connect();
        PGresult *r = PQexec(dead, "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 1000;"
                                   "SELECT pg_advisory_xact_lock(8247621916579594242)");
        ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);

        usec_t t0 = now(CLOCK_MONOTONIC);
        ASSERT_EQ(cluster_ask(e, a[0].cluster, "imap", false, why, sizeof why), CLUSTER_ALLOW);
        usec_t took = now(CLOCK_MONOTONIC) - t0;
        fprintf(stderr, "granted %.0f ms after asking, behind a vanished holder of the lock\n",
                (double) took / USEC_PER_MSEC);
        ASSERT_TRUE(took >= 500 * USEC_PER_MSEC);
        _cleanup_free_ char *state = registry_state("n1");
        ASSERT_STREQ(state, "withdrawn");

        PQfinish(dead);
        agent_stop(&a[0]);
        agent_stop(&a[1]);
        sd_event_unref(e);
        reset_registry();
}

TEST(concurrent_withdrawals_never_exceed_the_guards) {
        static const usec_t gaps[] = { 0, 1 * USEC_PER_MSEC, 2 * USEC_PER_MSEC, 5 * USEC_PER_MSEC };
        usec_t latencies[64];
        size_t n = 0;

        ensure_server();
        reset_registry();
        for (size_t g = 0; g < ELEMENTSOF(gaps); g++) {
                race(2, gaps[g], 15, g == 0 ? latencies : NULL, &n);
                race(4, gaps[g], 15, NULL, NULL);
        }
        /* The time from the request to the database's answer (one lock and
         * two round trips), for the record. */
        qsort(latencies, n, sizeof *latencies, cmp_usec);
        fprintf(stderr, "withdrawal verdicts: %zu, median %.1f ms, worst %.1f ms\n", n,
                (double) latencies[n / 2] / USEC_PER_MSEC, (double) latencies[n - 1] / USEC_PER_MSEC);
}

static void cleanup(void) {
        pg_server_remove(&server);
}

int main(void) {
        unsigned n = 0;

        (void) signal(SIGPIPE, SIG_IGN);
        atexit(cleanup);
        for (const TestFunc *t = __start_rupost_tests; t < __stop_rupost_tests; t++) {
                if (!test_selected(t->name))
                        continue;
                fprintf(stderr, "/* %s */\n", t->name);
                t->func();
                n++;
        }
        fprintf(stderr, "%u tests passed\n", n);
        return n > 0 ? 0 : 77;
}
