/* SPDX-License-Identifier: GPL-2.0-or-later */
/* postgres: the shared database the cluster lives on (PostgreSQL >= 9.6
 * with the databases rupost, rupost_data and rupost_logs). For each database
 * one connection and one query, all databases at once, all on the event
 * loop through pq-glue: a server that black-holes costs only the deadline.
 *
 * Reachability: PQping() would open a connection of its own only to learn
 * whether the server answers, answers "cannot connect now" (57P03: starting
 * up, shutting down, crash recovery) or does not answer. A failed connect
 * attempt tells the same (pq_conn_ping_status() applies PQping's rules to
 * it), so the check connects once and reads the answer from the failure.
 *
 * The query reads the server version, whether it is a standby, its clock
 * and its connection use. The agent needs a read-write primary at 9.6 or
 * later; the clocks must agree within 1 s (FACTS: Time); connections near
 * max_connections mean the next node to connect may be refused.
 *
 * The password is read from password_file when the configuration is loaded
 * and given only to libpq: it is never part of a reason, a log line or a
 * metric, and libpq's messages never quote it. */

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "lib/parse-util.h"
#include "lib/pq-glue.h"
#include "lib/secret-file.h"
#include "probes.h"

#define DATABASES_MAX 16
#define VERSION_MIN 90600

static const char check_query[] =
        "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), "
        "extract(epoch from clock_timestamp()), (SELECT count(*) FROM pg_stat_activity), "
        "current_setting('max_connections')::int";

typedef struct PostgresProbe PostgresProbe;

typedef struct PgDatabase {
        Probe *probe;
        const char *name; /* in PostgresProbe.databases */
        PqConn *conn;
        bool done;

        usec_t started;      /* CLOCK_MONOTONIC */
        usec_t connected;    /* CLOCK_MONOTONIC */
        usec_t query_sent;   /* CLOCK_MONOTONIC */
        usec_t query_sent_realtime;
        usec_t answered;     /* CLOCK_MONOTONIC */
        usec_t answered_realtime;

        /* what the failure was, when it failed */
        PGPing ping;
        char *problem;

        /* the answer */
        bool ok;
        uint64_t version;
        bool in_recovery;
        double server_epoch;
        uint64_t connections;
        uint64_t max_connections;
} PgDatabase;

struct PostgresProbe {
        /* configuration */
        char *host;
        unsigned port;
        char *user;
        char *password_file;
        char *sslmode;
        char **databases;
        char *in_recovery;
        unsigned connections_warning; /* percent */
        unsigned connections_critical;
        usec_t latency_warning;
        usec_t clock_skew_warning;
        usec_t clock_skew_critical;

        char *password;
        ProbeStatus recovery_status;
        char port_string[12];

        /* one run */
        PgDatabase *dbs;
        size_t n_dbs;
        size_t n_done;
};

static const MetricFamily family_up = {
        .name = "rupost_postgres_up",
        .type = METRIC_GAUGE,
        .help = "Whether the last check connected to the database and ran its query (1) or not (0).",
};
static const MetricFamily family_connect_seconds = {
        .name = "rupost_postgres_connect_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Time the last connection to the database took, TLS and authentication included.",
};
static const MetricFamily family_query_seconds = {
        .name = "rupost_postgres_query_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Round trip of the last check query on the database.",
};
static const MetricFamily family_version = {
        .name = "rupost_postgres_server_version_num",
        .type = METRIC_GAUGE,
        .help = "The server's version as server_version_num (150004 is 15.4).",
};
static const MetricFamily family_in_recovery = {
        .name = "rupost_postgres_in_recovery",
        .type = METRIC_GAUGE,
        .help = "Whether the server is a standby in recovery (1) rather than a read-write primary (0).",
};
static const MetricFamily family_connections = {
        .name = "rupost_postgres_connections",
        .type = METRIC_GAUGE,
        .help = "Server processes the server runs (rows of pg_stat_activity).",
};
static const MetricFamily family_max_connections = {
        .name = "rupost_postgres_max_connections",
        .type = METRIC_GAUGE,
        .help = "The server's max_connections setting.",
};
/* The same family as the time probe's, told apart by the source label. */
static const MetricFamily family_time_offset = {
        .name = "rupost_time_offset_seconds",
        .type = METRIC_GAUGE,
        .help = "Offset of a time source from this node's clock, positive when the source is ahead.",
};

