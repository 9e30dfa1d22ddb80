/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The cluster state in PostgreSQL, driven from the event loop.
 *
 * One session connection (LISTEN needs one) runs one query at a time:
 * after connecting, the migration script, then LISTEN, then "sync" rounds.
 * A sync is one round trip: upsert this node's row with a lease computed by
 * the server (now() + ttl), record the probes it sees failing, and
 * read back the whole registry for the in-memory view. A sync runs every
 * renew_interval, when the node's state changes, and when a NOTIFY arrives.
 * Between queries the socket is watched for notifications.
 *
 * Any failure drops the connection and reconnects with backoff; the lease
 * is then no longer renewed and the self-fence deadline runs. */

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "build-config.h"
#include "cluster-schema.h"
#include "cluster.h"
#include "lib/log.h"
#include "lib/pq-glue.h"
#include "lib/sockaddr.h"

#define MESSAGE_ID_CLUSTER_SELF_FENCED  "5c1f7e2a9b3d4e8fa0c6b2d8e4f1a3c5"
#define MESSAGE_ID_CLUSTER_SHARED_OUTAGE "d8b4a2c6e0f94b7d9e3a5c1f7b2d4e6a"
#define PEER_GREETING "rupost-agent-peer 1 "
#define PEER_LINE_MAX 256
#define RECONNECT_MIN (100 * USEC_PER_MSEC)

typedef enum Job {
        JOB_NONE,
        JOB_MIGRATE,
        JOB_LISTEN,
        JOB_SYNC,
} Job;

typedef struct ProbeReport {
        char *probe;
        char *reason;
        bool failing;
        bool dirty;
        uint64_t changed; /* Cluster.report_seq when it last changed */
} ProbeReport;

typedef struct PeerQuery {
        Cluster *cluster;
        int fd;
        sd_event_source *io;
        char line[PEER_LINE_MAX];
        size_t n;
        bool connected;
        bool done;
} PeerQuery;

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

        bool db_ok;
        bool have_view;
        usec_t started_mono;
        usec_t last_renew_mono;     /* when the last successful renewal was sent */
        usec_t last_renew_realtime;
        unsigned schema_version;
        char error[512];

        ClusterNode *nodes;
        size_t n_nodes;
        unsigned live_peers; /* peers whose lease was live at the last renewal */

        bool fenced;
        bool outage_alerted;
        usec_t peer_back_mono;   /* in a shared outage: when a peer first renewed again */
        usec_t renewing_since;   /* CLOCK_REALTIME: renewing without a gap since */
        ClusterFenceCallback fence_callback;
        void *fence_userdata;
        ClusterVerdict last_denial;

        int peer_fd;
        sd_event_source *peer_source;
        PeerQuery *queries;
        size_t n_queries;
        sd_event_source *poll_timer;
        bool polling;
        usec_t poll_done_mono;
        unsigned poll_known, poll_reached, poll_db_ok;
};

static const char *const verdict_table[_CLUSTER_VERDICT_MAX] = {
        [CLUSTER_ALLOW] = "allow",
        [CLUSTER_DENY_LAST_IN_SERVICE] = "last-in-service",
        [CLUSTER_DENY_MAX_WITHDRAWN] = "max-withdrawn",
        [CLUSTER_DENY_SHARED_FAILURE] = "shared-failure",
        [CLUSTER_DENY_DB_UNREACHABLE] = "db-unreachable",
};

const char *cluster_verdict_to_string(ClusterVerdict v) {
        return v >= 0 && v < _CLUSTER_VERDICT_MAX ? verdict_table[v] : NULL;
}

static void cluster_connect(Cluster *c);
static void cluster_run_next(Cluster *c);
static void cluster_decide_fence(Cluster *c);
static void cluster_poll_peers(Cluster *c);

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

/* Columns of the view query, in order. */
enum { COL_NAME, COL_STATE, COL_REASON, COL_VERSION, COL_PEER, COL_INSTANCE, COL_LEASE_LEFT, COL_RENEWED_AGO,
       COL_UPDATED, COL_FAILING, COL_FAILING_NOW, _COL_MAX };

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
                int64_t left = field_int(r, i, COL_LEASE_LEFT), deadline = (int64_t) received + left;

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
                n->lease_deadline = (usec_t) MAX(deadline, 1);
                n->renewed = (usec_t) MAX((int64_t) received - MAX(field_int(r, i, COL_RENEWED_AGO), 0), 1);
                n->self = streq(n->name, c->node_name);
                if (n->self)
                        renewed = streq(PQgetvalue(r, i, COL_INSTANCE), c->instance) && left > 0;
                else if (left > 0)
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

