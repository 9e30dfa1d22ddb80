/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "agent-check.h"
#include "cluster.h"
#include "control.h"
#include "exporter/exporter.h"
#include "exporter/web-config.h"
#include "lib/curl-glue.h"
#include "lib/log.h"
#include "manager.h"
#include "node.h"

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, exiting.", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(m->event, 0);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) manager_reload(m);
        return 0;
}

/* Pings come from the event loop itself, so a blocked loop stops them and
 * the service manager restarts us: the watchdog proves invariant 1. */
static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        (void) sd_notify(false, "WATCHDOG=1");
        r = sd_event_source_set_time_relative(s, m->watchdog_usec / 2);
        if (r < 0)
                return log_error_errno(r, "Failed to rearm the watchdog timer: %m");
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

int manager_new(const ManagerOptions *options, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t mask;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return log_oom();
        m->options = *options;
        m->start_realtime = now(CLOCK_REALTIME);

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");

        /* sd-event wants the signals it watches blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD); /* children of probes are reaped by sd-event */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_reload_signal, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        if (sd_watchdog_enabled(false, &m->watchdog_usec) > 0) {
                r = sd_event_add_time_relative(m->event, &m->watchdog, CLOCK_MONOTONIC, m->watchdog_usec / 2, 0,
                                               on_watchdog, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the watchdog: %m");
        }

        *ret = TAKE_PTR(m);
        return 0;
}

int manager_get_bus(Manager *m, sd_bus **ret) {
        int r;

        if (!m->bus) {
                _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;

                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_attach_event(bus, m->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0)
                        return r;
                /* systemd sends unit and job signals (PropertiesChanged, JobRemoved)
                 * only to clients that subscribed. No slot and no callback: no
                 * reply is expected. (A slot with a NULL callback would make
                 * sd-bus call NULL when the reply comes.) */
                r = sd_bus_call_method_async(bus, NULL, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                             "org.freedesktop.systemd1.Manager", "Subscribe", NULL, NULL, "");
                if (r < 0)
                        return r;
                m->bus = TAKE_PTR(bus);
        }
        *ret = m->bus;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        m->agent_check = agent_check_free(m->agent_check);
        m->node = node_free(m->node);
        m->cluster = cluster_free(m->cluster);
        m->control = control_server_free(m->control);
        m->exporter = exporter_free(m->exporter);
        m->web_config = web_config_free(m->web_config);
        m->config = config_free(m->config);
        m->curl = curl_glue_free(m->curl);
        m->watchdog = sd_event_source_disable_unref(m->watchdog);
        m->bus = sd_bus_flush_close_unref(m->bus);
        m->event = sd_event_unref(m->event);
        free(m->last_status);
        free(m);
        return NULL;
}

const char *manager_node_name(const Manager *m) {
        return m->config && m->config->node ? m->config->node : "";
}

const char *manager_web_listen_address(const Manager *m) {
        if (m->options.web_listen_address)
                return m->options.web_listen_address;
        return m->config && m->config->web_listen_address ? m->config->web_listen_address
                                                           : CONFIG_DEFAULT_WEB_LISTEN_ADDRESS;
}

const char *manager_control_socket(const Manager *m) {
        if (m->options.control_socket)
                return m->options.control_socket;
        return m->config && m->config->control_socket ? m->config->control_socket
                                                       : CONFIG_DEFAULT_CONTROL_SOCKET;
}

const char *manager_web_config_file(const Manager *m) {
        if (m->options.web_config_file)
                return m->options.web_config_file;
        return m->config ? m->config->web_config_file : NULL;
}

/* Loads the web config file in force, if any (*ret NULL when none); logs
 * its errors, never its secrets. */
static int manager_load_web_config(Manager *m, WebConfig **ret) {
        _cleanup_strv_free_ char **errors = NULL;
        const char *path = manager_web_config_file(m);
        int r;

        *ret = NULL;
        if (!path)
                return 0;
        r = web_config_load_file(path, ret, &errors);
        if (r < 0) {
                for (char **e = errors; e && *e; e++)
                        log_error("%s", *e);
                if (r == -ENOMEM)
                        return log_oom();
                return log_internal(LOG_ERR, r, &(LogFields) { .message_id = MESSAGE_ID_CONFIG_REJECTED },
                                    "Web configuration %s is invalid (%zu errors).", path, strv_length(errors));
        }
        return 0;
}

/* One line for `systemctl status`: how many probes are in which state. */
static void manager_update_status(Manager *m) {
        unsigned counts[_PROBE_STATUS_MAX] = {};
        _cleanup_free_ char *line = NULL;
        size_t n;
        Probe **probes = manager_probes(m, &n);

        for (size_t i = 0; i < n; i++)
                counts[probes[i]->status]++;
        if (asprintf(&line, "%zu probes: %u ok, %u warning, %u critical, %u unknown", n, counts[PROBE_OK],
                     counts[PROBE_WARNING], counts[PROBE_CRITICAL], counts[PROBE_UNKNOWN]) < 0)
                return;
        if (m->last_status && streq(m->last_status, line))
                return;
        (void) sd_notifyf(false, "STATUS=%s", line);
        free(m->last_status);
        m->last_status = TAKE_PTR(line);
}

void manager_probe_status_changed(Manager *m, Probe *p, ProbeStatus old) {
        int level = p->status == PROBE_OK ? LOG_NOTICE : p->status == PROBE_WARNING ? LOG_WARNING : LOG_ERR;

        if (m->observe_only)
                return;
        log_internal(level, 0,
                     &(LogFields) {
                             .probe = p->name,
                             .component = p->component,
                             .message_id = MESSAGE_ID_PROBE_STATUS_CHANGED,
                     },
                     "Probe '%s' is %s (was %s): %s", p->name, probe_status_to_string(p->status),
                     probe_status_to_string(old), p->last.reason ?: "");
        manager_update_status(m);
        /* Every probe's failure, not only the mail group's: peers use it to
         * tell a fault of their own from one of a shared dependency
         * (cluster_peers_failing()), and member failures feed their
         * withdrawal guard. */
        if (p->status == PROBE_CRITICAL || old == PROBE_CRITICAL)
                cluster_report_probe(m->cluster, p->name, p->status == PROBE_CRITICAL, p->last.reason);
        node_probe_status_changed(m->node, p, old);
}

static int manager_attach_probes(Manager *m, Config *old) {
        int r;

        for (size_t i = 0; i < m->config->n_probes; i++) {
                Probe *p = m->config->probes[i];

                /* Keep what we know across a reload: results and hysteresis
                 * counters of the probe with the same name and type. */
                for (size_t j = 0; old && j < old->n_probes; j++)
                        if (streq(old->probes[j]->name, p->name) && old->probes[j]->type == p->type)
                                probe_adopt_state(p, old->probes[j]);

                r = probe_attach(p, m);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A probe the reload removed (or gave another type, so that it starts over
 * unknown) never reports that it recovered: a failure it left in the
 * cluster's registry is deleted here, not even counted within the shared
 * failure window. Kept,
 * peers would count this node as sharing the failure (their withdrawal
 * guard, cluster_peers_failing()) until the agent restarts. */
static void manager_clear_failures_of_old_probes(Manager *m, Config *old) {
        if (!m->cluster)
                return;
        for (size_t i = 0; i < old->n_probes; i++) {
                Probe *o = old->probes[i], *p = NULL;

                if (o->status != PROBE_CRITICAL)
                        continue;
                for (size_t j = 0; j < m->config->n_probes && !p; j++)
                        if (streq(m->config->probes[j]->name, o->name))
                                p = m->config->probes[j];
                if (p && p->status == PROBE_CRITICAL)
                        continue; /* the same probe, still failing */

                log_internal(LOG_NOTICE, 0, &(LogFields) { .probe = o->name, .component = o->component },
                             "Probe '%s' was critical and is %s: clearing its failure in the cluster registry.",
                             o->name, p ? "now of another type" : "no longer configured");
                cluster_forget_probe(m->cluster, o->name);
        }
}

/* (Re)creates the listeners whose address changed. A new listener is set up
 * before the old one is dropped, so a failure keeps the old one. With
 * *new_web_config (a new web config, or NULL to serve plain HTTP from now on)
 * the exporter switches to it and takes it over; on failure it stays with the
 * old one and *new_web_config is left to the caller. */
static int manager_setup_listeners(Manager *m, const char *old_web, const char *old_control,
                                   WebConfig **new_web_config) {
        int r;

        if (!m->exporter || !old_web || !streq(old_web, manager_web_listen_address(m))) {
                _cleanup_(exporter_freep) Exporter *e = NULL;
                const WebConfig *w = new_web_config ? *new_web_config : m->web_config;

                r = exporter_new(m, manager_web_listen_address(m), w, &e);
                if (r < 0)
                        return r;
                exporter_free(m->exporter);
                m->exporter = TAKE_PTR(e);
                if (new_web_config) {
                        web_config_free(m->web_config);
                        m->web_config = TAKE_PTR(*new_web_config);
                }
        } else if (new_web_config) {
                r = exporter_set_web_config(m->exporter, *new_web_config);
                if (r < 0)
                        return r;
                web_config_free(m->web_config);
                m->web_config = TAKE_PTR(*new_web_config);
        }
        if (!m->control || !old_control || !streq(old_control, manager_control_socket(m))) {
                _cleanup_(control_server_freep) ControlServer *s = NULL;

                r = control_server_new(m, manager_control_socket(m), &s);
                if (r < 0)
                        return r;
                control_server_free(m->control);
                m->control = TAKE_PTR(s);
        }
        return 0;
}

static const char *manager_agent_check_reply(void *userdata, char *buf, size_t len) {
        Manager *m = userdata;

        if (m->node)
                return node_state_agent_check_reply(node_get_state(m->node), buf, len);
        /* Not healing: no veto, HAProxy's own checks decide. */
        snprintf(buf, len, "up ready\n");
        return buf;
}

/* The agent-check port on the healing section's address, or on the default
 * one without healing. Moved only when the address changes. Without healing
 * a port that cannot be had is not an error: nothing may be asking. */
static int manager_setup_agent_check(Manager *m) {
        const char *address = m->config->healing.enabled ? m->config->healing.agent_check_address
                                                         : HEALING_DEFAULT_AGENT_CHECK_ADDRESS;
        int r;

        const char *current = agent_check_address(m->agent_check);

        if (m->observe_only || (current && streq(current, address)))
                return 0;
        m->agent_check = agent_check_free(m->agent_check);
        r = agent_check_new(m->event, address, manager_agent_check_reply, m, &m->agent_check);
        if (r < 0 && !m->config->healing.enabled) {
                log_notice("Not answering HAProxy's agent-check on %s: healing is not configured.", address);
                return 0;
        }
        return r;
}

/* Healing follows the config: created when a section appears, kept (with
 * its state) across reloads, dropped when the section goes away. */
static int manager_setup_node(Manager *m) {
        int r;

        if (!m->config->healing.enabled) {
                if (m->node)
                        log_notice("Healing is no longer configured: only watching from now on; HAProxy's "
                                   "agent-check is answered \"up ready\".");
                m->node = node_free(m->node);
        } else if (m->node)
                node_reconfigure(m->node, &m->config->healing);
        else {
                r = node_new(m, &m->config->healing, &m->node);
                if (r < 0)
                        return r;
        }
        return manager_setup_agent_check(m);
}

static void on_fence(Cluster *c, bool fenced, const char *reason, void *userdata) {
        Manager *m = userdata;

        if (fenced && !m->node)
                log_warning("Fenced, but healing is not configured: the mail group is not the agent's to stop.");
        node_self_fence(m->node, fenced, reason);
}

/* The cluster follows the config like the node: kept with its connection
 * and view across reloads, dropped when the section goes away. */
static int manager_setup_cluster(Manager *m) {
        int r;

        if (!m->config->cluster.enabled) {
                if (m->cluster)
                        log_notice("The cluster is no longer configured: leaving the registry alone from now on.");
                m->cluster = cluster_free(m->cluster);
                return 0;
        }
        if (m->cluster)
                return cluster_reconfigure(m->cluster, &m->config->cluster);

        r = cluster_new(m->event, &m->config->cluster, manager_node_name(m), &m->cluster);
        if (r < 0)
                return r;
        cluster_set_fence_callback(m->cluster, on_fence, m);
        if (m->node)
                cluster_publish(m->cluster, node_get_state(m->node)->id, node_get_state(m->node)->reason);
        return 0;
}

int manager_start(Manager *m, Config *config) {
        int r;

        m->config = config;
        r = manager_load_web_config(m, &m->web_config);
        if (r < 0)
                return r;
        /* Before the loop runs: a reload only reuses what is found here. */
        m->have_control_group = control_socket_group_lookup(&m->control_group) > 0;
        r = manager_setup_listeners(m, NULL, NULL, NULL);
        if (r < 0)
                return r;
        r = manager_attach_probes(m, NULL);
        if (r < 0)
                return r;
        r = manager_setup_node(m);
        if (r < 0)
                return r;
        r = manager_setup_cluster(m);
        if (r < 0)
                return r;
        manager_update_status(m);
        (void) sd_notify(false, "READY=1");
        log_info("Started with %zu probes on node '%s', metrics on %s.", config->n_probes, manager_node_name(m),
                 manager_web_listen_address(m));
        return 0;
}

int manager_reload(Manager *m) {
        _cleanup_(web_config_freep) WebConfig *web_config = NULL;
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_free_ char *old_web = NULL, *old_control = NULL;
        Config *old;
        int r;

        (void) sd_notify(false, "RELOADING=1");

        r = config_load_file(m->options.config_path, &config, &errors);
        if (r < 0) {
                for (char **e = errors; e && *e; e++)
                        log_error("%s", *e);
                log_internal(LOG_ERR, r, &(LogFields) { .message_id = MESSAGE_ID_CONFIG_REJECTED },
                             "New configuration %s rejected (%zu errors), keeping the running one.",
                             m->options.config_path, strv_length(errors));
                (void) sd_notify(false, "READY=1");
                return r;
        }

        old_web = strdup(manager_web_listen_address(m));
        old_control = strdup(manager_control_socket(m));
        if (!old_web || !old_control)
                return log_oom();

        /* Stop the old probes first: a probe type may hold exclusive resources
         * (a bus match, a child) that the new one sets up again. */
        old = m->config;
        for (size_t i = 0; i < old->n_probes; i++)
                probe_detach(old->probes[i]);

        m->config = TAKE_PTR(config);
        r = manager_attach_probes(m, old);
        if (r >= 0)
                r = manager_setup_node(m);
        if (r >= 0)
                r = manager_setup_cluster(m);
        manager_clear_failures_of_old_probes(m, old);
        config_free(old);
        if (r < 0)
                return r;

        /* The web config is read again too (renewed certificates, changed
         * users); a broken one keeps the one in force. */
        bool web_ok = manager_load_web_config(m, &web_config) >= 0;
        if (!web_ok)
                log_warning("Keeping the web configuration in force.");

        r = manager_setup_listeners(m, old_web, old_control, web_ok ? &web_config : NULL);
        if (r < 0)
                log_warning_errno(r, "Keeping the previous listeners and web configuration, the new ones failed: %m");

        manager_update_status(m);
        (void) sd_notify(false, "READY=1");
        log_internal(LOG_NOTICE, 0, &(LogFields) { .message_id = MESSAGE_ID_CONFIG_RELOADED },
                     "Configuration %s reloaded: %zu probes.", m->options.config_path, m->config->n_probes);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}
