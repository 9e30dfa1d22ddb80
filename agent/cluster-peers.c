/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster-peers.h"
#include "lib/log.h"
#include "lib/sockaddr.h"

#define PEER_GREETING "rupost-agent-peer 1 "

int peer_line_format(char *buf, size_t len, const PeerAnswer *a) {
        int n = snprintf(buf, len, PEER_GREETING "%s db=%s state=%s members=%s\n", a->name, a->db_ok ? "ok" : "lost",
                         a->state[0] ? a->state : "unknown", a->members_ok ? "ok" : "failing");
        return n < 0 || (size_t) n >= len ? -ENOBUFS : 0;
}

static bool word_is(const char *w, size_t n, const char *s) {
        return strlen(s) == n && strncmp(w, s, n) == 0;
}

int peer_line_parse(const char *line, PeerAnswer *ret) {
        PeerAnswer a = {};
        bool have_db = false;
        const char *p;
        size_t n;

        if (strncmp(line, PEER_GREETING, strlen(PEER_GREETING)) != 0)
                return -EBADMSG;
        p = line + strlen(PEER_GREETING);
        n = strcspn(p, " \n");
        if (n == 0 || n >= sizeof a.name)
                return -EBADMSG;
        memcpy(a.name, p, n);
        for (p += n; *p == ' ';) {
                p++;
                n = strcspn(p, " \n");
                if (word_is(p, n, "db=ok") || word_is(p, n, "db=lost")) {
                        a.db_ok = p[3] == 'o';
                        have_db = true;
                } else if (word_is(p, n, "members=ok") || word_is(p, n, "members=failing"))
                        a.members_ok = p[8] == 'o';
                else if (n > 6 && strncmp(p, "state=", 6) == 0 && n - 6 < sizeof a.state) {
                        memcpy(a.state, p + 6, n - 6);
                        a.state[n - 6] = 0;
                }
                /* Other words are a later version's: ignored. */
                p += n;
        }
        if (!have_db || (*p != '\n' && *p != 0))
                return -EBADMSG;
        *ret = a;
        return 0;
}

/* ---- answering ---- */

struct PeerListener {
        int fd;
        sd_event_source *source;
        PeerAnswerFunc answer;
        void *userdata;
};

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        PeerListener *l = userdata;
        char line[PEER_LINE_MAX];

        /* One line and close, without waiting for anything: a peer that does
         * not read gets what fits in the socket buffer. */
        for (int i = 0; i < 16; i++) {
                _cleanup_close_ int a = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                PeerAnswer me = {};

                if (a < 0)
                        break;
                l->answer(&me, l->userdata);
                if (peer_line_format(line, sizeof line, &me) < 0)
                        continue;
                (void) send(a, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        return 0;
}

int peer_listener_new(sd_event *e, const char *address, PeerAnswerFunc answer, void *userdata,
                      PeerListener **ret) {
        union sockaddr_union sa;
        socklen_t len;
        int one = 1, r;

        r = sockaddr_parse(address, &sa, &len);
        if (r < 0)
                return log_error_errno(r, "Bad cluster peer address '%s'.", address);
        _cleanup_close_ int fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create the cluster peer socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa.sa.sa_family == AF_INET6) {
                int zero = 0;
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        }
        if (bind(fd, &sa.sa, len) < 0)
                return log_error_errno(errno, "Failed to bind the cluster peer port %s: %m", address);
        if (listen(fd, 64) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", address);

        _cleanup_(peer_listener_freep) PeerListener *l = calloc(1, sizeof *l);
        if (!l)
                return log_oom();
        l->fd = TAKE_FD(fd);
        l->answer = answer;
        l->userdata = userdata;
        r = sd_event_add_io(e, &l->source, l->fd, EPOLLIN, on_accept, l);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the cluster peer socket: %m");
        *ret = TAKE_PTR(l);
        return 0;
}

PeerListener *peer_listener_free(PeerListener *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->source);
        safe_close(l->fd);
        free(l);
        return NULL;
}

/* ---- asking ---- */

typedef struct PeerQuery {
        PeerPoll *poll;
        char *name;
        bool live;
        int fd;
        sd_event_source *io;
        char line[PEER_LINE_MAX];
        size_t n;
        bool connected;
        bool done;
} PeerQuery;

struct PeerPoll {
        PeerQuery *queries;
        size_t n;
        sd_event_source *timer;
        sd_event_source *defer;
        usec_t started;
        bool finished;
        PeerPollDone done;
        void *userdata;
};

