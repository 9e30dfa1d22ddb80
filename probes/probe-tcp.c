/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tcp: the port accepts a connection, optionally completes a TLS handshake
 * (implicit TLS, as on 465, 993 and 443) and optionally greets with an
 * expected banner ("220 " for SMTP, "* OK" for IMAP). Everything runs on the
 * event loop with a non-blocking socket; the core's deadline bounds it. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "lib/log.h"
#include "lib/sockaddr.h"
#include "lib/tls-inspect.h"
#include "probes.h"

#define BANNER_MAX 512

typedef struct TcpProbe {
        /* configuration */
        char *address;
        bool tls;
        char *expect;
        char *server_name;

        union sockaddr_union sockaddr;
        socklen_t sockaddr_len;
        SSL_CTX *ssl_ctx;

        /* one run */
        int fd;
        SSL *ssl;
        sd_event_source *io;
        usec_t started;
        usec_t connected;
        char banner[BANNER_MAX + 1];
        size_t banner_len;
} TcpProbe;

static const MetricFamily family_connect_seconds = {
        .name = "rupost_tcp_connect_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Time the last TCP connect of the probe took.",
};

static const ConfigItem tcp_config_items[] = {
        { "address",     config_parse_address, offsetof(TcpProbe, address), .required = true },
        { "tls",         config_parse_bool,    offsetof(TcpProbe, tls)                        },
        { "expect",      config_parse_string,  offsetof(TcpProbe, expect)                     },
        { "server_name", config_parse_string,  offsetof(TcpProbe, server_name)                },
        {}
};

static int tcp_verify(Probe *p, ConfigContext *c) {
        TcpProbe *t = probe_get_userdata(p);
        int ret = 0;

        /* Only numeric addresses: a name lookup could block the event loop. */
        if (sockaddr_parse(t->address, &t->sockaddr, &t->sockaddr_len) < 0)
                config_gather(&ret, config_error(c, NULL, "address",
                                                 "'%s' is not a numeric IPv4 or IPv6 address with a port",
                                                 t->address));
        if (t->expect && strlen(t->expect) > BANNER_MAX)
                config_gather(&ret, config_error(c, NULL, "expect", "longer than %d bytes", BANNER_MAX));
        return ret;
}

static int tcp_setup(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);

        t->fd = -EBADF;
        if (!t->tls)
                return 0;
        t->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!t->ssl_ctx)
                return -ENOMEM;
        /* The handshake is checked, not the chain: self-signed certificates are
         * common inside a cluster, and the TLS probes judge certificates on
         * their own terms. */
        SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_NONE, NULL);
        return 0;
}

static void tcp_stop(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);

        t->io = sd_event_source_disable_unref(t->io);
        if (t->ssl) {
                SSL_free(t->ssl);
                t->ssl = NULL;
        }
        t->fd = safe_close(t->fd);
        t->banner_len = 0;
        t->banner[0] = 0;
}

static void tcp_done(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);

        SSL_CTX_free(t->ssl_ctx);
        free(t->address);
        free(t->expect);
        free(t->server_name);
}

/* Printable form of what the peer sent, for a reason line. */
static const char *printable(char *s) {
        for (char *c = s; *c; c++)
                if (*c == '\r' || *c == '\n') {
                        *c = 0;
                        break;
                } else if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                        *c = '?';
        return s;
}

static int tcp_succeed(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        char ms[DURATION_MAX];

        format_duration(ms, sizeof ms, t->connected - t->started);
        if (t->banner_len > 0)
                return probe_finish(p, PROBE_OK, "%s answered '%s' (connect %s)", t->address,
                                    printable(t->banner), ms);
        return probe_finish(p, PROBE_OK, "%s accepted the connection%s (connect %s)", t->address,
                            t->tls ? " and the TLS handshake" : "", ms);
}

static int tcp_read_banner(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        ssize_t n;

        for (;;) {
                size_t room = BANNER_MAX - t->banner_len;

                if (t->ssl) {
                        int k = SSL_read(t->ssl, t->banner + t->banner_len, (int) room);
                        if (k <= 0) {
                                int e = SSL_get_error(t->ssl, k);
                                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                        return 0;
                                n = 0;
                        } else
                                n = k;
                } else {
                        n = recv(t->fd, t->banner + t->banner_len, room, MSG_DONTWAIT);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return 0;
                        if (n < 0)
                                return probe_finish(p, PROBE_CRITICAL, "%s: reading the banner failed: %m",
                                                    t->address);
                }
                if (n == 0) {
                        t->banner[t->banner_len] = 0;
                        return probe_finish(p, PROBE_CRITICAL,
                                            "%s closed the connection before the banner '%s'%s%s", t->address,
                                            t->expect, t->banner_len > 0 ? ", after sending: " : "",
                                            printable(t->banner));
                }
                t->banner_len += (size_t) n;
                t->banner[t->banner_len] = 0;

                /* Judge as soon as enough has arrived: the banner may come in pieces. */
                size_t want = strlen(t->expect);
                if (t->banner_len >= want || memchr(t->banner, '\n', t->banner_len) ||
                    t->banner_len == BANNER_MAX) {
                        if (strncmp(t->banner, t->expect, want) != 0)
                                return probe_finish(p, PROBE_CRITICAL, "%s greeted '%s', expected '%s'",
                                                    t->address, printable(t->banner), t->expect);
                        return tcp_succeed(p);
                }
        }
}

