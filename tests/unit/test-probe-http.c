/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The http probe against a forked HTTP server: accepted and refused status
 * codes, redirects judged by their target, bodies searched (also past the
 * body cap), latency warnings, the Host header sent without a name lookup,
 * a server that never answers, a refused port, the verdict naming a failing
 * dependency, and configuration errors. */

#include "http-peer.h"
#include "loopback.h"
#include "probe-run.h"

typedef struct Case {
        const char *name;
        const char *path;
        const char *extra;
        ProbeStatus status;
        const char *reason;
        int code; /* rupost_http_status_code, -1: none */
} Case;

static const Case cases[] = {
        { "200", "/ok", "", PROBE_OK, "/ok answered 200 in ", 200 },
        { "HEAD", "/ok", "    method: HEAD\n", PROBE_OK, "/ok answered 200 in ", 200 },
        { "404", "/missing", "", PROBE_CRITICAL, "/missing answered 404, expected 200", 404 },
        { "SOGo accepts 200 or 302", "/ok", "    expect_status: [200, 302]\n", PROBE_OK, "answered 200", 200 },
        { "302 not accepted", "/redirect", "    expect_status: [200, 302]\n", PROBE_CRITICAL,
          "/redirect answered 301 to https://mail.test/, expected 200 or 302", 301 },
        { "redirect to https", "/redirect", "    expect_status: [301]\n    expect_location: \"https://\"\n",
          PROBE_OK, "answered 301", 301 },
        { "200 where a redirect is due", "/ok", "    expect_status: [301]\n    expect_location: \"https://\"\n",
          PROBE_CRITICAL, "/ok answered 200, expected 301 to https://", 200 },
        { "redirect to the wrong place", "/wrong", "    expect_status: [301]\n    expect_location: \"https://\"\n",
          PROBE_CRITICAL, "answered 301 to http://elsewhere.test/, expected a redirect to https://", 301 },
        { "body found", "/ok", "    expect_body: \"hello\"\n", PROBE_OK, "answered 200", 200 },
        { "body not found", "/ok", "    expect_body: \"SOGo\"\n", PROBE_CRITICAL,
          "answered 200 but the body does not contain 'SOGo'", 200 },
        { "large body, status only", "/big", "", PROBE_OK, "answered 200", 200 },
        { "large body, text within the cap", "/big", "    expect_body: \"xxxx\"\n", PROBE_OK, "answered 200", 200 },
        { "large body, text not within the cap", "/big", "    expect_body: \"yyyy\"\n", PROBE_CRITICAL,
          "the body (first 64 KiB) does not contain 'yyyy'", 200 },
        { "slow", "/slow", "    latency_warning: 200ms\n", PROBE_WARNING, "slower than 200ms", 200 },
        { "never answers", "/hang", "", PROBE_CRITICAL, "no answer within 2s while waiting for the HTTP answer", -1 },
        { "closes without answering", "/close", "", PROBE_CRITICAL,
          "the server closed the connection without an answer", 0 },
};

TEST(http_probe_against_a_scripted_server) {
        HttpPeer peer = http_peer_start();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                ProbeRun run = {};
                char yaml[1024];

                fprintf(stderr, "case: %s\n", c->name);
                snprintf(yaml, sizeof yaml,
                         "probes:\n"
                         "  - name: web\n"
                         "    type: http\n"
                         "    interval: 1m\n"
                         "    timeout: 2s\n"
                         "    url: \"http://127.0.0.1:%u%s\"\n"
                         "%s",
                         peer.port, c->path, c->extra);
                probe_run_load(&run, yaml);
                Probe *p = probe_run_once(&run, 5 * USEC_PER_SEC);
                ASSERT_EQ(p->last.status, c->status);
                ASSERT_CONTAINS(p->last.reason, c->reason);
                const Sample *code = probe_sample(p, "rupost_http_status_code", NULL);
                ASSERT_EQ(code ? (int) code->value : -1, c->code);
                if (c->code > 0)
                        ASSERT_TRUE(probe_sample_value(p, "rupost_http_response_duration_seconds", NULL) >= 0);
                ASSERT_EQ(curl_glue_n_requests(run.manager.curl), 0);

                probe_run_done(&run);
        }
        http_peer_stop(&peer);
}

