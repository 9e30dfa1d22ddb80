/* SPDX-License-Identifier: GPL-2.0-or-later */
/* smtp, lmtp, imap, managesieve: the mail protocols spoken the way a client
 * does, up to and through TLS, then politely closed.
 *
 *   smtp         220 greeting, EHLO, [STARTTLS, 220, handshake, EHLO], QUIT
 *   lmtp         the same with LHLO, over TCP or a Unix socket
 *   imap         * OK greeting, CAPABILITY, [STARTTLS, handshake, CAPABILITY], LOGOUT
 *   managesieve  capability lines ending in OK, [STARTTLS, handshake,
 *                capabilities again], LOGOUT
 *
 * With `tls: implicit` the handshake comes first (465, 993). After any
 * handshake the session is judged by tls-inspect (leaf expiry, name,
 * self-signed, DH size). Everything runs on the event loop with one
 * non-blocking socket; OpenSSL takes over the same socket after STARTTLS.
 * Replies are framed by smtp-reply.c, which bounds them. */

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sockaddr.h"
#include "lib/tls-inspect.h"
#include "manager.h"
#include "probes.h"
#include "smtp-reply.h"

typedef enum MailProtocol {
        MAIL_SMTP,
        MAIL_LMTP,
        MAIL_IMAP,
        MAIL_SIEVE,
        _MAIL_PROTOCOL_MAX,
} MailProtocol;

typedef enum MailTls {
        MAIL_TLS_NONE,
        MAIL_TLS_IMPLICIT,
        MAIL_TLS_STARTTLS,
        _MAIL_TLS_MAX,
        _MAIL_TLS_INVALID = -EINVAL,
} MailTls;

static const char *const mail_tls_table[_MAIL_TLS_MAX] = {
        [MAIL_TLS_NONE] = "none",
        [MAIL_TLS_IMPLICIT] = "implicit",
        [MAIL_TLS_STARTTLS] = "starttls",
};

/* Where a run is. Each step that waits for a reply names it in its phase. */
typedef enum MailStep {
        STEP_CONNECT,
        STEP_HANDSHAKE,
        STEP_GREETING,
        STEP_HELLO,      /* EHLO, LHLO, CAPABILITY; ManageSieve: none (the greeting lists them) */
        STEP_STARTTLS,
        STEP_HELLO_TLS,  /* the same again inside TLS */
        STEP_QUIT,
} MailStep;

typedef struct MailProtocolInfo {
        const char *name;
        ReplyMode mode;
        const char *hello;    /* the command that lists capabilities, NULL for none */
        const char *starttls; /* the command as sent, with the IMAP tag */
        const char *quit;
        const char *starttls_tag, *hello_tag, *hello_tls_tag, *quit_tag;
        const char *phase_greeting, *phase_hello, *phase_starttls, *phase_hello_tls, *phase_quit;
} MailProtocolInfo;

static const MailProtocolInfo protocols[_MAIL_PROTOCOL_MAX] = {
        [MAIL_SMTP] = {
                .name = "SMTP",
                .mode = REPLY_SMTP,
                .hello = "EHLO",
                .starttls = "STARTTLS",
                .quit = "QUIT",
                .phase_greeting = "waiting for the SMTP greeting",
                .phase_hello = "waiting for the reply to EHLO",
                .phase_starttls = "waiting for the reply to STARTTLS",
                .phase_hello_tls = "waiting for the reply to EHLO after STARTTLS",
                .phase_quit = "waiting for the reply to QUIT",
        },
        [MAIL_LMTP] = {
                .name = "LMTP",
                .mode = REPLY_SMTP,
                .hello = "LHLO",
                .starttls = "STARTTLS",
                .quit = "QUIT",
                .phase_greeting = "waiting for the LMTP greeting",
                .phase_hello = "waiting for the reply to LHLO",
                .phase_starttls = "waiting for the reply to STARTTLS",
                .phase_hello_tls = "waiting for the reply to LHLO after STARTTLS",
                .phase_quit = "waiting for the reply to QUIT",
        },
        [MAIL_IMAP] = {
                .name = "IMAP",
                .mode = REPLY_IMAP,
                .hello = "a CAPABILITY",
                .starttls = "s STARTTLS",
                .quit = "b LOGOUT",
                .hello_tag = "a",
                .starttls_tag = "s",
                .hello_tls_tag = "c",
                .quit_tag = "b",
                .phase_greeting = "waiting for the IMAP greeting",
                .phase_hello = "waiting for the reply to CAPABILITY",
                .phase_starttls = "waiting for the reply to STARTTLS",
                .phase_hello_tls = "waiting for the reply to CAPABILITY after STARTTLS",
                .phase_quit = "waiting for the reply to LOGOUT",
        },
        [MAIL_SIEVE] = {
                .name = "ManageSieve",
                .mode = REPLY_SIEVE,
                .starttls = "STARTTLS",
                .quit = "LOGOUT",
                .phase_greeting = "waiting for the ManageSieve greeting",
                .phase_starttls = "waiting for the reply to STARTTLS",
                .phase_hello_tls = "waiting for the capabilities after STARTTLS",
                .phase_quit = "waiting for the reply to LOGOUT",
        },
};

