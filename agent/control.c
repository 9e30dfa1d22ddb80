/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's side of the control socket. Every client is served on the
 * event loop without ever blocking it: a client that sends half a request
 * and stalls holds only its own connection, until its deadline drops it. */

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "build-config.h"
#include "cluster.h"
#include "control.h"
#include "control.pb-c.h"
#include "lib/control-proto.h"
#include "lib/log.h"
#include "node.h"

/* How long to stop accepting after running out of file descriptors, rather
 * than spinning on a listening socket that stays readable. */
#define CONTROL_ACCEPT_RETRY_USEC (1U * USEC_PER_SEC)

typedef struct ControlConnection ControlConnection;

struct ControlConnection {
        ControlServer *server;
        ControlConnection *prev, *next;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        ControlReader reader;
        ControlWriter writer;
};

struct ControlServer {
        Manager *manager;
        char *path;
        int fd;
        bool bound; /* the socket file is ours to remove */
        gid_t gid;  /* the socket's group: its members may change the node */
        sd_event_source *io;
        sd_event_source *accept_retry;
        ControlConnection *connections;
        unsigned n_connections;
};

static const char *strempty(const char *s) {
        return s ?: "";
}

static ControlConnection *connection_free(ControlConnection *c) {
        if (!c)
                return NULL;

        if (c->server) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->server->connections = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->server->n_connections--;
        }
        /* Safe from inside the connection's own callbacks: sd-event defers
         * freeing a source that is being dispatched. */
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        control_reader_done(&c->reader);
        control_writer_done(&c->writer);
        free(c);
        return NULL;
}

static void fill_node_state(const Manager *m, Rupost__Control__NodeState *ns) {
        const NodeState *st;
        double since;

        rupost__control__node_state__init(ns);
        if (!m->node)
                return; /* healing_enabled = false says it all */

        st = node_get_state(m->node);
        since = usec_to_seconds(node_state_since(m->node));
        ns->healing_enabled = true;
        ns->state = (char *) strempty(node_state_to_string(st->id));
        ns->reason = (char *) st->reason;
        ns->since = since;
        ns->recovery_attempts = st->attempts;
        ns->max_attempts = m->config ? m->config->healing.max_attempts : 0;
        /* The backoff is armed in the same step that withdraws the node, and
         * is cleared once it expired (the node then waits for the group to
         * finish stopping). */
        if (st->id == NODE_WITHDRAWN && st->backoff > 0)
                ns->next_attempt_at = since + usec_to_seconds(st->backoff);
        ns->maintenance = st->id == NODE_MAINTENANCE;
}

#define TIME_OFFSET_FAMILY "rupost_time_offset_seconds"

static bool sample_is_offset(const Sample *x) {
        return x->family && streq(x->family->name, TIME_OFFSET_FAMILY);
}

/* The samples of every probe's latest run, one array for the whole response
 * (samples[i] of probe i start at *ret_first[i]). Clock offsets go first, so
 * that a probe with many other series never crowds the skew table out; past
 * the per-probe and per-response bounds (control.h) samples are counted, not
 * sent. */
typedef struct SampleBudget {
        Rupost__Control__Sample *samples;
        Rupost__Control__Sample **ptrs;
        size_t n;
        size_t bytes;
} SampleBudget;

static void fill_samples(SampleBudget *b, const Probe *p, Rupost__Control__ProbeState *st) {
        size_t first = b->n;

        st->samples = b->ptrs + first;
        if (!p->have_result)
                return;
        for (int pass = 0; pass < 2; pass++)
                for (size_t j = 0; j < p->last.n_samples; j++) {
                        const Sample *x = &p->last.samples[j];
                        Rupost__Control__Sample *out;
                        size_t cost;

                        if (sample_is_offset(x) != (pass == 0))
                                continue;
                        cost = strlen(x->family ? x->family->name : "") + strlen(x->labels ?: "") +
                               CONTROL_SAMPLE_OVERHEAD;
                        if (b->n - first >= CONTROL_SAMPLES_PER_PROBE || b->bytes + cost > CONTROL_SAMPLES_MAX_BYTES) {
                                st->samples_omitted++;
                                continue;
                        }
                        out = &b->samples[b->n];
                        rupost__control__sample__init(out);
                        out->family = (char *) strempty(x->family ? x->family->name : NULL);
                        out->labels = (char *) strempty(x->labels);
                        out->value = x->value;
                        b->ptrs[b->n++] = out;
                        b->bytes += cost;
                }
        st->n_samples = b->n - first;
}

