/* SPDX-License-Identifier: GPL-2.0-or-later */
/* memcached: the cache SOGo and the web client rely on answers, has room,
 * is sized by the product's rule, and stores and returns a value.
 *
 * Why the text protocol on the loop and not libmemcached (the design card's
 * choice): libmemcached's calls block (connect, then poll with its own
 * timeouts), so it would need a forked child per run; and for these three
 * commands the protocol is a few lines of text. One non-blocking connection
 * on the shared loop sends `stats`, `set rupost-agent:<node>` and
 * `get rupost-agent:<node>` in one pipelined write (memcached answers in
 * order), and the whole reply goes through a pure, fuzzed parser
 * (memcached-stats.c). The core's deadline bounds it like any other probe.
 *
 * Sizing (product guide, 2.6): 512 KiB per LDAP domain + 10 KiB per user,
 * given to memcached with -m in MiB. The server's `time` stat gives a coarse
 * (whole seconds) clock comparison, reported as a time offset sample. */

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/sockaddr.h"
#include "manager.h"
#include "memcached-stats.h"
#include "probes.h"

#define MIN_VERSION "1.4.33"
#define KIB ((uint64_t) 1024)
#define MIB ((uint64_t) 1024 * 1024)

typedef struct MemcachedProbe {
        /* configuration */
        char *address;
        unsigned ldap_domains;
        unsigned users;
        unsigned connections_warning; /* percent of max_connections */
        unsigned evictions_warning;   /* per minute */
        usec_t skew_warning;

        union sockaddr_union sockaddr;
        socklen_t sockaddr_len;

        /* one run */
        int fd;
        sd_event_source *io;
        bool connected;
        Buf request;
        size_t sent;
        Buf reply;
        char key[300];
        char value[32];
        usec_t started;

        /* across runs, for the eviction rate */
        uint64_t last_evictions;
        uint64_t last_uptime;
        usec_t last_realtime;
        bool have_last;
} MemcachedProbe;

#define DEFINE_GAUGE(var, n, h) static const MetricFamily var = { .name = n, .type = METRIC_GAUGE, .help = h }
#define DEFINE_COUNTER(var, n, h) static const MetricFamily var = { .name = n, .type = METRIC_COUNTER, .help = h }

DEFINE_GAUGE(family_current_connections, "rupost_memcached_current_connections", "Open connections to memcached.");
DEFINE_GAUGE(family_max_connections, "rupost_memcached_max_connections", "memcached's connection limit (-c).");
DEFINE_GAUGE(family_accepting, "rupost_memcached_accepting_connections",
             "Whether memcached accepts new connections (0 once it hit its connection limit).");
DEFINE_COUNTER(family_rejected, "rupost_memcached_connections_rejected_total",
               "Connections memcached rejected at its connection limit.");
DEFINE_COUNTER(family_listener_disabled, "rupost_memcached_connections_listener_disabled_total",
               "Times memcached stopped listening because it hit its connection limit.");
DEFINE_COUNTER(family_evicted, "rupost_memcached_items_evicted_total",
               "Items memcached evicted to make room: a sign it is too small.");
DEFINE_GAUGE(family_current_bytes, "rupost_memcached_current_bytes", "Bytes memcached uses for items.");
DEFINE_GAUGE(family_limit_bytes, "rupost_memcached_limit_bytes", "memcached's memory limit (-m).");
DEFINE_GAUGE(family_uptime, "rupost_memcached_uptime_seconds", "Seconds since memcached started.");
DEFINE_COUNTER(family_commands, "rupost_memcached_commands_total", "memcached commands by command and result.");
DEFINE_GAUGE(family_roundtrip, "rupost_memcached_roundtrip_duration_seconds",
             "Time from connecting to the last byte of the stats/set/get reply.");

static const ConfigItem memcached_config_items[] = {
        { "address",             config_parse_address,  offsetof(MemcachedProbe, address), .required = true },
        { "ldap_domains",        config_parse_uint,     offsetof(MemcachedProbe, ldap_domains),        0, 1000 },
        { "users",               config_parse_uint,     offsetof(MemcachedProbe, users),               0, 100000000 },
        { "connections_warning", config_parse_uint,     offsetof(MemcachedProbe, connections_warning), 1, 100 },
        { "evictions_warning",   config_parse_uint,     offsetof(MemcachedProbe, evictions_warning),   1, 100000000 },
        { "skew_warning",        config_parse_duration, offsetof(MemcachedProbe, skew_warning),        USEC_PER_SEC, USEC_PER_HOUR },
        {}
};

