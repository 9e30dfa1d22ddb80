/* SPDX-License-Identifier: GPL-2.0-or-later */
/* time: is this node's clock within what the cluster tolerates? The product
 * requires every node and every shared server (DB, directory, memcached, NFS)
 * to agree within 1 second; beyond that deployments refuse and NFS mailboxes
 * break.
 *
 * Two views, both without a shell and without blocking:
 *  - the kernel's, from ntp_adjtime() with modes 0 (a read-only call). Like
 *    systemd-timedated, the clock counts as synchronised by its maximum error
 *    alone: chronyd may leave STA_UNSYNC set on a well synchronised clock (to
 *    keep the kernel off the RTC), while an unattended kernel grows maxerror by
 *    500 us/s until it passes 16 s. The flag is still shown in the reason.
 *  - the cluster's: an RFC 5905 client exchange with each configured server
 *    and peer, all at once on non-blocking UDP sockets. The judged skew of a
 *    source is |offset| + delay/2, the most the two clocks can differ given
 *    what the exchange saw.
 * A source that does not answer at all is left to the core's deadline, whose
 * reason then names the sources still awaited. */

#include <math.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timex.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/sockaddr.h"
#include "ntp-packet.h"
#include "probes.h"

#define SOURCES_MAX 64
#define PHASE_MAX 256
#define DEFAULT_MAX_ERROR (250 * USEC_PER_MSEC)
#define DEFAULT_SKEW_WARNING (500 * USEC_PER_MSEC)
#define DEFAULT_SKEW_CRITICAL (1 * USEC_PER_SEC)

typedef struct TimeSource {
        const char *name; /* as configured: the metric label and what the reason names */
        union sockaddr_union sockaddr;
        socklen_t sockaddr_len;

        /* one run */
        int fd;
        sd_event_source *io;
        NtpTimestamp t1;
        bool pending;
        bool answered;
        double offset;
        double delay;
        char *error;
} TimeSource;

typedef struct TimeProbe {
        /* configuration */
        char **servers;
        char **peers;
        usec_t max_error;
        usec_t skew_warning;
        usec_t skew_critical;
        bool ignore_kernel_clock;

        TimeSource *sources;
        size_t n_sources;
        size_t n_pending;
        char phase[PHASE_MAX];
} TimeProbe;

static const MetricFamily family_sync_status = {
        .name = "rupost_time_sync_status",
        .type = METRIC_GAUGE,
        .help = "Whether the kernel considers the clock synchronised (1) by its maximum error, or not (0).",
};
static const MetricFamily family_maxerror = {
        .name = "rupost_time_maxerror_seconds",
        .type = METRIC_GAUGE,
        .help = "The kernel's maximum error of the clock (adjtimex maxerror).",
};
const MetricFamily family_time_offset_seconds = {
        .name = "rupost_time_offset_seconds",
        .type = METRIC_GAUGE,
        .help = "Offset of a time source from this node's clock, positive when the source is ahead.",
};
static const MetricFamily family_max_skew = {
        .name = "rupost_time_max_skew_seconds",
        .type = METRIC_GAUGE,
        .help = "The largest |offset| + delay/2 over the NTP sources that answered in the last run.",
};

static const ConfigItem time_config_items[] = {
        { "servers",             config_parse_strv,     offsetof(TimeProbe, servers),      0, SOURCES_MAX },
        { "peers",               config_parse_strv,     offsetof(TimeProbe, peers),        0, SOURCES_MAX },
        { "max_error",           config_parse_duration, offsetof(TimeProbe, max_error),    USEC_PER_MSEC, 16 * USEC_PER_SEC },
        { "skew_warning",        config_parse_duration, offsetof(TimeProbe, skew_warning), USEC_PER_MSEC, USEC_PER_HOUR },
        { "skew_critical",       config_parse_duration, offsetof(TimeProbe, skew_critical), USEC_PER_MSEC, USEC_PER_HOUR },
        { "ignore_kernel_clock", config_parse_bool,     offsetof(TimeProbe, ignore_kernel_clock) },
        {}
};

