/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The manager owns the event loop, the loaded configuration and its probes,
 * the exporter and the control socket. Everything that is not a command-line
 * argument hangs off it. */

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "probe.h"

typedef struct Exporter Exporter;
typedef struct ControlServer ControlServer;
typedef struct CurlGlue CurlGlue;
typedef struct Node Node;
typedef struct WebConfig WebConfig;

typedef struct ManagerOptions {
        const char *config_path;
        const char *web_listen_address; /* overrides the config when set */
        const char *control_socket;     /* overrides the config when set */
        const char *web_config_file;    /* overrides the config's web.config_file when set */
} ManagerOptions;

struct Manager {
        sd_event *event;
        sd_bus *bus;
        ManagerOptions options;
        Config *config;
        usec_t start_realtime;

        Exporter *exporter;
        WebConfig *web_config; /* what the exporter serves with; NULL: plain HTTP */
        ControlServer *control;
        /* The control socket's group (control_socket_group_lookup()), looked
         * up once by manager_start(): a reload runs on the loop and may move
         * the socket, and a group lookup may block. */
        gid_t control_group;
        bool have_control_group;
        CurlGlue *curl; /* libcurl multi of the HTTP probes, created on first use */
        Node *node; /* the healing policy; NULL when the config has no healing section */
        struct AgentCheck *agent_check; /* HAProxy's agent-check port, answered for the node or "up ready" */
        struct Cluster *cluster; /* cluster state in the shared DB; NULL without a cluster section */

        /* A one-off run of the probes by rupost-health (oneshot.h): results
         * stay in the probes; status changes are not logged, not sent to the
         * service manager, and reach neither healing nor the cluster. */
        bool observe_only;

        sd_event_source *watchdog;
        usec_t watchdog_usec;
        char *last_status; /* the STATUS= line last sent, to send only changes */
};

int manager_new(const ManagerOptions *options, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Takes ownership of the config: sets its probes up and starts scheduling. */
int manager_start(Manager *m, Config *config);
/* Reloads the config file; a broken file keeps the old config running. */
int manager_reload(Manager *m);
int manager_run(Manager *m);

const char *manager_node_name(const Manager *m);
const char *manager_web_listen_address(const Manager *m);
const char *manager_control_socket(const Manager *m);
/* The web config file in force (flag, else config), or NULL. */
const char *manager_web_config_file(const Manager *m);
static inline Probe **manager_probes(const Manager *m, size_t *ret_n) {
        *ret_n = m->config ? m->config->n_probes : 0;
        return m->config ? m->config->probes : NULL;
}

/* The system bus, connected on first use and shared by all users. */
int manager_get_bus(Manager *m, sd_bus **ret);

/* Called by the probe core whenever a probe's reported status changed. */
void manager_probe_status_changed(Manager *m, Probe *p, ProbeStatus old);