static int memcached_verify(Probe *p, ConfigContext *c) {
        MemcachedProbe *m = probe_get_userdata(p);

        if (sockaddr_parse(m->address, &m->sockaddr, &m->sockaddr_len) < 0)
                return config_error(c, NULL, "address",
                                    "'%s' is not a numeric IPv4 or IPv6 address with a port", m->address);
        m->connections_warning = m->connections_warning ?: 90;
        m->evictions_warning = m->evictions_warning ?: 600;
        /* The server's clock has whole seconds: below 2 s the reading is noise. */
        m->skew_warning = m->skew_warning ?: 2 * USEC_PER_SEC;
        m->fd = -EBADF;
        return 0;
}

static void memcached_stop(Probe *p) {
        MemcachedProbe *m = probe_get_userdata(p);

        m->io = sd_event_source_disable_unref(m->io);
        m->fd = safe_close(m->fd);
        buf_done(&m->request);
        buf_done(&m->reply);
        m->connected = false;
        m->sent = 0;
}

static void memcached_done(Probe *p) {
        MemcachedProbe *m = probe_get_userdata(p);

        memcached_stop(p);
        free(m->address);
}

static uint64_t required_bytes(const MemcachedProbe *m) {
        return 512 * KIB * m->ldap_domains + 10 * KIB * m->users;
}

