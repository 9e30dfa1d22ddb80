/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The cluster state in PostgreSQL, driven from the event loop.
 *
 * One session connection (LISTEN needs one) runs one query at a time:
 * after connecting, the migration script, then LISTEN, then "sync" rounds
 * and, when node.c asks, withdrawal transactions. A sync is one round trip:
 * upsert this node's row with a lease computed by the server (now() + ttl),
 * record the probes it sees failing, and read back the whole registry for
 * the in-memory view. A sync runs every renew_interval, when the node's
 * state changes, and when a NOTIFY arrives. Between queries the socket is
 * watched for notifications.
 *
 * A withdrawal is two round trips in one transaction: the first takes the
 * withdrawal lock and counts, the second writes the new state and commits,
 * or rolls back. The server aborts the transaction (and frees the lock for
 * the others) if this agent goes silent in between
 * (idle_in_transaction_session_timeout).
 *
 * Any failure drops the connection and reconnects with backoff; the lease
 * is then no longer renewed and the self-fence deadline runs. */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-id128.h>

#include "build-config.h"
#include "cluster-peers.h"
#include "cluster-schema.h"
#include "cluster.h"
#include "lib/log.h"
#include "lib/pq-glue.h"

#define MESSAGE_ID_CLUSTER_SELF_FENCED  "5c1f7e2a9b3d4e8fa0c6b2d8e4f1a3c5"
#define MESSAGE_ID_CLUSTER_SHARED_OUTAGE "d8b4a2c6e0f94b7d9e3a5c1f7b2d4e6a"
#define RECONNECT_MIN (100 * USEC_PER_MSEC)
/* "rupost" and 2 in the key's bytes: serialises withdrawals. */
#define WITHDRAW_LOCK "8247621916579594242"

typedef enum Job {
        JOB_NONE,
        JOB_MIGRATE,
        JOB_LISTEN,
        JOB_SYNC,
        JOB_WITHDRAW_COUNT,
        JOB_WITHDRAW_FINISH,
} Job;

typedef struct ProbeReport {
        char *probe;
        char *reason;
        bool failing;
        bool forget;      /* the probe is gone: delete its row */
        bool dirty;
        uint64_t changed; /* Cluster.report_seq when it last changed */
} ProbeReport;

typedef struct Withdrawal {
        bool pending;     /* asked, not answered */
        bool started;     /* the transaction is open */
        char *probe;
        char *reason;
        NodeStateId target;
        ClusterVerdict verdict;
        char why[256];
        ClusterWithdrawalDone done;
        void *userdata;
        sd_event_source *answer; /* delivers an answer that needs no query */
        PeerPoll *consent;       /* during a shared outage: the peers are asked instead */
} Withdrawal;

/* Keys the instance id to this program: other programs get other ids from
 * the same machine id, and ours does not reveal the machine id. */
#define CLUSTER_INSTANCE_APP_ID SD_ID128_MAKE(3c,8f,2a,91,d4,5e,4b,07,a1,6c,9e,23,f0,b8,57,d2)

struct Cluster {
        sd_event *event;
        const ClusterConfig *config;
        char *node_name;
        char instance[SD_ID128_STRING_MAX];
        /* Copies, to notice what a reload changed after the old config is gone. */
        char *conninfo;
        char *password;
        char *peer_address;

        PqConn *conn;
        bool ready; /* migrated and listening */
        Job job;
        usec_t job_started; /* CLOCK_MONOTONIC */
        sd_event_source *notify_io;
        sd_event_source *reconnect_timer;
        sd_event_source *renew_timer;
        sd_event_source *fence_timer;
        usec_t backoff;

        bool sync_due;
        bool cleared_old_failures;
        /* This node's state in the registry before this run of the agent
         * first wrote it: read once, with the first LISTEN. */
        bool have_previous;
        NodeStateId previous_state;
        NodeStateId state;
        char *reason;
        ProbeReport *reports;
        size_t n_reports;
        /* A report that changes while a sync is in flight is not in it: only
         * those up to sync_seq are written once the sync is done. */
        uint64_t report_seq;
        uint64_t sync_seq;
        Withdrawal withdrawal;

        bool db_ok;
        bool have_view;
        usec_t started_mono;
        usec_t last_renew_mono;     /* when the last successful renewal was sent */
        usec_t last_reply_mono;     /* when its answer came */
        usec_t last_renew_realtime;
        usec_t renewing_since_mono; /* renewing without a gap since, 0 while not */
        unsigned schema_version;
        char error[512];

        ClusterNode *nodes;
        size_t n_nodes;
        unsigned live_peers; /* peers whose lease was unexpired at the last renewal: each must confirm an outage */

        /* Fencing (cluster-rules.h). */
        bool fenced;
        bool in_outage;
        usec_t peer_ok_since;
        PeerPollResult last_poll;
        usec_t health_poll_due;    /* CLOCK_MONOTONIC: the next check of the peer ports while renewing */
        unsigned peers_unreachable; /* peers with a lease that did not answer the last poll */
        ClusterFenceCallback fence_callback;
        void *fence_userdata;
        ClusterVerdict last_denial;
        bool members_failing;

        PeerListener *peer_listener;
        PeerPoll *poll;
};

static void cluster_connect(Cluster *c);
static void cluster_run_next(Cluster *c);
static void cluster_fence_tick(Cluster *c);

static void set_error(Cluster *c, const char *fmt, ...) _printf_(2, 3);
static void set_error(Cluster *c, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        va_end(ap);
}

/* ---- the view ---- */

static void node_done(ClusterNode *n) {
        free(n->name);
        free(n->state_string);
        free(n->reason);
        free(n->agent_version);
        free(n->peer_address);
        strv_free(n->failing_probes);
        strv_free(n->failing_now);
}

static void view_free(ClusterNode *nodes, size_t n) {
        for (size_t i = 0; i < n; i++)
                node_done(&nodes[i]);
        free(nodes);
}

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static char **split_words(const char *s) {
        size_t n = 0, k = 0;
        char **l;

        for (const char *p = s; p && *p; p++)
                n += *p == ' ';
        l = calloc(n + 2, sizeof(char *));
        if (!l)
                return NULL;
        for (const char *p = s; p && *p;) {
                size_t len = strcspn(p, " ");
                if (len > 0 && !(l[k++] = strndup(p, len)))
                        return strv_free(l);
                p += len;
                p += *p == ' ';
        }
        return l;
}

static int64_t field_int(PGresult *r, int row, int col) {
        const char *s = PQgetvalue(r, row, col);
        return s && *s ? strtoll(s, NULL, 10) : 0;
}

