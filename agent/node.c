/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster.h"
#include "healers/mail-group.h"
#include "lib/log.h"
#include "manager.h"
#include "node.h"

#define MESSAGE_ID_NODE_STATE_CHANGED "7b2e9c4d1f0a4c8e8a6b3d5f2c1e0a9b"
#define MESSAGE_ID_NODE_GAVE_UP       "e3a1c5b7d9f24e6a8c0b2d4f6a8c0e2b"
#define MESSAGE_ID_WITHDRAWAL_REFUSED "a7d3f1b9c5e24d8a9b6c0e4f2a8d1c3e"

struct Node {
        Manager *manager;
        const HealingConfig *config;
        NodePolicy policy;
        NodeState state;
        usec_t since;
        usec_t group_started; /* realtime; member results older than this do not count */

        MailGroup *group;
        sd_event_source *backoff_timer;
        sd_event_source *stable_timer;
        sd_event_source *round_timer;
        sd_event_source *recovery_deadline;
        sd_event_source *kill_retry;
        bool restarted; /* starting since the agent started, with the group as the last run left it */

        /* A member failure waits for a settled group (boot, a unit's own
         * start) before it is judged; unsettled, it is judged again at the
         * next round. */
        bool settle_pending;
        bool judge_again;
        bool unsettled_said;

        /* A withdrawal the cluster is asked for: decided when it answers. */
        char asked_reason[512];
        bool asked_known;
        bool asked_again;
        ClusterVerdict last_verdict;
};

static void node_apply(Node *n, NodeEventId event, const char *reason);

static Probe *find_probe(Node *n, const char *name) {
        size_t count;
        Probe **probes = manager_probes(n->manager, &count);

        for (size_t i = 0; i < count; i++)
                if (streq(probes[i]->name, name))
                        return probes[i];
        return NULL;
}

static bool is_member(Node *n, const Probe *p) {
        for (char **m = n->config->member_probes; m && *m; m++)
                if (streq(*m, p->name))
                        return true;
        return false;
}

/* Every member probe ok, judged on runs made after the group (re)started. */
static bool members_healthy(Node *n, char *why, size_t len) {
        for (char **m = n->config->member_probes; m && *m; m++) {
                Probe *p = find_probe(n, *m);

                if (!p || !p->have_result || p->last.started_realtime < n->group_started) {
                        snprintf(why, len, "probe '%s' has no result yet", *m);
                        return false;
                }
                if (p->status != PROBE_OK) {
                        snprintf(why, len, "probe '%s' is %s: %s", *m, probe_status_to_string(p->status),
                                 p->last.reason ?: "");
                        return false;
                }
        }
        return true;
}

/* ---- persistence: maintenance survives agent restarts ---- */

static int node_persist(Node *n) {
        const char *path = n->config->state_file;
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                (void) mkdir(dir, 0755);
        }

        f = fopen(tmp, "we");
        if (!f)
                return log_error_errno(errno, "Failed to write %s: %m", tmp);
        fprintf(f, "maintenance=%d\nreason=%s\n", n->state.id == NODE_MAINTENANCE,
                n->state.id == NODE_MAINTENANCE ? n->state.reason : "");
        if (fflush(f) != 0 || fsync(fileno(f)) < 0)
                return log_error_errno(errno, "Failed to write %s: %m", tmp);
        /* Atomic: a crash leaves the old file or the new one, never half of one. */
        if (rename(tmp, path) < 0)
                return log_error_errno(errno, "Failed to rename %s to %s: %m", tmp, path);
        return 0;
}

static void node_load_persisted(Node *n) {
        _cleanup_fclose_ FILE *f = fopen(n->config->state_file, "re");
        char line[512], reason[300] = "";
        bool maintenance = false;

        if (!f) {
                if (errno != ENOENT)
                        log_warning_errno(errno, "Failed to read %s, ignoring: %m", n->config->state_file);
                return;
        }
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                if (streq(line, "maintenance=1"))
                        maintenance = true;
                else if (strncmp(line, "reason=", 7) == 0)
                        snprintf(reason, sizeof reason, "%.255s", line + 7);
        }
        if (maintenance) {
                log_notice("The node is in maintenance since before this start: %s", reason);
                (void) node_state_apply(&n->state, &n->policy, NODE_EVENT_MAINTENANCE_ON, reason);
        }
}

