/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* libpq without blocking, on sd-event: a connection is started with
 * PQconnectStartParams() and driven by PQconnectPoll() from io events on its
 * socket; a query is sent with PQsendQuery() and collected with
 * PQconsumeInput()/PQisBusy()/PQgetResult() as the socket becomes readable.
 * Used by the postgres probe, and meant for the cluster-state code as well.
 *
 * No call here waits on the network. What the caller must do for that:
 * give `hostaddr` (numeric) rather than `host`, because a name lookup inside
 * PQconnectPoll() blocks. pq_conn_connect() turns off GSSAPI encryption
 * (its credential lookup may talk to a KDC synchronously) unless the caller
 * set gssencmode itself.
 *
 * libpq ignores connect_timeout for asynchronous connections, so each step
 * takes its own timeout here (USEC_INFINITY for none, when an outer deadline
 * already bounds the work, as the probe core's does).
 *
 * Callbacks are the last thing a dispatch does: they may free the PqConn. */

#include <libpq-fe.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

typedef struct PqConn PqConn;

/* error: 0 once the connection is ready for queries; -ETIMEDOUT when the
 * timeout passed; -ECONNABORTED when libpq gave up (pq_conn_error_message()
 * says why); another negative errno when the glue itself failed. */
typedef void (*PqConnectCallback)(PqConn *c, int error, void *userdata);

/* The last result of the query (the callee owns it and PQclear()s it), or
 * NULL with error < 0 as above. A result with an error status (a failed
 * statement) comes with error 0: the server answered. */
typedef void (*PqQueryCallback)(PqConn *c, int error, PGresult *result, void *userdata);

/* keywords/values as for PQconnectStartParams(), NULL-terminated. Returns
 * an error only when nothing could be started; a connection that fails at
 * once is reported through the callback from the event loop. */
int pq_conn_connect(sd_event *e, const char *const *keywords, const char *const *values, usec_t timeout,
                    PqConnectCallback callback, void *userdata, PqConn **ret);

/* One query at a time on a connected PqConn; -EBUSY while one is running. */
int pq_conn_query(PqConn *c, const char *sql, usec_t timeout, PqQueryCallback callback, void *userdata);

/* Closes the connection and drops its event sources; callbacks are not
 * called. Accepts NULL; returns NULL. */
PqConn *pq_conn_free(PqConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(PqConn *, pq_conn_free);

PGconn *pq_conn_get(PqConn *c);

/* The first line of libpq's error message: without the trailing newline, the
 * DETAIL/HINT/LOCATION lines and the SQLSTATE (kept apart, see below). Valid
 * until the next call on the connection. */
const char *pq_conn_error_message(PqConn *c);

/* The SQLSTATE the server sent when it refused the connection or failed the
 * query ("28P01", "57P03", ...), or NULL when it sent none. */
const char *pq_conn_sqlstate(PqConn *c);

/* Whether the TCP (or Unix socket) connection to the server was established:
 * an error after that is the server's answer, one before it means no answer. */
bool pq_conn_reached_server(PqConn *c);

/* What PQping() would have said of a finished connect attempt:
 * PQPING_OK when the server is up (even when it refused our credentials),
 * PQPING_REJECT when it refused connections because it is starting up,
 * shutting down or in crash recovery (SQLSTATE 57P03), PQPING_NO_RESPONSE
 * when no server answered. */
PGPing pq_conn_ping_status(PqConn *c);

/* Pure helper, exposed for tests: splits a libpq error message made with
 * PQERRORS_VERBOSE ("...failed: FATAL:  57P03: the database system is
 * starting up\nLOCATION: ...") into its first line without the SQLSTATE,
 * written to buf, and the SQLSTATE (5 characters + NUL) to ret_sqlstate, or
 * "" when none is found. */
void pq_split_error_message(const char *message, char *buf, size_t len, char ret_sqlstate[static 6]);
