/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The smtp, lmtp, imap and managesieve probes against scripted peers forked
 * on loopback (or a Unix socket): each peer reads the probe's commands,
 * checks them, answers from its script, and may switch to TLS on the same
 * socket. The cases are what real servers do (STARTTLS, multi-line replies
 * in pieces, postscreen's multi-line greeting) and what the probe must judge
 * (STARTTLS missing, 421, garbage, stalls, oversized replies, plaintext after
 * STARTTLS, and certificates expiring, expired, misnamed or self-signed). */

#include <sys/un.h>

#include "loopback.h"
#include "probe-run.h"
#include "tls-test-util.h"

typedef struct Step {
        const char *expect;  /* the line the probe must send (a prefix), before `send` */
        const char *send;    /* NULL for none */
        unsigned sleep_ms;   /* after sending */
        bool starttls;       /* then the TLS handshake (server side) */
        bool stall;          /* then 5 s of silence, as a peer that hangs */
} Step;

static int peer_read_line(int fd, SSL *ssl, char *buf, size_t size) {
        size_t n = 0;

        while (n + 1 < size) {
                char c;
                int k = ssl ? SSL_read(ssl, &c, 1) : (int) read(fd, &c, 1);
                if (k <= 0)
                        return -1;
                buf[n++] = c;
                if (c == '\n')
                        break;
        }
        buf[n] = 0;
        return 0;
}

static void peer_write(int fd, SSL *ssl, const char *s) {
        int l = (int) strlen(s);
        if (ssl)
                (void) SSL_write(ssl, s, l);
        else
                (void) !write(fd, s, (size_t) l);
}

/* Exit codes of the peer tell a failed expectation from a crash. */
#define PEER_UNEXPECTED 3

static LoopbackPeer peer_start(SSL_CTX *ctx, bool implicit_tls, const char *unix_path, const Step *steps,
                               size_t n_steps) {
        LoopbackPeer peer = {};
        int fd;

        if (unix_path) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ASSERT_TRUE(fd >= 0);
                snprintf(sa.sun_path, sizeof sa.sun_path, "%s", unix_path);
                (void) unlink(unix_path);
                ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
                ASSERT_OK(listen(fd, 4));
        } else
                fd = test_loopback_socket(SOCK_STREAM, &peer.port);

        peer.pid = fork();
        ASSERT_TRUE(peer.pid >= 0);
        if (peer.pid > 0) {
                close(fd);
                return peer;
        }

        int c = accept(fd, NULL, NULL);
        if (c < 0)
                _exit(1);
        SSL *ssl = NULL;
        if (implicit_tls) {
                ssl = SSL_new(ctx);
                SSL_set_fd(ssl, c);
                if (SSL_accept(ssl) != 1)
                        _exit(2);
        }
        for (size_t i = 0; i < n_steps; i++) {
                const Step *s = &steps[i];
                char line[1024];

                if (s->expect) {
                        if (peer_read_line(c, ssl, line, sizeof line) < 0)
                                _exit(PEER_UNEXPECTED);
                        if (strncmp(line, s->expect, strlen(s->expect)) != 0) {
                                fprintf(stderr, "peer: expected '%s', got '%s'\n", s->expect, line);
                                _exit(PEER_UNEXPECTED);
                        }
                }
                if (s->send)
                        peer_write(c, ssl, s->send);
                peer_sleep_ms(s->sleep_ms);
                if (s->stall)
                        peer_sleep_ms(5000);
                if (s->starttls) {
                        ssl = SSL_new(ctx);
                        SSL_set_fd(ssl, c);
                        if (SSL_accept(ssl) != 1)
                                _exit(2);
                }
        }
        /* Let the probe read the last words before the socket closes. */
        peer_sleep_ms(300);
        _exit(0);
}

/* Waits a little for the peer to finish its script, then kills it.
 * Returns its exit status, or -1 when it had to be killed. */