static const ConfigItem postgres_config_items[] = {
        { "host",                 config_parse_string,   offsetof(PostgresProbe, host), .required = true },
        { "port",                 config_parse_uint,     offsetof(PostgresProbe, port), 1, 65535 },
        { "user",                 config_parse_string,   offsetof(PostgresProbe, user), .required = true },
        { "password_file",        config_parse_string,   offsetof(PostgresProbe, password_file) },
        { "sslmode",              config_parse_string,   offsetof(PostgresProbe, sslmode) },
        { "databases",            config_parse_strv,     offsetof(PostgresProbe, databases), 0, DATABASES_MAX },
        { "in_recovery",          config_parse_string,   offsetof(PostgresProbe, in_recovery) },
        { "connections_warning",  config_parse_uint,     offsetof(PostgresProbe, connections_warning), 1, 100 },
        { "connections_critical", config_parse_uint,     offsetof(PostgresProbe, connections_critical), 1, 100 },
        { "latency_warning",      config_parse_duration, offsetof(PostgresProbe, latency_warning),
          USEC_PER_MSEC, USEC_PER_HOUR },
        { "clock_skew_warning",   config_parse_duration, offsetof(PostgresProbe, clock_skew_warning),
          USEC_PER_MSEC, USEC_PER_HOUR },
        { "clock_skew_critical",  config_parse_duration, offsetof(PostgresProbe, clock_skew_critical),
          USEC_PER_MSEC, USEC_PER_HOUR },
        {}
};

static const char *const sslmodes[] = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" };

/* Reads the one line of a password file; errors are for config_error(). */
static int postgres_verify(Probe *p, ConfigContext *c) {
        PostgresProbe *pg = probe_get_userdata(p);
        struct in6_addr a6;
        struct in_addr a4;
        int r = 0;

        /* hostaddr=, never host=: a name lookup inside libpq would block. */
        if (inet_pton(AF_INET, pg->host, &a4) != 1 && inet_pton(AF_INET6, pg->host, &a6) != 1)
                r = config_error(c, NULL, "host", "'%s' is not a numeric IPv4 or IPv6 address", pg->host);

        if (pg->port == 0)
                pg->port = 5432;
        snprintf(pg->port_string, sizeof pg->port_string, "%u", pg->port);

        if (!pg->sslmode && !(pg->sslmode = strdup("prefer")))
                return -ENOMEM;
        bool known = false;
        for (size_t i = 0; i < ELEMENTSOF(sslmodes); i++)
                known = known || streq(pg->sslmode, sslmodes[i]);
        if (!known)
                r = config_error(c, NULL, "sslmode",
                                 "'%s' is not one of disable, allow, prefer, require, verify-ca, verify-full",
                                 pg->sslmode);

        if (!pg->in_recovery || streq(pg->in_recovery, "critical"))
                pg->recovery_status = PROBE_CRITICAL;
        else if (streq(pg->in_recovery, "warning"))
                pg->recovery_status = PROBE_WARNING;
        else
                r = config_error(c, NULL, "in_recovery", "'%s' is neither warning nor critical", pg->in_recovery);

        if (!pg->databases) {
                pg->databases = calloc(4, sizeof(char *));
                if (!pg->databases)
                        return -ENOMEM;
                const char *defaults[] = { "rupost", "rupost_data", "rupost_logs" };
                for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
                        if (!(pg->databases[i] = strdup(defaults[i])))
                                return -ENOMEM;
        }
        if (strv_length(pg->databases) == 0)
                r = config_error(c, NULL, "databases", "names no database");
        for (char **d = pg->databases; *d; d++)
                for (char **e = pg->databases; e < d; e++)
                        if (streq(*d, *e))
                                r = config_error(c, NULL, "databases", "'%s' is listed twice", *d);

        if (pg->connections_warning == 0)
                pg->connections_warning = 80;
        if (pg->connections_critical == 0)
                pg->connections_critical = 95;
        if (pg->connections_warning > pg->connections_critical)
                r = config_error(c, NULL, "connections_warning", "%u%% is above connections_critical (%u%%)",
                                 pg->connections_warning, pg->connections_critical);
        if (pg->latency_warning == 0)
                pg->latency_warning = 1 * USEC_PER_SEC;
        if (pg->clock_skew_warning == 0)
                pg->clock_skew_warning = 500 * USEC_PER_MSEC;
        if (pg->clock_skew_critical == 0)
                pg->clock_skew_critical = 1 * USEC_PER_SEC;
        if (pg->clock_skew_warning > pg->clock_skew_critical)
                r = config_error(c, NULL, "clock_skew_warning", "is above clock_skew_critical");

        if (pg->password_file) {
                const char *why = NULL;
                int k = read_secret_file(pg->password_file, &pg->password, &why);
                if (k == -ENOMEM)
                        return k;
                if (k < 0)
                        r = config_error(c, NULL, "password_file", "cannot use '%s': %s", pg->password_file, why);
        }
        return r < 0 ? r : 0;
}