/* ---- timers ---- */

static void arm_timer(Node *n, sd_event_source **s, usec_t delay, sd_event_time_handler_t handler);

static int on_backoff(sd_event_source *s, uint64_t usec, void *userdata) {
        /* Fenced meanwhile, the state machine ignores it. */
        node_apply(userdata, NODE_EVENT_BACKOFF_EXPIRED, NULL);
        return 0;
}

static int on_stable(sd_event_source *s, uint64_t usec, void *userdata) {
        node_apply(userdata, NODE_EVENT_STABLE, NULL);
        return 0;
}

static int on_recovery_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Node *n = userdata;
        char why[512], reason[600];

        if (n->state.id != NODE_RECOVERING)
                return 0;
        if (members_healthy(n, why, sizeof why))
                snprintf(why, sizeof why, "not enough healthy rounds");
        snprintf(reason, sizeof reason, "not healthy after the restart: %s", why);
        node_apply(n, NODE_EVENT_GROUP_START_FAILED, reason);
        return 0;
}

static void node_member_failed(Node *n, Probe *p, bool again);

/* A unit that is still starting is not a failure (invariant 3): a probe
 * that fails while its unit warms up is given this long after the unit
 * became active, on top of the boot transaction and any job in flight. */
static usec_t start_grace(const Node *n) {
        return MAX(10 * USEC_PER_SEC, 3 * n->config->round_interval);
}

/* A critical member, one that sees only this node's own state first: a
 * unit that is not running is this node's fault whatever the others see, and
 * so is not held back by the shared-failure guard (two nodes whose dovecot
 * dies in the same instant: one withdraws and heals, the other serves). */
static Probe *critical_member(Node *n) {
        Probe *found = NULL;

        for (char **m = n->config->member_probes; m && *m; m++) {
                Probe *p = find_probe(n, *m);
                if (!p || p->status != PROBE_CRITICAL)
                        continue;
                if (p->type->local_only)
                        return p;
                found = found ?: p;
        }
        return found;
}

static int on_round(sd_event_source *s, uint64_t usec, void *userdata) {
        Node *n = userdata;
        char why[512];

        /* A withdrawal the cluster refused is asked again each round: the
         * other nodes may have recovered since, or, for a node starting, the
         * registry may have been read. */
        if ((n->state.id == NODE_IN_SERVICE || n->state.id == NODE_STARTING || n->state.id == NODE_RECOVERING) &&
            (n->judge_again || cluster_last_denial(n->manager->cluster) != CLUSTER_ALLOW) &&
            !cluster_withdrawal_pending(n->manager->cluster)) {
                Probe *critical = critical_member(n);
                if (critical)
                        node_member_failed(n, critical, true);
                else {
                        n->judge_again = false;
                        cluster_clear_denial(n->manager->cluster);
                }
        }

        if (n->state.id == NODE_STARTING || n->state.id == NODE_RECOVERING) {
                if (members_healthy(n, why, sizeof why))
                        node_apply(n, NODE_EVENT_HEALTHY_ROUND, NULL);
                else if (n->state.id == NODE_RECOVERING)
                        /* Rounds count only when consecutive. */
                        n->state.healthy_rounds = 0;
        }
        (void) sd_event_source_set_time_relative(s, n->config->round_interval);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static void arm_timer(Node *n, sd_event_source **s, usec_t delay, sd_event_time_handler_t handler) {
        *s = sd_event_source_disable_unref(*s);
        int r = sd_event_add_time_relative(n->manager->event, s, CLOCK_MONOTONIC, delay, 10 * USEC_PER_MSEC,
                                           handler, n);
        if (r < 0)
                log_error_errno(r, "Failed to arm a healing timer: %m");
}

/* ---- the mail group ---- */

static void on_group_stopped(MailGroup *g, int r, const char *error, void *userdata);

static int on_kill_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Node *n = userdata;
        int r;

        n->kill_retry = sd_event_source_disable_unref(n->kill_retry);
        if (!n->state.fenced)
                return 0;
        r = mail_group_fence(n->group, CLUSTER_FENCE_MARGIN, on_group_stopped, n);
        if (r < 0)
                log_error_errno(r, "Failed to kill the mail group: %m");
        return 0;
}