/* "local", "shared 2/3" or "unknown" for a critical probe on a node with a
 * cluster section; "" otherwise. */
static void fill_scope(const Manager *m, const Probe *p, Rupost__Control__ProbeState *st, char *buf, size_t len) {
        unsigned live, same;

        st->scope = (char *) "";
        if (!m->cluster || p->status != PROBE_CRITICAL)
                return;
        same = cluster_peers_failing(m->cluster, p->name, &live);
        if (live == 0) {
                st->scope = (char *) "unknown";
                return;
        }
        st->peers_failing = same;
        st->live_peers = live;
        if (same == 0)
                st->scope = (char *) "local";
        else {
                snprintf(buf, len, "shared %u/%u", same, live);
                st->scope = buf;
        }
}

/* Packs one response with the node's state and, for STATUS, every probe.
 * The strings are borrowed: the response only lives until it is packed,
 * within this call. */
static int pack_status(ControlServer *s, bool with_probes, uint8_t **ret, size_t *ret_size) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        Rupost__Control__NodeState node_state;
        _cleanup_free_ Rupost__Control__ProbeState *states = NULL;
        _cleanup_free_ Rupost__Control__ProbeState **ptrs = NULL;
        _cleanup_free_ Rupost__Control__Sample *samples = NULL;
        _cleanup_free_ Rupost__Control__Sample **sample_ptrs = NULL;
        _cleanup_free_ char (*scopes)[32] = NULL;
        SampleBudget budget = {};
        size_t n, n_samples = 0;
        Probe **probes;

        probes = manager_probes(s->manager, &n);
        if (!with_probes)
                n = 0;
        for (size_t i = 0; i < n; i++)
                if (probes[i]->have_result)
                        n_samples += MIN(probes[i]->last.n_samples, (size_t) CONTROL_SAMPLES_PER_PROBE);
        if (n > 0) {
                states = calloc(n, sizeof *states);
                ptrs = calloc(n, sizeof *ptrs);
                scopes = calloc(n, sizeof *scopes);
                samples = calloc(MAX(n_samples, 1U), sizeof *samples);
                sample_ptrs = calloc(MAX(n_samples, 1U), sizeof *sample_ptrs);
                if (!states || !ptrs || !scopes || !samples || !sample_ptrs)
                        return -ENOMEM;
        }
        budget.samples = samples;
        budget.ptrs = sample_ptrs;

        for (size_t i = 0; i < n; i++) {
                const Probe *p = probes[i];
                Rupost__Control__ProbeState *st = &states[i];

                rupost__control__probe_state__init(st);
                st->name = (char *) strempty(p->name);
                st->type = (char *) strempty(p->type ? p->type->name : NULL);
                st->status = (char *) strempty(probe_status_to_string(p->status));
                st->have_result = p->have_result;
                if (p->have_result) {
                        st->last_status = (char *) strempty(probe_status_to_string(p->last.status));
                        st->reason = (char *) strempty(p->last.reason);
                        st->last_run_at = usec_to_seconds(p->last.started_realtime);
                        st->duration_seconds = usec_to_seconds(p->last.duration);
                }
                st->changed_at = usec_to_seconds(p->changed_realtime);
                st->runs = p->n_runs;
                st->timeouts = p->n_timeouts;
                st->running = p->running;
                fill_samples(&budget, p, st);
                fill_scope(s->manager, p, st, scopes[i], sizeof scopes[i]);
                ptrs[i] = st;
        }

        fill_node_state(s->manager, &node_state);
        resp.node = (char *) strempty(manager_node_name(s->manager));
        resp.version = (char *) PROJECT_VERSION;
        resp.start_time = usec_to_seconds(s->manager->start_realtime);
        resp.n_probes = n;
        resp.probes = ptrs;
        resp.node_state = &node_state;

        return control_frame_pack(&resp.base, CONTROL_MAX_MESSAGE, ret, ret_size);
}

static int pack_error(const char *error, uint8_t **ret, size_t *ret_size) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;

        resp.error = (char *) error;
        resp.version = (char *) PROJECT_VERSION;
        return control_frame_pack(&resp.base, CONTROL_MAX_MESSAGE, ret, ret_size);
}

