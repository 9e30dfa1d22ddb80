/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <string.h>

#include "node-state.h"

static const char *const node_state_table[_NODE_STATE_MAX] = {
        [NODE_STARTING] = "starting",
        [NODE_IN_SERVICE] = "in_service",
        [NODE_WITHDRAWN] = "withdrawn",
        [NODE_RECOVERING] = "recovering",
        [NODE_FAILED] = "failed",
        [NODE_MAINTENANCE] = "maintenance",
        [NODE_FENCED] = "fenced",
};

static const char *const node_event_table[_NODE_EVENT_MAX] = {
        [NODE_EVENT_HEALTHY_ROUND] = "healthy-round",
        [NODE_EVENT_MEMBER_FAILED] = "member-failed",
        [NODE_EVENT_GROUP_STOPPED] = "group-stopped",
        [NODE_EVENT_GROUP_STARTED] = "group-started",
        [NODE_EVENT_GROUP_START_FAILED] = "group-start-failed",
        [NODE_EVENT_BACKOFF_EXPIRED] = "backoff-expired",
        [NODE_EVENT_STABLE] = "stable",
        [NODE_EVENT_MAINTENANCE_ON] = "maintenance-on",
        [NODE_EVENT_MAINTENANCE_OFF] = "maintenance-off",
        [NODE_EVENT_WITHDRAWAL_REFUSED] = "withdrawal-refused",
        [NODE_EVENT_FENCED] = "fenced",
        [NODE_EVENT_FENCE_LIFTED] = "fence-lifted",
};

const char *node_state_to_string(NodeStateId s) {
        return s >= 0 && s < _NODE_STATE_MAX ? node_state_table[s] : NULL;
}

NodeStateId node_state_from_string(const char *s) {
        for (NodeStateId i = 0; s && i < _NODE_STATE_MAX; i++)
                if (streq(s, node_state_table[i]))
                        return i;
        return _NODE_STATE_INVALID;
}

const char *node_event_to_string(NodeEventId e) {
        return e >= 0 && e < _NODE_EVENT_MAX ? node_event_table[e] : NULL;
}

void node_state_init(NodeState *s) {
        *s = (NodeState) { .id = NODE_STARTING };
}

static void set_reason(NodeState *s, const char *reason) {
        snprintf(s->reason, sizeof s->reason, "%s", reason ?: "");
}

/* The delay before recovery attempt n (1-based): doubling from the initial
 * delay, capped. */
static usec_t backoff_for(const NodePolicy *policy, unsigned attempt) {
        usec_t d = policy->backoff_initial;

        for (unsigned i = 1; i < attempt && d < policy->backoff_max; i++)
                d = d > policy->backoff_max / 2 ? policy->backoff_max : d * 2;
        return MIN(d, policy->backoff_max);
}

/* Take the node out: stop the whole group and wait before trying again, or
 * give up after too many attempts. */
static NodeAction withdraw(NodeState *s, const NodePolicy *policy, const char *reason) {
        set_reason(s, reason);
        s->healthy_rounds = 0;
        s->group_stopped = false;
        if (policy->max_attempts > 0 && s->attempts >= policy->max_attempts) {
                s->id = NODE_FAILED;
                return NODE_ACTION_STOP_GROUP;
        }
        s->id = NODE_WITHDRAWN;
        s->backoff = backoff_for(policy, s->attempts + 1);
        return NODE_ACTION_STOP_GROUP | NODE_ACTION_ARM_BACKOFF;
}

/* Withdrawn with the group down and the backoff passed: start it again. */
static NodeAction recover(NodeState *s, bool count_attempt) {
        s->id = NODE_RECOVERING;
        s->attempts += count_attempt;
        s->healthy_rounds = 0;
        return NODE_ACTION_START_GROUP;
}

static NodeAction fence(NodeState *s, const char *reason) {
        bool already = s->fenced;

        s->fenced = true;
        s->healthy_rounds = 0;
        if (s->id != NODE_MAINTENANCE) {
                s->id = NODE_FENCED;
                set_reason(s, reason);
        }
        if (already)
                return NODE_ACTION_NONE;
        s->group_stopped = false;
        return NODE_ACTION_KILL_GROUP;
}

static NodeAction lift_fence(NodeState *s) {
        if (!s->fenced)
                return NODE_ACTION_NONE;
        s->fenced = false;
        if (s->id != NODE_FENCED)
                /* In maintenance: leaving it reconciles the group. */
                return NODE_ACTION_NONE;
        /* Not a failure of the node's own: no backoff, no attempt counted. */
        s->id = NODE_WITHDRAWN;
        set_reason(s, "the self-fence is lifted");
        s->backoff = 0;
        return s->group_stopped ? recover(s, false) : NODE_ACTION_NONE;
}