static void on_group_stopped(MailGroup *g, int r, const char *error, void *userdata) {
        Node *n = userdata;

        if (r < 0 && n->state.fenced) {
                /* A fence is never assumed: kill again until every member is
                 * confirmed down. */
                log_internal(LOG_CRIT, r, &(LogFields) { .component = "mail-group" },
                             "The fenced mail group is not confirmed down, killing it again: %s", error);
                arm_timer(n, &n->kill_retry, USEC_PER_SEC, on_kill_retry);
                return;
        }
        if (r < 0)
                log_internal(LOG_ERR, r, &(LogFields) { .component = "mail-group" },
                             "The mail group stopped with errors: %s", error);
        else
                log_internal(LOG_NOTICE, 0, &(LogFields) { .component = "mail-group" },
                             "The mail group is stopped.");
        node_apply(n, NODE_EVENT_GROUP_STOPPED, NULL);
}

static void on_group_started(MailGroup *g, int r, const char *error, void *userdata) {
        Node *n = userdata;

        if (r < 0) {
                log_internal(LOG_ERR, r, &(LogFields) { .component = "mail-group" },
                             "The mail group failed to start: %s", error);
                node_apply(n, NODE_EVENT_GROUP_START_FAILED, error);
                return;
        }
        log_internal(LOG_NOTICE, 0, &(LogFields) { .component = "mail-group" }, "The mail group is started.");
        node_apply(n, NODE_EVENT_GROUP_STARTED, NULL);
}

static void node_carry_out(Node *n, NodeAction a) {
        int r;

        /* Only a node made by node_new_for_test() has no group: it records
         * its decisions and carries none of them out on the group. */
        if (!n->group)
                a &= ~(NODE_ACTION_STOP_GROUP | NODE_ACTION_START_GROUP | NODE_ACTION_KILL_GROUP);

        if (a & NODE_ACTION_KILL_GROUP) {
                /* Bounded by D-Bus round trips, not by the units' own stop
                 * times: the group must be down before the lease expires. */
                n->recovery_deadline = sd_event_source_disable_unref(n->recovery_deadline);
                r = mail_group_fence(n->group, CLUSTER_FENCE_MARGIN, on_group_stopped, n);
                if (r < 0) {
                        log_error_errno(r, "Failed to kill the mail group, retrying: %m");
                        arm_timer(n, &n->kill_retry, USEC_PER_SEC, on_kill_retry);
                }
        } else if (a & NODE_ACTION_STOP_GROUP) {
                n->recovery_deadline = sd_event_source_disable_unref(n->recovery_deadline);
                r = mail_group_stop(n->group, on_group_stopped, n);
                if (r < 0)
                        log_error_errno(r, "Failed to stop the mail group: %m");
        }
        if (a & NODE_ACTION_START_GROUP) {
                n->group_started = now(CLOCK_REALTIME);
                r = mail_group_start(n->group, on_group_started, n);
                if (r < 0)
                        log_error_errno(r, "Failed to start the mail group: %m");
                /* A restarted group gets its start time per unit plus time for
                 * the probes' rise before it counts as failed. */
                arm_timer(n, &n->recovery_deadline,
                          n->config->start_timeout * strv_length(n->config->units) +
                                  n->config->round_interval * (n->config->healthy_rounds + 5),
                          on_recovery_deadline);
        }
        if (a & NODE_ACTION_ARM_BACKOFF) {
                char t[DURATION_MAX];
                log_notice("Next recovery attempt in %s.", format_duration(t, sizeof t, n->state.backoff));
                arm_timer(n, &n->backoff_timer, n->state.backoff, on_backoff);
        }
        if (a & NODE_ACTION_ARM_STABLE) {
                n->recovery_deadline = sd_event_source_disable_unref(n->recovery_deadline);
                arm_timer(n, &n->stable_timer, n->config->stable_period, on_stable);
        }
        if (a & NODE_ACTION_PERSIST)
                (void) node_persist(n);
}

