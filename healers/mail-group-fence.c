/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fencing stop: bounded by the caller's deadline, not by the units' own
 * stop times, and never trusting a call it has not seen answered. Every unit
 * gets SIGKILL at once, then a stop job at once; then each unit's state is
 * read until it is confirmed down, and a unit still up gets SIGKILL again at
 * every check: the first one can land before a slow ExecStop= has begun, and
 * only a later one ends it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "mail-group-internal.h"

/* How often the units' states are read and SIGKILL is sent again. */
#define FENCE_TICK (100 * USEC_PER_MSEC)

static void fence_send(MailGroup *g);

static void set_problem(char *problem, size_t size, const char *call, const sd_bus_error *e) {
        snprintf(problem, size, "%s failed: %s", call, e->message ?: e->name);
}

void fence_drop_calls(MailGroup *g) {
        if (!g->fence)
                return;
        for (size_t i = 0; i < g->n_units; i++) {
                FenceUnit *u = &g->fence[i];
                u->kill_call = sd_bus_slot_unref(u->kill_call);
                u->stop_call = sd_bus_slot_unref(u->stop_call);
                u->state_call = sd_bus_slot_unref(u->state_call);
        }
}

void fence_reset(MailGroup *g) {
        fence_drop_calls(g);
        g->fence_deadline = sd_event_source_disable_unref(g->fence_deadline);
        g->fence_tick = sd_event_source_disable_unref(g->fence_tick);
}

static FenceUnit *unit_of_slot(MailGroup *g, sd_bus_slot *slot, size_t *ret_index) {
        for (size_t i = 0; i < g->n_units; i++) {
                FenceUnit *u = &g->fence[i];
                if (u->kill_call == slot || u->stop_call == slot || u->state_call == slot) {
                        *ret_index = i;
                        return u;
                }
        }
        return NULL;
}

static int on_kill_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        size_t i;
        FenceUnit *u = unit_of_slot(g, sd_bus_get_current_slot(sd_bus_message_get_bus(reply)), &i);

        if (!u)
                return 0;
        u->kill_call = sd_bus_slot_unref(u->kill_call);
        /* Nothing left to kill is what we want; a lost connection is sent
         * again on the next one. */
        if (e && !sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchProcess") &&
            !sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit") && !bus_error_is_disconnect(g->bus, e))
                set_problem(u->kill_problem, sizeof u->kill_problem, "KillUnit", e);
        return 0;
}

static int on_stop_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        size_t i;
        FenceUnit *u = unit_of_slot(g, sd_bus_get_current_slot(sd_bus_message_get_bus(reply)), &i);

        if (!u)
                return 0;
        u->stop_call = sd_bus_slot_unref(u->stop_call);
        if (!e || sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                u->stop_accepted = true;
        else if (!bus_error_is_disconnect(g->bus, e))
                set_problem(u->stop_problem, sizeof u->stop_problem, "StopUnit", e);
        return 0;
}

static int on_state_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        size_t i;
        FenceUnit *u = unit_of_slot(g, sd_bus_get_current_slot(sd_bus_message_get_bus(reply)), &i);
        UnitProps p;
        int r;

        if (!u)
                return 0;
        u->state_call = sd_bus_slot_unref(u->state_call);
        if (e) {
                if (!bus_error_is_disconnect(g->bus, e))
                        set_problem(u->state_problem, sizeof u->state_problem, "reading its state", e);
                return 0;
        }
        r = unit_props_read(reply, &p);
        if (r < 0) {
                snprintf(u->state_problem, sizeof u->state_problem, "reading its state failed: bad reply (%s)",
                         strerror(-r));
                return 0;
        }
        u->last = p;
        u->state_known = true;
        if (!unit_props_down(&p))
                return 0;

        u->confirmed = true;
        for (size_t k = 0; k < g->n_units; k++)
                if (!g->fence[k].confirmed)
                        return 0;
        mail_group_finish(g, 0, NULL);
        return 0;
}

static int send_call(MailGroup *g, sd_bus *bus, sd_bus_slot **slot, sd_bus_message_handler_t handler,
                     const char *method, const char *unit) {
        if (streq(method, "KillUnit"))
                return sd_bus_call_method_async(bus, slot, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                                method, handler, g, "ssi", unit, "all", (int32_t) SIGKILL);
        return sd_bus_call_method_async(bus, slot, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER, method,
                                        handler, g, "ss", unit, "replace");
}

static int send_state_read(MailGroup *g, sd_bus *bus, FenceUnit *u, const char *unit) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = sd_bus_path_encode(SYSTEMD_UNIT_PREFIX, unit, &path);
        if (r < 0)
                return r;
        return sd_bus_call_method_async(bus, &u->state_call, SYSTEMD_DESTINATION, path,
                                        "org.freedesktop.DBus.Properties", "GetAll", on_state_reply, g, "s",
                                        SYSTEMD_UNIT);
}

