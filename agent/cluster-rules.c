/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <math.h>
#include <stdio.h>

#include "cluster-rules.h"

static const char *const verdict_table[_CLUSTER_VERDICT_MAX] = {
        [CLUSTER_ALLOW] = "allow",
        [CLUSTER_DENY_LAST_IN_SERVICE] = "last-in-service",
        [CLUSTER_DENY_MAX_WITHDRAWN] = "max-withdrawn",
        [CLUSTER_DENY_SHARED_FAILURE] = "shared-failure",
        [CLUSTER_DENY_DB_UNREACHABLE] = "db-unreachable",
        [CLUSTER_DENY_NOT_REGISTERED] = "not-registered",
};

const char *cluster_verdict_to_string(ClusterVerdict v) {
        return v >= 0 && v < _CLUSTER_VERDICT_MAX ? verdict_table[v] : NULL;
}

ClusterVerdict cluster_guard_verdict(const GuardCounts *g, const char *probe, double max_withdrawn_share,
                                     double shared_failure_share, char *why, size_t len) {
        unsigned total = g->others + 1, out = g->others - MIN(g->in_service, g->others), allowed;

        if (g->in_service == 0) {
                if (why)
                        snprintf(why, len, "no other node of %u is in service and renewing its lease", total);
                return CLUSTER_DENY_LAST_IN_SERVICE;
        }
        /* Only nodes that serve say something about a shared dependency: a
         * withdrawn node's member probes fail because its group is stopped. */
        if (probe && (double) g->same_failure > shared_failure_share * g->in_service) {
                if (why)
                        snprintf(why, len, "%u of %u other nodes in service see probe '%s' failing too: a shared failure",
                                 g->same_failure, g->in_service, probe);
                return CLUSTER_DENY_SHARED_FAILURE;
        }
        allowed = MAX(1u, (unsigned) floor(max_withdrawn_share * total + 1e-9));
        if (out + 1 > allowed) {
                if (why)
                        snprintf(why, len, "%u of %u nodes are out of service already, at most %u may be", out, total,
                                 allowed);
                return CLUSTER_DENY_MAX_WITHDRAWN;
        }
        if (why && len > 0)
                why[0] = 0;
        return CLUSTER_ALLOW;
}

usec_t cluster_live_for(usec_t self_fence_after, usec_t renew_interval) {
        return self_fence_after > renew_interval ? self_fence_after - renew_interval : 0;
}

usec_t cluster_fence_deadline(const FenceInput *in) {
        return in->last_renew + in->self_fence_after;
}

bool cluster_poll_is_fresh(const FenceInput *in) {
        return in->poll_started != 0 && in->poll_started >= in->last_renew &&
               in->poll_started + 2 * in->renew_interval >= in->now;
}

FenceDecision cluster_fence_decide(const FenceInput *in, usec_t *ret_next, char *reason, size_t len) {
        usec_t deadline = cluster_fence_deadline(in);
        bool fresh = cluster_poll_is_fresh(in);

        *ret_next = 0;
        if (in->now < deadline) {
                *ret_next = deadline;
                return FENCE_NOT_DUE;
        }
        if (!in->have_view) {
                snprintf(reason, len, "cannot renew the cluster lease and has not seen its peers since the start");
                return FENCE_NOW;
        }
        if (fresh && in->peers_ok > 0) {
                /* Kept up by an outage that is ending: the DB is back for a
                 * peer and may be for us at our next attempt. The bound on
                 * this grace is cluster_trusts_expired_lease()'s. */
                if (in->in_outage && in->peer_ok_since != 0 && in->now < in->peer_ok_since + in->renew_interval) {
                        *ret_next = in->peer_ok_since + in->renew_interval;
                        return FENCE_GRACE;
                }
                snprintf(reason, len, "cannot renew the cluster lease while %u of its peers can", in->peers_ok);
                return FENCE_NOW;
        }
        if (in->live_peers == 0) {
                snprintf(reason, len,
                         "cannot renew the cluster lease and no live peer can confirm that the database is down "
                         "for everyone");
                return FENCE_NOW;
        }
        if (!fresh) {
                snprintf(reason, len, "cannot renew the cluster lease and has no recent answer from its peers");
                return FENCE_NOW;
        }
        if (in->live_peers_lost < in->live_peers) {
                snprintf(reason, len,
                         "cannot renew the cluster lease and only %u of its %u peers with a lease confirm that "
                         "they cannot either",
                         in->live_peers_lost, in->live_peers);
                return FENCE_NOW;
        }
        snprintf(reason, len, "the cluster database is unreachable from this node and from all %u peers with a lease",
                 in->live_peers);
        return FENCE_SHARED_OUTAGE;
}

bool cluster_trusts_expired_lease(int64_t expired_for, usec_t observer_renewing_for, usec_t renewed_ago) {
        return expired_for > 0 && observer_renewing_for > renewed_ago;
}
