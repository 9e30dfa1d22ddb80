/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "mail-group.h"

#define SYSTEMD_DESTINATION "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
/* JobRemoved may overtake the reply that names the job; remember a few. */
#define RECENT_JOBS 16

typedef enum GroupOp {
        GROUP_IDLE,
        GROUP_STOPPING,
        GROUP_STARTING,
} GroupOp;

typedef struct RecentJob {
        char *path;
        char *result;
} RecentJob;

struct MailGroup {
        sd_bus *bus;
        sd_event *event;
        char **units;
        size_t n_units;
        usec_t stop_timeout;
        usec_t start_timeout;

        sd_bus_slot *job_removed;

        GroupOp op;
        bool kill_first;   /* fencing: SIGKILL every unit before stopping it */
        size_t step;       /* how many units of the operation are done */
        bool killed;       /* the current unit got SIGKILL after its stop timeout */
        sd_bus_slot *call; /* StartUnit/StopUnit/KillUnit in flight */
        char *job;         /* the job we wait for */
        sd_event_source *timer;
        Buf errors;        /* what went wrong during a stop, for the report */
        MailGroupDone done;
        void *userdata;

        RecentJob recent[RECENT_JOBS];
        size_t recent_next;
};

static void group_step(MailGroup *g);

static const char *current_unit(const MailGroup *g) {
        /* Stops walk the list backwards. */
        return g->op == GROUP_STOPPING ? g->units[g->n_units - 1 - g->step] : g->units[g->step];
}

static void group_reset_step(MailGroup *g) {
        g->call = sd_bus_slot_unref(g->call);
        g->timer = sd_event_source_disable_unref(g->timer);
        free(g->job);
        g->job = NULL;
        g->killed = false;
}

static void group_finish(MailGroup *g, int r, const char *error) {
        MailGroupDone done = g->done;
        void *userdata = g->userdata;
        _cleanup_free_ char *text = error ? strdup(error) : NULL;

        group_reset_step(g);
        g->op = GROUP_IDLE;
        g->done = NULL;
        buf_reset(&g->errors);
        if (done)
                done(g, r, text, userdata);
}

/* The current unit is done (well or not): on to the next one. */
static void group_advance(MailGroup *g, const char *result) {
        const char *unit = current_unit(g);

        if (g->op == GROUP_STARTING && !streq(result, "done")) {
                char error[512];
                snprintf(error, sizeof error, "%s: start job %s", unit, result);
                group_finish(g, -EIO, error);
                return;
        }
        if (g->op == GROUP_STOPPING && !streq(result, "done"))
                (void) buf_printf(&g->errors, "%s%s: stop job %s%s", g->errors.len ? "; " : "", unit, result,
                                  g->killed ? " (killed with SIGKILL)" : "");

        group_reset_step(g);
        g->step++;
        group_step(g);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;

        if (g->job && streq(g->job, path)) {
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
                if (g->recent[i].path && streq(g->recent[i].path, job))
                        return g->recent[i].result;
        return NULL;
}

static int on_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MailGroup *g = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *job;

        g->call = sd_bus_slot_unref(g->call);

        if (e) {
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

        /* The stop job finishes once the killed processes are gone; its
         * JobRemoved moves us on. Only a refused kill is worth a word. */
        g->call = sd_bus_slot_unref(g->call);
        if (sd_bus_message_is_method_error(reply, NULL))
                log_warning("Failed to kill %s: %s", current_unit(g), sd_bus_message_get_error(reply)->message);
        return 0;
}

static int on_step_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        MailGroup *g = userdata;
        const char *unit = current_unit(g);
        int r;

        g->timer = sd_event_source_disable_unref(g->timer);

        if (g->op == GROUP_STOPPING && !g->killed) {
                /* A unit that will not stop is killed: the group must come down. */
                log_warning("%s did not stop in time, killing it.", unit);
                g->killed = true;
                g->call = sd_bus_slot_unref(g->call);
                r = sd_bus_call_method_async(g->bus, &g->call, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                             "KillUnit", on_kill_reply, g, "ssi", unit, "all", (int32_t) SIGKILL);
                if (r < 0)
                        log_warning_errno(r, "Failed to ask systemd to kill %s: %m", unit);
                (void) sd_event_add_time_relative(g->event, &g->timer, CLOCK_MONOTONIC, g->stop_timeout,
                                                  USEC_PER_MSEC, on_step_timeout, g);
                return 0;
        }

        group_advance(g, "timed out");
        return 0;
}

