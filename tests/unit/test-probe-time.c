/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The time probe against fake NTP servers forked on loopback: servers in
 * step, ahead and behind, a kiss-o'-death, an unsynchronised server, a stray
 * reply before the real one, a closed port and a silent server. The reasons
 * are what an operator reads, so they are asserted word for word where it
 * matters. */

#include <sys/timex.h>

#include "loopback.h"
#include "probe-run.h"
#include "probes/ntp-packet.h"

typedef enum Behaviour {
        SERVE,
        SERVE_KOD,
        SERVE_LEAP3,
        SERVE_STRAY_FIRST,
        SILENT,
} Behaviour;

static void put64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

/* A server whose clock is `offset` seconds off ours, answering every request. */
static LoopbackPeer server_start(Behaviour how, double offset) {
        LoopbackPeer s;
        int fd = loopback_peer_fork(SOCK_DGRAM, &s);

        if (fd < 0)
                return s;
        for (;;) {
                uint8_t q[NTP_PACKET_SIZE], b[NTP_PACKET_SIZE] = {};
                struct sockaddr_in from;
                socklen_t fl = sizeof from;

                if (recvfrom(fd, q, sizeof q, 0, (struct sockaddr *) &from, &fl) != NTP_PACKET_SIZE)
                        continue;
                if (how == SILENT)
                        continue;
                int64_t shift = (int64_t) (offset * 4294967296.0);
                NtpTimestamp t = ntp_timestamp_from_realtime(now(CLOCK_REALTIME)) + (uint64_t) shift;
                b[0] = (how == SERVE_LEAP3 ? 3 : 0) << 6 | 4 << 3 | 4;
                b[1] = how == SERVE_KOD ? 0 : 3;
                memcpy(b + 12, how == SERVE_KOD ? "RATE" : "\x7f\x00\x00\x01", 4);
                memcpy(b + 24, q + 40, 8);
                put64(b + 32, t);
                put64(b + 40, t);
                if (how == SERVE_STRAY_FIRST) {
                        /* An answer to some other request, then the real one. */
                        uint8_t stray[NTP_PACKET_SIZE];
                        memcpy(stray, b, sizeof stray);
                        stray[31] ^= 0xff;
                        stray[1] = 0;
                        (void) sendto(fd, stray, sizeof stray, 0, (struct sockaddr *) &from, fl);
                        usleep(20000);
                }
                (void) sendto(fd, b, sizeof b, 0, (struct sockaddr *) &from, fl);
        }
}

/* A UDP port with nobody behind it: bound, read back, closed. */
static uint16_t closed_port(void) {
        uint16_t port;

        close(test_loopback_socket(SOCK_DGRAM, &port));
        return port;
}

static Probe *run_probe(ProbeRun *run, const char *keys) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: clock\n"
                 "    type: time\n"
                 "    interval: 1m\n"
                 "    timeout: 500ms\n"
                 "%s",
                 keys);
        probe_run_load(run, yaml);
        return probe_run_once(run, 3 * USEC_PER_SEC);
}

typedef struct Case {
        const char *name;
        Behaviour how;
        double offset;
        const char *extra;
        ProbeStatus status;
        const char *reason;
        const char *reason2; /* a second part, after the measured numbers */
} Case;

static const Case cases[] = {
        { "in step", SERVE, 0.0, "", PROBE_OK, "1 NTP source within" },
        /* The exact figures depend on scheduling; their shape does not. */
        { "ahead, critical", SERVE, 1.234, "", PROBE_CRITICAL, " is 1.2", " s ahead (delay " },
        { "ahead, critical (advice)", SERVE, 1.234, "", PROBE_CRITICAL,
          " ms): more than the 1 s the cluster tolerates; check chrony on that host" },
        /* 0.7 less half the round trip: "0.698" on a loaded machine (the
         * value itself is checked within 50 ms below). */
        { "behind, warning", SERVE, -0.7, "", PROBE_WARNING, " is 0.", " s behind (delay " },
        { "behind, warning (advice)", SERVE, -0.7, "", PROBE_WARNING,
          " ms): close to the 1 s the cluster tolerates (warning above 0.5 s); check chrony on that host" },
        { "tighter thresholds", SERVE, 0.3, "    skew_warning: 100ms\n    skew_critical: 200ms\n", PROBE_CRITICAL,
          "more than the 0.2 s the cluster tolerates" },
        { "kiss-o'-death", SERVE_KOD, 0, "", PROBE_WARNING, "kiss-o'-death (code RATE)" },
        { "unsynchronised server", SERVE_LEAP3, 0, "", PROBE_WARNING,
          "says the server itself is not synchronized (leap indicator 3)" },
        { "stray reply first", SERVE_STRAY_FIRST, 0.0, "", PROBE_OK, "1 NTP source within" },
        { "silent server", SILENT, 0, "", PROBE_CRITICAL, "no answer within 500ms while waiting for NTP replies from 127.0.0.1:" },
};