static int peer_stop(LoopbackPeer *peer) {
        int status = 0;

        for (int i = 0; i < 100; i++) {
                if (waitpid(peer->pid, &status, WNOHANG) == peer->pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                peer_sleep_ms(10);
        }
        (void) kill(peer->pid, SIGKILL);
        (void) waitpid(peer->pid, &status, 0);
        return -1;
}

/* The node name is what EHLO says unless `helo` is set. */
static Probe *run_probe(ProbeRun *run, const char *type, const char *target, const char *extra) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: probe.test\n"
                 "probes:\n"
                 "  - name: peer\n"
                 "    type: %s\n"
                 "    interval: 1m\n"
                 "    timeout: 500ms\n"
                 "    %s\n"
                 "%s",
                 type, target, extra);
        probe_run_load(run, yaml);
        return probe_run_once(run, 5 * USEC_PER_SEC);
}

typedef struct Case {
        const char *name;
        const char *type;
        const char *extra_config;
        CertSpec cert;
        bool implicit_tls;
        bool unix_socket;
        Step steps[10];
        ProbeStatus status;
        const char *reason;
        const char *reason2;
        bool peer_complete; /* the peer saw every command it expected */
} Case;

#define SMTP_GREETING { NULL, "220 mx.test ESMTP\r\n", 0, false, false }
#define SMTP_EHLO_TLS { "EHLO probe.test\r\n", "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n", 0, false, false }
#define SMTP_STARTTLS { "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n", 0, true, false }
#define SMTP_EHLO_AFTER { "EHLO probe.test\r\n", "250-mx.test\r\n250 PIPELINING\r\n", 0, false, false }
#define SMTP_QUIT { "QUIT\r\n", "221 2.0.0 Bye\r\n", 0, false, false }

/* A macro, not a const object: C wants constant expressions in static initializers. */
#define GOOD_CERT { .cn = "mx.test", .not_after_seconds = 86400L * 90, .ca_issued = true }

