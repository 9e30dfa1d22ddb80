/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The web config file: what it accepts, and for each mistake the exact
 * "file:line:column: key: what" line an operator gets. */
#include <crypt.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "exporter/web-config.h"
#include "pem-test-util.h"

#define HASH "$2y$10$X0Zs9n3N8Dn6QvQ0nQbYqOb0j7e7sQe8y3o9x9y8l6m5n4b3v2c1a"

_sentinel_ static void assert_errors(const char *yaml, ...) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        const char *expected;
        size_t n = 0;
        va_list ap;

        ASSERT_ERROR(web_config_load_string("web.yml", yaml, strlen(yaml), &w, &errors), EINVAL);
        ASSERT_TRUE(!w);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "  got: %s\n", *e);
        va_start(ap, yaml);
        while ((expected = va_arg(ap, const char *))) {
                ASSERT_TRUE(errors && errors[n]);
                ASSERT_STREQ(errors[n], expected);
                n++;
        }
        va_end(ap);
        ASSERT_TRUE(!errors[n]);
}

static WebConfig *load_ok(const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        WebConfig *w = NULL;
        int r = web_config_load_string("/etc/rupost/web.yml", yaml, strlen(yaml), &w, &errors);

        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "  got: %s\n", *e);
        ASSERT_OK(r);
        return w;
}

TEST(empty_file_is_plain_http) {
        _cleanup_(web_config_freep) WebConfig *w = load_ok("");
        ASSERT_FALSE(w->tls);
        ASSERT_EQ(w->n_users, 0U);
        web_config_free(load_ok("# nothing\n"));
}

TEST(full_file) {
        _cleanup_(web_config_freep) WebConfig *w = load_ok(
                "tls_server_config:\n"
                "  cert_file: tls/server.pem\n"
                "  key_file: /etc/rupost/server.key\n"
                "  client_ca_file: ca.pem\n"
                "  client_auth_type: RequireAndVerifyClientCert\n"
                "  min_version: TLS13\n"
                "http_server_config:\n"
                "  http2: false\n"
                "  headers:\n"
                "    X-Frame-Options: deny\n"
                "    Strict-Transport-Security: max-age=31536000\n"
                "basic_auth_users:\n"
                "  prometheus: " HASH "\n"
                "  \"grafana agent\": '$2b$04$abcdefghijklmnopqrstuu5Y1Y8yHkS2h6h6x0xHc6k8bq0q0q0q0'\n");

        ASSERT_TRUE(w->tls);
        /* Relative to the file's directory, as every exporter does. */
        ASSERT_STREQ(w->cert_file, "/etc/rupost/tls/server.pem");
        ASSERT_STREQ(w->key_file, "/etc/rupost/server.key");
        ASSERT_STREQ(w->client_ca_file, "/etc/rupost/ca.pem");
        ASSERT_EQ(w->client_auth, WEB_CLIENT_AUTH_REQUIRE_AND_VERIFY);
        ASSERT_EQ(w->min_version, WEB_TLS_13);
        ASSERT_TRUE(!w->cert_pem); /* load_string does not read files */
        ASSERT_EQ(w->n_headers, 2U);
        ASSERT_STREQ(w->headers[0].name, "X-Frame-Options");
        ASSERT_STREQ(w->headers[1].value, "max-age=31536000");
        ASSERT_EQ(w->n_users, 2U);
        ASSERT_STREQ(web_config_find_user(w, "prometheus"), HASH);
        ASSERT_TRUE(web_config_find_user(w, "grafana agent"));
        ASSERT_TRUE(!web_config_find_user(w, "root"));
}

TEST(tls_errors) {
        assert_errors("tls_server_config:\n  cert_file: a.pem\n",
                      "web.yml:2:3: tls_server_config.key_file: required key is missing: cert_file needs its private key",
                      NULL);
        assert_errors("tls_server_config:\n  key_file: a.key\n",
                      "web.yml:2:3: tls_server_config.cert_file: required key is missing: key_file needs its certificate",
                      NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  client_auth_type: VerifyClientCertIfGiven\n",
                      "web.yml:2:3: tls_server_config.client_ca_file: required when client_auth_type is VerifyClientCertIfGiven",
                      NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  client_auth_type: RequireAnyClientCert\n",
                      "web.yml:4:21: tls_server_config.client_auth_type: RequireAnyClientCert is not supported: "
                      "certificates that are not verified prove nothing; use VerifyClientCertIfGiven or "
                      "RequireAndVerifyClientCert",
                      NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  client_auth_type: Always\n",
                      "web.yml:4:21: tls_server_config.client_auth_type: 'Always' is not one of NoClientCert, "
                      "VerifyClientCertIfGiven, RequireAndVerifyClientCert",
                      NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  min_version: TLS10\n",
                      "web.yml:4:16: tls_server_config.min_version: TLS10 is not supported: the server offers TLS 1.2 and 1.3 only",
                      NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                      "web.yml:4:18: tls_server_config.cipher_suites: is not supported by rupost-agent", NULL);
        assert_errors("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n  certfile: b.pem\n",
                      "web.yml:4:3: tls_server_config.certfile: unknown key; expected one of: cert_file, key_file, "
                      "client_ca_file, client_auth_type, min_version, cert, key, client_ca, max_version, "
                      "cipher_suites, curve_preferences, prefer_server_cipher_suites, client_allowed_sans",
                      NULL);
        assert_errors("tls_server_config: yes\n",
                      "web.yml:1:20: tls_server_config: expected a mapping, got a scalar", NULL);
}

