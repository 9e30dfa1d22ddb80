/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Cluster state in the shared PostgreSQL (invariants 3, 4 and 7): this node's
 * row in rupost_agent.nodes with a lease on the DB server's clock, renewed
 * every renew_interval; its state and reason published when they change;
 * LISTEN/NOTIFY so every agent learns a change at once; an in-memory view of
 * all nodes; withdrawals granted by the database; and self-fencing.
 *
 * Everything runs on the event loop through the libpq glue: a DB that is
 * slow, gone or black-holed delays nothing else. The connection is dropped
 * and retried with backoff on any failure, and LISTEN is issued again on
 * every new connection (after a failover of a multi-host conninfo too).
 *
 * Withdrawal. A node takes itself out of service only once the database
 * granted it: one transaction, serialised with every other withdrawal by an
 * advisory transaction lock, counts the live nodes on the server's clock,
 * applies the guards (cluster-rules.h) and writes the new state only when
 * they hold. No answer (DB unreachable, timeout, broken connection) is no
 * grant.
 *
 * During an outage of the database for everyone (confirmed by the fence
 * rule's poll), a withdrawal is granted instead when every peer with a
 * lease consents on its peer port: it serves with healthy members.
 *
 * Self-fencing: cluster-rules.h states the rule; the peers are asked on
 * their peer port (cluster-peers.h). */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "cluster-rules.h"
#include "config.h"
#include "lib/macro.h"
#include "lib/time-util.h"
#include "node-state.h"

typedef struct Cluster Cluster;

/* A node as the last refresh of the view saw it. Read-only for users. Ages
 * are durations on the DB server's clock, measured when the view was read
 * (read_at) and aged on this host's monotonic clock since: never instants,
 * so they mean the same whatever this host's uptime or time zone. */
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
        int64_t lease_left;    /* until its lease expires; negative: expired that long ago */
        int64_t renewed_ago;   /* since it last renewed */
        int64_t live_left;     /* until it stops counting as live (cluster_live_for() after renewing) */
        usec_t read_at;        /* CLOCK_MONOTONIC of this host: when these were read */
        bool self;
} ClusterNode;

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
/* A probe the configuration no longer has: its row goes, so that it counts
 * for nobody's shared-failure guard, not even within the window. */
void cluster_forget_probe(Cluster *c, const char *probe);

/* ---- what node.c asks ---- */

/* The answer to a withdrawal request: CLUSTER_ALLOW when the database
 * granted it (this node's row holds the target state already), otherwise
 * why not, in one line. Always called from the event loop. */
typedef void (*ClusterWithdrawalDone)(Cluster *c, ClusterVerdict v, const char *why, void *userdata);

/* Asks the database to take this node out of service, into `target`
 * (withdrawn or failed), because member probe `probe` failed. One request at
 * a time: -EBUSY while one is pending. */
int cluster_request_withdrawal(Cluster *c, const char *probe, NodeStateId target, const char *reason,
                               ClusterWithdrawalDone done, void *userdata);
bool cluster_withdrawal_pending(const Cluster *c);
/* Whether a member probe of the mail group is critical now, for the peers
 * (see the policy for an outage of the database in rupost-agent.yaml(5)).
 * Set before asking for a withdrawal. */
void cluster_set_members_failing(Cluster *c, bool failing);

/* ---- read-only view, for the control socket, rupost-health and metrics ---- */

/* All nodes of the last view, this one included (sorted by name); the array
 * stays valid until the next return to the event loop. */
size_t cluster_nodes(const Cluster *c, const ClusterNode **ret);
/* Seconds until the node's lease expires (negative: expired that long ago). */
double cluster_node_lease_remaining(const ClusterNode *n);
/* Seconds since the node last renewed its lease (whatever its lease_ttl);
 * grows on while this node cannot read the registry. */
double cluster_node_lease_age(const ClusterNode *n);
/* Renewed within cluster_live_for() (server clock), as of now. */
bool cluster_node_live(const ClusterNode *n);
/* Whether this node may trust that `n`'s mail group is down because its
 * lease expired (cluster_trusts_expired_lease()). */
bool cluster_node_fenced(const Cluster *c, const ClusterNode *n);
/* How many other live nodes report probe `probe` failing now
 * (critical); their number in ret_live_peers. Probe names are the same on
 * every node (one config for the cluster), which is what makes the same name
 * the same dependency. Returns 0 and *ret_live_peers = 0 without a view, or
 * while the DB cannot be reached: the last view says nothing current then. */
unsigned cluster_peers_failing(const Cluster *c, const char *probe, unsigned *ret_live_peers);
/* Connected, and the last lease renewal succeeded. */
bool cluster_db_ok(const Cluster *c);
/* CLOCK_REALTIME of the last successful renewal, 0 when none yet. */
usec_t cluster_last_renew(const Cluster *c);
/* How long this node has renewed its lease without a gap, 0 while it
 * cannot (see cluster_node_fenced()). */
usec_t cluster_renewing_for(const Cluster *c);
/* Past its fence deadline, kept up because every live peer confirmed that
 * the database is down for everyone. */
bool cluster_shared_outage(const Cluster *c);
/* Peers with a lease that did not answer on their peer address at the last
 * poll (checked every ten renew intervals while renewing): should the
 * database fail, this node could not confirm a shared outage and would
 * fence. */
unsigned cluster_peers_unreachable(const Cluster *c);
/* The state this node's row held when this run of the agent first read the
 * registry, before writing it: what the previous run left (a node that was
 * in service may still be serving while it starts). _NODE_STATE_INVALID when
 * there was no row. -ENODATA until the registry has been read. */
int cluster_previous_state(const Cluster *c, NodeStateId *ret);
/* This node stopped its mail group because it could not renew its lease. */
bool cluster_self_fenced(const Cluster *c);
/* The last withdrawal the database refused (sticky until a withdrawal is
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
