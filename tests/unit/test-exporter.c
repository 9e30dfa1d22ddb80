/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Talks raw HTTP to a real exporter on loopback, driving its event loop
 * between reads and writes as the agent's main loop would. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exporter/exporter.h"
#include "tests.h"

typedef struct Server {
        sd_event *event;
        Config config;
        Manager manager;
        Probe *probes[1];
        Exporter *exporter;
        uint16_t port;
} Server;

static void server_start(Server *s) {
        *s = (Server) {};
        ASSERT_OK(sd_event_new(&s->event));
        ASSERT_OK(probe_new(probe_type_find("tcp"), "smtp", &s->probes[0]));
        s->probes[0]->have_result = true;
        s->probes[0]->status = PROBE_OK;
        s->config = (Config) { .node = (char *) "mx1", .probes = s->probes, .n_probes = 1 };
        s->manager = (Manager) { .event = s->event, .config = &s->config };
        ASSERT_OK(exporter_new(&s->manager, "127.0.0.1:0", NULL, &s->exporter));
        s->port = exporter_port(s->exporter);
        ASSERT_TRUE(s->port > 0);
}

static void server_stop(Server *s) {
        /* Every connection a test opened, however it misbehaved, is gone. */
        for (unsigned i = 0; exporter_n_connections(s->exporter) > 0; i++) {
                ASSERT_TRUE(i < 500);
                ASSERT_OK(sd_event_run(s->event, 10 * USEC_PER_MSEC));
        }
        s->exporter = exporter_free(s->exporter);
        probe_free(s->probes[0]);
        s->event = sd_event_unref(s->event);
}

static int connect_to(uint16_t port) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons(port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        /* Loopback connects complete from the backlog, no loop iteration needed. */
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ? -errno : 0);
        ASSERT_OK(fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ? -errno : 0);
        return fd;
}

/* Sends `request` on a new connection and collects everything the server
 * sends until it closes the connection. */
static char *exchange(Server *s, const char *request, size_t len) {
        _cleanup_close_ int fd = connect_to(s->port);
        Buf response = BUF_INIT(64U * 1024U * 1024U);
        size_t written = 0;

        for (unsigned i = 0; i < 10000; i++) {
                char buf[65536];
                ssize_t n;

                if (written < len) {
                        n = send(fd, request + written, len - written, MSG_NOSIGNAL);
                        if (n > 0)
                                written += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                written = len; /* the server gave up on us: read what it said */
                }

                ASSERT_OK(sd_event_run(s->event, 10 * USEC_PER_MSEC));

                n = recv(fd, buf, sizeof buf, 0);
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return buf_steal(&response);
                if (n > 0)
                        ASSERT_OK(buf_append(&response, buf, (size_t) n));
                else
                        ASSERT_TRUE(errno == EAGAIN);
        }
        ASSERT_FAIL("%s", "the server did not close the connection");
}

#define EXCHANGE(s, literal) exchange((s), (literal), sizeof(literal) - 1)

static const char *body_of(const char *response) {
        const char *p = strstr(response, "\r\n\r\n");
        ASSERT_TRUE(p);
        return p + 4;
}