static void add_samples(Probe *p, const MemcachedReply *r) {
        static const struct {
                MemcachedStat stat;
                const MetricFamily *family;
        } map[] = {
                { MEMCACHED_STAT_CURR_CONNECTIONS, &family_current_connections },
                { MEMCACHED_STAT_MAX_CONNECTIONS, &family_max_connections },
                { MEMCACHED_STAT_ACCEPTING_CONNS, &family_accepting },
                { MEMCACHED_STAT_REJECTED_CONNECTIONS, &family_rejected },
                { MEMCACHED_STAT_LISTEN_DISABLED_NUM, &family_listener_disabled },
                { MEMCACHED_STAT_EVICTIONS, &family_evicted },
                { MEMCACHED_STAT_BYTES, &family_current_bytes },
                { MEMCACHED_STAT_LIMIT_MAXBYTES, &family_limit_bytes },
                { MEMCACHED_STAT_UPTIME, &family_uptime },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (r->have[map[i].stat])
                        (void) probe_add_sample(p, map[i].family, (double) r->stats[map[i].stat], NULL);
        if (r->have[MEMCACHED_STAT_GET_HITS])
                (void) probe_add_sample(p, &family_commands, (double) r->stats[MEMCACHED_STAT_GET_HITS], "command",
                                        "get", "status", "hit", NULL);
        if (r->have[MEMCACHED_STAT_GET_MISSES])
                (void) probe_add_sample(p, &family_commands, (double) r->stats[MEMCACHED_STAT_GET_MISSES], "command",
                                        "get", "status", "miss", NULL);
        if (r->have[MEMCACHED_STAT_CMD_SET])
                (void) probe_add_sample(p, &family_commands, (double) r->stats[MEMCACHED_STAT_CMD_SET], "command",
                                        "set", "status", "hit", NULL);
}

static int memcached_judge(Probe *p, const MemcachedReply *r) {
        MemcachedProbe *m = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(1024);
        usec_t realtime = now(CLOCK_REALTIME);
        const uint64_t *s = r->stats;
        int ret;

        add_samples(p, r);
        (void) probe_add_sample(p, &family_roundtrip, usec_to_seconds(now(CLOCK_MONOTONIC) - m->started), NULL);

        if (!streq(r->set_result, "STORED"))
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "set of %s failed: memcached answered '%s'", m->key,
                       r->set_result);
        else if (!r->got_value)
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "%s was stored but get returned nothing: memcached drops items at once (out of memory?)",
                       m->key);
        else if (!streq(r->value, m->value))
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "get of %s returned '%s', not the '%s' just stored", m->key,
                       r->value, m->value);

        if (r->have[MEMCACHED_STAT_ACCEPTING_CONNS] && s[MEMCACHED_STAT_ACCEPTING_CONNS] == 0)
                probe_reason_add(&reason, &status, PROBE_CRITICAL,
                       "memcached stopped accepting connections (limit of %" PRIu64 " reached): raise -c",
                       s[MEMCACHED_STAT_MAX_CONNECTIONS]);
        else if (r->have[MEMCACHED_STAT_MAX_CONNECTIONS] && s[MEMCACHED_STAT_MAX_CONNECTIONS] > 0 &&
                 s[MEMCACHED_STAT_CURR_CONNECTIONS] * 100 >=
                         (uint64_t) m->connections_warning * s[MEMCACHED_STAT_MAX_CONNECTIONS])
                probe_reason_add(&reason, &status, PROBE_WARNING,
                       "memcached has %" PRIu64 " of %" PRIu64 " connections in use: raise -c",
                       s[MEMCACHED_STAT_CURR_CONNECTIONS], s[MEMCACHED_STAT_MAX_CONNECTIONS]);

        if (r->version[0] && memcached_version_compare(r->version, MIN_VERSION) < 0)
                probe_reason_add(&reason, &status, PROBE_WARNING,
                       "memcached %s is older than %s, the oldest the product supports: upgrade it", r->version,
                       MIN_VERSION);

        uint64_t need = required_bytes(m);
        if (need > 0 && r->have[MEMCACHED_STAT_LIMIT_MAXBYTES] && s[MEMCACHED_STAT_LIMIT_MAXBYTES] < need) {
                uint64_t need_mib = (need + MIB - 1) / MIB;
                probe_reason_add(&reason, &status, PROBE_WARNING,
                       "memcached has %" PRIu64 " MiB, needs at least %" PRIu64 " MiB for %u LDAP domain%s and %u "
                       "user%s: set -m %" PRIu64,
                       s[MEMCACHED_STAT_LIMIT_MAXBYTES] / MIB, need_mib, m->ldap_domains,
                       m->ldap_domains == 1 ? "" : "s", m->users, m->users == 1 ? "" : "s", need_mib);
        }

        /* Evictions per minute since the last run, unless memcached restarted. */
        uint64_t ev = s[MEMCACHED_STAT_EVICTIONS], up = s[MEMCACHED_STAT_UPTIME];
        if (m->have_last && r->have[MEMCACHED_STAT_EVICTIONS] && ev >= m->last_evictions && up >= m->last_uptime &&
            realtime > m->last_realtime) {
                double per_minute = (double) (ev - m->last_evictions) * 60e6 / (double) (realtime - m->last_realtime);
                if (per_minute >= m->evictions_warning)
                        probe_reason_add(&reason, &status, PROBE_WARNING,
                               "memcached evicts %.0f items per minute: it is too small for its load, raise -m",
                               per_minute);
        }
        m->last_evictions = ev;
        m->last_uptime = up;
        m->last_realtime = realtime;
        m->have_last = r->have[MEMCACHED_STAT_EVICTIONS];

        if (r->have[MEMCACHED_STAT_TIME]) {
                /* Whole seconds: compare with ours truncated the same way. */
                double skew = (double) s[MEMCACHED_STAT_TIME] - (double) (realtime / USEC_PER_SEC);
                (void) probe_add_sample(p, &family_time_offset_seconds, skew, "source", m->address, NULL);
                if (fabs(skew) >= usec_to_seconds(m->skew_warning))
                        probe_reason_add(&reason, &status, PROBE_WARNING,
                               "memcached's clock is %.0f s %s of ours: the cluster tolerates 1 s; check chrony on "
                               "the memcached host",
                               fabs(skew), skew > 0 ? "ahead" : "behind");
        }

        if (status == PROBE_OK)
                (void) buf_printf(&reason, "memcached %s: set/get of %s ok, %" PRIu64 "/%" PRIu64 " connections, %" PRIu64 " of %" PRIu64 " MiB used",
                                  r->version[0] ? r->version : "(version unknown)", m->key,
                                  s[MEMCACHED_STAT_CURR_CONNECTIONS], s[MEMCACHED_STAT_MAX_CONNECTIONS],
                                  s[MEMCACHED_STAT_BYTES] / MIB, s[MEMCACHED_STAT_LIMIT_MAXBYTES] / MIB);

        ret = probe_finish(p, status, "%s%s", reason.data ?: "", reason.overflow ? "..." : "");
        buf_done(&reason);
        return ret;
}

