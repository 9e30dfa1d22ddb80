/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libpq's asynchronous connection and query interfaces driven from sd-event.
 * The sequence follows the libpq manual ("Connecting to the database server
 * without blocking", "Asynchronous command processing"): after
 * PQconnectStartParams() wait for the socket to be writable, then call
 * PQconnectPoll() each time the socket is ready in the direction it last
 * asked for; the socket may change between calls (sslmode=prefer retries
 * without TLS on a new one). A query is PQsendQuery() + PQflush() until all
 * is written, then PQconsumeInput() and PQgetResult() while !PQisBusy(). */

#include <stdio.h>
#include <string.h>

#include "pq-glue.h"

struct PqConn {
        sd_event *event;
        PGconn *conn;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        sd_event_source *defer;
        bool reached;
        bool connected;
        bool querying;
        usec_t timeout;

        PqConnectCallback connect_callback;
        PqQueryCallback query_callback;
        void *userdata;
        PGresult *result; /* the latest result of the running query */

        char error[512];
        char sqlstate[6];
};

static bool is_sqlstate_char(char c) {
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

void pq_split_error_message(const char *message, char *buf, size_t len, char ret_sqlstate[static 6]) {
        const char *line = message ?: "";
        size_t n;

        ret_sqlstate[0] = 0;
        if (len == 0)
                return;

        /* The server's name and port are known to the caller, who says them
         * once; libpq's own prefix would repeat them in every message. */
        if (strncmp(line, "connection to server ", 21) == 0) {
                const char *f = strstr(line, " failed: ");
                const char *nl = strchr(line, '\n');
                if (f && (!nl || f < nl))
                        line = f + 9;
        }
        n = strcspn(line, "\n");

        /* pqBuildErrorMessage3() writes "SEVERITY:  SQLSTATE: text" with
         * PQERRORS_VERBOSE. The severity may be translated, the SQLSTATE never. */
        for (size_t i = 0; i + 10 <= n; i++) {
                const char *s = line + i;
                if (s[0] != ':' || s[1] != ' ' || s[2] != ' ' || s[8] != ':' || s[9] != ' ')
                        continue;
                bool ok = true;
                for (size_t k = 3; k < 8; k++)
                        ok = ok && is_sqlstate_char(s[k]);
                if (!ok)
                        continue;
                memcpy(ret_sqlstate, s + 3, 5);
                ret_sqlstate[5] = 0;
                /* "FATAL:  " + the text after "57P03: " */
                size_t head = i + 3, tail = n - (i + 10);
                snprintf(buf, len, "%.*s%.*s", (int) head, line, (int) tail, s + 10);
                return;
        }
        snprintf(buf, len, "%.*s", (int) n, line);
}

static void pq_conn_capture_error(PqConn *c, const char *message) {
        pq_split_error_message(message, c->error, sizeof c->error, c->sqlstate);
        if (!c->error[0])
                snprintf(c->error, sizeof c->error, "the connection failed without a message");
}

static void pq_conn_disarm(PqConn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        c->defer = sd_event_source_disable_unref(c->defer);
}

PqConn *pq_conn_free(PqConn *c) {
        if (!c)
                return NULL;
        pq_conn_disarm(c);
        PQclear(c->result);
        PQfinish(c->conn);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

PGconn *pq_conn_get(PqConn *c) {
        return c ? c->conn : NULL;
}

const char *pq_conn_error_message(PqConn *c) {
        return c->error;
}

const char *pq_conn_sqlstate(PqConn *c) {
        return c->sqlstate[0] ? c->sqlstate : NULL;
}

bool pq_conn_reached_server(PqConn *c) {
        return c->reached;
}

PGPing pq_conn_ping_status(PqConn *c) {
        /* The rules of libpq's internal_ping(): any answer but "cannot connect
         * now" means the server is up. */
        if (c->connected)
                return PQPING_OK;
        if (c->sqlstate[0])
                return streq(c->sqlstate, "57P03") ? PQPING_REJECT : PQPING_OK;
        if (c->conn && PQconnectionNeedsPassword(c->conn))
                return PQPING_OK;
        return PQPING_NO_RESPONSE;
}

static void pq_conn_connect_done(PqConn *c, int error) {
        pq_conn_disarm(c);
        if (error == 0) {
                c->connected = true;
                c->error[0] = 0;
        }
        /* Last: the callback may free us. */
        c->connect_callback(c, error, c->userdata);
}

static void pq_conn_query_done(PqConn *c, int error) {
        PGresult *res = error == 0 ? TAKE_PTR(c->result) : NULL;

        pq_conn_disarm(c);
        PQclear(c->result);
        c->result = NULL;
        c->querying = false;
        c->query_callback(c, error, res, c->userdata);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        PqConn *c = userdata;
        char t[DURATION_MAX];

        snprintf(c->error, sizeof c->error, "no answer within %s while %s",
                 format_duration(t, sizeof t, c->timeout), c->querying ? "running the query" : "connecting");
        c->sqlstate[0] = 0;
        if (c->querying)
                pq_conn_query_done(c, -ETIMEDOUT);
        else
                pq_conn_connect_done(c, -ETIMEDOUT);
        return 0;
}

static int pq_conn_arm_timer(PqConn *c, usec_t timeout) {
        c->timeout = timeout;
        if (timeout == USEC_INFINITY)
                return 0;
        return sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, timeout, 1 * USEC_PER_MSEC,
                                          on_timeout, c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Watches the socket libpq uses now in the direction it asked for. */
static int pq_conn_watch(PqConn *c, uint32_t events) {
        int fd = PQsocket(c->conn);

        if (fd < 0)
                return -EBADF;
        if (c->io && fd == c->fd)
                return sd_event_source_set_io_events(c->io, events);

        c->io = sd_event_source_disable_unref(c->io);
        c->fd = fd;
        return sd_event_add_io(c->event, &c->io, fd, events, on_io, c);
}

static void pq_conn_connect_step(PqConn *c) {
        ConnStatusType before = PQstatus(c->conn);
        PostgresPollingStatusType poll = PQconnectPoll(c->conn);
        ConnStatusType after = PQstatus(c->conn);
        int r;

        /* Past CONNECTION_STARTED the socket is connected: whatever fails
         * from there on, a server was there to answer. */
        if ((before != CONNECTION_STARTED && before != CONNECTION_NEEDED && before != CONNECTION_BAD) ||
            (after != CONNECTION_STARTED && after != CONNECTION_NEEDED && after != CONNECTION_BAD))
                c->reached = true;

        switch (poll) {
        case PGRES_POLLING_OK:
                if (PQsetnonblocking(c->conn, 1) < 0) {
                        pq_conn_capture_error(c, PQerrorMessage(c->conn));
                        return pq_conn_connect_done(c, -ECONNABORTED);
                }
                return pq_conn_connect_done(c, 0);
        case PGRES_POLLING_READING:
                r = pq_conn_watch(c, EPOLLIN);
                break;
        case PGRES_POLLING_WRITING:
                r = pq_conn_watch(c, EPOLLOUT);
                break;
        default:
                pq_conn_capture_error(c, PQerrorMessage(c->conn));
                return pq_conn_connect_done(c, -ECONNABORTED);
        }
        if (r < 0) {
                snprintf(c->error, sizeof c->error, "cannot watch the connection's socket: %s", strerror(-r));
                pq_conn_connect_done(c, r);
        }
}

/* Reads what arrived and collects results; returns true when the query ended
 * (and the callback ran: the caller must not touch c then). */
static bool pq_conn_query_step(PqConn *c, uint32_t revents) {
        int r;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (PQconsumeInput(c->conn) == 0) {
                        pq_conn_capture_error(c, PQerrorMessage(c->conn));
                        pq_conn_query_done(c, -ECONNABORTED);
                        return true;
                }
        }

        /* Flushing is retried on every wake-up: the server may read our
         * query only after we read what it sent. */
        r = PQflush(c->conn);
        if (r < 0) {
                pq_conn_capture_error(c, PQerrorMessage(c->conn));
                pq_conn_query_done(c, -ECONNABORTED);
                return true;
        }

        while (!PQisBusy(c->conn)) {
                PGresult *res = PQgetResult(c->conn);
                if (!res) {
                        if (!c->result) {
                                pq_conn_capture_error(c, PQerrorMessage(c->conn));
                                pq_conn_query_done(c, -ECONNABORTED);
                        } else {
                                const char *state = PQresultErrorField(c->result, PG_DIAG_SQLSTATE);
                                snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ?: "");
                                if (PQresultStatus(c->result) == PGRES_FATAL_ERROR)
                                        pq_conn_capture_error(c, PQresultErrorMessage(c->result));
                                pq_conn_query_done(c, 0);
                        }
                        return true;
                }
                PQclear(c->result);
                c->result = res;
        }

        r = pq_conn_watch(c, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
        if (r < 0) {
                snprintf(c->error, sizeof c->error, "cannot watch the connection's socket: %s", strerror(-r));
                pq_conn_query_done(c, r);
                return true;
        }
        return false;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        PqConn *c = userdata;

        if (c->querying)
                (void) pq_conn_query_step(c, revents);
        else
                pq_conn_connect_step(c);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        PqConn *c = userdata;

        c->defer = sd_event_source_disable_unref(c->defer);
        if (c->querying)
                (void) pq_conn_query_step(c, EPOLLIN);
        else
                pq_conn_connect_step(c);
        return 0;
}

int pq_conn_connect(sd_event *e, const char *const *keywords, const char *const *values, usec_t timeout,
                    PqConnectCallback callback, void *userdata, PqConn **ret) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        _cleanup_free_ const char **k = NULL, **v = NULL;
        bool has_gssencmode = false;
        size_t n = 0;
        int r;

        assert_return(e, -EINVAL);
        assert_return(keywords && values, -EINVAL);
        assert_return(callback, -EINVAL);
        assert_return(ret, -EINVAL);

        for (; keywords[n]; n++)
                if (streq(keywords[n], "gssencmode"))
                        has_gssencmode = true;

        k = calloc(n + 2, sizeof *k);
        v = calloc(n + 2, sizeof *v);
        if (!k || !v)
                return -ENOMEM;
        memcpy(k, keywords, n * sizeof *k);
        memcpy(v, values, n * sizeof *v);
        if (!has_gssencmode) {
                k[n] = "gssencmode";
                v[n] = "disable";
        }

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->event = sd_event_ref(e);
        c->connect_callback = callback;
        c->userdata = userdata;

        c->conn = PQconnectStartParams(k, v, /* expand_dbname= */ 0);
        if (!c->conn)
                return -ENOMEM;
        /* With PQERRORS_VERBOSE the server's SQLSTATE is part of the message,
         * the only place libpq exposes it for a refused connection. */
        (void) PQsetErrorVerbosity(c->conn, PQERRORS_VERBOSE);

        r = pq_conn_arm_timer(c, timeout);
        if (r < 0)
                return r;
        if (PQstatus(c->conn) == CONNECTION_BAD || PQsocket(c->conn) < 0)
                /* Report the failure (bad options, no socket) from the loop,
                 * like every other outcome. */
                r = sd_event_add_defer(e, &c->defer, on_defer, c);
        else
                r = pq_conn_watch(c, EPOLLOUT);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

int pq_conn_query(PqConn *c, const char *sql, usec_t timeout, PqQueryCallback callback, void *userdata) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(sql, -EINVAL);
        assert_return(callback, -EINVAL);
        assert_return(c->connected, -ENOTCONN);
        assert_return(!c->querying, -EBUSY);

        if (PQsendQuery(c->conn, sql) == 0) {
                pq_conn_capture_error(c, PQerrorMessage(c->conn));
                return -ECONNABORTED;
        }

        c->querying = true;
        c->query_callback = callback;
        c->userdata = userdata;
        c->sqlstate[0] = 0;
        c->error[0] = 0;

        r = pq_conn_arm_timer(c, timeout);
        if (r >= 0)
                /* The first flush and read happen from the loop, so that even a
                 * query failing at once is reported through the callback. */
                r = sd_event_add_defer(c->event, &c->defer, on_defer, c);
        if (r < 0) {
                pq_conn_disarm(c);
                c->querying = false;
                return r;
        }
        return 0;
}