static void tcp_certificate_sample(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        X509 *cert = SSL_get1_peer_certificate(t->ssl);
        struct tm tm;

        if (!cert)
                return;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
                (void) probe_add_sample(p, &tls_family_certificate_expiry, (double) timegm(&tm), NULL);
        X509_free(cert);
}

static int tcp_handshake(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        int k = SSL_connect(t->ssl);

        if (k != 1) {
                int e = SSL_get_error(t->ssl, k);
                if (e == SSL_ERROR_WANT_READ)
                        return sd_event_source_set_io_events(t->io, EPOLLIN);
                if (e == SSL_ERROR_WANT_WRITE)
                        return sd_event_source_set_io_events(t->io, EPOLLOUT);
                unsigned long err = ERR_get_error();
                return probe_finish(p, PROBE_CRITICAL, "%s: TLS handshake failed: %s", t->address,
                                    err ? ERR_reason_error_string(err) : "the peer closed the connection");
        }
        tcp_certificate_sample(p);
        if (!t->expect)
                return tcp_succeed(p);
        probe_set_phase(p, "waiting for the banner");
        (void) sd_event_source_set_io_events(t->io, EPOLLIN);
        return tcp_read_banner(p);
}

static int tcp_connected(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        int error = 0;
        socklen_t len = sizeof error;

        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                return probe_finish_errno(p, -errno, "cannot read the connect result");
        if (error != 0)
                return probe_finish(p, PROBE_CRITICAL, "%s: connect failed: %s", t->address, strerror(error));

        t->connected = now(CLOCK_MONOTONIC);
        (void) probe_add_sample(p, &family_connect_seconds, usec_to_seconds(t->connected - t->started), NULL);

        if (t->tls) {
                t->ssl = SSL_new(t->ssl_ctx);
                if (!t->ssl || SSL_set_fd(t->ssl, t->fd) != 1)
                        return probe_finish_errno(p, -ENOMEM, "cannot set up TLS");
                const char *sni = t->server_name;
                if (sni)
                        (void) SSL_set_tlsext_host_name(t->ssl, sni);
                probe_set_phase(p, "in the TLS handshake");
                return tcp_handshake(p);
        }
        if (!t->expect)
                return tcp_succeed(p);
        probe_set_phase(p, "waiting for the banner");
        (void) sd_event_source_set_io_events(t->io, EPOLLIN);
        return tcp_read_banner(p);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        TcpProbe *t = probe_get_userdata(p);

        if (t->connected == 0)
                return tcp_connected(p);
        if (t->ssl && !SSL_is_init_finished(t->ssl))
                return tcp_handshake(p);
        return tcp_read_banner(p);
}

static int tcp_start(Probe *p) {
        TcpProbe *t = probe_get_userdata(p);
        int r;

        t->started = now(CLOCK_MONOTONIC);
        t->connected = 0;
        t->fd = socket(t->sockaddr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t->fd < 0)
                return probe_finish_errno(p, -errno, "cannot create a socket");

        probe_set_phase(p, "connecting");
        if (connect(t->fd, &t->sockaddr.sa, t->sockaddr_len) < 0 && errno != EINPROGRESS)
                return probe_finish(p, PROBE_CRITICAL, "%s: connect failed: %m", t->address);

        r = sd_event_add_io(probe_get_event(p), &t->io, t->fd, EPOLLOUT, on_io, p);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot watch the socket");
        return 0;
}

const ProbeType probe_type_tcp = {
        .name = "tcp",
        .object_size = sizeof(TcpProbe),
        .config_items = tcp_config_items,
        .default_interval = 10 * USEC_PER_SEC,
        .default_timeout = 3 * USEC_PER_SEC,
        .default_rise = 2,
        .default_fall = 3,
        .verify = tcp_verify,
        .setup = tcp_setup,
        .start = tcp_start,
        .stop = tcp_stop,
        .done = tcp_done,
};