#define MAIL_COMMAND_MAX 512
#define MAIL_HELO_MAX 255

typedef struct MailProbe {
        /* configuration */
        char *address;
        char *socket;
        char *tls_mode;
        char *server_name;
        char *helo;
        TlsExpect expect;

        MailProtocol protocol;
        MailTls tls;
        union sockaddr_union sockaddr;
        socklen_t sockaddr_len;
        const char *peer; /* address or socket, for reasons */
        SSL_CTX *ssl_ctx;

        /* one run */
        int fd;
        SSL *ssl;
        sd_event_source *io;
        MailStep step;
        ReplyParser parser;
        Buf in;  /* bytes that came after a complete reply */
        Buf out; /* the command being sent */
        size_t out_sent;
        Reply capabilities; /* the last listing, for reasons */
        bool have_tls;
        TlsInfo tls_info;
} MailProbe;

static const ConfigItem mail_config_items[] = {
        { "address",     config_parse_address, offsetof(MailProbe, address)     },
        { "socket",      config_parse_string,  offsetof(MailProbe, socket)      },
        { "tls",         config_parse_string,  offsetof(MailProbe, tls_mode)    },
        { "server_name", config_parse_string,  offsetof(MailProbe, server_name) },
        { "helo",        config_parse_string,  offsetof(MailProbe, helo)        },
        TLS_EXPECT_CONFIG_ITEMS(MailProbe, expect),
        {}
};

static MailProtocol protocol_of(const Probe *p) {
        if (p->type == &probe_type_lmtp)
                return MAIL_LMTP;
        if (p->type == &probe_type_imap)
                return MAIL_IMAP;
        if (p->type == &probe_type_managesieve)
                return MAIL_SIEVE;
        return MAIL_SMTP;
}

static uint16_t sockaddr_port(const union sockaddr_union *sa) {
        if (sa->sa.sa_family == AF_INET)
                return ntohs(sa->in.sin_port);
        if (sa->sa.sa_family == AF_INET6)
                return ntohs(sa->in6.sin6_port);
        return 0;
}

/* STARTTLS is what the well-known ports speak (25 and 20025 offer it to
 * other servers, 143 and 4190 to clients); 465 and 993 start with TLS. */
static MailTls default_tls(MailProtocol protocol, uint16_t port) {
        switch (protocol) {
        case MAIL_SMTP:
                return port == 465 ? MAIL_TLS_IMPLICIT : port == 25 ? MAIL_TLS_STARTTLS : MAIL_TLS_NONE;
        case MAIL_IMAP:
                return port == 993 ? MAIL_TLS_IMPLICIT : port == 143 ? MAIL_TLS_STARTTLS : MAIL_TLS_NONE;
        case MAIL_SIEVE:
                return port == 4190 ? MAIL_TLS_STARTTLS : MAIL_TLS_NONE;
        default:
                return MAIL_TLS_NONE;
        }
}

