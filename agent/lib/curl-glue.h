/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* libcurl's multi interface driven by sd-event, for HTTP probes.
 *
 * One CurlGlue (one curl multi) per event loop: CURLMOPT_SOCKETFUNCTION keeps
 * one sd-event io source per socket curl watches, CURLMOPT_TIMERFUNCTION arms
 * one timer, and finished transfers are handed to their request's callback
 * from the loop, right after curl_multi_socket_action() returned (never from
 * inside a curl callback, so the callback may free its request).
 *
 * A CurlRequest never blocks the loop: names are never resolved (numeric URLs,
 * or CURLOPT_CONNECT_TO sends a name's connection to a numeric address), signals are off,
 * proxies from the environment are ignored, and the body is kept up to a cap
 * (the transfer is aborted past it). Freeing a request that is in flight
 * cancels it. */

#include <curl/curl.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct CurlGlue CurlGlue;
typedef struct CurlRequest CurlRequest;

/* Called once per started request, from the event loop. `result` is
 * CURLE_OK when the transfer completed (whatever the HTTP status). */
typedef void (*CurlRequestDone)(CurlRequest *req, CURLcode result, void *userdata);

int curl_glue_new(sd_event *event, CurlGlue **ret);
/* Cancels requests still in flight (without calling their callbacks). */
CurlGlue *curl_glue_free(CurlGlue *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(CurlGlue *, curl_glue_free);

/* The glue kept in *slot, created on first use. */
int curl_glue_get(CurlGlue **slot, sd_event *event, CurlGlue **ret);

/* A request for a URL whose host is a numeric address, or a name pinned with
 * curl_request_connect_to(). The body is kept up to body_max bytes; a longer body
 * ends the transfer with CURLE_WRITE_ERROR and curl_request_body_truncated(). */
int curl_request_new(const char *url, size_t body_max, CurlRequestDone done, void *userdata,
                     CurlRequest **ret);
/* Cancels the transfer if it is in flight. Safe to call from the callback. */
CurlRequest *curl_request_free(CurlRequest *req);
DEFINE_TRIVIAL_CLEANUP_FUNC(CurlRequest *, curl_request_free);

/* The easy handle, for further options (method, TLS, timeouts). */
CURL *curl_request_easy(CurlRequest *req);
/* Connects to a numeric address whenever the URL names "name:port"
 * (CURLOPT_CONNECT_TO), so that the URL may carry a host name, sent as the
 * Host header and in SNI, without a name lookup. Before starting. */
int curl_request_connect_to(CurlRequest *req, const char *name, unsigned port, const char *address);

int curl_glue_start(CurlGlue *g, CurlRequest *req);

/* After completion: the body (NUL-terminated, possibly empty) and its length. */
const char *curl_request_body(CurlRequest *req, size_t *ret_len);
bool curl_request_body_truncated(const CurlRequest *req);
/* curl's detailed error text for a failed transfer, or its generic one. */
const char *curl_request_error(const CurlRequest *req, CURLcode result);
long curl_request_status(CurlRequest *req);

/* Number of requests in flight, for tests. */
unsigned curl_glue_n_requests(const CurlGlue *g);

/* What a probe needs to know about a URL before using it without a name
 * lookup: http or https, a numeric host, and the port (the scheme's default
 * when the URL names none). */
typedef struct CurlUrl {
        bool https;
        char host[64]; /* numeric, without IPv6 brackets */
        unsigned port;
} CurlUrl;

/* Returns -EINVAL with *ret_error set to a static description when the URL
 * is malformed, not http(s), or its host is not a numeric address. */
int curl_url_parse_numeric(const char *url, CurlUrl *ret, const char **ret_error);
/* The URL with its host replaced by `host` (for host_header), in *ret. */
int curl_url_replace_host(const char *url, const char *host, char **ret);