static char *field_dup(PGresult *r, int row, int col) {
        return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static int64_t elapsed_since(usec_t mono) {
        return (int64_t) now(CLOCK_MONOTONIC) - (int64_t) mono;
}

/* Columns of the view query, in order. */
enum { COL_NAME, COL_STATE, COL_REASON, COL_VERSION, COL_PEER, COL_INSTANCE, COL_LEASE_LEFT, COL_RENEWED_AGO,
       COL_LIVE_LEFT, COL_UPDATED, COL_FAILING, COL_FAILING_NOW, _COL_MAX };

/* Replaces the view with the rows of a sync; returns whether our own row is
 * ours (another agent with our name may hold it) with a live lease. */
static int cluster_load_view(Cluster *c, PGresult *r, usec_t received, bool *ret_renewed) {
        int rows = PQntuples(r);
        ClusterNode *nodes;
        bool renewed = false;
        unsigned live = 0;

        if (PQnfields(r) != _COL_MAX)
                return -EBADMSG;
        nodes = calloc(MAX(rows, 1), sizeof *nodes);
        if (!nodes)
                return -ENOMEM;

        for (int i = 0; i < rows; i++) {
                ClusterNode *n = &nodes[i];

                n->name = field_dup(r, i, COL_NAME);
                n->state_string = field_dup(r, i, COL_STATE);
                n->reason = field_dup(r, i, COL_REASON);
                n->agent_version = field_dup(r, i, COL_VERSION);
                n->peer_address = field_dup(r, i, COL_PEER);
                n->failing_probes = split_words(PQgetvalue(r, i, COL_FAILING));
                n->failing_now = split_words(PQgetvalue(r, i, COL_FAILING_NOW));
                if (!n->name || !n->state_string || !n->reason || !n->agent_version || !n->failing_probes ||
                    !n->failing_now) {
                        view_free(nodes, (size_t) rows);
                        return -ENOMEM;
                }
                n->state = node_state_from_string(n->state_string);
                n->updated_at = (usec_t) MAX(field_int(r, i, COL_UPDATED), 0);
                n->lease_left = field_int(r, i, COL_LEASE_LEFT);
                n->renewed_ago = MAX(field_int(r, i, COL_RENEWED_AGO), 0);
                n->live_left = field_int(r, i, COL_LIVE_LEFT);
                n->read_at = received;
                n->self = streq(n->name, c->node_name);
                if (n->self)
                        renewed = streq(PQgetvalue(r, i, COL_INSTANCE), c->instance) && n->lease_left > 0;
                else if (n->lease_left > 0)
                        live++;
        }

        view_free(c->nodes, c->n_nodes);
        c->nodes = nodes;
        c->n_nodes = (size_t) rows;
        c->have_view = true;
        if (renewed)
                c->live_peers = live;
        *ret_renewed = renewed;
        return 0;
}

/* ---- the connection ---- */

static void cluster_set_fenced(Cluster *c, bool fenced, const char *reason) {
        if (c->fenced == fenced)
                return;
        c->fenced = fenced;
        if (c->fence_callback)
                c->fence_callback(c, fenced, reason, c->fence_userdata);
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        Cluster *c = userdata;

        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        cluster_connect(c);
        return 0;
}

static void withdrawal_answer(Cluster *c, ClusterVerdict v, const char *why);

/* Drops the connection; reconnects after the backoff. */
static void cluster_disconnect(Cluster *c, bool retry) {
        bool was_ok = c->db_ok;
        int r;

        c->notify_io = sd_event_source_disable_unref(c->notify_io);
        c->conn = pq_conn_free(c->conn);
        c->ready = false;
        c->job = JOB_NONE;
        c->db_ok = false;
        c->renewing_since_mono = 0;
        if (was_ok)
                log_warning("Lost the cluster database: %s", c->error);
        /* A transaction that may not have committed: no grant. If it did
         * commit, the next sync writes the state this node really has. A
         * request the peers are asked about (an outage of the database) does
         * not depend on this connection: its failed reconnects leave it be. */
        if (c->withdrawal.pending && !c->withdrawal.consent) {
                char why[300];
                snprintf(why, sizeof why, "the cluster database is unreachable (%.200s), the guards cannot be consulted",
                         c->error);
                withdrawal_answer(c, CLUSTER_DENY_DB_UNREACHABLE, why);
                c->sync_due = true;
        }
        if (!retry)
                return;

        c->backoff = c->backoff == 0 ? RECONNECT_MIN : MIN(c->backoff * 2, c->config->renew_interval);
        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        r = sd_event_add_time_relative(c->event, &c->reconnect_timer, CLOCK_MONOTONIC, c->backoff, USEC_PER_MSEC,
                                       on_reconnect, c);
        if (r < 0)
                log_error_errno(r, "Failed to arm the cluster reconnect timer: %m");
}

/* error: from the glue (its message says more), or 0 for a statement the
 * server failed. */
static void cluster_fail(Cluster *c, const char *what, int error) {
        const char *m = c->conn ? pq_conn_error_message(c->conn) : "";

        set_error(c, "%s: %s", what, m[0] ? m : error < 0 ? strerror(-error) : "failed");
        c->error[strcspn(c->error, "\n")] = 0;
        log_debug("Cluster database: %s", c->error);
        cluster_disconnect(c, true);
}

/* Notifications that arrived while a query ran were read by libpq already;
 * our own (echoes of our writes) are not news. */
static void drain_notifies(Cluster *c) {
        PGconn *pg = pq_conn_get(c->conn);
        PGnotify *n;

        while ((n = PQnotifies(pg))) {
                if (n->be_pid != PQbackendPID(pg))
                        c->sync_due = true;
                PQfreemem(n);
        }
}

static int on_notify_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Cluster *c = userdata;
        PGconn *pg = pq_conn_get(c->conn);

        if (PQconsumeInput(pg) == 0 || PQstatus(pg) != CONNECTION_OK) {
                set_error(c, "the connection broke while idle: %.200s", PQerrorMessage(pg));
                c->error[strcspn(c->error, "\n")] = 0;
                cluster_disconnect(c, true);
                return 0;
        }
        drain_notifies(c);
        cluster_run_next(c);
        return 0;
}

static void cluster_watch_idle(Cluster *c) {
        int fd = PQsocket(pq_conn_get(c->conn)), r;

        if (c->notify_io)
                return;
        r = sd_event_add_io(c->event, &c->notify_io, fd, EPOLLIN, on_notify_io, c);
        if (r < 0) {
                set_error(c, "cannot watch the connection for notifications: %s", strerror(-r));
                cluster_disconnect(c, true);
        }
}

static void on_query(PqConn *conn, int error, PGresult *result, void *userdata);

static int cluster_query(Cluster *c, Job job, const char *sql, usec_t timeout) {
        int r;

        /* The glue watches the socket itself while a query runs. */
        c->notify_io = sd_event_source_disable_unref(c->notify_io);
        r = pq_conn_query(c->conn, sql, timeout, on_query, c);
        if (r < 0)
                return r;
        c->job = job;
        c->job_started = now(CLOCK_MONOTONIC);
        return 0;
}

static void pqclear_p(PGresult **p) {
        PQclear(*p);
}