static void group_step(MailGroup *g) {
        int r;

        if (g->step >= g->n_units) {
                if (g->op == GROUP_STOPPING && g->errors.len > 0) {
                        _cleanup_free_ char *errors = buf_steal(&g->errors);
                        group_finish(g, -EIO, errors);
                } else
                        group_finish(g, 0, NULL);
                return;
        }

        const char *unit = current_unit(g);
        bool stopping = g->op == GROUP_STOPPING;

        /* systemd handles a client's calls in order: the kill lands before the
         * stop job, which then only waits for processes already dying. No
         * slot and no callback: no reply is expected. */
        if (stopping && g->kill_first) {
                r = sd_bus_call_method_async(g->bus, NULL, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                             "KillUnit", NULL, NULL, "ssi", unit, "all", (int32_t) SIGKILL);
                if (r < 0)
                        log_warning_errno(r, "Failed to ask systemd to kill %s, stopping it anyway: %m", unit);
                g->killed = true;
        }

        r = sd_bus_call_method_async(g->bus, &g->call, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                     stopping ? "StopUnit" : "StartUnit", on_job_reply, g, "ss", unit, "replace");
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

static int group_begin(MailGroup *g, GroupOp op, bool kill_first, MailGroupDone done, void *userdata) {
        assert_return(g, -EINVAL);

        /* A new decision supersedes the one in flight. */
        group_reset_step(g);
        buf_reset(&g->errors);
        g->op = op;
        g->kill_first = kill_first;
        g->step = 0;
        g->done = done;
        g->userdata = userdata;
        group_step(g);
        return 0;
}

int mail_group_stop(MailGroup *g, MailGroupDone done, void *userdata) {
        return group_begin(g, GROUP_STOPPING, false, done, userdata);
}

int mail_group_kill(MailGroup *g, MailGroupDone done, void *userdata) {
        return group_begin(g, GROUP_STOPPING, true, done, userdata);
}

int mail_group_start(MailGroup *g, MailGroupDone done, void *userdata) {
        return group_begin(g, GROUP_STARTING, false, done, userdata);
}

bool mail_group_busy(const MailGroup *g) {
        return g->op != GROUP_IDLE;
}

char *const *mail_group_units(const MailGroup *g) {
        return g->units;
}

int mail_group_new(sd_bus *bus, sd_event *event, char *const *units, usec_t stop_timeout, usec_t start_timeout,
                   MailGroup **ret) {
        _cleanup_(mail_group_freep) MailGroup *g = NULL;
        int r;

        assert_return(units && units[0], -EINVAL);

        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->bus = sd_bus_ref(bus);
        g->event = sd_event_ref(event);
        g->stop_timeout = stop_timeout;
        g->start_timeout = start_timeout;
        g->errors = BUF_INIT(4096);
        g->n_units = strv_length(units);
        g->units = calloc(g->n_units + 1, sizeof(char *));
        if (!g->units)
                return -ENOMEM;
        for (size_t i = 0; i < g->n_units; i++) {
                g->units[i] = strdup(units[i]);
                if (!g->units[i])
                        return -ENOMEM;
        }

        r = sd_bus_match_signal_async(bus, &g->job_removed, SYSTEMD_DESTINATION, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                      "JobRemoved", on_job_removed, NULL, g);
        if (r < 0)
                return r;
        /* JobRemoved reaches only subscribed clients: manager_get_bus() subscribed. */

        *ret = TAKE_PTR(g);
        return 0;
}

MailGroup *mail_group_free(MailGroup *g) {
        if (!g)
                return NULL;
        group_reset_step(g);
        sd_bus_slot_unref(g->job_removed);
        for (size_t i = 0; i < RECENT_JOBS; i++) {
                free(g->recent[i].path);
                free(g->recent[i].result);
        }
        buf_done(&g->errors);
        strv_free(g->units);
        sd_event_unref(g->event);
        sd_bus_unref(g->bus);
        free(g);
        return NULL;
}
