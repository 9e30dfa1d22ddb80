/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The node's self-healing policy, carried out: member probes turning
 * critical withdraw the node and stop the mail group as one; after a backoff
 * the group is started again and the node re-admitted once its members are
 * healthy for a number of rounds. HAProxy learns the node's state from the
 * agent-check port this serves. The decisions themselves are node-state.c. */

#include "config.h"
#include "node-state.h"

typedef struct Node Node;
typedef struct Manager Manager;

int node_new(Manager *m, const HealingConfig *config, Node **ret);
Node *node_free(Node *n);
/* For unit tests of what observes the node (control socket, metrics) and of
 * its decisions: a Node in `state` since `since` (CLOCK_REALTIME) without a
 * mail group (so no system bus), agent-check port or health rounds. Events
 * that would stop or start the group change its state and are published to
 * the cluster, but nothing is carried out on the group. */
int node_new_for_test(Manager *m, const HealingConfig *config, const NodeState *state, usec_t since, Node **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(Node *, node_free);

/* The config was reloaded: the node keeps its state and follows the new
 * policy. The mail group's units and the agent-check address change only at
 * the next start of the agent. */
void node_reconfigure(Node *n, const HealingConfig *config);

/* A probe's reported status changed. */
void node_probe_status_changed(Node *n, Probe *p, ProbeStatus old);

/* The cluster fenced this node (it cannot renew its lease while its peers
 * can): stop the mail group at once, bypassing the cluster's guards, and
 * start it again only once the fence is lifted. */
void node_self_fence(Node *n, bool fenced, const char *reason);

/* An operator's maintenance switch: on drains the node and suspends healing,
 * off returns it to normal judgement. Survives restarts of the agent. */
int node_set_maintenance(Node *n, bool on, const char *reason);

const NodeState *node_get_state(const Node *n);
/* When the current state was entered (CLOCK_REALTIME). */
usec_t node_state_since(const Node *n);
