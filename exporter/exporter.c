/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The HTTP endpoint: libmicrohttpd in external-epoll mode on the manager's
 * sd-event loop. MHD's epoll fd is one io source; after every MHD_run() a
 * timer is armed from MHD_get_timeout() so idle connections time out.
 *
 * A hostile or broken client must not hurt the agent: connections are
 * limited in number, in number per client address, in idle time, in total
 * time per request (conn-deadline.h) and in memory (the request header block
 * must fit in the per-connection pool, or MHD answers 431), and requests with
 * a body are refused before the body is read.
 *
 * With a web config (web-config.h) the same server speaks TLS, checks client
 * certificates and basic auth. A password is checked off the loop
 * (basic-auth.h): the connection is suspended meanwhile and resumed when the
 * answer is known. A new web config that changes the TLS setup starts a new
 * MHD daemon on the same listening socket and stops the old one only once the
 * new one runs, so a bad certificate keeps the old server. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>

#include "basic-auth.h"
#include "conn-deadline.h"
#include "exporter.h"
#include "gzip-body.h"
#include "lib/log.h"
#include "lib/sockaddr.h"
#include "negotiate.h"
#include "web-config.h"

#define EXPORTER_CONNECTION_LIMIT 64U
/* One address may hold this many: a flood from one host (or a stuck
 * scraper) leaves the other slots to everyone else. Prometheus keeps one
 * connection per target, an HA pair two from two addresses. */
#define EXPORTER_CONNECTIONS_PER_ADDRESS 8U
/* Idle time (MHD's timeout), and the absolute time a request may take from
 * the connection's start or its previous answer to its own answer
 * (conn-deadline.h), whatever a client trickles meanwhile. */
#define EXPORTER_CONNECTION_TIMEOUT_SEC 10U
#define EXPORTER_REQUEST_DEADLINE (10U * USEC_PER_SEC)
/* The request line and headers must fit, with the response headers. 16 KiB
 * is ample for a scraper, and 64 connections then pin at most 1 MiB. */
#define EXPORTER_CONNECTION_MEMORY (16U * 1024U)

/* The body of /metrics depends on both; a cache must not serve OpenMetrics
 * or gzip to a client that asked for neither. */
#define VARY_METRICS "Accept, Accept-Encoding"
#define AUTH_REALM "Basic realm=\"rupost-agent\", charset=\"UTF-8\""

static const char index_page[] =
        "<!DOCTYPE html>\n"
        "<html><head><title>rupost-agent</title></head>\n"
        "<body><h1>rupost-agent</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

typedef enum StaticReply {
        REPLY_INDEX,
        REPLY_NOT_FOUND,
        REPLY_METHOD_NOT_ALLOWED,
        REPLY_BODY_NOT_ACCEPTED,
        REPLY_RENDER_FAILED,
        REPLY_UNAUTHORIZED,
        REPLY_CLIENT_CERT_REFUSED,
        REPLY_AUTH_BUSY,
        _REPLY_MAX,
} StaticReply;