static int on_fence_deadline(sd_event_source *s, uint64_t usec, void *userdata);

static void cluster_arm_fence_timer(Cluster *c, usec_t deadline) {
        int r;

        c->fence_timer = sd_event_source_disable_unref(c->fence_timer);
        r = sd_event_add_time(c->event, &c->fence_timer, CLOCK_MONOTONIC, deadline, 1, on_fence_deadline, c);
        if (r < 0)
                log_error_errno(r, "Failed to arm the self-fence timer: %m");
}

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

/* Drops the connection; reconnects after the backoff. */
static void cluster_disconnect(Cluster *c, bool retry) {
        bool was_ok = c->db_ok;
        int r;

        c->notify_io = sd_event_source_disable_unref(c->notify_io);
        c->conn = pq_conn_free(c->conn);
        c->ready = false;
        c->job = JOB_NONE;
        c->db_ok = false;
        if (was_ok)
                log_warning("Lost the cluster database: %s", c->error);
        if (!retry)
                return;

        c->backoff = c->backoff == 0 ? RECONNECT_MIN : MIN(c->backoff * 2, c->config->renew_interval);
        c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
        r = sd_event_add_time_relative(c->event, &c->reconnect_timer, CLOCK_MONOTONIC, c->backoff, USEC_PER_MSEC, on_reconnect,
                                       c);
        if (r < 0)
                log_error_errno(r, "Failed to arm the cluster reconnect timer: %m");
}

/* error: from the glue (its message says more), or 0 for a statement the
 * server failed. */
