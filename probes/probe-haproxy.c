/* SPDX-License-Identifier: GPL-2.0-or-later */
/* haproxy: asks the runtime API on the stats socket, in one line,
 * "show info;show stat;show peers;show table" and judges the answer:
 * backends without a server up, servers down, peers (the stick-table
 * synchronisation between nodes, port 10000) not established, and stick
 * tables close to full. Non-blocking AF_UNIX socket on the event loop; the
 * answer is read to EOF, up to a bound.
 *
 * It also computes rupost_node_manageable: the product's control system can
 * manage a node only while the control system and the HA agent (HAProxy)
 * both run; the control system's state comes from the probe named by
 * control_system_probe. */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "haproxy-parse.h"
#include "lib/buf.h"
#include "lib/sockaddr.h"
#include "manager.h"
#include "probes.h"

#define HAPROXY_DEFAULT_SOCKET "/run/haproxy/admin.sock"
#define HAPROXY_COMMAND "show info;show stat;show peers;show table\n"
#define HAPROXY_ANSWER_MAX (4 * 1024 * 1024)
/* Series caps: HAProxy's configuration is finite, but a label set must be
 * bounded whatever it holds. Beyond these, series are left out (and the
 * reason says so); the judgement still covers everything. */
#define HAPROXY_SERVER_SERIES_MAX 256
#define HAPROXY_BACKEND_SERIES_MAX 256
#define HAPROXY_PEER_SERIES_MAX 64
#define HAPROXY_TABLE_SERIES_MAX 64
#define HAPROXY_DEFAULT_PEER_PORT 10000
#define HAPROXY_DEFAULT_TABLE_WARNING 90

typedef struct HaproxyProbe {
        /* configuration */
        char *socket_path;
        unsigned peer_port;
        unsigned expected_peers; /* 0: not checked */
        unsigned stick_table_warning;
        char *control_system_probe;

        union sockaddr_union sockaddr;
        socklen_t sockaddr_len;

        /* one run */
        int fd;
        bool fd_open; /* fd is only valid while set: the object starts zeroed */
        sd_event_source *io;
        size_t written;
        Buf answer;
} HaproxyProbe;

static const MetricFamily family_up = {
        .name = "rupost_haproxy_up",
        .type = METRIC_GAUGE,
        .help = "Whether HAProxy answered on its runtime API in the last check.",
};
static const MetricFamily family_server_status = {
        .name = "rupost_haproxy_server_status",
        .type = METRIC_GAUGE,
        .help = "State of each server, one series per state, 1 for the current one (at most 256 servers).",
};
static const MetricFamily family_backend_active = {
        .name = "rupost_haproxy_backend_active_servers",
        .type = METRIC_GAUGE,
        .help = "Active servers up in each backend (at most 256 backends).",
};
static const MetricFamily family_peer_connected = {
        .name = "rupost_haproxy_peer_connected",
        .type = METRIC_GAUGE,
        .help = "Whether the stick-table synchronisation with each remote peer is established (ESTA).",
};
static const MetricFamily family_table_used = {
        .name = "rupost_haproxy_stick_table_used",
        .type = METRIC_GAUGE,
        .help = "Entries in use in each stick table.",
};
static const MetricFamily family_table_size = {
        .name = "rupost_haproxy_stick_table_size",
        .type = METRIC_GAUGE,
        .help = "Maximum number of entries of each stick table.",
};
static const MetricFamily family_current_connections = {
        .name = "rupost_haproxy_process_current_connections",
        .type = METRIC_GAUGE,
        .help = "Connections HAProxy holds open now.",
};
static const MetricFamily family_node_manageable = {
        .name = "rupost_node_manageable",
        .type = METRIC_GAUGE,
        .help = "Whether the control system can manage this node: it and the HA agent (HAProxy) both run.",
};