static const Case cases[] = {
        {
                .name = "SMTP with STARTTLS",
                .type = "smtp",
                .extra_config = "    tls: starttls\n    server_name: mx.test\n",
                .cert = GOOD_CERT,
                .steps = { SMTP_GREETING, SMTP_EHLO_TLS, SMTP_STARTTLS, SMTP_EHLO_AFTER, SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "SMTP dialogue complete over TLSv1.3 after STARTTLS",
                .reason2 = "certificate for mx.test valid until",
                .peer_complete = true,
        },
        {
                .name = "STARTTLS missing",
                .type = "smtp",
                .extra_config = "    tls: starttls\n",
                .steps = { SMTP_GREETING,
                           { "EHLO ", "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "STARTTLS not offered (EHLO listed: PIPELINING SIZE 8BITMIME)",
        },
        {
                .name = "greeting split across reads (postscreen style)",
                .type = "smtp",
                .extra_config = "    tls: none\n    helo: checker.test\n",
                .steps = { { NULL, "220-mx.test ", 80 },
                           { NULL, "ESMTP\r\n220-please wait\r\n22", 80 },
                           { NULL, "0 mx.test ESMTP\r\n", 0 },
                           { "EHLO checker.test\r\n", "250 mx.test\r\n", 0 },
                           SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "SMTP dialogue complete without TLS",
                .peer_complete = true,
        },
        {
                .name = "multi-line 250 split mid-line",
                .type = "smtp",
                .extra_config = "    tls: starttls\n",
                .cert = GOOD_CERT,
                .steps = { SMTP_GREETING,
                           { "EHLO ", "250-mx.test\r\n250-PIPE", 80 },
                           { NULL, "LINING\r\n250-STA", 80 },
                           { NULL, "RTTLS\r\n250 8BITMIME\r\n", 0 },
                           SMTP_STARTTLS, SMTP_EHLO_AFTER, SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "after STARTTLS",
                .peer_complete = true,
        },
        {
                .name = "421 greeting",
                .type = "smtp",
                .steps = { { NULL, "421 4.3.2 mx.test Service shutting down\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "greeting was '421 4.3.2 mx.test Service shutting down', expected 220",
        },
        {
                .name = "stall mid-line",
                .type = "smtp",
                .steps = { { NULL, "220 mx.te", 2000 } },
                .status = PROBE_CRITICAL,
                .reason = "no answer within 500ms while waiting for the SMTP greeting",
        },
        {
                .name = "garbage",
                .type = "smtp",
                .steps = { { NULL, "\x01\x02\xff garbage\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "not an SMTP reply while waiting for the SMTP greeting: not an SMTP reply line: '??? garbage'",
        },
        {
                .name = "continuation with another code",
                .type = "smtp",
                .steps = { SMTP_GREETING, { "EHLO ", "250-mx.test\r\n251 odd\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "line with code 251 inside a 250 reply",
        },
        {
                .name = "STARTTLS refused",
                .type = "smtp",
                .extra_config = "    tls: starttls\n",
                .steps = { SMTP_GREETING, SMTP_EHLO_TLS, { "STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "STARTTLS was answered '454 4.7.0 TLS not available', expected 220",
        },
        {
                .name = "plaintext after the STARTTLS reply",
                .type = "smtp",
                .extra_config = "    tls: starttls\n",
                .steps = { SMTP_GREETING, SMTP_EHLO_TLS, { "STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "sent 14 bytes after its reply to STARTTLS",
        },
        {
                .name = "TLS handshake that never finishes",
                .type = "smtp",
                .extra_config = "    tls: starttls\n",
                .steps = { SMTP_GREETING, SMTP_EHLO_TLS, { "STARTTLS\r\n", "220 go ahead\r\n", 0, false, true } },
                .status = PROBE_CRITICAL,
                .reason = "no answer within 500ms while in the TLS handshake after STARTTLS",
        },
        {
                .name = "implicit TLS (465)",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = GOOD_CERT,
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "SMTP dialogue complete over TLSv1.3 (",
                .peer_complete = true,
        },
        {
                .name = "peer closes after QUIT without a word",
                .type = "smtp",
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, { "QUIT\r\n", NULL, 0 } },
                .status = PROBE_OK,
                .reason = "SMTP dialogue complete without TLS",
                .peer_complete = true,
        },
        {
                .name = "LMTP over a Unix socket",
                .type = "lmtp",
                .unix_socket = true,
                .steps = { { NULL, "220 mx.test Dovecot ready.\r\n", 0 },
                           { "LHLO probe.test\r\n", "250-mx.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n", 0 },
                           SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "LMTP dialogue complete without TLS",
                .peer_complete = true,
        },
        {
                .name = "LMTP refusing LHLO",
                .type = "lmtp",
                .unix_socket = true,
                .steps = { { NULL, "220 ready\r\n", 0 }, { "LHLO ", "500 5.5.1 what\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "LHLO was answered '500 5.5.1 what', expected 250",
        },
        {
                .name = "IMAP implicit TLS (993)",
                .type = "imap",
                .extra_config = "    tls: implicit\n",
                .cert = GOOD_CERT,
                .implicit_tls = true,
                .steps = { { NULL, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.\r\n", 0 },
                           { "a CAPABILITY\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na OK Pre-login capabilities listed.\r\n", 0 },
                           { "b LOGOUT\r\n", "* BYE Logging out\r\nb OK Logout completed.\r\n", 0 } },
                .status = PROBE_OK,
                .reason = "IMAP dialogue complete over TLSv1.3",
                .peer_complete = true,
        },
        {
                .name = "IMAP STARTTLS (143)",
                .type = "imap",
                .extra_config = "    tls: starttls\n",
                .cert = GOOD_CERT,
                .steps = { { NULL, "* OK Dovecot ready.\r\n", 0 },
                           { "a CAPABILITY\r\n", "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\na OK done\r\n", 0 },
                           { "s STARTTLS\r\n", "s OK Begin TLS negotiation now.\r\n", 0, true },
                           { "c CAPABILITY\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nc OK done\r\n", 0 },
                           { "b LOGOUT\r\n", "* BYE bye\r\nb OK done\r\n", 0 } },
                .status = PROBE_OK,
                .reason = "IMAP dialogue complete over TLSv1.3 after STARTTLS",
                .peer_complete = true,
        },
        {
                .name = "IMAP BYE greeting",
                .type = "imap",
                .steps = { { NULL, "* BYE Too many connections\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "greeting was '* BYE Too many connections', expected '* OK'",
        },
        {
                .name = "IMAP without STARTTLS",
                .type = "imap",
                .extra_config = "    tls: starttls\n",
                .steps = { { NULL, "* OK ready\r\n", 0 },
                           { "a CAPABILITY\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na OK done\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "STARTTLS not offered (CAPABILITY listed: IMAP4rev1 AUTH=PLAIN)",
        },
        {
                .name = "IMAP CAPABILITY refused",
                .type = "imap",
                .steps = { { NULL, "* OK ready\r\n", 0 }, { "a CAPABILITY\r\n", "a BAD no\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "CAPABILITY was answered 'a BAD no', expected OK",
        },
        {
                .name = "ManageSieve with STARTTLS",
                .type = "managesieve",
                .extra_config = "    tls: starttls\n",
                .cert = GOOD_CERT,
                .steps = { { NULL, "\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto reject\"\r\n"
                                   "\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\nOK \"Dovecot ready.\"\r\n", 0 },
                           { "STARTTLS\r\n", "OK \"Begin TLS negotiation now.\"\r\n", 0, true },
                           { NULL, "\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SASL\" \"PLAIN\"\r\nOK \"TLS done.\"\r\n", 0 },
                           { "LOGOUT\r\n", "OK \"Logout completed.\"\r\n", 0 } },
                .status = PROBE_OK,
                .reason = "ManageSieve dialogue complete over TLSv1.3 after STARTTLS",
                .peer_complete = true,
        },
        {
                .name = "ManageSieve NO greeting",
                .type = "managesieve",
                .steps = { { NULL, "NO \"Service unavailable\"\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "greeting was 'NO \"Service unavailable\"', expected OK",
        },
        {
                .name = "ManageSieve without STARTTLS",
                .type = "managesieve",
                .extra_config = "    tls: starttls\n",
                .steps = { { NULL, "\"IMPLEMENTATION\" \"x\"\r\n\"SIEVE\" \"fileinto\"\r\nOK \"ready\"\r\n", 300 } },
                .status = PROBE_CRITICAL,
                .reason = "STARTTLS not offered (greeting listed: IMPLEMENTATION SIEVE)",
        },
        {
                .name = "certificate expiring soon",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test", .not_after_seconds = 86400L * 5 + 3600, .ca_issued = true },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_WARNING,
                .reason = "certificate for mx.test expires in 5 days (",
        },
        {
                .name = "certificate about to expire",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test", .not_after_seconds = 86400L + 3600, .ca_issued = true },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_CRITICAL,
                .reason = "certificate for mx.test expires in 1 day (",
        },
        {
                .name = "certificate expired",
                .type = "imap",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test", .not_after_seconds = -86400L, .ca_issued = true },
                .implicit_tls = true,
                .steps = { { NULL, "* OK ready\r\n", 0 },
                           { "a CAPABILITY\r\n", "* CAPABILITY IMAP4rev1\r\na OK done\r\n", 0 },
                           { "b LOGOUT\r\n", "b OK done\r\n", 0 } },
                .status = PROBE_CRITICAL,
                .reason = "certificate for mx.test expired on",
        },
        {
                .name = "hostname mismatch",
                .type = "smtp",
                .extra_config = "    tls: implicit\n    server_name: mail.example.org\n",
                .cert = GOOD_CERT,
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_WARNING,
                .reason = "certificate for mx.test does not name mail.example.org",
        },
        {
                .name = "self-signed",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test" },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_WARNING,
                .reason = "self-signed certificate: replace the built-in certificate for production",
        },
        {
                .name = "self-signed allowed",
                .type = "smtp",
                .extra_config = "    tls: implicit\n    allow_self_signed: true\n",
                .cert = { .cn = "mx.test" },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "certificate for mx.test valid until",
        },
        {
                .name = "DH parameters below the minimum",
                .type = "smtp",
                .extra_config = "    tls: implicit\n    dh_min_bits: 3072\n",
                .cert = { .cn = "mx.test", .ca_issued = true, .rsa_dhe = true },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_WARNING,
                .reason = "2048-bit DH parameters (DHE-RSA-AES128-GCM-SHA256) are below the minimum of 3072",
                .reason2 = "openssl dhparam -out rupost-builtin-dhparam.pem 4096",
        },
        {
                .name = "DH parameters at the default minimum",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test", .ca_issued = true, .rsa_dhe = true },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
                .status = PROBE_OK,
                .reason = "over TLSv1.2",
        },
};

static size_t count_steps(const Step *steps, size_t max) {
        size_t n = 0;
        while (n < max && (steps[n].expect || steps[n].send || steps[n].sleep_ms || steps[n].starttls || steps[n].stall))
                n++;
        return n;
}

static void run_case(const Case *c, const char *unix_path) {
        ProbeRun run = {};
        char target[PATH_MAX + 16];

        fprintf(stderr, "case: %s\n", c->name);
        SSL_CTX *ctx = test_server_tls_context(&c->cert);
        LoopbackPeer peer = peer_start(ctx, c->implicit_tls, c->unix_socket ? unix_path : NULL, c->steps,
                               count_steps(c->steps, ELEMENTSOF(c->steps)));
        SSL_CTX_free(ctx);

        if (c->unix_socket)
                snprintf(target, sizeof target, "socket: %s", unix_path);
        else
                snprintf(target, sizeof target, "address: \"127.0.0.1:%u\"", peer.port);
        Probe *p = run_probe(&run, c->type, target, c->extra_config ?: "");
        ASSERT_EQ(p->last.status, c->status);
        ASSERT_CONTAINS(p->last.reason, c->reason);
        if (c->reason2)
                ASSERT_CONTAINS(p->last.reason, c->reason2);
        ASSERT_FALSE(p->running);

        probe_run_done(&run);
        int peer_status = peer_stop(&peer);
        /* The peer exits 0 only once it saw every command it expected, in order. */
        if (c->peer_complete)
                ASSERT_EQ(peer_status, 0);
        ASSERT_TRUE(peer_status != PEER_UNEXPECTED);
}

TEST(mail_probes_against_scripted_peers) {
        char dir[] = "/tmp/test-probe-mail-XXXXXX", path[PATH_MAX];

        ASSERT_TRUE(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/lmtp", dir);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                run_case(&cases[i], path);
        (void) unlink(path);
        (void) rmdir(dir);
}

TEST(mail_probe_tls_samples) {
        static const Case c = {
                .name = "samples",
                .type = "smtp",
                .extra_config = "    tls: implicit\n",
                .cert = { .cn = "mx.test", .not_after_seconds = 86400L * 10 - 3600, .rsa_dhe = true },
                .implicit_tls = true,
                .steps = { SMTP_GREETING, { "EHLO ", "250 mx.test\r\n", 0 }, SMTP_QUIT },
        };
        ProbeRun run = {};
        char target[64];

        SSL_CTX *ctx = test_server_tls_context(&c.cert);
        LoopbackPeer peer = peer_start(ctx, true, NULL, c.steps, count_steps(c.steps, ELEMENTSOF(c.steps)));
        SSL_CTX_free(ctx);
        snprintf(target, sizeof target, "address: \"127.0.0.1:%u\"", peer.port);
        int64_t expected_expiry = (int64_t) (now(CLOCK_REALTIME) / USEC_PER_SEC) + 86400L * 10 - 3600;
        Probe *p = run_probe(&run, c.type, target, c.extra_config);

        /* Two warnings at once, both named. */
        ASSERT_EQ(p->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(p->last.reason, "expires in 9 days");
        ASSERT_CONTAINS(p->last.reason, "self-signed certificate");

        const Sample *s = probe_sample(p, "rupost_tls_certificate_expiry_timestamp_seconds", NULL);
        ASSERT_TRUE(s);
        ASSERT_TRUE(fabs(s->value - (double) expected_expiry) < 5);
        s = probe_sample(p, "rupost_tls_dh_bits", NULL);
        ASSERT_TRUE(s);
        ASSERT_EQ((int) s->value, 2048);
        s = probe_sample(p, "rupost_tls_self_signed", NULL);
        ASSERT_TRUE(s);
        ASSERT_EQ((int) s->value, 1);

        probe_run_done(&run);
        peer_stop(&peer);
}

TEST(mail_probe_oversized_reply) {
        /* 600 capability lines: past the 512-line bound, and reported as such. */
        size_t size = 600 * 16 + 64;
        char *big = malloc(size), *w = big;
        ASSERT_TRUE(big);
        w += sprintf(w, "250-mx.test\r\n");
        for (int i = 0; i < 600; i++)
                w += sprintf(w, "250-X-CAP-%04d\r\n", i);
        w += sprintf(w, "250 END\r\n");

        Step steps[] = { SMTP_GREETING, { "EHLO ", big, 500 } };
        ProbeRun run = {};
        char target[64];

        LoopbackPeer peer = peer_start(NULL, false, NULL, steps, ELEMENTSOF(steps));
        snprintf(target, sizeof target, "address: \"127.0.0.1:%u\"", peer.port);
        Probe *p = run_probe(&run, "smtp", target, "");
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "oversized reply while waiting for the reply to EHLO: reply has more than 512 lines");
        probe_run_done(&run);
        peer_stop(&peer);
        free(big);
}

TEST(mail_probe_refused_and_missing_socket) {
        ProbeRun run = {};

        Probe *p = run_probe(&run, "lmtp", "socket: /nonexistent/dovecot-lmtp", "");
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "/nonexistent/dovecot-lmtp: connect failed: No such file or directory");
        probe_run_done(&run);
}

static void expect_config_error(const char *type, const char *keys, const char *error) {
        char yaml[1024];

        snprintf(yaml, sizeof yaml, "probes:\n  - name: x\n    type: %s\n%s", type, keys);
        test_config_load_fails(yaml, error);
}

TEST(mail_probe_config) {
        expect_config_error("smtp", "    address: \"mx.example.org:25\"\n", "host names are not resolved");
        expect_config_error("smtp", "", "give exactly one of 'address' (numeric host:port) or 'socket'");
        expect_config_error("lmtp", "    address: \"127.0.0.1:24\"\n    socket: /run/x\n", "probes[0].socket");
        expect_config_error("lmtp", "    socket: relative/path\n", "not an absolute path");
        expect_config_error("smtp", "    address: \"127.0.0.1:25\"\n    tls: yes\n",
                            "'yes' is not one of none, implicit, starttls");
        expect_config_error("imap", "    address: \"127.0.0.1:993\"\n    helo: x\n", "only SMTP and LMTP send a HELO name");
        expect_config_error("smtp", "    address: \"127.0.0.1:25\"\n    helo: \"a b\"\n", "is not a host name");
        expect_config_error("smtp", "    address: \"127.0.0.1:25\"\n    cert_warning_days: 2\n",
                            "cert_critical_days: 3 is more than cert_warning_days (2)");
        expect_config_error("smtp", "    address: \"127.0.0.1:25\"\n    dh_min_bits: 100\n", "out of range 512..16384");
        expect_config_error("smtp", "    address: \"127.0.0.1:25\"\n    bogus: 1\n", "bogus");
}

DEFINE_TEST_MAIN()
