/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "agent/lib/log.h"
#include "conn-deadline.h"

typedef struct Conn Conn;

struct Conn {
        Conn *prev, *next;
        int fd;
        usec_t deadline; /* CLOCK_MONOTONIC; USEC_INFINITY once cut */
};

struct ConnDeadlines {
        sd_event_source *timer;
        Conn *conns;
        usec_t limit;
        void (*expired)(void *userdata);
        void *userdata;
        uint64_t n_expired;
};

/* The timer follows the earliest deadline. There are at most a few dozen
 * connections (MHD_OPTION_CONNECTION_LIMIT), so a scan is cheap. */
static void rearm(ConnDeadlines *d) {
        usec_t next = USEC_INFINITY;

        for (Conn *c = d->conns; c; c = c->next)
                next = MIN(next, c->deadline);
        if (next == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_set_time(d->timer, next) < 0 ||
            sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("Failed to arm the HTTP request deadline timer, ignoring.");
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ConnDeadlines *d = userdata;
        usec_t n = now(CLOCK_MONOTONIC);
        bool cut = false;

        for (Conn *c = d->conns; c; c = c->next) {
                if (c->deadline > n)
                        continue;
                /* MHD has no call to close one connection; a socket shut
                 * down under it reads as closed by the peer, which MHD
                 * handles on its next run like any other. */
                (void) shutdown(c->fd, SHUT_RDWR);
                c->deadline = USEC_INFINITY;
                d->n_expired++;
                cut = true;
        }
        if (cut) {
                char t[DURATION_MAX];
                log_debug("Closing HTTP connections that did not complete a request within %s.",
                          format_duration(t, sizeof t, d->limit));
        }
        rearm(d);
        if (cut && d->expired)
                d->expired(d->userdata);
        return 0;
}

int conn_deadlines_new(sd_event *e, usec_t limit, void (*expired)(void *userdata), void *userdata,
                       ConnDeadlines **ret) {
        _cleanup_(conn_deadlines_freep) ConnDeadlines *d = NULL;
        int r;

        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->limit = limit;
        d->expired = expired;
        d->userdata = userdata;
        /* Accuracy of 1ms: sd-event's default slack of 250ms would be
         * longer than a scrape. */
        r = sd_event_add_time(e, &d->timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_timer, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(d->timer, "exporter-deadlines");
        *ret = TAKE_PTR(d);
        return 0;
}

ConnDeadlines *conn_deadlines_free(ConnDeadlines *d) {
        if (!d)
                return NULL;
        /* Left only if a daemon still runs, against the contract; its
         * notifications would then find freed memory, so do not hide it. */
        assert(!d->conns);
        sd_event_source_disable_unref(d->timer);
        free(d);
        return NULL;
}

void conn_deadlines_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                           enum MHD_ConnectionNotificationCode code) {
        ConnDeadlines *d = cls;
        Conn *c = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *info =
                        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);

                c = calloc(1, sizeof *c);
                if (!c || !info) {
                        /* Without a deadline the connection still has MHD's
                         * idle timeout; better served than refused. */
                        free(c);
                        log_debug("Out of memory for the deadline of an HTTP connection, ignoring.");
                        return;
                }
                *c = (Conn) {
                        .fd = info->connect_fd,
                        .deadline = now(CLOCK_MONOTONIC) + d->limit,
                        .next = d->conns,
                };
                if (d->conns)
                        d->conns->prev = c;
                d->conns = c;
                *socket_context = c;
                rearm(d);
                return;
        }

        if (!c)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                d->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
        *socket_context = NULL;
        rearm(d);
}

void conn_deadlines_restart(ConnDeadlines *d, struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        Conn *c = info ? info->socket_context : NULL;

        if (!c || c->deadline == USEC_INFINITY)
                return;
        c->deadline = now(CLOCK_MONOTONIC) + d->limit;
        rearm(d);
}

void conn_deadlines_set_limit(ConnDeadlines *d, usec_t limit) {
        d->limit = limit;
}

uint64_t conn_deadlines_n_expired(const ConnDeadlines *d) {
        return d ? d->n_expired : 0;
}
