/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libpq on sd-event against a real PostgreSQL started for the test: connect
 * and query, the failures PQping tells apart (refused, no answer, the server
 * refusing connections while it shuts down, a wrong password), a backend
 * killed in the middle of a query, and the timeouts that bound a server
 * which never answers. Skipped (77) when PostgreSQL is not installed. */

#include <signal.h>

#include "lib/pq-glue.h"
#include "pg-server.h"
#include "run-until.h"

static PgServer server;

typedef struct Outcome {
        bool called;
        int error;
        PGresult *result;
        usec_t at;
} Outcome;

static void on_connect(PqConn *c, int error, void *userdata) {
        Outcome *o = userdata;
        o->called = true;
        o->error = error;
        o->at = now(CLOCK_MONOTONIC);
}

static void on_query(PqConn *c, int error, PGresult *result, void *userdata) {
        Outcome *o = userdata;
        o->called = true;
        o->error = error;
        o->result = result;
        o->at = now(CLOCK_MONOTONIC);
}

/* Connects with the given password and port, waits for the outcome. */
static PqConn *connect_to(sd_event *e, uint16_t port, const char *password, usec_t timeout, Outcome *o) {
        char p[8];
        PqConn *c = NULL;

        snprintf(p, sizeof p, "%u", port);
        const char *const k[] = { "hostaddr", "port", "user", "password", "dbname", "sslmode", NULL };
        const char *const v[] = { "127.0.0.1", p, "rupost", password, "postgres", "disable", NULL };
        *o = (Outcome) {};
        ASSERT_OK(pq_conn_connect(e, k, v, timeout, on_connect, o, &c));
        ASSERT_TRUE(RUN_UNTIL(e, o->called, 10 * USEC_PER_SEC));
        return c;
}

static void ensure_server(void) {
        if (server.running)
                return;
        int r = pg_server_start(&server, NULL, false);
        if (r == -ENOENT) {
                fprintf(stderr, "PostgreSQL is not installed, skipping\n");
                exit(77);
        }
        ASSERT_OK(r);
}

TEST(connect_and_query) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        c = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
        ASSERT_EQ(o.error, 0);
        ASSERT_TRUE(pq_conn_reached_server(c));
        ASSERT_EQ(pq_conn_ping_status(c), PQPING_OK);
        ASSERT_EQ(PQstatus(pq_conn_get(c)), CONNECTION_OK);

        /* Two queries in a row on one connection, multi-row result. */
        for (int i = 0; i < 2; i++) {
                o = (Outcome) {};
                ASSERT_OK(pq_conn_query(c, "SELECT g, current_setting('server_version_num')::int "
                                           "FROM generate_series(1, 1000) g", 5 * USEC_PER_SEC, on_query, &o));
                ASSERT_ERROR(pq_conn_query(c, "SELECT 1", USEC_INFINITY, on_query, &o), EBUSY);
                ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
                ASSERT_EQ(o.error, 0);
                ASSERT_EQ(PQresultStatus(o.result), PGRES_TUPLES_OK);
                ASSERT_EQ(PQntuples(o.result), 1000);
                ASSERT_STREQ(PQgetvalue(o.result, 999, 0), "1000");
                ASSERT_TRUE(atoi(PQgetvalue(o.result, 0, 1)) >= 90600);
                PQclear(o.result);
        }

        /* A failing statement is an answer: error 0, the result says why. */
        o = (Outcome) {};
        ASSERT_OK(pq_conn_query(c, "SELECT no_such_column", 5 * USEC_PER_SEC, on_query, &o));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(PQresultStatus(o.result), PGRES_FATAL_ERROR);
        ASSERT_STREQ(pq_conn_sqlstate(c), "42703");
        ASSERT_CONTAINS(pq_conn_error_message(c), "column \"no_such_column\" does not exist");
        ASSERT_NOT_CONTAINS(pq_conn_error_message(c), "42703");
        PQclear(o.result);

        c = pq_conn_free(c);
        sd_event_unref(e);
}

TEST(wrong_password_is_an_answer) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        c = connect_to(e, server.port, "wrong-Secret-42", 5 * USEC_PER_SEC, &o);
        ASSERT_ERROR(o.error, ECONNABORTED);
        ASSERT_TRUE(pq_conn_reached_server(c));
        ASSERT_STREQ(pq_conn_sqlstate(c), "28P01");
        ASSERT_EQ(pq_conn_ping_status(c), PQPING_OK);
        ASSERT_CONTAINS(pq_conn_error_message(c), "password authentication failed for user \"rupost\"");
        ASSERT_NOT_CONTAINS(pq_conn_error_message(c), "wrong-Secret-42");
        ASSERT_NOT_CONTAINS(pq_conn_error_message(c), "\n");
        c = pq_conn_free(c);
        sd_event_unref(e);
}

