/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The group's D-Bus connection and the ordered stop and start. The fence is
 * in mail-group-fence.c, the settled query in mail-group-settled.c. */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "mail-group-internal.h"

/* How often one step is sent again after the connection broke under it. */
#define STEP_RESENDS_MAX 3
#define RESEND_DELAY (100 * USEC_PER_MSEC)

static void group_step(MailGroup *g);

/* ---- the connection ---- */

static int open_system_bus(sd_event *event, sd_bus **ret, void *userdata) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static bool ordered_op(const MailGroup *g) {
        return g->op == GROUP_STOPPING || g->op == GROUP_STARTING;
}

static void group_reset_step(MailGroup *g) {
        g->call = sd_bus_slot_unref(g->call);
        g->timer = sd_event_source_disable_unref(g->timer);
        (void) sd_event_source_set_enabled(g->resend_timer, SD_EVENT_OFF);
        free(g->job);
        g->job = NULL;
        g->killed = false;
}

static void group_advance(MailGroup *g, const char *result);

static int on_resend(sd_event_source *s, uint64_t usec, void *userdata) {
        MailGroup *g = userdata;

        if (!ordered_op(g))
                return 0;
        if (g->resends++ >= STEP_RESENDS_MAX)
                group_advance(g, "not confirmed (the connection to systemd broke)");
        else
                group_step(g);
        return 0;
}

/* The connection broke while a step was in flight: send it again on a new
 * one, a few times. StopUnit and StartUnit are idempotent: systemd answers
 * with the job already queued, or one that finishes at once. Never sends
 * from here: this runs inside mail_group_bus() too. The timer exists from
 * the start, so arming it cannot fail for want of memory. */
static void group_resend_later(MailGroup *g) {
        if (!ordered_op(g))
                return;
        group_reset_step(g);
        (void) sd_event_source_set_time_relative(g->resend_timer, RESEND_DELAY);
        (void) sd_event_source_set_enabled(g->resend_timer, SD_EVENT_ONESHOT);
}

static void group_drop_bus(MailGroup *g) {
        bool in_flight = g->call || g->job;

        g->job_removed = sd_bus_slot_unref(g->job_removed);
        g->disconnected = sd_bus_slot_unref(g->disconnected);
        g->call = sd_bus_slot_unref(g->call);
        fence_drop_calls(g);
        g->bus = g->bus_shared ? sd_bus_unref(g->bus) : sd_bus_close_unref(g->bus);
        g->bus_shared = false;
        /* A reply or JobRemoved on the old connection will never come. */
        if (in_flight)
                group_resend_later(g);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;

        log_warning("The D-Bus connection to systemd broke; the mail group opens a new one when needed.");
        /* A step waiting for JobRemoved would otherwise wait for its timeout. */
        if (ordered_op(g) && g->job)
                group_resend_later(g);
        return 0;
}

static int group_watch_bus(MailGroup *g, sd_bus *bus) {
        /* On a direct connection (systemd's private socket, a test's peer)
         * messages carry no sender. */
        const char *sender = sd_bus_is_bus_client(bus) > 0 ? SYSTEMD_DESTINATION : NULL;
        int r;

        r = sd_bus_match_signal_async(bus, &g->job_removed, sender, SYSTEMD_PATH, SYSTEMD_MANAGER, "JobRemoved",
                                      on_job_removed, NULL, g);
        if (r < 0)
                return r;
        /* Local: sd-bus makes it up when the connection ends. */
        return sd_bus_match_signal_async(bus, &g->disconnected, "org.freedesktop.DBus.Local",
                                         "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local", "Disconnected",
                                         on_disconnected, NULL, g);
}

int mail_group_bus(MailGroup *g, sd_bus **ret) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        bool again;
        int r;

        if (g->bus && sd_bus_is_open(g->bus) > 0) {
                *ret = g->bus;
                return 0;
        }

        again = g->bus || g->generation > 0;
        group_drop_bus(g);
        r = g->open_bus(g->event, &bus, g->open_bus_userdata);
        if (r < 0)
                return r;
        r = group_watch_bus(g, bus);
        if (r < 0) {
                g->job_removed = sd_bus_slot_unref(g->job_removed);
                g->disconnected = sd_bus_slot_unref(g->disconnected);
                return r;
        }
        /* systemd sends JobRemoved only to clients that subscribed. No slot
         * and no callback: no reply is expected. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                                     NULL, NULL, "");
        if (r < 0) {
                g->job_removed = sd_bus_slot_unref(g->job_removed);
                g->disconnected = sd_bus_slot_unref(g->disconnected);
                return r;
        }
        g->bus = TAKE_PTR(bus);
        g->generation++;
        if (again) {
                g->reconnects++;
                log_notice("The mail group opened a new D-Bus connection to systemd.");
        }
        *ret = g->bus;
        return 0;
}

/* ---- ordered stop and start ---- */

static const char *current_unit(const MailGroup *g) {
        /* Stops walk the list backwards. */
        return g->op == GROUP_STOPPING ? g->units[g->n_units - 1 - g->step] : g->units[g->step];
}