/* One round: (again) SIGKILL to every unit not down, then a stop job to
 * every unit whose stop was not accepted on this connection, then a read of
 * each unit's state. Calls on one connection are handled by systemd in
 * order: each kill lands before the stop jobs, the reads see both. */
static void fence_send(MailGroup *g) {
        sd_bus *bus;
        int r;

        r = mail_group_bus(g, &bus);
        if (r < 0) {
                for (size_t i = 0; i < g->n_units; i++)
                        snprintf(g->fence[i].state_problem, sizeof g->fence[i].state_problem,
                                 "cannot connect to systemd: %s", strerror(-r));
                return;
        }

        for (size_t i = 0; i < g->n_units; i++) {
                FenceUnit *u = &g->fence[i];
                bool fresh = u->sent_generation != g->generation;

                if (u->confirmed || u->kill_call)
                        continue;
                if (!fresh && u->state_known && unit_props_down(&u->last))
                        continue;
                r = send_call(g, bus, &u->kill_call, on_kill_reply, "KillUnit", g->units[i]);
                if (r < 0)
                        snprintf(u->kill_problem, sizeof u->kill_problem, "KillUnit not sent: %s", strerror(-r));
        }
        for (size_t i = 0; i < g->n_units; i++) {
                FenceUnit *u = &g->fence[i];

                if (u->confirmed || u->stop_call)
                        continue;
                if (u->sent_generation != g->generation)
                        u->stop_accepted = false;
                u->sent_generation = g->generation;
                if (u->stop_accepted)
                        continue;
                r = send_call(g, bus, &u->stop_call, on_stop_reply, "StopUnit", g->units[i]);
                if (r < 0)
                        snprintf(u->stop_problem, sizeof u->stop_problem, "StopUnit not sent: %s", strerror(-r));
        }
        for (size_t i = 0; i < g->n_units; i++) {
                FenceUnit *u = &g->fence[i];

                if (u->confirmed || u->state_call)
                        continue;
                r = send_state_read(g, bus, u, g->units[i]);
                if (r < 0)
                        snprintf(u->state_problem, sizeof u->state_problem, "reading its state not sent: %s",
                                 strerror(-r));
        }
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        MailGroup *g = userdata;

        (void) sd_event_source_set_time_relative(s, FENCE_TICK);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        fence_send(g);
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        MailGroup *g = userdata;
        _cleanup_(buf_done) Buf report = BUF_INIT(8192);
        char t[DURATION_MAX];

        for (size_t i = 0; i < g->n_units; i++) {
                const FenceUnit *u = &g->fence[i];

                if (u->confirmed)
                        continue;
                (void) buf_printf(&report, "%s%s not confirmed stopped within %s: ", report.len ? "; " : "",
                                  g->units[i], format_duration(t, sizeof t, g->fence_timeout));
                if (u->state_known) {
                        (void) buf_printf(&report, "%s (%s)", u->last.active_state, u->last.sub_state);
                        if (u->last.job_id != 0)
                                (void) buf_printf(&report, " with job %u queued", u->last.job_id);
                }
                /* Every failure known, the kill first: the likeliest cause. */
                const char *problems[] = { u->kill_problem, u->stop_problem, u->state_problem };
                bool any = u->state_known;
                for (size_t k = 0; k < ELEMENTSOF(problems); k++)
                        if (problems[k][0]) {
                                (void) buf_printf(&report, "%s%s", any ? ", " : "", problems[k]);
                                any = true;
                        }
                if (!any)
                        (void) buf_puts(&report, "no answer from systemd");
        }
        _cleanup_free_ char *text = buf_steal(&report);
        mail_group_finish(g, -ETIMEDOUT, text ?: "not every unit was confirmed stopped");
        return 0;
}

int fence_begin(MailGroup *g, usec_t timeout) {
        int r;

        fence_reset(g);
        if (!g->fence) {
                g->fence = calloc(g->n_units, sizeof *g->fence);
                if (!g->fence)
                        return -ENOMEM;
        }
        memset(g->fence, 0, g->n_units * sizeof *g->fence);
        g->fence_timeout = timeout;

        r = sd_event_add_time_relative(g->event, &g->fence_deadline, CLOCK_MONOTONIC, timeout, USEC_PER_MSEC,
                                       on_deadline, g);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(g->event, &g->fence_tick, CLOCK_MONOTONIC, FENCE_TICK, USEC_PER_MSEC,
                                       on_tick, g);
        if (r < 0)
                return r;
        fence_send(g);
        return 0;
}
