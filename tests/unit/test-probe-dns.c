/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The dns probe against a tiny authoritative server forked on loopback
 * (UDP), serving a zone given as a table. A complete zone is ok; each broken
 * variant must be named in the reason with the record to add or the value
 * expected. */

#include <strings.h>

#include "lib/child.h"
#include "loopback.h"
#include "probe-run.h"

enum { T_A = 1, T_CNAME = 5, T_MX = 15, T_TXT = 16, T_AAAA = 28, T_SRV = 33 };

typedef struct Rec {
        const char *name;
        int type;
        const char *data; /* presentation form: "10 mail.x", "0 1 443 mail.x", text, address */
} Rec;

static const Rec good_zone[] = {
        { "example.test", T_MX, "10 mail.example.test" },
        { "example.test", T_TXT, "v=spf1 mx ~all" },
        { "example.test", T_TXT, "google-site-verification=abc" },
        { "autoconfig.example.test", T_CNAME, "mail.example.test" },
        { "autodiscover.example.test", T_CNAME, "mail.example.test" },
        { "_caldavs._tcp.example.test", T_SRV, "0 1 443 mail.example.test" },
        { "_carddavs._tcp.example.test", T_SRV, "0 1 443 mail.example.test" },
        { "mail.example.test", T_A, "10.99.0.1" },
        { "mail.example.test", T_A, "10.99.0.2" },
        {},
};

static size_t put_name(uint8_t *p, const char *name) {
        size_t k = 0;
        for (const char *s = name; *s;) {
                const char *dot = strchr(s, '.');
                size_t l = dot ? (size_t) (dot - s) : strlen(s);
                p[k++] = (uint8_t) l;
                memcpy(p + k, s, l);
                k += l;
                s += l + (dot ? 1 : 0);
        }
        p[k++] = 0;
        return k;
}

static size_t put16(uint8_t *p, unsigned v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
        return 2;
}

static size_t rdata(uint8_t *p, int type, const char *data) {
        unsigned a, b, c;
        char host[256];
        size_t k = 0;

        switch (type) {
        case T_A:
                inet_pton(AF_INET, data, p);
                return 4;
        case T_AAAA:
                inet_pton(AF_INET6, data, p);
                return 16;
        case T_CNAME:
                return put_name(p, data);
        case T_MX:
                sscanf(data, "%u %255s", &a, host);
                k = put16(p, a);
                return k + put_name(p + k, host);
        case T_SRV:
                sscanf(data, "%u %u %u %255s", &a, &b, &c, host);
                k = put16(p, a);
                k += put16(p + k, b);
                k += put16(p + k, c);
                return k + put_name(p + k, host);
        case T_TXT:
                p[0] = (uint8_t) strlen(data);
                memcpy(p + 1, data, strlen(data));
                return 1 + strlen(data);
        }
        return 0;
}

/* Answers every query from the zone: NXDOMAIN for unknown names, NOERROR
 * without answers for known names without that type. */
static void serve(int fd, const Rec *zone) {
        for (;;) {
                uint8_t q[512], out[2048];
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *) &from, &fl);
                char name[256] = "";
                size_t o = 12, k = 0;

                if (n < 17)
                        continue;
                while (o < (size_t) n && q[o] != 0) {
                        size_t l = q[o++];
                        if (k)
                                name[k++] = '.';
                        memcpy(name + k, q + o, l);
                        k += l;
                        o += l;
                }
                name[k] = 0;
                o++;
                int qtype = q[o] << 8 | q[o + 1];
                size_t qend = o + 4;

                memcpy(out, q, qend);
                out[2] = 0x84 | (q[2] & 0x01); /* QR, AA, RD copied */
                out[3] = 0x00;
                bool known = false;
                unsigned an = 0;
                size_t w = qend;
                for (const Rec *r = zone; r->name; r++) {
                        if (strcasecmp(r->name, name) != 0)
                                continue;
                        known = true;
                        if (r->type != qtype)
                                continue;
                        w += put16(out + w, 0xc00c);
                        w += put16(out + w, (unsigned) r->type);
                        w += put16(out + w, 1);
                        w += put16(out + w, 0);
                        w += put16(out + w, 300);
                        size_t len = rdata(out + w + 2, r->type, r->data);
                        w += put16(out + w, (unsigned) len);
                        w += len;
                        an++;
                }
                if (!known)
                        out[3] = 3; /* NXDOMAIN */
                put16(out + 4, 1);
                put16(out + 6, an);
                put16(out + 8, 0);
                put16(out + 10, 0);
                (void) sendto(fd, out, w, 0, (struct sockaddr *) &from, fl);
        }
}

