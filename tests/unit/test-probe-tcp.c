/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The tcp probe against scripted peers: what real servers do (a banner, TLS),
 * and what they rarely do but the probe must survive (a banner split across
 * reads, a wrong greeting, a peer that stalls in the handshake or before its
 * banner, a refused port). Each peer is a forked child on loopback. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "config.h"
#include "manager.h"
#include "probe.h"
#include "tests.h"

typedef struct Step {
        const char *send;  /* bytes to send, NULL for none */
        unsigned sleep_ms; /* then wait */
} Step;

typedef struct Peer {
        pid_t pid;
        uint16_t port;
} Peer;

static SSL_CTX *server_tls_context(void) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = X509_new();

        ASSERT_TRUE(ctx && key && cert);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), 0);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400L * 30);
        X509_set_pubkey(cert, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                   (const unsigned char *) "peer.test", -1, -1, 0);
        X509_set_issuer_name(cert, X509_get_subject_name(cert));
        ASSERT_TRUE(X509_sign(cert, key, EVP_sha256()) > 0);
        ASSERT_TRUE(SSL_CTX_use_certificate(ctx, cert) == 1);
        ASSERT_TRUE(SSL_CTX_use_PrivateKey(ctx, key) == 1);
        X509_free(cert);
        EVP_PKEY_free(key);
        return ctx;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Forks a peer that accepts one connection, optionally completes a TLS
 * handshake (or stalls before it), then plays the steps and closes. */
static Peer peer_start(bool tls, bool stall_handshake, const Step *steps, size_t n_steps) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        Peer peer = {};

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 4));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        peer.port = ntohs(sa.sin_port);

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
        if (stall_handshake)
                sleep_ms(5000);
        if (tls) {
                ssl = SSL_new(server_tls_context());
                SSL_set_fd(ssl, c);
                if (SSL_accept(ssl) != 1)
                        _exit(2);
        }
        for (size_t i = 0; i < n_steps; i++) {
                if (steps[i].send) {
                        int l = (int) strlen(steps[i].send);
                        if (ssl)
                                (void) SSL_write(ssl, steps[i].send, l);
                        else
                                (void) !write(c, steps[i].send, (size_t) l);
                }
                sleep_ms(steps[i].sleep_ms);
        }
        _exit(0);
}

static void peer_stop(Peer *peer) {
        (void) kill(peer->pid, SIGKILL);
        (void) waitpid(peer->pid, NULL, 0);
}