static char *literal(PGconn *pg, const char *s) {
        return PQescapeLiteral(pg, s ?: "", strlen(s ?: ""));
}

static void pqfreemem_p(char **p) {
        if (*p)
                PQfreemem(*p);
}
#define _cleanup_pqfree_ _cleanup_(pqfreemem_p)

/* The whole sync as one string: libpq's simple query protocol runs the
 * statements in one implicit transaction and returns the last result. */
static char *cluster_sync_sql(Cluster *c) {
        PGconn *pg = pq_conn_get(c->conn);
        _cleanup_pqfree_ char *name = literal(pg, c->node_name), *state = literal(pg, node_state_to_string(c->state)),
                              *reason = literal(pg, c->reason), *version = literal(pg, PROJECT_VERSION),
                              *instance = literal(pg, c->instance), *peer = literal(pg, c->peer_address);
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        FILE *f;

        if (!name || !state || !reason || !version || !instance || !peer)
                return NULL;

        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        fprintf(f,
                "INSERT INTO " CLUSTER_SCHEMA ".nodes AS n"
                " (name, state, reason, lease_expires, agent_version, instance, peer_address, live_for)"
                " VALUES (%s, %s, %s, now() + interval '%" PRIu64 " microseconds', %s, %s, %s,"
                " interval '%" PRIu64 " microseconds')",
                name, state, reason, c->config->lease_ttl, version, instance, peer, cluster_live_for(c->config->self_fence_after, c->config->renew_interval));
        /* Another live agent with our name keeps its row: the view shows it
         * and we do not count as renewed. */
        fputs(" ON CONFLICT (name) DO UPDATE SET"
              " state = EXCLUDED.state, reason = EXCLUDED.reason, lease_expires = EXCLUDED.lease_expires,"
              " updated_at = CASE WHEN n.state IS DISTINCT FROM EXCLUDED.state"
              " OR n.reason IS DISTINCT FROM EXCLUDED.reason THEN now() ELSE n.updated_at END,"
              " agent_version = EXCLUDED.agent_version, instance = EXCLUDED.instance,"
              " peer_address = EXCLUDED.peer_address, live_for = EXCLUDED.live_for"
              " WHERE n.instance = EXCLUDED.instance OR n.lease_expires < now();",
              f);
        if (!c->cleared_old_failures)
                /* What an earlier run of the agent reported is stale now, and
                 * must not count even within the window: this run reports
                 * anew what fails now. */
                fprintf(f, "DELETE FROM " CLUSTER_SCHEMA ".probe_failures WHERE node = %s;", name);
        for (size_t i = 0; i < c->n_reports; i++) {
                ProbeReport *p = &c->reports[i];
                _cleanup_pqfree_ char *probe = NULL, *why = NULL;

                if (!p->dirty && c->cleared_old_failures)
                        continue;
                if (!(probe = literal(pg, p->probe)))
                        goto oom;
                if (p->forget)
                        fprintf(f, "DELETE FROM " CLUSTER_SCHEMA ".probe_failures WHERE node = %s AND probe = %s;",
                                name, probe);
                else if (!p->failing && c->cleared_old_failures)
                        fprintf(f,
                                "UPDATE " CLUSTER_SCHEMA ".probe_failures SET cleared_at = now()"
                                " WHERE node = %s AND probe = %s AND cleared_at IS NULL;",
                                name, probe);
                else if (p->failing) {
                        if (!(why = literal(pg, p->reason)))
                                goto oom;
                        fprintf(f,
                                "INSERT INTO " CLUSTER_SCHEMA ".probe_failures AS f (node, probe, reason)"
                                " VALUES (%s, %s, %s) ON CONFLICT (node, probe) DO UPDATE SET"
                                " reason = EXCLUDED.reason,"
                                " since = CASE WHEN f.cleared_at IS NULL THEN f.since ELSE now() END,"
                                " cleared_at = NULL;",
                                name, probe, why);
                }
        }
        fprintf(f,
                "SELECT name, state, reason, agent_version, peer_address, instance,"
                " (extract(epoch FROM lease_expires - now()) * 1000000)::bigint,"
                " (extract(epoch FROM now() - renewed_at) * 1000000)::bigint,"
                " (extract(epoch FROM renewed_at + live_for - now()) * 1000000)::bigint,"
                " (extract(epoch FROM updated_at) * 1000000)::bigint,"
                " coalesce((SELECT string_agg(probe, ' ' ORDER BY probe) FROM " CLUSTER_SCHEMA ".probe_failures p"
                " WHERE p.node = n.name AND (p.cleared_at IS NULL"
                " OR p.cleared_at > now() - interval '%" PRIu64 " microseconds')), ''),"
                " coalesce((SELECT string_agg(probe, ' ' ORDER BY probe) FROM " CLUSTER_SCHEMA ".probe_failures p"
                " WHERE p.node = n.name AND p.cleared_at IS NULL), '')"
                " FROM " CLUSTER_SCHEMA ".nodes n ORDER BY name;",
                c->config->shared_failure_window);
        if (fclose(f) != 0)
                return NULL;
        c->sync_seq = c->report_seq;
        return TAKE_PTR(s);
oom:
        fclose(f);
        return NULL;
}

/* ---- withdrawal ---- */

static int cluster_start_poll(Cluster *c, PeerPollDone done, PeerPoll **ret);

static void on_consent(const PeerPollResult *r, void *userdata) {
        Cluster *c = userdata;
        char why[512];

        c->withdrawal.consent = peer_poll_free(c->withdrawal.consent);
        if (r->live > 0 && r->live_consent == r->live && r->ok == 0) {
                log_internal(LOG_WARNING, 0, &(LogFields) { .component = "cluster" },
                             "The cluster database is down for everyone; all %u peers with a lease serve with healthy "
                             "members and consent to node %s withdrawing.",
                             r->live, c->node_name);
                return withdrawal_answer(c, CLUSTER_ALLOW, "");
        }
        snprintf(why, sizeof why,
                 "the cluster database is unreachable and only %u of the %u peers with a lease consent (in service, "
                 "members healthy)%s%.200s",
                 r->live_consent, r->live, r->unreached[0] ? "; not reached: " : "", r->unreached);
        withdrawal_answer(c, CLUSTER_DENY_DB_UNREACHABLE, why);
}

/* The policy for an outage of the database for everyone (rupost-agent.yaml(5)):
 * a node may withdraw through its agent-check alone when every peer whose
 * lease was unexpired in the last view answers that it serves with healthy
 * members. A node says its members fail before it asks (node.c sets it as
 * soon as one is critical), so two nodes asking at once each see the
 * other's failure, and at most one node is out this way at a time. */
static int cluster_ask_consent(Cluster *c) {
        int r = cluster_start_poll(c, on_consent, &c->withdrawal.consent);

        if (r < 0)
                return r;
        /* Not also through the database, should it come back meanwhile. */
        c->withdrawal.started = true;
        return 0;
}

