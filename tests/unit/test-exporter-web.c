/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The exporter with a web config, on loopback: TLS, client certificates,
 * basic auth, and switching configs. The client is libcurl in a forked child,
 * so that the test drives the agent's event loop while the client blocks. */
#include <crypt.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "exporter/basic-auth.h"
#include "exporter/exporter.h"
#include "exporter/web-config.h"
#include "lib/buf.h"
#include "loopback.h"
#include "pem-test-util.h"

typedef struct Server {
        sd_event *event;
        Config config;
        Manager manager;
        Probe *probes[1];
        Exporter *exporter;
        uint16_t port;
} Server;

static void server_start(Server *s, const WebConfig *web) {
        *s = (Server) {};
        ASSERT_OK(sd_event_new(&s->event));
        ASSERT_OK(probe_new(probe_type_find("tcp"), "smtp", &s->probes[0]));
        s->probes[0]->have_result = true;
        s->probes[0]->status = PROBE_OK;
        s->config = (Config) { .node = (char *) "mx1", .probes = s->probes, .n_probes = 1 };
        s->manager = (Manager) { .event = s->event, .config = &s->config };
        ASSERT_OK(exporter_new(&s->manager, "127.0.0.1:0", web, &s->exporter));
        s->port = exporter_port(s->exporter);
}

static void server_stop(Server *s) {
        s->exporter = exporter_free(s->exporter);
        probe_free(s->probes[0]);
        s->event = sd_event_unref(s->event);
}

typedef struct Fetch {
        bool https;
        const char *userpwd;
        const char *cert, *key; /* client certificate */
        const char *ca;         /* to verify the server */
} Fetch;

typedef struct Reply {
        int curl_code;
        long status;
        char *text; /* headers and body */
} Reply;

static size_t collect(char *data, size_t size, size_t n, void *userdata) {
        Buf *b = userdata;
        return buf_append(b, data, size * n) < 0 ? 0 : size * n;
}

static void fetch_in_child(const Server *s, const Fetch *f, int out) {
        char url[128], resolve[64];
        struct curl_slist *r = NULL;
        Buf b = BUF_INIT(1024 * 1024);
        long status = 0;
        CURL *c;
        int code;
        FILE *o;

        snprintf(url, sizeof url, "%s://localhost:%u/metrics", f->https ? "https" : "http", s->port);
        snprintf(resolve, sizeof resolve, "localhost:%u:127.0.0.1", s->port);
        r = curl_slist_append(NULL, resolve);
        c = curl_easy_init();
        if (!c || !r)
                _exit(2);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_RESOLVE, r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (f->ca)
                curl_easy_setopt(c, CURLOPT_CAINFO, f->ca);
        if (f->cert) {
                curl_easy_setopt(c, CURLOPT_SSLCERT, f->cert);
                curl_easy_setopt(c, CURLOPT_SSLKEY, f->key);
        }
        if (f->userpwd) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERPWD, f->userpwd);
        }
        code = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        o = fdopen(out, "w");
        if (!o)
                _exit(2);
        fprintf(o, "%d %ld\n", code, status);
        fwrite(b.data ?: "", 1, b.len, o);
        fclose(o);
        _exit(0);
}

static Reply fetch(Server *s, const Fetch *f) {
        Buf out = BUF_INIT(2 * 1024 * 1024);
        int fds[2], status;
        Reply reply = {};
        pid_t pid;

        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(fds[0]);
                fetch_in_child(s, f, fds[1]);
        }
        close(fds[1]);
        ASSERT_OK(fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0 ? -errno : 0);
        for (unsigned i = 0;; i++) {
                char b[65536];
                ssize_t n;

                ASSERT_TRUE(i < 1000);
                ASSERT_OK(sd_event_run(s->event, 10 * USEC_PER_MSEC));
                n = read(fds[0], b, sizeof b);
                if (n == 0)
                        break;
                if (n > 0)
                        ASSERT_OK(buf_append(&out, b, (size_t) n));
                else
                        ASSERT_TRUE(errno == EAGAIN);
        }
        close(fds[0]);
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_OK(buf_append(&out, "", 1));
        ASSERT_TRUE(sscanf(out.data, "%d %ld", &reply.curl_code, &reply.status) == 2);
        reply.text = strdup(strchr(out.data, '\n') + 1);
        buf_done(&out);
        return reply;
}

static void assert_status(Server *s, const Fetch *f, long expected) {
        Reply r = fetch(s, f);

        if (r.curl_code != 0 || r.status != expected)
                fprintf(stderr, "curl %d, status %ld\n%s\n", r.curl_code, r.status, r.text);
        ASSERT_EQ(r.curl_code, 0);
        ASSERT_EQ(r.status, expected);
        if (expected == 200)
                ASSERT_CONTAINS(r.text, "\nrupost_probe_success{probe=\"smtp\",type=\"tcp\"} ");
        free(r.text);
}

