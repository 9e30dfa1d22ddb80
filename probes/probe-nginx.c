/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nginx: reads the stub_status page over HTTP (libcurl multi on the event
 * loop) and exports its counters, named as nginx-prometheus-exporter does.
 * Connections nginx accepted but could not handle mean worker_connections
 * or a resource limit was hit; the probe warns while that number grows. */

#include <string.h>

#include "config.h"
#include "lib/curl-glue.h"
#include "manager.h"
#include "nginx-status-parse.h"
#include "probes.h"

#define NGINX_STATUS_BODY_MAX 4096
#define NGINX_DEFAULT_URL "http://127.0.0.1/basic_status"

typedef struct NginxProbe {
        char *url;

        /* across runs: to tell whether dropped connections grow */
        bool have_previous;
        uint64_t previous_accepts;
        uint64_t previous_dropped;

        CurlRequest *req;
} NginxProbe;

#define NGINX_FAMILY(id, n, t, h) \
        static const MetricFamily family_##id = { .name = "rupost_nginx_" n, .type = METRIC_##t, .help = h }
NGINX_FAMILY(active, "connections_active", GAUGE, "Open client connections, including waiting ones.");
NGINX_FAMILY(reading, "connections_reading", GAUGE, "Connections where nginx is reading the request header.");
NGINX_FAMILY(writing, "connections_writing", GAUGE, "Connections where nginx is writing the response.");
NGINX_FAMILY(waiting, "connections_waiting", GAUGE, "Idle keep-alive client connections.");
NGINX_FAMILY(accepted, "connections_accepted_total", COUNTER, "Client connections accepted since nginx started.");
NGINX_FAMILY(handled, "connections_handled_total", COUNTER,
             "Client connections handled since nginx started; fewer than accepted means some were dropped.");
NGINX_FAMILY(requests, "http_requests_total", COUNTER, "Client requests served since nginx started.");

static const ConfigItem nginx_config_items[] = {
        { "url", config_parse_string, offsetof(NginxProbe, url) },
        {}
};

static int nginx_verify(Probe *p, ConfigContext *c) {
        NginxProbe *n = probe_get_userdata(p);
        const char *error = NULL;
        CurlUrl parsed;
        int r;

        if (!n->url) {
                n->url = strdup(NGINX_DEFAULT_URL);
                if (!n->url)
                        return -ENOMEM;
        }
        r = curl_url_parse_numeric(n->url, &parsed, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return config_error(c, NULL, "url", "'%s': %s", n->url, error);
        return 0;
}

static void nginx_stop(Probe *p) {
        NginxProbe *n = probe_get_userdata(p);

        n->req = curl_request_free(n->req);
}

static void nginx_done(Probe *p) {
        NginxProbe *n = probe_get_userdata(p);

        nginx_stop(p);
        free(n->url);
}

static void on_done(CurlRequest *req, CURLcode result, void *userdata) {
        Probe *p = userdata;
        NginxProbe *n = probe_get_userdata(p);
        const char *error = NULL, *body;
        NginxStatus s;
        long code;
        size_t len;

        if (result != CURLE_OK) {
                long os_errno = 0;
                if (result == CURLE_COULDNT_CONNECT)
                        (void) curl_easy_getinfo(curl_request_easy(req), CURLINFO_OS_ERRNO, &os_errno);
                if (result == CURLE_WRITE_ERROR && curl_request_body_truncated(req))
                        (void) probe_finish(p, PROBE_UNKNOWN, "%s: the answer is larger than %d bytes: not a stub_status page",
                                            n->url, NGINX_STATUS_BODY_MAX);
                else if (os_errno > 0)
                        (void) probe_finish(p, PROBE_CRITICAL, "%s: connect failed: %s", n->url, strerror((int) os_errno));
                else
                        (void) probe_finish(p, PROBE_CRITICAL, "%s: %s", n->url, curl_request_error(req, result));
                return;
        }

        code = curl_request_status(req);
        if (code != 200) {
                /* nginx answers, so it runs; what it answers is a configuration problem. */
                (void) probe_finish(p, PROBE_UNKNOWN,
                                    "%s answered %ld: enable stub_status there "
                                    "(location = /basic_status { stub_status; allow 127.0.0.1; deny all; })",
                                    n->url, code);
                return;
        }
        body = curl_request_body(req, &len);
        if (nginx_status_parse(body, len, &s, &error) < 0) {
                (void) probe_finish(p, PROBE_UNKNOWN, "%s: not a stub_status page: %s", n->url, error);
                return;
        }

        (void) probe_add_sample(p, &family_active, (double) s.active, NULL);
        (void) probe_add_sample(p, &family_reading, (double) s.reading, NULL);
        (void) probe_add_sample(p, &family_writing, (double) s.writing, NULL);
        (void) probe_add_sample(p, &family_waiting, (double) s.waiting, NULL);
        (void) probe_add_sample(p, &family_accepted, (double) s.accepts, NULL);
        (void) probe_add_sample(p, &family_handled, (double) s.handled, NULL);
        (void) probe_add_sample(p, &family_requests, (double) s.requests, NULL);

        uint64_t dropped = s.accepts - s.handled;
        /* Fewer accepts than last time: nginx restarted, the counters with it. */
        bool restarted = n->have_previous && s.accepts < n->previous_accepts;
        bool growing = n->have_previous && !restarted && dropped > n->previous_dropped;
        uint64_t new_drops = growing ? dropped - n->previous_dropped : 0;

        n->have_previous = true;
        n->previous_accepts = s.accepts;
        n->previous_dropped = dropped;

        if (growing) {
                (void) probe_finish(p, PROBE_WARNING,
                                    "nginx dropped %" PRIu64 " connections since the last check (%" PRIu64
                                    " since it started): worker_connections or a resource limit "
                                    "(open files, LimitNOFILE) was reached; see the nginx error log",
                                    new_drops, dropped);
                return;
        }
        (void) probe_finish(p, PROBE_OK, "nginx: %" PRIu64 " active connections, %" PRIu64 " requests served%s",
                            s.active, s.requests, dropped > 0 ? " (some connections were dropped earlier)" : "");
}

static int nginx_start(Probe *p) {
        NginxProbe *n = probe_get_userdata(p);
        CurlGlue *g;
        int r;

        r = curl_glue_get(&p->manager->curl, probe_get_event(p), &g);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot set up libcurl");
        r = curl_request_new(n->url, NGINX_STATUS_BODY_MAX, on_done, p, &n->req);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot set up the request");
        if (curl_easy_setopt(curl_request_easy(n->req), CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK ||
            curl_easy_setopt(curl_request_easy(n->req), CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK ||
            curl_easy_setopt(curl_request_easy(n->req), CURLOPT_USERAGENT, "rupost-agent") != CURLE_OK)
                return probe_finish_errno(p, -EINVAL, "cannot set up the request");

        probe_set_phase(p, "waiting for the stub_status page");
        r = curl_glue_start(g, n->req);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot start the request");
        return 0;
}

const ProbeType probe_type_nginx = {
        .name = "nginx",
        .object_size = sizeof(NginxProbe),
        .config_items = nginx_config_items,
        .default_interval = 15 * USEC_PER_SEC,
        .default_timeout = 3 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 2,
        .verify = nginx_verify,
        .start = nginx_start,
        .stop = nginx_stop,
        .done = nginx_done,
};
