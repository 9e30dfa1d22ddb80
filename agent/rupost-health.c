/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rupost-health: asks the local rupost-agent over its control socket how the
 * node is doing, prints it for a human or as JSON, and exits with a
 * Nagios-compatible code so that monitoring systems can run it as a check. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <ctype.h>
#include <json-c/json.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "build-config.h"
#include "config.h"
#include "control.h"
#include "control.pb-c.h"
#include "lib/control-proto.h"
#include "lib/time-util.h"
#include "node-state.h"
#include "oneshot.h"
#include "probe.h"

/* Nagios plugin exit codes (Nagios Plugin Development Guidelines). */
enum {
        EXIT_NAGIOS_OK = 0,
        EXIT_NAGIOS_WARNING = 1,
        EXIT_NAGIOS_CRITICAL = 2,
        EXIT_NAGIOS_UNKNOWN = 3,
};

#define DEFAULT_TIMEOUT_USEC (5U * USEC_PER_SEC)

static const char *arg_socket = CONFIG_DEFAULT_CONTROL_SOCKET;
static bool arg_socket_set = false;
static const char *arg_config = CONFIG_DEFAULT_PATH;
static bool arg_fallback = true;
static bool arg_json = false;
static bool arg_verbose = false;
static usec_t arg_timeout = DEFAULT_TIMEOUT_USEC;
static const char *arg_timeout_string = "5s";
static enum {
        VERB_STATUS,
        VERB_CLUSTER,
        VERB_SKEW,
        VERB_MAINTENANCE,
} arg_verb = VERB_STATUS;
static bool arg_maintenance_on = false;
static const char *arg_reason = NULL;

static inline void json_object_putp(struct json_object **o) {
        json_object_put(*o);
}

typedef Rupost__Control__Response Response;
typedef Rupost__Control__ProbeState ProbeState;
typedef Rupost__Control__NodeState NodeStateMessage;
typedef Rupost__Control__ClusterNode ClusterNode;
typedef Rupost__Control__Sample SampleMessage;

/* The family the time, postgres, memcached and nfs probes report clock
 * offsets in, one sample per source. */
#define TIME_OFFSET_FAMILY "rupost_time_offset_seconds"
/* The product's rule: clocks of the nodes and the services they use agree
 * within 1 s. Half of it is the warning, while there is time to act. */
#define SKEW_WARNING_SECONDS 0.5
#define SKEW_CRITICAL_SECONDS 1.0

static ProbeStatus status_parse(const char *s) {
        ProbeStatus st = s ? probe_status_from_string(s) : _PROBE_STATUS_INVALID;
        /* A status this build does not know (a newer agent) counts as unknown. */
        return st < 0 ? PROBE_UNKNOWN : st;
}

static int status_exit_code(ProbeStatus s) {
        switch (s) {
        case PROBE_OK:
                return EXIT_NAGIOS_OK;
        case PROBE_WARNING:
                return EXIT_NAGIOS_WARNING;
        case PROBE_CRITICAL:
                return EXIT_NAGIOS_CRITICAL;
        default:
                return EXIT_NAGIOS_UNKNOWN;
        }
}

static bool have_healing(const Response *resp) {
        return resp->node_state && resp->node_state->healing_enabled;
}

/* What the node's healing state says about it: out of service by its own
 * failure is critical, out by choice or on its way back is a warning. */
static ProbeStatus node_status(const Response *resp) {
        if (!have_healing(resp))
                return PROBE_OK;
        switch (node_state_from_string(resp->node_state->state)) {
        case NODE_STARTING:
        case NODE_IN_SERVICE:
                return PROBE_OK;
        case NODE_MAINTENANCE:
        case NODE_RECOVERING:
                return PROBE_WARNING;
        case NODE_WITHDRAWN:
        case NODE_FAILED:
        case NODE_FENCED:
                return PROBE_CRITICAL;
        default:
                return PROBE_UNKNOWN; /* a state this build does not know */
        }
}

/* The node's status is its worst probe's, or worse when its healing state
 * says so; a node with no probes proves nothing. */
static ProbeStatus overall_status(const Response *resp) {
        ProbeStatus worst = resp->n_probes == 0 ? PROBE_UNKNOWN : PROBE_OK;

        for (size_t i = 0; i < resp->n_probes; i++)
                worst = probe_status_worst(worst, status_parse(resp->probes[i]->status));
        return probe_status_worst(worst, node_status(resp));
}

/* Results of a one-off run are at least a warning: they may all be ok, but
 * the agent being down means nothing heals the node, no metrics are
 * scraped and the cluster sees its lease expire. A monitoring system must
 * not read that as healthy, nor as "the check failed" (unknown), since the
 * probes did run and their worst finding still counts in full. */
static ProbeStatus with_fallback_floor(ProbeStatus s, const char *fallback) {
        /* Not a combination of statuses: an unknown becomes a warning too. */
        if (!fallback || s == PROBE_CRITICAL)
                return s;
        return PROBE_WARNING;
}

static usec_t deadline_remaining(usec_t deadline) {
        usec_t n = now(CLOCK_MONOTONIC);
        return n >= deadline ? 0 : deadline - n;
}

/* Waits for fd until the deadline; -ETIMEDOUT when it passed. */
static int wait_fd(int fd, short events, usec_t deadline) {
        for (;;) {
                usec_t left = deadline_remaining(deadline);
                struct pollfd pfd = { .fd = fd, .events = events };
                int k;

                if (left == 0)
                        return -ETIMEDOUT;
                k = poll(&pfd, 1, (int) MIN((left + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) INT32_MAX));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k > 0)
                        return 0;
        }
}

static int connect_socket(const char *path, usec_t deadline, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        usec_t left = deadline_remaining(deadline);
        struct timeval tv = {
                .tv_sec = (time_t) (left / USEC_PER_SEC),
                .tv_usec = (suseconds_t) (left % USEC_PER_SEC),
        };
        size_t l = strlen(path);

        if (l >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, l + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connect only waits when the listener's backlog is
         * full, and then for as long as the send timeout allows; there is no
         * event to poll for instead. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) &sa,
                    (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1)) < 0)
                return errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Sends one request and returns the agent's response. Does not log: main()
 * turns the error into one sentence for the operator. */