static void cluster_fail(Cluster *c, const char *what, int error) {
        const char *m = c->conn ? pq_conn_error_message(c->conn) : "";

        set_error(c, "%s: %s", what, m[0] ? m : error < 0 ? strerror(-error) : "failed");
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
                              *instance = literal(pg, c->instance), *peer = NULL;
        _cleanup_free_ char *s = NULL;
        const char *port;
        size_t len = 0;
        FILE *f;

        if (!name || !state || !reason || !version || !instance)
                return NULL;

        /* The address peers reach us on: the configured host, or the one the
         * DB server sees us connect from. */
        port = strrchr(c->peer_address, ':');
        if (c->peer_address[0] != ':' && !(peer = literal(pg, c->peer_address)))
                return NULL;

        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        fprintf(f,
                "INSERT INTO " CLUSTER_SCHEMA ".nodes AS n"
                " (name, state, reason, lease_expires, agent_version, instance, peer_address)"
                " VALUES (%s, %s, %s, now() + interval '%" PRIu64 " microseconds', %s, %s, ",
                name, state, reason, c->config->lease_ttl, version, instance);
        if (peer)
                fputs(peer, f);
        else
                fprintf(f,
                        "CASE WHEN family(inet_client_addr()) = 6"
                        " THEN '[' || host(inet_client_addr()) || ']%s'"
                        " ELSE host(inet_client_addr()) || '%s' END",
                        port, port);
        /* Another live agent with our name keeps its row: the view shows it
         * and we do not count as renewed. */
        fputs(") ON CONFLICT (name) DO UPDATE SET"
              " state = EXCLUDED.state, reason = EXCLUDED.reason, lease_expires = EXCLUDED.lease_expires,"
              " updated_at = CASE WHEN n.state IS DISTINCT FROM EXCLUDED.state"
              " OR n.reason IS DISTINCT FROM EXCLUDED.reason THEN now() ELSE n.updated_at END,"
              " agent_version = EXCLUDED.agent_version, instance = EXCLUDED.instance,"
              " peer_address = EXCLUDED.peer_address"
              " WHERE n.instance = EXCLUDED.instance OR n.lease_expires < now();",
              f);
        if (!c->cleared_old_failures)
                /* What an earlier run of the agent reported is stale now. */
                fprintf(f,
                        "UPDATE " CLUSTER_SCHEMA ".probe_failures SET cleared_at = now()"
                        " WHERE node = %s AND cleared_at IS NULL;",
                        name);
        for (size_t i = 0; i < c->n_reports; i++) {
                ProbeReport *p = &c->reports[i];
                _cleanup_pqfree_ char *probe = NULL, *why = NULL;

                if (!p->dirty && c->cleared_old_failures)
                        continue;
                if (!p->failing && c->cleared_old_failures) {
                        if (!(probe = literal(pg, p->probe)))
                                goto oom;
                        fprintf(f,
                                "UPDATE " CLUSTER_SCHEMA ".probe_failures SET cleared_at = now()"
                                " WHERE node = %s AND probe = %s AND cleared_at IS NULL;",
                                name, probe);
                } else if (p->failing) {
                        if (!(probe = literal(pg, p->probe)) || !(why = literal(pg, p->reason)))
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

static void cluster_renewed(Cluster *c, usec_t sent) {
        bool was_ok = c->db_ok;

        if (!was_ok)
                c->renewing_since = now(CLOCK_REALTIME);
        c->db_ok = true;
        c->backoff = 0;
        c->peer_back_mono = 0;
        c->error[0] = 0;
        c->last_renew_mono = sent;
        c->last_renew_realtime = now(CLOCK_REALTIME);
        c->outage_alerted = false;
        if (!was_ok)
                log_notice("Cluster lease of node %s renewed; %zu nodes in the registry.", c->node_name,
                           c->n_nodes);
        cluster_arm_fence_timer(c, sent + c->config->self_fence_after);
        if (c->fenced) {
                log_internal(LOG_NOTICE, 0,
                             &(LogFields) { .component = "cluster", .message_id = MESSAGE_ID_CLUSTER_SELF_FENCED },
                             "Node %s renews its cluster lease again; the self-fence is lifted.", c->node_name);
                cluster_set_fenced(c, false, NULL);
        }
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
        if (!c->cleared_old_failures)
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

static void on_query(PqConn *conn, int error, PGresult *result, void *userdata) {
        _cleanup_(pqclear_p) PGresult *res = result;
        _cleanup_free_ char *sql = NULL;
        Cluster *c = userdata;
        Job job = c->job;
        int r;

        c->job = JOB_NONE;
        if (error < 0)
                return cluster_fail(c, job == JOB_MIGRATE ? "migrating the schema" : "querying", error);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
                return cluster_fail(c, job == JOB_MIGRATE ? "migrating the schema" : "querying", 0);
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
        default:
                break;
        }
        if (c->conn)
                cluster_run_next(c);
}

static void cluster_run_next(Cluster *c) {
        _cleanup_free_ char *sql = NULL;
        int r;

        if (!c->conn || !c->ready || c->job != JOB_NONE)
                return;
        if (!c->sync_due)
                return cluster_watch_idle(c);

        sql = cluster_sync_sql(c);
        if (!sql) {
                log_oom();
                return;
        }
        c->sync_due = false;
        r = cluster_query(c, JOB_SYNC, sql, c->config->renew_interval);
        if (r < 0)
                cluster_fail(c, "sending the lease renewal", r);
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
        usec_t t = now(CLOCK_MONOTONIC);

        if (c->ready) {
                c->sync_due = true;
                cluster_run_next(c);
        }
        /* Late: start asking peers, so that an answer is there by the time
         * the fence deadline comes. */
        if (!c->polling && t >= (c->last_renew_mono ?: c->started_mono) + 2 * c->config->renew_interval)
                cluster_poll_peers(c);

        (void) sd_event_source_set_time_relative(s, c->config->renew_interval);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static int on_fence_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_decide_fence(userdata);
        return 0;
}

/* ---- self-fencing ---- */

static void cluster_decide_fence(Cluster *c) {
        usec_t t = now(CLOCK_MONOTONIC), last = c->last_renew_mono;
        char reason[256];
        unsigned known = c->live_peers, reached = 0, ok = 0;

        if (c->fenced)
                return;
        /* At start, an earlier run of the agent may have renewed a lease
         * shortly before it stopped: count from one renewal before the start. */
        if (last == 0)
                last = c->started_mono > c->config->renew_interval ? c->started_mono - c->config->renew_interval : 0;
        if (t < last + c->config->self_fence_after)
                return;
        if (c->poll_done_mono > last) {
                reached = c->poll_reached;
                ok = c->poll_db_ok;
        }

        if (!c->have_view)
                snprintf(reason, sizeof reason,
                         "self-fenced: cannot renew the cluster lease and has not seen its peers since the start");
        else if (known == 0) {
                /* Alone as far as we know: no one would take over. */
                if (!c->outage_alerted)
                        log_internal(LOG_CRIT, 0,
                                     &(LogFields) { .component = "cluster",
                                                    .message_id = MESSAGE_ID_CLUSTER_SHARED_OUTAGE },
                                     "Node %s cannot renew its cluster lease (%s) and no other node was live: not "
                                     "fencing.",
                                     c->node_name, c->error);
                c->outage_alerted = true;
                return;
        } else if (ok > 0 && c->outage_alerted) {
                /* After a shared outage the peers reconnect one by one; give
                 * us as long as a peer gives an expired lease before it
                 * trusts it (see cluster_renewing_since()). */
                if (c->peer_back_mono == 0) {
                        c->peer_back_mono = t;
                        cluster_arm_fence_timer(c, t + c->config->self_fence_after - c->config->renew_interval);
                }
                if (t < c->peer_back_mono + c->config->self_fence_after - c->config->renew_interval)
                        return;
                snprintf(reason, sizeof reason,
                         "self-fenced: cannot renew the cluster lease while %u of %u peers can again", ok, known);
        } else if (ok > 0)
                snprintf(reason, sizeof reason,
                         "self-fenced: cannot renew the cluster lease while %u of %u peers can", ok, known);
        else if ((reached + 1) * 2 <= known + 1)
                snprintf(reason, sizeof reason,
                         "self-fenced: cannot renew the cluster lease and reaches only %u of %u peers", reached,
                         known);
        else {
                /* Every peer we reach is cut off from the DB as well: a shared
                 * outage. Fencing would stop the whole cluster. */
                if (!c->outage_alerted)
                        log_internal(LOG_CRIT, 0,
                                     &(LogFields) { .component = "cluster",
                                                    .message_id = MESSAGE_ID_CLUSTER_SHARED_OUTAGE },
                                     "The cluster database is unreachable from node %s and from %u of %u peers "
                                     "(%s): a shared outage, not fencing.",
                                     c->node_name, reached, known, c->error);
                c->outage_alerted = true;
                return;
        }

        log_internal(LOG_CRIT, 0,
                     &(LogFields) { .component = "cluster", .message_id = MESSAGE_ID_CLUSTER_SELF_FENCED },
                     "Node %s %s (%s); stopping its mail group before its lease expires.", c->node_name, reason + 13,
                     c->error);
        cluster_set_fenced(c, true, reason);
}

/* ---- peers: "can you see the DB?" ---- */

static int on_peer_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Cluster *c = userdata;
        char line[PEER_LINE_MAX];

        /* One line and close; a peer that does not read gets what fits. */
        for (int i = 0; i < 16; i++) {
                _cleanup_close_ int a = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (a < 0)
                        break;
                snprintf(line, sizeof line, PEER_GREETING "%s db=%s\n", c->node_name, c->db_ok ? "ok" : "lost");
                (void) send(a, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        return 0;
}

static int cluster_listen_peers(Cluster *c) {
        union sockaddr_union sa;
        socklen_t len;
        int one = 1, r;

        r = sockaddr_parse(c->peer_address, &sa, &len);
        if (r < 0)
                return log_error_errno(r, "Bad cluster peer address '%s'.", c->peer_address);
        _cleanup_close_ int fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create the cluster peer socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa.sa.sa_family == AF_INET6) {
                int zero = 0;
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        }
        if (bind(fd, &sa.sa, len) < 0)
                return log_error_errno(errno, "Failed to bind the cluster peer port %s: %m", c->peer_address);
        if (listen(fd, 64) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", c->peer_address);
        c->peer_source = sd_event_source_disable_unref(c->peer_source);
        r = sd_event_add_io(c->event, &c->peer_source, fd, EPOLLIN, on_peer_accept, c);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the cluster peer socket: %m");
        safe_close(c->peer_fd);
        c->peer_fd = TAKE_FD(fd);
        return 0;
}

static void peer_query_close(PeerQuery *q) {
        q->io = sd_event_source_disable_unref(q->io);
        q->fd = safe_close(q->fd);
        q->done = true;
}

static void cluster_poll_free(Cluster *c) {
        for (size_t i = 0; i < c->n_queries; i++)
                peer_query_close(&c->queries[i]);
        free(c->queries);
        c->queries = NULL;
        c->n_queries = 0;
        c->poll_timer = sd_event_source_disable_unref(c->poll_timer);
        c->polling = false;
}

static void cluster_poll_finish(Cluster *c) {
        unsigned reached = 0, ok = 0;

        for (size_t i = 0; i < c->n_queries; i++) {
                PeerQuery *q = &c->queries[i];
                if (strncmp(q->line, PEER_GREETING, strlen(PEER_GREETING)) != 0 || !memchr(q->line, '\n', q->n))
                        continue;
                reached++;
                if (strstr(q->line, " db=ok\n"))
                        ok++;
        }
        c->poll_reached = reached;
        c->poll_db_ok = ok;
        c->poll_known = (unsigned) c->n_queries;
        c->poll_done_mono = now(CLOCK_MONOTONIC);
        cluster_poll_free(c);
        log_debug("Cluster peers: %u reached, %u see the database.", reached, ok);
        /* Past the deadline without a decision (a shared outage so far): a
         * peer that regained the DB means we must fence now. */
        cluster_decide_fence(c);
}

static void cluster_poll_check_done(Cluster *c) {
        for (size_t i = 0; i < c->n_queries; i++)
                if (!c->queries[i].done)
                        return;
        cluster_poll_finish(c);
}

static int on_peer_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        PeerQuery *q = userdata;
        Cluster *c = q->cluster;

        if (!q->connected) {
                int err = 0;
                socklen_t l = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err != 0) {
                        peer_query_close(q);
                        cluster_poll_check_done(c);
                        return 0;
                }
                q->connected = true;
                (void) sd_event_source_set_io_events(s, EPOLLIN);
                return 0;
        }
        ssize_t n = recv(fd, q->line + q->n, sizeof q->line - 1 - q->n, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n > 0)
                q->n += (size_t) n;
        q->line[q->n] = 0;
        if (n <= 0 || memchr(q->line, '\n', q->n) || q->n == sizeof q->line - 1) {
                peer_query_close(q);
                cluster_poll_check_done(c);
        }
        return 0;
}

static int on_poll_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_poll_finish(userdata);
        return 0;
}

/* Asks every peer that was live at our last renewal, all at once, bounded
 * by half a renew interval. */
static void cluster_poll_peers(Cluster *c) {
        size_t n = 0;
        int r;

        cluster_poll_free(c);
        c->queries = calloc(MAX(c->n_nodes, 1), sizeof *c->queries);
        if (!c->queries)
                return (void) log_oom();

        for (size_t i = 0; i < c->n_nodes; i++) {
                ClusterNode *node = &c->nodes[i];
                union sockaddr_union sa;
                socklen_t len;

                /* Live as of the view: its lease ran past our last renewal. */
                if (node->self || node->lease_deadline <= c->last_renew_mono)
                        continue;
                PeerQuery *q = &c->queries[n++];
                *q = (PeerQuery) { .cluster = c, .fd = -EBADF };
                if (!node->peer_address || sockaddr_parse(node->peer_address, &sa, &len) < 0) {
                        q->done = true;
                        continue;
                }
                q->fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (q->fd < 0 || (connect(q->fd, &sa.sa, len) < 0 && errno != EINPROGRESS) ||
                    sd_event_add_io(c->event, &q->io, q->fd, EPOLLOUT, on_peer_io, q) < 0)
                        peer_query_close(q);
        }
        c->n_queries = n;
        c->polling = true;
        r = sd_event_add_time_relative(c->event, &c->poll_timer, CLOCK_MONOTONIC, c->config->renew_interval / 2, USEC_PER_MSEC,
                                       on_poll_timeout, c);
        if (r < 0) {
                log_error_errno(r, "Failed to arm the peer poll timer: %m");
                cluster_poll_free(c);
                return;
        }
        cluster_poll_check_done(c);
}

/* ---- what node.c tells and asks ---- */

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

void cluster_report_probe(Cluster *c, const char *probe, bool failing, const char *reason) {
        ProbeReport *p = NULL;

        if (!c)
                return;
        for (size_t i = 0; i < c->n_reports; i++)
                if (streq(c->reports[i].probe, probe))
                        p = &c->reports[i];
        if (!p) {
                if (!failing)
                        return;
                ProbeReport *l = reallocarray(c->reports, c->n_reports + 1, sizeof *l);
                if (!l)
                        return (void) log_oom();
                c->reports = l;
                p = &l[c->n_reports];
                *p = (ProbeReport) { .probe = strdup(probe) };
                if (!p->probe)
                        return (void) log_oom();
                c->n_reports++;
        } else if (p->failing == failing)
                return;
        p->failing = failing;
        free(p->reason);
        p->reason = strdup(reason ?: "");
        p->dirty = true;
        p->changed = ++c->report_seq;
        c->sync_due = true;
        cluster_run_next(c);
}

ClusterVerdict cluster_check_withdraw(Cluster *c, const char *probe, char *why, size_t len) {
        unsigned total = 1, in_service = 0, unavailable = 0, live = 0, same = 0, allowed;
        usec_t t = now(CLOCK_MONOTONIC);
        ClusterVerdict v = CLUSTER_ALLOW;

        if (why && len > 0)
                why[0] = 0;
        if (!c->db_ok || !c->have_view) {
                v = CLUSTER_DENY_DB_UNREACHABLE;
                if (why)
                        snprintf(why, len, "the cluster database is unreachable (%s), the guards cannot be consulted",
                                 c->error[0] ? c->error : "not connected yet");
                goto finish;
        }

        for (size_t i = 0; i < c->n_nodes; i++) {
                ClusterNode *n = &c->nodes[i];
                bool alive = n->lease_deadline > t;

                if (n->self)
                        continue;
                total++;
                if (alive && n->state == NODE_IN_SERVICE)
                        in_service++;
                else
                        unavailable++;
                if (alive) {
                        live++;
                        if (probe && strv_contains(n->failing_probes, probe))
                                same++;
                }
        }

        if (in_service == 0) {
                v = CLUSTER_DENY_LAST_IN_SERVICE;
                if (why)
                        snprintf(why, len, "no other node of %u is in service with a live lease", total);
                goto finish;
        }
        if (probe && live > 0 && (double) same > c->config->shared_failure_share * live) {
                v = CLUSTER_DENY_SHARED_FAILURE;
                if (why)
                        snprintf(why, len, "%u of %u other live nodes see probe '%s' failing too: a shared failure",
                                 same, live, probe);
                goto finish;
        }
        allowed = MAX(1u, (unsigned) floor(c->config->max_withdrawn_share * total + 1e-9));
        if (unavailable + 1 > allowed) {
                v = CLUSTER_DENY_MAX_WITHDRAWN;
                if (why)
                        snprintf(why, len, "%u of %u nodes are out of service already, at most %u may be", unavailable,
                                 total, allowed);
                goto finish;
        }
finish:
        c->last_denial = v;
        return v;
}

/* ---- read-only view ---- */

unsigned cluster_peers_failing(const Cluster *c, const char *probe, unsigned *ret_live_peers) {
        usec_t t = now(CLOCK_MONOTONIC);
        unsigned live = 0, same = 0;

        if (c && c->db_ok && c->have_view && probe)
                for (size_t i = 0; i < c->n_nodes; i++) {
                        const ClusterNode *n = &c->nodes[i];

                        if (n->self || n->lease_deadline <= t)
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
        return ((double) n->lease_deadline - (double) now(CLOCK_MONOTONIC)) / USEC_PER_SEC;
}

double cluster_node_lease_age(const ClusterNode *n) {
        return MAX(((double) now(CLOCK_MONOTONIC) - (double) n->renewed) / USEC_PER_SEC, 0.0);
}

bool cluster_db_ok(const Cluster *c) {
        return c && c->db_ok;
}

usec_t cluster_renewing_since(const Cluster *c) {
        return c && c->db_ok ? c->renewing_since : 0;
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
        }
        if (reconnect) {
                log_notice("The cluster database connection changed; reconnecting.");
                set_error(c, "reconnecting after a configuration change");
                cluster_disconnect(c, false);
                c->backoff = 0;
                cluster_connect(c);
        }
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
        c->peer_fd = -EBADF;
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
        r = sd_event_add_time_relative(e, &c->renew_timer, CLOCK_MONOTONIC, config->renew_interval, USEC_PER_MSEC, on_renew, c);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the cluster renew timer: %m");
        /* An earlier run of the agent may have renewed shortly before it
         * stopped; its lease may run out one renewal sooner than ours would. */
        cluster_arm_fence_timer(c, c->started_mono + config->self_fence_after - config->renew_interval);
        if (!c->fence_timer)
                return -ENOMEM;

        cluster_connect(c);
        *ret = TAKE_PTR(c);
        return 0;
}

Cluster *cluster_free(Cluster *c) {
        if (!c)
                return NULL;
        cluster_poll_free(c);
        c->notify_io = sd_event_source_disable_unref(c->notify_io);
        c->conn = pq_conn_free(c->conn);
        sd_event_source_disable_unref(c->reconnect_timer);
        sd_event_source_disable_unref(c->renew_timer);
        sd_event_source_disable_unref(c->fence_timer);
        sd_event_source_disable_unref(c->peer_source);
        safe_close(c->peer_fd);
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
