/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A model of 2 to 5 nodes driven through random interleavings, with the
 * agent's own pure decisions: the node state machine (node-state.c), the
 * withdrawal guards and the fence rule (cluster-rules.c). The database is a
 * table of rows on one clock that serialises withdrawal transactions; the
 * network is a matrix of links; queries take random times, renewals commit
 * late, peers answer late, groups take time to stop. Random events: member
 * failures and recoveries, the database lost by one node or by all, links
 * cut between nodes. After every step:
 *
 *   1. a withdrawal is granted, by the database or, in an outage of the
 *      database for everyone, by the peers' consent, only while another node
 *      really serves mail (in service, its group running, not fenced);
 *   2. a fenced node never starts its group, and its group is down within
 *      the kill bound;
 *   3. a node whose lease expired, trusted by an observer under
 *      cluster_trusts_expired_lease(), has its group down;
 *   4. once everything is healthy and connected for a while, every node is
 *      back in service.
 *
 * RUPOST_MODEL_RUNS overrides the number of runs per cluster size. */

#include <stdlib.h>

#include "cluster-rules.h"
#include "node-state.h"
#include "tests.h"

#define MAX_NODES 5
#define TICK (50 * USEC_PER_MSEC)
#define RENEW (1 * USEC_PER_SEC)
#define FENCE_AFTER (3 * USEC_PER_SEC)
#define KILL_BOUND (2 * USEC_PER_SEC)
#define TTL (FENCE_AFTER + KILL_BOUND)
#define ROUND (1 * USEC_PER_SEC)

static const NodePolicy policy = {
        .backoff_initial = 2 * USEC_PER_SEC,
        .backoff_max = 8 * USEC_PER_SEC,
        .healthy_rounds = 2,
        .max_attempts = 0,
};

typedef struct Row {
        NodeStateId state;
        usec_t renewed_at, lease_expires;
} Row;

typedef struct MNode {
        NodeState st;
        bool members_ok, group_running, db;
        usec_t stop_at, start_at, backoff_at, next_round;
        /* cluster */
        usec_t next_renew, commit_at, sent_at; /* a renewal in flight commits at commit_at */
        usec_t last_renew, last_reply, renewing_since;
        bool db_ok, have_view;
        unsigned must_confirm;
        bool confirm_set[MAX_NODES];
        bool in_outage;
        usec_t peer_ok_since, poll_started, poll_answer_at, poll_pending_started;
        unsigned poll_lost, poll_ok;
        usec_t fenced_at;
        /* a withdrawal transaction: decided at decide_at, answered at reply_at */
        bool asking, members_failing;
        usec_t decide_at, reply_at, consent_at;
        ClusterVerdict verdict;
        NodeStateId target;
} MNode;

typedef struct Model {
        unsigned n;
        usec_t t;
        MNode nodes[MAX_NODES];
        Row rows[MAX_NODES];
        bool link[MAX_NODES][MAX_NODES];
        uint64_t rng;
        double max_withdrawn_share;
        unsigned grants, consents, refusals, fences, outages, trusted;
} Model;

static uint64_t next_rand(Model *m) {
        /* xorshift64*: deterministic per seed, so a failure can be replayed. */
        m->rng ^= m->rng >> 12;
        m->rng ^= m->rng << 25;
        m->rng ^= m->rng >> 27;
        return m->rng * 2685821657736338717ULL;
}

static bool chance(Model *m, unsigned per_million) {
        return next_rand(m) % 1000000 < per_million;
}

static usec_t up_to(Model *m, usec_t max) {
        return max == 0 ? 0 : next_rand(m) % max;
}

/* Serving, and not about to stop: a withdrawal granted but not yet
 * carried out takes the node away as surely as one carried out. */
static bool really_serving(const MNode *x) {
        return x->st.id == NODE_IN_SERVICE && x->group_running && !x->st.fenced &&
               !(x->asking && x->verdict == CLUSTER_ALLOW);
}

static bool answers_ok(const Model *m, const MNode *x) {
        return x->db_ok && m->t < x->last_reply + 2 * RENEW;
}