static int ask_agent(const char *path, usec_t timeout, const Rupost__Control__Request *req, ProtobufCMessage **ret) {
        _cleanup_(control_message_freep) ProtobufCMessage *msg = NULL;
        _cleanup_(control_writer_done) ControlWriter w = {};
        _cleanup_(control_reader_done) ControlReader rd = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        _cleanup_close_ int fd = -EBADF;
        usec_t deadline = now(CLOCK_MONOTONIC) + timeout;
        uint8_t *data;
        size_t size;
        int r;

        r = control_frame_pack(&req->base, CONTROL_MAX_MESSAGE, &data, &size);
        if (r < 0)
                return r;
        control_writer_set(&w, data, size);

        r = connect_socket(path, deadline, &fd);
        if (r < 0)
                return r;

        while ((r = control_writer_write_fd(&w, fd)) == -EAGAIN) {
                r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        while ((r = control_reader_read_fd(&rd, fd)) == -EAGAIN) {
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        r = control_reader_unpack(&rd, &rupost__control__response__descriptor, &msg);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(msg);
        return 0;
}

/* The one sentence an operator reads when the agent could not be asked. */
static void format_fetch_error(int r, const char *path, char *buf, size_t len) {
        switch (-r) {
        case ENOENT:
                snprintf(buf, len, "the agent is not running (no control socket at %s)", path);
                break;
        case ECONNREFUSED:
                snprintf(buf, len, "the agent is not running (nothing listens on %s)", path);
                break;
        case ENOTSOCK:
                snprintf(buf, len, "%s is not a socket: is --control-socket right?", path);
                break;
        case EACCES:
        case EPERM:
                snprintf(buf, len,
                         "permission denied on %s: run as root, or join the group '%s' "
                         "(adduser $USER %s) and log in again",
                         path, CONTROL_SOCKET_GROUP, CONTROL_SOCKET_GROUP);
                break;
        case ETIMEDOUT:
                snprintf(buf, len, "the agent did not answer on %s within %s (see --timeout)", path,
                         arg_timeout_string);
                break;
        case ENAMETOOLONG:
                snprintf(buf, len, "control socket path %s is too long", path);
                break;
        case EPIPE:
        case ECONNRESET:
                snprintf(buf, len, "the agent closed the connection on %s before answering", path);
                break;
        case EMSGSIZE:
                snprintf(buf, len, "the agent's answer on %s is larger than %u bytes", path, CONTROL_MAX_MESSAGE);
                break;
        case EBADMSG:
                snprintf(buf, len, "the agent's answer on %s is not a valid response (version mismatch?)", path);
                break;
        default:
                snprintf(buf, len, "failed to ask the agent on %s: %s", path, strerror(-r));
        }
}

/* "45s", "3m5s", "2h3m", "3d4h": two units are enough to read at a glance. */
static char *format_age(char *buf, size_t len, double seconds) {
        uint64_t s = seconds > 0 ? (uint64_t) seconds : 0;

        if (s < 60)
                snprintf(buf, len, "%" PRIu64 "s", s);
        else if (s < 3600)
                snprintf(buf, len, "%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                snprintf(buf, len, "%" PRIu64 "h%" PRIu64 "m", s / 3600, s % 3600 / 60);
        else
                snprintf(buf, len, "%" PRIu64 "d%" PRIu64 "h", s / 86400, s % 86400 / 3600);
        return buf;
}

/* "12ms", "1.5s", "<1ms" */
static char *format_run_duration(char *buf, size_t len, double seconds) {
        if (seconds < 0.001)
                snprintf(buf, len, "<1ms");
        else if (seconds < 1)
                snprintf(buf, len, "%.0fms", seconds * 1000);
        else if (seconds < 100)
                snprintf(buf, len, "%.1fs", seconds);
        else
                snprintf(buf, len, "%.0fs", seconds);
        return buf;
}

/* Text from the agent may quote what a peer said; never let it send escape
 * sequences to the operator's terminal. */
static char *sanitize(const char *s) {
        char *t = strdup(s ?: "");
        if (!t)
                return NULL;
        for (unsigned char *p = (unsigned char *) t; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        *p = '?';
        return t;
}

static const char *status_color(ProbeStatus s) {
        switch (s) {
        case PROBE_OK:
                return "\033[32m";
        case PROBE_WARNING:
                return "\033[33m";
        case PROBE_CRITICAL:
                return "\033[1;31m";
        default:
                return "\033[35m";
        }
}

static bool use_colors(void) {
        const char *term = getenv("TERM");

        if (getenv("NO_COLOR"))
                return false;
        if (term && streq(term, "dumb"))
                return false;
        return isatty(STDOUT_FILENO);
}

enum { COL_PROBE, COL_TYPE, COL_STATUS, COL_AGE, COL_DURATION, COL_REASON, _COL_MAX };

static const char *const column_titles[_COL_MAX] = {
        "PROBE", "TYPE", "STATUS", "AGE", "DURATION", "REASON",
};

typedef struct Row {
        char *cells[_COL_MAX];
        ProbeStatus status;
} Row;

static void rows_free(Row *rows, size_t n) {
        for (size_t i = 0; i < n; i++)
                for (size_t c = 0; c < _COL_MAX; c++)
                        free(rows[i].cells[c]);
        free(rows);
}

static int row_fill(Row *row, const ProbeState *p, double now_s) {
        char buf[DURATION_MAX + 64];

        row->status = status_parse(p->status);
        row->cells[COL_PROBE] = sanitize(p->name);
        row->cells[COL_TYPE] = sanitize(p->type);

        {
                bool held = p->have_result && !streq(p->last_status, p->status);
                bool scope = p->scope && *p->scope;

                /* Hysteresis holds the reported status while the latest run
                 * already says otherwise: show both. With a cluster, a
                 * failure says whether the peers see it too. */
                snprintf(buf, sizeof buf, "%s%s%s%s%s%s%s", p->status, scope || held ? " (" : "",
                         scope ? p->scope : "", scope && held ? ", " : "", held ? "last run: " : "",
                         held ? p->last_status : "", scope || held ? ")" : "");
        }
        row->cells[COL_STATUS] = sanitize(buf);

        if (p->have_result) {
                row->cells[COL_AGE] = sanitize(format_age(buf, sizeof buf, now_s - p->last_run_at));
                row->cells[COL_DURATION] = sanitize(format_run_duration(buf, sizeof buf, p->duration_seconds));
                row->cells[COL_REASON] = sanitize(p->reason);
        } else {
                row->cells[COL_AGE] = sanitize("-");
                row->cells[COL_DURATION] = sanitize("-");
                row->cells[COL_REASON] = sanitize(p->running ? "first run in progress" : "no result yet");
        }

        for (size_t c = 0; c < _COL_MAX; c++)
                if (!row->cells[c])
                        return -ENOMEM;
        return 0;
}

/* "2026-11-28 08:40:12", local time, as the journal shows it. */
static char *format_time(char *buf, size_t len, double t) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (t <= 0 || !localtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, len, "(unknown)");
        return buf;
}

/* How far recovery has come, for a node that is out of service. */
static void format_recovery(const NodeStateMessage *ns, NodeStateId id, double now_s, char *buf, size_t len) {
        char of[32] = "", next[64];

        if (ns->max_attempts > 0)
                snprintf(of, sizeof of, " of %u", ns->max_attempts);

        switch (id) {
        case NODE_WITHDRAWN:
                if (ns->next_attempt_at > 0)
                        snprintf(buf, len, "recovery attempt %u%s, next in %s", ns->recovery_attempts + 1, of,
                                 format_age(next, sizeof next, ns->next_attempt_at - now_s));
                else
                        snprintf(buf, len, "recovery attempt %u%s once the mail group has stopped",
                                 ns->recovery_attempts + 1, of);
                break;
        case NODE_RECOVERING:
                snprintf(buf, len, "recovery attempt %u%s in progress", ns->recovery_attempts, of);
                break;
        case NODE_FAILED:
                snprintf(buf, len,
                         "gave up after %u recovery attempts; switch maintenance on and off to try again",
                         ns->recovery_attempts);
                break;
        case NODE_FENCED:
                snprintf(buf, len, "mail group stopped until the cluster lease is renewed again");
                break;
        default:
                buf[0] = 0;
        }
}

/* "mail1: in_service since 2026-11-28 08:40:12 (12m0s)", with the reason
 * and the progress of recovery when the node is out. States that keep the
 * node from serving mail are in capitals, to be seen at a glance. */
static char *format_node_line(const Response *resp, double now_s, bool colors) {
        const NodeStateMessage *ns = resp->node_state;
        _cleanup_free_ char *node = sanitize(*resp->node ? resp->node : "(unnamed)"), *state = NULL,
                            *reason = NULL;
        char since[64], age[64], recovery[160];
        NodeStateId id;
        char *line;

        if (!node)
                return NULL;
        if (!have_healing(resp))
                return asprintf(&line, "%s: healing is not configured, the agent only watches", node) < 0 ? NULL
                                                                                                            : line;

        id = node_state_from_string(ns->state);
        state = sanitize(ns->state);
        reason = sanitize(ns->reason);
        if (!state || !reason)
                return NULL;
        if (id != NODE_IN_SERVICE && id != NODE_STARTING)
                for (char *c = state; *c; c++)
                        *c = (char) toupper((unsigned char) *c);
        format_recovery(ns, id, now_s, recovery, sizeof recovery);

        if (asprintf(&line, "%s: %s%s%s since %s (%s)%s%s%s%s", node, colors ? status_color(node_status(resp)) : "",
                     state, colors ? "\033[0m" : "", format_time(since, sizeof since, ns->since),
                     format_age(age, sizeof age, now_s - ns->since), *reason ? ": " : "", reason,
                     *recovery ? (*reason ? "; " : ": ") : "", recovery) < 0)
                return NULL;
        return line;
}

static int print_node_line(const Response *resp) {
        _cleanup_free_ char *line = NULL;

        if (!resp->node_state)
                return 0; /* an agent older than the healing state */
        line = format_node_line(resp, usec_to_seconds(now(CLOCK_REALTIME)), use_colors());
        if (!line)
                return -ENOMEM;
        puts(line);
        return 0;
}

/* --verbose: the latest run's samples under the probe, as the exporter
 * writes them. */
static int print_samples(const ProbeState *p) {
        for (size_t j = 0; j < p->n_samples; j++) {
                const SampleMessage *x = p->samples[j];
                _cleanup_free_ char *family = sanitize(x->family), *labels = sanitize(x->labels);

                if (!family || !labels)
                        return -ENOMEM;
                printf("    %s%s%s%s %.9g\n", family, *labels ? "{" : "", labels, *labels ? "}" : "", x->value);
        }
        if (p->samples_omitted > 0)
                printf("    (%u more samples not sent: the answer's limit)\n", p->samples_omitted);
        return 0;
}

/* The first line when the results come from a one-off run: the agent is
 * down, which is news in itself, and nothing heals the node meanwhile. */
static void print_fallback_line(const char *fallback, bool colors) {
        printf("%s%s%s: these results come from a one-off run of the probes by rupost-health, "
               "not from the agent; nothing heals this node meanwhile\n",
               colors ? status_color(PROBE_WARNING) : "", fallback, colors ? "\033[0m" : "");
}

/* fallback: NULL when the agent answered; otherwise why it could not be
 * asked, and resp comes from a one-off run (oneshot.h). */
static int print_table(const Response *resp, ProbeStatus overall, const char *fallback) {
        size_t widths[_COL_MAX] = {};
        bool colors = use_colors();
        double now_s = usec_to_seconds(now(CLOCK_REALTIME));
        _cleanup_free_ char *node = sanitize(resp->node), *version = sanitize(resp->version);
        Row *rows;
        char up[64];
        int r = 0;

        if (!node || !version)
                return -ENOMEM;

        if (fallback) {
                print_fallback_line(fallback, colors);
                printf("node %s, one-off run by rupost-health %s: %s%s%s\n", *node ? node : "(unnamed)", version,
                       colors ? status_color(overall) : "", probe_status_to_string(overall),
                       colors ? "\033[0m" : "");
        } else {
                r = print_node_line(resp);
                if (r < 0)
                        return r;
                printf("node %s, rupost-agent %s, up %s: %s%s%s\n", *node ? node : "(unnamed)", version,
                       format_age(up, sizeof up, now_s - resp->start_time), colors ? status_color(overall) : "",
                       probe_status_to_string(overall), colors ? "\033[0m" : "");
        }

        if (resp->n_probes == 0) {
                printf("no probes configured\n");
                return 0;
        }

        rows = calloc(resp->n_probes, sizeof *rows);
        if (!rows)
                return -ENOMEM;
        for (size_t i = 0; i < resp->n_probes && r >= 0; i++)
                r = row_fill(&rows[i], resp->probes[i], now_s);
        if (r < 0)
                goto finish;

        for (size_t c = 0; c < _COL_MAX; c++) {
                widths[c] = strlen(column_titles[c]);
                for (size_t i = 0; i < resp->n_probes; i++)
                        widths[c] = MAX(widths[c], strlen(rows[i].cells[c]));
        }

        for (size_t c = 0; c + 1 < _COL_MAX; c++)
                printf("%-*s  ", (int) widths[c], column_titles[c]);
        printf("%s\n", column_titles[_COL_MAX - 1]);
        for (size_t i = 0; i < resp->n_probes; i++)
                for (size_t c = 0; c < _COL_MAX; c++) {
                        const char *cell = rows[i].cells[c];
                        bool color = colors && c == COL_STATUS;

                        if (c + 1 == _COL_MAX) {
                                printf("%s\n", cell);
                                if (arg_verbose && r >= 0)
                                        r = print_samples(resp->probes[i]);
                                continue;
                        }
                        printf("%s%s%s%*s  ", color ? status_color(rows[i].status) : "", cell,
                               color ? "\033[0m" : "", (int) (widths[c] - strlen(cell)), "");
                }

finish:
        rows_free(rows, resp->n_probes);
        return r;
}

/* Microseconds are the agent's resolution; json-c's default of 17
 * significant digits would print 0.000089 as 8.8999999999999995e-05. */
static struct json_object *json_seconds(double t) {
        char buf[64];

        snprintf(buf, sizeof buf, "%.6f", t);
        return json_object_new_double_s(t, buf);
}

/* json-c objects take ownership of what is added to them; a NULL from an
 * allocation failure is caught once, by the final serialization. */
static struct json_object *json_time_or_null(bool have, double t) {
        return have && t > 0 ? json_seconds(t) : NULL;
}

/* "node" is the node's name (and has been since the first version), so its
 * healing state is "node_state"; null from an agent that predates it. */
static struct json_object *json_node_state(const Response *resp) {
        const NodeStateMessage *ns = resp->node_state;
        struct json_object *o;
        bool h = have_healing(resp);

        if (!ns)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "healing", json_object_new_boolean(h));
        json_object_object_add(o, "state", h ? json_object_new_string(ns->state) : NULL);
        json_object_object_add(o, "reason", h ? json_object_new_string(ns->reason) : NULL);
        json_object_object_add(o, "since", json_time_or_null(h, ns->since));
        json_object_object_add(o, "attempts", h ? json_object_new_uint64(ns->recovery_attempts) : NULL);
        json_object_object_add(o, "max_attempts", h ? json_object_new_uint64(ns->max_attempts) : NULL);
        json_object_object_add(o, "next_attempt_at", json_time_or_null(h, ns->next_attempt_at));
        json_object_object_add(o, "maintenance", h ? json_object_new_boolean(ns->maintenance) : NULL);
        return o;
}

static int json_print(struct json_object *root) {
        const char *text = json_object_to_json_string_ext(
                root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

        if (!text)
                return -ENOMEM;
        puts(text);
        return 0;
}

/* "scope": null, "local", "shared N/M" or "unknown", with the counts behind
 * it when the peers could be compared. */
static void json_add_scope(struct json_object *o, const ProbeState *p) {
        bool have = p->scope && *p->scope, counted = have && !streq(p->scope, "unknown");

        json_object_object_add(o, "scope", have ? json_object_new_string(p->scope) : NULL);
        json_object_object_add(o, "peers_failing", counted ? json_object_new_uint64(p->peers_failing) : NULL);
        json_object_object_add(o, "live_peers", counted ? json_object_new_uint64(p->live_peers) : NULL);
}

static struct json_object *json_samples(const ProbeState *p) {
        struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t j = 0; j < p->n_samples; j++) {
                struct json_object *o = json_object_new_object();

                if (!o || json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        break; /* caught by the final serialization */
                }
                json_object_object_add(o, "family", json_object_new_string(p->samples[j]->family));
                json_object_object_add(o, "labels", json_object_new_string(p->samples[j]->labels));
                /* JSON has no NaN or infinity. */
                json_object_object_add(o, "value", isfinite(p->samples[j]->value)
                                                           ? json_object_new_double(p->samples[j]->value)
                                                           : NULL);
        }
        return a;
}

/* "source" says who ran the probes; "agent_error" why the agent did not. */
static void json_add_source(struct json_object *root, const char *fallback) {
        json_object_object_add(root, "source", json_object_new_string(fallback ? "rupost-health" : "agent"));
        json_object_object_add(root, "agent_error", fallback ? json_object_new_string(fallback) : NULL);
}

static int print_json(const Response *resp, ProbeStatus overall, const char *fallback) {
        _cleanup_(json_object_putp) struct json_object *root = json_object_new_object();
        struct json_object *probes = json_object_new_array();

        if (!root || !probes) {
                json_object_put(probes);
                return -ENOMEM;
        }

        json_add_source(root, fallback);
        json_object_object_add(root, "node", json_object_new_string(resp->node));
        json_object_object_add(root, "node_state", json_node_state(resp));
        json_object_object_add(root, "version", json_object_new_string(resp->version));
        json_object_object_add(root, "start_time", json_seconds(resp->start_time));
        json_object_object_add(root, "status", json_object_new_string(probe_status_to_string(overall)));
        json_object_object_add(root, "probes", probes);

        for (size_t i = 0; i < resp->n_probes; i++) {
                const ProbeState *p = resp->probes[i];
                struct json_object *o = json_object_new_object();

                if (!o || json_object_array_add(probes, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                json_object_object_add(o, "name", json_object_new_string(p->name));
                json_object_object_add(o, "type", json_object_new_string(p->type));
                json_object_object_add(o, "status", json_object_new_string(p->status));
                json_object_object_add(o, "last_status",
                                       p->have_result ? json_object_new_string(p->last_status) : NULL);
                json_object_object_add(o, "reason", p->have_result ? json_object_new_string(p->reason) : NULL);
                json_object_object_add(o, "last_run_at", json_time_or_null(p->have_result, p->last_run_at));
                json_object_object_add(o, "changed_at", json_time_or_null(true, p->changed_at));
                json_object_object_add(o, "duration_seconds",
                                       p->have_result ? json_seconds(p->duration_seconds) : NULL);
                json_object_object_add(o, "runs", json_object_new_uint64(p->runs));
                json_object_object_add(o, "timeouts", json_object_new_uint64(p->timeouts));
                json_object_object_add(o, "running", json_object_new_boolean(p->running));
                json_add_scope(o, p);
                if (arg_verbose) {
                        json_object_object_add(o, "samples", json_samples(p));
                        json_object_object_add(o, "samples_omitted", json_object_new_uint64(p->samples_omitted));
                }
        }

        return json_print(root);
}

/* After a maintenance switch: the node's new state, nothing else. */
static int print_maintenance(const Response *resp) {
        _cleanup_(json_object_putp) struct json_object *root = NULL;

        if (!arg_json)
                return print_node_line(resp);

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        json_object_object_add(root, "node", json_object_new_string(resp->node));
        json_object_object_add(root, "node_state", json_node_state(resp));
        return json_print(root);
}

enum { CCOL_NODE, CCOL_STATE, CCOL_REASON, CCOL_LEASE_AGE, _CCOL_MAX };

static const char *const cluster_titles[_CCOL_MAX] = { "NODE", "STATE", "REASON", "LEASE AGE" };

static int print_cluster_table(const Response *resp) {
        size_t n = resp->n_cluster, widths[_CCOL_MAX];
        _cleanup_free_ char **cells = NULL;
        char age[64];
        int r = 0;

        if (n == 0) {
                printf("no nodes registered\n");
                return 0;
        }
        cells = calloc(n * _CCOL_MAX, sizeof *cells);
        if (!cells)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const ClusterNode *cn = resp->cluster[i];
                char **row = cells + i * _CCOL_MAX;

                row[CCOL_NODE] = sanitize(cn->name);
                row[CCOL_STATE] = sanitize(cn->state);
                row[CCOL_REASON] = sanitize(*cn->reason ? cn->reason : "-");
                row[CCOL_LEASE_AGE] = sanitize(format_age(age, sizeof age, cn->lease_age_seconds));
                for (size_t c = 0; c < _CCOL_MAX; c++)
                        if (!row[c])
                                r = -ENOMEM;
        }
        if (r < 0)
                goto finish;

        for (size_t c = 0; c < _CCOL_MAX; c++) {
                widths[c] = strlen(cluster_titles[c]);
                for (size_t i = 0; i < n; i++)
                        widths[c] = MAX(widths[c], strlen(cells[i * _CCOL_MAX + c]));
        }
        /* The reason is the long one: it goes last in the table. */
        printf("%-*s  %-*s  %-*s  %s\n", (int) widths[CCOL_NODE], cluster_titles[CCOL_NODE],
               (int) widths[CCOL_STATE], cluster_titles[CCOL_STATE], (int) widths[CCOL_LEASE_AGE],
               cluster_titles[CCOL_LEASE_AGE], cluster_titles[CCOL_REASON]);
        for (size_t i = 0; i < n; i++) {
                char **row = cells + i * _CCOL_MAX;
                printf("%-*s  %-*s  %-*s  %s\n", (int) widths[CCOL_NODE], row[CCOL_NODE], (int) widths[CCOL_STATE],
                       row[CCOL_STATE], (int) widths[CCOL_LEASE_AGE], row[CCOL_LEASE_AGE], row[CCOL_REASON]);
        }

finish:
        for (size_t i = 0; i < n * _CCOL_MAX; i++)
                free(cells[i]);
        return r;
}

static int print_cluster_json(const Response *resp) {
        _cleanup_(json_object_putp) struct json_object *root = json_object_new_object();
        struct json_object *nodes = json_object_new_array();

        if (!root || !nodes) {
                json_object_put(nodes);
                return -ENOMEM;
        }
        json_object_object_add(root, "node", json_object_new_string(resp->node));
        json_object_object_add(root, "nodes", nodes);
        for (size_t i = 0; i < resp->n_cluster; i++) {
                const ClusterNode *cn = resp->cluster[i];
                struct json_object *o = json_object_new_object();

                if (!o || json_object_array_add(nodes, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                json_object_object_add(o, "name", json_object_new_string(cn->name));
                json_object_object_add(o, "state", json_object_new_string(cn->state));
                json_object_object_add(o, "reason", json_object_new_string(cn->reason));
                json_object_object_add(o, "lease_age_seconds", json_seconds(cn->lease_age_seconds));
                json_object_object_add(o, "updated_at", json_time_or_null(true, cn->updated_at));
        }
        return json_print(root);
}

/* ---- skew: the clock offsets the probes measured ---- */

/* The value of label `key` in rendered labels (key="value",...), with the
 * exporter's escapes undone; NULL when absent or malformed. */
static char *label_value(const char *labels, const char *key) {
        size_t kl = strlen(key);

        for (const char *p = labels; p && *p;) {
                bool match = strncmp(p, key, kl) == 0 && p[kl] == '=';
                const char *eq = strchr(p, '=');
                char *v, *o;

                if (!eq || eq[1] != '"')
                        return NULL;
                v = o = malloc(strlen(eq));
                if (!v)
                        return NULL;
                for (p = eq + 2; *p && *p != '"'; p++) {
                        if (*p == '\\' && p[1]) {
                                p++;
                                *o++ = *p == 'n' ? '\n' : *p;
                        } else
                                *o++ = *p;
                }
                *o = 0;
                if (*p != '"') {
                        free(v);
                        return NULL;
                }
                if (match)
                        return v;
                free(v);
                p++;
                if (*p == ',')
                        p++;
        }
        return NULL;
}

typedef struct SkewRow {
        char *source;
        const ProbeState *probe;
        double offset;
        double resolution; /* how coarse the source tells its time; 0: finer than we can judge */
        ProbeStatus verdict;
} SkewRow;

/* Memcached tells its time in whole seconds, from a clock it ticks once a
 * second: an offset of -1 s is what a healthy one shows. Only what is beyond
 * that resolution counts against it. */
static double source_resolution(const ProbeState *p) {
        /* memcached's `time` and LDAP's GeneralizedTime: whole seconds. */
        return streq(p->type, "memcached") || streq(p->type, "ldap") ? 1.0 : 0.0;
}

static ProbeStatus skew_verdict(double offset, double resolution) {
        double beyond;

        if (!isfinite(offset))
                return PROBE_UNKNOWN;
        beyond = fabs(offset) - resolution;
        if (beyond >= SKEW_CRITICAL_SECONDS)
                return PROBE_CRITICAL;
        if (beyond >= SKEW_WARNING_SECONDS)
                return PROBE_WARNING;
        return PROBE_OK;
}

/* The largest skew first, whichever its sign; then by source, so that the
 * order is stable between runs. */
static int skew_row_compare(const void *a, const void *b) {
        const SkewRow *x = a, *y = b;
        double fx = isfinite(x->offset) ? fabs(x->offset) : INFINITY,
               fy = isfinite(y->offset) ? fabs(y->offset) : INFINITY;

        if (fx != fy)
                return fx < fy ? 1 : -1;
        return strcmp(x->source, y->source);
}

static void skew_rows_free(SkewRow *rows, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(rows[i].source);
        free(rows);
}

/* Every clock offset of every probe's latest run. */
static int collect_skew(const Response *resp, SkewRow **ret, size_t *ret_n) {
        SkewRow *rows = NULL;
        size_t n = 0;

        for (size_t i = 0; i < resp->n_probes; i++) {
                const ProbeState *p = resp->probes[i];

                for (size_t j = 0; j < p->n_samples; j++) {
                        const SampleMessage *x = p->samples[j];
                        SkewRow *l;

                        if (!streq(x->family, TIME_OFFSET_FAMILY))
                                continue;
                        l = reallocarray(rows, n + 1, sizeof *rows);
                        if (!l)
                                goto oom;
                        rows = l;
                        rows[n] = (SkewRow) {
                                .source = label_value(x->labels, "source") ?: strdup("(unnamed)"),
                                .probe = p,
                                .offset = x->value,
                                .resolution = source_resolution(p),
                                .verdict = skew_verdict(x->value, source_resolution(p)),
                        };
                        if (!rows[n++].source)
                                goto oom;
                }
        }
        if (n > 1)
                qsort(rows, n, sizeof *rows, skew_row_compare);
        *ret = rows;
        *ret_n = n;
        return 0;
oom:
        skew_rows_free(rows, n);
        return -ENOMEM;
}

/* Nagios-style from the worst skew; no offset at all proves nothing. */
static ProbeStatus skew_status(const SkewRow *rows, size_t n) {
        ProbeStatus worst = n == 0 ? PROBE_UNKNOWN : PROBE_OK;

        for (size_t i = 0; i < n; i++)
                worst = probe_status_worst(worst, rows[i].verdict);
        return worst;
}

/* "+0.012s", "-1.503s": the sign says who is ahead (positive: the source).
 * "-1s" for a source that tells its time in whole seconds. */
static char *format_offset(char *buf, size_t len, double offset, double resolution) {
        if (!isfinite(offset))
                snprintf(buf, len, "?");
        else if (resolution >= 1 || fabs(offset) >= 100)
                snprintf(buf, len, "%+.0fs", offset);
        else
                snprintf(buf, len, "%+.3fs", offset);
        return buf;
}

/* "ok", or "ok (whole seconds)" for a coarse source, judged by what is
 * beyond its resolution. */
static char *verdict_cell(const SkewRow *row) {
        char *s;

        if (row->resolution <= 0)
                return strdup(probe_status_to_string(row->verdict));
        return asprintf(&s, "%s (whole seconds)", probe_status_to_string(row->verdict)) < 0 ? NULL : s;
}

enum { SCOL_SOURCE, SCOL_PROBE, SCOL_OFFSET, SCOL_VERDICT, _SCOL_MAX };

static const char *const skew_titles[_SCOL_MAX] = { "SOURCE", "PROBE", "OFFSET", "VERDICT" };

static int print_skew_table(const Response *resp, const SkewRow *rows, size_t n, ProbeStatus worst,
                            const char *fallback) {
        size_t widths[_SCOL_MAX];
        _cleanup_free_ char **cells = NULL;
        bool colors = use_colors();
        char off[64];
        int r = 0;

        if (fallback)
                print_fallback_line(fallback, colors);
        if (n == 0) {
                printf("no clock offsets reported: configure a time probe, or wait for the first runs of the "
                       "time, postgres, memcached and nfs probes\n");
                return 0;
        }
        cells = calloc(n * _SCOL_MAX, sizeof *cells);
        if (!cells)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char **row = cells + i * _SCOL_MAX;

                row[SCOL_SOURCE] = sanitize(rows[i].source);
                row[SCOL_PROBE] = sanitize(rows[i].probe->name);
                row[SCOL_OFFSET] = sanitize(format_offset(off, sizeof off, rows[i].offset, rows[i].resolution));
                row[SCOL_VERDICT] = verdict_cell(&rows[i]);
                for (size_t c = 0; c < _SCOL_MAX; c++)
                        if (!row[c])
                                r = -ENOMEM;
        }
        if (r < 0)
                goto finish;

        for (size_t c = 0; c < _SCOL_MAX; c++) {
                widths[c] = strlen(skew_titles[c]);
                for (size_t i = 0; i < n; i++)
                        widths[c] = MAX(widths[c], strlen(cells[i * _SCOL_MAX + c]));
        }
        /* Offsets right-aligned, so that the decimal points line up. */
        printf("%-*s  %-*s  %*s  %s\n", (int) widths[SCOL_SOURCE], skew_titles[SCOL_SOURCE],
               (int) widths[SCOL_PROBE], skew_titles[SCOL_PROBE], (int) widths[SCOL_OFFSET],
               skew_titles[SCOL_OFFSET], skew_titles[SCOL_VERDICT]);
        for (size_t i = 0; i < n; i++) {
                char **row = cells + i * _SCOL_MAX;

                printf("%-*s  %-*s  %*s  %s%s%s\n", (int) widths[SCOL_SOURCE], row[SCOL_SOURCE],
                       (int) widths[SCOL_PROBE], row[SCOL_PROBE], (int) widths[SCOL_OFFSET], row[SCOL_OFFSET],
                       colors ? status_color(rows[i].verdict) : "", row[SCOL_VERDICT], colors ? "\033[0m" : "");
        }
        if (worst != PROBE_OK)
                printf("the cluster tolerates %.0f s of skew between its nodes and the services they use; "
                       "check chrony on the source's host, or on this node when every source is off by the "
                       "same amount\n",
                       SKEW_CRITICAL_SECONDS);
        for (size_t i = 0; i < resp->n_probes; i++)
                if (resp->probes[i]->samples_omitted > 0)
                        printf("probe %s had %u more samples than the agent sends: some offsets may be missing\n",
                               resp->probes[i]->name, resp->probes[i]->samples_omitted);

finish:
        for (size_t i = 0; i < n * _SCOL_MAX; i++)
                free(cells[i]);
        return r;
}

static int print_skew_json(const Response *resp, const SkewRow *rows, size_t n, ProbeStatus worst,
                           const char *fallback) {
        _cleanup_(json_object_putp) struct json_object *root = json_object_new_object();
        struct json_object *sources = json_object_new_array();

        if (!root || !sources) {
                json_object_put(sources);
                return -ENOMEM;
        }
        json_add_source(root, fallback);
        json_object_object_add(root, "node", json_object_new_string(resp->node));
        json_object_object_add(root, "status", json_object_new_string(probe_status_to_string(worst)));
        json_object_object_add(root, "warning_seconds", json_seconds(SKEW_WARNING_SECONDS));
        json_object_object_add(root, "critical_seconds", json_seconds(SKEW_CRITICAL_SECONDS));
        json_object_object_add(root, "sources", sources);
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_new_object();

                if (!o || json_object_array_add(sources, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                json_object_object_add(o, "source", json_object_new_string(rows[i].source));
                json_object_object_add(o, "probe", json_object_new_string(rows[i].probe->name));
                json_object_object_add(o, "type", json_object_new_string(rows[i].probe->type));
                json_object_object_add(o, "offset_seconds",
                                       isfinite(rows[i].offset) ? json_seconds(rows[i].offset) : NULL);
                json_object_object_add(o, "resolution_seconds",
                                       rows[i].resolution > 0 ? json_seconds(rows[i].resolution) : NULL);
                json_object_object_add(o, "status", json_object_new_string(probe_status_to_string(rows[i].verdict)));
        }
        return json_print(root);
}

static int print_skew(const Response *resp, const char *fallback, ProbeStatus *ret_worst) {
        SkewRow *rows = NULL;
        size_t n = 0;
        int r;

        r = collect_skew(resp, &rows, &n);
        if (r < 0)
                return r;
        *ret_worst = with_fallback_floor(skew_status(rows, n), fallback);
        r = arg_json ? print_skew_json(resp, rows, n, *ret_worst, fallback)
                     : print_skew_table(resp, rows, n, *ret_worst, fallback);
        skew_rows_free(rows, n);
        return r;
}

static void print_json_error(const char *error) {
        _cleanup_(json_object_putp) struct json_object *root = json_object_new_object();

        if (!root)
                return;
        json_object_object_add(root, "status", json_object_new_string("unknown"));
        json_object_object_add(root, "error", json_object_new_string(error));
        (void) json_print(root);
}

/* Every way of not knowing the node's state ends here: one line for the
 * operator on stderr, the same in JSON when asked for, and UNKNOWN. */
static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);

        fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg);
        if (arg_json)
                print_json_error(msg);
        return EXIT_NAGIOS_UNKNOWN;
}

static void help(void) {
        printf("%s [OPTIONS...]\n"
               "%s [OPTIONS...] cluster\n"
               "%s [OPTIONS...] skew\n"
               "%s [OPTIONS...] maintenance on --reason TEXT | off\n\n"
               "Show the health of this node as seen by rupost-agent, the nodes of its\n"
               "cluster, the clock offsets its probes measured, or switch this node's\n"
               "maintenance.\n\n"
               "  -h --help                  Show this help\n"
               "     --version               Show the version\n"
               "  -s --control-socket=PATH   The agent's control socket (default: %s)\n"
               "  -j --json                  Print JSON instead of a table\n"
               "  -v --verbose               Show each probe's samples under it\n"
               "  -t --timeout=DURATION      Give up after this long (default: 5s)\n"
               "  -r --reason=TEXT           Why maintenance goes on (required with 'on')\n"
               "  -c --config=FILE           The agent's configuration, for the probes to run\n"
               "                             when the agent is not running (default: %s)\n"
               "     --no-fallback           Do not run the probes when the agent is not running\n\n"
               "Exit status: 0 all probes ok, 1 warning, 2 critical, 3 unknown\n"
               "(any probe unknown, no probes, or the agent could not be asked).\n"
               "When the agent is not running, status and skew run every probe once\n"
               "themselves and say so; the result is then at least a warning.\n"
               "The worst probe wins: critical > unknown > warning > ok; a withdrawn or\n"
               "failed node is critical, one in maintenance or recovering a warning.\n"
               "skew: from the largest offset, ok below 0.5 s, warning from 0.5 s, critical\n"
               "from 1 s (the cluster's limit), unknown when no probe reported one.\n"
               "cluster and maintenance: 0 done, 3 not.\n",
               program_invocation_short_name, program_invocation_short_name, program_invocation_short_name,
               program_invocation_short_name,
               CONFIG_DEFAULT_CONTROL_SOCKET, CONFIG_DEFAULT_PATH);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

/* The words after the options: nothing (or "status"), "cluster", or
 * "maintenance on|off". */
static int parse_verb(int argc, char **argv) {
        if (argc == 0 || streq(argv[0], "status")) {
                if (argc > 1)
                        return usage_error("unexpected argument '%s'", argv[1]);
                arg_verb = VERB_STATUS;
        } else if (streq(argv[0], "cluster")) {
                if (argc > 1)
                        return usage_error("unexpected argument '%s' after 'cluster'", argv[1]);
                arg_verb = VERB_CLUSTER;
        } else if (streq(argv[0], "skew")) {
                if (argc > 1)
                        return usage_error("unexpected argument '%s' after 'skew'", argv[1]);
                arg_verb = VERB_SKEW;
        } else if (streq(argv[0], "maintenance")) {
                if (argc < 2 || !(streq(argv[1], "on") || streq(argv[1], "off")))
                        return usage_error("maintenance needs 'on' or 'off'%s%s%s", argc >= 2 ? ", not '" : "",
                                           argc >= 2 ? argv[1] : "", argc >= 2 ? "'" : "");
                if (argc > 2)
                        return usage_error("unexpected argument '%s' after 'maintenance %s'", argv[2], argv[1]);
                arg_verb = VERB_MAINTENANCE;
                arg_maintenance_on = streq(argv[1], "on");
                if (arg_maintenance_on && (!arg_reason || !*arg_reason))
                        return usage_error("maintenance on needs --reason TEXT: say why, for the other operators");
        } else
                return usage_error("unknown command '%s': expected status, cluster, skew or maintenance", argv[0]);

        if (arg_reason && !(arg_verb == VERB_MAINTENANCE && arg_maintenance_on))
                return usage_error("--reason only goes with 'maintenance on'");
        if (arg_verbose && arg_verb != VERB_STATUS)
                return usage_error("--verbose only goes with the status (no command, or 'status')");
        return 1;
}

/* Returns 1 to go on, 0 when done (--help, --version), < 0 on a usage error
 * (already reported). */
static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_NO_FALLBACK };
        static const struct option options[] = {
                { "help",           no_argument,       NULL, 'h'         },
                { "version",        no_argument,       NULL, ARG_VERSION },
                { "control-socket", required_argument, NULL, 's'         },
                { "json",           no_argument,       NULL, 'j'         },
                { "verbose",        no_argument,       NULL, 'v'         },
                { "timeout",        required_argument, NULL, 't'         },
                { "reason",         required_argument, NULL, 'r'         },
                { "config",         required_argument, NULL, 'c'         },
                { "no-fallback",    no_argument,       NULL, ARG_NO_FALLBACK },
                {}
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "hs:jvt:r:c:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("rupost-health %s (%s)\n", PROJECT_VERSION, PROJECT_REVISION);
                        return 0;
                case 's':
                        if (!*optarg)
                                return fprintf(stderr, "%s: --control-socket needs a path\n",
                                               program_invocation_short_name), -EINVAL;
                        arg_socket = optarg;
                        arg_socket_set = true;
                        break;
                case 'c':
                        if (!*optarg)
                                return fprintf(stderr, "%s: --config needs a path\n",
                                               program_invocation_short_name), -EINVAL;
                        arg_config = optarg;
                        break;
                case ARG_NO_FALLBACK:
                        arg_fallback = false;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                case 'v':
                        arg_verbose = true;
                        break;
                case 't':
                        r = parse_duration(optarg, &arg_timeout);
                        if (r < 0 || arg_timeout == 0)
                                return fprintf(stderr,
                                               "%s: invalid --timeout '%s': expected a positive duration "
                                               "such as 5s or 500ms\n",
                                               program_invocation_short_name, optarg), -EINVAL;
                        arg_timeout_string = optarg;
                        break;
                case 'r':
                        arg_reason = optarg;
                        break;
                case '?':
                        return -EINVAL; /* getopt said what */
                default:
                        abort();
                }

        return parse_verb(argc - optind, argv + optind);
}

/* The agent is not there at all: no socket, or nobody listening on it. Any
 * other failure (no permission, no answer, a bad answer) means an agent may
 * well be running, and running the probes behind its back would hide that. */
static bool agent_absent(int r) {
        return r == -ENOENT || r == -ECONNREFUSED;
}

/* Prints what the agent, or a one-off run in its place, answered; returns
 * the exit code. */
static int show(const Response *resp, const char *fallback) {
        ProbeStatus overall = PROBE_OK;
        int r = 0;

        if (resp->error && *resp->error)
                return fail("the agent refused the request: %s", resp->error);

        switch (arg_verb) {
        case VERB_STATUS:
                overall = with_fallback_floor(overall_status(resp), fallback);
                r = arg_json ? print_json(resp, overall, fallback) : print_table(resp, overall, fallback);
                break;
        case VERB_CLUSTER:
                r = arg_json ? print_cluster_json(resp) : print_cluster_table(resp);
                break;
        case VERB_SKEW:
                r = print_skew(resp, fallback, &overall);
                break;
        case VERB_MAINTENANCE:
                if (!resp->node_state)
                        return fail("the agent did not say the node's new state (version mismatch?)");
                r = print_maintenance(resp);
                break;
        }
        if (r < 0)
                return fail("failed to format the answer: %s", strerror(-r));
        if (fflush(stdout) != 0 || ferror(stdout))
                return fail("failed to write the answer: %m");

        return status_exit_code(overall);
}

/* The configuration could not be loaded: every error of the loader, with
 * its file:line:column, and UNKNOWN, since nothing could be checked. */
static int fail_config(const char *agent_error, char **errors) {
        bool denied = false;

        fprintf(stderr, "%s: %s, and its configuration %s cannot be loaded to run the probes without it:\n",
                program_invocation_short_name, agent_error, arg_config);
        for (char **e = errors; *e; e++) {
                fprintf(stderr, "  %s\n", *e);
                denied = denied || strstr(*e, strerror(EACCES));
        }
        if (denied && geteuid() != 0)
                fprintf(stderr, "  (the agent's configuration and secret files are readable by root only: "
                                "run rupost-health as root)\n");

        if (arg_json) {
                _cleanup_(json_object_putp) struct json_object *root = json_object_new_object();
                struct json_object *list = json_object_new_array();
                _cleanup_free_ char *msg = NULL;

                if (!root || !list ||
                    asprintf(&msg, "%s, and its configuration %s cannot be loaded to run the probes without it",
                             agent_error, arg_config) < 0) {
                        msg = NULL; /* undefined after a failure */
                        json_object_put(list);
                        return EXIT_NAGIOS_UNKNOWN;
                }
                json_object_object_add(root, "status", json_object_new_string("unknown"));
                json_object_object_add(root, "error", json_object_new_string(msg));
                json_object_object_add(root, "config_errors", list);
                for (char **e = errors; *e; e++)
                        json_object_array_add(list, json_object_new_string(*e));
                (void) json_print(root);
        }
        return EXIT_NAGIOS_UNKNOWN;
}

/* The agent is down: run every configured probe once ourselves
 * (oneshot.h), and show that with the reason the agent could not. */
static int fall_back(const char *agent_error, const Rupost__Control__Request *req) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(oneshot_freep) OneShot *o = NULL;
        _cleanup_strv_free_ char **errors = NULL;
        unsigned left;
        int r;

        r = config_load_file(arg_config, &config, &errors);
        if (r < 0)
                return errors ? fail_config(agent_error, errors)
                              : fail("%s, and loading its configuration %s failed: %s", agent_error, arg_config,
                                     strerror(-r));

        /* An agent configured with another socket is asked there before
         * anything runs behind its back. */
        if (!arg_socket_set && config->control_socket && !streq(config->control_socket, arg_socket)) {
                _cleanup_(control_message_freep) ProtobufCMessage *msg = NULL;
                char error[1024];

                r = ask_agent(config->control_socket, arg_timeout, req, &msg);
                if (r >= 0)
                        return show((const Response *) msg, NULL);
                if (!agent_absent(r)) {
                        format_fetch_error(r, config->control_socket, error, sizeof error);
                        return fail("%s", error);
                }
        }

        r = oneshot_run(TAKE_PTR(config), &o);
        if (r < 0)
                return fail("%s, and the probes could not be run without it: %s", agent_error, strerror(-r));

        left = oneshot_children_left(o);
        if (left > 0)
                fprintf(stderr,
                        "%s: %u child process%s of the probes did not die when killed at the deadline: stuck in "
                        "the kernel (a hung NFS mount?); %s reaped by init once the kernel lets %s go\n",
                        program_invocation_short_name, left, left == 1 ? "" : "es", left == 1 ? "it is" : "they are",
                        left == 1 ? "it" : "them");

        return show(oneshot_response(o), agent_error);
}

