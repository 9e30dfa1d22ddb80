/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The agent's YAML configuration.
 *
 * Keys are parsed through ConfigItem tables (key, parser, offset, range), the
 * same for the top level, the web section and each probe type's own keys.
 * Every error names file:line:column and the key, and loading goes on after an
 * error so that one run of --check-config lists all of them. Unknown keys,
 * wrong types, out-of-range numbers, and duplicate probe names are errors. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <yaml.h>

#include "lib/macro.h"
#include "lib/time-util.h"
#include "probe.h"

#define CONFIG_DEFAULT_PATH "/etc/rupost/agent.yaml"
#define CONFIG_DEFAULT_CONTROL_SOCKET "/run/rupost-agent/control.sock"
#define CONFIG_DEFAULT_WEB_LISTEN_ADDRESS ":9469"
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)
#define CONFIG_MAX_PROBES 1024

struct ConfigContext {
        const char *filename;
        yaml_document_t *document;
        char **errors; /* "file:line:column: key: what is wrong", NULL-terminated */
        size_t n_errors;
        /* While a probe's keys are parsed and its type's verify() runs: the
         * probe's mapping and key path ("probes[2]"), so that
         * config_error(c, NULL, "address", ...) can point at the probe's keys. */
        yaml_node_t *probe_mapping;
        const char *probe_prefix;
};

typedef int (*ConfigParser)(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                            void *data);

/* Tables end with an entry whose key is NULL. */
struct ConfigItem {
        const char *key;
        ConfigParser parse;
        size_t offset;
        /* Inclusive bounds for numbers and durations (usec); both 0 means unbounded. */
        uint64_t min;
        uint64_t max;
        bool required;
};

/* Parsers for ConfigItem tables; `data` points at the field: char * for
 * strings and addresses, unsigned for uint, usec_t for durations, bool, and
 * char ** for strv (item->max, when set, bounds the number of entries). */
int config_parse_string(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);
int config_parse_uint(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);
int config_parse_duration(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);
int config_parse_bool(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);
/* A sequence of strings, stored as a NULL-terminated char **. */
int config_parse_strv(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);
/* IPv4:port, [IPv6]:port or :port (sockaddr_parse()); stored as a string. */
int config_parse_address(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data);

/* Records an error at the node's position; returns -EINVAL (-ENOMEM if it
 * could not be recorded). With node NULL inside a probe (from verify()), `key`
 * is one of the probe's keys ("address"): the error is reported at that key's
 * value, or at the probe if the key is absent, as "probes[2].address". */
int config_error(ConfigContext *c, yaml_node_t *node, const char *key, const char *fmt, ...) _printf_(4, 5);

/* For checks that go on after an error, so that one run lists them all
 * (verify() of a probe type): *ret keeps -ENOMEM over anything, else the
 * first error. Returns r. */
static inline int config_gather(int *ret, int r) {
        if (r < 0 && (*ret >= 0 || r == -ENOMEM))
                *ret = r;
        return r;
}

/* Records an error without a position (a file's contents as a whole). */
int config_add_error(ConfigContext *c, const char *key, const char *fmt, ...) _printf_(3, 4);

/* For parsers of mappings whose keys are data (user names): the node of an
 * id in the document, and a scalar's text or an error saying what was found
 * instead of `expected`. */
yaml_node_t *config_node(ConfigContext *c, int id);
int config_node_scalar(ConfigContext *c, const char *key, yaml_node_t *node, const char *expected,
                       const char **ret);
/* A printable, bounded copy of a user-supplied string for messages. */
#define CONFIG_QUOTE_MAX 72
const char *config_quote(char buf[static CONFIG_QUOTE_MAX], const char *s);

/* A scalar that names one of names[0..n): returns its index. A name not in
 * the table is -ENOENT with the text in *ret_value and no error recorded, so
 * the caller can explain a value it knows but refuses, then fall back to
 * config_error_not_one_of(). */
int config_node_lookup(ConfigContext *c, const char *key, yaml_node_t *node, const char *expected,
                       const char *const *names, size_t n, const char **ret_value);