static int on_withdrawal_answer(sd_event_source *s, void *userdata) {
        Cluster *c = userdata;
        Withdrawal *w = &c->withdrawal;
        ClusterWithdrawalDone done = w->done;
        void *data = w->userdata;
        char why[sizeof w->why];

        w->answer = sd_event_source_disable_unref(w->answer);
        snprintf(why, sizeof why, "%s", w->why);
        w->done = NULL;
        if (done)
                done(c, w->verdict, why, data);
        return 0;
}

/* Ends the request and delivers its answer from the loop: the caller may be
 * deep in a query callback or in node.c's own request. */
static void withdrawal_answer(Cluster *c, ClusterVerdict v, const char *why) {
        Withdrawal *w = &c->withdrawal;
        int r;

        if (!w->pending)
                return;
        w->consent = peer_poll_free(w->consent);
        w->pending = w->started = false;
        w->verdict = v;
        snprintf(w->why, sizeof w->why, "%s", why ?: "");
        c->last_denial = v;
        w->probe = mfree(w->probe);
        w->reason = mfree(w->reason);
        r = sd_event_add_defer(c->event, &w->answer, on_withdrawal_answer, c);
        if (r < 0) {
                log_error_errno(r, "Failed to deliver the withdrawal verdict: %m");
                w->done = NULL;
        }
}

int cluster_request_withdrawal(Cluster *c, const char *probe, NodeStateId target, const char *reason,
                               ClusterWithdrawalDone done, void *userdata) {
        Withdrawal *w = &c->withdrawal;

        assert_return(target == NODE_WITHDRAWN || target == NODE_FAILED, -EINVAL);
        if (w->pending || w->answer)
                return -EBUSY;
        *w = (Withdrawal) { .pending = true, .target = target, .done = done, .userdata = userdata,
                            .probe = strdup(probe ?: ""), .reason = strdup(reason ?: "") };
        if (!w->probe || !w->reason) {
                w->probe = mfree(w->probe);
                w->reason = mfree(w->reason);
                w->pending = false;
                return -ENOMEM;
        }
        if (!c->conn || !c->db_ok) {
                char why[300];
                if (c->in_outage && !c->fenced && cluster_ask_consent(c) >= 0)
                        return 0;
                snprintf(why, sizeof why, "the cluster database is unreachable (%.200s), the guards cannot be consulted",
                         c->error[0] ? c->error : "not connected yet");
                withdrawal_answer(c, CLUSTER_DENY_DB_UNREACHABLE, why);
                return 0;
        }
        cluster_run_next(c);
        return 0;
}

void cluster_set_members_failing(Cluster *c, bool failing) {
        if (c)
                c->members_failing = failing;
}

bool cluster_withdrawal_pending(const Cluster *c) {
        return c && (c->withdrawal.pending || c->withdrawal.answer);
}

/* The first half of the transaction: the lock, then the counts of the other
 * nodes on the server's clock. A node is live when it renewed within two of
 * its renew intervals; only nodes in service say something about a shared
 * failure (a withdrawn node's members fail because its group is stopped). */
static char *withdraw_count_sql(Cluster *c) {
        PGconn *pg = pq_conn_get(c->conn);
        Withdrawal *w = &c->withdrawal;
        _cleanup_pqfree_ char *name = literal(pg, c->node_name), *instance = literal(pg, c->instance),
                              *probe = literal(pg, w->probe);
        /* Long enough for the second round trip of a slow DB, short enough
         * that a vanished agent does not hold up the others for long. */
        uint64_t idle_ms = MAX(c->config->renew_interval / USEC_PER_MSEC, 100);
        char *s;

        if (!name || !instance || !probe)
                return NULL;
        if (asprintf(&s,
                     "BEGIN;"
                     "SET LOCAL idle_in_transaction_session_timeout = %" PRIu64 ";"
                     "SET LOCAL lock_timeout = %" PRIu64 ";"
                     "SELECT pg_advisory_xact_lock(" WITHDRAW_LOCK ");"
                     "SELECT count(*) FILTER (WHERE name <> %s),"
                     " count(*) FILTER (WHERE name <> %s AND live),"
                     " count(*) FILTER (WHERE name <> %s AND live AND state = 'in_service'),"
                     " count(*) FILTER (WHERE name <> %s AND live AND state = 'in_service' AND EXISTS ("
                     "  SELECT 1 FROM " CLUSTER_SCHEMA ".probe_failures p WHERE p.node = n.name AND p.probe = %s"
                     "  AND (p.cleared_at IS NULL OR p.cleared_at > now() - interval '%" PRIu64 " microseconds'))),"
                     " coalesce(bool_or(name = %s AND instance = %s), false)"
                     " FROM (SELECT *, renewed_at > now() - live_for AS live FROM " CLUSTER_SCHEMA ".nodes) n",
                     idle_ms, idle_ms, name, name, name, name, probe, c->config->shared_failure_window, name,
                     instance) < 0)
                return NULL;
        return s;
}

static char *withdraw_finish_sql(Cluster *c, bool grant) {
        PGconn *pg = pq_conn_get(c->conn);
        Withdrawal *w = &c->withdrawal;
        _cleanup_pqfree_ char *name = literal(pg, c->node_name), *instance = literal(pg, c->instance),
                              *state = literal(pg, node_state_to_string(w->target)), *reason = literal(pg, w->reason);
        char *s;

        if (!grant)
                return strdup("ROLLBACK");
        if (!name || !instance || !state || !reason)
                return NULL;
        if (asprintf(&s,
                     "UPDATE " CLUSTER_SCHEMA ".nodes SET state = %s, reason = %s, updated_at = now()"
                     " WHERE name = %s AND instance = %s;"
                     "COMMIT",
                     state, reason, name, instance) < 0)
                return NULL;
        return s;
}

static void withdraw_counted(Cluster *c, PGresult *res) {
        Withdrawal *w = &c->withdrawal;
        _cleanup_free_ char *sql = NULL;
        GuardCounts g;
        bool mine;

        if (PQntuples(res) != 1 || PQnfields(res) != 5) {
                set_error(c, "unexpected answer to the withdrawal count");
                return cluster_disconnect(c, true);
        }
        g = (GuardCounts) {
                .others = (unsigned) field_int(res, 0, 0),
                .live = (unsigned) field_int(res, 0, 1),
                .in_service = (unsigned) field_int(res, 0, 2),
                .same_failure = (unsigned) field_int(res, 0, 3),
        };
        mine = streq(PQgetvalue(res, 0, 4), "t");
        if (!mine) {
                w->verdict = CLUSTER_DENY_NOT_REGISTERED;
                snprintf(w->why, sizeof w->why, "this node's registry row is held by another agent named '%s'",
                         c->node_name);
        } else
                w->verdict = cluster_guard_verdict(&g, w->probe[0] ? w->probe : NULL, c->config->max_withdrawn_share,
                                                   c->config->shared_failure_share, w->why, sizeof w->why);
        sql = withdraw_finish_sql(c, w->verdict == CLUSTER_ALLOW);
        if (!sql) {
                log_oom();
                return cluster_disconnect(c, true);
        }
        if (cluster_query(c, JOB_WITHDRAW_FINISH, sql, c->config->renew_interval) < 0)
                cluster_fail(c, "finishing the withdrawal", 0);
}