/* "10.0.0.5", "10.0.0.5:1123", "2001:db8::5", "[2001:db8::5]:1123": numeric
 * only (a name lookup could block the loop), port 123 when not given. */
static int ntp_address_parse(const char *s, union sockaddr_union *ret, socklen_t *ret_len) {
        char buf[INET6_ADDRSTRLEN + 16];
        const char *colon = strchr(s, ':');

        if (s[0] == ':' || strlen(s) > INET6_ADDRSTRLEN + 8)
                return -EINVAL;
        if (s[0] == '[' && !strstr(s, "]:"))
                snprintf(buf, sizeof buf, "%s:%u", s, NTP_PORT);
        else if (!colon)
                snprintf(buf, sizeof buf, "%s:%u", s, NTP_PORT);
        else if (s[0] != '[' && strchr(colon + 1, ':'))
                snprintf(buf, sizeof buf, "[%s]:%u", s, NTP_PORT);
        else
                snprintf(buf, sizeof buf, "%s", s);
        return sockaddr_parse(buf, ret, ret_len);
}

static int time_verify(Probe *p, ConfigContext *c) {
        TimeProbe *t = probe_get_userdata(p);
        size_t n = strv_length(t->servers) + strv_length(t->peers), k = 0;
        int r = 0;

        if (t->max_error == 0)
                t->max_error = DEFAULT_MAX_ERROR;
        if (t->skew_warning == 0)
                t->skew_warning = DEFAULT_SKEW_WARNING;
        if (t->skew_critical == 0)
                t->skew_critical = DEFAULT_SKEW_CRITICAL;
        if (t->skew_warning > t->skew_critical)
                r = config_error(c, NULL, "skew_warning", "is above skew_critical");

        if (n == 0)
                return r;
        t->sources = calloc(n, sizeof(TimeSource));
        if (!t->sources)
                return -ENOMEM;
        for (int list = 0; list < 2; list++)
                for (char **i = list == 0 ? t->servers : t->peers; i && *i; i++) {
                        TimeSource *s = &t->sources[k++];

                        s->name = *i;
                        s->fd = -EBADF;
                        if (ntp_address_parse(*i, &s->sockaddr, &s->sockaddr_len) < 0)
                                r = config_error(c, NULL, list == 0 ? "servers" : "peers",
                                                 "'%s' is not a numeric IPv4 or IPv6 address (with an optional port)",
                                                 *i);
                }
        t->n_sources = n;
        return r;
}

static void source_stop(TimeSource *s) {
        s->io = sd_event_source_disable_unref(s->io);
        s->fd = safe_close(s->fd);
        s->pending = false;
}

static void time_stop(Probe *p) {
        TimeProbe *t = probe_get_userdata(p);

        for (size_t i = 0; i < t->n_sources; i++)
                source_stop(&t->sources[i]);
        t->n_pending = 0;
}

static void time_done(Probe *p) {
        TimeProbe *t = probe_get_userdata(p);

        for (size_t i = 0; t->sources && i < t->n_sources; i++)
                free(t->sources[i].error);
        free(t->sources);
        strv_free(t->servers);
        strv_free(t->peers);
}

static double seconds(usec_t u) {
        return usec_to_seconds(u);
}

/* The phase names who we still wait for, so that a timeout's reason does. */
static void update_phase(Probe *p) {
        TimeProbe *t = probe_get_userdata(p);
        Buf b = BUF_INIT(PHASE_MAX - 1);

        (void) buf_puts(&b, "waiting for NTP replies from ");
        for (size_t i = 0, n = 0; i < t->n_sources; i++)
                if (t->sources[i].pending)
                        (void) buf_printf(&b, "%s%s", n++ > 0 ? ", " : "", t->sources[i].name);
        snprintf(t->phase, sizeof t->phase, "%.*s%s", (int) b.len, b.data ?: "", b.overflow ? "..." : "");
        buf_done(&b);
        probe_set_phase(p, t->phase);
}

typedef struct Kernel {
        int state;
        int status;
        double maxerror;
        double offset;
} Kernel;

static const char *skew_direction(double offset) {
        return offset >= 0 ? "ahead" : "behind";
}