static void assert_no_http(Server *s, const Fetch *f) {
        Reply r = fetch(s, f);

        if (r.curl_code == 0)
                fprintf(stderr, "status %ld\n%s\n", r.status, r.text);
        ASSERT_TRUE(r.curl_code != 0);
        free(r.text);
}

static WebConfig *web_load(const TestPki *p, const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        WebConfig *w = NULL;
        char path[128];
        int r;

        test_write_file(test_pki_path(p, "web.yml", path), yaml);
        r = web_config_load_file(path, &w, &errors);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "  got: %s\n", *e);
        ASSERT_OK(r);
        return w;
}

static char *web_yaml(const TestPki *p, const char *client_auth, const char *rest) {
        char *s;
        ASSERT_TRUE(asprintf(&s,
                             "tls_server_config:\n"
                             "  cert_file: %s\n"
                             "  key_file: %s\n"
                             "  client_ca_file: %s\n"
                             "  client_auth_type: %s\n"
                             "%s",
                             p->server_cert, p->server_key, p->ca, client_auth, rest ?: "") > 0);
        return s;
}

TEST(tls_scrape) {
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        _cleanup_free_ char *yaml = NULL;
        TestPki p;
        Server s;

        test_pki_make(&p);
        yaml = web_yaml(&p, "NoClientCert", "http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
        w = web_load(&p, yaml);
        server_start(&s, w);

        Reply r = fetch(&s, &(Fetch) { .https = true, .ca = p.ca });
        ASSERT_EQ(r.curl_code, 0);
        ASSERT_EQ(r.status, 200);
        ASSERT_CONTAINS(r.text, "\r\nX-Frame-Options: deny\r\n");
        ASSERT_CONTAINS(r.text, "\nrupost_node_info{node=\"mx1\"} 1\n");
        free(r.text);
        /* Plain HTTP to the TLS port gets no HTTP answer. */
        assert_no_http(&s, &(Fetch) {});
        /* A client that does not trust the CA does not talk to us. */
        assert_no_http(&s, &(Fetch) { .https = true, .ca = p.client_cert });

        server_stop(&s);
        test_pki_remove(&p, (const char *const[]) { "web.yml", NULL });
}

TEST(client_cert_required) {
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        _cleanup_free_ char *yaml = NULL;
        TestPki p;
        Server s;

        test_pki_make(&p);
        yaml = web_yaml(&p, "RequireAndVerifyClientCert", NULL);
        w = web_load(&p, yaml);
        server_start(&s, w);

        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca }, 403);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .cert = p.client_cert, .key = p.client_key }, 200);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .cert = p.stranger_cert, .key = p.stranger_key }, 403);

        server_stop(&s);
        test_pki_remove(&p, (const char *const[]) { "web.yml", NULL });
}

TEST(client_cert_if_given) {
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        _cleanup_free_ char *yaml = NULL;
        TestPki p;
        Server s;

        test_pki_make(&p);
        yaml = web_yaml(&p, "VerifyClientCertIfGiven", NULL);
        w = web_load(&p, yaml);
        server_start(&s, w);

        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca }, 200);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .cert = p.client_cert, .key = p.client_key }, 200);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .cert = p.stranger_cert, .key = p.stranger_key }, 403);

        server_stop(&s);
        test_pki_remove(&p, (const char *const[]) { "web.yml", NULL });
}

/* A cheap bcrypt hash (cost 4), made here. */
static char *make_hash(const char *password) {
        char salt[CRYPT_GENSALT_OUTPUT_SIZE];
        struct crypt_data data = {};

        ASSERT_TRUE(crypt_gensalt_rn("$2b$", 4, NULL, 0, salt, sizeof salt));
        ASSERT_TRUE(crypt_rn(password, salt, &data, sizeof data));
        return strdup(data.output);
}

static WebConfig *users_config(void) {
        _cleanup_free_ char *h1 = make_hash("right horse"), *h2 = make_hash("other"), *yaml = NULL;
        WebConfig *w = NULL;

        ASSERT_TRUE(asprintf(&yaml, "basic_auth_users:\n  prometheus: '%s'\n  grafana: '%s'\n", h1, h2) > 0);
        ASSERT_OK(web_config_load_string("web.yml", yaml, strlen(yaml), &w, NULL));
        return w;
}