static void query_close(PeerQuery *q) {
        q->io = sd_event_source_disable_unref(q->io);
        q->fd = safe_close(q->fd);
        q->done = true;
}

static void poll_finish(PeerPoll *p) {
        PeerPollResult r = { .started = p->started, .asked = (unsigned) p->n };
        size_t used = 0;

        if (p->finished)
                return;
        p->finished = true;
        for (size_t i = 0; i < p->n; i++) {
                PeerQuery *q = &p->queries[i];
                PeerAnswer a;
                bool reached = peer_line_parse(q->line, &a) >= 0 && memchr(q->line, '\n', q->n) &&
                               streq(a.name, q->name);

                query_close(q);
                r.live += q->live;
                if (reached) {
                        r.reached++;
                        r.ok += a.db_ok;
                        r.live_reached += q->live;
                        r.live_lost += q->live && !a.db_ok;
                        r.live_consent += q->live && !a.db_ok && streq(a.state, "in_service") && a.members_ok;
                } else if (q->live && used + strlen(q->name) + 2 < sizeof r.unreached)
                        used += (size_t) sprintf(r.unreached + used, "%s%s", used ? ", " : "", q->name);
        }
        p->timer = sd_event_source_disable_unref(p->timer);
        p->defer = sd_event_source_disable_unref(p->defer);
        p->done(&r, p->userdata);
}

static void poll_check_done(PeerPoll *p) {
        for (size_t i = 0; i < p->n; i++)
                if (!p->queries[i].done)
                        return;
        poll_finish(p);
}

static int on_query_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        PeerQuery *q = userdata;
        PeerPoll *p = q->poll;

        if (!q->connected) {
                int err = 0;
                socklen_t l = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err != 0) {
                        query_close(q);
                        poll_check_done(p);
                        return 0;
                }
                q->connected = true;
                (void) sd_event_source_set_io_events(s, EPOLLIN);
                return 0;
        }
        ssize_t n = recv(fd, q->line + q->n, sizeof q->line - 1 - q->n, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n > 0)
                q->n += (size_t) n;
        q->line[q->n] = 0;
        if (n <= 0 || memchr(q->line, '\n', q->n) || q->n == sizeof q->line - 1) {
                query_close(q);
                poll_check_done(p);
        }
        return 0;
}

static int on_poll_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        poll_finish(userdata);
        return 0;
}

static int on_poll_defer(sd_event_source *s, void *userdata) {
        poll_check_done(userdata);
        return 0;
}

int peer_poll_start(sd_event *e, const PeerTarget *targets, size_t n, usec_t timeout, PeerPollDone done,
                    void *userdata, PeerPoll **ret) {
        _cleanup_(peer_poll_freep) PeerPoll *p = NULL;
        int r;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->queries = calloc(MAX(n, (size_t) 1), sizeof *p->queries);
        if (!p->queries)
                return -ENOMEM;
        p->started = now(CLOCK_MONOTONIC);
        p->done = done;
        p->userdata = userdata;
        for (size_t i = 0; i < n; i++) {
                PeerQuery *q = &p->queries[p->n];
                union sockaddr_union sa;
                socklen_t len;

                *q = (PeerQuery) { .poll = p, .fd = -EBADF, .live = targets[i].live, .name = strdup(targets[i].name) };
                if (!q->name)
                        return -ENOMEM;
                p->n++;
                if (!targets[i].address || sockaddr_parse(targets[i].address, &sa, &len) < 0) {
                        q->done = true;
                        continue;
                }
                q->fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (q->fd < 0 || (connect(q->fd, &sa.sa, len) < 0 && errno != EINPROGRESS) ||
                    sd_event_add_io(e, &q->io, q->fd, EPOLLOUT, on_query_io, q) < 0)
                        query_close(q);
        }
        r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, timeout, USEC_PER_MSEC, on_poll_timeout, p);
        if (r < 0)
                return r;
        /* Every target may be done already (no address, refused at once):
         * report from the loop, never from within this call. */
        r = sd_event_add_defer(e, &p->defer, on_poll_defer, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

PeerPoll *peer_poll_free(PeerPoll *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n; i++) {
                query_close(&p->queries[i]);
                free(p->queries[i].name);
        }
        free(p->queries);
        sd_event_source_disable_unref(p->timer);
        sd_event_source_disable_unref(p->defer);
        free(p);
        return NULL;
}