static void carry_out(Model *m, unsigned i, NodeAction a) {
        MNode *x = &m->nodes[i];

        if ((a & NODE_ACTION_START_GROUP) && x->st.fenced)
                ASSERT_FAIL("seed %" PRIu64 ": node %u starts its group while fenced", m->rng, i);
        if (a & NODE_ACTION_KILL_GROUP) {
                x->start_at = 0;
                x->stop_at = m->t + up_to(m, KILL_BOUND);
        } else if (a & NODE_ACTION_STOP_GROUP) {
                x->start_at = 0;
                x->stop_at = m->t + up_to(m, 4 * USEC_PER_SEC);
        }
        if (a & NODE_ACTION_START_GROUP) {
                x->stop_at = 0;
                x->start_at = m->t + up_to(m, 2 * USEC_PER_SEC) + 1;
        }
        if (a & NODE_ACTION_ARM_BACKOFF)
                x->backoff_at = m->t + x->st.backoff;
}

static void apply(Model *m, unsigned i, NodeEventId e) {
        carry_out(m, i, node_state_apply(&m->nodes[i].st, &policy, e, "model"));
}

/* ---- the database ---- */

static bool row_live(const Model *m, unsigned j) {
        return m->rows[j].renewed_at + cluster_live_for(FENCE_AFTER, RENEW) > m->t;
}

static void renewal_commits(Model *m, unsigned i) {
        MNode *x = &m->nodes[i];

        x->commit_at = 0;
        if (!x->db) {
                x->db_ok = false;
                return;
        }
        m->rows[i] = (Row) { .state = x->st.id, .renewed_at = m->t, .lease_expires = m->t + TTL };
        /* The reply: the view of this sync. */
        if (!x->db_ok)
                x->renewing_since = m->t;
        x->db_ok = true;
        x->last_renew = x->sent_at;
        x->last_reply = m->t;
        x->have_view = true;
        x->must_confirm = 0;
        for (unsigned j = 0; j < m->n; j++) {
                x->confirm_set[j] = j != i && m->rows[j].lease_expires > m->t;
                x->must_confirm += x->confirm_set[j];
        }
        x->in_outage = false;
        x->peer_ok_since = 0;
        if (x->st.fenced)
                apply(m, i, NODE_EVENT_FENCE_LIFTED);
}

/* Property 1, at the moment of a grant. */
static void assert_another_serves(Model *m, unsigned i, const char *what) {
        for (unsigned j = 0; j < m->n; j++)
                if (j != i && really_serving(&m->nodes[j]))
                        return;
        for (unsigned j = 0; j < m->n; j++)
                fprintf(stderr, "t=%.2f node %u: %s group %d fenced %d row %s live %d\n", (double) m->t / USEC_PER_SEC,
                        j, node_state_to_string(m->nodes[j].st.id), m->nodes[j].group_running,
                        m->nodes[j].st.fenced, node_state_to_string(m->rows[j].state), row_live(m, j));
        ASSERT_FAIL("seed %" PRIu64 ": node %u %s while no other node serves", m->rng, i, what);
}

/* The withdrawal transaction, atomic under the lock. */
static void withdrawal_decides(Model *m, unsigned i) {
        MNode *x = &m->nodes[i];
        GuardCounts g = { .others = m->n - 1 };

        x->decide_at = 0;
        x->verdict = CLUSTER_DENY_DB_UNREACHABLE;
        if (!x->db) {
                x->verdict = CLUSTER_DENY_DB_UNREACHABLE;
                return;
        }
        for (unsigned j = 0; j < m->n; j++)
                if (j != i && row_live(m, j)) {
                        g.live++;
                        g.in_service += m->rows[j].state == NODE_IN_SERVICE;
                }
        x->verdict = cluster_guard_verdict(&g, NULL, m->max_withdrawn_share, 0.5, NULL, 0);
        if (x->verdict != CLUSTER_ALLOW)
                return;
        assert_another_serves(m, i, "granted a withdrawal");
        m->rows[i].state = x->target;
        m->grants++;
}

/* During a shared outage the peers with a lease are asked instead: each
 * consents when it lost the database too, serves, and its members are
 * healthy, as it is when the answer leaves it. */
static void consent_decides(Model *m, unsigned i) {
        MNode *x = &m->nodes[i];
        unsigned asked = 0, consent = 0;

        x->consent_at = 0;
        for (unsigned j = 0; j < m->n; j++) {
                MNode *y = &m->nodes[j];
                if (j == i || !x->confirm_set[j])
                        continue;
                asked++;
                consent += m->link[i][j] && !answers_ok(m, y) && y->st.id == NODE_IN_SERVICE && !y->members_failing;
        }
        x->verdict = asked > 0 && consent == asked ? CLUSTER_ALLOW : CLUSTER_DENY_DB_UNREACHABLE;
        if (x->verdict != CLUSTER_ALLOW)
                return;
        assert_another_serves(m, i, "withdrew by consent");
        m->consents++;
}