static void withdraw_finished(Cluster *c) {
        Withdrawal *w = &c->withdrawal;
        char why[sizeof w->why];

        if (w->verdict == CLUSTER_ALLOW) {
                /* The row holds the target state: so does our copy, so that
                 * the next sync writes it again rather than undo it. */
                c->state = w->target;
                free(c->reason);
                c->reason = strdup(w->reason);
                if (!c->reason)
                        log_oom();
        }
        snprintf(why, sizeof why, "%s", w->why);
        withdrawal_answer(c, w->verdict, why);
}

/* ---- renewal ---- */

static void cluster_renewed(Cluster *c, usec_t sent) {
        bool was_ok = c->db_ok;

        if (!was_ok)
                c->renewing_since_mono = now(CLOCK_MONOTONIC);
        c->db_ok = true;
        c->backoff = 0;
        c->error[0] = 0;
        c->last_renew_mono = sent;
        c->last_reply_mono = now(CLOCK_MONOTONIC);
        c->last_renew_realtime = now(CLOCK_REALTIME);
        c->peer_ok_since = 0;
        if (c->in_outage)
                log_notice("Node %s renews its cluster lease again after a shared outage of the database.",
                           c->node_name);
        c->in_outage = false;
        if (!was_ok)
                log_notice("Cluster lease of node %s renewed; %zu nodes in the registry.", c->node_name,
                           c->n_nodes);
        if (c->fenced) {
                log_internal(LOG_NOTICE, 0,
                             &(LogFields) { .component = "cluster", .message_id = MESSAGE_ID_CLUSTER_SELF_FENCED },
                             "Node %s renews its cluster lease again; the self-fence is lifted.", c->node_name);
                cluster_set_fenced(c, false, NULL);
        }
        cluster_fence_tick(c);
}

static void cluster_sync_done(Cluster *c, PGresult *result) {
        bool renewed = false;
        int r;

        r = cluster_load_view(c, result, now(CLOCK_MONOTONIC), &renewed);
        if (r < 0) {
                set_error(c, "cannot read the node registry: %s", strerror(-r));
                cluster_disconnect(c, true);
                return;
        }
        c->cleared_old_failures = true;
        for (size_t i = 0; i < c->n_reports; i++)
                if (c->reports[i].changed <= c->sync_seq)
                        c->reports[i].dirty = false;

        if (!renewed) {
                set_error(c, "node name '%s' is held by another agent whose lease is live", c->node_name);
                if (c->db_ok)
                        log_internal(LOG_CRIT, 0, &(LogFields) { .component = "cluster" },
                                     "Cannot renew the cluster lease: %s. Two agents share the node name?",
                                     c->error);
                c->db_ok = false;
                c->renewing_since_mono = 0;
                return;
        }
        cluster_renewed(c, c->job_started);
}

/* LISTEN, and on the first connection of this run, before the first sync
 * overwrites it, this node's row as the previous run of the agent left it:
 * a node that was in service then may still be serving now (node.c). */
static int cluster_listen_sql(Cluster *c, char **ret) {
        _cleanup_pqfree_ char *name = NULL;
        char *s;

        if (c->have_previous)
                s = strdup("LISTEN " CLUSTER_NOTIFY_CHANNEL);
        else {
                name = literal(pq_conn_get(c->conn), c->node_name);
                if (!name || asprintf(&s, "LISTEN " CLUSTER_NOTIFY_CHANNEL ";"
                                          "SELECT state FROM " CLUSTER_SCHEMA ".nodes WHERE name = %s", name) < 0)
                        return -ENOMEM;
        }
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static const char *job_description(Job job) {
        switch (job) {
        case JOB_MIGRATE:
                return "migrating the schema";
        case JOB_WITHDRAW_COUNT:
        case JOB_WITHDRAW_FINISH:
                return "asking for the withdrawal";
        default:
                return "querying";
        }
}

static void on_query(PqConn *conn, int error, PGresult *result, void *userdata) {
        _cleanup_(pqclear_p) PGresult *res = result;
        _cleanup_free_ char *sql = NULL;
        Cluster *c = userdata;
        Job job = c->job;
        int r;

        c->job = JOB_NONE;
        if (error < 0)
                return cluster_fail(c, job_description(job), error);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
                return cluster_fail(c, job_description(job), 0);
        drain_notifies(c);

        switch (job) {
        case JOB_MIGRATE:
                c->schema_version = PQntuples(res) == 1 ? (unsigned) field_int(res, 0, 0) : 0;
                if (c->schema_version > cluster_schema_version())
                        log_warning("The cluster schema is at version %u, newer than this agent's %u; "
                                    "upgrade the agent.",
                                    c->schema_version, cluster_schema_version());
                r = cluster_listen_sql(c, &sql);
                if (r < 0) {
                        log_oom();
                        return cluster_disconnect(c, true);
                }
                if (cluster_query(c, JOB_LISTEN, sql, c->config->renew_interval) < 0)
                        return cluster_fail(c, "listening", 0);
                return;
        case JOB_LISTEN:
                if (!c->have_previous) {
                        /* Before any sync of ours: what the previous run left. */
                        c->previous_state = PQntuples(res) == 1 ? node_state_from_string(PQgetvalue(res, 0, 0))
                                                                : _NODE_STATE_INVALID;
                        c->have_previous = true;
                        log_info("Node %s was %s in the cluster registry before this start of the agent.",
                                 c->node_name, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "not");
                }
                c->ready = true;
                c->sync_due = true;
                break;
        case JOB_SYNC:
                cluster_sync_done(c, res);
                break;
        case JOB_WITHDRAW_COUNT:
                return withdraw_counted(c, res);
        case JOB_WITHDRAW_FINISH:
                withdraw_finished(c);
                break;
        default:
                break;
        }
        if (c->conn)
                cluster_run_next(c);
}

static void cluster_run_next(Cluster *c) {
        _cleanup_free_ char *sql = NULL;
        Job job;
        int r;

        if (!c->conn || !c->ready || c->job != JOB_NONE)
                return;
        /* A withdrawal waits for the first sync: its row must be ours. */
        if (c->withdrawal.pending && !c->withdrawal.started && c->db_ok) {
                sql = withdraw_count_sql(c);
                job = JOB_WITHDRAW_COUNT;
                c->withdrawal.started = true;
        } else if (c->sync_due) {
                sql = cluster_sync_sql(c);
                job = JOB_SYNC;
                c->sync_due = false;
        } else
                return cluster_watch_idle(c);
        if (!sql) {
                log_oom();
                return cluster_disconnect(c, true);
        }
        r = cluster_query(c, job, sql, c->config->renew_interval);
        if (r < 0)
                cluster_fail(c, job_description(job), r);
}

/* The server's notices ("schema already exists, skipping") are no news. */
static void on_notice(void *userdata, const char *message) {
        log_debug("Cluster database notice: %.*s", (int) strcspn(message, "\n"), message);
}

static void on_connected(PqConn *conn, int error, void *userdata) {
        _cleanup_free_ char *script = NULL;
        Cluster *c = userdata;
        int r;

        if (error < 0)
                return cluster_fail(c, "connecting", error);
        (void) PQsetNoticeProcessor(pq_conn_get(conn), on_notice, c);

        script = cluster_schema_script();
        if (!script) {
                log_oom();
                return cluster_disconnect(c, true);
        }
        /* Other agents may hold the migration lock a while. */
        r = cluster_query(c, JOB_MIGRATE, script, MAX(c->config->lease_ttl, 5 * USEC_PER_SEC));
        if (r < 0)
                cluster_fail(c, "migrating the schema", r);
}

static void cluster_connect(Cluster *c) {
        PQconninfoOption *opts = NULL;
        const char **k = NULL, **v = NULL;
        bool has_db = false, has_app = false, has_password = false;
        size_t n = 0, count = 0;
        char *err = NULL;
        int r;

        opts = PQconninfoParse(c->conninfo, &err);
        if (!opts) {
                set_error(c, "bad conninfo: %s", err ?: "out of memory");
                PQfreemem(err);
                return cluster_disconnect(c, true);
        }
        for (PQconninfoOption *o = opts; o->keyword; o++)
                count++;
        k = calloc(count + 4, sizeof *k);
        v = calloc(count + 4, sizeof *v);
        if (!k || !v) {
                log_oom();
                goto finish;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val)
                        continue;
                has_db = has_db || streq(o->keyword, "dbname");
                has_app = has_app || streq(o->keyword, "application_name");
                has_password = has_password || streq(o->keyword, "password");
                k[n] = o->keyword;
                v[n++] = o->val;
        }
        if (!has_db) {
                k[n] = "dbname";
                v[n++] = "rupost";
        }
        if (!has_app) {
                k[n] = "application_name";
                v[n++] = "rupost-agent";
        }
        if (!has_password && c->password) {
                k[n] = "password";
                v[n++] = c->password;
        }

        /* libpq tries the hosts of a multi-host conninfo one after the other
         * within this one timeout. */
        r = pq_conn_connect(c->event, k, v, c->config->self_fence_after / 2, on_connected, c, &c->conn);
        if (r < 0) {
                set_error(c, "cannot start connecting: %s", strerror(-r));
                cluster_disconnect(c, true);
        }
finish:
        free(k);
        free(v);
        PQconninfoFree(opts);
}

