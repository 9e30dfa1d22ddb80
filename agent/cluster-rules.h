/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The cluster's decisions, pure: no I/O, no clock of their own. cluster.c
 * gathers the inputs (counts read inside the database's serialised
 * withdrawal transaction, answers of the peers, the times of renewals) and
 * carries out the verdicts; tests/unit/test-cluster-model.c drives these
 * same functions through random interleavings of many nodes.
 *
 * Liveness. A node is live for self_fence_after - renew_interval after its
 * last renewal committed, on the database server's clock (cluster_live_for(),
 * 7 s with the defaults, stored with each row). That renewal was sent at most
 * a renew interval (its query's timeout) before it committed, so a node cut
 * off stops counting as live before it fences itself: the guards never count
 * a fenced node as serving. A node whose agent or host died counts as live,
 * and as serving if it was, for at most that long: the margin of every guard
 * below.
 *
 * Guards (invariant 3), in this order:
 *   - the last node in service (no other live node in service) stays;
 *   - a probe that more than shared_failure_share of the other live nodes
 *     in service see failing (now, or cleared within the window) is a shared
 *     failure: an alert, not a withdrawal;
 *   - at most max_withdrawn_share of the nodes (at least one) are out of
 *     service at once; a node that is not live counts as out.
 *
 * Fencing. A node that has not renewed for self_fence_after stops its mail
 * group (killed within CLUSTER_FENCE_MARGIN), before its lease expires,
 * unless it confirms a shared outage: every peer whose lease was unexpired in
 * its last view answered on its peer port, each said it cannot renew either,
 * and no peer at all said it can. One peer that renews, or one live peer that does
 * not answer, and it fences (after one renew interval of grace to reconnect
 * when a peer renews again). Alone, no one can confirm an outage: it fences.
 * So a node whose lease expired (server clock) has its group down, unless a
 * shared outage kept it up: see cluster_trusts_expired_lease() for who may
 * trust an expired lease. */

#include <stdbool.h>
#include <stddef.h>

#include "lib/macro.h"
#include "lib/time-util.h"

/* Why a withdrawal may or may not go ahead. */
typedef enum ClusterVerdict {
        CLUSTER_ALLOW,
        CLUSTER_DENY_LAST_IN_SERVICE,   /* no other node is in service */
        CLUSTER_DENY_MAX_WITHDRAWN,     /* max_withdrawn_share of the nodes are out already */
        CLUSTER_DENY_SHARED_FAILURE,    /* most other nodes see the same probe failing */
        CLUSTER_DENY_DB_UNREACHABLE,    /* the guards cannot be consulted */
        CLUSTER_DENY_NOT_REGISTERED,    /* our row is held by another agent, or gone */
        _CLUSTER_VERDICT_MAX,
        _CLUSTER_VERDICT_INVALID = -EINVAL,
} ClusterVerdict;

const char *cluster_verdict_to_string(ClusterVerdict v) _pure_;

/* What the withdrawal transaction counts, under its lock, of the nodes other
 * than the one asking. */
typedef struct GuardCounts {
        unsigned others;       /* in the registry */
        unsigned live;         /* renewing (see above) */
        unsigned in_service;   /* live and in service */
        unsigned same_failure; /* live, in service, and failing the probe now or within the window */
} GuardCounts;

ClusterVerdict cluster_guard_verdict(const GuardCounts *g, const char *probe, double max_withdrawn_share,
                                     double shared_failure_share, char *why, size_t len);

typedef enum FenceDecision {
        FENCE_NOT_DUE,        /* renewed recently enough */
        FENCE_NOW,            /* stop the mail group */
        FENCE_SHARED_OUTAGE,  /* past the deadline, but every live peer confirms the DB is down for all */
        FENCE_GRACE,          /* a peer renews again: a renew interval to reconnect before fencing */
} FenceDecision;

typedef struct FenceInput {
        usec_t now;              /* CLOCK_MONOTONIC, as every time here */
        usec_t last_renew;       /* when the last successful renewal was sent */
        usec_t self_fence_after;
        usec_t renew_interval;
        bool have_view;          /* the registry was read since the start */
        unsigned live_peers;     /* peers with an unexpired lease in the last view: each must confirm an outage */
        /* The last poll of the peers: when it started (0: none), how many of
         * the live peers answered that they lost the DB too, and how many of
         * all the peers asked answered that they renew. */
        usec_t poll_started;
        unsigned live_peers_lost;
        unsigned peers_ok;
        /* Kept up by a shared outage until now, and since when a peer is
         * heard renewing again (0: none is). */
        bool in_outage;
        usec_t peer_ok_since;
} FenceInput;

/* How long after its last renewal a node counts as live (see above). */
usec_t cluster_live_for(usec_t self_fence_after, usec_t renew_interval) _pure_;

/* The deadline: last_renew + self_fence_after. */
usec_t cluster_fence_deadline(const FenceInput *in) _pure_;
/* A poll counts when it started within two renew intervals of now, and not
 * before the renewal it judges. */
bool cluster_poll_is_fresh(const FenceInput *in) _pure_;
/* Decides, and says why in `reason` for FENCE_NOW and FENCE_SHARED_OUTAGE;
 * *ret_next is when to decide again (0: at the next poll or renewal). */
FenceDecision cluster_fence_decide(const FenceInput *in, usec_t *ret_next, char *reason, size_t len);

/* Whether an observer may trust that a node whose lease expired
 * `expired_for` ago (the server's clock; negative: still live) has its mail
 * group down: the lease must have expired, and the observer must have
 * renewed without a gap since before that node's last renewal
 * (observer_renewing_for > its renewed_ago). Then the observer's lease was
 * unexpired in that node's last view, so that node had to hear from the
 * observer to stay up past its deadline, and the observer, renewing, never
 * answers that it lost the database: that node fenced at its deadline and
 * its group was down CLUSTER_FENCE_MARGIN later, before its lease expired.
 * What this leaves out (an observer that was down or cut off when that node
 * last renewed, every node after an outage of the database for everyone, a
 * node whose agent is dead and fences nothing) the lease cannot prove; queue
 * evacuation checks the queue's own lock for those. */
bool cluster_trusts_expired_lease(int64_t expired_for, usec_t observer_renewing_for, usec_t renewed_ago) _pure_;
