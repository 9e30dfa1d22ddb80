/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The node's state machine, pure: no I/O, no clock. node.c feeds it events
 * and carries out the actions it returns. Kept apart so that every transition
 * is tested on its own (tests/unit/test-node-state.c).
 *
 *   starting ──healthy, or withdrawal refused──────▶ in-service
 *      │ member failed / half the group running            │ member failed
 *      ▼  (the cluster's guards allowing, see node.c)      ▼  (the same)
 *   withdrawn ◀──────────── start failed / member failed ── recovering
 *      │ backoff expired (group stopped)                   ▲  │ N healthy rounds
 *      └──────────────────── start group ──────────────────┘  └──▶ in-service
 *   withdrawn ── attempts exhausted ──▶ failed (stays withdrawn, loudly)
 *   any ── maintenance on ──▶ maintenance ── off ──▶ starting (reconcile)
 *   any ── fenced ──▶ fenced (group killed) ── fence lifted ──▶ withdrawn ──▶ recovering
 *
 * A fence dominates: from the moment it is set until it is lifted no event
 * starts the group or puts the node in service, whatever the order in which
 * events arrive (a stop that completes late, a backoff that expires, an
 * operator's maintenance switch). Maintenance entered while fenced keeps the
 * fence; leaving it returns to fenced, not to starting.
 *
 * MEMBER_FAILED means the withdrawal may go ahead: node.c feeds it only
 * once the cluster granted it (or when no guard applies). */

#include <stdbool.h>

#include "lib/macro.h"
#include "lib/time-util.h"

typedef enum NodeStateId {
        NODE_STARTING,
        NODE_IN_SERVICE,
        NODE_WITHDRAWN,
        NODE_RECOVERING,
        NODE_FAILED,
        NODE_MAINTENANCE,
        NODE_FENCED,
        _NODE_STATE_MAX,
        _NODE_STATE_INVALID = -EINVAL,
} NodeStateId;

typedef enum NodeEventId {
        NODE_EVENT_HEALTHY_ROUND,     /* every member probe ok and fresh */
        NODE_EVENT_MEMBER_FAILED,     /* a member probe turned critical, or a member unit went down */
        NODE_EVENT_GROUP_STOPPED,     /* the stop of the whole group completed */
        NODE_EVENT_GROUP_STARTED,     /* every member unit started */
        NODE_EVENT_GROUP_START_FAILED,
        NODE_EVENT_BACKOFF_EXPIRED,
        NODE_EVENT_STABLE,            /* in service for the stable period: forget past attempts */
        NODE_EVENT_MAINTENANCE_ON,
        NODE_EVENT_MAINTENANCE_OFF,
        NODE_EVENT_WITHDRAWAL_REFUSED, /* a member failed, but the cluster needs the node in service */
        NODE_EVENT_FENCED,            /* cut off from the cluster: the group must be down before the lease ends */
        NODE_EVENT_FENCE_LIFTED,      /* renewing again */
        _NODE_EVENT_MAX,
        _NODE_EVENT_INVALID = -EINVAL,
} NodeEventId;

/* What the caller must do after a transition; several may be set. */
typedef enum NodeAction {
        NODE_ACTION_NONE = 0,
        NODE_ACTION_STOP_GROUP = 1 << 0,
        NODE_ACTION_START_GROUP = 1 << 1,
        NODE_ACTION_ARM_BACKOFF = 1 << 2,   /* for NodeState.backoff */
        NODE_ACTION_ARM_STABLE = 1 << 3,    /* start counting the stable period */
        NODE_ACTION_PERSIST = 1 << 4,       /* maintenance changed: write the state file */
        NODE_ACTION_KILL_GROUP = 1 << 5,    /* fence: kill every member at once, then confirm */
} NodeAction;

typedef struct NodePolicy {
        usec_t backoff_initial;
        usec_t backoff_max;
        unsigned healthy_rounds; /* to re-admit after a recovery */
        unsigned max_attempts;   /* recoveries before giving up; 0 = never give up */
} NodePolicy;

typedef struct NodeState {
        NodeStateId id;
        char reason[256];        /* why the node is not in service, or the maintenance reason */
        unsigned attempts;       /* recoveries started since the last stable period */
        unsigned healthy_rounds; /* consecutive, while recovering */
        usec_t backoff;          /* the delay of the pending backoff */
        bool group_stopped;      /* the last group stop completed */
        bool fenced;             /* set by FENCED, cleared only by FENCE_LIFTED */
} NodeState;

const char *node_state_to_string(NodeStateId s) _pure_;
NodeStateId node_state_from_string(const char *s) _pure_;
const char *node_event_to_string(NodeEventId e) _pure_;

void node_state_init(NodeState *s);

/* Applies one event. `reason` explains MEMBER_FAILED, GROUP_START_FAILED and
 * MAINTENANCE_ON (may be NULL otherwise). Returns the actions to carry out. */
NodeAction node_state_apply(NodeState *s, const NodePolicy *policy, NodeEventId event, const char *reason);

/* The line this node answers on HAProxy's agent-check port. */
const char *node_state_agent_check_reply(const NodeState *s, char *buf, size_t len);