/* ---- timers ---- */

static int on_renew(sd_event_source *s, uint64_t usec, void *userdata) {
        Cluster *c = userdata;

        if (c->ready) {
                c->sync_due = true;
                cluster_run_next(c);
        }
        (void) sd_event_source_set_time_relative(s, c->config->renew_interval);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* ---- self-fencing (cluster-rules.h) ---- */

/* The renewal the fence deadline counts from. At start, an earlier run of
 * the agent may have renewed shortly before it stopped: one renewal before
 * the start. */
static usec_t fence_base(const Cluster *c) {
        if (c->last_renew_mono != 0)
                return c->last_renew_mono;
        return c->started_mono > c->config->renew_interval ? c->started_mono - c->config->renew_interval : 0;
}

static FenceInput fence_input(const Cluster *c) {
        return (FenceInput) {
                .now = now(CLOCK_MONOTONIC),
                .last_renew = fence_base(c),
                .self_fence_after = c->config->self_fence_after,
                .renew_interval = c->config->renew_interval,
                .have_view = c->have_view,
                .live_peers = c->live_peers,
                .poll_started = c->last_poll.started,
                .live_peers_lost = c->last_poll.live_lost,
                .peers_ok = c->last_poll.ok,
                .in_outage = c->in_outage,
                .peer_ok_since = c->peer_ok_since,
        };
}

static void on_poll_done(const PeerPollResult *result, void *userdata) {
        Cluster *c = userdata;

        c->poll = peer_poll_free(c->poll);
        c->last_poll = *result;
        if (result->live - result->live_reached != c->peers_unreachable && result->live > result->live_reached)
                log_internal(LOG_WARNING, 0, &(LogFields) { .component = "cluster" },
                             "Cluster peers with a lease do not answer on their peer address: %s. Should the "
                             "database fail now, node %s could not confirm a shared outage and would fence "
                             "itself; open the peer port between the mail nodes.",
                             result->unreached, c->node_name);
        c->peers_unreachable = result->live - result->live_reached;
        log_debug("Cluster peers: %u of %u reached, %u of %u live ones lost the database, %u renew.",
                  result->reached, result->asked, result->live_lost, result->live, result->ok);
        if (result->ok > 0 && c->in_outage && c->peer_ok_since == 0) {
                c->peer_ok_since = now(CLOCK_MONOTONIC);
                log_notice("A peer renews its cluster lease again; node %s tries to reconnect at once.",
                           c->node_name);
                /* The DB is back for a peer: try now rather than after the backoff. */
                if (!c->conn) {
                        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
                        c->backoff = 0;
                        cluster_connect(c);
                }
        }
        cluster_fence_tick(c);
}

/* Every peer of the last view that has an address, live or not: a peer
 * that was down at our last renewal and renews now must be heard, and only
 * those with a lease then must confirm an outage. */
static int cluster_start_poll(Cluster *c, PeerPollDone done, PeerPoll **ret) {
        _cleanup_free_ PeerTarget *targets = calloc(MAX(c->n_nodes, (size_t) 1), sizeof *targets);
        size_t n = 0;

        if (!targets)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_nodes; i++) {
                const ClusterNode *node = &c->nodes[i];

                if (node->self)
                        continue;
                /* With a lease as the view of our last renewal saw it, as
                 * live_peers counts. */
                targets[n++] = (PeerTarget) {
                        .name = node->name,
                        .address = node->peer_address,
                        .live = node->lease_left > 0,
                };
        }
        return peer_poll_start(c->event, targets, n, c->config->renew_interval / 2, done, c, ret);
}

static void cluster_poll_peers(Cluster *c) {
        int r = cluster_start_poll(c, on_poll_done, &c->poll);

        if (r < 0)
                log_error_errno(r, "Failed to ask the cluster peers: %m");
}

static int on_fence_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_fence_tick(userdata);
        return 0;
}

static void cluster_arm_fence_timer(Cluster *c, usec_t when) {
        int r;

        c->fence_timer = sd_event_source_disable_unref(c->fence_timer);
        r = sd_event_add_time(c->event, &c->fence_timer, CLOCK_MONOTONIC, when, USEC_PER_MSEC, on_fence_timer, c);
        if (r < 0)
                log_error_errno(r, "Failed to arm the self-fence timer: %m");
}