void mail_group_finish(MailGroup *g, int r, const char *error) {
        MailGroupDone done = g->done;
        void *userdata = g->userdata;
        _cleanup_free_ char *text = error ? strdup(error) : NULL;

        group_reset_step(g);
        fence_reset(g);
        g->op = GROUP_IDLE;
        g->done = NULL;
        buf_reset(&g->errors);
        if (done)
                done(g, r, error && !text ? "out of memory" : text, userdata);
}

/* The current unit is done (well or not): on to the next one. */
static void group_advance(MailGroup *g, const char *result) {
        const char *unit = current_unit(g);

        if (g->op == GROUP_STARTING && !streq(result, "done")) {
                char error[512];
                snprintf(error, sizeof error, "%s: start job %s", unit, result);
                mail_group_finish(g, -EIO, error);
                return;
        }
        if (g->op == GROUP_STOPPING && !streq(result, "done"))
                (void) buf_printf(&g->errors, "%s%s: stop job %s%s", g->errors.len ? "; " : "", unit, result,
                                  g->killed ? " (killed with SIGKILL)" : "");

        group_reset_step(g);
        g->step++;
        g->resends = 0;
        group_step(g);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;

        if (ordered_op(g) && g->job && streq(g->job, path)) {
                group_advance(g, result);
                return 0;
        }

        /* Not (yet) ours: keep it in case the reply naming it comes next. */
        RecentJob *r = &g->recent[g->recent_next++ % RECENT_JOBS];
        free(r->path);
        free(r->result);
        r->path = strdup(path);
        r->result = strdup(result);
        return 0;
}

static const char *recent_result(MailGroup *g, const char *job) {
        for (size_t i = 0; i < RECENT_JOBS; i++)
                if (g->recent[i].path && g->recent[i].result && streq(g->recent[i].path, job))
                        return g->recent[i].result;
        return NULL;
}

static int on_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *job;

        g->call = sd_bus_slot_unref(g->call);

        if (e) {
                if (bus_error_is_disconnect(g->bus, e)) {
                        group_resend_later(g);
                        return 0;
                }
                /* Stopping a unit systemd does not know is a stop that succeeded. */
                if (g->op == GROUP_STOPPING && sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit")) {
                        group_advance(g, "done");
                        return 0;
                }
                char result[300];
                snprintf(result, sizeof result, "refused (%s)", e->message ?: e->name);
                group_advance(g, result);
                return 0;
        }
        if (sd_bus_message_read(reply, "o", &job) < 0) {
                group_advance(g, "refused (bad reply)");
                return 0;
        }

        const char *result = recent_result(g, job);
        if (result) {
                group_advance(g, result);
                return 0;
        }
        g->job = strdup(job);
        if (!g->job)
                group_advance(g, "refused (out of memory)");
        return 0;
}

static int on_kill_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        /* The stop job finishes once the killed processes are gone; its
         * JobRemoved moves us on, or the timeout reports the unit. */
        g->call = sd_bus_slot_unref(g->call);
        if (e && !bus_error_is_disconnect(g->bus, e)) {
                log_warning("Failed to kill %s: %s", current_unit(g), e->message ?: e->name);
                (void) buf_printf(&g->errors, "%s%s: KillUnit failed (%s)", g->errors.len ? "; " : "",
                                  current_unit(g), e->message ?: e->name);
        }
        return 0;
}

static int on_step_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        MailGroup *g = userdata;
        const char *unit = current_unit(g);
        sd_bus *bus;
        int r;

        g->timer = sd_event_source_disable_unref(g->timer);

        if (g->op == GROUP_STOPPING && !g->killed) {
                /* A unit that will not stop is killed: the group must come down. */
                log_warning("%s did not stop in time, killing it.", unit);
                g->killed = true;
                g->call = sd_bus_slot_unref(g->call);
                r = mail_group_bus(g, &bus);
                if (r >= 0)
                        r = sd_bus_call_method_async(bus, &g->call, SYSTEMD_DESTINATION, SYSTEMD_PATH,
                                                     SYSTEMD_MANAGER, "KillUnit", on_kill_reply, g, "ssi", unit,
                                                     "all", (int32_t) SIGKILL);
                if (r < 0) {
                        log_warning_errno(r, "Failed to ask systemd to kill %s: %m", unit);
                        (void) buf_printf(&g->errors, "%s%s: KillUnit not sent (%s)", g->errors.len ? "; " : "",
                                          unit, strerror(-r));
                }
                (void) sd_event_add_time_relative(g->event, &g->timer, CLOCK_MONOTONIC, g->stop_timeout,
                                                  USEC_PER_MSEC, on_step_timeout, g);
                return 0;
        }

        group_advance(g, "timed out");
        return 0;
}