static const ConfigItem haproxy_config_items[] = {
        { "socket",               config_parse_string, offsetof(HaproxyProbe, socket_path)                       },
        { "peer_port",            config_parse_uint,   offsetof(HaproxyProbe, peer_port), .min = 1, .max = 65535 },
        { "expected_peers",       config_parse_uint,   offsetof(HaproxyProbe, expected_peers), .min = 1, .max = HAPROXY_PEERS_MAX },
        { "stick_table_warning",  config_parse_uint,   offsetof(HaproxyProbe, stick_table_warning), .min = 1, .max = 100 },
        { "control_system_probe", config_parse_string, offsetof(HaproxyProbe, control_system_probe)              },
        {}
};

static int haproxy_verify(Probe *p, ConfigContext *c) {
        HaproxyProbe *h = probe_get_userdata(p);

        if (!h->socket_path && !(h->socket_path = strdup(HAPROXY_DEFAULT_SOCKET)))
                return -ENOMEM;
        if (h->socket_path[0] != '/')
                return config_error(c, NULL, "socket", "'%s' is not an absolute path", h->socket_path);
        if (strlen(h->socket_path) >= sizeof h->sockaddr.un.sun_path)
                return config_error(c, NULL, "socket", "longer than %zu bytes", sizeof h->sockaddr.un.sun_path - 1);
        if (h->control_system_probe && streq(h->control_system_probe, p->name))
                return config_error(c, NULL, "control_system_probe", "names this probe itself");
        if (h->peer_port == 0)
                h->peer_port = HAPROXY_DEFAULT_PEER_PORT;
        if (h->stick_table_warning == 0)
                h->stick_table_warning = HAPROXY_DEFAULT_TABLE_WARNING;

        h->sockaddr.un.sun_family = AF_UNIX;
        strcpy(h->sockaddr.un.sun_path, h->socket_path);
        h->sockaddr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(h->socket_path) + 1);
        return 0;
}

static int haproxy_setup(Probe *p) {
        HaproxyProbe *h = probe_get_userdata(p);

        h->fd = -EBADF;
        h->answer = BUF_INIT(HAPROXY_ANSWER_MAX);
        return 0;
}

static void haproxy_stop(Probe *p) {
        HaproxyProbe *h = probe_get_userdata(p);

        h->io = sd_event_source_disable_unref(h->io);
        if (h->fd_open)
                h->fd = safe_close(h->fd);
        h->fd_open = false;
        buf_done(&h->answer);
        h->answer = BUF_INIT(HAPROXY_ANSWER_MAX);
        h->written = 0;
}

static void haproxy_done(Probe *p) {
        HaproxyProbe *h = probe_get_userdata(p);

        haproxy_stop(p);
        free(h->socket_path);
        free(h->control_system_probe);
}

/* 1 when the control system runs, as far as its probe knows, or when no
 * probe for it is configured; a note for the reason otherwise. */
static bool control_system_runs(Probe *p, const char **ret_note, const char **ret_status) {
        HaproxyProbe *h = probe_get_userdata(p);
        size_t n = 0;
        Probe **probes;

        *ret_note = NULL;
        *ret_status = NULL;
        if (!h->control_system_probe)
                return true;
        probes = p->manager ? manager_probes(p->manager, &n) : NULL;
        for (size_t i = 0; i < n; i++) {
                Probe *q = probes[i];
                if (!streq(q->name, h->control_system_probe))
                        continue;
                if (!q->have_result) {
                        *ret_note = "has not reported yet";
                        return false;
                }
                if (q->status == PROBE_OK || q->status == PROBE_WARNING)
                        return true;
                *ret_status = probe_status_to_string(q->status);
                return false;
        }
        *ret_note = "does not exist";
        return false;
}

static void add_manageable_sample(Probe *p, bool haproxy_runs, Buf *reason) {
        HaproxyProbe *h = probe_get_userdata(p);
        const char *note, *status;
        bool control = control_system_runs(p, &note, &status);

        (void) probe_add_sample(p, &family_node_manageable, haproxy_runs && control ? 1 : 0, NULL);
        if (!haproxy_runs || control)
                return;
        if (status)
                (void) buf_printf(reason, "; node not manageable: control system probe '%s' is %s",
                                  h->control_system_probe, status);
        else
                (void) buf_printf(reason, "; node not manageable: control system probe '%s' %s",
                                  h->control_system_probe, note);
}