/* Runs at the fence deadline, at each poll's end, at the end of a grace,
 * and after each renewal: polls the peers from 1.5 renew intervals before
 * the deadline (so that a fresh answer is there at the deadline), then
 * every renew interval while past it; and decides. */
static void cluster_fence_tick(Cluster *c) {
        FenceInput in = fence_input(c);
        usec_t deadline = cluster_fence_deadline(&in), r = c->config->renew_interval, next_poll, next = USEC_INFINITY,
               when;
        char reason[256];

        if (c->fenced) {
                /* Lifted by the next renewal; nothing to decide until then. */
                c->fence_timer = sd_event_source_disable_unref(c->fence_timer);
                return;
        }
        next_poll = deadline > r + r / 2 ? deadline - r - r / 2 : 0;
        if (c->last_poll.started >= in.last_renew && c->last_poll.started + r > next_poll)
                next_poll = c->last_poll.started + r;
        /* While renewing, also every ten intervals: a peer port nobody
         * can reach (a firewall) is found before an outage needs it. */
        if (c->db_ok)
                next_poll = MIN(next_poll, c->health_poll_due);
        if (!c->poll && in.now >= next_poll) {
                if (c->db_ok && in.now >= c->health_poll_due)
                        c->health_poll_due = in.now + 10 * r;
                cluster_poll_peers(c);
                next_poll = in.now + r;
        }
        if (!c->poll)
                next = c->db_ok ? MIN(next_poll, c->health_poll_due) : next_poll;

        switch (cluster_fence_decide(&in, &when, reason, sizeof reason)) {
        case FENCE_NOW:
                log_internal(LOG_CRIT, 0,
                             &(LogFields) { .component = "cluster", .message_id = MESSAGE_ID_CLUSTER_SELF_FENCED },
                             "Node %s %s (%s); stopping its mail group before its lease expires.", c->node_name,
                             reason, c->error);
                c->in_outage = false;
                /* What node.c shows as the reason the node is out. */
                char why[sizeof reason + 16];
                snprintf(why, sizeof why, "self-fenced: %s", reason);
                cluster_set_fenced(c, true, why);
                c->fence_timer = sd_event_source_disable_unref(c->fence_timer);
                return;
        case FENCE_SHARED_OUTAGE:
                if (!c->in_outage)
                        log_internal(LOG_CRIT, 0,
                                     &(LogFields) { .component = "cluster",
                                                    .message_id = MESSAGE_ID_CLUSTER_SHARED_OUTAGE },
                                     "Node %s cannot renew its cluster lease (%s): %s; a shared outage, not "
                                     "fencing while every live peer confirms it.",
                                     c->node_name, c->error, reason);
                c->in_outage = true;
                break;
        case FENCE_GRACE:
        case FENCE_NOT_DUE:
                break;
        }
        if (when != 0)
                next = MIN(next, when);
        if (next != USEC_INFINITY)
                cluster_arm_fence_timer(c, MAX(next, in.now + USEC_PER_MSEC));
}

/* A peer asks: this node renews, and its state. "Renews" means an answer to
 * a renewal came within two renew intervals: renewals are sent every
 * interval and answered within one (their timeout), so a node that renews
 * without a gap always says so (a peer that heard "lost" from it could
 * otherwise take a shared outage for granted), and one whose DB black-holed
 * says so for at most two intervals. */
static void on_peer_asks(PeerAnswer *ret, void *userdata) {
        Cluster *c = userdata;

        snprintf(ret->name, sizeof ret->name, "%s", c->node_name);
        ret->db_ok = c->db_ok && now(CLOCK_MONOTONIC) < c->last_reply_mono + 2 * c->config->renew_interval;
        snprintf(ret->state, sizeof ret->state, "%s", node_state_to_string(c->state) ?: "");
        ret->members_ok = !c->members_failing;
}

static int cluster_listen_peers(Cluster *c) {
        _cleanup_(peer_listener_freep) PeerListener *l = NULL;
        int r;

        r = peer_listener_new(c->event, c->peer_address, on_peer_asks, c, &l);
        if (r < 0)
                return r;
        peer_listener_free(c->peer_listener);
        c->peer_listener = TAKE_PTR(l);
        return 0;
}

/* ---- what node.c tells ---- */

void cluster_publish(Cluster *c, NodeStateId state, const char *reason) {
        if (!c)
                return;
        if (c->state == state && streq(c->reason ?: "", reason ?: ""))
                return;
        c->state = state;
        free(c->reason);
        c->reason = strdup(reason ?: "");
        /* The denial is not cleared here: a node the guards keep in service
         * is in service with its withdrawal still refused. node.c clears it
         * when the node is back in service on its own health. */
        c->sync_due = true;
        cluster_run_next(c);
}

static ProbeReport *report_find_or_add(Cluster *c, const char *probe, bool add) {
        for (size_t i = 0; i < c->n_reports; i++)
                if (streq(c->reports[i].probe, probe))
                        return &c->reports[i];
        if (!add)
                return NULL;
        ProbeReport *l = reallocarray(c->reports, c->n_reports + 1, sizeof *l);
        if (!l)
                return NULL;
        c->reports = l;
        l[c->n_reports] = (ProbeReport) { .probe = strdup(probe) };
        if (!l[c->n_reports].probe)
                return NULL;
        return &l[c->n_reports++];
}

static void report_changed(Cluster *c, ProbeReport *p) {
        p->dirty = true;
        p->changed = ++c->report_seq;
        c->sync_due = true;
        cluster_run_next(c);
}

void cluster_report_probe(Cluster *c, const char *probe, bool failing, const char *reason) {
        ProbeReport *p;

        if (!c)
                return;
        p = report_find_or_add(c, probe, failing);
        if (!p) {
                if (failing)
                        log_oom();
                return;
        }
        if (p->failing == failing && !p->forget)
                return;
        p->failing = failing;
        p->forget = false;
        free(p->reason);
        p->reason = strdup(reason ?: "");
        report_changed(c, p);
}

void cluster_forget_probe(Cluster *c, const char *probe) {
        ProbeReport *p;

        if (!c)
                return;
        p = report_find_or_add(c, probe, true);
        if (!p)
                return (void) log_oom();
        p->failing = false;
        p->forget = true;
        report_changed(c, p);
}

/* ---- read-only view ---- */

bool cluster_node_live(const ClusterNode *n) {
        return n->live_left - elapsed_since(n->read_at) > 0;
}

unsigned cluster_peers_failing(const Cluster *c, const char *probe, unsigned *ret_live_peers) {
        unsigned live = 0, same = 0;

        if (c && c->db_ok && c->have_view && probe)
                for (size_t i = 0; i < c->n_nodes; i++) {
                        const ClusterNode *n = &c->nodes[i];

                        if (n->self || !cluster_node_live(n))
                                continue;
                        live++;
                        same += strv_contains(n->failing_now, probe);
                }
        if (ret_live_peers)
                *ret_live_peers = live;
        return same;
}