static int connection_flush(ControlConnection *c) {
        int r;

        r = control_writer_write_fd(&c->writer, c->fd);
        if (r == -EAGAIN)
                return 0;
        if (r < 0)
                log_debug_errno(r, "Control client went away before its response was written: %m");
        /* One request, one response: done either way. */
        connection_free(c);
        return 0;
}

static int connection_respond(ControlConnection *c, uint8_t *data, size_t size) {
        int r;

        control_writer_set(&c->writer, data, size);
        r = sd_event_source_set_io_events(c->io, EPOLLOUT);
        if (r < 0) {
                log_debug_errno(r, "Failed to wait for the control client to take its response: %m");
                connection_free(c);
                return 0;
        }
        return connection_flush(c);
}

static int connection_respond_error(ControlConnection *c, const char *fmt, ...) _printf_(2, 3);
static int connection_respond_error(ControlConnection *c, const char *fmt, ...) {
        char error[256];
        uint8_t *data;
        size_t size;
        va_list ap;
        int r;

        va_start(ap, fmt);
        (void) vsnprintf(error, sizeof error, fmt, ap);
        va_end(ap);
        log_debug("Rejecting control request: %s", error);

        r = pack_error(error, &data, &size);
        if (r < 0) {
                log_debug_errno(r, "Failed to pack a control error response: %m");
                connection_free(c);
                return 0;
        }
        return connection_respond(c, data, size);
}

static int connection_respond_status(ControlConnection *c, bool with_probes, const char *kind) {
        uint8_t *data;
        size_t size;
        int r;

        r = pack_status(c->server, with_probes, &data, &size);
        if (r == -EMSGSIZE)
                return connection_respond_error(c, "the status is larger than %u bytes", CONTROL_MAX_MESSAGE);
        if (r < 0)
                return connection_respond_error(c, "failed to build the status: %s", strerror(-r));
        log_debug("Answering a control %s request with %zu bytes.", kind, size);
        return connection_respond(c, data, size);
}

static bool gid_in(gid_t gid, const gid_t *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (list[i] == gid)
                        return true;
        return false;
}

/* Reaching the socket (mode 0660) is enough to read the node's state, but
 * changing it is for root, the agent's own user, and members of the socket's
 * group, on-call operators: their peer credentials, as the kernel recorded
 * them at connect(), say who they are. Returns 1 when allowed, 0 when not. */
static int peer_may_change_node(ControlConnection *c, struct ucred *ret_cred) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        _cleanup_free_ gid_t *groups = NULL;
        socklen_t glen = 64 * sizeof(gid_t);

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        *ret_cred = cred;
        if (cred.uid == 0 || cred.uid == geteuid() || cred.gid == c->server->gid)
                return 1;

        /* The supplementary groups, as the kernel knows them: no NSS lookup
         * that could block the loop. */
        for (;;) {
                gid_t *g = realloc(groups, glen);

                if (!g)
                        return -ENOMEM;
                groups = g;
                if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) >= 0)
                        break;
                if (errno != ERANGE || glen > 65536 * sizeof(gid_t))
                        return -errno;
        }
        return gid_in(c->server->gid, groups, glen / sizeof(gid_t));
}

/* The index of the first control character, or -1: the reason goes to the
 * journal, the state file (one key=value per line) and HAProxy's stats. */