TEST(basic_auth) {
        _cleanup_(web_config_freep) WebConfig *w = users_config();
        Server s;

        server_start(&s, w);

        Reply r = fetch(&s, &(Fetch) {});
        ASSERT_EQ(r.status, 401);
        ASSERT_CONTAINS(r.text, "\r\nWWW-Authenticate: Basic realm=\"rupost-agent\", charset=\"UTF-8\"\r\n");
        ASSERT_NOT_CONTAINS(r.text, "rupost_probe_success");
        free(r.text);

        assert_status(&s, &(Fetch) { .userpwd = "prometheus:wrong" }, 401);
        assert_status(&s, &(Fetch) { .userpwd = "prometheus:" }, 401);
        assert_status(&s, &(Fetch) { .userpwd = "grafana:right horse" }, 401); /* another user's password */
        assert_status(&s, &(Fetch) { .userpwd = "root:right horse" }, 401);
        assert_status(&s, &(Fetch) { .userpwd = "prometheus:right horse" }, 200);
        assert_status(&s, &(Fetch) { .userpwd = "prometheus:right horse" }, 200); /* from the cache */
        assert_status(&s, &(Fetch) { .userpwd = "grafana:other" }, 200);

        server_stop(&s);
}

static void on_done(bool ok, void *userdata) {
        int *result = userdata;
        *result = ok;
}

/* The checks run off the loop, are bounded, and right answers are remembered. */
TEST(basic_auth_checks) {
        _cleanup_(web_config_freep) WebConfig *w = users_config();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(basic_auth_freep) BasicAuth *a = NULL;
        const char *hash = web_config_find_user(w, "prometheus");
        BasicAuthCheck *c1, *c2, *c3;
        int r1 = -1, r2 = -1, r3 = -1;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(basic_auth_new(e, &a));

        ASSERT_EQ(basic_auth_check(a, "prometheus", "right horse", hash, hash, on_done, &r1, &c1), 0);
        ASSERT_EQ(basic_auth_check(a, "nobody", "right horse", NULL, hash, on_done, &r2, &c2), 0);
        ASSERT_ERROR(basic_auth_check(a, "prometheus", "x", hash, hash, on_done, &r3, &c3), EBUSY);
        ASSERT_EQ(basic_auth_n_checks(a), 2U);
        /* The callbacks set r1 and r2. */
        for (unsigned i = 0; i < 500 && (r1 < 0 || r2 < 0); i++)
                ASSERT_OK(sd_event_run(e, 10 * USEC_PER_MSEC));
        ASSERT_EQ(r1, 1);
        ASSERT_EQ(r2, 0); /* a user that does not exist, even with a password that matches the hash */
        ASSERT_EQ(basic_auth_n_checks(a), 0U);

        /* Now known: no check, no callback. */
        ASSERT_EQ(basic_auth_check(a, "prometheus", "right horse", hash, hash, on_done, &r3, &c3), 1);
        /* Not for another hash (the password was changed), nor after a flush. */
        ASSERT_EQ(basic_auth_check(a, "prometheus", "right horse", web_config_find_user(w, "grafana"), hash,
                                   on_done, &r3, &c3), 0);
        c3 = basic_auth_check_cancel(c3);
        basic_auth_flush(a);
        ASSERT_EQ(basic_auth_check(a, "prometheus", "right horse", hash, hash, on_done, &r3, &c3), 0);
        ASSERT_EQ(r3, -1);
        /* Freed with a check in flight: no callback, no leak. */
}

TEST(verify_blocking) {
        _cleanup_free_ char *h = make_hash("pw");

        ASSERT_TRUE(basic_auth_verify_blocking("pw", h));
        ASSERT_FALSE(basic_auth_verify_blocking("pW", h));
        ASSERT_FALSE(basic_auth_verify_blocking("pw", "$2b$04$invalid"));
}