static void postgres_stop(Probe *p) {
        PostgresProbe *pg = probe_get_userdata(p);

        for (size_t i = 0; i < pg->n_dbs; i++) {
                pq_conn_free(pg->dbs[i].conn);
                free(pg->dbs[i].problem);
        }
        free(pg->dbs);
        pg->dbs = NULL;
        pg->n_dbs = pg->n_done = 0;
}

static void postgres_done(Probe *p) {
        PostgresProbe *pg = probe_get_userdata(p);

        postgres_stop(p);
        if (pg->password) {
                explicit_bzero(pg->password, strlen(pg->password));
                free(pg->password);
        }
        free(pg->host);
        free(pg->user);
        free(pg->password_file);
        free(pg->sslmode);
        strv_free(pg->databases);
        free(pg->in_recovery);
}

/* "FATAL:  the database system is shutting down" -> the text only: the
 * severity says nothing the status does not. */
static const char *server_text(const char *message) {
        const char *s = strstr(message, ":  ");
        return s ? s + 3 : message;
}

/* Milliseconds are precise enough for an operator. */
static char *format_ms(char *buf, size_t len, usec_t u) {
        return format_duration(buf, len, u >= USEC_PER_MSEC ? (u + USEC_PER_MSEC / 2) / USEC_PER_MSEC * USEC_PER_MSEC : u);
}

static char *format_version(char *buf, size_t len, uint64_t v) {
        /* Since 10 the number is major * 10000 + minor; before, three parts. */
        if (v >= 100000)
                snprintf(buf, len, "%" PRIu64 ".%" PRIu64, v / 10000, v % 10000);
        else
                snprintf(buf, len, "%" PRIu64 ".%" PRIu64 ".%" PRIu64, v / 10000, (v / 100) % 100, v % 100);
        return buf;
}

/* Issues found in a run, the worst decides the status; the reason lists
 * them, the worst first. */
typedef struct Judgement {
        ProbeStatus status;
        char *text[_PROBE_STATUS_MAX];
} Judgement;

static void judgement_done(Judgement *j) {
        for (size_t i = 0; i < _PROBE_STATUS_MAX; i++)
                free(j->text[i]);
}

_printf_(3, 4) static void judge(Judgement *j, ProbeStatus status, const char *fmt, ...) {
        _cleanup_free_ char *t = NULL;
        char *joined = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&t, fmt, ap) < 0)
                t = NULL;
        va_end(ap);
        if (!t)
                return;
        j->status = probe_status_worst(j->status, status);
        if (!j->text[status])
                j->text[status] = TAKE_PTR(t);
        else if (asprintf(&joined, "%s; %s", j->text[status], t) >= 0) {
                free(j->text[status]);
                j->text[status] = joined;
        }
}

_printf_(2, 3) static void set_problem(PgDatabase *db, const char *fmt, ...) {
        va_list ap;

        free(db->problem);
        db->problem = NULL;
        va_start(ap, fmt);
        if (vasprintf(&db->problem, fmt, ap) < 0)
                db->problem = NULL;
        va_end(ap);
}

static void describe_failure(PostgresProbe *pg, PgDatabase *db) {
        const char *msg = pq_conn_error_message(db->conn);
        const char *state = pq_conn_sqlstate(db->conn);

        db->ping = pq_conn_ping_status(db->conn);
        switch (db->ping) {
        case PQPING_NO_RESPONSE:
                set_problem(db, "does not answer: %s", msg);
                break;
        case PQPING_REJECT:
                set_problem(db, "is rejecting connections: %s", server_text(msg));
                break;
        default:
                if (state && streq(state, "28P01"))
                        set_problem(db, "%s: check the password in %s", server_text(msg),
                                        pg->password_file ?: "password_file (none is configured)");
                else if (state && streq(state, "3D000"))
                        set_problem(db, "%s: create it or remove it from 'databases'",
                                        server_text(msg));
                else
                        set_problem(db, "%s", state ? server_text(msg) : msg);
        }
}

