/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The http probe against a forked HTTP server: accepted and refused status
 * codes, redirects judged by their target, bodies searched (also past the
 * body cap), latency warnings, the Host header sent without a name lookup,
 * a server that never answers, a refused port, the verdict naming a failing
 * dependency, and configuration errors. */

#include "config.h"
#include "http-peer.h"
#include "lib/curl-glue.h"
#include "manager.h"
#include "probe.h"

static uint16_t free_port(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        close(fd);
        return ntohs(sa.sin_port);
}

static Config *load(const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;
        int r = config_load_string("test.yaml", yaml, strlen(yaml), &config, &errors);
        for (char **i = errors; i && *i; i++)
                fprintf(stderr, "%s\n", *i);
        ASSERT_OK(r);
        return config;
}

static void run(sd_event *e, Manager *m, Probe *p) {
        ASSERT_OK(probe_attach(p, m));
        ASSERT_OK(probe_trigger(p));
        usec_t end = now(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (!p->have_result && now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        ASSERT_TRUE(p->have_result);
        ASSERT_FALSE(p->running);
}

static double sample(const Probe *p, const char *family) {
        for (size_t i = 0; i < p->last.n_samples; i++)
                if (streq(p->last.samples[i].family->name, family))
                        return p->last.samples[i].value;
        return -1;
}

typedef struct Case {
        const char *name;
        const char *path;
        const char *extra;
        ProbeStatus status;
        const char *reason;
        int code; /* rupost_http_status_code */
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
                _cleanup_(config_freep) Config *config = NULL;
                sd_event *e = NULL;
                Manager m = {};
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
                config = load(yaml);
                ASSERT_OK(sd_event_new(&e));
                m.event = e;
                Probe *p = config->probes[0];
                run(e, &m, p);
                fprintf(stderr, "  -> %s: %s\n", probe_status_to_string(p->last.status), p->last.reason);
                ASSERT_EQ(p->last.status, c->status);
                ASSERT_CONTAINS(p->last.reason, c->reason);
                ASSERT_EQ((int) sample(p, "rupost_http_status_code"), c->code);
                if (c->code > 0)
                        ASSERT_TRUE(sample(p, "rupost_http_response_duration_seconds") >= 0);
                ASSERT_EQ(curl_glue_n_requests(m.curl), 0);

                config = config_free(config);
                m.curl = curl_glue_free(m.curl);
                free(m.last_status);
        sd_event_unref(e);
        }
        http_peer_stop(&peer);
}

TEST(host_header_without_lookup) {
        HttpPeer peer = http_peer_start();
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *e = NULL;
        Manager m = {};
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
        config = load(yaml);
        ASSERT_OK(sd_event_new(&e));
        m.event = e;
        Probe *p = config->probes[0];
        run(e, &m, p);
        fprintf(stderr, "%s: %s\n", probe_status_to_string(p->last.status), p->last.reason);
        ASSERT_EQ(p->last.status, PROBE_OK);
        /* The reason names the configured URL, which is what the operator wrote. */
        ASSERT_CONTAINS(p->last.reason, "http://127.0.0.1:");

        config = config_free(config);
        m.curl = curl_glue_free(m.curl);
        free(m.last_status);
        sd_event_unref(e);
        http_peer_stop(&peer);
}

TEST(refused_with_failing_dependency) {
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *e = NULL;
        Manager m = {};
        char yaml[1024];
        uint16_t port = free_port();

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
        config = load(yaml);
        ASSERT_OK(sd_event_new(&e));
        m.event = e;
        m.config = config;

        run(e, &m, config->probes[0]);
        ASSERT_EQ(config->probes[0]->status, PROBE_CRITICAL);
        Probe *p = config->probes[2];
        run(e, &m, p);
        fprintf(stderr, "%s: %s\n", probe_status_to_string(p->last.status), p->last.reason);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "/SOGo/: connect failed: Connection refused");
        /* postgres has reported and is failing: named with its own reason.
         * memcached has not run yet and ldap does not exist: not named. */
        ASSERT_CONTAINS(p->last.reason, " (postgres is critical: 127.0.0.1:");
        ASSERT_NOT_CONTAINS(p->last.reason, "memcached");
        ASSERT_NOT_CONTAINS(p->last.reason, "ldap");
        ASSERT_EQ((int) sample(p, "rupost_http_status_code"), 0);

        m.config = NULL;
        config = config_free(config);
        m.curl = curl_glue_free(m.curl);
        free(m.last_status);
        sd_event_unref(e);
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
                _cleanup_strv_free_ char **errors = NULL;
                Config *config = NULL;
                char yaml[1024];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: web\n    type: http\n%s", bad[i].keys);
                ASSERT_ERROR(config_load_string("t.yaml", yaml, strlen(yaml), &config, &errors), EINVAL);
                ASSERT_TRUE(errors && errors[0]);
                fprintf(stderr, "%s\n", errors[0]);
                ASSERT_CONTAINS(errors[0], bad[i].error);
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
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *e = NULL;
        Manager m = {};
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
        config = load(yaml);
        ASSERT_OK(sd_event_new(&e));
        m.event = e;
        Probe *p = config->probes[0];

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
        ASSERT_OK(probe_attach(p, &m));
        for (size_t i = 0; i < ELEMENTSOF(runs); i++) {
                write_status(runs[i].body);
                p->have_result = false;
                ASSERT_OK(probe_trigger(p));
                usec_t end = now(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;
                while (!p->have_result && now(CLOCK_MONOTONIC) < end)
                        ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
                ASSERT_TRUE(p->have_result);
                fprintf(stderr, "%s: %s\n", probe_status_to_string(p->last.status), p->last.reason);
                ASSERT_EQ(p->last.status, runs[i].status);
                ASSERT_CONTAINS(p->last.reason, runs[i].reason);
        }
        /* The metrics of a good page, as nginx-prometheus-exporter names them plus _total. */
        write_status(runs[0].body);
        p->have_result = false;
        ASSERT_OK(probe_trigger(p));
        while (!p->have_result)
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_active") == 291);
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_accepted_total") == 1000);
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_handled_total") == 990);
        ASSERT_TRUE(sample(p, "rupost_nginx_http_requests_total") == 5000);
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_reading") == 6);
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_writing") == 179);
        ASSERT_TRUE(sample(p, "rupost_nginx_connections_waiting") == 106);

        probe_detach(p);
        config = config_free(config);
        m.curl = curl_glue_free(m.curl);
        free(m.last_status);
        sd_event_unref(e);
        http_peer_stop(&peer);
        unlink(http_peer_status_file);
}

TEST(nginx_probe_refused) {
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *e = NULL;
        Manager m = {};
        char yaml[512];

        snprintf(yaml, sizeof yaml, "probes:\n  - name: nginx\n    type: nginx\n    url: \"http://127.0.0.1:%u/basic_status\"\n",
                 free_port());
        config = load(yaml);
        ASSERT_OK(sd_event_new(&e));
        m.event = e;
        Probe *p = config->probes[0];
        run(e, &m, p);
        fprintf(stderr, "%s\n", p->last.reason);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "/basic_status: connect failed: Connection refused");
        config = config_free(config);
        m.curl = curl_glue_free(m.curl);
        free(m.last_status);
        sd_event_unref(e);
}

DEFINE_TEST_MAIN()
