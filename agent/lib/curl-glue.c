/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "curl-glue.h"
#include "log.h"
#include "time-util.h"

struct CurlRequest {
        CurlGlue *glue; /* set while in flight */
        CurlRequest *prev, *next;
        CURL *easy;
        CurlRequestDone done;
        void *userdata;
        struct curl_slist *connect_to;
        Buf body;
        bool truncated;
        char error[CURL_ERROR_SIZE];
};

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        /* One io source per socket curl watches; the source is also assigned
         * to the socket with curl_multi_assign(), this list is for cleanup. */
        sd_event_source **ios;
        size_t n_ios;
        CurlRequest *requests; /* in flight */
        unsigned n_requests;
};

static void glue_forget_io(CurlGlue *g, sd_event_source *io) {
        for (size_t i = 0; i < g->n_ios; i++)
                if (g->ios[i] == io) {
                        g->ios[i] = g->ios[--g->n_ios];
                        break;
                }
        (void) sd_event_source_disable_unref(io);
}

static void request_unlink(CurlRequest *req) {
        CurlGlue *g = req->glue;

        if (!g)
                return;
        if (req->prev)
                req->prev->next = req->next;
        else
                g->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        req->prev = req->next = NULL;
        req->glue = NULL;
        g->n_requests--;
        (void) curl_multi_remove_handle(g->multi, req->easy);
}

/* Hands finished transfers to their callbacks. Runs only from our own event
 * source callbacks, after curl_multi_socket_action() returned, so a callback
 * may free its request (or others): removing a handle also drops its pending
 * messages, so the loop never sees a freed request. */
static void glue_dispatch(CurlGlue *g) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(g->multi, &left))) {
                CurlRequest *req = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK || !req)
                        continue;
                CURLcode result = msg->data.result;
                request_unlink(req);
                if (req->done)
                        req->done(req, result, req->userdata);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;

        if (curl_multi_socket_action(g->multi, fd, action, &running) != CURLM_OK)
                log_debug("curl_multi_socket_action() failed on fd %d", fd);
        glue_dispatch(g);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running;

        if (curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                log_debug("curl_multi_socket_action() failed on the timeout");
        glue_dispatch(g);
        return 0;
}

static int socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        (void) curl_multi_assign(g->multi, fd, NULL);
                        glue_forget_io(g, io);
                }
                return 0;
        }

        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        /* curl may reuse a number it closed without telling us first. */
        if (io && sd_event_source_get_io_fd(io) != fd) {
                (void) curl_multi_assign(g->multi, fd, NULL);
                glue_forget_io(g, io);
                io = NULL;
        }
        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(io, SD_EVENT_ON);
                return r < 0 ? -1 : 0;
        }

        sd_event_source **a = reallocarray(g->ios, g->n_ios + 1, sizeof *a);
        if (!a)
                return -1;
        g->ios = a;
        r = sd_event_add_io(g->event, &io, fd, events, on_io, g);
        if (r < 0) {
                log_debug_errno(r, "Cannot watch curl's socket %d: %m", fd);
                return -1;
        }
        (void) sd_event_source_set_description(io, "curl-io");
        g->ios[g->n_ios++] = io;
        if (curl_multi_assign(g->multi, fd, io) != CURLM_OK) {
                glue_forget_io(g, io);
                return -1;
        }
        return 0;
}

static int timer_callback(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        /* curl forbids calling socket_action from here: a 0 timeout fires on
         * the next loop iteration instead. */
        r = sd_event_source_set_time(g->timer, now(CLOCK_MONOTONIC) + (usec_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

int curl_glue_new(sd_event *event, CurlGlue **ret) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        static bool initialized = false;
        int r;

        assert_return(event, -EINVAL);
        assert_return(ret, -EINVAL);

        if (!initialized) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                initialized = true;
        }

        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);

        r = sd_event_add_time(event, &g->timer, CLOCK_MONOTONIC, USEC_INFINITY, 1 * USEC_PER_MSEC, on_timer, g);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(g->timer, "curl-timer");

        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;
        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, socket_callback) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, timer_callback) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK)
                return -EINVAL;

        *ret = TAKE_PTR(g);
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        while (g->requests)
                request_unlink(g->requests);
        if (g->multi)
                (void) curl_multi_cleanup(g->multi);
        for (size_t i = 0; i < g->n_ios; i++)
                (void) sd_event_source_disable_unref(g->ios[i]);
        free(g->ios);
        (void) sd_event_source_disable_unref(g->timer);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}

int curl_glue_get(CurlGlue **slot, sd_event *event, CurlGlue **ret) {
        int r;

        assert_return(slot, -EINVAL);
        if (!*slot) {
                r = curl_glue_new(event, slot);
                if (r < 0)
                        return r;
        }
        *ret = *slot;
        return 0;
}

unsigned curl_glue_n_requests(const CurlGlue *g) {
        return g ? g->n_requests : 0;
}