static ssize_t find_control_character(const char *s) {
        for (size_t i = 0; s[i]; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return (ssize_t) i;
        return -1;
}

static int handle_maintenance(ControlConnection *c, const Rupost__Control__Request *req) {
        Manager *m = c->server->manager;
        const char *reason = strempty(req->maintenance_reason);
        struct ucred cred = {};
        ssize_t bad;
        size_t l;
        int r;

        r = peer_may_change_node(c, &cred);
        if (r < 0)
                return connection_respond_error(c, "failed to learn who is asking: %s", strerror(-r));
        if (r == 0) {
                log_notice("Refused to switch maintenance %s for uid %u (pid %d): not root and "
                           "not in the control socket's group.",
                           req->maintenance_on ? "on" : "off", cred.uid, cred.pid);
                return connection_respond_error(c,
                                                "permission denied: switching maintenance needs root or "
                                                "membership in the group of the control socket ('%s'); "
                                                "uid %u is neither",
                                                CONTROL_SOCKET_GROUP, cred.uid);
        }

        if (!m->node)
                return connection_respond_error(c, "healing is not configured on this node: maintenance has no effect");

        if (req->maintenance_on) {
                l = strlen(reason);
                if (l == 0)
                        return connection_respond_error(c, "a reason is required to switch maintenance on");
                if (l > CONTROL_MAINTENANCE_REASON_MAX)
                        return connection_respond_error(c, "the maintenance reason is %zu bytes long, the limit is %u",
                                                        l, CONTROL_MAINTENANCE_REASON_MAX);
                bad = find_control_character(reason);
                if (bad >= 0)
                        return connection_respond_error(c,
                                                        "the maintenance reason has a control character (0x%02x) "
                                                        "at byte %zd",
                                                        (unsigned) (unsigned char) reason[bad], bad);
        }

        r = node_set_maintenance(m->node, req->maintenance_on, req->maintenance_on ? reason : NULL);
        if (r < 0)
                return connection_respond_error(c, "failed to switch maintenance %s: %s",
                                                req->maintenance_on ? "on" : "off", strerror(-r));
        log_notice("Maintenance switched %s by uid %u (pid %d)%s%s", req->maintenance_on ? "on" : "off",
                   cred.uid, cred.pid, req->maintenance_on ? ": " : ".", req->maintenance_on ? reason : "");
        return connection_respond_status(c, false, "MAINTENANCE");
}

/* The cluster registry's last view (cluster.h), one ClusterNode per node,
 * this one included, sorted by name. The lease age is the time since the
 * node's last renewal on the DB server's clock. While this node cannot reach
 * the DB the view is the last one it read and every age grows on, which is
 * what an operator should see then: nobody's lease is known to be renewed.
 * The strings are borrowed from the view, which lives until the next return
 * to the event loop. */
static int pack_cluster(ControlServer *s, uint8_t **ret, size_t *ret_size) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        const Manager *m = s->manager;
        _cleanup_free_ Rupost__Control__ClusterNode *entries = NULL;
        _cleanup_free_ Rupost__Control__ClusterNode **ptrs = NULL;
        const ClusterNode *nodes;
        size_t n = cluster_nodes(m->cluster, &nodes);

        if (n > 0) {
                entries = calloc(n, sizeof *entries);
                ptrs = calloc(n, sizeof *ptrs);
                if (!entries || !ptrs)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                Rupost__Control__ClusterNode *e = &entries[i];

                rupost__control__cluster_node__init(e);
                e->name = (char *) strempty(nodes[i].name);
                /* As stored: a newer agent's state this one cannot parse
                 * is still worth showing. */
                e->state = (char *) strempty(nodes[i].state_string);
                e->reason = (char *) strempty(nodes[i].reason);
                e->lease_age_seconds = cluster_node_lease_age(&nodes[i]);
                e->updated_at = usec_to_seconds(nodes[i].updated_at);
                ptrs[i] = e;
        }

        resp.node = (char *) strempty(manager_node_name(m));
        resp.version = (char *) PROJECT_VERSION;
        resp.start_time = usec_to_seconds(m->start_realtime);
        resp.n_cluster = n;
        resp.cluster = ptrs;
        return control_frame_pack(&resp.base, CONTROL_MAX_MESSAGE, ret, ret_size);
}

static int handle_cluster(ControlConnection *c) {
        const Manager *m = c->server->manager;
        const ClusterNode *nodes;
        uint8_t *data;
        size_t size;
        int r;

        if (!m->cluster || !m->config)
                return connection_respond_error(c, "the cluster state is not configured on this node: "
                                                   "the agent does not share its state with other nodes");
        /* Before the first view an empty list would read as "no nodes
         * registered", which is not what we know. */
        if (cluster_nodes(m->cluster, &nodes) == 0 && !cluster_db_ok(m->cluster))
                return connection_respond_error(c, "the cluster database has not been read yet: %s",
                                                cluster_last_error(m->cluster));

        r = pack_cluster(c->server, &data, &size);
        if (r == -EMSGSIZE)
                return connection_respond_error(c, "the cluster view is larger than %u bytes", CONTROL_MAX_MESSAGE);
        if (r < 0)
                return connection_respond_error(c, "failed to build the cluster view: %s", strerror(-r));
        log_debug("Answering a control CLUSTER request with %zu bytes.", size);
        return connection_respond(c, data, size);
}