static LoopbackPeer server_start(const Rec *zone, bool silent) {
        LoopbackPeer s;
        int fd = loopback_peer_fork(SOCK_DGRAM, &s);

        if (fd < 0)
                return s;
        if (silent)
                for (;;)
                        pause();
        serve(fd, zone);
        _exit(0);
}

static Probe *run_probe(ProbeRun *run, uint16_t port, const char *timeout, const char *extra) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: dns-example\n"
                 "    type: dns\n"
                 "    interval: 1h\n"
                 "    timeout: %s\n"
                 "    domain: example.test\n"
                 "    mail_host: mail.example.test.\n"
                 "    nameserver: \"127.0.0.1:%u\"\n"
                 "%s",
                 timeout, port, extra ?: "    addresses: [\"10.99.0.1\", \"10.99.0.2\"]\n");
        probe_run_load(run, yaml);
        return probe_run_once(run, 8 * USEC_PER_SEC);
}

/* The good zone with one record changed (data NULL: removed). */
static Rec *zone_with(const char *name, int type, const char *data) {
        static Rec z[32];
        size_t k = 0;
        bool replaced = false;

        for (const Rec *r = good_zone; r->name; r++) {
                if (strcasecmp(r->name, name) == 0 && r->type == type) {
                        if (data && !replaced)
                                z[k++] = (Rec) { name, type, data };
                        replaced = true;
                        continue;
                }
                z[k++] = *r;
        }
        if (!replaced && data)
                z[k++] = (Rec) { name, type, data };
        z[k] = (Rec) {};
        return z;
}

TEST(dns_zone_variants) {
        static const struct {
                const char *name;
                const char *rname;
                int type;
                const char *data;
                const char *extra;
                ProbeStatus status;
                const char *reason;
        } cases[] = {
                { "complete", "", 0, NULL, NULL, PROBE_OK,
                  "example.test: MX, SPF, autoconfig, autodiscover, CalDAV/CardDAV SRV and 2 node addresses of "
                  "mail.example.test as expected" },
                { "no MX", "example.test", T_MX, NULL, NULL, PROBE_CRITICAL,
                  "MX of example.test is missing: add 'example.test. MX 10 mail.example.test.'" },
                { "MX elsewhere", "example.test", T_MX, "10 mx.other.test", NULL, PROBE_CRITICAL,
                  "MX of example.test points to mx.other.test, expected mail.example.test" },
                { "no SPF", "example.test", T_TXT, "just-text", NULL, PROBE_WARNING,
                  "SPF record of example.test is missing: add 'example.test. TXT \"v=spf1 mx ~all\"'" },
                { "SPF not the configured one", "example.test", T_TXT, "v=spf1 -all",
                  "    addresses: [\"10.99.0.1\", \"10.99.0.2\"]\n    spf: \"v=spf1 mx ~all\"\n", PROBE_WARNING,
                  "SPF of example.test is 'v=spf1 -all', expected 'v=spf1 mx ~all'" },
                { "no autoconfig", "autoconfig.example.test", T_CNAME, NULL, NULL, PROBE_WARNING,
                  "autoconfig.example.test CNAME is missing (NXDOMAIN): add 'autoconfig.example.test. CNAME "
                  "mail.example.test.'" },
                { "autodiscover elsewhere", "autodiscover.example.test", T_CNAME, "old.example.test", NULL,
                  PROBE_WARNING, "autodiscover.example.test CNAME points to old.example.test, expected mail.example.test" },
                { "wrong caldavs port", "_caldavs._tcp.example.test", T_SRV, "0 1 8443 mail.example.test", NULL,
                  PROBE_WARNING, "_caldavs._tcp.example.test SRV is '0 1 8443 mail.example.test', expected '0 1 443 "
                  "mail.example.test'" },
                { "no carddavs", "_carddavs._tcp.example.test", T_SRV, NULL, NULL, PROBE_WARNING,
                  "_carddavs._tcp.example.test SRV is missing (NXDOMAIN): add '_carddavs._tcp.example.test. SRV 0 1 "
                  "443 mail.example.test.'" },
                { "a node missing from the A records", "", 0, NULL,
                  "    addresses: [\"10.99.0.1\", \"10.99.0.2\", \"10.99.0.3\"]\n", PROBE_WARNING,
                  "mail.example.test does not list 10.99.0.3 (it has: 10.99.0.1, 10.99.0.2): add an A record for every node" },
        };
        test_block_sigchld();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ProbeRun run = {};

                fprintf(stderr, "case: %s\n", cases[i].name);
                const Rec *zone = cases[i].type ? zone_with(cases[i].rname, cases[i].type, cases[i].data) : good_zone;
                LoopbackPeer s = server_start(zone, false);
                Probe *p = run_probe(&run, s.port, "5s", cases[i].extra);
                ASSERT_EQ(p->last.status, cases[i].status);
                ASSERT_CONTAINS(p->last.reason, cases[i].reason);
                probe_run_done(&run);
                loopback_peer_stop(&s);
        }
}

