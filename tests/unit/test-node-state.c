/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Every transition of the node state machine, and the agent-check replies
 * HAProxy reads from it. */

#include "node-state.h"
#include "tests.h"

static const NodePolicy policy = {
        .backoff_initial = 5 * USEC_PER_SEC,
        .backoff_max = 60 * USEC_PER_SEC,
        .healthy_rounds = 3,
        .max_attempts = 3,
};

static NodeAction apply(NodeState *s, NodeEventId e, const char *reason) {
        return node_state_apply(s, &policy, e, reason);
}

TEST(healthy_start_goes_in_service) {
        NodeState s;
        node_state_init(&s);
        ASSERT_EQ(s.id, NODE_STARTING);
        ASSERT_EQ(apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_ARM_STABLE);
        ASSERT_EQ(s.id, NODE_IN_SERVICE);
}

TEST(half_running_group_at_start_is_stopped) {
        NodeState s;
        node_state_init(&s);
        /* An agent restart finds dovecot down and the rest running: reconcile
         * by stopping the whole group, never leaving half of it up. */
        NodeAction a = apply(&s, NODE_EVENT_MEMBER_FAILED, "dovecot.service is failed");
        ASSERT_EQ(s.id, NODE_WITHDRAWN);
        ASSERT_TRUE(a & NODE_ACTION_STOP_GROUP);
        ASSERT_TRUE(a & NODE_ACTION_ARM_BACKOFF);
        ASSERT_STREQ(s.reason, "dovecot.service is failed");
}

TEST(refused_withdrawal_keeps_a_starting_node_in_service) {
        NodeState s;
        node_state_init(&s);
        /* The cluster's guards refused to let a starting node go (node.c):
         * it serves, as a node in service whose withdrawal is refused. */
        ASSERT_EQ(apply(&s, NODE_EVENT_WITHDRAWAL_REFUSED, "imap: no banner"), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_IN_SERVICE);
        ASSERT_STREQ(s.reason, "");
        /* Asked again later and allowed, it withdraws as usual. */
        ASSERT_EQ(apply(&s, NODE_EVENT_MEMBER_FAILED, "imap: no banner"),
                  NODE_ACTION_STOP_GROUP | NODE_ACTION_ARM_BACKOFF);
        ASSERT_EQ(s.id, NODE_WITHDRAWN);

        /* Anywhere else a refusal changes nothing. */
        NodeStateId others[] = { NODE_IN_SERVICE, NODE_WITHDRAWN, NODE_RECOVERING, NODE_FAILED, NODE_MAINTENANCE };
        for (size_t i = 0; i < ELEMENTSOF(others); i++) {
                NodeState o = { .id = others[i] };
                ASSERT_EQ(apply(&o, NODE_EVENT_WITHDRAWAL_REFUSED, "x"), NODE_ACTION_NONE);
                ASSERT_EQ(o.id, others[i]);
        }
}