static int memcached_read(Probe *p) {
        MemcachedProbe *m = probe_get_userdata(p);
        MemcachedReply r;
        char b[8192];

        for (;;) {
                ssize_t n = recv(m->fd, b, sizeof b, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s: reading the reply failed: %m", m->address);
                if (n == 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s closed the connection after %zu bytes of reply",
                                            m->address, m->reply.len);
                if (buf_append(&m->reply, b, (size_t) n) < 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s: the reply is longer than %u bytes", m->address,
                                            MEMCACHED_REPLY_MAX);

                int k = memcached_reply_parse(m->reply.data, m->reply.len, m->key, &r);
                if (k == -EAGAIN)
                        continue;
                if (k < 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s does not speak the memcached protocol: %s",
                                            m->address, k == -EBADMSG ? r.error : strerror(-k));
                return memcached_judge(p, &r);
        }
}

static int memcached_write(Probe *p) {
        MemcachedProbe *m = probe_get_userdata(p);

        while (m->sent < m->request.len) {
                ssize_t n = send(m->fd, m->request.data + m->sent, m->request.len - m->sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s: sending the request failed: %m", m->address);
                m->sent += (size_t) n;
        }
        probe_set_phase(p, "waiting for the stats, set and get replies");
        return sd_event_source_set_io_events(m->io, EPOLLIN);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        MemcachedProbe *m = probe_get_userdata(p);

        if (!m->connected) {
                int error = 0;
                socklen_t len = sizeof error;

                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        return probe_finish_errno(p, -errno, "cannot read the connect result");
                if (error != 0)
                        return probe_finish(p, PROBE_CRITICAL, "%s: connect failed: %s: is memcached running?",
                                            m->address, strerror(error));
                m->connected = true;
                probe_set_phase(p, "sending stats, set and get");
        }
        if (revents & EPOLLIN)
                return memcached_read(p);
        if (m->sent < m->request.len)
                return memcached_write(p);
        return 0;
}

static int memcached_start(Probe *p) {
        MemcachedProbe *m = probe_get_userdata(p);
        const char *node = p->manager ? manager_node_name(p->manager) : "";
        int r;

        m->started = now(CLOCK_MONOTONIC);
        m->connected = false;
        m->sent = 0;
        m->request = BUF_INIT(1024);
        m->reply = BUF_INIT(MEMCACHED_REPLY_MAX);

        /* Keys may not hold spaces or control characters. */
        snprintf(m->key, sizeof m->key, "rupost-agent:%.200s", *node ? node : "unknown");
        for (char *c = m->key; *c; c++)
                if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
                        *c = '_';
        /* A fresh value each run proves the get saw this run's set. */
        snprintf(m->value, sizeof m->value, "%" PRIu64, (uint64_t) now(CLOCK_REALTIME));
        (void) buf_printf(&m->request, "stats\r\nset %s 0 60 %zu\r\n%s\r\nget %s\r\n", m->key, strlen(m->value),
                          m->value, m->key);
        if (buf_status(&m->request) < 0)
                return probe_finish_errno(p, -ENOMEM, "cannot build the request");

        m->fd = socket(m->sockaddr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (m->fd < 0)
                return probe_finish_errno(p, -errno, "cannot create a socket");
        probe_set_phase(p, "connecting");
        if (connect(m->fd, &m->sockaddr.sa, m->sockaddr_len) < 0 && errno != EINPROGRESS)
                return probe_finish(p, PROBE_CRITICAL, "%s: connect failed: %m: is memcached running?", m->address);
        r = sd_event_add_io(probe_get_event(p), &m->io, m->fd, EPOLLOUT, on_io, p);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot watch the socket");
        return 0;
}

const ProbeType probe_type_memcached = {
        .name = "memcached",
        .object_size = sizeof(MemcachedProbe),
        .config_items = memcached_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 3 * USEC_PER_SEC,
        .default_rise = 2,
        .default_fall = 2,
        .verify = memcached_verify,
        .start = memcached_start,
        .stop = memcached_stop,
        .done = memcached_done,
};