static void node_apply(Node *n, NodeEventId event, const char *reason) {
        NodeStateId old = n->state.id;
        NodeAction a = node_state_apply(&n->state, &n->policy, event, reason);

        if (n->state.id != old) {
                n->since = now(CLOCK_REALTIME);
                n->restarted = false;
                if (n->state.id != NODE_IN_SERVICE)
                        n->stable_timer = sd_event_source_disable_unref(n->stable_timer);
                log_internal(n->state.id == NODE_IN_SERVICE ? LOG_NOTICE : LOG_WARNING, 0,
                             &(LogFields) {
                                     .component = "node",
                                     .message_id = n->state.id == NODE_FAILED ? MESSAGE_ID_NODE_GAVE_UP
                                                                              : MESSAGE_ID_NODE_STATE_CHANGED,
                             },
                             "Node %s is %s (was %s, on %s)%s%s%s", manager_node_name(n->manager),
                             node_state_to_string(n->state.id), node_state_to_string(old),
                             node_event_to_string(event), n->state.reason[0] ? ": " : "", n->state.reason,
                             n->state.id == NODE_FAILED ? "; recovery attempts exhausted, staying withdrawn until "
                                                          "an operator intervenes"
                                                        : "");
                cluster_publish(n->manager->cluster, n->state.id, n->state.reason);
                /* Back in service on its own health, a refusal from before is
                 * history; kept in service by a refusal, it is pending and
                 * asked again every round. */
                if (n->state.id == NODE_IN_SERVICE && event != NODE_EVENT_WITHDRAWAL_REFUSED)
                        cluster_clear_denial(n->manager->cluster);
        }
        node_carry_out(n, a);
}

/* Whether withdrawing may take a node away that serves mail. In service,
 * it does. Starting, it may: after a restart of the agent the mail group
 * runs on as the previous run left it, and when that run had the node in
 * service (its registry row said so until this run's first renewal) peers
 * counted on it, and it may be the last one serving. That it answers HAProxy
 * "down" while starting is a pause of a round or two, not a verdict. Until
 * the registry has been read this is not known: assume it may. A node that
 * was withdrawn, recovering or failed before the restart, or that starts
 * after maintenance (drained), takes nothing away by withdrawing; this is
 * how it restarts a group found stopped even when no other node is in
 * service. */
static bool node_may_be_serving(Node *n, bool *ret_known) {
        NodeStateId prev;

        *ret_known = true;
        if (n->state.id == NODE_IN_SERVICE)
                return true;
        if (n->state.id != NODE_STARTING || !n->restarted)
                return false;
        if (cluster_previous_state(n->manager->cluster, &prev) < 0) {
                *ret_known = false;
                return true;
        }
        return prev == NODE_IN_SERVICE;
}

static void node_withdrawal_refused(Node *n, ClusterVerdict v, const char *why) {
        log_internal(LOG_CRIT, 0,
                     &(LogFields) { .component = "node", .message_id = MESSAGE_ID_WITHDRAWAL_REFUSED },
                     "Node %s %s although %s: %s (%s).", manager_node_name(n->manager),
                     n->state.id == NODE_IN_SERVICE ? "stays in service"
                     : n->asked_known               ? "is kept in service"
                                                    : "does not withdraw",
                     n->asked_reason, why, cluster_verdict_to_string(v));
}

/* The database (or, in an outage of it, the peers) answered. Granted, the
 * registry holds the node withdrawn already and the group is stopped now;
 * the node may have changed state meanwhile (fenced, maintenance), and then
 * what it publishes overwrites the grant. Refused, it stays in service and
 * raises the alarm; on_round() asks again every round. */