TEST(failure_withdraws_then_recovers_after_backoff_and_healthy_rounds) {
        NodeState s;
        node_state_init(&s);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);

        NodeAction a = apply(&s, NODE_EVENT_MEMBER_FAILED, "nginx.service is inactive");
        ASSERT_EQ(s.id, NODE_WITHDRAWN);
        ASSERT_EQ(a, NODE_ACTION_STOP_GROUP | NODE_ACTION_ARM_BACKOFF);
        ASSERT_EQ(s.backoff, 5 * USEC_PER_SEC);

        /* More failures while withdrawn change nothing. */
        ASSERT_EQ(apply(&s, NODE_EVENT_MEMBER_FAILED, "x"), NODE_ACTION_NONE);
        /* The backoff alone does not restart a group still stopping... */
        ASSERT_EQ(apply(&s, NODE_EVENT_BACKOFF_EXPIRED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_WITHDRAWN);
        /* ...the completed stop does. */
        ASSERT_EQ(apply(&s, NODE_EVENT_GROUP_STOPPED, NULL), NODE_ACTION_START_GROUP);
        ASSERT_EQ(s.id, NODE_RECOVERING);
        ASSERT_EQ(s.attempts, 1);

        ASSERT_EQ(apply(&s, NODE_EVENT_GROUP_STARTED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_RECOVERING);
        ASSERT_EQ(apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_ARM_STABLE);
        ASSERT_EQ(s.id, NODE_IN_SERVICE);
        ASSERT_STREQ(s.reason, "");
}

TEST(backoff_doubles_caps_and_gives_up) {
        NodeState s;
        NodePolicy p = policy;
        p.max_attempts = 5;
        node_state_init(&s);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);

        const usec_t expected[] = { 5, 10, 20, 40, 60 };
        for (unsigned i = 0; i < ELEMENTSOF(expected); i++) {
                NodeAction a = node_state_apply(&s, &p, NODE_EVENT_MEMBER_FAILED, "down");
                ASSERT_EQ(s.id, NODE_WITHDRAWN);
                ASSERT_TRUE(a & NODE_ACTION_ARM_BACKOFF);
                ASSERT_EQ(s.backoff, expected[i] * USEC_PER_SEC);
                node_state_apply(&s, &p, NODE_EVENT_GROUP_STOPPED, NULL);
                ASSERT_EQ(node_state_apply(&s, &p, NODE_EVENT_BACKOFF_EXPIRED, NULL), NODE_ACTION_START_GROUP);
                ASSERT_EQ(s.attempts, i + 1);
        }
        /* The fifth recovery failed too: stay down, loudly, no more restarts. */
        NodeAction a = node_state_apply(&s, &p, NODE_EVENT_GROUP_START_FAILED, "dovecot.service failed to start");
        ASSERT_EQ(s.id, NODE_FAILED);
        ASSERT_EQ(a, NODE_ACTION_STOP_GROUP);
        ASSERT_EQ(node_state_apply(&s, &p, NODE_EVENT_BACKOFF_EXPIRED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(node_state_apply(&s, &p, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_FAILED);
}

TEST(stable_period_resets_attempts) {
        NodeState s;
        node_state_init(&s);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        apply(&s, NODE_EVENT_MEMBER_FAILED, "x");
        apply(&s, NODE_EVENT_GROUP_STOPPED, NULL);
        apply(&s, NODE_EVENT_BACKOFF_EXPIRED, NULL);
        for (int i = 0; i < 3; i++)
                apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        ASSERT_EQ(s.id, NODE_IN_SERVICE);
        ASSERT_EQ(s.attempts, 1);
        apply(&s, NODE_EVENT_STABLE, NULL);
        ASSERT_EQ(s.attempts, 0);
        /* So the next failure starts again from the initial backoff. */
        apply(&s, NODE_EVENT_MEMBER_FAILED, "x");
        ASSERT_EQ(s.backoff, 5 * USEC_PER_SEC);
}

TEST(failure_while_recovering_withdraws_again) {
        NodeState s;
        node_state_init(&s);
        apply(&s, NODE_EVENT_MEMBER_FAILED, "x");
        apply(&s, NODE_EVENT_GROUP_STOPPED, NULL);
        apply(&s, NODE_EVENT_BACKOFF_EXPIRED, NULL);
        ASSERT_EQ(s.id, NODE_RECOVERING);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        NodeAction a = apply(&s, NODE_EVENT_MEMBER_FAILED, "postfix answers 421");
        ASSERT_EQ(s.id, NODE_WITHDRAWN);
        ASSERT_TRUE(a & NODE_ACTION_STOP_GROUP);
        ASSERT_EQ(s.backoff, 10 * USEC_PER_SEC);
        ASSERT_EQ(s.healthy_rounds, 0);
}

TEST(maintenance_overrides_and_returns_to_a_fresh_start) {
        NodeState s;
        node_state_init(&s);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        ASSERT_EQ(apply(&s, NODE_EVENT_MAINTENANCE_ON, "kernel update"), NODE_ACTION_PERSIST);
        ASSERT_EQ(s.id, NODE_MAINTENANCE);
        ASSERT_STREQ(s.reason, "kernel update");
        /* No healing while an operator works on the node. */
        ASSERT_EQ(apply(&s, NODE_EVENT_MEMBER_FAILED, "x"), NODE_ACTION_NONE);
        ASSERT_EQ(apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_MAINTENANCE);
        ASSERT_EQ(apply(&s, NODE_EVENT_MAINTENANCE_OFF, NULL), NODE_ACTION_PERSIST);
        ASSERT_EQ(s.id, NODE_STARTING);
        ASSERT_EQ(s.attempts, 0);
}

TEST(maintenance_lifts_a_failed_node) {
        NodeState s;
        NodePolicy p = policy;
        p.max_attempts = 1;
        node_state_init(&s);
        node_state_apply(&s, &p, NODE_EVENT_MEMBER_FAILED, "x");
        node_state_apply(&s, &p, NODE_EVENT_GROUP_STOPPED, NULL);
        node_state_apply(&s, &p, NODE_EVENT_BACKOFF_EXPIRED, NULL);
        node_state_apply(&s, &p, NODE_EVENT_MEMBER_FAILED, "x");
        ASSERT_EQ(s.id, NODE_FAILED);
        node_state_apply(&s, &p, NODE_EVENT_MAINTENANCE_ON, "fixing");
        node_state_apply(&s, &p, NODE_EVENT_MAINTENANCE_OFF, NULL);
        ASSERT_EQ(s.id, NODE_STARTING);
}

TEST(agent_check_replies) {
        NodeState s;
        char b[256];
        node_state_init(&s);
        /* Starting: an empty line, which HAProxy takes as no change. */
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b), "\n");
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b), "up ready\n");
        apply(&s, NODE_EVENT_MEMBER_FAILED, "dovecot.service is failed (failed)");
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b),
                     "down #withdrawn: dovecot.service is failed (failed)\n");
        apply(&s, NODE_EVENT_MAINTENANCE_ON, "disk swap");
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b), "drain\n");

        /* A reason quoting a server cannot end the line early and smuggle
         * a second one in. */
        apply(&s, NODE_EVENT_MAINTENANCE_OFF, NULL);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        apply(&s, NODE_EVENT_MEMBER_FAILED, "smtp: 421 bye\r\nup ready");
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b), "down #withdrawn: smtp: 421 bye  up ready\n");
}