static size_t write_callback(char *data, size_t size, size_t nmemb, void *userdata) {
        CurlRequest *req = userdata;
        size_t n = size * nmemb;
        size_t room = req->body.limit - req->body.len;

        if (n > room) {
                /* Keep what fits, for the reason line, and end the transfer. */
                (void) buf_append(&req->body, data, room);
                req->truncated = true;
                return 0;
        }
        if (buf_append(&req->body, data, n) < 0)
                return 0;
        return n;
}

int curl_request_new(const char *url, size_t body_max, CurlRequestDone done, void *userdata,
                     CurlRequest **ret) {
        _cleanup_(curl_request_freep) CurlRequest *req = NULL;

        assert_return(url, -EINVAL);
        assert_return(body_max > 0, -EINVAL);
        assert_return(ret, -EINVAL);

        req = calloc(1, sizeof *req);
        if (!req)
                return -ENOMEM;
        req->done = done;
        req->userdata = userdata;
        req->body = BUF_INIT(body_max);

        req->easy = curl_easy_init();
        if (!req->easy)
                return -ENOMEM;

        /* A probe measures a fresh connection every time, never a cached
         * one, and never follows redirects: it judges them. */
        if (curl_easy_setopt(req->easy, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, write_callback) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->error) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_PROXY, "") != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK ||
            curl_easy_setopt(req->easy, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK)
                return -EINVAL;

        *ret = TAKE_PTR(req);
        return 0;
}

CurlRequest *curl_request_free(CurlRequest *req) {
        if (!req)
                return NULL;
        request_unlink(req);
        if (req->easy)
                curl_easy_cleanup(req->easy);
        curl_slist_free_all(req->connect_to);
        buf_done(&req->body);
        free(req);
        return NULL;
}

CURL *curl_request_easy(CurlRequest *req) {
        return req->easy;
}

int curl_request_connect_to(CurlRequest *req, const char *name, unsigned port, const char *address) {
        _cleanup_free_ char *entry = NULL;
        struct curl_slist *l;

        assert_return(!req->glue, -EBUSY);
        if (asprintf(&entry, "%s:%u:%s:%u", name, port, address, port) < 0)
                return -ENOMEM;
        l = curl_slist_append(req->connect_to, entry);
        if (!l)
                return -ENOMEM;
        req->connect_to = l;
        if (curl_easy_setopt(req->easy, CURLOPT_CONNECT_TO, req->connect_to) != CURLE_OK)
                return -EINVAL;
        return 0;
}

int curl_glue_start(CurlGlue *g, CurlRequest *req) {
        assert_return(g, -EINVAL);
        assert_return(!req->glue, -EBUSY);

        buf_reset(&req->body);
        req->truncated = false;
        req->error[0] = 0;
        if (curl_multi_add_handle(g->multi, req->easy) != CURLM_OK)
                return -EIO;
        req->glue = g;
        req->next = g->requests;
        if (g->requests)
                g->requests->prev = req;
        g->requests = req;
        g->n_requests++;
        return 0;
}

const char *curl_request_body(CurlRequest *req, size_t *ret_len) {
        if (ret_len)
                *ret_len = req->body.len;
        return req->body.data ?: "";
}

bool curl_request_body_truncated(const CurlRequest *req) {
        return req->truncated;
}

const char *curl_request_error(const CurlRequest *req, CURLcode result) {
        return req->error[0] ? req->error : curl_easy_strerror(result);
}

long curl_request_status(CurlRequest *req) {
        long code = 0;

        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
                return 0;
        return code;
}

int curl_url_parse_numeric(const char *url, CurlUrl *ret, const char **ret_error) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL;
        const char *error = NULL;
        CurlUrl parsed = {};
        unsigned char addr[sizeof(struct in6_addr)];

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                error = "not a valid URL";
        else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
                 (!streq(scheme, "http") && !streq(scheme, "https")))
                error = "only http:// and https:// URLs are supported";
        else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                error = "the URL has no host";
        else if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
                error = "the URL has no port";
        else {
                size_t n = strlen(host);
                const char *h = host;
                if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                        h = host + 1;
                        n -= 2;
                }
                if (n >= sizeof parsed.host)
                        error = "the host must be a numeric IPv4 or IPv6 address: names are not resolved";
                else {
                        memcpy(parsed.host, h, n);
                        parsed.host[n] = 0;
                        /* A zone index ("fe80::1%eth0") is not numeric enough. */
                        if (inet_pton(AF_INET, parsed.host, addr) != 1 && inet_pton(AF_INET6, parsed.host, addr) != 1)
                                error = "the host must be a numeric IPv4 or IPv6 address: names are not resolved";
                }
                parsed.https = streq(scheme, "https");
                parsed.port = (unsigned) strtoul(port, NULL, 10);
        }
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        if (error) {
                if (ret_error)
                        *ret_error = error;
                return -EINVAL;
        }
        *ret = parsed;
        return 0;
}

int curl_url_replace_host(const char *url, const char *host, char **ret) {
        CURLU *u = curl_url();
        char *s = NULL;
        int r = 0;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK || curl_url_set(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
                r = -EINVAL;
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        *ret = strdup(s);
        curl_free(s);
        return *ret ? 0 : -ENOMEM;
}