static void on_withdrawal_verdict(Cluster *c, ClusterVerdict v, const char *why, void *userdata) {
        Node *n = userdata;
        bool said = n->asked_again && v == n->last_verdict;

        n->last_verdict = v;
        if (n->state.id != NODE_IN_SERVICE && n->state.id != NODE_STARTING) {
                cluster_publish(c, n->state.id, n->state.reason);
                return;
        }
        if (v == CLUSTER_ALLOW) {
                node_apply(n, NODE_EVENT_MEMBER_FAILED, n->asked_reason);
                return;
        }
        /* Asked again every round: say it once per reason. */
        if (!said)
                node_withdrawal_refused(n, v, why);
        /* Not known to have served: it stays starting, group untouched. */
        if (n->asked_known)
                node_apply(n, NODE_EVENT_WITHDRAWAL_REFUSED, n->asked_reason);
}

/* Invariant 3: a node that may be serving mail does not take itself out:
 * it asks the database, which grants or refuses in one serialised
 * transaction (cluster.h), and the group is stopped only once granted. A
 * starting node is put in service when refused rather than left starting,
 * which HAProxy would take as down for good; one that cannot know yet
 * whether it was in service stays starting (the group untouched) until it
 * can. The half-running group an agent restart finds is such a failure:
 * stopped as a whole once granted, kept meanwhile like a failing member of
 * a node in service. */
static void node_judge_failure(Node *n, Probe *p, bool again) {
        Cluster *c = n->manager->cluster;
        NodeState next = n->state;
        bool known;
        int r;

        if (c && cluster_withdrawal_pending(c))
                return; /* the answer to come decides */
        snprintf(n->asked_reason, sizeof n->asked_reason, "%s: %s", p->name, p->last.reason ?: "critical");
        (void) node_state_apply(&next, &n->policy, NODE_EVENT_MEMBER_FAILED, n->asked_reason);
        if (!c || !node_may_be_serving(n, &known) || (next.id != NODE_WITHDRAWN && next.id != NODE_FAILED))
                return node_apply(n, NODE_EVENT_MEMBER_FAILED, n->asked_reason);

        n->asked_known = known;
        n->asked_again = again;
        /* A local fault is never a shared one: no probe to compare. */
        r = cluster_request_withdrawal(c, p->type->local_only ? NULL : p->name, next.id, n->asked_reason,
                                       on_withdrawal_verdict, n);
        if (r < 0)
                log_error_errno(r, "Failed to ask the cluster for a withdrawal, staying in service: %m");
}

static void on_settled(MailGroup *g, int r, bool settled, const char *reason, void *userdata) {
        Node *n = userdata;
        Probe *p;

        n->settle_pending = false;
        if (n->state.id != NODE_IN_SERVICE && n->state.id != NODE_STARTING && n->state.id != NODE_RECOVERING)
                return;
        p = critical_member(n);
        if (!p) {
                n->judge_again = false;
                return;
        }
        if (r < 0 || !settled) {
                if (!n->unsettled_said)
                        log_internal(LOG_NOTICE, 0, &(LogFields) { .probe = p->name, .component = "node" },
                                     "Member probe '%s' is critical, but the mail group is not settled (%s): not a "
                                     "failure yet, judged again every round.",
                                     p->name, reason);
                n->unsettled_said = true;
                n->judge_again = true;
                return;
        }
        n->unsettled_said = false;
        n->judge_again = false;
        node_judge_failure(n, p, n->asked_again);
}

/* Judged only from a settled group: not during the boot transaction, not
 * while a member has a job in flight or is activating, and not within the
 * start grace of a member that just became active. */
static void node_member_failed(Node *n, Probe *p, bool again) {
        int r;

        if (!n->group)
                return node_judge_failure(n, p, again);
        if (n->settle_pending)
                return;
        n->asked_again = again;
        r = mail_group_query_settled(n->group, start_grace(n), on_settled, n);
        if (r < 0) {
                log_warning_errno(r, "Cannot ask systemd whether the mail group is settled, judging again next round: %m");
                n->judge_again = true;
                return;
        }
        n->settle_pending = true;
}