static void group_step(MailGroup *g) {
        sd_bus *bus;
        int r;

        if (g->step >= g->n_units) {
                if (g->op == GROUP_STOPPING && g->errors.len > 0) {
                        _cleanup_free_ char *errors = buf_steal(&g->errors);
                        mail_group_finish(g, -EIO, errors ?: "out of memory");
                } else
                        mail_group_finish(g, 0, NULL);
                return;
        }

        const char *unit = current_unit(g);
        bool stopping = g->op == GROUP_STOPPING;

        r = mail_group_bus(g, &bus);
        if (r >= 0)
                r = sd_bus_call_method_async(bus, &g->call, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                             stopping ? "StopUnit" : "StartUnit", on_job_reply, g, "ss", unit,
                                             "replace");
        if (r >= 0)
                r = sd_event_add_time_relative(g->event, &g->timer, CLOCK_MONOTONIC,
                                               stopping ? g->stop_timeout : g->start_timeout, USEC_PER_MSEC,
                                               on_step_timeout, g);
        if (r < 0) {
                char result[128];
                snprintf(result, sizeof result, "not sent (%s)", strerror(-r));
                group_advance(g, result);
        }
}

/* A new decision supersedes the one in flight. */
static void group_cancel(MailGroup *g) {
        group_reset_step(g);
        fence_reset(g);
        buf_reset(&g->errors);
        g->op = GROUP_IDLE;
        g->done = NULL;
        g->userdata = NULL;
}

static int group_begin(MailGroup *g, GroupOp op, MailGroupDone done, void *userdata) {
        assert_return(g, -EINVAL);

        group_cancel(g);
        g->op = op;
        g->step = 0;
        g->resends = 0;
        g->done = done;
        g->userdata = userdata;
        group_step(g);
        return 0;
}

int mail_group_stop(MailGroup *g, MailGroupDone done, void *userdata) {
        return group_begin(g, GROUP_STOPPING, done, userdata);
}

int mail_group_start(MailGroup *g, MailGroupDone done, void *userdata) {
        return group_begin(g, GROUP_STARTING, done, userdata);
}

int mail_group_fence(MailGroup *g, usec_t timeout, MailGroupDone done, void *userdata) {
        int r;

        assert_return(g, -EINVAL);
        assert_return(timeout > 0, -EINVAL);

        group_cancel(g);
        g->op = GROUP_FENCING;
        g->done = done;
        g->userdata = userdata;
        r = fence_begin(g, timeout);
        if (r < 0)
                group_cancel(g);
        return r;
}

int mail_group_kill(MailGroup *g, MailGroupDone done, void *userdata) {
        assert_return(g, -EINVAL);
        return mail_group_fence(g, g->stop_timeout, done, userdata);
}

bool mail_group_busy(const MailGroup *g) {
        return g->op != GROUP_IDLE;
}

char *const *mail_group_units(const MailGroup *g) {
        return g->units;
}

unsigned mail_group_reconnects(const MailGroup *g) {
        return g->reconnects;
}

int mail_group_new_full(sd_event *event, MailGroupOpenBus open_bus, void *open_bus_userdata, char *const *units,
                        usec_t stop_timeout, usec_t start_timeout, MailGroup **ret) {
        _cleanup_(mail_group_freep) MailGroup *g = NULL;
        int r;

        assert_return(event, -EINVAL);
        assert_return(units && units[0], -EINVAL);
        assert_return(ret, -EINVAL);

        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);
        g->open_bus = open_bus ?: open_system_bus;
        g->open_bus_userdata = open_bus_userdata;
        g->stop_timeout = stop_timeout;
        g->start_timeout = start_timeout;
        g->errors = BUF_INIT(4096);
        r = sd_event_add_time(event, &g->resend_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_resend, g);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(g->resend_timer, SD_EVENT_OFF);
        g->n_units = strv_length(units);
        g->units = calloc(g->n_units + 1, sizeof(char *));
        if (!g->units)
                return -ENOMEM;
        for (size_t i = 0; i < g->n_units; i++) {
                g->units[i] = strdup(units[i]);
                if (!g->units[i])
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(g);
        return 0;
}

int mail_group_new(sd_bus *bus, sd_event *event, char *const *units, usec_t stop_timeout, usec_t start_timeout,
                   MailGroup **ret) {
        _cleanup_(mail_group_freep) MailGroup *g = NULL;
        int r;

        assert_return(bus, -EINVAL);

        r = mail_group_new_full(event, NULL, NULL, units, stop_timeout, start_timeout, &g);
        if (r < 0)
                return r;
        /* The caller's connection, subscribed already (manager_get_bus()). */
        r = group_watch_bus(g, bus);
        if (r < 0)
                return r;
        g->bus = sd_bus_ref(bus);
        g->bus_shared = true;
        g->generation = 1;

        *ret = TAKE_PTR(g);
        return 0;
}

MailGroup *mail_group_free(MailGroup *g) {
        if (!g)
                return NULL;
        g->query = settled_query_free(g->query);
        group_cancel(g);
        g->resend_timer = sd_event_source_disable_unref(g->resend_timer);
        g->job_removed = sd_bus_slot_unref(g->job_removed);
        g->disconnected = sd_bus_slot_unref(g->disconnected);
        fence_drop_calls(g);
        free(g->fence);
        for (size_t i = 0; i < RECENT_JOBS; i++) {
                free(g->recent[i].path);
                free(g->recent[i].result);
        }
        buf_done(&g->errors);
        strv_free(g->units);
        g->bus = g->bus_shared ? sd_bus_unref(g->bus) : sd_bus_close_unref(g->bus);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}