TEST(refused_port_is_no_response) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ASSERT_OK(sd_event_new(&e));
        c = connect_to(e, test_free_port(), "x", 5 * USEC_PER_SEC, &o);
        ASSERT_ERROR(o.error, ECONNABORTED);
        ASSERT_FALSE(pq_conn_reached_server(c));
        ASSERT_EQ(pq_conn_ping_status(c), PQPING_NO_RESPONSE);
        ASSERT_CONTAINS(pq_conn_error_message(c), "Connection refused");
        ASSERT_TRUE(pq_conn_sqlstate(c) == NULL);
        c = pq_conn_free(c);
        sd_event_unref(e);
}

TEST(bad_options_fail_through_the_callback) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o = {};

        ASSERT_OK(sd_event_new(&e));
        const char *const k[] = { "hostaddr", "port", NULL };
        const char *const v[] = { "not-an-address", "5432", NULL };
        ASSERT_OK(pq_conn_connect(e, k, v, USEC_INFINITY, on_connect, &o, &c));
        ASSERT_FALSE(o.called);
        ASSERT_TRUE(RUN_UNTIL(e, o.called, USEC_PER_SEC));
        ASSERT_ERROR(o.error, ECONNABORTED);
        ASSERT_CONTAINS(pq_conn_error_message(c), "not-an-address");
        ASSERT_EQ(pq_conn_ping_status(c), PQPING_NO_RESPONSE);
        c = pq_conn_free(c);
        sd_event_unref(e);
}

TEST(server_that_never_answers_costs_only_the_timeout) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        sd_event *e = NULL;
        Outcome o;

        /* Listening but never accepting: the kernel completes the handshake,
         * then nobody ever reads the startup packet. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 8));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));

        ASSERT_OK(sd_event_new(&e));
        usec_t start = now(CLOCK_MONOTONIC);
        c = connect_to(e, ntohs(sa.sin_port), "x", 300 * USEC_PER_MSEC, &o);
        usec_t took = o.at - start;
        fprintf(stderr, "timed out after %.3fs\n", usec_to_seconds(took));
        ASSERT_ERROR(o.error, ETIMEDOUT);
        ASSERT_TRUE(took >= 300 * USEC_PER_MSEC && took < 500 * USEC_PER_MSEC);
        ASSERT_CONTAINS(pq_conn_error_message(c), "no answer within 300ms while connecting");
        ASSERT_TRUE(pq_conn_reached_server(c));
        c = pq_conn_free(c);
        close(fd);
        sd_event_unref(e);
}

static PGresult *query(sd_event *e, PqConn *c, const char *sql) {
        Outcome o = {};
        ASSERT_OK(pq_conn_query(c, sql, 5 * USEC_PER_SEC, on_query, &o));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(PQresultStatus(o.result), PGRES_TUPLES_OK);
        return o.result;
}

TEST(query_timeout) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        c = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
        ASSERT_EQ(o.error, 0);

        o = (Outcome) {};
        usec_t start = now(CLOCK_MONOTONIC);
        ASSERT_OK(pq_conn_query(c, "SELECT pg_sleep(5)", 200 * USEC_PER_MSEC, on_query, &o));
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        ASSERT_ERROR(o.error, ETIMEDOUT);
        ASSERT_TRUE(o.result == NULL);
        ASSERT_TRUE(o.at - start < 400 * USEC_PER_MSEC);
        ASSERT_CONTAINS(pq_conn_error_message(c), "no answer within 200ms while running the query");
        c = pq_conn_free(c);
        sd_event_unref(e);
}

TEST(backend_killed_mid_query) {
        _cleanup_(pq_conn_freep) PqConn *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        c = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
        ASSERT_EQ(o.error, 0);
        PGresult *res = query(e, c, "SELECT pg_backend_pid()");
        pid_t backend = (pid_t) atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        ASSERT_TRUE(backend > 0);

        o = (Outcome) {};
        ASSERT_OK(pq_conn_query(c, "SELECT pg_sleep(30)", 10 * USEC_PER_SEC, on_query, &o));
        for (int i = 0; i < 4; i++)
                ASSERT_OK(sd_event_run(e, 50 * USEC_PER_MSEC));
        ASSERT_FALSE(o.called);
        ASSERT_OK(kill(backend, SIGKILL));
        usec_t killed = now(CLOCK_MONOTONIC);
        ASSERT_TRUE(RUN_UNTIL(e, o.called, 5 * USEC_PER_SEC));
        fprintf(stderr, "noticed after %.3fs: %s\n", usec_to_seconds(o.at - killed), pq_conn_error_message(c));
        ASSERT_ERROR(o.error, ECONNABORTED);
        ASSERT_TRUE(o.at - killed < USEC_PER_SEC);
        ASSERT_CONTAINS(pq_conn_error_message(c), "server closed the connection unexpectedly");
        c = pq_conn_free(c);

        /* The postmaster restarts its backends after the crash; wait for it
         * so the next test finds a working server. */
        usec_t end = now(CLOCK_MONOTONIC) + 20 * USEC_PER_SEC;
        for (;;) {
                c = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
                c = pq_conn_free(c);
                if (o.error == 0 || now(CLOCK_MONOTONIC) > end)
                        break;
                usleep(100 * 1000);
        }
        ASSERT_EQ(o.error, 0);
        sd_event_unref(e);
}