TEST(host_header_without_lookup) {
        HttpPeer peer = http_peer_start();
        ProbeRun run = {};
        char yaml[1024];

        /* The name goes into Host (and SNI); the connection goes to the
         * numeric address. A .invalid name cannot resolve, so an answer
         * proves nothing was looked up. */
        snprintf(yaml, sizeof yaml,
                 "probes:\n"
                 "  - name: sogo\n"
                 "    type: http\n"
                 "    url: \"http://127.0.0.1:%u/sogo\"\n"
                 "    host_header: mail.example.invalid\n"
                 "    expect_body: \"host=mail.example.invalid:%u\"\n",
                 peer.port, peer.port);
        probe_run_load(&run, yaml);
        Probe *p = probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(p->last.status, PROBE_OK);
        /* The reason names the configured URL, which is what the operator wrote. */
        ASSERT_CONTAINS(p->last.reason, "http://127.0.0.1:");

        probe_run_done(&run);
        http_peer_stop(&peer);
}

TEST(refused_with_failing_dependency) {
        ProbeRun run = {};
        char yaml[1024];
        uint16_t port = test_free_port();

        snprintf(yaml, sizeof yaml,
                 "probes:\n"
                 "  - name: postgres\n"
                 "    type: tcp\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "  - name: memcached\n"
                 "    type: tcp\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "  - name: sogo\n"
                 "    type: http\n"
                 "    url: \"http://127.0.0.1:%u/SOGo/\"\n"
                 "    depends_on: [postgres, memcached, ldap]\n",
                 port, port, port);
        probe_run_load(&run, yaml);
        ASSERT_EQ(probe_run_once(&run, 5 * USEC_PER_SEC)->status, PROBE_CRITICAL);
        probe_run_select(&run, 2);
        Probe *p = probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "/SOGo/: connect failed: Connection refused");
        /* postgres has reported and is failing: named with its own reason.
         * memcached has not run yet and ldap does not exist: not named. */
        ASSERT_CONTAINS(p->last.reason, " (postgres is critical: 127.0.0.1:");
        ASSERT_NOT_CONTAINS(p->last.reason, "memcached");
        ASSERT_NOT_CONTAINS(p->last.reason, "ldap");
        ASSERT_EQ((int) probe_sample_value(p, "rupost_http_status_code", NULL), 0);

        probe_run_done(&run);
}

TEST(config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } bad[] = {
                { "    url: \"https://mail.example.org/SOGo/\"\n", "probes[0].url: 'https://mail.example.org/SOGo/': the host must be a numeric" },
                { "    url: \"ftp://127.0.0.1/\"\n", "only http:// and https://" },
                { "    url: \"http://127.0.0.1/\"\n    method: POST\n", "probes[0].method: 'POST' is not GET or HEAD" },
                { "    url: \"http://127.0.0.1/\"\n    expect_status: [200, abc]\n", "probes[0].expect_status: 'abc' is not an HTTP status code" },
                { "    url: \"http://127.0.0.1/\"\n    expect_status: [99]\n", "'99' is not an HTTP status code" },
                { "    url: \"http://127.0.0.1/\"\n    expect_location: \"https://\"\n", "probes[0].expect_location: needs a redirect (3xx)" },
                { "    url: \"http://127.0.0.1/\"\n    host_header: \"a:b@evil\"\n", "probes[0].host_header: 'a:b@evil' is not a host name" },
                { "    url: \"http://127.0.0.1/\"\n    method: HEAD\n    expect_body: x\n", "probes[0].expect_body: a HEAD request has no body" },
                { "    host_header: mail.example.org\n", "probes[0].url: required key is missing" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[1024];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: web\n    type: http\n%s", bad[i].keys);
                test_config_load_fails(yaml, bad[i].error);
        }
}