/* ---- one node's agent ---- */

static void fence_step(Model *m, unsigned i) {
        MNode *x = &m->nodes[i];
        usec_t base = x->last_renew, deadline = base + FENCE_AFTER, next_poll, when;
        char reason[256];

        if (x->st.fenced)
                return;
        if (x->poll_answer_at != 0 && m->t >= x->poll_answer_at) {
                /* Each peer answers as it is when the answer leaves it. */
                x->poll_lost = x->poll_ok = 0;
                for (unsigned j = 0; j < m->n; j++) {
                        if (j == i || !m->link[i][j])
                                continue;
                        bool ok = answers_ok(m, &m->nodes[j]);
                        x->poll_ok += ok;
                        x->poll_lost += x->confirm_set[j] && !ok;
                }
                x->poll_started = x->poll_pending_started;
                x->poll_answer_at = 0;
                if (x->poll_ok > 0 && x->in_outage && x->peer_ok_since == 0) {
                        x->peer_ok_since = m->t;
                        x->next_renew = m->t; /* reconnect at once */
                }
        }
        next_poll = deadline > RENEW + RENEW / 2 ? deadline - RENEW - RENEW / 2 : 0;
        if (x->poll_started >= base && x->poll_started + RENEW > next_poll)
                next_poll = x->poll_started + RENEW;
        if (x->poll_answer_at == 0 && m->t >= next_poll) {
                x->poll_pending_started = m->t;
                x->poll_answer_at = m->t + up_to(m, RENEW / 2) + 1;
        }
        FenceInput in = {
                .now = m->t,
                .last_renew = base,
                .self_fence_after = FENCE_AFTER,
                .renew_interval = RENEW,
                .have_view = x->have_view,
                .live_peers = x->must_confirm,
                .poll_started = x->poll_started,
                .live_peers_lost = x->poll_lost,
                .peers_ok = x->poll_ok,
                .in_outage = x->in_outage,
                .peer_ok_since = x->peer_ok_since,
        };
        switch (cluster_fence_decide(&in, &when, reason, sizeof reason)) {
        case FENCE_NOW:
                x->in_outage = false;
                x->fenced_at = m->t;
                m->fences++;
                apply(m, i, NODE_EVENT_FENCED);
                break;
        case FENCE_SHARED_OUTAGE:
                m->outages += !x->in_outage;
                x->in_outage = true;
                break;
        default:
                break;
        }
}

static void agent_step(Model *m, unsigned i) {
        MNode *x = &m->nodes[i];

        if (x->commit_at != 0 && m->t >= x->commit_at)
                renewal_commits(m, i);
        /* One connection, one query at a time: no sync while a withdrawal
         * transaction runs. */
        if (x->commit_at == 0 && !x->asking && m->t >= x->next_renew) {
                /* Sent now, committed within the query's timeout. */
                x->sent_at = m->t;
                x->commit_at = m->t + up_to(m, RENEW) + 1;
                x->next_renew = m->t + RENEW;
                if (!x->db)
                        x->commit_at = m->t + 1; /* fails at once */
        }
        fence_step(m, i);

        if (x->stop_at != 0 && m->t >= x->stop_at) {
                x->stop_at = 0;
                x->group_running = false;
                apply(m, i, NODE_EVENT_GROUP_STOPPED);
        }
        if (x->start_at != 0 && m->t >= x->start_at) {
                x->start_at = 0;
                x->group_running = true;
                apply(m, i, NODE_EVENT_GROUP_STARTED);
        }
        if (x->backoff_at != 0 && m->t >= x->backoff_at) {
                x->backoff_at = 0;
                apply(m, i, NODE_EVENT_BACKOFF_EXPIRED);
        }
        if (x->decide_at != 0 && m->t >= x->decide_at)
                withdrawal_decides(m, i);
        if (x->consent_at != 0 && m->t >= x->consent_at)
                consent_decides(m, i);
        if (x->asking && x->decide_at == 0 && x->consent_at == 0 && m->t >= x->reply_at) {
                x->asking = false;
                if (x->verdict == CLUSTER_ALLOW && x->st.id == NODE_IN_SERVICE)
                        apply(m, i, NODE_EVENT_MEMBER_FAILED);
                else if (x->verdict != CLUSTER_ALLOW) {
                        m->refusals++;
                        apply(m, i, NODE_EVENT_WITHDRAWAL_REFUSED);
                }
        }
        if (m->t >= x->next_round) {
                x->next_round = m->t + ROUND;
                bool healthy = x->members_ok && x->group_running;
                /* Said before anything is asked (node.c). */
                x->members_failing = !healthy;
                /* A group still starting is not a failure, only not healthy yet. */
                if (x->st.id == NODE_RECOVERING && !x->members_ok)
                        apply(m, i, NODE_EVENT_MEMBER_FAILED);
                else if (x->st.id == NODE_RECOVERING && healthy)
                        apply(m, i, NODE_EVENT_HEALTHY_ROUND);
                else if (x->st.id == NODE_IN_SERVICE && !healthy && !x->asking) {
                        /* node.c: ask the database; DB unreachable is no grant. */
                        NodeState next = x->st;
                        (void) node_state_apply(&next, &policy, NODE_EVENT_MEMBER_FAILED, NULL);
                        x->asking = true;
                        x->target = next.id;
                        /* Behind a sync in flight on the same connection. */
                        usec_t start = MAX(m->t, x->commit_at);
                        x->decide_at = x->db_ok ? start + up_to(m, 300 * USEC_PER_MSEC) + 1 : 0;
                        x->consent_at = !x->db_ok && x->in_outage ? m->t + up_to(m, RENEW / 2) + 1 : 0;
                        x->verdict = CLUSTER_DENY_DB_UNREACHABLE;
                        x->reply_at = start + up_to(m, 600 * USEC_PER_MSEC) + 1;
                }
        }
}

