/* SPDX-License-Identifier: GPL-2.0-or-later */
/* systemd-unit: the state of a list of units, read over D-Bus.
 *
 * It is event-driven: the probe subscribes to the manager's signals and to
 * PropertiesChanged on each unit, and every change triggers a run at once, so
 * a unit that dies is seen within milliseconds rather than at the next
 * interval. The interval is only the fallback. (systemd emits unit signals
 * only to clients that called Manager.Subscribe(); manager_get_bus() does.) */

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/bus-util.h"
#include "lib/log.h"
#include "probes.h"

#define SYSTEMD_DESTINATION "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define UNIT_INTERFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_INTERFACE "org.freedesktop.systemd1.Service"
#define MAX_UNITS 64

typedef struct UnitState {
        Probe *probe;
        char *name;
        char *path;
        sd_bus_slot *match;
        sd_bus_slot *call_unit;
        sd_bus_slot *call_service;
        /* filled by one run */
        char active_state[32];
        char sub_state[32];
        char load_state[32];
        uint32_t n_restarts;
        uint64_t main_start_usec;
        bool is_service;
        int error; /* a D-Bus failure reading this unit */
} UnitState;

typedef struct SystemdUnitProbe {
        char **units; /* configuration */

        UnitState *states;
        size_t n_states;
        size_t n_calls_pending; /* GetAll calls of this run still unanswered */
} SystemdUnitProbe;

static const MetricFamily family_active = {
        .name = "rupost_systemd_unit_active",
        .type = METRIC_GAUGE,
        .help = "Whether the unit is active (1) or not (0).",
};
static const MetricFamily family_state = {
        .name = "rupost_systemd_unit_state",
        .type = METRIC_GAUGE,
        .help = "The unit's ActiveState as a state set: 1 for the current state.",
};
static const MetricFamily family_restarts = {
        .name = "rupost_systemd_unit_restarts",
        .type = METRIC_GAUGE,
        .help = "How often systemd restarted the service automatically (NRestarts).",
};
static const MetricFamily family_start_time = {
        .name = "rupost_systemd_unit_start_time_seconds",
        .type = METRIC_GAUGE,
        .help = "When the service's main process was started, in seconds since the epoch.",
};

static const char *const active_states[] = {
        "active", "reloading", "inactive", "failed", "activating", "deactivating",
};

static const ConfigItem systemd_unit_config_items[] = {
        { "units", config_parse_strv, offsetof(SystemdUnitProbe, units), .required = true },
        {}
};

static bool unit_name_valid(const char *name) {
        const char *dot = strrchr(name, '.');

        if (!dot || dot == name || strlen(name) > 255)
                return false;
        for (const char *c = name; *c; c++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@", *c))
                        return false;
        return true;
}

static int systemd_unit_verify(Probe *p, ConfigContext *c) {
        SystemdUnitProbe *u = probe_get_userdata(p);
        size_t n = strv_length(u->units);
        int ret = 0;

        if (n == 0)
                return config_error(c, NULL, "units", "the list of units is empty");
        if (n > MAX_UNITS)
                return config_error(c, NULL, "units", "more than %d units", MAX_UNITS);
        /* Every bad name, not only the first: one --check-config run lists all. */
        for (char **i = u->units; *i; i++)
                if (!unit_name_valid(*i))
                        config_gather(&ret, config_error(c, NULL, "units",
                                                         "'%s' is not a unit name (like 'postfix.service')", *i));
        return ret;
}

static int on_unit_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Probe *p = userdata;

        /* Whatever changed, read the whole picture again, right now. */
        (void) probe_trigger(p);
        return 0;
}

static int systemd_unit_setup(Probe *p) {
        SystemdUnitProbe *u = probe_get_userdata(p);
        sd_bus *bus;
        int r;

        r = probe_get_bus(p, &bus);
        if (r < 0) {
                char why[BUS_SYSTEM_ERROR_MAX];
                return probe_setup_error(p, r, "%s", bus_system_error(r, why, sizeof why));
        }

        /* A failed attempt is picked up where it stopped: the core retries. */
        if (!u->states) {
                u->states = calloc(strv_length(u->units), sizeof *u->states);
                if (!u->states)
                        return -ENOMEM;
                u->n_states = strv_length(u->units);
        }

        for (size_t i = 0; i < u->n_states; i++) {
                UnitState *s = &u->states[i];

                s->probe = p;
                if (!s->name) {
                        s->name = strdup(u->units[i]);
                        if (!s->name)
                                return -ENOMEM;
                }
                if (!s->path) {
                        r = sd_bus_path_encode(SYSTEMD_PATH "/unit", s->name, &s->path);
                        if (r < 0)
                                return r;
                }
                s->is_service = strlen(s->name) > 8 && streq(s->name + strlen(s->name) - 8, ".service");
                if (s->match)
                        continue;
                r = sd_bus_match_signal_async(bus, &s->match, SYSTEMD_DESTINATION, s->path,
                                              "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                              on_unit_changed, NULL, p);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void systemd_unit_stop(Probe *p) {
        SystemdUnitProbe *u = probe_get_userdata(p);

        for (size_t i = 0; u->states && i < u->n_states; i++) {
                u->states[i].call_unit = sd_bus_slot_unref(u->states[i].call_unit);
                u->states[i].call_service = sd_bus_slot_unref(u->states[i].call_service);
        }
        u->n_calls_pending = 0;
}

static void systemd_unit_done(Probe *p) {
        SystemdUnitProbe *u = probe_get_userdata(p);

        for (size_t i = 0; u->states && i < u->n_states; i++) {
                sd_bus_slot_unref(u->states[i].match);
                free(u->states[i].name);
                free(u->states[i].path);
        }
        free(u->states);
        strv_free(u->units);
}

static void copy_string(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ?: "");
}

static int read_properties(sd_bus_message *reply, UnitState *s) {
        int r;

        r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                const char *name, *str;

                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "ActiveState") || streq(name, "SubState") || streq(name, "LoadState")) {
                        r = sd_bus_message_read(reply, "v", "s", &str);
                        if (r < 0)
                                return r;
                        if (streq(name, "ActiveState"))
                                copy_string(s->active_state, sizeof s->active_state, str);
                        else if (streq(name, "SubState"))
                                copy_string(s->sub_state, sizeof s->sub_state, str);
                        else
                                copy_string(s->load_state, sizeof s->load_state, str);
                } else if (streq(name, "NRestarts"))
                        r = sd_bus_message_read(reply, "v", "u", &s->n_restarts);
                else if (streq(name, "ExecMainStartTimestamp"))
                        r = sd_bus_message_read(reply, "v", "t", &s->main_start_usec);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