/* Ends a run in which HAProxy could not be asked at all. */
static int haproxy_fail(Probe *p, ProbeStatus status, const char *fmt, ...) _printf_(3, 4);
static int haproxy_fail(Probe *p, ProbeStatus status, const char *fmt, ...) {
        _cleanup_(buf_done) Buf reason = BUF_INIT(4096);
        va_list ap;

        va_start(ap, fmt);
        (void) buf_vprintf(&reason, fmt, ap);
        va_end(ap);
        (void) probe_add_sample(p, &family_up, 0, NULL);
        add_manageable_sample(p, false, &reason);
        return probe_finish(p, status, "%s", reason.data ?: "");
}

static int haproxy_connect_failed(Probe *p, int error) {
        HaproxyProbe *h = probe_get_userdata(p);

        switch (error) {
        case ENOENT:
                return haproxy_fail(p, PROBE_CRITICAL,
                                    "haproxy runtime API %s does not exist: is haproxy running, with "
                                    "'stats socket %s mode 660 level admin' in its global section?",
                                    h->socket_path, h->socket_path);
        case EACCES:
        case EPERM:
                /* HAProxy may well run: the check itself cannot. */
                return haproxy_fail(p, PROBE_UNKNOWN,
                                    "haproxy runtime API %s: %s: the agent needs read and write access "
                                    "(socket mode 660 and the agent in the socket's group)",
                                    h->socket_path, strerror(error));
        case EAGAIN:
                /* AF_UNIX answers a full listen backlog with EAGAIN. */
                return haproxy_fail(p, PROBE_CRITICAL,
                                    "haproxy runtime API %s: haproxy does not accept connections (listen backlog full)",
                                    h->socket_path);
        case ECONNREFUSED:
                return haproxy_fail(p, PROBE_CRITICAL,
                                    "haproxy runtime API %s: connect failed: %s: haproxy is not running",
                                    h->socket_path, strerror(error));
        default:
                return haproxy_fail(p, PROBE_CRITICAL, "haproxy runtime API %s: connect failed: %s", h->socket_path,
                                    strerror(error));
        }
}

/* The first line of a section, for reasons ("Permission denied."). */
static void first_line(const HaproxySection *s, char *buf, size_t size) {
        size_t n = 0;

        while (n < s->len && n + 1 < size && s->text[n] != '\n' && s->text[n] != '\r') {
                unsigned char c = (unsigned char) s->text[n];
                buf[n] = c < 0x20 || c >= 0x7f ? '?' : (char) c;
                n++;
        }
        buf[n] = 0;
}

/* HAProxy answers a command it refuses with one line of text ("Unknown
 * command", "Permission denied."), where the command's output was due. */
static bool section_refused(const HaproxySection *s, const char *expected_start) {
        size_t n = strlen(expected_start);
        bool empty = s->len == 0 || s->text[0] == '\n' || s->text[0] == '\r';

        return !empty && (s->len < n || strncmp(s->text, expected_start, n) != 0);
}

static bool addr_port_is(const char *addr, unsigned port) {
        const char *colon = strrchr(addr, ':');
        char want[8];

        snprintf(want, sizeof want, "%u", port);
        return colon && streq(colon + 1, want);
}

typedef struct Verdict {
        ProbeStatus status;
        Buf critical;
        Buf warning;
        Buf notes;
} Verdict;

static void verdict_done(Verdict *v) {
        buf_done(&v->critical);
        buf_done(&v->warning);
        buf_done(&v->notes);
}

static void verdict_add(Verdict *v, ProbeStatus s, const char *fmt, ...) _printf_(3, 4);
static void verdict_add(Verdict *v, ProbeStatus s, const char *fmt, ...) {
        Buf *b = s == PROBE_CRITICAL ? &v->critical : &v->warning;
        va_list ap;

        v->status = probe_status_worst(v->status, s);
        if (b->len > 0)
                (void) buf_puts(b, "; ");
        va_start(ap, fmt);
        (void) buf_vprintf(b, fmt, ap);
        va_end(ap);
}

