/* SPDX-License-Identifier: GPL-2.0-or-later */
/* http: one HTTP(S) request on libcurl's multi interface, judged by its
 * status code, redirect target, body and latency. Serves SOGo (GET /SOGo/ on
 * 20000 and through nginx on 443), the redirect of port 80 to https, and the
 * control panel on 5000. The URL's host is numeric; a name for the Host
 * header and SNI comes from host_header, and the connection still goes to
 * the numeric address, so nothing is ever resolved. */

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/curl-glue.h"
#include "lib/tls-inspect.h"
#include "manager.h"
#include "probes.h"

#define HTTP_BODY_MAX (64 * 1024)
#define HTTP_EXPECT_STATUS_MAX 16
#define HTTP_EXPECT_BODY_MAX 1024
#define HTTP_DEPENDS_ON_MAX 16

typedef struct HttpProbe {
        /* configuration */
        char *url;
        char *host_header;
        char *method;
        char **expect_status;
        char *expect_location;
        char *expect_body;
        bool tls_verify;
        usec_t latency_warning;
        char **depends_on;

        CurlUrl parsed;
        char *request_url; /* url with host_header as its host */
        long codes[HTTP_EXPECT_STATUS_MAX];
        size_t n_codes;
        bool head;

        /* one run */
        CurlRequest *req;
        time_t cert_not_after;
        bool tls_looked;
} HttpProbe;

static const MetricFamily family_status_code = {
        .name = "rupost_http_status_code",
        .type = METRIC_GAUGE,
        .help = "HTTP status code of the last answer; 0 when none arrived.",
};
static const MetricFamily family_duration = {
        .name = "rupost_http_response_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Time from the start of the last request to the end of its answer.",
};

static const ConfigItem http_config_items[] = {
        { "url",             config_parse_string,   offsetof(HttpProbe, url), .required = true },
        { "host_header",     config_parse_string,   offsetof(HttpProbe, host_header)             },
        { "method",          config_parse_string,   offsetof(HttpProbe, method)                  },
        { "expect_status",   config_parse_strv,     offsetof(HttpProbe, expect_status), .max = HTTP_EXPECT_STATUS_MAX },
        { "expect_location", config_parse_string,   offsetof(HttpProbe, expect_location)         },
        { "expect_body",     config_parse_string,   offsetof(HttpProbe, expect_body)             },
        { "tls_verify",      config_parse_bool,     offsetof(HttpProbe, tls_verify)              },
        { "latency_warning", config_parse_duration, offsetof(HttpProbe, latency_warning), .min = USEC_PER_MSEC, .max = 3600 * USEC_PER_SEC },
        { "depends_on",      config_parse_strv,     offsetof(HttpProbe, depends_on), .max = HTTP_DEPENDS_ON_MAX },
        {}
};

/* A name for Host and SNI: letters, digits, dots and dashes, so that it can
 * go into a URL and a CURLOPT_CONNECT_TO entry as it is. */
static bool valid_host_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n;
}