TEST(server_shutting_down_rejects) {
        _cleanup_(pq_conn_freep) PqConn *held = NULL, *c = NULL;
        sd_event *e = NULL;
        Outcome o;

        ensure_server();
        ASSERT_OK(sd_event_new(&e));
        /* A smart shutdown waits for open sessions; until then the server
         * answers new ones with 57P03, what PQping calls PQPING_REJECT. */
        held = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
        ASSERT_EQ(o.error, 0);
        pg_server_signal(&server, SIGTERM, false);

        usec_t end = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        do {
                c = pq_conn_free(c);
                c = connect_to(e, server.port, PG_SERVER_PASSWORD, 5 * USEC_PER_SEC, &o);
        } while (o.error == 0 && now(CLOCK_MONOTONIC) < end);
        ASSERT_ERROR(o.error, ECONNABORTED);
        ASSERT_STREQ(pq_conn_sqlstate(c), "57P03");
        ASSERT_EQ(pq_conn_ping_status(c), PQPING_REJECT);
        ASSERT_CONTAINS(pq_conn_error_message(c), "the database system is shutting down");

        held = pq_conn_free(held);
        c = pq_conn_free(c);
        ASSERT_TRUE(waitpid(server.pid, NULL, 0) == server.pid);
        server.running = false;
        pg_server_remove(&server);
        sd_event_unref(e);
}

TEST(split_error_message) {
        static const struct {
                const char *in;
                const char *out;
                const char *sqlstate;
        } cases[] = {
                { "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  28P01: password "
                  "authentication failed for user \"rupost\"\nLOCATION:  auth_failed, auth.c:326\n",
                  "FATAL:  password authentication failed for user \"rupost\"", "28P01" },
                { "connection to server at \"10.0.0.5\", port 5432 failed: ВАЖНО:  57P03: система БД "
                  "останавливается\n",
                  "ВАЖНО:  система БД останавливается", "57P03" },
                { "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server "
                  "running on that host and accepting TCP/IP connections?\n",
                  "Connection refused", "" },
                { "ERROR:  42703: column \"x\" does not exist\nLINE 1: SELECT x\n", "ERROR:  column \"x\" does not exist",
                  "42703" },
                { "server closed the connection unexpectedly\n\tThis probably means...\n",
                  "server closed the connection unexpectedly", "" },
                /* Looks like a SQLSTATE but is not one: left alone. */
                { "FATAL:  ab12c: lowercase", "FATAL:  ab12c: lowercase", "" },
                { "", "", "" },
                { NULL, "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[256], state[6];
                pq_split_error_message(cases[i].in, buf, sizeof buf, state);
                ASSERT_STREQ(buf, cases[i].out);
                ASSERT_STREQ(state, cases[i].sqlstate);
        }

        /* A short buffer truncates, never overflows. */
        char tiny[8], state[6];
        pq_split_error_message("FATAL:  28P01: password authentication failed", tiny, sizeof tiny, state);
        ASSERT_STREQ(tiny, "FATAL: ");
        ASSERT_STREQ(state, "28P01");
}

static void cleanup(void) {
        pg_server_remove(&server);
}

int main(void) {
        (void) signal(SIGPIPE, SIG_IGN);
        atexit(cleanup);
        return tests_run();
}