static NodeAction apply_unfenced(NodeState *s, const NodePolicy *policy, NodeEventId event, const char *reason) {
        /* Maintenance is an operator's decision and overrides everything but
         * a fence. */
        if (event == NODE_EVENT_MAINTENANCE_ON) {
                s->id = NODE_MAINTENANCE;
                set_reason(s, reason);
                s->healthy_rounds = 0;
                return NODE_ACTION_PERSIST;
        }
        if (event == NODE_EVENT_FENCED)
                return fence(s, reason);
        if (event == NODE_EVENT_FENCE_LIFTED)
                return lift_fence(s);

        switch (s->id) {
        case NODE_MAINTENANCE:
                if (event != NODE_EVENT_MAINTENANCE_OFF)
                        return NODE_ACTION_NONE;
                if (s->fenced) {
                        s->id = NODE_FENCED;
                        set_reason(s, "self-fenced since before the maintenance ended");
                        return NODE_ACTION_PERSIST;
                }
                /* Back to judging the node from scratch, with a clean slate. */
                node_state_init(s);
                return NODE_ACTION_PERSIST;

        case NODE_FENCED:
                if (event == NODE_EVENT_GROUP_STOPPED)
                        s->group_stopped = true;
                return NODE_ACTION_NONE;

        case NODE_STARTING:
                if (event == NODE_EVENT_HEALTHY_ROUND) {
                        s->id = NODE_IN_SERVICE;
                        s->reason[0] = 0;
                        return NODE_ACTION_ARM_STABLE;
                }
                if (event == NODE_EVENT_MEMBER_FAILED)
                        return withdraw(s, policy, reason);
                if (event == NODE_EVENT_WITHDRAWAL_REFUSED) {
                        /* The group runs on from before the restart and the
                         * cluster has no one to spare: serve, as a node in
                         * service whose withdrawal is refused does. Left
                         * starting, HAProxy would count it down all the same. */
                        s->id = NODE_IN_SERVICE;
                        s->reason[0] = 0;
                        return NODE_ACTION_NONE;
                }
                return NODE_ACTION_NONE;

        case NODE_IN_SERVICE:
                if (event == NODE_EVENT_MEMBER_FAILED)
                        return withdraw(s, policy, reason);
                if (event == NODE_EVENT_STABLE)
                        s->attempts = 0;
                return NODE_ACTION_NONE;

        case NODE_WITHDRAWN:
                if (event == NODE_EVENT_GROUP_STOPPED)
                        s->group_stopped = true;
                else if (event == NODE_EVENT_BACKOFF_EXPIRED)
                        s->backoff = 0;
                else
                        return NODE_ACTION_NONE;
                /* Start again only once the old group is fully down and the
                 * backoff has passed, whichever comes last. */
                if (!s->group_stopped || s->backoff != 0)
                        return NODE_ACTION_NONE;
                return recover(s, true);

        case NODE_RECOVERING:
                switch (event) {
                case NODE_EVENT_GROUP_START_FAILED:
                case NODE_EVENT_MEMBER_FAILED:
                        return withdraw(s, policy, reason);
                case NODE_EVENT_HEALTHY_ROUND:
                        if (++s->healthy_rounds < policy->healthy_rounds)
                                return NODE_ACTION_NONE;
                        s->id = NODE_IN_SERVICE;
                        s->reason[0] = 0;
                        return NODE_ACTION_ARM_STABLE;
                default:
                        return NODE_ACTION_NONE;
                }

        case NODE_FAILED:
                /* Stays withdrawn until an operator steps in (maintenance on,
                 * then off, or a restart of the agent). */
                return NODE_ACTION_NONE;

        default:
                return NODE_ACTION_NONE;
        }
}

NodeAction node_state_apply(NodeState *s, const NodePolicy *policy, NodeEventId event, const char *reason) {
        NodeAction a = apply_unfenced(s, policy, event, reason);

        /* The fence dominates whatever the transition above did. */
        if (s->fenced) {
                a &= ~NODE_ACTION_START_GROUP;
                if (s->id != NODE_MAINTENANCE && s->id != NODE_FENCED) {
                        s->id = NODE_FENCED;
                        a &= ~NODE_ACTION_ARM_STABLE;
                }
        }
        return a;
}

const char *node_state_agent_check_reply(const NodeState *s, char *buf, size_t len) {
        /* HAProxy's agent-check (HAProxy 2.x reads words separated by
         * blanks or commas, up to the first CR or LF): "up ready" puts the
         * server in service, "drain" lets existing sessions finish and sends
         * no new ones, "down" takes it out. A '#' starts a free-text
         * description, shown in HAProxy's stats (last_agt), but only as a
         * word of its own: "down#text" is one unknown word and changes
         * nothing. An empty line changes nothing either: what a node that is
         * still starting says, so that an agent restart neither takes a
         * serving node out nor puts a withdrawn one back; HAProxy keeps what
         * the previous run told it, and its own health check still sees a
         * group that is not running. */
        char reason[160];
        size_t j = 0;

        for (size_t i = 0; s->reason[i] && j + 1 < sizeof reason; i++) {
                unsigned char ch = (unsigned char) s->reason[i];
                reason[j++] = ch < 0x20 || ch == 0x7f ? ' ' : (char) ch;
        }
        reason[j] = 0;

        switch (s->id) {
        case NODE_IN_SERVICE:
                snprintf(buf, len, "up ready\n");
                break;
        case NODE_MAINTENANCE:
                snprintf(buf, len, "drain\n");
                break;
        case NODE_STARTING:
                snprintf(buf, len, "\n");
                break;
        default:
                snprintf(buf, len, "down #%s%s%s\n", node_state_to_string(s->id), reason[0] ? ": " : "", reason);
        }
        return buf;
}