TEST(state_names_round_trip) {
        for (NodeStateId i = 0; i < _NODE_STATE_MAX; i++)
                ASSERT_EQ(node_state_from_string(node_state_to_string(i)), i);
        ASSERT_EQ(node_state_from_string("bogus"), _NODE_STATE_INVALID);
        for (NodeEventId e = 0; e < _NODE_EVENT_MAX; e++)
                ASSERT_TRUE(node_event_to_string(e) != NULL);
}

/* A fence dominates: whatever arrives while it holds, the group is never
 * started and the node never serves, in any order (issue 10, item 3). */
TEST(fence_dominates_every_event) {
        for (NodeStateId from = 0; from < _NODE_STATE_MAX; from++)
                for (NodeEventId e = 0; e < _NODE_EVENT_MAX; e++) {
                        NodeState s = { .id = from, .attempts = 1 };

                        NodeAction a = apply(&s, NODE_EVENT_FENCED, "self-fenced: cut off");
                        ASSERT_TRUE(s.fenced);
                        if (from != NODE_MAINTENANCE) {
                                ASSERT_EQ(s.id, NODE_FENCED);
                                ASSERT_STREQ(s.reason, "self-fenced: cut off");
                        }
                        ASSERT_EQ(a, NODE_ACTION_KILL_GROUP);
                        if (e == NODE_EVENT_FENCE_LIFTED)
                                continue;
                        /* Twice, so that the second sees the first's effect. */
                        for (int k = 0; k < 2; k++) {
                                a = apply(&s, e, "x");
                                ASSERT_FALSE(a & NODE_ACTION_START_GROUP);
                                ASSERT_FALSE(a & NODE_ACTION_ARM_STABLE);
                                ASSERT_TRUE(s.fenced);
                                ASSERT_TRUE(s.id == NODE_FENCED || s.id == NODE_MAINTENANCE);
                        }
                }
}

TEST(fence_lifted_recovers_without_counting_an_attempt) {
        NodeState s;
        node_state_init(&s);
        apply(&s, NODE_EVENT_HEALTHY_ROUND, NULL);
        ASSERT_EQ(apply(&s, NODE_EVENT_FENCED, "self-fenced: x"), NODE_ACTION_KILL_GROUP);
        /* The ordinary stop that was in flight completes late: no start. */
        ASSERT_EQ(apply(&s, NODE_EVENT_GROUP_STOPPED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(apply(&s, NODE_EVENT_BACKOFF_EXPIRED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_FENCED);
        /* Lifted with the group down: started again at once, no attempt
         * counted (the fence was not the node's failure). */
        ASSERT_EQ(apply(&s, NODE_EVENT_FENCE_LIFTED, NULL), NODE_ACTION_START_GROUP);
        ASSERT_EQ(s.id, NODE_RECOVERING);
        ASSERT_EQ(s.attempts, 0u);
        ASSERT_FALSE(s.fenced);

        /* Lifted before the kill completed: the start waits for the stop. */
        apply(&s, NODE_EVENT_FENCED, "self-fenced: x");
        ASSERT_EQ(apply(&s, NODE_EVENT_FENCE_LIFTED, NULL), NODE_ACTION_NONE);
        ASSERT_EQ(s.id, NODE_WITHDRAWN);
        ASSERT_EQ(apply(&s, NODE_EVENT_GROUP_STOPPED, NULL), NODE_ACTION_START_GROUP);
        ASSERT_EQ(s.id, NODE_RECOVERING);

        /* Maintenance entered while fenced keeps the fence; leaving it
         * returns to fenced, not to starting. */
        apply(&s, NODE_EVENT_FENCED, "self-fenced: x");
        apply(&s, NODE_EVENT_MAINTENANCE_ON, "disk swap");
        ASSERT_EQ(s.id, NODE_MAINTENANCE);
        apply(&s, NODE_EVENT_MAINTENANCE_OFF, NULL);
        ASSERT_EQ(s.id, NODE_FENCED);
        ASSERT_TRUE(s.fenced);
        char b[256];
        ASSERT_STREQ(node_state_agent_check_reply(&s, b, sizeof b),
                     "down #fenced: self-fenced since before the maintenance ended\n");
}

DEFINE_TEST_MAIN()
