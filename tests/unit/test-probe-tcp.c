/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The tcp probe against scripted peers: what real servers do (a banner, TLS),
 * and what they rarely do but the probe must survive (a banner split across
 * reads, a wrong greeting, a peer that stalls in the handshake or before its
 * banner, a refused port). Each peer is a forked child on loopback. */

#include "loopback.h"
#include "probe-run.h"
#include "tls-test-util.h"

typedef struct Step {
        const char *send;  /* bytes to send, NULL for none */
        unsigned sleep_ms; /* then wait */
} Step;

/* Forks a peer that accepts one connection, optionally completes a TLS
 * handshake (or stalls before it), then plays the steps and closes. */
static LoopbackPeer peer_start(bool tls, bool stall_handshake, const Step *steps, size_t n_steps) {
        /* Made before forking, so that key generation does not eat into the
         * probe's deadline. */
        SSL_CTX *ctx = tls ? test_server_tls_context(NULL) : NULL;
        LoopbackPeer peer;
        int fd = loopback_peer_fork(SOCK_STREAM, &peer);

        if (fd < 0) {
                SSL_CTX_free(ctx);
                return peer;
        }

        int c = accept(fd, NULL, NULL);
        if (c < 0)
                _exit(1);
        SSL *ssl = NULL;
        if (stall_handshake)
                peer_sleep_ms(5000);
        if (tls) {
                ssl = SSL_new(ctx);
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
                peer_sleep_ms(steps[i].sleep_ms);
        }
        _exit(0);
}

/* Loads a one-probe config for the peer and runs the probe once. */
static Probe *run_probe(ProbeRun *run, const char *extra, uint16_t port) {
        char yaml[1024];

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
        probe_run_load(run, yaml);
        return probe_run_once(run, 3 * USEC_PER_SEC);
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
                ProbeRun run = {};

                fprintf(stderr, "case: %s\n", c->name);
                size_t n_steps = 0;
                while (n_steps < ELEMENTSOF(c->steps) && (c->steps[n_steps].send || c->steps[n_steps].sleep_ms))
                        n_steps++;
                LoopbackPeer peer = peer_start(c->tls, c->stall_handshake, c->steps, n_steps);

                Probe *p = run_probe(&run, c->extra_config, peer.port);
                ASSERT_EQ(p->last.status, c->status);
                ASSERT_CONTAINS(p->last.reason, c->reason);
                ASSERT_FALSE(p->running);

                probe_run_done(&run);
                loopback_peer_stop(&peer);
        }
}

TEST(tcp_probe_refused_port) {
        ProbeRun run = {};

        /* A port that was free a moment ago. */
        Probe *p = run_probe(&run, "", test_free_port());
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "connect failed: Connection refused");
        probe_run_done(&run);
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
        ASSERT_CONTAINS(errors[0], "host names are not resolved");
}

DEFINE_TEST_MAIN()