size_t cluster_nodes(const Cluster *c, const ClusterNode **ret) {
        *ret = c ? c->nodes : NULL;
        return c ? c->n_nodes : 0;
}

double cluster_node_lease_remaining(const ClusterNode *n) {
        return (double) (n->lease_left - elapsed_since(n->read_at)) / USEC_PER_SEC;
}

double cluster_node_lease_age(const ClusterNode *n) {
        return (double) (n->renewed_ago + elapsed_since(n->read_at)) / USEC_PER_SEC;
}

bool cluster_node_fenced(const Cluster *c, const ClusterNode *n) {
        int64_t elapsed = elapsed_since(n->read_at);

        return !n->self && cluster_trusts_expired_lease(elapsed - n->lease_left, cluster_renewing_for(c),
                                                        (usec_t) MAX(n->renewed_ago + elapsed, 0));
}

bool cluster_db_ok(const Cluster *c) {
        return c && c->db_ok;
}

usec_t cluster_renewing_for(const Cluster *c) {
        return c && c->db_ok && c->renewing_since_mono != 0 ? now(CLOCK_MONOTONIC) - c->renewing_since_mono : 0;
}

bool cluster_shared_outage(const Cluster *c) {
        return c && c->in_outage;
}

unsigned cluster_peers_unreachable(const Cluster *c) {
        return c ? c->peers_unreachable : 0;
}

usec_t cluster_last_renew(const Cluster *c) {
        return c ? c->last_renew_realtime : 0;
}

bool cluster_self_fenced(const Cluster *c) {
        return c && c->fenced;
}

int cluster_previous_state(const Cluster *c, NodeStateId *ret) {
        assert_return(ret, -EINVAL);

        if (!c || !c->have_previous)
                return -ENODATA;
        *ret = c->previous_state;
        return 0;
}

ClusterVerdict cluster_last_denial(const Cluster *c) {
        return c ? c->last_denial : CLUSTER_ALLOW;
}

void cluster_clear_denial(Cluster *c) {
        if (c)
                c->last_denial = CLUSTER_ALLOW;
}

const char *cluster_last_error(const Cluster *c) {
        return c ? c->error : "";
}

unsigned cluster_db_schema_version(const Cluster *c) {
        return c ? c->schema_version : 0;
}

void cluster_set_fence_callback(Cluster *c, ClusterFenceCallback callback, void *userdata) {
        c->fence_callback = callback;
        c->fence_userdata = userdata;
}

/* ---- lifecycle ---- */

static int dup_config_strings(Cluster *c, const ClusterConfig *config) {
        char *conninfo = strdup(config->conninfo), *peer = strdup(config->peer_address),
             *password = config->password ? strdup(config->password) : NULL;

        if (!conninfo || !peer || (config->password && !password)) {
                free(conninfo);
                free(peer);
                free(password);
                return -ENOMEM;
        }
        free(c->conninfo);
        free(c->peer_address);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        c->conninfo = conninfo;
        c->peer_address = peer;
        c->password = password;
        return 0;
}

int cluster_reconfigure(Cluster *c, const ClusterConfig *config) {
        bool reconnect = !streq(c->conninfo, config->conninfo) ||
                         !streq(c->password ?: "", config->password ?: "");
        bool relisten = !streq(c->peer_address, config->peer_address);
        int r;

        c->config = config;
        r = dup_config_strings(c, config);
        if (r < 0)
                return log_oom();
        if (relisten) {
                r = cluster_listen_peers(c);
                if (r < 0)
                        return r;
                c->sync_due = true;
        }
        if (reconnect) {
                log_notice("The cluster database connection changed; reconnecting.");
                set_error(c, "reconnecting after a configuration change");
                cluster_disconnect(c, false);
                c->backoff = 0;
                cluster_connect(c);
        }
        cluster_fence_tick(c);
        return 0;
}

int cluster_new(sd_event *e, const ClusterConfig *config, const char *node_name, Cluster **ret) {
        _cleanup_(cluster_freep) Cluster *c = NULL;
        sd_id128_t id;
        int r;

        assert_return(e, -EINVAL);
        assert_return(config && config->conninfo && config->peer_address, -EINVAL);
        assert_return(node_name, -EINVAL);
        assert_return(ret, -EINVAL);

        c = calloc(1, sizeof *c);
        if (!c)
                return log_oom();
        c->event = sd_event_ref(e);
        c->config = config;
        c->state = NODE_STARTING;
        c->started_mono = now(CLOCK_MONOTONIC);
        c->node_name = strdup(node_name);
        c->reason = strdup("");
        if (!c->node_name || !c->reason || dup_config_strings(c, config) < 0)
                return log_oom();
        /* Tells this machine apart from another one configured with our node
         * name, which must not take over a live lease. Derived from the
         * machine id, so that a restarted agent on the same machine is the
         * same instance and renews its own row at once (a random id per run
         * left a restarted agent unable to renew until its previous lease
         * ran out, long enough to fence itself). */
        r = sd_id128_get_machine_app_specific(CLUSTER_INSTANCE_APP_ID, &id);
        if (r < 0) {
                log_warning_errno(r, "No machine id, using a random cluster instance id, ignoring: %m");
                r = sd_id128_randomize(&id);
                if (r < 0)
                        return log_error_errno(r, "Failed to make an instance id: %m");
        }
        sd_id128_to_string(id, c->instance);
        set_error(c, "not connected yet");

        r = cluster_listen_peers(c);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(e, &c->renew_timer, CLOCK_MONOTONIC, config->renew_interval, USEC_PER_MSEC,
                                       on_renew, c);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the cluster renew timer: %m");
        cluster_fence_tick(c);
        if (!c->fence_timer)
                return -ENOMEM;

        cluster_connect(c);
        *ret = TAKE_PTR(c);
        return 0;
}

Cluster *cluster_free(Cluster *c) {
        if (!c)
                return NULL;
        c->poll = peer_poll_free(c->poll);
        c->notify_io = sd_event_source_disable_unref(c->notify_io);
        c->conn = pq_conn_free(c->conn);
        sd_event_source_disable_unref(c->reconnect_timer);
        sd_event_source_disable_unref(c->renew_timer);
        sd_event_source_disable_unref(c->fence_timer);
        sd_event_source_disable_unref(c->withdrawal.answer);
        peer_poll_free(c->withdrawal.consent);
        free(c->withdrawal.probe);
        free(c->withdrawal.reason);
        peer_listener_free(c->peer_listener);
        view_free(c->nodes, c->n_nodes);
        for (size_t i = 0; i < c->n_reports; i++) {
                free(c->reports[i].probe);
                free(c->reports[i].reason);
        }
        free(c->reports);
        free(c->node_name);
        free(c->reason);
        free(c->conninfo);
        free(c->peer_address);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