TEST(time_probe_against_fake_servers) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                ProbeRun run = {};
                char keys[512];

                fprintf(stderr, "case: %s\n", c->name);
                LoopbackPeer s = server_start(c->how, c->offset);
                snprintf(keys, sizeof keys, "    ignore_kernel_clock: true\n    servers: [\"127.0.0.1:%u\"]\n%s",
                         s.port, c->extra);
                Probe *p = run_probe(&run, keys);
                ASSERT_EQ(p->last.status, c->status);
                ASSERT_CONTAINS(p->last.reason, c->reason);
                if (c->reason2)
                        ASSERT_CONTAINS(strstr(p->last.reason, c->reason), c->reason2);
                if (c->how == SERVE || c->how == SERVE_STRAY_FIRST) {
                        char label[64];
                        snprintf(label, sizeof label, "source=\"127.0.0.1:%u\"", s.port);
                        ASSERT_TRUE(fabs(probe_sample_value(p, "rupost_time_offset_seconds", label) - c->offset) < 0.05);
                        ASSERT_TRUE(probe_sample_value(p, "rupost_time_max_skew_seconds", NULL) >= fabs(c->offset) - 0.05);
                }
                probe_run_done(&run);
                loopback_peer_stop(&s);
        }
}

TEST(time_probe_names_the_worst_of_several) {
        ProbeRun run = {};
        char keys[512];

        LoopbackPeer a = server_start(SERVE, 0.1), b = server_start(SERVE, -2.5), c = server_start(SERVE, 0.6);
        uint16_t closed = closed_port();
        snprintf(keys, sizeof keys,
                 "    ignore_kernel_clock: true\n"
                 "    servers: [\"127.0.0.1:%u\"]\n"
                 "    peers: [\"127.0.0.1:%u\", \"127.0.0.1:%u\", \"127.0.0.1:%u\"]\n",
                 a.port, b.port, c.port, closed);
        Probe *p = run_probe(&run, keys);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        char want[128];
        snprintf(want, sizeof want, "127.0.0.1:%u is 2.", b.port);
        ASSERT_TRUE(strncmp(p->last.reason, want, strlen(want)) == 0);
        ASSERT_CONTAINS(p->last.reason, " s behind (delay ");
        snprintf(want, sizeof want, "cannot compare with 127.0.0.1:%u: nothing listens on its NTP port", closed);
        ASSERT_CONTAINS(p->last.reason, want);
        ASSERT_TRUE(fabs(probe_sample_value(p, "rupost_time_max_skew_seconds", NULL) - 2.5) < 0.05);
        probe_run_done(&run);
        loopback_peer_stop(&a);
        loopback_peer_stop(&b);
        loopback_peer_stop(&c);
}

TEST(time_probe_kernel_view) {
        struct timex tx = {};
        ProbeRun run = {};

        /* Whatever this machine's clock state is, the probe must read it the
         * way the kernel reports it. */
        Probe *p = run_probe(&run, "    max_error: 250ms\n");
        ASSERT_TRUE(ntp_adjtime(&tx) >= 0);
        fprintf(stderr, "  maxerror %ld us -> %s: %s\n", tx.maxerror, probe_status_to_string(p->last.status),
                p->last.reason);
        if (tx.maxerror > 250000) {
                ASSERT_EQ(p->last.status, PROBE_CRITICAL);
                ASSERT_CONTAINS(p->last.reason, "the kernel clock is not synchronised (maxerror");
                ASSERT_CONTAINS(p->last.reason, "check that chronyd runs");
                ASSERT_TRUE(probe_sample_value(p, "rupost_time_sync_status", NULL) == 0);
        } else {
                ASSERT_EQ(p->last.status, PROBE_OK);
                ASSERT_TRUE(probe_sample_value(p, "rupost_time_sync_status", NULL) == 1);
        }
        ASSERT_TRUE(fabs(probe_sample_value(p, "rupost_time_maxerror_seconds", NULL) - tx.maxerror / 1e6) < 0.01);
        probe_run_done(&run);
}

TEST(time_probe_config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } bad[] = {
                { "    servers: [\"ntp.example.org\"]\n", "servers: 'ntp.example.org' is not a numeric" },
                { "    peers: [\"10.0.0.5:99999\"]\n", "peers: '10.0.0.5:99999' is not a numeric" },
                { "    servers: [\":123\"]\n", "is not a numeric" },
                { "    skew_warning: 2s\n", "skew_warning: is above skew_critical" },
                { "    max_error: 20s\n", "max_error" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[512];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: clock\n    type: time\n%s", bad[i].keys);
                test_config_load_fails(yaml, bad[i].error);
        }

        /* Bare addresses get port 123; IPv6 with and without brackets. */
        static const char ok[] = "probes:\n  - name: clock\n    type: time\n"
                                 "    servers: [\"10.0.0.5\", \"2001:db8::5\", \"[2001:db8::6]:1123\", \"[::1]\"]\n";
        config_free(test_config_load(ok));
}

DEFINE_TEST_MAIN()