static int time_judge(Probe *p, const Kernel *k) {
        TimeProbe *t = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(1024);
        const TimeSource *worst = NULL;
        double worst_skew = 0;
        size_t answered = 0;
        int r;

        for (size_t i = 0; i < t->n_sources; i++) {
                const TimeSource *s = &t->sources[i];
                if (!s->answered)
                        continue;
                answered++;
                double skew = fabs(s->offset) + s->delay / 2;
                if (!worst || skew > worst_skew) {
                        worst = s;
                        worst_skew = skew;
                }
        }
        if (worst)
                (void) probe_add_sample(p, &family_max_skew, worst_skew, NULL);

        /* The most severe finding comes first in the reason. */
        bool kernel_bad = !t->ignore_kernel_clock && k->maxerror > seconds(t->max_error);
        if (worst && worst_skew > seconds(t->skew_critical)) {
                status = PROBE_CRITICAL;
                (void) buf_printf(&reason,
                                  "%s is %.3f s %s (delay %.0f ms): more than the %g s the cluster tolerates; "
                                  "check chrony on that host",
                                  worst->name, fabs(worst->offset), skew_direction(worst->offset),
                                  worst->delay * 1000, seconds(t->skew_critical));
        }
        if (kernel_bad) {
                status = PROBE_CRITICAL;
                (void) buf_printf(&reason,
                                  "%sthe kernel clock is not synchronised (maxerror %.3f s, limit %g s%s): "
                                  "check that chronyd runs and reaches its servers (chronyc tracking)",
                                  reason.len > 0 ? "; " : "", k->maxerror, seconds(t->max_error),
                                  k->status & STA_UNSYNC ? ", STA_UNSYNC set" : "");
        }
        if (worst && status == PROBE_OK && worst_skew > seconds(t->skew_warning)) {
                status = PROBE_WARNING;
                (void) buf_printf(&reason,
                                  "%s is %.3f s %s (delay %.0f ms): close to the %g s the cluster tolerates "
                                  "(warning above %g s); check chrony on that host",
                                  worst->name, fabs(worst->offset), skew_direction(worst->offset),
                                  worst->delay * 1000, seconds(t->skew_critical), seconds(t->skew_warning));
        }
        for (size_t i = 0; i < t->n_sources; i++) {
                const TimeSource *s = &t->sources[i];
                if (!s->error)
                        continue;
                if (status == PROBE_OK)
                        status = PROBE_WARNING;
                (void) buf_printf(&reason, "%scannot compare with %s: %s", reason.len > 0 ? "; " : "", s->name,
                                  s->error);
        }
        if (status == PROBE_OK) {
                if (t->ignore_kernel_clock)
                        (void) buf_puts(&reason, "kernel clock not judged");
                else
                        (void) buf_printf(&reason, "kernel clock synchronised (maxerror %.0f ms)",
                                          k->maxerror * 1000);
                if (worst)
                        (void) buf_printf(&reason, "; %zu NTP source%s within %.0f ms (worst %s, %.3f s %s)",
                                          answered, answered == 1 ? "" : "s", worst_skew * 1000, worst->name,
                                          fabs(worst->offset), skew_direction(worst->offset));
        }

        r = probe_finish(p, status, "%s%s", reason.data ?: "", reason.overflow ? "..." : "");
        buf_done(&reason);
        return r;
}

static int time_maybe_judge(Probe *p) {
        TimeProbe *t = probe_get_userdata(p);
        struct timex tx = {};
        Kernel k;

        if (t->n_pending > 0) {
                update_phase(p);
                return 0;
        }
        /* Read the kernel's state at the end, so both views are of one moment. */
        k.state = ntp_adjtime(&tx);
        if (k.state < 0)
                return probe_finish_errno(p, -errno, "cannot read the kernel clock state (ntp_adjtime)");
        k.status = tx.status;
        k.maxerror = (double) tx.maxerror / 1e6;
        k.offset = (double) tx.offset / (tx.status & STA_NANO ? 1e9 : 1e6);
        (void) probe_add_sample(p, &family_sync_status, k.maxerror <= seconds(t->max_error) ? 1 : 0, NULL);
        (void) probe_add_sample(p, &family_maxerror, k.maxerror, NULL);
        (void) probe_add_sample(p, &family_time_offset_seconds, k.offset, "source", "kernel", NULL);
        return time_judge(p, &k);
}