TEST(dns_server_silent) {
        ProbeRun run = {};

        test_block_sigchld();
        LoopbackPeer s = server_start(good_zone, true);
        Probe *p = run_probe(&run, s.port, "500ms", NULL);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "no answer within 500ms while resolving the domain's records");
        /* The resolver child was killed, and is reaped by the loop. */
        (void) RUN_UNTIL(run.event, child_abandoned_alive("dns example.test") <= 0, 2 * USEC_PER_SEC);
        ASSERT_EQ(child_abandoned_alive("dns example.test"), 0);
        probe_run_done(&run);
        loopback_peer_stop(&s);
}

TEST(dns_nothing_listens) {
        ProbeRun run = {};

        /* A closed UDP port answers with ICMP port unreachable: said at
         * once, with the server, rather than waited out. */
        test_block_sigchld();
        Probe *p = run_probe(&run, test_free_port(), "5s", NULL);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "DNS lookups for example.test fail: example.test: nothing listens on the "
                                        "name server's DNS port (ICMP port unreachable) (name server 127.0.0.1:");
        ASSERT_TRUE(p->last.duration < 2 * USEC_PER_SEC);
        probe_run_done(&run);
}

TEST(dns_server_silent_within_the_deadline) {
        ProbeRun run = {};

        /* The resolver gives up (two tries of a second) before the 5 s
         * deadline: one question waited out, not all seven. */
        test_block_sigchld();
        LoopbackPeer s = server_start(good_zone, true);
        Probe *p = run_probe(&run, s.port, "5s", NULL);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "DNS lookups for example.test fail: example.test: the name server does not "
                                        "answer (name server 127.0.0.1:");
        ASSERT_TRUE(p->last.duration < 4 * USEC_PER_SEC);
        probe_run_done(&run);
        loopback_peer_stop(&s);
}

TEST(dns_config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } bad[] = {
                { "    domain: \"exa mple\"\n    mail_host: m.x\n    addresses: [\"10.0.0.1\"]\n", "is not a domain name" },
                { "    domain: x.test\n    mail_host: m.x\n    addresses: [\"node1\"]\n",
                  "'node1' is not a numeric IPv4 or IPv6 address" },
                { "    domain: x.test\n    mail_host: m.x\n    addresses: [\"10.0.0.1\"]\n    nameserver: ns1.x\n",
                  "'ns1.x' is not a numeric IPv4 address" },
                { "    domain: x.test\n    mail_host: m.x\n    addresses: [\"10.0.0.1\"]\n    spf: \"mx -all\"\n",
                  "does not start with v=spf1" },
                { "    domain: x.test\n    mail_host: m.x\n", "addresses" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[512];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: d\n    type: dns\n%s", bad[i].keys);
                test_config_load_fails(yaml, bad[i].error);
        }
}

DEFINE_TEST_MAIN()