static void judge_servers(Probe *p, const HaproxyStat *stat, Verdict *v, size_t *ret_n_up, size_t *ret_n_backends) {
        _cleanup_(buf_done) Buf down = BUF_INIT(2048);
        size_t n_series = 0, n_backend_series = 0, n_down = 0, n_up = 0, n_backends = 0, n_omitted = 0;

        for (size_t i = 0; i < stat->n_rows; i++) {
                const HaproxyStatRow *row = &stat->rows[i];

                if (row->type == HAPROXY_BACKEND) {
                        size_t servers = 0, up = 0;
                        _cleanup_(buf_done) Buf states = BUF_INIT(1024);

                        n_backends++;
                        if (n_backend_series++ < HAPROXY_BACKEND_SERIES_MAX)
                                (void) probe_add_sample(p, &family_backend_active, (double) row->act, "proxy",
                                                        row->proxy, NULL);
                        for (size_t j = 0; j < stat->n_rows; j++) {
                                const HaproxyStatRow *s = &stat->rows[j];
                                if (s->type != HAPROXY_SERVER || !streq(s->proxy, row->proxy))
                                        continue;
                                servers++;
                                if (haproxy_state_from_status(s->status) == HAPROXY_STATE_UP)
                                        up++;
                                else
                                        (void) buf_printf(&states, "%s%s %s", states.len > 0 ? ", " : "", s->server,
                                                          s->status);
                        }
                        /* A backend without servers (redirects, stats) serves on its own. */
                        if (servers > 0 && up == 0)
                                verdict_add(v, PROBE_CRITICAL,
                                            "backend %s has no server up (%s): clients of it get errors",
                                            row->proxy, states.data ?: "");
                        continue;
                }
                if (row->type != HAPROXY_SERVER)
                        continue;

                HaproxyState state = haproxy_state_from_status(row->status);
                if (state == HAPROXY_STATE_UP)
                        n_up++;
                if (state == HAPROXY_STATE_DOWN) {
                        n_down++;
                        if (down.len < 1024)
                                (void) buf_printf(&down, "%s%s/%s", down.len > 0 ? ", " : "", row->proxy,
                                                  row->server);
                }
                if (n_series >= HAPROXY_SERVER_SERIES_MAX) {
                        n_omitted++;
                        continue;
                }
                n_series++;
                for (HaproxyState s = 0; s < _HAPROXY_STATE_MAX; s++)
                        (void) probe_add_sample(p, &family_server_status, s == state ? 1 : 0, "proxy", row->proxy,
                                                "server", row->server, "state", haproxy_state_to_string(s), NULL);
        }
        if (n_down > 0)
                verdict_add(v, PROBE_WARNING, "%zu server%s DOWN: %s%s", n_down, n_down == 1 ? "" : "s",
                            down.data ?: "", down.len >= 1024 ? ", ..." : "");
        if (n_omitted > 0)
                (void) buf_printf(&v->notes, " (series of %zu servers beyond %d left out)", n_omitted,
                                  HAPROXY_SERVER_SERIES_MAX);
        *ret_n_up = n_up;
        *ret_n_backends = n_backends;
}

