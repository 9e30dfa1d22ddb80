/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The memcached probe against a scripted peer forked on loopback, which
 * answers the pipelined stats/set/get with the numbers each case needs (a
 * cache too small for the sizing rule, connections near the limit, an old
 * version, a failing set, a clock ahead, evictions between runs, garbage, a
 * stall), and against a real memcached started with -m 1 -I 512k when one is
 * installed. */

#include "loopback.h"
#include "probe-run.h"

typedef struct Script {
        const char *version;
        unsigned curr, max, accepting;
        unsigned long long limit_mib;
        unsigned long long evictions, evictions_step;
        int clock_skew;
        const char *set_reply; /* NULL: STORED */
        bool miss;             /* get returns nothing */
        const char *raw;       /* send this instead of a reply */
        bool stall;            /* read the request, answer nothing */
} Script;

static void serve(int c, const Script *s, unsigned conn) {
        char req[4096], out[4096];
        size_t len = 0;

        /* Read until the last command of the pipeline arrived. */
        while (len < sizeof req - 1) {
                ssize_t n = read(c, req + len, sizeof req - 1 - len);
                if (n <= 0)
                        return;
                len += (size_t) n;
                req[len] = 0;
                char *get = strstr(req, "get ");
                if (get && strstr(get, "\r\n"))
                        break;
        }
        if (s->stall) {
                sleep(10);
                return;
        }
        if (s->raw) {
                (void) !write(c, s->raw, strlen(s->raw));
                return;
        }
        char key[256] = "", value[64] = "";
        unsigned vlen = 0;
        if (sscanf(req, "stats\r\nset %255s 0 60 %u\r\n", key, &vlen) != 2 || vlen >= sizeof value)
                return;
        char *data = strstr(strstr(req, "set "), "\r\n") + 2;
        memcpy(value, data, vlen);

        int n = snprintf(out, sizeof out,
                         "STAT pid 1\r\nSTAT uptime %u\r\nSTAT time %lld\r\nSTAT version %s\r\n"
                         "STAT max_connections %u\r\nSTAT curr_connections %u\r\nSTAT accepting_conns %u\r\n"
                         "STAT rejected_connections 0\r\nSTAT listen_disabled_num 0\r\n"
                         "STAT cmd_set 5\r\nSTAT get_hits 4\r\nSTAT get_misses 1\r\n"
                         "STAT bytes 1024\r\nSTAT limit_maxbytes %llu\r\nSTAT evictions %llu\r\nEND\r\n"
                         "%s\r\n",
                         100 + conn, (long long) (now(CLOCK_REALTIME) / USEC_PER_SEC) + s->clock_skew,
                         s->version ?: "1.6.18", s->max ?: 1024, s->curr ?: 2, s->accepting, s->limit_mib * 1024 * 1024,
                         s->evictions + conn * s->evictions_step, s->set_reply ?: "STORED");
        if (s->miss)
                n += snprintf(out + n, sizeof out - (size_t) n, "END\r\n");
        else
                n += snprintf(out + n, sizeof out - (size_t) n, "VALUE %s 0 %u\r\n%s\r\nEND\r\n", key, vlen, value);
        /* In two pieces, as a real network may deliver it. */
        (void) !write(c, out, (size_t) n / 2);
        usleep(10000);
        (void) !write(c, out + n / 2, (size_t) n - (size_t) n / 2);
}

static LoopbackPeer peer_start(const Script *s) {
        LoopbackPeer peer;
        int fd = loopback_peer_fork(SOCK_STREAM, &peer);

        if (fd < 0)
                return peer;
        for (unsigned conn = 0;; conn++) {
                int c = accept(fd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                serve(c, s, conn);
                close(c);
        }
}

static void run_load(ProbeRun *run, uint16_t port, const char *keys) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: cache\n"
                 "    type: memcached\n"
                 "    interval: 1h\n"
                 "    timeout: 500ms\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "%s",
                 port, keys);
        probe_run_load(run, yaml);
}

typedef struct Case {
        const char *name;
        Script script;
        const char *keys;
        ProbeStatus status;
        const char *reason;
} Case;