static void postgres_judge_failures(PostgresProbe *pg, Judgement *j) {
        const char *first = NULL;
        bool same = true;
        size_t n_failed = 0;

        for (size_t i = 0; i < pg->n_dbs; i++) {
                PgDatabase *db = &pg->dbs[i];
                if (db->ok)
                        continue;
                n_failed++;
                if (!first)
                        first = db->problem ?: "";
                else if (!streq(first, db->problem ?: ""))
                        same = false;
        }
        if (n_failed == 0)
                return;

        /* Whether the server is there is said once, not per database. */
        bool server_wide = false;
        for (size_t i = 0; i < pg->n_dbs; i++)
                if (!pg->dbs[i].ok && pg->dbs[i].ping != PQPING_OK)
                        server_wide = true;

        if (server_wide && same)
                judge(j, PROBE_CRITICAL, "PostgreSQL at %s:%u %s", pg->host, pg->port, first);
        else if (n_failed == pg->n_dbs && same)
                judge(j, PROBE_CRITICAL, "%s:%u: all %zu databases failed: %s", pg->host, pg->port, n_failed,
                      first);
        else
                for (size_t i = 0; i < pg->n_dbs; i++) {
                        PgDatabase *db = &pg->dbs[i];
                        if (db->ok)
                                continue;
                        if (db->ping != PQPING_OK)
                                judge(j, PROBE_CRITICAL, "%s: PostgreSQL at %s:%u %s", db->name, pg->host, pg->port,
                                      db->problem ?: "failed");
                        else
                                judge(j, PROBE_CRITICAL, "%s: %s", db->name, db->problem ?: "failed");
                }
}

/* The database whose query had the shortest round trip gives the best
 * clock estimate; the server-wide values are the same from any. */
static PgDatabase *best_answer(PostgresProbe *pg) {
        PgDatabase *best = NULL;

        for (size_t i = 0; i < pg->n_dbs; i++) {
                PgDatabase *db = &pg->dbs[i];
                if (db->ok && (!best || db->answered - db->query_sent < best->answered - best->query_sent))
                        best = db;
        }
        return best;
}