static void source_fail(Probe *p, TimeSource *s, const char *fmt, ...) _printf_(3, 4);
static void source_fail(Probe *p, TimeSource *s, const char *fmt, ...) {
        TimeProbe *t = probe_get_userdata(p);
        va_list ap;

        free(s->error);
        va_start(ap, fmt);
        if (vasprintf(&s->error, fmt, ap) < 0)
                s->error = NULL;
        va_end(ap);
        source_stop(s);
        t->n_pending--;
}

static int on_reply(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        TimeProbe *t = probe_get_userdata(p);
        TimeSource *s = NULL;
        uint8_t buf[NTP_PACKET_SIZE * 2];
        NtpReply reply;

        for (size_t i = 0; i < t->n_sources; i++)
                if (t->sources[i].io == es)
                        s = &t->sources[i];
        if (!s)
                return 0;

        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        /* T4 as close to the arrival as the loop allows. */
        NtpTimestamp t4 = ntp_timestamp_from_realtime(now(CLOCK_REALTIME));
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                if (errno == ECONNREFUSED)
                        source_fail(p, s, "nothing listens on its NTP port (ICMP port unreachable)");
                else
                        source_fail(p, s, "receiving failed: %m");
                return time_maybe_judge(p);
        }

        NtpVerdict v = ntp_reply_parse(buf, (size_t) n, s->t1, &reply);
        if (v == NTP_REPLY_BOGUS_ORIGIN)
                return 0; /* not an answer to this request: keep waiting for it */
        if (v == NTP_REPLY_KISS_OF_DEATH)
                source_fail(p, s, "the reply is a kiss-o'-death (code %s): the server refuses to serve us",
                            reply.refid[0] ? reply.refid : "empty");
        else if (v != NTP_REPLY_OK)
                source_fail(p, s, "the reply %s", ntp_verdict_to_string(v));
        else {
                ntp_offset_delay(s->t1, reply.receive, reply.transmit, t4, &s->offset, &s->delay);
                s->answered = true;
                (void) probe_add_sample(p, &family_time_offset_seconds, s->offset, "source", s->name, NULL);
                source_stop(s);
                t->n_pending--;
        }
        return time_maybe_judge(p);
}

static int time_start(Probe *p) {
        TimeProbe *t = probe_get_userdata(p);
        int r;

        for (size_t i = 0; i < t->n_sources; i++) {
                TimeSource *s = &t->sources[i];
                uint8_t request[NTP_PACKET_SIZE];

                s->answered = false;
                free(s->error);
                s->error = NULL;
                s->fd = socket(s->sockaddr.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (s->fd < 0)
                        return probe_finish_errno(p, -errno, "cannot create a UDP socket");
                s->pending = true;
                t->n_pending++;
                /* A connected socket only receives from that source, and learns
                 * of an unreachable port from ICMP. */
                if (connect(s->fd, &s->sockaddr.sa, s->sockaddr_len) < 0) {
                        source_fail(p, s, "cannot send to it: %m");
                        continue;
                }
                r = sd_event_add_io(probe_get_event(p), &s->io, s->fd, EPOLLIN, on_reply, p);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot watch a UDP socket");
                s->t1 = ntp_timestamp_from_realtime(now(CLOCK_REALTIME));
                ntp_request_build(request, s->t1);
                if (send(s->fd, request, sizeof request, MSG_DONTWAIT) < 0)
                        source_fail(p, s, "cannot send to it: %m");
        }
        return time_maybe_judge(p);
}

const ProbeType probe_type_time = {
        .name = "time",
        .object_size = sizeof(TimeProbe),
        .config_items = time_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 3 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 2,
        .verify = time_verify,
        .start = time_start,
        .stop = time_stop,
        .done = time_done,
};