static int connection_dispatch(ControlConnection *c) {
        _cleanup_(control_message_freep) ProtobufCMessage *msg = NULL;
        const Rupost__Control__Request *req;
        int r;

        r = control_reader_unpack(&c->reader, &rupost__control__request__descriptor, &msg);
        if (r < 0)
                return connection_respond_error(c, "malformed request: %zu bytes that are not a Request message",
                                                c->reader.length);
        req = (const Rupost__Control__Request *) msg;

        switch (req->kind) {
        case RUPOST__CONTROL__REQUEST__KIND__STATUS:
                return connection_respond_status(c, true, "STATUS");
        case RUPOST__CONTROL__REQUEST__KIND__MAINTENANCE:
                return handle_maintenance(c, req);
        case RUPOST__CONTROL__REQUEST__KIND__CLUSTER:
                return handle_cluster(c);
        default:
                return connection_respond_error(c, "unknown request kind %d", (int) req->kind);
        }
}

static int on_connection_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        ControlConnection *c = userdata;
        int r;

        if (c->writer.data)
                return connection_flush(c);

        r = control_reader_read_fd(&c->reader, c->fd);
        if (r == -EAGAIN)
                return 0;
        if (r == -EMSGSIZE) {
                size_t announced;
                (void) control_frame_parse_header(c->reader.header, SIZE_MAX, &announced);
                return connection_respond_error(c, "request too large: %zu bytes announced, the limit is %u",
                                                announced, CONTROL_MAX_MESSAGE);
        }
        if (r == -EPIPE) {
                /* The client may have only shut down its sending side and
                 * still be reading, so tell it. */
                if (!c->reader.have_length)
                        return connection_respond_error(c, "truncated request: %zu of %u length bytes",
                                                        c->reader.n_header, CONTROL_FRAME_HEADER_SIZE);
                return connection_respond_error(c, "truncated request: %zu of %zu bytes", c->reader.n_body,
                                                c->reader.length);
        }
        if (r < 0) {
                log_debug_errno(r, "Failed to read a control request: %m");
                connection_free(c);
                return 0;
        }

        return connection_dispatch(c);
}

static int on_connection_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        ControlConnection *c = userdata;

        log_debug("Dropping a control client that did not finish its exchange in time.");
        connection_free(c);
        return 0;
}

static int connection_new(ControlServer *s, int fd) {
        _cleanup_close_ int fd_owned = fd;
        ControlConnection *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (ControlConnection) {
                .server = s,
                .fd = TAKE_FD(fd_owned),
                .reader = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE),
                .next = s->connections,
        };
        if (s->connections)
                s->connections->prev = c;
        s->connections = c;
        s->n_connections++;

        r = sd_event_add_io(s->manager->event, &c->io, c->fd, EPOLLIN, on_connection_io, c);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(s->manager->event, &c->timer, CLOCK_MONOTONIC,
                                       CONTROL_CONNECTION_TIMEOUT_USEC, 0, on_connection_timeout, c);
        if (r < 0)
                goto fail;
        return 0;

fail:
        connection_free(c);
        return r;
}

/* Tells a client over the limit to come back later, without waiting for it:
 * a fresh socket's send buffer always has room for this short message. */
static void reject_busy(int fd) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;

        if (pack_error("the agent is busy: too many control clients at once, try again", &data, &size) < 0)
                return;
        (void) send(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static int on_accept_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        ControlServer *s = userdata;

        s->accept_retry = sd_event_source_unref(s->accept_retry);
        (void) sd_event_source_set_enabled(s->io, SD_EVENT_ON);
        return 0;
}

static void pause_accepting(ControlServer *s) {
        int r;

        if (s->accept_retry)
                return;
        r = sd_event_add_time_relative(s->manager->event, &s->accept_retry, CLOCK_MONOTONIC,
                                       CONTROL_ACCEPT_RETRY_USEC, 0, on_accept_retry, s);
        if (r < 0)
                return; /* keep accepting; better spinning than deaf */
        (void) sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        int r;

        /* Bounded, so a flood of connections cannot starve the rest of the loop. */
        for (unsigned i = 0; i < CONTROL_MAX_CONNECTIONS; i++) {
                _cleanup_close_ int cfd = -EBADF;

                cfd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        r = log_warning_errno(errno, "Failed to accept a control connection, ignoring: %m");
                        if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM)
                                pause_accepting(s);
                        return 0;
                }

                if (s->n_connections >= CONTROL_MAX_CONNECTIONS) {
                        log_debug("Too many control clients at once, turning one away.");
                        reject_busy(cfd);
                        continue;
                }

                r = connection_new(s, TAKE_FD(cfd));
                if (r < 0)
                        log_warning_errno(r, "Failed to set up a control connection, ignoring: %m");
        }
        return 0;
}

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *slash = '/';
        }
        return 0;
}