TEST(unknown_keys) {
        assert_errors("tls_config:\n  cert_file: a\n",
                      "web.yml:1:1: tls_config: unknown key; expected one of: tls_server_config, http_server_config, "
                      "basic_auth_users",
                      NULL);
        assert_errors("http_server_config:\n  http3: true\n",
                      "web.yml:2:3: http_server_config.http3: unknown key; expected one of: headers, http2", NULL);
        assert_errors("- a\n", "web.yml:1:1: the configuration must be a mapping of keys, got a list", NULL);
}

TEST(header_errors) {
        assert_errors("http_server_config:\n  headers:\n    Content-Type: text/html\n",
                      "web.yml:3:5: http_server_config.headers.Content-Type: this header cannot be set; allowed are "
                      "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, "
                      "Content-Security-Policy",
                      NULL);
        assert_errors("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                      "web.yml:3:22: http_server_config.headers.X-Frame-Options: 'allow' is not an allowed value: "
                      "use deny or sameorigin",
                      NULL);
        assert_errors("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\r\\nSet-Cookie: a=b\"\n",
                      "web.yml:3:23: http_server_config.headers.X-XSS-Protection: must be a non-empty line of "
                      "printable characters",
                      NULL);
}

TEST(user_errors) {
        assert_errors("basic_auth_users:\n  alice: secret\n",
                      "web.yml:2:10: basic_auth_users.alice: is not a bcrypt hash: it must start with $2a$, $2b$ or "
                      "$2y$ (e.g. from htpasswd -nBC 10 USER)",
                      NULL);
        assert_errors("basic_auth_users:\n  alice: $2y$10$short\n",
                      "web.yml:2:10: basic_auth_users.alice: is not a bcrypt hash: expected 53 characters of "
                      "[./A-Za-z0-9] after the cost, 60 in all",
                      NULL);
        assert_errors("basic_auth_users:\n  alice: $2y$20$X0Zs9n3N8Dn6QvQ0nQbYqOb0j7e7sQe8y3o9x9y8l6m5n4b3v2c1a\n",
                      "web.yml:2:10: basic_auth_users.alice: bcrypt cost 20 is above 16: every check would take "
                      "seconds of CPU",
                      NULL);
        assert_errors("basic_auth_users:\n  alice: $2y$03$X0Zs9n3N8Dn6QvQ0nQbYqOb0j7e7sQe8y3o9x9y8l6m5n4b3v2c1a\n",
                      "web.yml:2:10: basic_auth_users.alice: bcrypt cost 3 is out of range 4..31", NULL);
        assert_errors("basic_auth_users:\n  \"a:b\": " HASH "\n",
                      "web.yml:2:3: basic_auth_users.a:b: a user name cannot contain ':' in basic auth", NULL);
        assert_errors("basic_auth_users:\n  alice: " HASH "\n  alice: " HASH "\n",
                      "web.yml:3:3: basic_auth_users.alice: duplicate user", NULL);
        assert_errors("basic_auth_users:\n  alice:\n",
                      "web.yml:2:9: basic_auth_users.alice: expected a bcrypt hash, got no value", NULL);
        assert_errors("basic_auth_users: [alice]\n",
                      "web.yml:1:19: basic_auth_users: expected a mapping of user names to bcrypt hashes", NULL);
}

/* The hash never appears in a message, even a broken one. */
TEST(errors_do_not_quote_hashes) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        const char *yaml = "basic_auth_users:\n  alice: $2y$10$X0Zs9n3N8Dn6QvQ0nQbYqOb0j7e7sQe8y3o9x9y8l6m5n4b3v2c1!\n";

        ASSERT_ERROR(web_config_load_string("web.yml", yaml, strlen(yaml), &w, &errors), EINVAL);
        ASSERT_NOT_CONTAINS(errors[0], "X0Zs9n3N8");
}

