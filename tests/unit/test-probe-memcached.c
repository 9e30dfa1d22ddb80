/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The memcached probe against a scripted peer forked on loopback, which
 * answers the pipelined stats/set/get with the numbers each case needs (a
 * cache too small for the sizing rule, connections near the limit, an old
 * version, a failing set, a clock ahead, evictions between runs, garbage, a
 * stall), and against a real memcached started with -m 1 -I 512k when one is
 * installed. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "config.h"
#include "manager.h"
#include "probe.h"
#include "tests.h"

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

typedef struct Peer {
        pid_t pid;
        uint16_t port;
} Peer;

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

static Peer peer_start(const Script *s) {
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
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (unsigned conn = 0;; conn++) {
                int c = accept(fd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                serve(c, s, conn);
                close(c);
        }
}

static void peer_stop(Peer *peer) {
        (void) kill(peer->pid, SIGKILL);
        (void) waitpid(peer->pid, NULL, 0);
}

typedef struct Run {
        Config *config;
        sd_event *event;
        Manager manager;
        Probe *probe;
} Run;

static void run_load(Run *run, uint16_t port, const char *keys) {
        char yaml[2048];
        _cleanup_strv_free_ char **errors = NULL;

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
        int r = config_load_string("test.yaml", yaml, strlen(yaml), &run->config, &errors);
        for (char **i = errors; i && *i; i++)
                fprintf(stderr, "%s\n", *i);
        ASSERT_OK(r);
        ASSERT_OK(sd_event_new(&run->event));
        run->manager = (Manager) { .event = run->event, .config = run->config };
        run->probe = run->config->probes[0];
        ASSERT_OK(probe_attach(run->probe, &run->manager));
}

static void run_once(Run *run) {
        uint64_t before = run->probe->n_runs;

        ASSERT_OK(probe_trigger(run->probe));
        usec_t end = now(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (run->probe->n_runs == before && now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(run->event, 50 * USEC_PER_MSEC));
        ASSERT_TRUE(run->probe->n_runs == before + 1);
        fprintf(stderr, "  -> %s: %s\n", probe_status_to_string(run->probe->last.status), run->probe->last.reason);
}

static void run_done(Run *run) {
        /* The manager lives on the stack here; what it allocated does not. */
        free(run->manager.last_status);
        run->manager.last_status = NULL;
        run->config = config_free(run->config);
        run->event = sd_event_unref(run->event);
}

static double sample_value(Probe *p, const char *family) {
        for (size_t i = 0; i < p->last.n_samples; i++)
                if (streq(p->last.samples[i].family->name, family))
                        return p->last.samples[i].value;
        ASSERT_FAIL("no sample of %s", family);
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
                Run run = {};

                fprintf(stderr, "case: %s\n", cases[i].name);
                Peer peer = peer_start(&cases[i].script);
                run_load(&run, peer.port, cases[i].keys);
                run_once(&run);
                ASSERT_EQ(run.probe->last.status, cases[i].status);
                ASSERT_CONTAINS(run.probe->last.reason, cases[i].reason);
                if (streq(cases[i].name, "healthy")) {
                        ASSERT_TRUE(sample_value(run.probe, "rupost_memcached_limit_bytes") == 128.0 * 1024 * 1024);
                        ASSERT_TRUE(sample_value(run.probe, "rupost_memcached_current_connections") == 2);
                        ASSERT_TRUE(sample_value(run.probe, "rupost_memcached_accepting_connections") == 1);
                        ASSERT_TRUE(fabs(sample_value(run.probe, "rupost_time_offset_seconds")) <= 1);
                }
                run_done(&run);
                peer_stop(&peer);
        }
}

TEST(memcached_probe_eviction_rate) {
        /* 0 evictions at the first run, 5000 more at the second: whatever
         * the time between them, that is far above 600 per minute. */
        Script s = { .accepting = 1, .limit_mib = 64, .evictions = 0, .evictions_step = 5000 };
        Peer peer = peer_start(&s);
        Run run = {};

        run_load(&run, peer.port, "");
        run_once(&run);
        ASSERT_EQ(run.probe->last.status, PROBE_OK);
        run_once(&run);
        ASSERT_EQ(run.probe->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(run.probe->last.reason, " items per minute: it is too small for its load, raise -m");
        ASSERT_TRUE(sample_value(run.probe, "rupost_memcached_items_evicted_total") == 5000);
        run_done(&run);
        peer_stop(&peer);
}

TEST(memcached_probe_refused) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        Run run = {};

        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        close(fd);
        run_load(&run, ntohs(sa.sin_port), "");
        run_once(&run);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, "connect failed: Connection refused: is memcached running?");
        run_done(&run);
}

TEST(memcached_probe_real_server) {
        static const char binary[] = "/usr/bin/memcached";
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        char port[16];
        Run run = {};

        if (access(binary, X_OK) < 0) {
                fprintf(stderr, "memcached is not installed, skipping the real-server case\n");
                return;
        }
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        close(fd);
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
        run_once(&run);
        ASSERT_EQ(run.probe->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(run.probe->last.reason,
                        "memcached has 1 MiB, needs at least 99 MiB for 2 LDAP domains and 10000 users: set -m 99");
        ASSERT_TRUE(sample_value(run.probe, "rupost_memcached_limit_bytes") == 1024 * 1024);
        run_done(&run);
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
}

DEFINE_TEST_MAIN()
