/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The cluster section of a config pointed at a throwaway PostgreSQL, for
 * the tests of what reads the registry's view (the control socket, the
 * metrics). The agent's Cluster itself is created by the test, on its loop,
 * or in the child that serves the control socket. */

#include "cluster.h"
#include "config.h"
#include "pg-server.h"

typedef struct ClusterFixture {
        PgServer server;
        ClusterConfig config;
        char conninfo[256];
        char peer[64];
} ClusterFixture;

/* Timings a loaded machine keeps up with; the lease long enough that hand
 * written rows can be given leases on either side of it. */
#define CLUSTER_FIXTURE_TTL (10 * USEC_PER_SEC)

static inline void cluster_fixture_config(ClusterFixture *f, uint16_t port, const char *password) {
        snprintf(f->conninfo, sizeof f->conninfo,
                 "hostaddr=127.0.0.1 port=%u user=rupost dbname=rupost sslmode=disable connect_timeout=2", port);
        snprintf(f->peer, sizeof f->peer, "127.0.0.1:%u", test_free_port());
        f->config = (ClusterConfig) {
                .enabled = true,
                .conninfo = f->conninfo,
                .password = (char *) password,
                .lease_ttl = CLUSTER_FIXTURE_TTL,
                .renew_interval = 500 * USEC_PER_MSEC,
                .self_fence_after = 3 * USEC_PER_SEC,
                .max_withdrawn_share = 0.5,
                .shared_failure_share = 0.5,
                .shared_failure_window = 60 * USEC_PER_SEC,
                .peer_address = f->peer,
        };
}

/* Returns false when PostgreSQL is not installed: the caller skips. */
static inline bool cluster_fixture_start(ClusterFixture *f) {
        int r;

        *f = (ClusterFixture) {};
        r = pg_server_start(&f->server, NULL, false);
        if (r == -ENOENT) {
                fprintf(stderr, "PostgreSQL is not installed, skipping\n");
                return false;
        }
        ASSERT_OK(r);
        ASSERT_EQ(pg_server_sql(&f->server, "postgres", "CREATE DATABASE rupost"), 0);
        cluster_fixture_config(f, f->server.port, PG_SERVER_PASSWORD);
        return true;
}

/* A config whose DB never answers: a port nobody listens on. */
static inline void cluster_fixture_unreachable(ClusterFixture *f) {
        *f = (ClusterFixture) {};
        cluster_fixture_config(f, test_free_port(), "x");
}

static inline void cluster_fixture_sql(ClusterFixture *f, const char *sql) {
        ASSERT_EQ(pg_server_sql(&f->server, "rupost", sql), 0);
}

static inline void cluster_fixture_stop(ClusterFixture *f) {
        pg_server_remove(&f->server);
}

typedef struct WithdrawalAnswer {
        bool done;
        ClusterVerdict verdict;
        char why[256];
} WithdrawalAnswer;

static inline void withdrawal_answered(Cluster *c, ClusterVerdict v, const char *why, void *userdata) {
        WithdrawalAnswer *a = userdata;

        a->done = true;
        a->verdict = v;
        snprintf(a->why, sizeof a->why, "%s", why);
}

/* Asks the database for a withdrawal and runs the loop until it answers.
 * Granted, the node's row says withdrawn: with `undo` it is put back in
 * service, so that the next question finds the cluster as it was. */
static inline ClusterVerdict cluster_ask(sd_event *e, Cluster *c, const char *probe, bool undo, char *why,
                                         size_t len) {
        WithdrawalAnswer a = {};
        usec_t end = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

        ASSERT_OK(cluster_request_withdrawal(c, probe, NODE_WITHDRAWN, "asked by the test", withdrawal_answered, &a));
        while (!a.done) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < end);
                ASSERT_OK(sd_event_run(e, 20 * USEC_PER_MSEC));
        }
        if (why)
                snprintf(why, len, "%s", a.why);
        if (undo && a.verdict == CLUSTER_ALLOW)
                cluster_publish(c, NODE_IN_SERVICE, "");
        return a.verdict;
}
