/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Whether the group may be judged yet: a unit that is starting (at boot,
 * or just restarted) is not a failure. One asynchronous round of reads, all
 * sent at once: Manager.SystemState and each unit's properties; the
 * judgement itself is units_settled(). */
#include <stdio.h>
#include <string.h>

#include "mail-group-internal.h"

struct SettledQuery {
        MailGroup *group;
        usec_t grace;
        MailGroupSettled done;
        void *userdata;

        sd_bus_slot *system_call;
        sd_bus_slot **unit_calls; /* n_units */
        UnitProps *props;         /* n_units */
        size_t pending;
        char system_state[32];
        sd_event_source *timeout;
};

SettledQuery *settled_query_free(SettledQuery *q) {
        if (!q)
                return NULL;
        q->system_call = sd_bus_slot_unref(q->system_call);
        for (size_t i = 0; q->unit_calls && i < q->group->n_units; i++)
                sd_bus_slot_unref(q->unit_calls[i]);
        free(q->unit_calls);
        free(q->props);
        sd_event_source_disable_unref(q->timeout);
        free(q);
        return NULL;
}

void mail_group_query_cancel(MailGroup *g) {
        if (g)
                g->query = settled_query_free(g->query);
}

/* Ends the query: it is freed before the callback, which may start another. */
static void query_finish(SettledQuery *q, int r, bool settled, const char *reason) {
        MailGroup *g = q->group;
        MailGroupSettled done = q->done;
        void *userdata = q->userdata;
        char text[512];

        snprintf(text, sizeof text, "%s", reason);
        g->query = settled_query_free(g->query);
        done(g, r, settled, text, userdata);
}

static void query_maybe_done(SettledQuery *q) {
        char reason[512];
        bool settled;

        if (q->pending > 0)
                return;
        settled = units_settled(q->system_state, q->group->units, q->props, now(CLOCK_MONOTONIC), q->grace, reason,
                                sizeof reason);
        query_finish(q, 0, settled, reason);
}

static int query_error(SettledQuery *q, const char *what, const sd_bus_error *e) {
        char reason[512];

        snprintf(reason, sizeof reason, "cannot read %s from systemd: %s", what, e->message ?: e->name);
        query_finish(q, -sd_bus_error_get_errno(e) ?: -EIO, false, reason);
        return 0;
}

static int on_system_state(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SettledQuery *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *state;

        q->system_call = sd_bus_slot_unref(q->system_call);
        if (e)
                return query_error(q, "the system state", e);
        if (sd_bus_message_read(reply, "v", "s", &state) < 0) {
                query_finish(q, -EBADMSG, false, "cannot read the system state from systemd: bad reply");
                return 0;
        }
        snprintf(q->system_state, sizeof q->system_state, "%s", state);
        q->pending--;
        query_maybe_done(q);
        return 0;
}

static int on_unit_props(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SettledQuery *q = userdata;
        sd_bus_slot *slot = sd_bus_get_current_slot(sd_bus_message_get_bus(reply));
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        size_t i;
        char what[300];
        int r;

        for (i = 0; i < q->group->n_units; i++)
                if (q->unit_calls[i] == slot)
                        break;
        if (i >= q->group->n_units)
                return 0;
        q->unit_calls[i] = sd_bus_slot_unref(q->unit_calls[i]);
        snprintf(what, sizeof what, "the state of %s", q->group->units[i]);
        if (e)
                return query_error(q, what, e);
        r = unit_props_read(reply, &q->props[i]);
        if (r < 0) {
                char reason[512];
                snprintf(reason, sizeof reason, "cannot read %s from systemd: bad reply", what);
                query_finish(q, r, false, reason);
                return 0;
        }
        q->pending--;
        query_maybe_done(q);
        return 0;
}

static int on_query_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        SettledQuery *q = userdata;
        char t[DURATION_MAX], reason[128];

        snprintf(reason, sizeof reason, "systemd did not answer within %s",
                 format_duration(t, sizeof t, MAIL_GROUP_QUERY_TIMEOUT));
        query_finish(q, -ETIMEDOUT, false, reason);
        return 0;
}

int mail_group_query_settled(MailGroup *g, usec_t start_grace, MailGroupSettled done, void *userdata) {
        SettledQuery *q;
        sd_bus *bus;
        int r;

        assert_return(g, -EINVAL);
        assert_return(done, -EINVAL);

        mail_group_query_cancel(g);

        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        g->query = q;
        q->group = g;
        q->grace = start_grace;
        q->done = done;
        q->userdata = userdata;
        q->unit_calls = calloc(g->n_units, sizeof *q->unit_calls);
        q->props = calloc(g->n_units, sizeof *q->props);
        if (!q->unit_calls || !q->props) {
                mail_group_query_cancel(g);
                return -ENOMEM;
        }

        r = mail_group_bus(g, &bus);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(g->event, &q->timeout, CLOCK_MONOTONIC, MAIL_GROUP_QUERY_TIMEOUT,
                                       USEC_PER_MSEC, on_query_timeout, q);
        if (r < 0)
                goto fail;
        r = sd_bus_call_method_async(bus, &q->system_call, SYSTEMD_DESTINATION, SYSTEMD_PATH,
                                     "org.freedesktop.DBus.Properties", "Get", on_system_state, q, "ss",
                                     SYSTEMD_MANAGER, "SystemState");
        if (r < 0)
                goto fail;
        q->pending = 1;
        for (size_t i = 0; i < g->n_units; i++) {
                _cleanup_free_ char *path = NULL;

                r = sd_bus_path_encode(SYSTEMD_UNIT_PREFIX, g->units[i], &path);
                if (r < 0)
                        goto fail;
                r = sd_bus_call_method_async(bus, &q->unit_calls[i], SYSTEMD_DESTINATION, path,
                                             "org.freedesktop.DBus.Properties", "GetAll", on_unit_props, q, "s",
                                             SYSTEMD_UNIT);
                if (r < 0)
                        goto fail;
                q->pending++;
        }
        return 0;

fail:
        mail_group_query_cancel(g);
        return r;
}