/* Removes a socket left behind by an agent that died, but not one another
 * running agent still listens on, and nothing that is not a socket. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *sa, socklen_t salen) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* Non-blocking: a listener with a full backlog answers EAGAIN, which
         * means alive just as well. */
        if (connect(fd, (const struct sockaddr *) sa, salen) >= 0 || errno == EAGAIN)
                return -EADDRINUSE;

        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int control_socket_group_lookup(gid_t *ret) {
        const struct group *g;

        assert_return(ret, -EINVAL);

        /* Without the group, the socket stays root's alone; that is the safe side. */
        errno = 0;
        g = getgrnam(CONTROL_SOCKET_GROUP);
        if (!g) {
                if (errno != 0)
                        log_warning_errno(errno, "Failed to look up group '%s', ignoring: %m",
                                          CONTROL_SOCKET_GROUP);
                else
                        log_debug("Group '%s' does not exist, the control socket stays root-only.",
                                  CONTROL_SOCKET_GROUP);
                return 0;
        }
        *ret = g->gr_gid;
        return 1;
}

static int socket_give_to_group(const Manager *m, const char *path) {
        if (!m->have_control_group)
                return 0;
        if (chown(path, (uid_t) -1, m->control_group) < 0)
                return log_warning_errno(errno, "Failed to give control socket '%s' to group '%s', ignoring: %m",
                                         path, CONTROL_SOCKET_GROUP);
        return 0;
}

int control_server_new(Manager *m, const char *path, ControlServer **ret) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        mode_t old_umask;
        struct stat st;
        int r;

        assert_return(m, -EINVAL);
        assert_return(m->event, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);

        if (path[0] != '/')
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "Control socket path '%s' is not absolute.", path);
        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(SYNTHETIC_ERRNO(ENAMETOOLONG),
                                       "Control socket path '%s' is longer than %zu bytes.", path,
                                       sizeof sa.sun_path - 1);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        s = calloc(1, sizeof *s);
        if (!s)
                return log_oom();
        s->manager = m;
        s->fd = -EBADF;
        s->path = strdup(path);
        if (!s->path)
                return log_oom();

        r = mkdir_parents(path, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create the directory of control socket '%s': %m", path);

        r = remove_stale_socket(path, &sa, salen);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "Control socket '%s' is in use: is another rupost-agent running?", path);
        if (r == -EEXIST)
                return log_error_errno(r, "Control socket path '%s' exists and is not a socket.", path);
        if (r < 0)
                return log_error_errno(r, "Failed to remove stale control socket '%s': %m", path);

        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0)
                return log_error_errno(errno, "Failed to create the control socket: %m");

        /* Born without access for others, so there is no moment in which
         * anyone could connect before the chmod below. */
        old_umask = umask(0117);
        r = bind(s->fd, (const struct sockaddr *) &sa, salen);
        (void) umask(old_umask);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind control socket '%s': %m", path);
        s->bound = true;

        if (chmod(path, 0660) < 0)
                return log_error_errno(errno, "Failed to set the mode of control socket '%s': %m", path);
        (void) socket_give_to_group(m, path);
        /* Whatever group the socket ended up with is the one whose members
         * may change the node: root's own when the agent's group is missing. */
        if (stat(path, &st) < 0)
                return log_error_errno(errno, "Failed to check control socket '%s': %m", path);
        s->gid = st.st_gid;

        if (listen(s->fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on control socket '%s': %m", path);

        r = sd_event_add_io(m->event, &s->io, s->fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return log_error_errno(r, "Failed to watch control socket '%s': %m", path);

        log_debug("Listening on control socket '%s'.", path);
        *ret = TAKE_PTR(s);
        return 0;
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;

        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->accept_retry);
        safe_close(s->fd);
        if (s->bound && unlink(s->path) < 0 && errno != ENOENT)
                log_debug_errno(errno, "Failed to remove control socket '%s', ignoring: %m", s->path);
        free(s->path);
        free(s);
        return NULL;
}