static int mail_verify(Probe *p, ConfigContext *c) {
        MailProbe *m = probe_get_userdata(p);
        int ret = 0; /* every finding is gathered, for one --check-config to list them all */

        m->protocol = protocol_of(p);

        if (!!m->address == !!m->socket)
                return config_error(c, NULL, m->address ? "socket" : "address",
                                    "give exactly one of 'address' (numeric host:port) or 'socket' (a Unix socket path)");
        if (m->address) {
                /* Only numeric addresses: a name lookup could block the event loop. */
                if (sockaddr_parse(m->address, &m->sockaddr, &m->sockaddr_len) < 0)
                        config_gather(&ret, config_error(c, NULL, "address",
                                                         "'%s' is not a numeric IPv4 or IPv6 address with a port",
                                                         m->address));
                m->peer = m->address;
        } else {
                if (m->socket[0] != '/')
                        return config_error(c, NULL, "socket", "'%s' is not an absolute path", m->socket);
                if (strlen(m->socket) >= sizeof m->sockaddr.un.sun_path)
                        return config_error(c, NULL, "socket", "longer than %zu bytes",
                                            sizeof m->sockaddr.un.sun_path - 1);
                m->sockaddr.un.sun_family = AF_UNIX;
                strcpy(m->sockaddr.un.sun_path, m->socket);
                m->sockaddr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(m->socket) + 1);
                m->peer = m->socket;
        }

        if (m->tls_mode) {
                m->tls = _MAIL_TLS_INVALID;
                for (MailTls t = 0; t < _MAIL_TLS_MAX; t++)
                        if (streq(m->tls_mode, mail_tls_table[t]))
                                m->tls = t;
                if (m->tls < 0)
                        config_gather(&ret, config_error(c, NULL, "tls", "'%s' is not one of none, implicit, starttls",
                                                         m->tls_mode));
        } else
                m->tls = default_tls(m->protocol, sockaddr_port(&m->sockaddr));

        if (m->helo) {
                if (m->protocol == MAIL_IMAP || m->protocol == MAIL_SIEVE)
                        config_gather(&ret, config_error(c, NULL, "helo", "only SMTP and LMTP send a HELO name"));
                else if (strlen(m->helo) == 0 || strlen(m->helo) > MAIL_HELO_MAX ||
                         strcspn(m->helo, " \t\r\n") != strlen(m->helo))
                        config_gather(&ret, config_error(c, NULL, "helo",
                                                         "'%s' is not a host name (1..%d bytes, no spaces)", m->helo,
                                                         MAIL_HELO_MAX));
        }
        if (m->server_name && (strlen(m->server_name) == 0 || strlen(m->server_name) > 253))
                config_gather(&ret, config_error(c, NULL, "server_name", "must be a host name of 1..253 bytes"));

        config_gather(&ret, tls_expect_verify(&m->expect, c));
        return ret;
}

static int mail_setup(Probe *p) {
        MailProbe *m = probe_get_userdata(p);

        m->fd = -EBADF;
        m->in = BUF_INIT(REPLY_MAX_BYTES);
        m->out = BUF_INIT(MAIL_COMMAND_MAX);
        if (m->tls == MAIL_TLS_NONE)
                return 0;
        m->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!m->ssl_ctx)
                return -ENOMEM;
        /* The handshake is checked, not the chain: the built-in certificates
         * are self-signed, and tls-inspect judges certificates on their own
         * terms (expiry, name, self-signed) with reasons an operator can act on. */
        SSL_CTX_set_verify(m->ssl_ctx, SSL_VERIFY_NONE, NULL);
        return 0;
}

static void mail_stop(Probe *p) {
        MailProbe *m = probe_get_userdata(p);

        m->io = sd_event_source_disable_unref(m->io);
        if (m->ssl) {
                SSL_free(m->ssl);
                m->ssl = NULL;
        }
        m->fd = safe_close(m->fd);
        reply_parser_done(&m->parser);
        reply_done(&m->capabilities);
        buf_reset(&m->in);
        buf_reset(&m->out);
        m->out_sent = 0;
        m->have_tls = false;
}

static void mail_done(Probe *p) {
        MailProbe *m = probe_get_userdata(p);

        SSL_CTX_free(m->ssl_ctx);
        buf_done(&m->in);
        buf_done(&m->out);
        free(m->address);
        free(m->socket);
        free(m->tls_mode);
        free(m->server_name);
        free(m->helo);
}

