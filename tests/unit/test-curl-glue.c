/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libcurl multi on sd-event against a forked HTTP server: answers arrive
 * through the loop, many requests run at once without holding the loop up,
 * curl's own timeouts fire through our timer, bodies are capped, and freeing
 * a request in flight cancels it without a callback. */

#include "http-peer.h"
#include "lib/curl-glue.h"
#include "lib/time-util.h"

typedef struct Outcome {
        bool done;
        CURLcode result;
        long status;
        char body[64];
        size_t body_len;
        bool truncated;
        char location[128];
        usec_t finished;
} Outcome;

static void on_done(CurlRequest *req, CURLcode result, void *userdata) {
        Outcome *o = userdata;
        struct curl_header *h = NULL;
        size_t len;
        const char *body = curl_request_body(req, &len);

        o->done = true;
        o->result = result;
        o->status = curl_request_status(req);
        o->body_len = len;
        o->truncated = curl_request_body_truncated(req);
        snprintf(o->body, sizeof o->body, "%.*s", (int) MIN(len, sizeof o->body - 1), body);
        if (curl_easy_header(curl_request_easy(req), "Location", 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
                snprintf(o->location, sizeof o->location, "%s", h->value);
        o->finished = now(CLOCK_MONOTONIC);
}

static char *url(uint16_t port, const char *path) {
        char *s = NULL;
        ASSERT_TRUE(asprintf(&s, "http://127.0.0.1:%u%s", port, path) > 0);
        return s;
}

static void run_until(sd_event *e, Outcome *const *o, size_t n, usec_t max) {
        usec_t end = now(CLOCK_MONOTONIC) + max;
        for (;;) {
                bool all = true;
                for (size_t i = 0; i < n; i++)
                        all = all && o[i]->done;
                if (all || now(CLOCK_MONOTONIC) >= end)
                        return;
                ASSERT_OK(sd_event_run(e, 50 * USEC_PER_MSEC));
        }
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        unsigned *ticks = userdata;
        (*ticks)++;
        ASSERT_OK(sd_event_source_set_time_relative(s, 20 * USEC_PER_MSEC));
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

TEST(answers_redirects_and_refusals) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome ok = {}, redirect = {}, missing = {}, closed = {}, refused = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));

        /* A port that was free a moment ago. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t salen = sizeof sa;
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &salen));
        close(fd);

        struct {
                const char *path;
                uint16_t port;
                Outcome *o;
        } reqs[] = {
                { "/ok", peer.port, &ok },
                { "/redirect", peer.port, &redirect },
                { "/nothing-here", peer.port, &missing },
                { "/close", peer.port, &closed },
                { "/", ntohs(sa.sin_port), &refused },
        };
        CurlRequest *r[ELEMENTSOF(reqs)];
        Outcome *all[ELEMENTSOF(reqs)];
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                _cleanup_free_ char *u = url(reqs[i].port, reqs[i].path);
                ASSERT_OK(curl_request_new(u, 4096, on_done, reqs[i].o, &r[i]));
                ASSERT_OK(curl_glue_start(g, r[i]));
                all[i] = reqs[i].o;
        }
        ASSERT_EQ(curl_glue_n_requests(g), ELEMENTSOF(reqs));
        run_until(e, all, ELEMENTSOF(all), 5 * USEC_PER_SEC);

        ASSERT_TRUE(ok.done);
        ASSERT_EQ(ok.result, CURLE_OK);
        ASSERT_EQ(ok.status, 200);
        ASSERT_STREQ(ok.body, "hello\n");
        ASSERT_FALSE(ok.truncated);

        ASSERT_EQ(redirect.result, CURLE_OK);
        ASSERT_EQ(redirect.status, 301);
        ASSERT_STREQ(redirect.location, "https://mail.test/"); /* judged, not followed */

        ASSERT_EQ(missing.status, 404);
        ASSERT_EQ(closed.result, CURLE_GOT_NOTHING);
        ASSERT_EQ(refused.result, CURLE_COULDNT_CONNECT);
        ASSERT_EQ(curl_glue_n_requests(g), 0);

        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                curl_request_free(r[i]);
        g = curl_glue_free(g);
        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(parallel_requests_do_not_hold_up_the_loop) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        sd_event_source *tick = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome o[4] = {};
        Outcome *all[4] = { &o[0], &o[1], &o[2], &o[3] };
        CurlRequest *r[4];
        unsigned ticks = 0;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));
        ASSERT_OK(sd_event_add_time_relative(e, &tick, CLOCK_MONOTONIC, 20 * USEC_PER_MSEC, 1, on_tick, &ticks));

        usec_t start = now(CLOCK_MONOTONIC);
        for (size_t i = 0; i < 4; i++) {
                _cleanup_free_ char *u = url(peer.port, i < 3 ? "/slow" : "/ok");
                ASSERT_OK(curl_request_new(u, 4096, on_done, &o[i], &r[i]));
                ASSERT_OK(curl_glue_start(g, r[i]));
        }
        run_until(e, all, 4, 5 * USEC_PER_SEC);
        usec_t elapsed = now(CLOCK_MONOTONIC) - start;

        for (size_t i = 0; i < 4; i++) {
                ASSERT_EQ(o[i].result, CURLE_OK);
                ASSERT_EQ(o[i].status, 200);
        }
        /* The quick one is not queued behind the slow ones... */
        ASSERT_TRUE(o[3].finished - start < 500 * USEC_PER_MSEC);
        /* ...the three slow ones overlap (1.5s each)... */
        fprintf(stderr, "4 requests, 3 of them 1.5s slow: %.3fs, %u ticks of 20ms\n", usec_to_seconds(elapsed), ticks);
        ASSERT_TRUE(elapsed < 2500 * USEC_PER_MSEC);
        /* ...and a 20ms timer kept firing all along. */
        ASSERT_TRUE(ticks >= 40);

        for (size_t i = 0; i < 4; i++)
                curl_request_free(r[i]);
        sd_event_source_disable_unref(tick);
        g = curl_glue_free(g);
        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(curl_timeout_fires_through_the_timer) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *u = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome o = {};
        Outcome *all[] = { &o };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));
        u = url(peer.port, "/slow");
        ASSERT_OK(curl_request_new(u, 4096, on_done, &o, &r));
        ASSERT_TRUE(curl_easy_setopt(curl_request_easy(r), CURLOPT_TIMEOUT_MS, 300L) == CURLE_OK);
        usec_t start = now(CLOCK_MONOTONIC);
        ASSERT_OK(curl_glue_start(g, r));
        run_until(e, all, 1, 3 * USEC_PER_SEC);

        ASSERT_TRUE(o.done);
        ASSERT_EQ(o.result, CURLE_OPERATION_TIMEDOUT);
        ASSERT_TRUE(o.finished - start >= 300 * USEC_PER_MSEC);
        ASSERT_TRUE(o.finished - start < 1000 * USEC_PER_MSEC);

        r = curl_request_free(r);
        g = curl_glue_free(g);
        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(body_cap) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *u = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome o = {};
        Outcome *all[] = { &o };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));
        u = url(peer.port, "/big");
        ASSERT_OK(curl_request_new(u, 4096, on_done, &o, &r));
        ASSERT_OK(curl_glue_start(g, r));
        run_until(e, all, 1, 3 * USEC_PER_SEC);

        /* 1 MiB offered, 4 KiB kept, and the transfer ended there. */
        ASSERT_EQ(o.result, CURLE_WRITE_ERROR);
        ASSERT_TRUE(o.truncated);
        ASSERT_EQ(o.body_len, 4096);
        ASSERT_EQ(o.status, 200);

        r = curl_request_free(r);
        g = curl_glue_free(g);
        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(cancel_in_flight) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        _cleanup_free_ char *u = NULL;
        CurlRequest *r = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome o = {}, after = {};
        Outcome *all[] = { &o };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));
        u = url(peer.port, "/hang");
        ASSERT_OK(curl_request_new(u, 4096, on_done, &o, &r));
        ASSERT_OK(curl_glue_start(g, r));
        run_until(e, all, 1, 300 * USEC_PER_MSEC);
        ASSERT_FALSE(o.done); /* the server never answers */
        ASSERT_EQ(curl_glue_n_requests(g), 1);

        r = curl_request_free(r);
        ASSERT_EQ(curl_glue_n_requests(g), 0);
        /* Nothing fires for it afterwards, and the glue goes on working. */
        free(u);
        u = url(peer.port, "/ok");
        ASSERT_OK(curl_request_new(u, 4096, on_done, &after, &r));
        ASSERT_OK(curl_glue_start(g, r));
        Outcome *next[] = { &after };
        run_until(e, next, 1, 3 * USEC_PER_SEC);
        ASSERT_FALSE(o.done);
        ASSERT_EQ(after.status, 200);
        r = curl_request_free(r);

        /* Freeing the glue with a request in flight detaches it. */
        ASSERT_OK(curl_request_new(u, 4096, on_done, &after, &r));
        after.done = false;
        ASSERT_OK(curl_glue_start(g, r));
        g = curl_glue_free(g);
        ASSERT_FALSE(after.done);
        r = curl_request_free(r);

        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(connect_to_sends_the_name_without_resolving) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *u = NULL;
        sd_event *e = NULL;
        HttpPeer peer = http_peer_start();
        Outcome o = {};
        Outcome *all[] = { &o };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(e, &g));
        /* .invalid never resolves (RFC 6761): an answer proves no lookup happened. */
        ASSERT_TRUE(asprintf(&u, "http://mail.example.invalid:%u/sogo", peer.port) > 0);
        ASSERT_OK(curl_request_new(u, 4096, on_done, &o, &r));
        ASSERT_OK(curl_request_connect_to(r, "mail.example.invalid", peer.port, "127.0.0.1"));
        ASSERT_OK(curl_glue_start(g, r));
        run_until(e, all, 1, 3 * USEC_PER_SEC);
        ASSERT_EQ(o.result, CURLE_OK);
        char want[128];
        snprintf(want, sizeof want, "SOGo host=mail.example.invalid:%u\n", peer.port);
        ASSERT_STREQ(o.body, want);

        r = curl_request_free(r);
        g = curl_glue_free(g);
        http_peer_stop(&peer);
        sd_event_unref(e);
}