void node_probe_status_changed(Node *n, Probe *p, ProbeStatus old) {
        if (!n || !is_member(n, p))
                return;
        /* Before anything is asked: peers read it (cluster.h). */
        cluster_set_members_failing(n->manager->cluster, critical_member(n) != NULL);
        /* The manager reported the failure to the cluster already
         * (manager_probe_status_changed()), for the others' guards. */
        if (p->status == PROBE_CRITICAL)
                node_member_failed(n, p, false);
}

void node_self_fence(Node *n, bool fenced, const char *reason) {
        if (!n)
                return;
        /* The state machine makes the fence dominate (node-state.h). */
        node_apply(n, fenced ? NODE_EVENT_FENCED : NODE_EVENT_FENCE_LIFTED, reason);
}

int node_set_maintenance(Node *n, bool on, const char *reason) {
        if (on == (n->state.id == NODE_MAINTENANCE))
                return 0;
        node_apply(n, on ? NODE_EVENT_MAINTENANCE_ON : NODE_EVENT_MAINTENANCE_OFF, reason);
        if (!on)
                n->group_started = now(CLOCK_REALTIME);
        return 0;
}

static NodePolicy policy_from_config(const HealingConfig *config) {
        return (NodePolicy) {
                .backoff_initial = config->backoff_initial,
                .backoff_max = config->backoff_max,
                .healthy_rounds = config->healthy_rounds,
                .max_attempts = config->max_attempts,
        };
}

void node_reconfigure(Node *n, const HealingConfig *config) {
        n->config = config;
        n->policy = policy_from_config(config);
}

const NodeState *node_get_state(const Node *n) {
        return &n->state;
}

usec_t node_state_since(const Node *n) {
        return n->since;
}

int node_new(Manager *m, const HealingConfig *config, Node **ret) {
        _cleanup_(node_freep) Node *n = NULL;
        int r;

        n = calloc(1, sizeof *n);
        if (!n)
                return log_oom();
        n->manager = m;
        n->config = config;
        n->policy = policy_from_config(config);
        node_state_init(&n->state);
        n->since = n->group_started = now(CLOCK_REALTIME);
        node_load_persisted(n);
        /* Not when it starts in maintenance: when that ends it is drained. */
        n->restarted = n->state.id == NODE_STARTING;

        /* A connection of its own, opened when first needed and again after
         * it breaks: without a system bus the agent runs on, and the group's
         * calls fail and are retried (a member failure is then not judged:
         * whether the group is settled cannot be told). */
        r = mail_group_new_full(m->event, NULL, NULL, config->units, config->stop_timeout, config->start_timeout,
                                &n->group);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the mail group: %m");

        r = sd_event_add_time_relative(m->event, &n->round_timer, CLOCK_MONOTONIC, config->round_interval,
                                       10 * USEC_PER_MSEC, on_round, n);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the health round timer: %m");

        *ret = TAKE_PTR(n);
        return 0;
}

int node_new_for_test(Manager *m, const HealingConfig *config, const NodeState *state, usec_t since, Node **ret) {
        Node *n = calloc(1, sizeof *n);

        if (!n)
                return -ENOMEM;
        n->manager = m;
        n->config = config;
        n->policy = policy_from_config(config);
        n->state = *state;
        n->restarted = state->id == NODE_STARTING;
        n->since = n->group_started = since;
        *ret = n;
        return 0;
}

Node *node_free(Node *n) {
        if (!n)
                return NULL;
        n->group = mail_group_free(n->group);
        sd_event_source_disable_unref(n->backoff_timer);
        sd_event_source_disable_unref(n->stable_timer);
        sd_event_source_disable_unref(n->round_timer);
        sd_event_source_disable_unref(n->recovery_deadline);
        sd_event_source_disable_unref(n->kill_retry);
        free(n);
        return NULL;
}