static void judge_peers(Probe *p, const HaproxyPeers *peers, Verdict *v, size_t *ret_n_established) {
        HaproxyProbe *h = probe_get_userdata(p);
        size_t n_remote = 0, n_established = 0, n_series = 0;

        for (size_t i = 0; i < peers->n_peers; i++) {
                const HaproxyPeer *peer = &peers->peers[i];
                bool esta = streq(peer->status, "ESTA");

                if (peer->local)
                        continue;
                if (n_series++ < HAPROXY_PEER_SERIES_MAX)
                        (void) probe_add_sample(p, &family_peer_connected, esta ? 1 : 0, "peer", peer->name, NULL);
                if (!addr_port_is(peer->addr, h->peer_port))
                        continue;
                n_remote++;
                if (esta)
                        n_established++;
                else
                        verdict_add(v, PROBE_WARNING,
                                    "peer %s (%s) is %s, not ESTA: stick tables are not synchronised with it; "
                                    "check that haproxy runs there and port %u is open between the nodes",
                                    peer->name, peer->addr, peer->status, h->peer_port);
        }
        if (h->expected_peers > 0 && n_remote != h->expected_peers)
                verdict_add(v, PROBE_CRITICAL,
                            "haproxy has %zu remote peer%s on port %u, expected %u: the peers sections differ "
                            "between nodes",
                            n_remote, n_remote == 1 ? "" : "s", h->peer_port, h->expected_peers);
        *ret_n_established = n_established;
}

static void judge_tables(Probe *p, const HaproxyTables *tables, Verdict *v) {
        HaproxyProbe *h = probe_get_userdata(p);

        for (size_t i = 0; i < tables->n_tables; i++) {
                const HaproxyTable *t = &tables->tables[i];

                if (i < HAPROXY_TABLE_SERIES_MAX) {
                        (void) probe_add_sample(p, &family_table_used, (double) t->used, "table", t->name, NULL);
                        (void) probe_add_sample(p, &family_table_size, (double) t->size, "table", t->name, NULL);
                }
                /* used * 100 > size * percent, in floating point: no overflow. */
                if (t->size > 0 && (double) t->used * 100.0 > (double) t->size * h->stick_table_warning)
                        verdict_add(v, PROBE_WARNING,
                                    "stick table %s is %.0f%% full (%" PRIu64 " of %" PRIu64
                                    "): new clients lose their binding to a node; raise its size",
                                    t->name, (double) t->used * 100.0 / (double) t->size, t->used, t->size);
        }
}

