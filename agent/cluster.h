/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Cluster state in the shared PostgreSQL (invariants 3, 4 and 7): this node's
 * row in rupost_agent.nodes with a lease on the DB server's clock, renewed
 * every renew_interval; its state and reason published when they change;
 * LISTEN/NOTIFY so every agent learns a change at once; an in-memory view of
 * all nodes; the guards a node asks before it withdraws; and self-fencing.
 *
 * Everything runs on the event loop through the libpq glue: a DB that is
 * slow, gone or black-holed delays nothing else. The connection is dropped
 * and retried with backoff on any failure, and LISTEN is issued again on
 * every new connection (after a failover of a multi-host conninfo too).
 *
 * Self-fencing. When this node has not renewed its lease for
 * self_fence_after, it asks its peers (the nodes of its last view, on their
 * peer_address) whether they can see the DB. It fences itself (stops its
 * mail group through the fence callback) when a peer answers that it renews,
 * or when it cannot reach a majority of the cluster (itself included): then
 * it is the one cut off, and peers will trust its expired lease. When peers
 * answer and none of them sees the DB, the DB is down for everyone: fencing
 * would take the whole cluster down, so nobody fences and the agent raises a
 * critical alert instead (invariant 3). See rupost-agent.yaml(5) for the
 * limits of this rule. */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "lib/macro.h"
#include "lib/time-util.h"
#include "node-state.h"

typedef struct Cluster Cluster;

/* A node as the last refresh of the view saw it. Read-only for users. */
typedef struct ClusterNode {
        char *name;
        NodeStateId state;     /* _NODE_STATE_INVALID when the row holds a state this agent does not know */
        char *state_string;    /* as stored */
        char *reason;
        char *agent_version;
        char *peer_address;    /* "host:port", or NULL when unknown */
        char **failing_probes; /* probes it reports failing, or cleared within shared_failure_window */
        char **failing_now;    /* probes it reports failing now (critical), without the window */
        usec_t updated_at;     /* CLOCK_REALTIME, from the DB server's clock: when state or reason last changed */
        usec_t lease_deadline; /* CLOCK_MONOTONIC of this host: when the lease expires, as estimated */
        usec_t renewed;        /* CLOCK_MONOTONIC of this host: when the lease was last renewed, as estimated */
        bool self;
} ClusterNode;

/* Why a withdrawal may or may not go ahead. */
typedef enum ClusterVerdict {
        CLUSTER_ALLOW,
        CLUSTER_DENY_LAST_IN_SERVICE,   /* no other node is in service */
        CLUSTER_DENY_MAX_WITHDRAWN,     /* max_withdrawn_share of the nodes are out already */
        CLUSTER_DENY_SHARED_FAILURE,    /* most other nodes see the same probe failing */
        CLUSTER_DENY_DB_UNREACHABLE,    /* the guards cannot be consulted */
        _CLUSTER_VERDICT_MAX,
        _CLUSTER_VERDICT_INVALID = -EINVAL,
} ClusterVerdict;

const char *cluster_verdict_to_string(ClusterVerdict v) _pure_;

/* fenced: true when this node must stop its mail group now, false when it
 * can renew again and the fence is lifted. */
typedef void (*ClusterFenceCallback)(Cluster *c, bool fenced, const char *reason, void *userdata);

/* Starts connecting at once; never fails for the DB being unreachable. */
int cluster_new(sd_event *e, const ClusterConfig *config, const char *node_name, Cluster **ret);
Cluster *cluster_free(Cluster *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Cluster *, cluster_free);

/* The config was reloaded: timings and guards follow at once; a changed
 * conninfo, password or peer_address reconnects (or listens anew). */
int cluster_reconfigure(Cluster *c, const ClusterConfig *config);

void cluster_set_fence_callback(Cluster *c, ClusterFenceCallback callback, void *userdata);

/* ---- what node.c tells the cluster ---- */

/* The node's state changed: written at once, and announced to every agent. */
void cluster_publish(Cluster *c, NodeStateId state, const char *reason);
/* A probe turned critical (failing) or recovered. Every probe is reported,
 * not only the mail group's members: the withdrawal guard asks about members,
 * cluster_peers_failing() about any probe. */
void cluster_report_probe(Cluster *c, const char *probe, bool failing, const char *reason);

/* ---- what node.c asks ---- */

/* May this node withdraw because member probe `probe` failed? Decided from
 * the in-memory view, without waiting. When not, why explains it in one
 * line. While the DB cannot be reached the answer is DENY_DB_UNREACHABLE: a
 * node cut off alone fences itself anyway, and when nobody reaches the DB
 * the failure is most likely the DB's, which must not withdraw everyone. */
ClusterVerdict cluster_check_withdraw(Cluster *c, const char *probe, char *why, size_t len);

/* ---- read-only view, for the control socket, rupost-health and metrics ---- */

/* All nodes of the last view, this one included (sorted by name); the array
 * stays valid until the next return to the event loop. */
size_t cluster_nodes(const Cluster *c, const ClusterNode **ret);
/* Seconds until the node's lease expires (negative: expired that long ago). */
double cluster_node_lease_remaining(const ClusterNode *n);
/* Seconds since the node last renewed its lease (whatever its lease_ttl);
 * grows on while this node cannot read the registry. */
double cluster_node_lease_age(const ClusterNode *n);
/* How many other nodes with a live lease report probe `probe` failing now
 * (critical); their number in ret_live_peers. Probe names are the same on
 * every node (one config for the cluster), which is what makes the same name
 * the same dependency. Returns 0 and *ret_live_peers = 0 without a view, or
 * while the DB cannot be reached: the last view says nothing current then. */
unsigned cluster_peers_failing(const Cluster *c, const char *probe, unsigned *ret_live_peers);
/* Connected, and the last lease renewal succeeded. */
bool cluster_db_ok(const Cluster *c);
/* CLOCK_REALTIME of the last successful renewal, 0 when none yet. */
usec_t cluster_last_renew(const Cluster *c);
/* CLOCK_REALTIME since when this node has renewed its lease without a gap,
 * 0 while it cannot. For whoever trusts another node's expired lease (queue
 * evacuation): a lease counts as fenced only once it has been expired for
 * self_fence_after while this node itself was renewing, that is, not before
 * renewing_since + self_fence_after. Otherwise, after an outage of the DB
 * for everyone, every lease looks expired though nobody fenced. */
usec_t cluster_renewing_since(const Cluster *c);
/* The state this node's row held when this run of the agent first read the
 * registry, before writing it: what the previous run left (a node that was
 * in service may still be serving while it starts). _NODE_STATE_INVALID when
 * there was no row. -ENODATA until the registry has been read. */
int cluster_previous_state(const Cluster *c, NodeStateId *ret);
/* This node stopped its mail group because it could not renew its lease. */
bool cluster_self_fenced(const Cluster *c);
/* The last withdrawal the guards refused (sticky until a withdrawal is
 * allowed or cluster_clear_denial()): visible to metrics as an alert. */
ClusterVerdict cluster_last_denial(const Cluster *c);
/* The last connection or query error, "" when none. */
const char *cluster_last_error(const Cluster *c);
/* The schema version found in the DB after migrating, 0 before. */
unsigned cluster_db_schema_version(const Cluster *c);

/* Called by node.c when the node is back in service on its own health (not
 * when the guards keep it in service), or no member fails any more: clears
 * the denial. */
void cluster_clear_denial(Cluster *c);