/* The run ended (probe_finish() ran our stop()): touch nothing more. */
static bool run_over(const MailProbe *m) {
        return m->fd < 0;
}

static const MailProtocolInfo *info(const MailProbe *m) {
        return &protocols[m->protocol];
}

/* What the peer said, for a reason line: one line, printable, bounded. */
static const char *said(char *buf, size_t size, const char *s) {
        size_t j = 0;

        for (; *s && j + 4 < size; s++)
                buf[j++] = (unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f ? '?' : *s;
        if (*s) {
                memcpy(buf + j, "...", 3);
                j += 3;
        }
        buf[j] = 0;
        return buf;
}

static const char *reply_said(char *buf, size_t size, const MailProbe *m, const Reply *r) {
        char line[200];

        if (m->protocol == MAIL_SMTP || m->protocol == MAIL_LMTP) {
                /* The code and the last line say what went wrong. */
                snprintf(line, sizeof line, "%u %s", r->code, reply_last_line(r));
                return said(buf, size, line);
        }
        return said(buf, size, reply_last_line(r));
}

/* The capabilities a listing named, for "STARTTLS not offered" reasons. */
static const char *list_capabilities(char *buf, size_t size, const MailProbe *m, const Reply *r) {
        Buf b = BUF_INIT(size - 1);

        for (size_t i = 0; i < r->n_lines; i++) {
                const char *s = r->lines[i];
                size_t n;

                switch (m->protocol) {
                case MAIL_SMTP:
                case MAIL_LMTP:
                        if (i == 0)
                                continue; /* the server's name */
                        n = strcspn(s, " ");
                        break;
                case MAIL_IMAP: {
                        const char *c = strcasestr(s, "CAPABILITY ");
                        if (!c)
                                continue;
                        s = c + strlen("CAPABILITY ");
                        n = strcspn(s, "]");
                        break;
                }
                default:
                        if (s[0] != '"')
                                continue;
                        s++;
                        n = strcspn(s, "\"");
                        break;
                }
                if (b.len > 0)
                        (void) buf_puts(&b, " ");
                (void) buf_append(&b, s, n);
        }
        said(buf, size, b.data ?: "nothing");
        buf_done(&b);
        return buf;
}

static int mail_fail(Probe *p, const char *fmt, ...) _printf_(2, 3);
static int mail_fail(Probe *p, const char *fmt, ...) {
        MailProbe *m = probe_get_userdata(p);
        _cleanup_free_ char *what = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        return probe_finish(p, PROBE_CRITICAL, "%s: %s", m->peer, what ?: "out of memory");
}

static int mail_io_events(MailProbe *m, uint32_t events) {
        return sd_event_source_set_io_events(m->io, events);
}

static int mail_read(Probe *p);

/* Sends the rest of the command; then waits for the reply. */
static int mail_flush(Probe *p) {
        MailProbe *m = probe_get_userdata(p);

        while (m->out_sent < m->out.len) {
                size_t left = m->out.len - m->out_sent;
                ssize_t n;

                if (m->ssl) {
                        int k = SSL_write(m->ssl, m->out.data + m->out_sent, (int) left);
                        if (k <= 0) {
                                int e = SSL_get_error(m->ssl, k);
                                if (e == SSL_ERROR_WANT_WRITE)
                                        return mail_io_events(m, EPOLLOUT);
                                if (e == SSL_ERROR_WANT_READ)
                                        return mail_io_events(m, EPOLLIN);
                                return mail_fail(p, "sending failed while %s: TLS error", p->phase);
                        }
                        n = k;
                } else {
                        n = send(m->fd, m->out.data + m->out_sent, left, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return mail_io_events(m, EPOLLOUT);
                        if (n < 0)
                                return mail_fail(p, "sending failed while %s: %m", p->phase);
                }
                m->out_sent += (size_t) n;
        }

        (void) mail_io_events(m, EPOLLIN);
        /* A reply may already be here: pipelined after the last one, or
         * decrypted and buffered inside OpenSSL where epoll cannot see it. */
        if (m->in.len > 0 || (m->ssl && SSL_has_pending(m->ssl)))
                return mail_read(p);
        return 0;
}

static int mail_send(Probe *p, MailStep step, const char *phase, const char *tag, const char *fmt, ...)
        _printf_(5, 6);
static int mail_send(Probe *p, MailStep step, const char *phase, const char *tag, const char *fmt, ...) {
        MailProbe *m = probe_get_userdata(p);
        va_list ap;
        int r;

        buf_reset(&m->out);
        m->out_sent = 0;
        va_start(ap, fmt);
        r = buf_vprintf(&m->out, fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = buf_puts(&m->out, "\r\n");
        if (r >= 0)
                r = reply_parser_set_tag(&m->parser, tag);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot build the command");

        m->step = step;
        probe_set_phase(p, phase);
        return mail_flush(p);
}

/* Waits for a reply without sending anything (greetings). */
static int mail_expect(Probe *p, MailStep step, const char *phase) {
        MailProbe *m = probe_get_userdata(p);

        m->step = step;
        probe_set_phase(p, phase);
        (void) reply_parser_set_tag(&m->parser, NULL);
        buf_reset(&m->out);
        m->out_sent = 0;
        return mail_flush(p);
}

static const char *helo_name(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        static char host[256];

        if (m->helo)
                return m->helo;
        const char *node = p->manager ? manager_node_name(p->manager) : "";
        if (node[0] && strcspn(node, " \t\r\n") == strlen(node))
                return node;
        if (gethostname(host, sizeof host - 1) < 0 || !host[0])
                return "localhost";
        return host;
}

static int mail_hello(Probe *p, MailStep step) {
        MailProbe *m = probe_get_userdata(p);
        const MailProtocolInfo *i = info(m);
        const char *phase = step == STEP_HELLO ? i->phase_hello : i->phase_hello_tls;

        if (m->protocol == MAIL_SIEVE)
                /* ManageSieve lists its capabilities unasked: in the greeting,
                 * and again right after the handshake (RFC 5804 2.2). */
                return mail_expect(p, step, phase);
        if (m->protocol == MAIL_IMAP)
                return mail_send(p, step, phase, step == STEP_HELLO ? i->hello_tag : i->hello_tls_tag,
                                 "%s CAPABILITY", step == STEP_HELLO ? i->hello_tag : i->hello_tls_tag);
        return mail_send(p, step, phase, NULL, "%s %s", i->hello, helo_name(p));
}

static int mail_quit(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        const MailProtocolInfo *i = info(m);

        return mail_send(p, STEP_QUIT, i->phase_quit, i->quit_tag, "%s", i->quit);
}

static int mail_succeed(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        char why[512];

        if (!m->have_tls)
                return probe_finish(p, PROBE_OK, "%s: %s dialogue complete without TLS", m->peer, info(m)->name);

        tls_add_samples(p, &m->tls_info);
        ProbeStatus s = tls_judge(&m->tls_info, &m->expect, (int64_t) (now(CLOCK_REALTIME) / USEC_PER_SEC), why,
                                  sizeof why);
        if (s != PROBE_OK)
                return probe_finish(p, s, "%s: %s", m->peer, why);

        char date[32] = "?";
        time_t t = (time_t) m->tls_info.not_after;
        struct tm tm;
        if (gmtime_r(&t, &tm))
                strftime(date, sizeof date, "%Y-%m-%d", &tm);
        return probe_finish(p, PROBE_OK, "%s: %s dialogue complete over %s%s (%s, %s; certificate for %s valid until %s)",
                            m->peer, info(m)->name, m->tls_info.protocol,
                            m->tls == MAIL_TLS_STARTTLS ? " after STARTTLS" : "", m->tls_info.cipher,
                            m->tls_info.group[0] ? m->tls_info.group : "no key exchange group",
                            m->tls_info.subject, date);
}

static int mail_handshake(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        int k;

        ERR_clear_error();
        k = SSL_connect(m->ssl);

        if (k != 1) {
                int e = SSL_get_error(m->ssl, k);
                if (e == SSL_ERROR_WANT_READ)
                        return mail_io_events(m, EPOLLIN);
                if (e == SSL_ERROR_WANT_WRITE)
                        return mail_io_events(m, EPOLLOUT);
                unsigned long err = ERR_get_error();
                ERR_clear_error();
                return mail_fail(p, "TLS handshake failed%s: %s",
                                 m->tls == MAIL_TLS_STARTTLS ? " after STARTTLS" : "",
                                 err ? ERR_reason_error_string(err) : "the peer closed the connection");
        }

        int r = tls_inspect(m->ssl, m->server_name, &m->tls_info);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot inspect the TLS session");
        m->have_tls = true;

        if (m->tls == MAIL_TLS_IMPLICIT)
                return mail_expect(p, STEP_GREETING, info(m)->phase_greeting);
        return mail_hello(p, STEP_HELLO_TLS);
}

static int mail_start_tls(Probe *p, const char *phase) {
        MailProbe *m = probe_get_userdata(p);

        m->ssl = SSL_new(m->ssl_ctx);
        if (!m->ssl || SSL_set_fd(m->ssl, m->fd) != 1)
                return probe_finish_errno(p, -ENOMEM, "cannot set up TLS");
        if (m->server_name)
                (void) SSL_set_tlsext_host_name(m->ssl, m->server_name);
        m->step = STEP_HANDSHAKE;
        probe_set_phase(p, phase);
        return mail_handshake(p);
}

/* The reply lists STARTTLS, or the run ends naming what it listed. */
static int mail_require_starttls(Probe *p, const Reply *r) {
        MailProbe *m = probe_get_userdata(p);
        char listed[256];
        bool offered;

        if (m->protocol == MAIL_SMTP || m->protocol == MAIL_LMTP)
                offered = smtp_reply_has_keyword(r, "STARTTLS");
        else
                offered = reply_lists_capability(r, info(m)->mode, "STARTTLS");
        if (offered)
                return 1;
        mail_fail(p, "STARTTLS not offered (%s listed: %s)",
                  m->protocol == MAIL_SMTP   ? "EHLO"
                  : m->protocol == MAIL_LMTP ? "LHLO"
                  : m->protocol == MAIL_IMAP ? "CAPABILITY"
                                             : "greeting",
                  list_capabilities(listed, sizeof listed, m, r));
        return 0;
}

/* Whether the reply is the success the step expects. */
static bool reply_ok(const MailProbe *m, const Reply *r, MailStep step) {
        const char *last = reply_last_line(r);

        switch (m->protocol) {
        case MAIL_SMTP:
        case MAIL_LMTP:
                switch (step) {
                case STEP_GREETING:
                case STEP_STARTTLS:
                        return r->code == 220;
                case STEP_QUIT:
                        return true; /* whatever it says, it is closing */
                default:
                        return r->code == 250;
                }
        case MAIL_IMAP:
                if (step == STEP_GREETING)
                        return strncasecmp(last, "* OK", 4) == 0 || strncasecmp(last, "* PREAUTH", 9) == 0;
                if (step == STEP_QUIT)
                        return true;
                /* "<tag> OK ..." */
                last += strcspn(last, " ");
                return strncasecmp(last, " OK", 3) == 0;
        default:
                return step == STEP_QUIT || strncasecmp(last, "OK", 2) == 0;
        }
}

static const char *expected(const MailProbe *m, MailStep step) {
        if (m->protocol == MAIL_SMTP || m->protocol == MAIL_LMTP)
                return step == STEP_GREETING || step == STEP_STARTTLS ? "220" : "250";
        if (m->protocol == MAIL_IMAP)
                return step == STEP_GREETING ? "'* OK'" : "OK";
        return "OK";
}

static const char *step_what(const MailProbe *m, MailStep step) {
        const MailProtocolInfo *i = info(m);

        switch (step) {
        case STEP_GREETING:
                return "greeting";
        case STEP_HELLO:
                return m->protocol == MAIL_IMAP ? "CAPABILITY" : i->hello;
        case STEP_STARTTLS:
                return "STARTTLS";
        case STEP_HELLO_TLS:
                return m->protocol == MAIL_SIEVE ? "capability listing after STARTTLS"
                       : m->protocol == MAIL_IMAP ? "CAPABILITY after STARTTLS"
                                                  : (m->protocol == MAIL_LMTP ? "LHLO after STARTTLS" : "EHLO after STARTTLS");
        default:
                return "reply";
        }
}

static int mail_on_reply(Probe *p, Reply *r) {
        MailProbe *m = probe_get_userdata(p);
        const MailProtocolInfo *i = info(m);
        char text[256];

        if (!reply_ok(m, r, m->step)) {
                if (m->step == STEP_GREETING)
                        return mail_fail(p, "greeting was '%s', expected %s", reply_said(text, sizeof text, m, r),
                                         expected(m, m->step));
                return mail_fail(p, "%s was answered '%s', expected %s", step_what(m, m->step),
                                 reply_said(text, sizeof text, m, r), expected(m, m->step));
        }

        switch (m->step) {
        case STEP_GREETING:
                if (m->protocol == MAIL_SIEVE) {
                        /* The greeting is the capability listing. */
                        reply_done(&m->capabilities);
                        m->capabilities = *r;
                        *r = (Reply) {};
                        goto listed;
                }
                return mail_hello(p, STEP_HELLO);

        case STEP_HELLO:
                reply_done(&m->capabilities);
                m->capabilities = *r;
                *r = (Reply) {};
        listed:
                if (m->tls != MAIL_TLS_STARTTLS || m->have_tls)
                        return mail_quit(p);
                if (!mail_require_starttls(p, &m->capabilities))
                        return 0;
                return mail_send(p, STEP_STARTTLS, i->phase_starttls, i->starttls_tag, "%s", i->starttls);

        case STEP_STARTTLS:
                /* Anything after the reply would be plaintext injected into the
                 * TLS session (CVE-2011-0411 and kin): a broken or hostile peer. */
                if (m->in.len > 0)
                        return mail_fail(p, "sent %zu bytes after its reply to STARTTLS, before the TLS handshake",
                                         m->in.len);
                return mail_start_tls(p, "in the TLS handshake after STARTTLS");

        case STEP_HELLO_TLS:
                return mail_quit(p);

        case STEP_QUIT:
                return mail_succeed(p);

        default:
                return probe_finish_errno(p, -EPROTO, "reply in an unexpected step");
        }
}

/* Frames what arrived; calls mail_on_reply() for a complete reply and keeps
 * the rest for the next one. */
static int mail_feed(Probe *p, const char *data, size_t size) {
        MailProbe *m = probe_get_userdata(p);
        _cleanup_(reply_done) Reply reply = {};
        size_t consumed = 0;
        int r;

        r = reply_parser_feed(&m->parser, data, size, &consumed, &reply);
        if (r == -ENOMEM)
                return probe_finish_errno(p, r, "cannot store the reply");
        if (r == -E2BIG)
                return mail_fail(p, "oversized reply while %s: %s", p->phase, m->parser.error);
        if (r < 0)
                return mail_fail(p, "not %s while %s: %s", m->protocol == MAIL_IMAP    ? "IMAP"
                                                           : m->protocol == MAIL_SIEVE ? "ManageSieve"
                                                                                       : "an SMTP reply",
                                 p->phase, m->parser.error);
        if (r == 0)
                return 0;

        if (consumed < size && buf_append(&m->in, data + consumed, size - consumed) < 0)
                return mail_fail(p, "oversized reply while %s: more than %u bytes", p->phase, REPLY_MAX_BYTES);
        return mail_on_reply(p, &reply);
}

static int mail_read(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        MailStep step = m->step;
        char b[4096];
        ssize_t n;

        /* Leftovers first: they belong to the reply now awaited. */
        if (m->in.len > 0) {
                size_t len = m->in.len;
                _cleanup_free_ char *pending = buf_steal(&m->in);
                if (!pending)
                        return probe_finish_errno(p, -ENOMEM, "cannot store the reply");
                int r = mail_feed(p, pending, len);
                if (r < 0 || run_over(m) || m->step != step)
                        return r;
        }

        for (;;) {
                if (m->ssl) {
                        ERR_clear_error();
                        int k = SSL_read(m->ssl, b, sizeof b);
                        if (k <= 0) {
                                int e = SSL_get_error(m->ssl, k);
                                if (e == SSL_ERROR_WANT_READ)
                                        return mail_io_events(m, EPOLLIN);
                                if (e == SSL_ERROR_WANT_WRITE)
                                        return mail_io_events(m, EPOLLOUT);
                                if (e != SSL_ERROR_ZERO_RETURN && !(e == SSL_ERROR_SYSCALL && k == 0)) {
                                        unsigned long err = ERR_get_error();
                                        ERR_clear_error();
                                        return mail_fail(p, "TLS error while %s: %s", p->phase,
                                                         err ? ERR_reason_error_string(err) : "connection reset");
                                }
                                n = 0;
                        } else
                                n = k;
                } else {
                        n = recv(m->fd, b, sizeof b, MSG_DONTWAIT);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return mail_io_events(m, EPOLLIN);
                        if (n < 0)
                                return mail_fail(p, "reading failed while %s: %m", p->phase);
                }

                if (n == 0) {
                        /* Closing right after QUIT without a word is fine. */
                        if (m->step == STEP_QUIT)
                                return mail_succeed(p);
                        char partial[128] = "";
                        if (m->parser.line.len > 0 || m->parser.reply.n_lines > 0)
                                snprintf(partial, sizeof partial, " after a partial reply");
                        return mail_fail(p, "closed the connection while %s%s", p->phase, partial);
                }

                int r = mail_feed(p, b, (size_t) n);
                /* A reply moved the run on (or ended it): a new command was
                 * sent, or TLS took over the socket. Come back on the next event. */
                if (r < 0 || run_over(m) || m->step != step)
                        return r;
        }
}

static int mail_connected(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        int error = 0;
        socklen_t len = sizeof error;

        if (getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                return probe_finish_errno(p, -errno, "cannot read the connect result");
        if (error != 0)
                return mail_fail(p, "connect failed: %s", strerror(error));

        if (m->tls == MAIL_TLS_IMPLICIT)
                return mail_start_tls(p, "in the TLS handshake");
        return mail_expect(p, STEP_GREETING, info(m)->phase_greeting);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;
        MailProbe *m = probe_get_userdata(p);

        switch (m->step) {
        case STEP_CONNECT:
                return mail_connected(p);
        case STEP_HANDSHAKE:
                return mail_handshake(p);
        default:
                if (m->out_sent < m->out.len)
                        return mail_flush(p);
                return mail_read(p);
        }
}

static int mail_start(Probe *p) {
        MailProbe *m = probe_get_userdata(p);
        int r;

        reply_parser_init(&m->parser, info(m)->mode, REPLY_MAX_BYTES, REPLY_MAX_LINES);
        m->step = STEP_CONNECT;
        m->have_tls = false;
        m->fd = socket(m->sockaddr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (m->fd < 0)
                return probe_finish_errno(p, -errno, "cannot create a socket");

        probe_set_phase(p, "connecting");
        if (connect(m->fd, &m->sockaddr.sa, m->sockaddr_len) < 0 && errno != EINPROGRESS && errno != EAGAIN)
                return mail_fail(p, "connect failed: %m");

        r = sd_event_add_io(probe_get_event(p), &m->io, m->fd, EPOLLOUT, on_io, p);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot watch the socket");
        (void) sd_event_source_set_description(m->io, "probe-mail");
        return 0;
}

#define MAIL_PROBE_TYPE(n)                                      \
        {                                                       \
                .name = n,                                      \
                .object_size = sizeof(MailProbe),               \
                .config_items = mail_config_items,              \
                .default_interval = 30 * USEC_PER_SEC,          \
                .default_timeout = 5 * USEC_PER_SEC,            \
                .default_rise = 2,                              \
                .default_fall = 3,                              \
                .verify = mail_verify,                          \
                .setup = mail_setup,                            \
                .start = mail_start,                            \
                .stop = mail_stop,                              \
                .done = mail_done,                              \
        }

const ProbeType probe_type_smtp = MAIL_PROBE_TYPE("smtp");
const ProbeType probe_type_lmtp = MAIL_PROBE_TYPE("lmtp");
const ProbeType probe_type_imap = MAIL_PROBE_TYPE("imap");
const ProbeType probe_type_managesieve = MAIL_PROBE_TYPE("managesieve");