static int http_verify(Probe *p, ConfigContext *c) {
        HttpProbe *h = probe_get_userdata(p);
        const char *error = NULL;
        int ret = 0, r;

        /* Each finding is gathered, so that one --check-config lists them all. */
        r = curl_url_parse_numeric(h->url, &h->parsed, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                config_gather(&ret, config_error(c, NULL, "url", "'%s': %s", h->url, error));

        if (h->host_header) {
                if (!valid_host_name(h->host_header))
                        config_gather(&ret, config_error(c, NULL, "host_header",
                                                         "'%s' is not a host name (letters, digits, dots and dashes)",
                                                         h->host_header));
                else if (r >= 0) {
                        r = curl_url_replace_host(h->url, h->host_header, &h->request_url);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                config_gather(&ret, config_error(c, NULL, "host_header",
                                                                 "cannot be put into the URL '%s'", h->url));
                }
        }

        if (h->method && !streq(h->method, "GET") && !streq(h->method, "HEAD"))
                config_gather(&ret, config_error(c, NULL, "method", "'%s' is not GET or HEAD", h->method));
        h->head = h->method && streq(h->method, "HEAD");

        h->n_codes = 0;
        for (char **s = h->expect_status; s && *s; s++) {
                char *end = NULL;
                long code = strtol(*s, &end, 10);
                if (!**s || *end || code < 100 || code > 599)
                        config_gather(&ret, config_error(c, NULL, "expect_status",
                                                         "'%s' is not an HTTP status code (100-599)", *s));
                else
                        h->codes[h->n_codes++] = code;
        }
        if (h->expect_status && !h->expect_status[0])
                config_gather(&ret, config_error(c, NULL, "expect_status", "the list is empty"));
        if (h->n_codes == 0)
                h->codes[h->n_codes++] = 200;

        if (h->expect_body && h->head)
                config_gather(&ret, config_error(c, NULL, "expect_body", "a HEAD request has no body to search"));
        if (h->expect_body && (strlen(h->expect_body) == 0 || strlen(h->expect_body) > HTTP_EXPECT_BODY_MAX))
                config_gather(&ret, config_error(c, NULL, "expect_body", "must be 1 to %d bytes long",
                                                 HTTP_EXPECT_BODY_MAX));
        if (h->expect_location) {
                bool any_redirect = false;
                for (size_t i = 0; i < h->n_codes; i++)
                        any_redirect = any_redirect || (h->codes[i] >= 300 && h->codes[i] < 400);
                if (!any_redirect)
                        config_gather(&ret, config_error(c, NULL, "expect_location",
                                                         "needs a redirect (3xx) among expect_status, such as [301]"));
        }
        return ret;
}

static void http_stop(Probe *p) {
        HttpProbe *h = probe_get_userdata(p);

        /* Cancels the transfer when it is still in flight. */
        h->req = curl_request_free(h->req);
}

static void http_done(Probe *p) {
        HttpProbe *h = probe_get_userdata(p);

        http_stop(p);
        free(h->url);
        free(h->host_header);
        free(h->method);
        strv_free(h->expect_status);
        free(h->expect_location);
        free(h->expect_body);
        strv_free(h->depends_on);
        free(h->request_url);
}

/* The certificate is read while the connection is alive: when the first
 * header line arrives, the TLS session is established. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
        Probe *p = userdata;
        HttpProbe *h = probe_get_userdata(p);
        struct curl_tlssessioninfo *info = NULL;

        if (h->tls_looked || !h->parsed.https)
                return size * nmemb;
        h->tls_looked = true;
        if (curl_easy_getinfo(curl_request_easy(h->req), CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info ||
            info->backend != CURLSSLBACKEND_OPENSSL || !info->internals)
                return size * nmemb;

        X509 *cert = SSL_get1_peer_certificate(info->internals);
        struct tm tm;
        if (cert && ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
                h->cert_not_after = timegm(&tm);
        X509_free(cert);
        return size * nmemb;
}

/* "503", "200 or 302", "200, 204 or 302" */
static void format_codes(const HttpProbe *h, char *buf, size_t size) {
        size_t off = 0;

        buf[0] = 0;
        for (size_t i = 0; i < h->n_codes && off < size; i++) {
                const char *sep = i == 0 ? "" : i + 1 == h->n_codes ? " or " : ", ";
                int n = snprintf(buf + off, size - off, "%s%ld", sep, h->codes[i]);
                if (n < 0)
                        break;
                off += (size_t) n;
        }
}

/* Appends " (postgres is critical: ...)" for each probe named in depends_on
 * whose reported status is not ok, so that a failing SOGo names its cause. */
static void append_dependencies(Probe *p, Buf *reason) {
        HttpProbe *h = probe_get_userdata(p);
        size_t n = 0;
        Probe **probes = p->manager ? manager_probes(p->manager, &n) : NULL;

        for (char **d = h->depends_on; d && *d; d++)
                for (size_t i = 0; i < n; i++) {
                        Probe *q = probes[i];
                        if (q == p || !streq(q->name, *d) || !q->have_result || q->status == PROBE_OK)
                                continue;
                        (void) buf_printf(reason, " (%s is %s: %s)", q->name, probe_status_to_string(q->status),
                                          q->last.reason ?: "no reason given");
                }
}

static const char *http_connect_error(CurlRequest *req, CURLcode result, char *buf, size_t size) {
        long os_errno = 0;

        switch (result) {
        case CURLE_COULDNT_CONNECT:
                (void) curl_easy_getinfo(curl_request_easy(req), CURLINFO_OS_ERRNO, &os_errno);
                snprintf(buf, size, "connect failed: %s",
                         os_errno > 0 ? strerror((int) os_errno) : curl_request_error(req, result));
                break;
        case CURLE_SSL_CONNECT_ERROR:
                snprintf(buf, size, "TLS handshake failed: %s", curl_request_error(req, result));
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
                snprintf(buf, size, "certificate not trusted: %s", curl_request_error(req, result));
                break;
        case CURLE_GOT_NOTHING:
                snprintf(buf, size, "the server closed the connection without an answer");
                break;
        default:
                snprintf(buf, size, "%s", curl_request_error(req, result));
        }
        return buf;
}

static void on_done(CurlRequest *req, CURLcode result, void *userdata) {
        Probe *p = userdata;
        HttpProbe *h = probe_get_userdata(p);
        _cleanup_(buf_done) Buf reason = BUF_INIT(4096);
        ProbeStatus status = PROBE_OK;
        curl_off_t total_us = 0;
        char text[CURL_ERROR_SIZE + 64], d[DURATION_MAX];
        long code = curl_request_status(req);
        bool complete = result == CURLE_OK || (result == CURLE_WRITE_ERROR && curl_request_body_truncated(req));

        (void) curl_easy_getinfo(curl_request_easy(req), CURLINFO_TOTAL_TIME_T, &total_us);
        (void) probe_add_sample(p, &family_status_code, complete ? (double) code : 0, NULL);
        if (h->cert_not_after > 0)
                (void) probe_add_sample(p, &tls_family_certificate_expiry, (double) h->cert_not_after, NULL);

        if (!complete) {
                status = result == CURLE_OUT_OF_MEMORY || result == CURLE_FAILED_INIT ? PROBE_UNKNOWN : PROBE_CRITICAL;
                (void) buf_printf(&reason, "%s: %s", h->url, http_connect_error(req, result, text, sizeof text));
                goto finish;
        }

        (void) probe_add_sample(p, &family_duration, (double) total_us / 1e6, NULL);
        format_duration(d, sizeof d, (usec_t) total_us);

        bool code_ok = false;
        for (size_t i = 0; i < h->n_codes; i++)
                code_ok = code_ok || h->codes[i] == code;
        struct curl_header *location = NULL;
        if (curl_easy_header(curl_request_easy(req), "Location", 0, CURLH_HEADER, -1, &location) != CURLHE_OK)
                location = NULL;

        if (!code_ok) {
                status = PROBE_CRITICAL;
                format_codes(h, text, sizeof text);
                (void) buf_printf(&reason, "%s answered %ld", h->url, code);
                if (location && code >= 300 && code < 400)
                        (void) buf_printf(&reason, " to %.200s", location->value);
                (void) buf_printf(&reason, ", expected %s", text);
                if (h->expect_location)
                        (void) buf_printf(&reason, " to %s", h->expect_location);
                goto finish;
        }
        if (h->expect_location && code >= 300 && code < 400 &&
            (!location || strncmp(location->value, h->expect_location, strlen(h->expect_location)) != 0)) {
                status = PROBE_CRITICAL;
                if (location)
                        (void) buf_printf(&reason, "%s answered %ld to %.200s, expected a redirect to %s", h->url,
                                          code, location->value, h->expect_location);
                else
                        (void) buf_printf(&reason, "%s answered %ld without a Location header, expected a redirect to %s",
                                          h->url, code, h->expect_location);
                goto finish;
        }
        if (h->expect_body) {
                size_t len;
                const char *body = curl_request_body(req, &len);
                if (!memmem(body, len, h->expect_body, strlen(h->expect_body))) {
                        status = PROBE_CRITICAL;
                        (void) buf_printf(&reason, "%s answered %ld but the body%s does not contain '%s'", h->url,
                                          code, curl_request_body_truncated(req) ? " (first 64 KiB)" : "",
                                          h->expect_body);
                        goto finish;
                }
        }
        if (h->latency_warning > 0 && (usec_t) total_us > h->latency_warning) {
                char limit[DURATION_MAX];
                status = PROBE_WARNING;
                (void) buf_printf(&reason, "%s answered %ld in %s, slower than %s", h->url, code, d,
                                  format_duration(limit, sizeof limit, h->latency_warning));
                goto finish;
        }
        (void) buf_printf(&reason, "%s answered %ld in %s", h->url, code, d);

finish:
        if (status != PROBE_OK)
                append_dependencies(p, &reason);
        /* Ends the run; stop() frees req, so nothing touches it afterwards. */
        (void) probe_finish(p, status, "%s", reason.data ?: "");
}

static int http_start(Probe *p) {
        HttpProbe *h = probe_get_userdata(p);
        CurlGlue *g;
        CURL *e;
        int r;

        h->cert_not_after = 0;
        h->tls_looked = false;

        r = curl_glue_get(&p->manager->curl, probe_get_event(p), &g);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot set up libcurl");
        r = curl_request_new(h->request_url ?: h->url, HTTP_BODY_MAX, on_done, p, &h->req);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot set up the request");
        e = curl_request_easy(h->req);
        if (h->host_header) {
                r = curl_request_connect_to(h->req, h->host_header, h->parsed.port, h->parsed.host);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot set up the request");
        }
        if (curl_easy_setopt(e, CURLOPT_NOBODY, h->head ? 1L : 0L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->tls_verify ? 1L : 0L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->tls_verify ? 2L : 0L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERDATA, p) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_USERAGENT, "rupost-agent") != CURLE_OK)
                return probe_finish_errno(p, -EINVAL, "cannot set up the request");

        probe_set_phase(p, "waiting for the HTTP answer");
        r = curl_glue_start(g, h->req);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot start the request");
        return 0;
}

const ProbeType probe_type_http = {
        .name = "http",
        .object_size = sizeof(HttpProbe),
        .config_items = http_config_items,
        .default_interval = 15 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 2,
        .default_fall = 3,
        .verify = http_verify,
        .start = http_start,
        .stop = http_stop,
        .done = http_done,
};