int main(int argc, char *argv[]) {
        _cleanup_(control_message_freep) ProtobufCMessage *msg = NULL;
        Rupost__Control__Request req = RUPOST__CONTROL__REQUEST__INIT;
        char error[1024];
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_NAGIOS_UNKNOWN : EXIT_NAGIOS_OK;

        switch (arg_verb) {
        case VERB_STATUS:
        case VERB_SKEW:
                req.kind = RUPOST__CONTROL__REQUEST__KIND__STATUS;
                break;
        case VERB_CLUSTER:
                req.kind = RUPOST__CONTROL__REQUEST__KIND__CLUSTER;
                break;
        case VERB_MAINTENANCE:
                req.kind = RUPOST__CONTROL__REQUEST__KIND__MAINTENANCE;
                req.maintenance_on = arg_maintenance_on;
                req.maintenance_reason = (char *) (arg_reason ?: "");
                break;
        }

        r = ask_agent(arg_socket, arg_timeout, &req, &msg);
        if (r < 0) {
                format_fetch_error(r, arg_socket, error, sizeof error);
                /* The cluster view and maintenance are the agent's to give. */
                if (agent_absent(r) && arg_fallback && (arg_verb == VERB_STATUS || arg_verb == VERB_SKEW))
                        return fall_back(error, &req);
                return fail("%s", error);
        }
        return show((const Response *) msg, NULL);
}