static void write_status(const char *body) {
        FILE *f = fopen(http_peer_status_file, "we");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fputs(body, f) >= 0);
        ASSERT_OK(fclose(f));
}

/* The nginx probe reads stub_status through the same glue: counters become
 * metrics, drops are judged by their growth between runs, and a page that
 * is not stub_status is the check failing, not nginx. */
TEST(nginx_probe) {
        ProbeRun run = {};
        char yaml[512];
        int fd;

        snprintf(http_peer_status_file, sizeof http_peer_status_file, "/tmp/test-nginx-status-XXXXXX");
        ASSERT_TRUE((fd = mkstemp(http_peer_status_file)) >= 0);
        close(fd);
        HttpPeer peer = http_peer_start();

        snprintf(yaml, sizeof yaml,
                 "probes:\n"
                 "  - name: nginx\n"
                 "    type: nginx\n"
                 "    url: \"http://127.0.0.1:%u/status\"\n",
                 peer.port);
        probe_run_load(&run, yaml);

        static const struct {
                const char *body;
                ProbeStatus status;
                const char *reason;
        } runs[] = {
                /* Earlier drops alone are history, not a warning. */
                { "Active connections: 291 \nserver accepts handled requests\n 1000 990 5000 \nReading: 6 Writing: 179 Waiting: 106 \n",
                  PROBE_OK, "nginx: 291 active connections, 5000 requests served (some connections were dropped earlier)" },
                { "Active connections: 12 \nserver accepts handled requests\n 1100 1090 5300 \nReading: 0 Writing: 2 Waiting: 10 \n",
                  PROBE_OK, "nginx: 12 active connections, 5300 requests served" },
                { "Active connections: 1024 \nserver accepts handled requests\n 1300 1250 5400 \nReading: 0 Writing: 24 Waiting: 1000 \n",
                  PROBE_WARNING, "nginx dropped 40 connections since the last check (50 since it started): worker_connections or a resource limit" },
                /* A restart resets the counters: not a drop. */
                { "Active connections: 1 \nserver accepts handled requests\n 3 3 3 \nReading: 0 Writing: 1 Waiting: 0 \n",
                  PROBE_OK, "nginx: 1 active connections, 3 requests served" },
                { "<html><body>hello</body></html>\n", PROBE_UNKNOWN,
                  "/status: not a stub_status page: line 1: expected 'Active connections: N'" },
        };
        for (size_t i = 0; i < ELEMENTSOF(runs); i++) {
                write_status(runs[i].body);
                Probe *p = probe_run_once(&run, 3 * USEC_PER_SEC);
                ASSERT_EQ(p->last.status, runs[i].status);
                ASSERT_CONTAINS(p->last.reason, runs[i].reason);
        }
        /* The metrics of a good page, as nginx-prometheus-exporter names them plus _total. */
        write_status(runs[0].body);
        Probe *p = probe_run_once(&run, 3 * USEC_PER_SEC);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_active", NULL) == 291);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_accepted_total", NULL) == 1000);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_handled_total", NULL) == 990);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_http_requests_total", NULL) == 5000);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_reading", NULL) == 6);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_writing", NULL) == 179);
        ASSERT_TRUE(probe_sample_value(p, "rupost_nginx_connections_waiting", NULL) == 106);

        probe_run_done(&run);
        http_peer_stop(&peer);
        unlink(http_peer_status_file);
}

TEST(nginx_probe_refused) {
        ProbeRun run = {};
        char yaml[512];

        snprintf(yaml, sizeof yaml, "probes:\n  - name: nginx\n    type: nginx\n    url: \"http://127.0.0.1:%u/basic_status\"\n",
                 test_free_port());
        probe_run_load(&run, yaml);
        Probe *p = probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "/basic_status: connect failed: Connection refused");
        probe_run_done(&run);
}

DEFINE_TEST_MAIN()
