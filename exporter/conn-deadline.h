/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* An absolute deadline for every HTTP connection of the exporter.
 *
 * MHD's own timeout (MHD_OPTION_CONNECTION_TIMEOUT) is an idle timeout: a
 * client that trickles one byte every few seconds is never idle, and 64 of
 * them held every slot while a real scrape waited (issue 11). Here each
 * connection must have its request read and answered within a fixed time
 * from its start, or from the end of its previous answer when kept alive;
 * past that its socket is shut down, and MHD closes the connection on its
 * next run. One timer serves all connections. */

#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "agent/lib/macro.h"
#include "agent/lib/time-util.h"

typedef struct ConnDeadlines ConnDeadlines;

/* `expired` is called after connections were cut, so that the owner runs
 * MHD to close them. */
int conn_deadlines_new(sd_event *e, usec_t limit, void (*expired)(void *userdata), void *userdata,
                       ConnDeadlines **ret);
/* Call only once the MHD daemons that report to it are stopped. */
ConnDeadlines *conn_deadlines_free(ConnDeadlines *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(ConnDeadlines *, conn_deadlines_free);

/* For MHD_OPTION_NOTIFY_CONNECTION, with the ConnDeadlines as its cls. */
void conn_deadlines_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);
/* A request on the connection was answered: the next one gets the full time. */
void conn_deadlines_restart(ConnDeadlines *d, struct MHD_Connection *connection);

/* Applies to deadlines set from now on; for tests. */
void conn_deadlines_set_limit(ConnDeadlines *d, usec_t limit);
/* Connections cut at their deadline so far. */
uint64_t conn_deadlines_n_expired(const ConnDeadlines *d);
