/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dovecot: the unit's resource limits and who is connected.
 *
 * Limits: the product needs LimitNOFILE=1048576 and LimitNPROC=4194304 on
 * dovecot.service (a drop-in the install guide has operators write); a
 * package upgrade or a hand-edited unit that loses them leaves a node that
 * works until the first busy morning. The probe reads the unit's limits from
 * systemd over D-Bus (soft and hard, as the service will get them) and warns
 * when either is below what the product requires. A higher limit is not
 * drift: the requirement is a floor.
 *
 * Connections: `doveadm -f tab who -1` (it asks Dovecot's anvil) in a forked
 * child: doveadm is a blocking external program, and its output is parsed by
 * dovecot-parse.c. It runs from a fixed path with a fixed argv, never through
 * a shell. A doveadm that fails means the check could not run (UNKNOWN);
 * whether Dovecot serves is the business of the imap/lmtp probes and of the
 * systemd-unit probe. */

#include <assert.h>
#include <fcntl.h>
#include <math.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dovecot-parse.h"
#include "lib/buf.h"
#include "lib/bus-util.h"
#include "lib/child.h"
#include "lib/log.h"
#include "probes.h"

#define SYSTEMD_DESTINATION "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define UNIT_INTERFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_INTERFACE "org.freedesktop.systemd1.Service"

#define DOVEADM_PATH "/usr/bin/doveadm"
#define DEFAULT_UNIT "dovecot.service"
/* What the product documentation requires of dovecot.service. */
#define DEFAULT_LIMIT_NOFILE 1048576U
#define DEFAULT_LIMIT_NPROC 4194304U

typedef enum Resource {
        RESOURCE_NOFILE,
        RESOURCE_NPROC,
        _RESOURCE_MAX,
} Resource;

static const struct {
        const char *label;    /* metric label */
        const char *property; /* systemd's property and unit file setting */
} resources[_RESOURCE_MAX] = {
        [RESOURCE_NOFILE] = { "nofile", "LimitNOFILE" },
        [RESOURCE_NPROC] = { "nproc", "LimitNPROC" },
};

typedef struct DovecotProbe {
        /* configuration */
        char *unit;
        unsigned expect[_RESOURCE_MAX];

        char *unit_path;   /* D-Bus object path of the unit */
        char *description; /* of the doveadm child, to find a hung one */

        /* one run */
        sd_bus_slot *call_load_state;
        sd_bus_slot *call_limits;
        Child *child;
        unsigned n_pending;
        bool completed;    /* the child reported, as opposed to being given up */
        usec_t hung_since; /* CLOCK_REALTIME when a child was last abandoned while running */

        /* what the run learned */
        char load_state[32];
        int load_error;   /* from D-Bus, negative errno */
        char bus_message[160];
        bool have_limits;
        uint64_t soft[_RESOURCE_MAX], hard[_RESOURCE_MAX];
        int who_status;   /* the child's exit status, -EINTR for a signal, -E2BIG */
        char *who_output; /* copy of what doveadm printed */
        size_t who_size;
} DovecotProbe;

static const MetricFamily family_connections = {
        .name = "rupost_dovecot_connections",
        .type = METRIC_GAUGE,
        .help = "Client connections Dovecot's anvil knows of, by service (doveadm who -1).",
};
static const MetricFamily family_users = {
        .name = "rupost_dovecot_users",
        .type = METRIC_GAUGE,
        .help = "Distinct users with at least one connection to Dovecot.",
};
static const MetricFamily family_limit = {
        .name = "rupost_dovecot_unit_limit",
        .type = METRIC_GAUGE,
        .help = "The Dovecot unit's resource limit as systemd will apply it (soft or hard; +Inf for infinity).",
};
static const MetricFamily family_drift = {
        .name = "rupost_dovecot_limit_drift",
        .type = METRIC_GAUGE,
        .help = "Whether the Dovecot unit's limit is below what the product requires (1) or not (0).",
};

#define D(f) offsetof(DovecotProbe, f)
static const ConfigItem dovecot_config_items[] = {
        { "unit",                config_parse_string, D(unit)                                  },
        { "expect_limit_nofile", config_parse_uint,   D(expect[RESOURCE_NOFILE]), 1, 1U << 30 },
        { "expect_limit_nproc",  config_parse_uint,   D(expect[RESOURCE_NPROC]),  1, 1U << 30 },
        {}
};
#undef D

static bool service_name_valid(const char *name) {
        size_t l = strlen(name);

        if (l <= 8 || l > 255 || !streq(name + l - 8, ".service"))
                return false;
        for (const char *c = name; *c; c++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@", *c))
                        return false;
        return true;
}

static int dovecot_verify(Probe *p, ConfigContext *c) {
        DovecotProbe *d = probe_get_userdata(p);
        int r;

        if (!d->unit) {
                d->unit = strdup(DEFAULT_UNIT);
                if (!d->unit)
                        return -ENOMEM;
        }
        if (!service_name_valid(d->unit))
                return config_error(c, NULL, "unit", "'%s' is not a service unit name (like 'dovecot.service')",
                                    d->unit);
        if (d->expect[RESOURCE_NOFILE] == 0)
                d->expect[RESOURCE_NOFILE] = DEFAULT_LIMIT_NOFILE;
        if (d->expect[RESOURCE_NPROC] == 0)
                d->expect[RESOURCE_NPROC] = DEFAULT_LIMIT_NPROC;

        r = sd_bus_path_encode(SYSTEMD_PATH "/unit", d->unit, &d->unit_path);
        if (r < 0)
                return r;
        if (asprintf(&d->description, "doveadm who for %s", d->unit) < 0) {
                d->description = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---- in the child ---- */

static int doveadm_child(int out_fd, void *arg) {
        static char *const argv[] = { (char *) DOVEADM_PATH, (char *) "-f", (char *) "tab", (char *) "who",
                                      (char *) "-1", NULL };
        static char *const envp[] = { (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *) "LC_ALL=C", NULL };
        int null;

        /* doveadm's errors go to stderr: on the same pipe, so the reason can quote them. */
        null = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(out_fd, STDERR_FILENO) < 0) {
                dprintf(out_fd, "cannot set up the standard streams of doveadm: %s\n", strerror(errno));
                return 125;
        }
        execve(DOVEADM_PATH, argv, envp);
        dprintf(out_fd, "cannot execute " DOVEADM_PATH ": %s\n", strerror(errno));
        return 125;
}

/* ---- in the agent ---- */

static void dovecot_stop(Probe *p) {
        DovecotProbe *d = probe_get_userdata(p);

        d->call_load_state = sd_bus_slot_unref(d->call_load_state);
        d->call_limits = sd_bus_slot_unref(d->call_limits);
        if (d->child) {
                /* Still running at stop: the deadline passed or the run was
                 * cancelled. Remember since when, for the next run's reason. */
                if (!d->completed && d->hung_since == 0)
                        d->hung_since = now(CLOCK_REALTIME);
                d->child = child_abandon(d->child);
        }
        d->n_pending = 0;
        free(d->who_output);
        d->who_output = NULL;
        d->who_size = 0;
}

static void dovecot_done(Probe *p) {
        DovecotProbe *d = probe_get_userdata(p);

        dovecot_stop(p);
        free(d->unit);
        free(d->unit_path);
        free(d->description);
}

static void problem(Buf *reason, ProbeStatus *status, ProbeStatus s, const char *fmt, ...) _printf_(4, 5);
static void problem(Buf *reason, ProbeStatus *status, ProbeStatus s, const char *fmt, ...) {
        va_list ap;

        *status = probe_status_worst(*status, s);
        if (reason->len > 0)
                (void) buf_puts(reason, "; ");
        va_start(ap, fmt);
        (void) buf_vprintf(reason, fmt, ap);
        va_end(ap);
}

static double limit_value(uint64_t v) {
        return v == UINT64_MAX ? INFINITY : (double) v;
}

static void judge_limits(Probe *p, Buf *reason, ProbeStatus *status, Buf *ok) {
        DovecotProbe *d = probe_get_userdata(p);
        Buf drift = BUF_INIT(1024);
        unsigned n_drift = 0;

        /* A unit that is not loaded makes GetAll fail too: say the cause. */
        if (d->load_state[0] && !streq(d->load_state, "loaded")) {
                problem(reason, status, PROBE_UNKNOWN, "%s is %s: its limits cannot be checked", d->unit,
                        d->load_state);
                return;
        }
        if (d->load_error < 0 || !d->have_limits) {
                problem(reason, status, PROBE_UNKNOWN, "cannot read the limits of %s from systemd: %s", d->unit,
                        d->bus_message[0] ? d->bus_message : strerror(-d->load_error ?: EIO));
                return;
        }

        (void) buf_printf(ok, "%s: ", d->unit);
        for (Resource r = 0; r < _RESOURCE_MAX; r++) {
                char have[64];
                bool below = d->soft[r] < d->expect[r] || d->hard[r] < d->expect[r];

                (void) probe_add_sample(p, &family_limit, limit_value(d->soft[r]), "resource", resources[r].label,
                                        "kind", "soft", NULL);
                (void) probe_add_sample(p, &family_limit, limit_value(d->hard[r]), "resource", resources[r].label,
                                        "kind", "hard", NULL);
                (void) probe_add_sample(p, &family_drift, below, "resource", resources[r].label, NULL);

                dovecot_limit_format(have, sizeof have, d->soft[r], d->hard[r]);
                (void) buf_printf(ok, "%s%s=%s", r > 0 ? ", " : "", resources[r].property, have);
                if (!below)
                        continue;
                (void) buf_printf(&drift, "%s%s=%s, the product requires %u", n_drift > 0 ? ", and " : "",
                                  resources[r].property, have, d->expect[r]);
                n_drift++;
        }
        if (n_drift == 0)
                (void) buf_puts(ok, " as required");
        else
                problem(reason, status, PROBE_WARNING,
                        "configuration drift: %s has %s: add %s to /etc/systemd/system/%s.d/override.conf, then "
                        "daemon-reload and restart %s",
                        d->unit, drift.data, n_drift > 1 ? "them" : "it", d->unit, d->unit);
        buf_done(&drift);
}

static void judge_connections(Probe *p, Buf *reason, ProbeStatus *status, Buf *ok) {
        DovecotProbe *d = probe_get_userdata(p);
        char error[160], line[200];
        DoveadmWho who;
        int r;

        if (d->who_status == -E2BIG) {
                problem(reason, status, PROBE_UNKNOWN, "doveadm who printed more than %u bytes", DOVEADM_WHO_MAX);
                return;
        }
        if (d->who_status != 0) {
                doveadm_first_line(d->who_output, d->who_size, line, sizeof line);
                if (d->who_status < 0)
                        problem(reason, status, PROBE_UNKNOWN, "doveadm who was killed by a signal%s%s",
                                line[0] ? ": " : "", line);
                else
                        problem(reason, status, PROBE_UNKNOWN, "doveadm who failed (exit status %d)%s%s",
                                d->who_status, line[0] ? ": " : "", line);
                return;
        }
        r = doveadm_who_parse(d->who_output, d->who_size, &who, error, sizeof error);
        if (r == -ENOMEM) {
                problem(reason, status, PROBE_UNKNOWN, "out of memory reading doveadm who");
                return;
        }
        if (r < 0) {
                problem(reason, status, PROBE_UNKNOWN, "cannot read what doveadm who printed: %s", error);
                return;
        }

        for (DovecotService s = 0; s < _DOVECOT_SERVICE_MAX; s++)
                (void) probe_add_sample(p, &family_connections, (double) who.connections[s], "service",
                                        dovecot_service_to_string(s), NULL);
        (void) probe_add_sample(p, &family_users, (double) who.users, NULL);

        if (who.total == 0) {
                (void) buf_puts(ok, "; no client connections");
                return;
        }
        (void) buf_printf(ok, "; %" PRIu64 " connection%s of %" PRIu64 " user%s (", who.total,
                          who.total == 1 ? "" : "s", who.users, who.users == 1 ? "" : "s");
        bool first = true;
        for (DovecotService s = 0; s < _DOVECOT_SERVICE_MAX; s++) {
                if (who.connections[s] == 0)
                        continue;
                (void) buf_printf(ok, "%s%s %" PRIu64, first ? "" : ", ", dovecot_service_to_string(s),
                                  who.connections[s]);
                first = false;
        }
        (void) buf_puts(ok, ")");
}

static int dovecot_evaluate(Probe *p) {
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(2048), ok = BUF_INIT(1024);
        int r;

        judge_limits(p, &reason, &status, &ok);
        judge_connections(p, &reason, &status, &ok);

        if (status == PROBE_OK)
                r = probe_finish(p, PROBE_OK, "%s", ok.data ?: "");
        else
                r = probe_finish(p, status, "%s", reason.data ?: "");
        buf_done(&reason);
        buf_done(&ok);
        return r;
}

static int one_done(Probe *p) {
        DovecotProbe *d = probe_get_userdata(p);

        assert(d->n_pending > 0);
        if (--d->n_pending > 0)
                return 0;
        return dovecot_evaluate(p);
}

static void bus_failed(DovecotProbe *d, sd_bus_message *reply, int r) {
        const sd_bus_error *e = reply ? sd_bus_message_get_error(reply) : NULL;

        if (d->load_error < 0)
                return; /* the first failure tells */
        d->load_error = e ? (-sd_bus_error_get_errno(e) ?: -EIO) : r;
        if (e && e->message)
                snprintf(d->bus_message, sizeof d->bus_message, "%s", e->message);
}

static int on_load_state(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Probe *p = userdata;
        DovecotProbe *d = probe_get_userdata(p);
        const char *s;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                bus_failed(d, reply, -EIO);
        else {
                r = sd_bus_message_read(reply, "v", "s", &s);
                if (r < 0)
                        bus_failed(d, NULL, r);
                else
                        snprintf(d->load_state, sizeof d->load_state, "%s", s);
        }
        return one_done(p);
}

static int read_limits(sd_bus_message *reply, DovecotProbe *d) {
        unsigned seen = 0;
        int r;

        r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                const char *name;
                uint64_t *field = NULL;

                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "LimitNOFILE"))
                        field = &d->hard[RESOURCE_NOFILE];
                else if (streq(name, "LimitNOFILESoft"))
                        field = &d->soft[RESOURCE_NOFILE];
                else if (streq(name, "LimitNPROC"))
                        field = &d->hard[RESOURCE_NPROC];
                else if (streq(name, "LimitNPROCSoft"))
                        field = &d->soft[RESOURCE_NPROC];
                if (field) {
                        r = sd_bus_message_read(reply, "v", "t", field);
                        seen++;
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        return seen == 4 ? 0 : -ENODATA;
}

static int on_limits(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Probe *p = userdata;
        DovecotProbe *d = probe_get_userdata(p);
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                bus_failed(d, reply, -EIO);
        else {
                r = read_limits(reply, d);
                if (r < 0)
                        bus_failed(d, NULL, r);
                else
                        d->have_limits = true;
        }
        return one_done(p);
}

static void on_child_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        Probe *p = userdata;
        DovecotProbe *d = probe_get_userdata(p);

        d->completed = true;
        d->hung_since = 0;
        d->who_status = status;
        if (status != -E2BIG && size > 0) {
                d->who_output = malloc(size);
                if (d->who_output) {
                        memcpy(d->who_output, output, size);
                        d->who_size = size;
                }
        }
        /* Done with the handle (and with `output`, which it owns). */
        d->child = child_abandon(c);
        (void) one_done(p);
}

static int dovecot_start(Probe *p) {
        DovecotProbe *d = probe_get_userdata(p);
        sd_bus *bus;
        int r;

        if (child_abandoned_alive(d->description) > 0) {
                char since[64] = "?";
                time_t t = (time_t) (d->hung_since / USEC_PER_SEC);
                struct tm tm;
                if (d->hung_since > 0 && localtime_r(&t, &tm))
                        strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm);
                return probe_finish(p, PROBE_CRITICAL,
                                    "previous doveadm who still hung since %s: is Dovecot's anvil process stuck?",
                                    since);
        }

        d->load_state[0] = 0;
        d->load_error = 0;
        d->bus_message[0] = 0;
        d->have_limits = false;
        d->completed = false;
        d->who_status = 0;

        r = probe_get_bus(p, &bus);
        if (r < 0) {
                char why[BUS_SYSTEM_ERROR_MAX];
                return probe_finish(p, PROBE_UNKNOWN, "%s", bus_system_error(r, why, sizeof why));
        }

        probe_set_phase(p, "waiting for systemd and doveadm who");
        r = sd_bus_call_method_async(bus, &d->call_load_state, SYSTEMD_DESTINATION, d->unit_path,
                                     "org.freedesktop.DBus.Properties", "Get", on_load_state, p, "ss",
                                     UNIT_INTERFACE, "LoadState");
        if (r < 0)
                return probe_finish_errno(p, r, "cannot ask systemd");
        d->n_pending++;
        r = sd_bus_call_method_async(bus, &d->call_limits, SYSTEMD_DESTINATION, d->unit_path,
                                     "org.freedesktop.DBus.Properties", "GetAll", on_limits, p, "s",
                                     SERVICE_INTERFACE);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot ask systemd");
        d->n_pending++;
        r = child_spawn(probe_get_event(p), d->description, doveadm_child, NULL, DOVEADM_WHO_MAX, on_child_done, p,
                        &d->child);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot start doveadm");
        d->n_pending++;
        return 0;
}

const ProbeType probe_type_dovecot = {
        .name = "dovecot",
        .object_size = sizeof(DovecotProbe),
        .config_items = dovecot_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 1,
        .verify = dovecot_verify,
        .start = dovecot_start,
        .stop = dovecot_stop,
        .done = dovecot_done,
};