static void write_web(const TestPki *p, const char *path, const char *fmt, ...) _printf_(3, 4);
static void write_web(const TestPki *p, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        ASSERT_TRUE(vasprintf(&s, fmt, ap) > 0);
        va_end(ap);
        test_write_file(path, s);
}

static char **load_file_errors(const char *path) {
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        char **errors = NULL;

        ASSERT_TRUE(web_config_load_file(path, &w, &errors) < 0);
        ASSERT_TRUE(!w && errors && errors[0]);
        for (char **e = errors; *e; e++)
                fprintf(stderr, "  got: %s\n", *e);
        return errors;
}

TEST(files) {
        TestPki p;
        char path[128], line[512];

        test_pki_make(&p);
        test_pki_path(&p, "web.yml", path);

        /* Good files, one named relative to the config file. */
        write_web(&p, path,
                  "tls_server_config:\n  cert_file: server.pem\n  key_file: %s\n  client_ca_file: %s\n"
                  "  client_auth_type: VerifyClientCertIfGiven\n",
                  p.server_key, p.ca);
        {
                _cleanup_strv_free_ char **errors = NULL;
                _cleanup_(web_config_freep) WebConfig *w = NULL;

                ASSERT_OK(web_config_load_file(path, &w, &errors));
                ASSERT_STREQ(w->cert_file, p.server_cert);
                ASSERT_CONTAINS(w->cert_pem, "-----BEGIN CERTIFICATE-----");
                ASSERT_CONTAINS(w->key_pem, "PRIVATE KEY-----");
                ASSERT_CONTAINS(w->client_ca_pem, "-----BEGIN CERTIFICATE-----");

                /* The same files: the same TLS setup; another key: not. */
                _cleanup_(web_config_freep) WebConfig *again = NULL;
                ASSERT_OK(web_config_load_file(path, &again, NULL));
                ASSERT_TRUE(web_config_tls_equal(w, again));
                ASSERT_FALSE(web_config_tls_equal(w, NULL));
                ASSERT_TRUE(web_config_tls_equal(NULL, NULL));
        }

        /* A key that is not the certificate's. */
        write_web(&p, path, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n", p.server_cert, p.other_key);
        {
                _cleanup_strv_free_ char **errors = load_file_errors(path);
                snprintf(line, sizeof line, "%s:3:13: tls_server_config.key_file: %s is not the key of the certificate in %s",
                         path, p.other_key, p.server_cert);
                ASSERT_STREQ(errors[0], line);
                ASSERT_TRUE(!errors[1]);
        }

        /* A missing file, and a certificate where the key should be. */
        write_web(&p, path, "tls_server_config:\n  cert_file: nothere.pem\n  key_file: %s\n", p.server_cert);
        {
                _cleanup_strv_free_ char **errors = load_file_errors(path);
                snprintf(line, sizeof line, "%s:2:14: tls_server_config.cert_file: cannot read %s/nothere.pem: "
                         "No such file or directory", path, p.dir);
                ASSERT_STREQ(errors[0], line);
                snprintf(line, sizeof line, "%s:3:13: tls_server_config.key_file: %s holds no unencrypted PEM private key",
                         path, p.server_cert);
                ASSERT_STREQ(errors[1], line);
                ASSERT_TRUE(!errors[2]);
        }

        /* A key file where the CA should be: named, and not quoted. */
        write_web(&p, path, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\n"
                  "  client_auth_type: RequireAndVerifyClientCert\n", p.server_cert, p.server_key, p.server_key);
        {
                _cleanup_strv_free_ char **errors = load_file_errors(path);
                snprintf(line, sizeof line, "%s:4:19: tls_server_config.client_ca_file: %s holds no PEM certificate",
                         path, p.server_key);
                ASSERT_STREQ(errors[0], line);
                ASSERT_NOT_CONTAINS(errors[0], "BEGIN");
        }

        /* An unreadable (here: absent) web config file. */
        {
                _cleanup_strv_free_ char **errors = NULL;
                _cleanup_(web_config_freep) WebConfig *w = NULL;
                char absent[128];

                ASSERT_ERROR(web_config_load_file(test_pki_path(&p, "absent.yml", absent), &w, &errors), ENOENT);
                snprintf(line, sizeof line, "%s: cannot open: No such file or directory", absent);
                ASSERT_STREQ(errors[0], line);
        }

        test_pki_remove(&p, (const char *const[]) { "web.yml", NULL });
}

DEFINE_TEST_MAIN();