/* ---- the properties ---- */

static void check(Model *m) {
        for (unsigned i = 0; i < m->n; i++) {
                MNode *x = &m->nodes[i];

                if (x->st.fenced && x->group_running && m->t > x->fenced_at + KILL_BOUND)
                        ASSERT_FAIL("seed %" PRIu64 ": node %u fenced but its group runs", m->rng, i);
                if (x->st.fenced && x->st.id != NODE_FENCED && x->st.id != NODE_MAINTENANCE)
                        ASSERT_FAIL("seed %" PRIu64 ": node %u fenced in state %s", m->rng, i,
                                    node_state_to_string(x->st.id));
        }
        for (unsigned o = 0; o < m->n; o++) {
                MNode *obs = &m->nodes[o];
                usec_t renewing_for = obs->db_ok ? m->t - obs->renewing_since : 0;

                for (unsigned i = 0; i < m->n; i++) {
                        if (i == o)
                                continue;
                        if (!cluster_trusts_expired_lease((int64_t) m->t - (int64_t) m->rows[i].lease_expires,
                                                          renewing_for, m->t - m->rows[i].renewed_at))
                                continue;
                        m->trusted++;
                        if (!m->nodes[i].group_running)
                                continue;
                        for (unsigned k = 0; k < m->n; k++)
                                fprintf(stderr, "t=%.2f node %u: %s fenced %d outage %d db %d db_ok %d last_renew %.2f "
                                        "renewed %.2f expires %.2f renewing_since %.2f must %u poll %.2f lost %u ok %u links %d%d%d\n",
                                        (double) m->t / USEC_PER_SEC, k, node_state_to_string(m->nodes[k].st.id),
                                        m->nodes[k].st.fenced, m->nodes[k].in_outage, m->nodes[k].db, m->nodes[k].db_ok,
                                        (double) m->nodes[k].last_renew / USEC_PER_SEC,
                                        (double) m->rows[k].renewed_at / USEC_PER_SEC,
                                        (double) m->rows[k].lease_expires / USEC_PER_SEC,
                                        (double) m->nodes[k].renewing_since / USEC_PER_SEC, m->nodes[k].must_confirm,
                                        (double) m->nodes[k].poll_started / USEC_PER_SEC, m->nodes[k].poll_lost,
                                        m->nodes[k].poll_ok, m->link[k][0], m->link[k][1], m->link[k][2]);
                        ASSERT_FAIL("seed %" PRIu64 ": node %u trusts node %u's expired lease, but its group runs",
                                    m->rng, o, i);
                }
        }
}