static int postgres_finish(Probe *p) {
        PostgresProbe *pg = probe_get_userdata(p);
        _cleanup_(judgement_done) Judgement j = {};
        usec_t slowest_connect = 0, slowest_query = 0;
        const char *slowest_connect_db = NULL, *slowest_query_db = NULL;
        char t1[DURATION_MAX], t2[DURATION_MAX], v[32] = "";

        for (size_t i = 0; i < pg->n_dbs; i++) {
                PgDatabase *db = &pg->dbs[i];
                (void) probe_add_sample(p, &family_up, db->ok, "database", db->name, NULL);
                if (!db->ok)
                        continue;
                if (db->connected - db->started >= slowest_connect) {
                        slowest_connect = db->connected - db->started;
                        slowest_connect_db = db->name;
                }
                if (db->answered - db->query_sent >= slowest_query) {
                        slowest_query = db->answered - db->query_sent;
                        slowest_query_db = db->name;
                }
        }

        postgres_judge_failures(pg, &j);

        PgDatabase *best = best_answer(pg);
        double offset = 0;
        if (best) {
                /* The server read its clock somewhere in the round trip; the
                 * middle is the best guess, wrong by at most half of it. */
                double mid = usec_to_seconds(best->query_sent_realtime) +
                             usec_to_seconds(best->answered_realtime - best->query_sent_realtime) / 2;
                offset = best->server_epoch - mid;

                (void) probe_add_sample(p, &family_version, (double) best->version, NULL);
                (void) probe_add_sample(p, &family_in_recovery, best->in_recovery, NULL);
                (void) probe_add_sample(p, &family_connections, (double) best->connections, NULL);
                (void) probe_add_sample(p, &family_max_connections, (double) best->max_connections, NULL);
                (void) probe_add_sample(p, &family_time_offset, offset, "source", "postgres", NULL);

                format_version(v, sizeof v, best->version);
                if (best->version < VERSION_MIN)
                        judge(&j, PROBE_CRITICAL,
                              "PostgreSQL %s at %s:%u is older than 9.6, the oldest RuPost supports: upgrade it", v,
                              pg->host, pg->port);
                if (best->in_recovery)
                        judge(&j, pg->recovery_status,
                              "%s:%u is a standby in recovery, read-only: the agent needs the read-write primary "
                              "(point 'host' at it, or promote this server)",
                              pg->host, pg->port);

                if (best->max_connections > 0) {
                        double share = 100.0 * (double) best->connections / (double) best->max_connections;
                        ProbeStatus s = share >= pg->connections_critical ? PROBE_CRITICAL
                                        : share >= pg->connections_warning ? PROBE_WARNING
                                                                           : PROBE_OK;
                        if (s != PROBE_OK)
                                judge(&j, s,
                                      "%" PRIu64 " of max_connections %" PRIu64 " in use (%.0f%%, %s at %u%%): "
                                      "find who holds them (pg_stat_activity) or raise max_connections",
                                      best->connections, best->max_connections, share,
                                      s == PROBE_CRITICAL ? "critical" : "warning",
                                      s == PROBE_CRITICAL ? pg->connections_critical : pg->connections_warning);
                }

                double skew = fabs(offset);
                ProbeStatus s = skew >= usec_to_seconds(pg->clock_skew_critical) ? PROBE_CRITICAL
                                : skew >= usec_to_seconds(pg->clock_skew_warning) ? PROBE_WARNING
                                                                                   : PROBE_OK;
                if (s != PROBE_OK)
                        judge(&j, s,
                              "the clock of %s is %.3fs %s this node's (%s at %s): nodes and the database must "
                              "agree within 1s, fix time synchronisation",
                              pg->host, skew, offset > 0 ? "ahead of" : "behind",
                              s == PROBE_CRITICAL ? "critical" : "warning",
                              format_duration(t1, sizeof t1,
                                              s == PROBE_CRITICAL ? pg->clock_skew_critical : pg->clock_skew_warning));
        }

        if (slowest_connect_db && slowest_connect >= pg->latency_warning)
                judge(&j, PROBE_WARNING, "connecting to %s took %s (warning at %s)", slowest_connect_db,
                      format_ms(t1, sizeof t1, slowest_connect), format_duration(t2, sizeof t2, pg->latency_warning));
        if (slowest_query_db && slowest_query >= pg->latency_warning)
                judge(&j, PROBE_WARNING, "the check query on %s took %s (warning at %s)", slowest_query_db,
                      format_ms(t1, sizeof t1, slowest_query), format_duration(t2, sizeof t2, pg->latency_warning));

        if (j.status != PROBE_OK) {
                const char *c = j.text[PROBE_CRITICAL], *u = j.text[PROBE_UNKNOWN], *w = j.text[PROBE_WARNING];
                return probe_finish(p, j.status, "%s%s%s%s%s", c ?: "", c && (u || w) ? "; " : "", u ?: "",
                                    u && w ? "; " : "", w ?: "");
        }

        _cleanup_free_ char *names = NULL;
        for (size_t i = 0; i < pg->n_dbs; i++) {
                char *n = NULL;
                if (asprintf(&n, "%s%s%s", names ?: "", names ? ", " : "", pg->dbs[i].name) < 0)
                        return probe_finish_errno(p, -ENOMEM, "cannot format the reason");
                free(names);
                names = n;
        }
        return probe_finish(p, PROBE_OK,
                            "PostgreSQL %s at %s:%u, primary; %s answer; %" PRIu64 "/%" PRIu64
                            " connections, clock offset %+.3fs, connect %s, query %s",
                            v, pg->host, pg->port, names, best->connections, best->max_connections, offset,
                            format_ms(t1, sizeof t1, slowest_connect), format_ms(t2, sizeof t2, slowest_query));
}

static int postgres_database_done(PgDatabase *db) {
        Probe *p = db->probe;
        PostgresProbe *pg = probe_get_userdata(p);

        db->done = true;
        pg->n_done++;
        if (pg->n_done == pg->n_dbs)
                return postgres_finish(p);

        /* Name what the run still waits for, for a timeout's reason. */
        bool connecting = false;
        for (size_t i = 0; i < pg->n_dbs; i++)
                if (!pg->dbs[i].done && pg->dbs[i].connected == 0)
                        connecting = true;
        probe_set_phase(p, connecting ? "connecting to PostgreSQL" : "waiting for the check query");
        return 0;
}

static bool parse_u64(const char *s, uint64_t *ret) {
        return safe_atou64(s, ret) >= 0;
}

static bool parse_epoch(const char *s, double *ret) {
        char *end = NULL;

        /* extract(epoch ...) prints plain decimals ("1767225600.123456"). */
        if (!s || strspn(s, "0123456789.") != strlen(s) || !*s)
                return false;
        errno = 0;
        double d = strtod(s, &end);
        if (errno != 0 || !end || *end || !isfinite(d))
                return false;
        *ret = d;
        return true;
}