/* Plain, then TLS with users, then a TLS setup MHD refuses: the second stays. */
TEST(switch_config) {
        _cleanup_(web_config_freep) WebConfig *tls = NULL, *broken = NULL, *other = NULL, *users = users_config();
        _cleanup_free_ char *yaml = NULL, *yaml2 = NULL;
        TestPki p;
        Server s;

        test_pki_make(&p);
        server_start(&s, NULL);
        assert_status(&s, &(Fetch) {}, 200);

        _cleanup_free_ char *hash = strdup(users->users[0].hash);
        ASSERT_TRUE(asprintf(&yaml,
                             "tls_server_config:\n  cert_file: %s\n  key_file: %s\n"
                             "basic_auth_users:\n  prometheus: '%s'\n",
                             p.server_cert, p.server_key, hash) > 0);
        tls = web_load(&p, yaml);
        ASSERT_OK(exporter_set_web_config(s.exporter, tls));
        assert_no_http(&s, &(Fetch) {});
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca }, 401);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .userpwd = "prometheus:right horse" }, 200);

        /* A key that is not the certificate's (the loader refuses that, so
         * it is swapped in afterwards): MHD refuses to start and the
         * server keeps the config it has. */
        broken = web_load(&p, yaml);
        other = web_load(&p, yaml);
        free(broken->key_pem);
        ASSERT_TRUE(asprintf(&yaml2, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n", p.client_cert, p.client_key) > 0);
        web_config_free(other);
        other = web_load(&p, yaml2);
        broken->key_pem = TAKE_PTR(other->key_pem);
        ASSERT_ERROR(exporter_set_web_config(s.exporter, broken), EIO);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .userpwd = "prometheus:right horse" }, 200);

        /* Back to plain HTTP without users. */
        ASSERT_OK(exporter_set_web_config(s.exporter, NULL));
        assert_status(&s, &(Fetch) {}, 200);

        server_stop(&s);
        test_pki_remove(&p, (const char *const[]) { "web.yml", NULL });
}

static void write_agent_config(const TestPki *p, uint16_t port, char path[static 128]) {
        char sock[128], web[128], closed[128];
        _cleanup_free_ char *yaml = NULL;

        snprintf(closed, sizeof closed, "127.0.0.1:%u", test_free_port());
        ASSERT_TRUE(asprintf(&yaml,
                             "node: n1\n"
                             "control_socket: %s\n"
                             "web:\n"
                             "  listen_address: 127.0.0.1:%u\n"
                             "  config_file: %s\n"
                             "probes:\n"
                             "  - name: smtp\n"
                             "    type: tcp\n"
                             "    address: %s\n"
                             "    interval: 1h\n",
                             test_pki_path(p, "control.sock", sock), port, test_pki_path(p, "web.yml", web),
                             closed) > 0);
        test_write_file(test_pki_path(p, "agent.yaml", path), yaml);
}

/* The agent reads the web config named in its config; a reload reads it
 * again and swaps it, and a broken one on reload keeps the one in force
 * while a broken one at start is an error. */
TEST(manager_reload) {
        _cleanup_(web_config_freep) WebConfig *users = users_config();
        _cleanup_free_ char *plain = NULL, *tls = NULL;
        char config_path[128], web_path[128];
        Manager *m = NULL;
        Config *config = NULL;
        sigset_t saved;
        TestPki p;

        test_pki_make(&p);
        uint16_t port = test_free_port();
        write_agent_config(&p, port, config_path);
        test_pki_path(&p, "web.yml", web_path);
        ASSERT_TRUE(asprintf(&plain, "basic_auth_users:\n  prometheus: '%s'\n", users->users[0].hash) > 0);
        ASSERT_TRUE(asprintf(&tls, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n%s", p.server_cert,
                             p.server_key, plain) > 0);
        test_write_file(web_path, plain);

        ASSERT_OK(sigprocmask(SIG_SETMASK, NULL, &saved));
        ASSERT_OK(manager_new(&(ManagerOptions) { .config_path = config_path }, &m));
        ASSERT_OK(config_load_file(config_path, &config, NULL));
        ASSERT_OK(manager_start(m, config));
        Server s = { .event = m->event, .port = port };
        assert_status(&s, &(Fetch) {}, 401);
        assert_status(&s, &(Fetch) { .userpwd = "prometheus:right horse" }, 200);

        test_write_file(web_path, tls);
        ASSERT_OK(manager_reload(m));
        assert_no_http(&s, &(Fetch) {});
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .userpwd = "prometheus:right horse" }, 200);

        test_write_file(web_path, "tls_server_config:\n  cert_file: x.pem\n  key_file: x.key\n  bogus: 1\n");
        ASSERT_OK(manager_reload(m));
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .userpwd = "prometheus:right horse" }, 200);
        assert_status(&s, &(Fetch) { .https = true, .ca = p.ca, .userpwd = "prometheus:wrong" }, 401);
        m = manager_free(m);

        /* At start, the same broken file is fatal. */
        ASSERT_OK(manager_new(&(ManagerOptions) { .config_path = config_path }, &m));
        ASSERT_OK(config_load_file(config_path, &config, NULL));
        ASSERT_ERROR(manager_start(m, config), EINVAL);
        m = manager_free(m);
        ASSERT_OK(sigprocmask(SIG_SETMASK, &saved, NULL));

        test_pki_remove(&p, (const char *const[]) { "web.yml", "agent.yaml", "control.sock", NULL });
}

int main(void) {
        sigset_t mask;

        /* sd-event reaps the password checks' children. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_BLOCK, &mask, NULL));
        return tests_run();
}