/* "'value' is not one of A, B, C", at node. */
int config_error_not_one_of(ConfigContext *c, const char *key, yaml_node_t *node, const char *value,
                            const char *const *names, size_t n);

/* Parses a mapping node with a table; unknown keys are errors. `prefix` is
 * used in key names of messages ("probes[2].interval"). */
int config_parse_table(ConfigContext *c, const char *prefix, yaml_node_t *mapping, const ConfigItem *table,
                       void *base);

/* The `healing:` section; present means the agent heals, absent means it
 * only watches. */
typedef struct HealingConfig {
        bool enabled;
        char **units;          /* the mail group, in start order */
        char **member_probes;  /* a member turning critical withdraws the node */
        usec_t stop_timeout;   /* per unit, then SIGKILL */
        usec_t start_timeout;  /* per unit */
        usec_t backoff_initial;
        usec_t backoff_max;
        usec_t stable_period;  /* in service this long: past attempts are forgotten */
        usec_t round_interval; /* how often a recovering node checks its members */
        unsigned healthy_rounds;
        unsigned max_attempts;
        char *agent_check_address; /* HAProxy agent-check port */
        char *state_file;          /* maintenance survives restarts here */
} HealingConfig;

#define HEALING_DEFAULT_AGENT_CHECK_ADDRESS ":9470"
/* Between self_fence_after and lease_ttl a fenced node kills its mail group
 * (D-Bus round trips, not the units' stop times); this is the least margin. */
#define CLUSTER_FENCE_MARGIN (2 * USEC_PER_SEC)
#define HEALING_DEFAULT_STATE_FILE "/var/lib/rupost-agent/state"

/* The `cluster:` section: the node registry, leases and guards in the shared
 * PostgreSQL (cluster.h). Absent: the node heals on its own judgement only.
 *
 * Timing rule, checked when loading: renew_interval * 2 < self_fence_after <
 * lease_ttl. A node that could not renew for self_fence_after stops its own
 * mail group, before its lease (lease_ttl, on the DB server's clock) expires,
 * so a peer that sees the lease expired can trust that the group is down. */
typedef struct ClusterConfig {
        bool enabled;
        char *conninfo;       /* libpq connection string, numeric hosts only */
        char *password_file;
        char *password;       /* read from password_file when loading */
        usec_t lease_ttl;
        usec_t renew_interval;
        usec_t self_fence_after;
        double max_withdrawn_share;   /* 0..1 */
        double shared_failure_share;  /* 0..1 */
        usec_t shared_failure_window;
        char *peer_address;   /* host:port where peers ask whether this node renews: listened on, published */
} ClusterConfig;


typedef struct Config {
        char *path;
        char *node;
        char *web_listen_address;
        char *web_config_file; /* web.config_file, NULL when not set */
        char *control_socket;
        Probe **probes;
        size_t n_probes;
        HealingConfig healing;
        ClusterConfig cluster;
} Config;

Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

/* Parses one YAML document from memory with the limits and error style of
 * the agent's configuration, for other files of ours (the web config):
 * `parse` gets the root mapping, or NULL when the document is empty. Returns
 * -EINVAL with the error lines in ret_errors when any was recorded. */
typedef int (*ConfigDocumentParser)(ConfigContext *c, yaml_node_t *root, void *userdata);
int config_parse_yaml(const char *filename, const char *data, size_t size, ConfigDocumentParser parse,
                      void *userdata, char ***ret_errors);
/* Reads a file of at most CONFIG_MAX_FILE_SIZE (+1 byte, so that the parser
 * sees it is too large); errors as config_load_file(). */
int config_read_file(const char *path, char **ret_data, size_t *ret_size, char ***ret_errors);

/* Loads and validates. On failure returns -EINVAL and, when ret_errors is
 * not NULL, the list of error lines (caller frees with strv_free). Errors
 * opening the file are returned as their errno and also listed. */
int config_load_file(const char *path, Config **ret, char ***ret_errors);
/* The same from memory, for tests and the fuzzer; `filename` is for messages. */
int config_load_string(const char *filename, const char *data, size_t size, Config **ret, char ***ret_errors);