static void on_query(PqConn *c, int error, PGresult *res, void *userdata) {
        PgDatabase *db = userdata;
        db->answered = now(CLOCK_MONOTONIC);
        db->answered_realtime = now(CLOCK_REALTIME);

        if (error < 0 || PQresultStatus(res) != PGRES_TUPLES_OK) {
                set_problem(db, "the check query failed: %s",
                                error < 0 || !pq_conn_sqlstate(c) ? pq_conn_error_message(c)
                                                                  : server_text(pq_conn_error_message(c)));
                db->ping = PQPING_OK;
        } else if (PQntuples(res) != 1 || PQnfields(res) != 5 || !parse_u64(PQgetvalue(res, 0, 0), &db->version) ||
                   !parse_epoch(PQgetvalue(res, 0, 2), &db->server_epoch) ||
                   !parse_u64(PQgetvalue(res, 0, 3), &db->connections) ||
                   !parse_u64(PQgetvalue(res, 0, 4), &db->max_connections)) {
                set_problem(db, "the check query returned something unexpected");
                db->ping = PQPING_OK;
        } else {
                db->ok = true;
                db->in_recovery = streq(PQgetvalue(res, 0, 1), "t");
                (void) probe_add_sample(db->probe, &family_query_seconds,
                                        usec_to_seconds(db->answered - db->query_sent), "database", db->name, NULL);
        }
        PQclear(res);
        /* The connection is not needed any more; close it now rather than
         * hold a server slot until the slowest database answered. */
        db->conn = pq_conn_free(db->conn);
        (void) postgres_database_done(db);
}

static void on_connect(PqConn *c, int error, void *userdata) {
        PgDatabase *db = userdata;
        Probe *p = db->probe;
        PostgresProbe *pg = probe_get_userdata(p);
        int r;

        if (error < 0) {
                describe_failure(pg, db);
                db->conn = pq_conn_free(db->conn);
                (void) postgres_database_done(db);
                return;
        }

        db->connected = now(CLOCK_MONOTONIC);
        (void) probe_add_sample(p, &family_connect_seconds, usec_to_seconds(db->connected - db->started),
                                "database", db->name, NULL);

        db->query_sent = now(CLOCK_MONOTONIC);
        db->query_sent_realtime = now(CLOCK_REALTIME);
        r = pq_conn_query(c, check_query, USEC_INFINITY, on_query, db);
        if (r < 0) {
                set_problem(db, "cannot send the check query: %s",
                                r == -ECONNABORTED ? pq_conn_error_message(c) : strerror(-r));
                db->ping = PQPING_OK;
                db->conn = pq_conn_free(db->conn);
                (void) postgres_database_done(db);
        }
}

static int postgres_start(Probe *p) {
        PostgresProbe *pg = probe_get_userdata(p);
        size_t n = strv_length(pg->databases);
        int r;

        pg->dbs = calloc(n, sizeof *pg->dbs);
        if (!pg->dbs)
                return probe_finish_errno(p, -ENOMEM, "cannot start the check");
        pg->n_dbs = n;
        pg->n_done = 0;

        probe_set_phase(p, "connecting to PostgreSQL");
        for (size_t i = 0; i < n; i++) {
                PgDatabase *db = &pg->dbs[i];
                const char *k[] = { "hostaddr", "port", "user", "dbname", "sslmode", "application_name",
                                    pg->password ? "password" : NULL, NULL };
                const char *v[] = { pg->host, pg->port_string, pg->user, pg->databases[i], pg->sslmode,
                                    "rupost-agent", pg->password, NULL };

                db->probe = p;
                db->name = pg->databases[i];
                db->started = now(CLOCK_MONOTONIC);
                /* No timeout of our own: the core's deadline bounds the run. */
                r = pq_conn_connect(probe_get_event(p), k, v, USEC_INFINITY, on_connect, db, &db->conn);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot start connecting to PostgreSQL");
        }
        return 0;
}

const ProbeType probe_type_postgres = {
        .name = "postgres",
        .object_size = sizeof(PostgresProbe),
        .config_items = postgres_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 2,
        .default_fall = 2,
        .verify = postgres_verify,
        .start = postgres_start,
        .stop = postgres_stop,
        .done = postgres_done,
};