static void assert_normal_scrape(Server *s) {
        _cleanup_free_ char *r = EXCHANGE(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        const char *body = body_of(r);
        char cl[64];

        ASSERT_TRUE(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
        ASSERT_CONTAINS(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
        snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(body));
        ASSERT_CONTAINS(r, cl);
        ASSERT_CONTAINS(body, "\nrupost_probe_success{probe=\"smtp\",type=\"tcp\"} 1\n");
        ASSERT_CONTAINS(body, "\nrupost_node_info{node=\"mx1\"} 1\n");
        ASSERT_CONTAINS(body, "\nprocess_open_fds ");
}

TEST(scrape) {
        Server s;
        server_start(&s);
        assert_normal_scrape(&s);
        /* Rendering cached results must not count as a run. */
        ASSERT_EQ(s.probes[0]->n_runs, 0);
        ASSERT_FALSE(s.probes[0]->running);
        server_stop(&s);
}

static char *scrape(Server *s) {
        char *r = EXCHANGE(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        ASSERT_TRUE(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
        return r;
}

TEST(scrape_follows_probe_results) {
        Server s;
        server_start(&s);

        _cleanup_free_ char *a = scrape(&s);
        ASSERT_CONTAINS(a, "\nrupost_probe_runs_total{probe=\"smtp\",type=\"tcp\"} 0\n");

        /* What a finished run changes shows up in the next scrape. */
        s.probes[0]->n_runs = 1;
        s.probes[0]->status = PROBE_CRITICAL;
        _cleanup_free_ char *b = scrape(&s);
        ASSERT_CONTAINS(b, "\nrupost_probe_runs_total{probe=\"smtp\",type=\"tcp\"} 1\n");
        ASSERT_CONTAINS(b, "\nrupost_probe_success{probe=\"smtp\",type=\"tcp\"} 0\n");

        /* So does a new node name (a reload). */
        s.config.node = (char *) "mx2";
        _cleanup_free_ char *c = scrape(&s);
        ASSERT_CONTAINS(c, "\nrupost_node_info{node=\"mx2\"} 1\n");
        ASSERT_NOT_CONTAINS(c, "node=\"mx1\"");
        server_stop(&s);
}

TEST(head) {
        Server s;
        server_start(&s);
        _cleanup_free_ char *r = EXCHANGE(&s, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        ASSERT_TRUE(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
        ASSERT_CONTAINS(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
        ASSERT_STREQ(body_of(r), "");
        server_stop(&s);
}

TEST(index_and_not_found) {
        Server s;
        server_start(&s);

        _cleanup_free_ char *r = EXCHANGE(&s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        ASSERT_TRUE(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
        ASSERT_CONTAINS(r, "\r\nContent-Type: text/html; charset=utf-8\r\n");
        ASSERT_CONTAINS(body_of(r), "<a href=\"/metrics\">");

        static const char *const paths[] = { "/metrics/", "/metric", "/favicon.ico", "/metrics/../x" };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_free_ char *req = NULL, *resp = NULL;
                ASSERT_TRUE(asprintf(&req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", paths[i]) > 0);
                resp = exchange(&s, req, strlen(req));
                ASSERT_TRUE(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
        }
        server_stop(&s);
}

TEST(method_not_allowed) {
        static const char *const methods[] = { "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW" };
        Server s;

        server_start(&s);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                _cleanup_free_ char *req = NULL, *resp = NULL;
                ASSERT_TRUE(asprintf(&req, "%s /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                     methods[i]) > 0);
                resp = exchange(&s, req, strlen(req));
                ASSERT_TRUE(strncmp(resp, "HTTP/1.1 405 ", 13) == 0);
                ASSERT_CONTAINS(resp, "\r\nAllow: GET, HEAD\r\n");
        }
        /* A POST with a body is refused before the body is read. */
        _cleanup_free_ char *r = EXCHANGE(&s, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
        ASSERT_TRUE(strncmp(r, "HTTP/1.1 405 ", 13) == 0);
        assert_normal_scrape(&s);
        server_stop(&s);
}

TEST(bad_requests) {
        static const struct {
                const char *request;
                const char *status;
                bool may_close; /* MHD drops some junk without an answer */
        } cases[] = {
                /* bodies on GET */
                { "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 400 " },
                { "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  "HTTP/1.1 400 " },
                { "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", "HTTP/1.1 4" },
                /* HTTP/1.1 without Host */
                { "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 400 " },
                /* not HTTP at all */
                { "\x01\x02\x03garbage\r\n\r\n", "HTTP/1.1 4", true },
                { "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505 " },
                { "GET /metrics HTTP/1.1\r\nHost x\r\nBad header line\r\n\r\n", "HTTP/1.1 400 " },
        };
        Server s;

        server_start(&s);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *resp = exchange(&s, cases[i].request, strlen(cases[i].request));
                if (cases[i].may_close && resp[0] == 0)
                        continue;
                if (strncmp(resp, cases[i].status, strlen(cases[i].status)) != 0)
                        ASSERT_FAIL("case %zu: expected '%s', got '%.40s'", i, cases[i].status, resp);
                ASSERT_NOT_CONTAINS(resp, "rupost_");
        }
        assert_normal_scrape(&s);
        server_stop(&s);
}

TEST(oversized_headers) {
        _cleanup_free_ char *req = NULL, *resp = NULL;
        Buf b = BUF_INIT(0);
        Server s;

        server_start(&s);
        ASSERT_OK(buf_puts(&b, "GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        for (unsigned i = 0; i < 2000; i++)
                ASSERT_OK(buf_printf(&b, "X-Filler-%u: %0100u\r\n", i, i));
        ASSERT_OK(buf_puts(&b, "\r\n"));
        size_t len = b.len;
        req = buf_steal(&b);

        resp = exchange(&s, req, len);
        ASSERT_TRUE(strncmp(resp, "HTTP/1.1 4", 10) == 0);
        ASSERT_NOT_CONTAINS(resp, "rupost_");

        /* One endless header line, too. */
        free(req);
        free(resp);
        req = malloc(300000);
        ASSERT_TRUE(req);
        memcpy(req, "GET /metrics HTTP/1.1\r\nX-Long: ", 31);
        memset(req + 31, 'a', 300000 - 31);
        resp = exchange(&s, req, 300000);
        ASSERT_TRUE(strncmp(resp, "HTTP/1.1 4", 10) == 0);

        assert_normal_scrape(&s);
        server_stop(&s);
}

TEST(keep_alive_and_pipelining) {
        Server s;

        server_start(&s);
        _cleanup_free_ char *r = EXCHANGE(&s,
                                          "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                                          "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                                          "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        const char *second = strstr(r + 1, "HTTP/1.1 200 ");
        ASSERT_TRUE(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
        ASSERT_TRUE(second);
        ASSERT_TRUE(strstr(second + 1, "HTTP/1.1 200 "));
        server_stop(&s);
}

TEST(many_connections) {
        int fds[100];
        Server s;

        server_start(&s);
        /* More idle connections than the limit: the agent keeps serving
         * once they are gone, and meanwhile refuses rather than grows. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                fds[i] = connect_to(s.port);
                ASSERT_OK(sd_event_run(s.event, 0));
        }
        for (unsigned i = 0; i < 200; i++)
                ASSERT_OK(sd_event_run(s.event, 0));
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                safe_close(fds[i]);
        for (unsigned i = 0; i < 200; i++)
                ASSERT_OK(sd_event_run(s.event, 0));
        assert_normal_scrape(&s);
        server_stop(&s);
}

TEST(parse_listen_address) {
        static const struct {
                const char *s;
                int family;
                const char *host;
                uint16_t port;
        } good[] = {
                { "127.0.0.1:9469", AF_INET, "127.0.0.1", 9469 },
                { "0.0.0.0:0", AF_INET, "0.0.0.0", 0 },
                { ":9469", AF_INET6, "::", 9469 },
                { "[::1]:80", AF_INET6, "::1", 80 },
                { "[2001:db8::5]:65535", AF_INET6, "2001:db8::5", 65535 },
        };
        static const char *const bad[] = {
                "", ":", "9469", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80",
                "127.0.0.1:80x", "::1:80", "[::1]", "[::1]80", "[]:80", "[127.0.0.1]:80", "localhost:80",
                "256.0.0.1:80", "[::1]:99999999999999999999",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                struct sockaddr_storage ss;
                socklen_t len;
                char host[INET6_ADDRSTRLEN];
                uint16_t port;

                ASSERT_OK(exporter_parse_listen_address(good[i].s, &ss, &len));
                ASSERT_EQ(ss.ss_family, good[i].family);
                if (ss.ss_family == AF_INET) {
                        struct sockaddr_in *sa = (struct sockaddr_in *) &ss;
                        ASSERT_EQ(len, sizeof *sa);
                        inet_ntop(AF_INET, &sa->sin_addr, host, sizeof host);
                        port = ntohs(sa->sin_port);
                } else {
                        struct sockaddr_in6 *sa = (struct sockaddr_in6 *) &ss;
                        ASSERT_EQ(len, sizeof *sa);
                        inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof host);
                        port = ntohs(sa->sin6_port);
                }
                ASSERT_STREQ(host, good[i].host);
                ASSERT_EQ(port, good[i].port);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct sockaddr_storage ss;
                socklen_t len;
                if (exporter_parse_listen_address(bad[i], &ss, &len) != -EINVAL)
                        ASSERT_FAIL("'%s' was accepted", bad[i]);
        }
}

TEST(address_in_use) {
        _cleanup_free_ char *address = NULL;
        Exporter *second = NULL;
        Server s;

        server_start(&s);
        ASSERT_TRUE(asprintf(&address, "127.0.0.1:%u", s.port) > 0);
        ASSERT_ERROR(exporter_new(&s.manager, address, NULL, &second), EADDRINUSE);
        ASSERT_ERROR(exporter_new(&s.manager, "localhost:1", NULL, &second), EINVAL);
        ASSERT_TRUE(!second);
        assert_normal_scrape(&s);
        server_stop(&s);
}

DEFINE_TEST_MAIN();