/* Loads a one-probe config for the peer and runs the probe once. */
static Probe *run_probe(Config **ret_config, sd_event *e, Manager *m, const char *extra, uint16_t port) {
        char yaml[1024];
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: peer\n"
                 "    type: tcp\n"
                 "    interval: 1m\n"
                 "    timeout: 300ms\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "%s",
                 port, extra);
        int r = config_load_string("test.yaml", yaml, strlen(yaml), &config, &errors);
        for (char **i = errors; i && *i; i++)
                fprintf(stderr, "%s\n", *i);
        ASSERT_OK(r);

        Probe *p = config->probes[0];
        ASSERT_OK(probe_attach(p, m));
        ASSERT_OK(probe_trigger(p));
        usec_t end = now(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;
        while (!p->have_result && now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        ASSERT_TRUE(p->have_result);
        *ret_config = config;
        return p;
}

typedef struct Case {
        const char *name;
        const char *extra_config;
        bool tls;
        bool stall_handshake;
        Step steps[3];
        ProbeStatus status;
        const char *reason;
} Case;

static const Case cases[] = {
        {
                .name = "banner",
                .extra_config = "    expect: \"220 \"\n",
                .steps = { { "220 mx.test ESMTP\r\n", 200 } },
                .status = PROBE_OK,
                .reason = "answered '220 mx.test ESMTP'",
        },
        {
                .name = "banner split across reads",
                .extra_config = "    expect: \"220 \"\n",
                .steps = { { "22", 80 }, { "0 slow ESMTP\r\n", 200 } },
                .status = PROBE_OK,
                .reason = "answered '220 slow ESMTP'",
        },
        {
                .name = "wrong greeting",
                .extra_config = "    expect: \"220 \"\n",
                .steps = { { "554 no service\r\n", 200 } },
                .status = PROBE_CRITICAL,
                .reason = "greeted '554 no service', expected '220 '",
        },
        {
                .name = "garbage",
                .extra_config = "    expect: \"* OK\"\n",
                .steps = { { "\x01\x02\xff\xfe\r\n", 200 } },
                .status = PROBE_CRITICAL,
                .reason = "greeted '?\?\?\?', expected '* OK'",
        },
        {
                .name = "closed before the banner",
                .extra_config = "    expect: \"220 \"\n",
                .steps = { { NULL, 0 } },
                .status = PROBE_CRITICAL,
                .reason = "closed the connection before the banner '220 '",
        },
        {
                .name = "stall mid-line",
                .extra_config = "    expect: \"220 ready\"\n",
                .steps = { { "220 re", 2000 } },
                .status = PROBE_CRITICAL,
                .reason = "no answer within 300ms while waiting for the banner",
        },
        {
                .name = "connect only",
                .extra_config = "",
                .steps = { { NULL, 500 } },
                .status = PROBE_OK,
                .reason = "accepted the connection",
        },
        {
                .name = "implicit TLS with banner",
                .extra_config = "    tls: true\n    expect: \"* OK\"\n",
                .tls = true,
                .steps = { { "* OK IMAP ready\r\n", 500 } },
                .status = PROBE_OK,
                .reason = "answered '* OK IMAP ready'",
        },
        {
                .name = "TLS handshake that never finishes",
                .extra_config = "    tls: true\n",
                .tls = true,
                .stall_handshake = true,
                .status = PROBE_CRITICAL,
                .reason = "no answer within 300ms while in the TLS handshake",
        },
        {
                .name = "TLS expected, plain text spoken",
                .extra_config = "    tls: true\n",
                .steps = { { "220 plain text here, not TLS\r\n", 500 } },
                .status = PROBE_CRITICAL,
                .reason = "TLS handshake failed",
        },
};

TEST(tcp_probe_against_scripted_peers) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                _cleanup_(config_freep) Config *config = NULL;
                sd_event *e = NULL;
                Manager m = {};

                fprintf(stderr, "case: %s\n", c->name);
                ASSERT_OK(sd_event_new(&e));
                m.event = e;
                size_t n_steps = 0;
                while (n_steps < ELEMENTSOF(c->steps) && (c->steps[n_steps].send || c->steps[n_steps].sleep_ms))
                        n_steps++;
                Peer peer = peer_start(c->tls, c->stall_handshake, c->steps, n_steps);

                Probe *p = run_probe(&config, e, &m, c->extra_config, peer.port);
                fprintf(stderr, "  -> %s: %s\n", probe_status_to_string(p->last.status), p->last.reason);
                ASSERT_EQ(p->last.status, c->status);
                ASSERT_CONTAINS(p->last.reason, c->reason);
                ASSERT_FALSE(p->running);

                config = config_free(config);
                peer_stop(&peer);
                free(m.last_status);
                sd_event_unref(e);
        }
}

TEST(tcp_probe_refused_port) {
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *e = NULL;
        Manager m = {};
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        /* A port that was free a moment ago: bound, read back, closed. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        close(fd);

        ASSERT_OK(sd_event_new(&e));
        m.event = e;
        Probe *p = run_probe(&config, e, &m, "", ntohs(sa.sin_port));
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "connect failed: Connection refused");
        config = config_free(config);
        free(m.last_status);
        sd_event_unref(e);
}

TEST(tcp_probe_config_rejects_names) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;
        static const char yaml[] = "probes:\n"
                                   "  - name: smtp\n"
                                   "    type: tcp\n"
                                   "    address: \"mail.example.org:25\"\n";

        /* A name lookup could block the event loop, so only numeric addresses. */
        ASSERT_ERROR(config_load_string("t.yaml", yaml, strlen(yaml), &config, &errors), EINVAL);
        ASSERT_TRUE(errors && errors[0]);
        ASSERT_CONTAINS(errors[0], "address");
        ASSERT_CONTAINS(errors[0], "not a numeric IPv4 or IPv6 address");
}

DEFINE_TEST_MAIN()