static int haproxy_judge(Probe *p) {
        HaproxyProbe *h = probe_get_userdata(p);
        _cleanup_(haproxy_info_done) HaproxyInfo info = {};
        _cleanup_(haproxy_stat_done) HaproxyStat stat = {};
        _cleanup_(haproxy_peers_done) HaproxyPeers peers = {};
        _cleanup_(haproxy_tables_done) HaproxyTables tables = {};
        _cleanup_(verdict_done) Verdict v = {
                .critical = BUF_INIT(4096),
                .warning = BUF_INIT(4096),
                .notes = BUF_INIT(256),
        };
        _cleanup_(buf_done) Buf reason = BUF_INIT(8192);
        static const char *const commands[] = { "show info", "show stat", "show peers", "show table" };
        static const char *const starts[] = { "Name: ", "# ", "0x", "# table:" };
        HaproxySection sections[4];
        const char *error = NULL;
        char line[128];
        int r;

        r = haproxy_split_sections(h->answer.data ?: "", h->answer.len, sections, ELEMENTSOF(sections));
        if (r < 0)
                return haproxy_fail(p, PROBE_UNKNOWN,
                                    "haproxy runtime API %s: the answer ended before all four commands were "
                                    "answered (%zu bytes)",
                                    h->socket_path, h->answer.len);
        for (size_t i = 0; i < ELEMENTSOF(sections); i++)
                if (section_refused(&sections[i], starts[i])) {
                        first_line(&sections[i], line, sizeof line);
                        return haproxy_fail(p, PROBE_UNKNOWN,
                                            "haproxy refused '%s' on %s: '%s': the stats socket needs 'level admin'",
                                            commands[i], h->socket_path, line);
                }

        r = haproxy_info_parse(sections[0].text, sections[0].len, &info, &error);
        if (r >= 0)
                r = haproxy_stat_parse(sections[1].text, sections[1].len, &stat, &error);
        if (r >= 0)
                r = haproxy_peers_parse(sections[2].text, sections[2].len, &peers, &error);
        if (r >= 0)
                r = haproxy_tables_parse(sections[3].text, sections[3].len, &tables, &error);
        if (r == -ENOMEM)
                return probe_finish_errno(p, r, "cannot parse the haproxy answer");
        if (r < 0)
                return haproxy_fail(p, PROBE_UNKNOWN, "haproxy runtime API %s: cannot read the answer: %s",
                                    h->socket_path, error);

        (void) probe_add_sample(p, &family_up, 1, NULL);
        if (info.have_curr_conns)
                (void) probe_add_sample(p, &family_current_connections, (double) info.curr_conns, NULL);

        size_t n_up, n_backends, n_established;
        judge_servers(p, &stat, &v, &n_up, &n_backends);
        judge_peers(p, &peers, &v, &n_established);
        judge_tables(p, &tables, &v);

        if (v.critical.len > 0)
                (void) buf_puts(&reason, v.critical.data);
        if (v.warning.len > 0)
                (void) buf_printf(&reason, "%s%s", reason.len > 0 ? "; " : "", v.warning.data);
        if (reason.len == 0)
                (void) buf_printf(&reason, "haproxy %s: %zu backend%s, %zu server%s up, %zu peer%s established",
                                  info.version, n_backends, n_backends == 1 ? "" : "s", n_up, n_up == 1 ? "" : "s",
                                  n_established, n_established == 1 ? "" : "s");
        if (v.notes.len > 0)
                (void) buf_puts(&reason, v.notes.data);
        add_manageable_sample(p, true, &reason);
        return probe_finish(p, v.status, "%s", reason.data ?: "");
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        HaproxyProbe *h = probe_get_userdata(p);
        static const char command[] = HAPROXY_COMMAND;

        if (h->written < sizeof command - 1) {
                int error = 0;
                socklen_t len = sizeof error;

                if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        return probe_finish_errno(p, -errno, "cannot read the connect result");
                if (error != 0)
                        return haproxy_connect_failed(p, error);

                ssize_t n = send(h->fd, command + h->written, sizeof command - 1 - h->written, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0)
                        return haproxy_fail(p, PROBE_CRITICAL, "haproxy runtime API %s: sending the command failed: %m",
                                            h->socket_path);
                h->written += (size_t) n;
                if (h->written < sizeof command - 1)
                        return 0;
                probe_set_phase(p, "reading the runtime API answer");
                return sd_event_source_set_io_events(h->io, EPOLLIN);
        }

        for (;;) {
                char chunk[16384];
                ssize_t n = recv(h->fd, chunk, sizeof chunk, MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0)
                        return haproxy_fail(p, PROBE_CRITICAL, "haproxy runtime API %s: reading the answer failed: %m",
                                            h->socket_path);
                if (n == 0)
                        return haproxy_judge(p);
                if (buf_append(&h->answer, chunk, (size_t) n) < 0)
                        return haproxy_fail(p, PROBE_UNKNOWN, "haproxy runtime API %s: the answer exceeds %d MiB",
                                            h->socket_path, HAPROXY_ANSWER_MAX / (1024 * 1024));
        }
}

static int haproxy_start(Probe *p) {
        HaproxyProbe *h = probe_get_userdata(p);
        int r;

        h->written = 0;
        buf_reset(&h->answer);
        h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (h->fd < 0)
                return probe_finish_errno(p, -errno, "cannot create a socket");
        h->fd_open = true;

        probe_set_phase(p, "connecting to the runtime API");
        if (connect(h->fd, &h->sockaddr.sa, h->sockaddr_len) < 0 && errno != EINPROGRESS)
                return haproxy_connect_failed(p, errno);

        r = sd_event_add_io(probe_get_event(p), &h->io, h->fd, EPOLLOUT, on_io, p);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot watch the socket");
        return 0;
}

const ProbeType probe_type_haproxy = {
        .name = "haproxy",
        .object_size = sizeof(HaproxyProbe),
        .config_items = haproxy_config_items,
        .default_interval = 10 * USEC_PER_SEC,
        .default_timeout = 3 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 2,
        .verify = haproxy_verify,
        .setup = haproxy_setup,
        .start = haproxy_start,
        .stop = haproxy_stop,
        .done = haproxy_done,
};
