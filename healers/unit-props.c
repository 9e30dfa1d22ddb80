/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/macro.h"
#include "unit-props.h"

static int read_string_variant(sd_bus_message *m, char *out, size_t size) {
        const char *s;
        int r;

        r = sd_bus_message_read(m, "v", "s", &s);
        if (r < 0)
                return r;
        snprintf(out, size, "%s", s);
        return 0;
}

int unit_props_read(sd_bus_message *m, UnitProps *ret) {
        UnitProps p = {};
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "ActiveState"))
                        r = read_string_variant(m, p.active_state, sizeof p.active_state);
                else if (streq(name, "SubState"))
                        r = read_string_variant(m, p.sub_state, sizeof p.sub_state);
                else if (streq(name, "ActiveEnterTimestampMonotonic"))
                        r = sd_bus_message_read(m, "v", "t", &p.active_enter_monotonic);
                else if (streq(name, "Job")) {
                        const char *path;
                        r = sd_bus_message_read(m, "v", "(uo)", &p.job_id, &path);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        if (p.active_state[0] == '\0')
                return -EBADMSG;
        *ret = p;
        return 0;
}

bool unit_props_down(const UnitProps *p) {
        return (streq(p->active_state, "inactive") || streq(p->active_state, "failed")) && p->job_id == 0;
}

bool system_state_starting(const char *system_state) {
        return streq(system_state, "initializing") || streq(system_state, "starting");
}

bool units_settled(const char *system_state, char *const *units, const UnitProps *props, usec_t now_monotonic,
                   usec_t grace, char *reason, size_t size) {
        char t[DURATION_MAX];

        if (system_state_starting(system_state)) {
                snprintf(reason, size, "the boot transaction is still running (system state %s)", system_state);
                return false;
        }
        /* Units are stopped as the system goes down: that is no failure either. */
        if (streq(system_state, "stopping")) {
                snprintf(reason, size, "the system is shutting down");
                return false;
        }
        for (size_t i = 0; units[i]; i++) {
                const UnitProps *p = &props[i];

                if (streq(p->active_state, "activating") || streq(p->active_state, "deactivating") ||
                    streq(p->active_state, "reloading")) {
                        snprintf(reason, size, "%s is %s (%s)", units[i], p->active_state, p->sub_state);
                        return false;
                }
                if (p->job_id != 0) {
                        snprintf(reason, size, "%s is %s (%s) with job %u queued", units[i], p->active_state,
                                 p->sub_state, p->job_id);
                        return false;
                }
                /* A timestamp from the future (another clock, a bad reply) is
                 * taken as just now: it errs on the side of waiting. */
                if (streq(p->active_state, "active") && p->active_enter_monotonic > 0 &&
                    (now_monotonic < p->active_enter_monotonic ||
                     now_monotonic - p->active_enter_monotonic < grace)) {
                        usec_t ago = now_monotonic > p->active_enter_monotonic
                                             ? now_monotonic - p->active_enter_monotonic
                                             : 0;
                        /* Whole seconds read better than "2s 871ms" in a reason. */
                        ago -= ago % (ago >= USEC_PER_SEC ? USEC_PER_SEC : USEC_PER_MSEC);
                        snprintf(reason, size, "%s started %s ago", units[i], format_duration(t, sizeof t, ago));
                        return false;
                }
        }
        if (size > 0)
                reason[0] = '\0';
        return true;
}

bool bus_error_is_disconnect(sd_bus *bus, const sd_bus_error *e) {
        if (!bus || sd_bus_is_open(bus) <= 0)
                return true;
        if (!e)
                return false;
        int k = sd_bus_error_get_errno(e);
        return k == ENOTCONN || k == ECONNRESET || k == ESHUTDOWN || k == EPIPE;
}