static int systemd_unit_evaluate(Probe *p) {
        SystemdUnitProbe *u = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(4096);
        size_t n_active = 0;

        for (size_t i = 0; i < u->n_states; i++) {
                UnitState *s = &u->states[i];
                bool active = streq(s->active_state, "active") || streq(s->active_state, "reloading");

                if (s->error < 0) {
                        probe_reason_add(&reason, &status, PROBE_UNKNOWN, "%s: cannot read its state: %s", s->name,
                                         strerror(-s->error));
                        continue;
                }

                (void) probe_add_sample(p, &family_active, active, "unit", s->name, NULL);
                for (size_t k = 0; k < ELEMENTSOF(active_states); k++)
                        (void) probe_add_sample(p, &family_state, streq(s->active_state, active_states[k]),
                                                "unit", s->name, "state", active_states[k], NULL);
                if (s->is_service) {
                        (void) probe_add_sample(p, &family_restarts, s->n_restarts, "unit", s->name, NULL);
                        if (active && s->main_start_usec > 0)
                                (void) probe_add_sample(p, &family_start_time,
                                                        usec_to_seconds(s->main_start_usec), "unit", s->name,
                                                        NULL);
                }

                if (active)
                        n_active++;
                else if (streq(s->load_state, "not-found"))
                        probe_reason_add(&reason, &status, PROBE_CRITICAL, "%s is not installed", s->name);
                else
                        /* A unit that is still starting is not serving yet, but may be
                         * about to; anything else down is down. */
                        probe_reason_add(&reason, &status,
                                         streq(s->active_state, "activating") ? PROBE_WARNING : PROBE_CRITICAL,
                                         "%s is %s (%s)", s->name, s->active_state, s->sub_state);
        }

        if (status == PROBE_OK)
                (void) buf_printf(&reason, "all %zu units active", n_active);
        int r = probe_finish(p, status, "%s", reason.data ?: "");
        buf_done(&reason);
        return r;
}

static int on_get_all(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        UnitState *s = userdata;
        Probe *p = s->probe;
        SystemdUnitProbe *u = probe_get_userdata(p);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int r;

        if (e)
                s->error = -sd_bus_error_get_errno(e) ?: -EIO;
        else {
                r = read_properties(reply, s);
                if (r < 0)
                        s->error = r;
        }

        assert(u->n_calls_pending > 0);
        if (--u->n_calls_pending == 0)
                return systemd_unit_evaluate(p);
        return 0;
}

static int systemd_unit_start(Probe *p) {
        SystemdUnitProbe *u = probe_get_userdata(p);
        sd_bus *bus;
        int r;

        r = probe_get_bus(p, &bus);
        if (r < 0) {
                char why[BUS_SYSTEM_ERROR_MAX];
                return probe_finish(p, PROBE_UNKNOWN, "%s", bus_system_error(r, why, sizeof why));
        }

        probe_set_phase(p, "waiting for systemd to answer");
        for (size_t i = 0; i < u->n_states; i++) {
                UnitState *s = &u->states[i];

                *s = (UnitState) {
                        .name = s->name, .path = s->path, .match = s->match, .probe = p,
                        .is_service = s->is_service,
                };
                r = sd_bus_call_method_async(bus, &s->call_unit, SYSTEMD_DESTINATION, s->path,
                                             "org.freedesktop.DBus.Properties", "GetAll", on_get_all, s, "s",
                                             UNIT_INTERFACE);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot ask systemd");
                u->n_calls_pending++;
                if (!s->is_service)
                        continue;
                r = sd_bus_call_method_async(bus, &s->call_service, SYSTEMD_DESTINATION, s->path,
                                             "org.freedesktop.DBus.Properties", "GetAll", on_get_all, s, "s",
                                             SERVICE_INTERFACE);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot ask systemd");
                u->n_calls_pending++;
        }
        return 0;
}

const ProbeType probe_type_systemd_unit = {
        .name = "systemd-unit",
        .local_only = true,
        .object_size = sizeof(SystemdUnitProbe),
        .config_items = systemd_unit_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 1,
        .verify = systemd_unit_verify,
        .setup = systemd_unit_setup,
        .start = systemd_unit_start,
        .stop = systemd_unit_stop,
        .done = systemd_unit_done,
};