static void run(unsigned n, uint64_t seed, Model *m) {
        *m = (Model) { .n = n, .rng = seed * 0x9E3779B97F4A7C15ULL + 1 };
        /* Half the runs let any number of nodes out: only the last-in-service
         * guard stands between them and an empty cluster. */
        m->max_withdrawn_share = chance(m, 500000) ? 1.0 : 0.5;
        for (unsigned i = 0; i < n; i++) {
                MNode *x = &m->nodes[i];
                *x = (MNode) { .members_ok = true, .group_running = true, .db = true, .db_ok = true,
                               .have_view = true, .must_confirm = n - 1, .next_renew = up_to(m, RENEW),
                               .next_round = up_to(m, ROUND) };
                node_state_init(&x->st);
                x->st.id = NODE_IN_SERVICE;
                for (unsigned j = 0; j < n; j++) {
                        x->confirm_set[j] = j != i;
                        m->link[i][j] = true;
                }
                m->rows[i] = (Row) { .state = NODE_IN_SERVICE, .renewed_at = 1, .lease_expires = TTL };
        }
        m->t = 1;

        /* 90 s of trouble, then 40 s of calm. */
        for (; m->t < 90 * USEC_PER_SEC; m->t += TICK) {
                unsigned i = (unsigned) (next_rand(m) % n), j = (unsigned) (next_rand(m) % n);
                if (chance(m, 20000))
                        m->nodes[i].members_ok = !m->nodes[i].members_ok;
                if (chance(m, 6000))
                        m->nodes[i].db = !m->nodes[i].db;
                if (chance(m, 2000)) {
                        bool up = chance(m, 500000);
                        for (unsigned k = 0; k < n; k++)
                                m->nodes[k].db = up;
                }
                if (i != j && chance(m, 8000))
                        m->link[i][j] = m->link[j][i] = !m->link[i][j];
                /* Same-tick events in a random order. */
                unsigned first = (unsigned) (next_rand(m) % n);
                for (unsigned k = 0; k < n; k++)
                        agent_step(m, (first + k) % n);
                check(m);
        }
        for (unsigned i = 0; i < n; i++) {
                m->nodes[i].members_ok = m->nodes[i].db = true;
                for (unsigned j = 0; j < n; j++)
                        m->link[i][j] = true;
        }
        for (usec_t end = m->t + 40 * USEC_PER_SEC; m->t < end; m->t += TICK) {
                unsigned first = (unsigned) (next_rand(m) % n);
                for (unsigned k = 0; k < n; k++)
                        agent_step(m, (first + k) % n);
                check(m);
        }
        for (unsigned i = 0; i < n; i++)
                if (!really_serving(&m->nodes[i]))
                        ASSERT_FAIL("seed %" PRIu64 ": node %u is %s (group %s, stopped %d, backoff %d, stop %d, "
                                    "start %d) after 40 s of calm",
                                    seed, i, node_state_to_string(m->nodes[i].st.id),
                                    m->nodes[i].group_running ? "running" : "down", m->nodes[i].st.group_stopped,
                                    m->nodes[i].backoff_at != 0, m->nodes[i].stop_at != 0, m->nodes[i].start_at != 0);
}

TEST(random_interleavings) {
        const char *env = getenv("RUPOST_MODEL_RUNS");
        unsigned runs = env ? (unsigned) strtoul(env, NULL, 10) : 300;

        unsigned trusted = 0, consents = 0;

        for (unsigned n = 2; n <= MAX_NODES; n++) {
                Model total = {}, m;
                for (unsigned r = 0; r < runs; r++) {
                        run(n, (uint64_t) n * 1000003 + r, &m);
                        total.grants += m.grants;
                        total.consents += m.consents;
                        total.refusals += m.refusals;
                        total.fences += m.fences;
                        total.outages += m.outages;
                        total.trusted += m.trusted;
                }
                fprintf(stderr,
                        "%u nodes, %u runs: %u withdrawals granted, %u by consent in an outage, %u refused, %u "
                        "fences, %u shared outages, %u steps with an expired lease trusted\n",
                        n, runs, total.grants, total.consents, total.refusals, total.fences, total.outages,
                        total.trusted);
                /* The runs must reach the interesting cases at all. */
                ASSERT_TRUE(total.grants > 0 && total.refusals > 0 && total.fences > 0 && total.outages > 0);
                trusted += total.trusted;
                consents += total.consents;
        }
        ASSERT_TRUE(trusted > 0 && consents > 0);
}

DEFINE_TEST_MAIN()