static const struct {
        unsigned status;
        const char *content_type;
        const char *body;
} static_replies[_REPLY_MAX] = {
        [REPLY_INDEX] = { MHD_HTTP_OK, "text/html; charset=utf-8", index_page },
        [REPLY_NOT_FOUND] = { MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", "Not found; metrics are at /metrics.\n" },
        [REPLY_METHOD_NOT_ALLOWED] = { MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                                       "Only GET and HEAD are allowed.\n" },
        [REPLY_BODY_NOT_ACCEPTED] = { MHD_HTTP_BAD_REQUEST, "text/plain; charset=utf-8",
                                      "Requests must not have a body.\n" },
        [REPLY_RENDER_FAILED] = { MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                                  "Failed to render the metrics; see the agent's log.\n" },
        [REPLY_UNAUTHORIZED] = { MHD_HTTP_UNAUTHORIZED, "text/plain; charset=utf-8", "Unauthorized.\n" },
        [REPLY_CLIENT_CERT_REFUSED] = { MHD_HTTP_FORBIDDEN, "text/plain; charset=utf-8",
                                        "A client certificate issued by the configured CA is required.\n" },
        [REPLY_AUTH_BUSY] = { MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                              "Too many password checks in progress; try again.\n" },
};

typedef enum AuthState {
        AUTH_UNKNOWN,
        AUTH_PENDING, /* a password check runs; the connection is suspended */
        AUTH_ALLOWED,
        AUTH_DENIED,
        AUTH_BUSY,
} AuthState;

/* One per request, from its headers until MHD is done with it. */
typedef struct Request {
        Exporter *exporter;
        struct MHD_Connection *connection;
        BasicAuthCheck *check;
        AuthState auth;
        struct Request *next_pending;
} Request;

/* The probe part of the body in one format, rendered again only when a probe
 * reported or the config changed (see metrics_state_hash()), and deflated
 * once for all the scrapes that accept gzip until then: a scrape storm costs
 * one compression of the process part per scrape, not of the whole body. */
typedef struct RenderCache {
        Buf body;
        GzipHead gzip;
        uint64_t hash;
        bool valid;
        bool gzip_valid;
} RenderCache;

struct Exporter {
        Manager *manager;
        int listen_fd; /* ours; each daemon gets a duplicate */
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;
        const WebConfig *web; /* the manager's; NULL for plain HTTP without auth */
        BasicAuth *auth;
        Request *pending; /* suspended while their password is checked */
        ConnDeadlines *deadlines;
        sd_event_source *timer_source;
        struct MHD_Response *replies[_REPLY_MAX];
        char *address; /* as bound, for messages */
        RenderCache cache[_METRICS_FORMAT_MAX];
        GzipWriter *gzip; /* deflates the process part, reused scrape after scrape */
        uint64_t n_compressions;
        uint16_t port;
        int last_render_error; /* to log a failing render once, not on every scrape */
        int last_gzip_error;   /* likewise */
};

static int bind_one(const union sockaddr_union *sa, socklen_t len) {
        _cleanup_close_ int fd = -EBADF;
        int one = 1, zero = 0;

        fd = socket(sa->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
                return -errno;
        /* ":port" means every address, IPv4 included, whatever the sysctl default. */
        if (sa->sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr) &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0)
                return -errno;
        if (bind(fd, &sa->sa, len) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Binds the listening socket; logs. On success also returns the address
 * actually bound (with the real port). */
static int bind_listen_address(const char *listen_address, union sockaddr_union *ret_bound, int *ret_fd) {
        char pretty[SOCKADDR_STRING_MAX];
        union sockaddr_union sa, bound;
        socklen_t len, bound_len = sizeof bound;
        _cleanup_close_ int fd = -EBADF;
        const char *why;
        int r;

        r = sockaddr_parse_full(listen_address, SOCKADDR_PORT_ZERO, &sa, &len, &why);
        if (r < 0)
                return log_error_errno(r, "Invalid web listen address '%s': expected " SOCKADDR_GRAMMAR ": %s.",
                                       listen_address, why);

        fd = bind_one(&sa, len);
        if (fd == -EAFNOSUPPORT && listen_address[0] == ':') {
                /* A kernel without IPv6: "all addresses" are the IPv4 ones. */
                uint16_t port = sa.in6.sin6_port;

                sa = (union sockaddr_union) {};
                sa.in.sin_family = AF_INET;
                sa.in.sin_addr.s_addr = htonl(INADDR_ANY);
                sa.in.sin_port = port;
                len = sizeof sa.in;
                fd = bind_one(&sa, len);
        }
        if (fd < 0)
                return log_error_errno(fd, "Failed to listen on %s for metrics: %m",
                                       sockaddr_to_string(&sa, pretty, sizeof pretty));

        if (getsockname(fd, &bound.sa, &bound_len) < 0)
                return log_error_errno(-errno, "Failed to read back the address of the metrics socket: %m");

        *ret_bound = bound;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static enum MHD_Result queue_static(Exporter *e, struct MHD_Connection *connection, StaticReply reply) {
        return MHD_queue_response(connection, static_replies[reply].status, e->replies[reply]);
}

static int add_web_headers(const WebConfig *web, struct MHD_Response *response) {
        for (size_t i = 0; web && i < web->n_headers; i++)
                if (MHD_add_response_header(response, web->headers[i].name, web->headers[i].value) != MHD_YES)
                        return -ENOMEM;
        return 0;
}

/* The cached probe part in fmt, rendered again if the state changed. */
static int exporter_cache_get(Exporter *e, MetricsFormat fmt, RenderCache **ret) {
        RenderCache *c = &e->cache[fmt];
        uint64_t hash = metrics_state_hash(e->manager);
        int r;

        if (!c->valid || hash != c->hash) {
                c->valid = c->gzip_valid = false;
                buf_reset(&c->body);
                r = metrics_render_state(e->manager, fmt, &c->body);
                if (r < 0)
                        return r;
                c->hash = hash;
                c->valid = true;
        }
        *ret = c;
        return 0;
}

static int exporter_gzip(Exporter *e, RenderCache *c, const Buf *tail, Buf *out) {
        int r;

        if (!c->gzip_valid) {
                r = gzip_head_set(&c->gzip, c->body.data, c->body.len);
                if (r < 0)
                        return r;
                c->gzip_valid = true;
                e->n_compressions++;
        }
        return gzip_writer_finish(e->gzip, &c->gzip, tail->data, tail->len, out);
}

/* The body in fmt, gzipped if asked and possible; *ret_gzipped says which. */
static int exporter_render(Exporter *e, MetricsFormat fmt, bool gzip, Buf *body, bool *ret_gzipped) {
        _cleanup_(buf_done) Buf tail = BUF_INIT(EXPORTER_MAX_BODY);
        RenderCache *c;
        int r;

        r = exporter_cache_get(e, fmt, &c);
        if (r < 0)
                return r;
        r = metrics_render_process(fmt, &tail);
        if (r < 0)
                return r;

        if (gzip) {
                r = exporter_gzip(e, c, &tail, body);
                if (r >= 0) {
                        e->last_gzip_error = 0;
                        *ret_gzipped = true;
                        return 0;
                }
                /* Compression is a courtesy: without it the body still goes out. */
                if (r != e->last_gzip_error)
                        log_warning_errno(r, "Failed to compress the metrics, sending them uncompressed: %m");
                e->last_gzip_error = r;
                buf_reset(body);
        }

        *ret_gzipped = false;
        r = buf_append(body, c->body.data ?: "", c->body.len);
        if (r < 0)
                return r;
        r = buf_append(body, tail.data ?: "", tail.len);
        if (r < 0)
                return r;
        return buf_status(body);
}

static enum MHD_Result serve_metrics(Exporter *e, struct MHD_Connection *connection) {
        Exposition x = negotiate_exposition(
                MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
        bool gzip = negotiate_gzip(
                MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
        MetricsFormat fmt = exposition_is_openmetrics(x) ? METRICS_FORMAT_OPENMETRICS : METRICS_FORMAT_TEXT;
        struct MHD_Response *response;
        Buf body = BUF_INIT(EXPORTER_MAX_BODY);
        enum MHD_Result ret;
        bool gzipped;
        int r;

        r = exporter_render(e, fmt, gzip, &body, &gzipped);
        if (r < 0) {
                buf_done(&body);
                if (r != e->last_render_error)
                        log_error_errno(r, "Failed to render the metrics%s: %m",
                                        r == -ENOBUFS ? ", they exceed the size limit" : "");
                e->last_render_error = r;
                return queue_static(e, connection, REPLY_RENDER_FAILED);
        }
        e->last_render_error = 0;

        size_t len = body.len;
        response = MHD_create_response_from_buffer(len, buf_steal(&body), MHD_RESPMEM_MUST_FREE);
        if (!response)
                return MHD_NO; /* out of memory: MHD closes the connection */
        if (MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, exposition_content_type(x)) != MHD_YES ||
            MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, VARY_METRICS) != MHD_YES ||
            (gzipped && MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip") != MHD_YES) ||
            add_web_headers(e->web, response) < 0) {
                MHD_destroy_response(response);
                return MHD_NO;
        }
        ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
        MHD_destroy_response(response);
        return ret;
}

static bool request_has_body(struct MHD_Connection *connection) {
        const char *v;

        if (MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return true;
        v = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        return v && !streq(v, "0");
}

/* MHD asks for the client certificate when it has a CA to trust; whether
 * one was sent and verifies is ours to decide. */
static bool client_cert_acceptable(const WebConfig *web, struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *info;
        unsigned n = 0, status = 0;

        if (!web || !web->tls || web->client_auth == WEB_CLIENT_AUTH_NONE)
                return true;
        info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!info || !info->tls_session)
                return false;
        gnutls_session_t session = info->tls_session;
        if (!gnutls_certificate_get_peers(session, &n) || n == 0)
                return web->client_auth == WEB_CLIENT_AUTH_VERIFY_IF_GIVEN;
        return gnutls_certificate_verify_peers2(session, &status) >= 0 && status == 0;
}

static void request_unlink_pending(Request *req) {
        for (Request **i = &req->exporter->pending; *i; i = &(*i)->next_pending)
                if (*i == req) {
                        *i = req->next_pending;
                        return;
                }
}

static int exporter_dispatch(Exporter *e);

static void on_auth_checked(bool ok, void *userdata) {
        Request *req = userdata;

        req->check = NULL;
        req->auth = ok ? AUTH_ALLOWED : AUTH_DENIED;
        request_unlink_pending(req);
        MHD_resume_connection(req->connection);
        (void) exporter_dispatch(req->exporter);
}

static void free_password(char *user, char *password) {
        if (password) {
                explicit_bzero(password, strlen(password));
                MHD_free(password);
        }
        if (user)
                MHD_free(user);
}

/* Decides on the request's credentials; AUTH_PENDING means a check started
 * and the connection must be suspended. */
static AuthState request_authorize(Request *req) {
        Exporter *e = req->exporter;
        const WebConfig *web = e->web;
        char *user, *password = NULL;
        const char *hash;
        int r;

        if (req->auth != AUTH_UNKNOWN)
                return req->auth;
        if (!web || web->n_users == 0)
                return AUTH_ALLOWED;

        user = MHD_basic_auth_get_username_password(req->connection, &password);
        if (!user || !password) {
                free_password(user, password);
                return AUTH_DENIED;
        }

        hash = web_config_find_user(web, user);
        r = basic_auth_check(e->auth, user, password, hash, web->users[0].hash, on_auth_checked, req, &req->check);
        free_password(user, password);
        if (r > 0)
                return AUTH_ALLOWED;
        if (r == 0)
                return AUTH_PENDING;
        if (r != -EBUSY)
                log_warning_errno(r, "Failed to start a password check, refusing the request: %m");
        return AUTH_BUSY;
}

static enum MHD_Result request_handler(void *cls, struct MHD_Connection *connection, const char *url,
                                       const char *method, const char *version, const char *upload_data,
                                       size_t *upload_data_size, void **con_cls) {
        Exporter *e = cls;
        Request *req = *con_cls;

        if (!req) {
                /* First call, right after the headers. Requests we refuse
                 * are answered now, before any body is read: MHD then closes
                 * the connection instead of reading the body. The others are
                 * answered on the next call, once MHD knows the request is
                 * complete, so that the connection can be kept alive. */
                if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                        return queue_static(e, connection, REPLY_METHOD_NOT_ALLOWED);
                if (request_has_body(connection))
                        return queue_static(e, connection, REPLY_BODY_NOT_ACCEPTED);
                req = calloc(1, sizeof *req);
                if (!req)
                        return MHD_NO;
                req->exporter = e;
                req->connection = connection;
                *con_cls = req;
                return MHD_YES;
        }
        if (*upload_data_size > 0)
                return queue_static(e, connection, REPLY_BODY_NOT_ACCEPTED);

        if (!client_cert_acceptable(e->web, connection))
                return queue_static(e, connection, REPLY_CLIENT_CERT_REFUSED);

        switch (request_authorize(req)) {
        case AUTH_PENDING:
                req->auth = AUTH_PENDING;
                req->next_pending = e->pending;
                e->pending = req;
                MHD_suspend_connection(connection);
                return MHD_YES;
        case AUTH_DENIED:
                return queue_static(e, connection, REPLY_UNAUTHORIZED);
        case AUTH_BUSY:
                return queue_static(e, connection, REPLY_AUTH_BUSY);
        default:
                break;
        }

        if (streq(url, "/metrics"))
                return serve_metrics(e, connection);
        if (streq(url, "/"))
                return queue_static(e, connection, REPLY_INDEX);
        return queue_static(e, connection, REPLY_NOT_FOUND);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
        Exporter *e = cls;
        Request *req = *con_cls;

        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                conn_deadlines_restart(e->deadlines, connection);
        if (!req)
                return;
        if (req->check) {
                req->check = basic_auth_check_cancel(req->check);
                request_unlink_pending(req);
        }
        free(req);
        *con_cls = NULL;
}

_printf_(2, 0) static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        _cleanup_free_ char *s = NULL;

        /* MHD reports what clients did wrong here; that is not the agent's
         * error, so keep it at debug level. */
        if (log_get_max_level() < LOG_DEBUG || vasprintf(&s, fmt, ap) < 0)
                return;
        s[strcspn(s, "\n")] = 0;
        log_debug("HTTP: %s", s);
}

static int exporter_arm_timer(Exporter *e) {
        MHD_UNSIGNED_LONG_LONG timeout_ms;
        int r;

        if (MHD_get_timeout(e->daemon, &timeout_ms) != MHD_YES)
                return sd_event_source_set_enabled(e->timer_source, SD_EVENT_OFF);

        usec_t n = now(CLOCK_MONOTONIC), until;
        if (timeout_ms >= (USEC_INFINITY - 1 - n) / USEC_PER_MSEC)
                until = USEC_INFINITY - 1;
        else
                until = n + timeout_ms * USEC_PER_MSEC;
        r = sd_event_source_set_time(e->timer_source, until);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(e->timer_source, SD_EVENT_ONESHOT);
}

unsigned exporter_n_connections(const Exporter *e) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(e->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        return info ? info->num_connections : 0;
}

uint64_t exporter_n_compressions(const Exporter *e) {
        return e ? e->n_compressions : 0;
}

static int exporter_dispatch(Exporter *e) {
        bool at_limit = exporter_n_connections(e) >= EXPORTER_CONNECTION_LIMIT;
        int r;

        if (MHD_run(e->daemon) != MHD_YES)
                log_debug("MHD_run() failed, continuing.");
        /* At the connection limit MHD takes the listening socket out of its
         * epoll set, and puts it back only at the start of a later run. When
         * this run freed a slot, nothing else may wake us up for that, and
         * the clients waiting in the backlog would stall: run once more. */
        if (at_limit && exporter_n_connections(e) < EXPORTER_CONNECTION_LIMIT &&
            MHD_run(e->daemon) != MHD_YES)
                log_debug("MHD_run() failed, continuing.");
        r = exporter_arm_timer(e);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP connection timer, ignoring: %m");
        return 0;
}

static void on_deadlines_expired(void *userdata) {
        (void) exporter_dispatch(userdata);
}

void exporter_set_request_deadline(Exporter *e, usec_t limit) {
        conn_deadlines_set_limit(e->deadlines, limit);
}

uint64_t exporter_n_deadline_closes(const Exporter *e) {
        return e ? conn_deadlines_n_expired(e->deadlines) : 0;
}

static int on_epoll_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return exporter_dispatch(userdata);
}

static int on_timer(sd_event_source *s, usec_t usec, void *userdata) {
        return exporter_dispatch(userdata);
}

uint16_t exporter_port(const Exporter *e) {
        return e ? e->port : 0;
}

/* MHD must not be stopped with suspended connections: their checks are
 * given up and they are resumed, to be closed by the stop. */
static void exporter_stop_daemon(Exporter *e, struct MHD_Daemon *daemon) {
        bool resumed = false;

        if (!daemon)
                return;
        for (Request *req = e->pending, *next; req; req = next) {
                next = req->next_pending;
                req->check = basic_auth_check_cancel(req->check);
                req->auth = AUTH_BUSY;
                req->next_pending = NULL;
                MHD_resume_connection(req->connection);
                resumed = true;
        }
        e->pending = NULL;
        if (resumed)
                (void) MHD_run(daemon);
        MHD_stop_daemon(daemon);
}

static void exporter_free_replies(Exporter *e) {
        for (size_t i = 0; i < _REPLY_MAX; i++)
                if (e->replies[i]) {
                        MHD_destroy_response(e->replies[i]);
                        e->replies[i] = NULL;
                }
}

Exporter *exporter_free(Exporter *e) {
        if (!e)
                return NULL;

        sd_event_source_disable_unref(e->io_source);
        sd_event_source_disable_unref(e->timer_source);
        exporter_stop_daemon(e, e->daemon);
        conn_deadlines_free(e->deadlines); /* after the daemon: it reports closes */
        basic_auth_free(e->auth);
        safe_close(e->listen_fd);
        exporter_free_replies(e);
        for (MetricsFormat f = 0; f < _METRICS_FORMAT_MAX; f++) {
                buf_done(&e->cache[f].body);
                gzip_head_done(&e->cache[f].gzip);
        }
        gzip_writer_free(e->gzip);
        free(e->address);
        free(e);
        return NULL;
}

/* Responses are shared by all requests; MHD keeps a response alive while a
 * connection still sends it, so they can be replaced at any time. */
static int exporter_make_replies(Exporter *e, const WebConfig *web) {
        struct MHD_Response *replies[_REPLY_MAX] = {};
        int r = -ENOMEM;

        for (size_t i = 0; i < _REPLY_MAX; i++) {
                replies[i] = MHD_create_response_from_buffer(strlen(static_replies[i].body),
                                                             (void *) static_replies[i].body, MHD_RESPMEM_PERSISTENT);
                if (!replies[i] ||
                    MHD_add_response_header(replies[i], MHD_HTTP_HEADER_CONTENT_TYPE, static_replies[i].content_type) != MHD_YES ||
                    add_web_headers(web, replies[i]) < 0)
                        goto fail;
        }
        if (MHD_add_response_header(replies[REPLY_METHOD_NOT_ALLOWED], MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES ||
            MHD_add_response_header(replies[REPLY_UNAUTHORIZED], MHD_HTTP_HEADER_WWW_AUTHENTICATE, AUTH_REALM) != MHD_YES ||
            MHD_add_response_header(replies[REPLY_AUTH_BUSY], MHD_HTTP_HEADER_RETRY_AFTER, "1") != MHD_YES)
                goto fail;

        exporter_free_replies(e);
        memcpy(e->replies, replies, sizeof replies);
        return 0;

fail:
        for (size_t i = 0; i < _REPLY_MAX; i++)
                if (replies[i])
                        MHD_destroy_response(replies[i]);
        return r;
}

/* Starts an MHD daemon on a duplicate of the listening socket, with the TLS
 * setup of `web`, and an io source for its epoll fd. Logs. */
static int exporter_start_daemon(Exporter *e, const WebConfig *web, struct MHD_Daemon **ret_daemon,
                                 sd_event_source **ret_io) {
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *io = NULL;
        unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
        const union MHD_DaemonInfo *info;
        struct MHD_Daemon *daemon;
        bool tls = web && web->tls;
        int fd, r;

        /* The daemon closes its socket when stopped; ours stays for the next one. */
        fd = fcntl(e->listen_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return log_error_errno(errno, "Failed to duplicate the metrics socket: %m");

        if (tls)
                flags |= MHD_USE_TLS;
        daemon = MHD_start_daemon(
                flags, 0, NULL, NULL, request_handler, e,
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, EXPORTER_CONNECTION_LIMIT,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, EXPORTER_CONNECTIONS_PER_ADDRESS,
                MHD_OPTION_CONNECTION_TIMEOUT, EXPORTER_CONNECTION_TIMEOUT_SEC,
                MHD_OPTION_NOTIFY_CONNECTION, conn_deadlines_notify, e->deadlines,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) EXPORTER_CONNECTION_MEMORY,
                /* e.g. HTTP/1.1 without Host is a 400 */
                MHD_OPTION_STRICT_FOR_CLIENT, 1,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, e,
                MHD_OPTION_NOTIFY_COMPLETED, request_completed, e,
                /* The TLS options last: MHD_OPTION_END ends the list early without TLS. */
                tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, tls ? web_tls_priorities(web->min_version) : NULL,
                MHD_OPTION_HTTPS_MEM_KEY, tls ? web->key_pem : NULL,
                MHD_OPTION_HTTPS_MEM_CERT, tls ? web->cert_pem : NULL,
                tls && web->client_ca_pem && web->client_auth != WEB_CLIENT_AUTH_NONE ? MHD_OPTION_HTTPS_MEM_TRUST
                                                                                         : MHD_OPTION_END,
                tls ? web->client_ca_pem : NULL,
                MHD_OPTION_END);
        if (!daemon) {
                /* Whether MHD closed the socket on failure depends on where it
                 * failed; we are single-threaded, so the number is still ours
                 * if it is open. */
                if (fcntl(fd, F_GETFD) >= 0)
                        safe_close(fd);
                return log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to start the HTTP%s server on %s%s.",
                                       tls ? "S" : "", e->address,
                                       tls ? " (GnuTLS refused the certificate, key or CA)" : "");
        }

        info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                MHD_stop_daemon(daemon);
                return log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to get the epoll fd of the HTTP server.");
        }
        r = sd_event_add_io(e->manager->event, &io, info->epoll_fd, EPOLLIN, on_epoll_io, e);
        if (r < 0) {
                MHD_stop_daemon(daemon);
                return log_error_errno(r, "Failed to watch the HTTP server: %m");
        }
        (void) sd_event_source_set_description(io, "exporter-io");

        *ret_daemon = daemon;
        *ret_io = TAKE_PTR(io);
        return 0;
}

int exporter_set_web_config(Exporter *e, const WebConfig *web) {
        int r;

        assert_return(e, -EINVAL);

        r = exporter_make_replies(e, web);
        if (r < 0)
                return log_oom();

        if (!web_config_tls_equal(e->web, web)) {
                struct MHD_Daemon *daemon;
                sd_event_source *io;

                r = exporter_start_daemon(e, web, &daemon, &io);
                if (r < 0) {
                        (void) exporter_make_replies(e, e->web);
                        return r;
                }
                sd_event_source_disable_unref(e->io_source);
                exporter_stop_daemon(e, e->daemon);
                e->daemon = daemon;
                e->io_source = io;
                log_info("Metrics are served over %s on %s.", web && web->tls ? "HTTPS" : "HTTP", e->address);
        }

        /* Users, their hashes or the headers may have changed. */
        basic_auth_flush(e->auth);
        e->web = web;
        (void) exporter_dispatch(e);
        return 0;
}

int exporter_new(Manager *m, const char *listen_address, const WebConfig *web, Exporter **ret) {
        _cleanup_(exporter_freep) Exporter *e = NULL;
        char address[SOCKADDR_STRING_MAX];
        union sockaddr_union bound;
        int r;

        assert_return(m, -EINVAL);
        assert_return(m->event, -EINVAL);
        assert_return(listen_address, -EINVAL);
        assert_return(ret, -EINVAL);

        e = calloc(1, sizeof *e);
        if (!e)
                return log_oom();
        e->manager = m;
        e->listen_fd = -EBADF;
        for (MetricsFormat f = 0; f < _METRICS_FORMAT_MAX; f++)
                e->cache[f] = (RenderCache) {
                        .body = BUF_INIT(EXPORTER_MAX_BODY),
                        .gzip.deflated = BUF_INIT(EXPORTER_MAX_BODY),
                };
        e->web = web;

        r = exporter_make_replies(e, web);
        if (r < 0)
                return log_oom();
        r = basic_auth_new(m->event, &e->auth);
        if (r < 0)
                return log_oom();
        r = gzip_writer_new(&e->gzip);
        if (r < 0)
                return log_error_errno(r, "Failed to set up gzip compression: %m");
        r = conn_deadlines_new(m->event, EXPORTER_REQUEST_DEADLINE, on_deadlines_expired, e, &e->deadlines);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP request deadlines: %m");

        r = bind_listen_address(listen_address, &bound, &e->listen_fd);
        if (r < 0)
                return r;
        e->address = strdup(sockaddr_to_string(&bound, address, sizeof address));
        if (!e->address)
                return log_oom();
        e->port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in.sin_port);

        r = exporter_start_daemon(e, web, &e->daemon, &e->io_source);
        if (r < 0)
                return r;

        /* MHD asks for a timeout of 0 when it has buffered work (pipelined
         * requests): sd-event's default slack of 250ms would stall those. */
        r = sd_event_add_time(m->event, &e->timer_source, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_timer, e);
        if (r < 0)
                return log_error_errno(r, "Failed to add the HTTP connection timer: %m");
        (void) sd_event_source_set_description(e->timer_source, "exporter-timer");
        r = exporter_arm_timer(e);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the HTTP connection timer: %m");

        log_debug("Serving metrics on %s://%s/metrics", web && web->tls ? "https" : "http", e->address);
        *ret = TAKE_PTR(e);
        return 0;
}