static const Case cases[] = {
        { "healthy", { .accepting = 1, .limit_mib = 128 }, "    ldap_domains: 2\n    users: 10000\n", PROBE_OK,
          "memcached 1.6.18: set/get of rupost-agent:test ok, 2/1024 connections, 0 of 128 MiB used" },
        { "too small for the sizing rule", { .accepting = 1, .limit_mib = 64 },
          "    ldap_domains: 2\n    users: 10000\n", PROBE_WARNING,
          "memcached has 64 MiB, needs at least 99 MiB for 2 LDAP domains and 10000 users: set -m 99" },
        { "no sizing configured", { .accepting = 1, .limit_mib = 1 }, "", PROBE_OK, "set/get of rupost-agent:test ok" },
        { "connections near the limit", { .accepting = 1, .limit_mib = 64, .curr = 950, .max = 1024 }, "",
          PROBE_WARNING, "memcached has 950 of 1024 connections in use: raise -c" },
        { "not accepting", { .accepting = 0, .limit_mib = 64, .curr = 1024, .max = 1024 }, "", PROBE_CRITICAL,
          "memcached stopped accepting connections (limit of 1024 reached): raise -c" },
        { "old version", { .version = "1.4.25", .accepting = 1, .limit_mib = 64 }, "", PROBE_WARNING,
          "memcached 1.4.25 is older than 1.4.33, the oldest the product supports: upgrade it" },
        { "set fails", { .accepting = 1, .limit_mib = 64, .set_reply = "SERVER_ERROR out of memory storing object", .miss = true },
          "", PROBE_CRITICAL,
          "set of rupost-agent:test failed: memcached answered 'SERVER_ERROR out of memory storing object'" },
        { "stored but lost", { .accepting = 1, .limit_mib = 64, .miss = true }, "", PROBE_CRITICAL,
          "rupost-agent:test was stored but get returned nothing" },
        { "clock ahead", { .accepting = 1, .limit_mib = 64, .clock_skew = 5 }, "", PROBE_WARNING,
          "memcached's clock is 5 s ahead of ours: the cluster tolerates 1 s; check chrony on the memcached host" },
        { "not memcached", { .raw = "SSH-2.0-OpenSSH_9.2\r\n" }, "", PROBE_CRITICAL,
          "does not speak the memcached protocol: the stats reply has a line that is not STAT or END: 'SSH-2.0-OpenSSH_9.2'" },
        { "closes early", { .raw = "STAT pid 1\r\n" }, "", PROBE_CRITICAL, "closed the connection after 12 bytes of reply" },
        { "stall", { .stall = true }, "", PROBE_CRITICAL,
          "no answer within 500ms while waiting for the stats, set and get replies" },
};

TEST(memcached_probe_against_scripted_peers) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ProbeRun run = {};

                fprintf(stderr, "case: %s\n", cases[i].name);
                LoopbackPeer peer = peer_start(&cases[i].script);
                run_load(&run, peer.port, cases[i].keys);
                probe_run_once(&run, 5 * USEC_PER_SEC);
                ASSERT_EQ(run.probe->last.status, cases[i].status);
                ASSERT_CONTAINS(run.probe->last.reason, cases[i].reason);
                if (streq(cases[i].name, "healthy")) {
                        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_memcached_limit_bytes", NULL) == 128.0 * 1024 * 1024);
                        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_memcached_current_connections", NULL) == 2);
                        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_memcached_accepting_connections", NULL) == 1);
                        ASSERT_TRUE(fabs(probe_sample_value(run.probe, "rupost_time_offset_seconds", NULL)) <= 1);
                }
                probe_run_done(&run);
                loopback_peer_stop(&peer);
        }
}

TEST(memcached_probe_eviction_rate) {
        /* 0 evictions at the first run, 5000 more at the second: whatever
         * the time between them, that is far above 600 per minute. */
        Script s = { .accepting = 1, .limit_mib = 64, .evictions = 0, .evictions_step = 5000 };
        LoopbackPeer peer = peer_start(&s);
        ProbeRun run = {};

        run_load(&run, peer.port, "");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_OK);
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(run.probe->last.reason, " items per minute: it is too small for its load, raise -m");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_memcached_items_evicted_total", NULL) == 5000);
        probe_run_done(&run);
        loopback_peer_stop(&peer);
}

TEST(memcached_probe_refused) {
        ProbeRun run = {};

        run_load(&run, test_free_port(), "");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, "connect failed: Connection refused: is memcached running?");
        probe_run_done(&run);
}

TEST(memcached_probe_real_server) {
        static const char binary[] = "/usr/bin/memcached";
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char port[16];
        ProbeRun run = {};

        if (access(binary, X_OK) < 0) {
                fprintf(stderr, "memcached is not installed, skipping the real-server case\n");
                return;
        }
        sa.sin_port = htons(test_free_port());
        snprintf(port, sizeof port, "%u", ntohs(sa.sin_port));

        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* 1.6 refuses -m 1 with its default 1 MiB item size limit. */
                execl(binary, binary, "-m", "1", "-I", "512k", "-p", port, "-U", "0", "-l", "127.0.0.1", "-u", "nobody", NULL);
                _exit(127);
        }
        /* Until it listens. */
        for (int i = 0; i < 100; i++) {
                int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int ok = connect(c, (struct sockaddr *) &sa, sizeof sa) == 0;
                close(c);
                if (ok)
                        break;
                usleep(20000);
        }

        run_load(&run, ntohs(sa.sin_port), "    ldap_domains: 2\n    users: 10000\n");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(run.probe->last.reason,
                        "memcached has 1 MiB, needs at least 99 MiB for 2 LDAP domains and 10000 users: set -m 99");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_memcached_limit_bytes", NULL) == 1024 * 1024);
        probe_run_done(&run);
        loopback_peer_stop(&(LoopbackPeer) { .pid = pid });
}

DEFINE_TEST_MAIN()