TEST(url_parse_numeric) {
        static const struct {
                const char *url;
                int r;
                bool https;
                const char *host;
                unsigned port;
                const char *error;
        } cases[] = {
                { "http://127.0.0.1/basic_status", 0, false, "127.0.0.1", 80, NULL },
                { "https://127.0.0.1/SOGo/", 0, true, "127.0.0.1", 443, NULL },
                { "http://127.0.0.1:20000/SOGo/", 0, false, "127.0.0.1", 20000, NULL },
                { "https://[::1]:5000/", 0, true, "::1", 5000, NULL },
                { "http://localhost/", -EINVAL, false, NULL, 0, "numeric" },
                { "https://mail.example.org/SOGo/", -EINVAL, false, NULL, 0, "names are not resolved" },
                { "ftp://127.0.0.1/", -EINVAL, false, NULL, 0, "only http:// and https://" },
                { "not a url", -EINVAL, false, NULL, 0, "" },
                { "http://127.0.0.1:99999/", -EINVAL, false, NULL, 0, "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CurlUrl u = {};
                const char *error = NULL;
                int r = curl_url_parse_numeric(cases[i].url, &u, &error);
                fprintf(stderr, "%s -> %d %s\n", cases[i].url, r, error ?: "");
                ASSERT_EQ(r, cases[i].r);
                if (r == 0) {
                        ASSERT_EQ(u.https, cases[i].https);
                        ASSERT_STREQ(u.host, cases[i].host);
                        ASSERT_EQ(u.port, cases[i].port);
                } else
                        ASSERT_CONTAINS(error, cases[i].error);
        }

        _cleanup_free_ char *s = NULL;
        ASSERT_OK(curl_url_replace_host("https://127.0.0.1:8443/SOGo/?a=b", "mail.example.org", &s));
        ASSERT_STREQ(s, "https://mail.example.org:8443/SOGo/?a=b");
}

DEFINE_TEST_MAIN()
