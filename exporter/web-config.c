/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <libgen.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "lib/secret-file.h"
#include "web-config.h"

typedef struct LoadState {
        WebConfig *config;
        bool read_files;
} LoadState;

static const char *const client_auth_names[_WEB_CLIENT_AUTH_MAX] = {
        [WEB_CLIENT_AUTH_NONE] = "NoClientCert",
        [WEB_CLIENT_AUTH_VERIFY_IF_GIVEN] = "VerifyClientCertIfGiven",
        [WEB_CLIENT_AUTH_REQUIRE_AND_VERIFY] = "RequireAndVerifyClientCert",
};

static const char *const tls_version_names[_WEB_TLS_MAX] = {
        [WEB_TLS_12] = "TLS12",
        [WEB_TLS_13] = "TLS13",
};

/* Only headers that cannot break the responses (no Content-Type, no
 * Content-Length), and for two of them only the values that mean something. */
static const struct {
        const char *name;
        const char *const values[3]; /* allowed values, case-insensitive; none listed: any */
} allowed_headers[] = {
        { "Strict-Transport-Security", {} },
        { "X-Content-Type-Options", { "nosniff" } },
        { "X-Frame-Options", { "deny", "sameorigin" } },
        { "X-XSS-Protection", {} },
        { "Content-Security-Policy", {} },
};

const char *web_tls_priorities(WebTlsVersion v) {
        return v == WEB_TLS_13 ? "NORMAL:-VERS-ALL:+VERS-TLS1.3" : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
}

static void free_secret(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

WebConfig *web_config_free(WebConfig *w) {
        if (!w)
                return NULL;
        free(w->path);
        free(w->cert_file);
        free(w->key_file);
        free(w->client_ca_file);
        free(w->cert_pem);
        free_secret(w->key_pem);
        free(w->client_ca_pem);
        for (size_t i = 0; i < w->n_users; i++) {
                free(w->users[i].name);
                free(w->users[i].hash);
        }
        free(w->users);
        for (size_t i = 0; i < w->n_headers; i++) {
                free(w->headers[i].name);
                free(w->headers[i].value);
        }
        free(w->headers);
        free(w);
        return NULL;
}

static int parse_unsupported(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                             void *data) {
        return config_error(c, node, key, "is not supported by rupost-agent");
}

static int parse_client_auth(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                             void *data) {
        const char *s;
        int r;

        r = config_node_lookup(c, key, node, "a client auth type", client_auth_names, _WEB_CLIENT_AUTH_MAX, &s);
        if (r >= 0) {
                *(WebClientAuth *) data = r;
                return 0;
        }
        if (r != -ENOENT)
                return r;
        if (streq(s, "RequestClientCert") || streq(s, "RequireAnyClientCert"))
                return config_error(c, node, key,
                                    "%s is not supported: certificates that are not verified prove nothing; "
                                    "use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                                    s);
        return config_error_not_one_of(c, key, node, s, client_auth_names, _WEB_CLIENT_AUTH_MAX);
}

static int parse_tls_version(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                             void *data) {
        const char *s;
        int r;

        r = config_node_lookup(c, key, node, "a TLS version", tls_version_names, _WEB_TLS_MAX, &s);
        if (r >= 0) {
                *(WebTlsVersion *) data = r;
                return 0;
        }
        if (r != -ENOENT)
                return r;
        if (streq(s, "TLS10") || streq(s, "TLS11"))
                return config_error(c, node, key, "%s is not supported: the server offers TLS 1.2 and 1.3 only", s);
        return config_error_not_one_of(c, key, node, s, tls_version_names, _WEB_TLS_MAX);
}

static const ConfigItem tls_items[] = {
        { "cert_file",                   config_parse_string, offsetof(WebConfig, cert_file)      },
        { "key_file",                    config_parse_string, offsetof(WebConfig, key_file)       },
        { "client_ca_file",              config_parse_string, offsetof(WebConfig, client_ca_file) },
        { "client_auth_type",            parse_client_auth,   offsetof(WebConfig, client_auth)    },
        { "min_version",                 parse_tls_version,   offsetof(WebConfig, min_version)    },
        /* Known to the format, not implemented here: refused by name. */
        { "cert",                        parse_unsupported },
        { "key",                         parse_unsupported },
        { "client_ca",                   parse_unsupported },
        { "max_version",                 parse_unsupported },
        { "cipher_suites",               parse_unsupported },
        { "curve_preferences",           parse_unsupported },
        { "prefer_server_cipher_suites", parse_unsupported },
        { "client_allowed_sans",         parse_unsupported },
        {}
};

static int parse_tls(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        WebConfig *w = data;

        w->tls = true;
        return config_parse_table(c, key, node, tls_items, w);
}

static int header_index(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(allowed_headers); i++)
                if (strcasecmp(allowed_headers[i].name, name) == 0)
                        return (int) i;
        return -ENOENT;
}

static bool header_value_is_valid(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static int parse_headers(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                         void *data) {
        WebConfig *w = data;
        int ret = 0, r;

        if (node->type != YAML_MAPPING_NODE)
                return config_error(c, node, key, "expected a mapping of header names to values");

        size_t n = (size_t) (node->data.mapping.pairs.top - node->data.mapping.pairs.start);
        w->headers = calloc(n + 1, sizeof(WebHeader));
        if (!w->headers)
                return -ENOMEM;

        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
                yaml_node_t *k = config_node(c, p->key), *v = config_node(c, p->value);
                _cleanup_free_ char *path = NULL;
                char buf[CONFIG_QUOTE_MAX];
                const char *name, *value;
                int idx;

                if (!k || !v)
                        continue;
                r = config_node_scalar(c, key, k, "a header name", &name);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ret = r;
                        continue;
                }
                if (asprintf(&path, "%s.%s", key, config_quote(buf, name)) < 0)
                        return -ENOMEM;

                idx = header_index(name);
                if (idx < 0) {
                        r = config_error(c, k, path,
                                         "this header cannot be set; allowed are Strict-Transport-Security, "
                                         "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, "
                                         "Content-Security-Policy");
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                        continue;
                }
                for (size_t i = 0; i < w->n_headers; i++)
                        if (strcasecmp(w->headers[i].name, allowed_headers[idx].name) == 0) {
                                idx = -EEXIST;
                                break;
                        }
                if (idx == -EEXIST) {
                        r = config_error(c, k, path, "duplicate header");
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                        continue;
                }

                r = config_node_scalar(c, path, v, "a header value", &value);
                if (r == 0 && (!*value || !header_value_is_valid(value)))
                        r = config_error(c, v, path, "must be a non-empty line of printable characters");
                if (r == 0 && allowed_headers[idx].values[0]) {
                        bool ok = false;
                        for (size_t i = 0; i < ELEMENTSOF(allowed_headers[idx].values) && allowed_headers[idx].values[i]; i++)
                                ok = ok || strcasecmp(value, allowed_headers[idx].values[i]) == 0;
                        if (!ok)
                                r = config_error(c, v, path, "'%s' is not an allowed value: use %s%s%s",
                                                 config_quote(buf, value), allowed_headers[idx].values[0],
                                                 allowed_headers[idx].values[1] ? " or " : "",
                                                 allowed_headers[idx].values[1] ?: "");
                }
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ret = r;
                        continue;
                }

                WebHeader *h = &w->headers[w->n_headers];
                h->name = strdup(allowed_headers[idx].name);
                h->value = strdup(value);
                if (!h->name || !h->value) {
                        free(h->name);
                        free(h->value);
                        return -ENOMEM;
                }
                w->n_headers++;
        }
        return ret;
}

static const ConfigItem http_items[] = {
        { "headers", parse_headers,     0                            },
        { "http2",   config_parse_bool, offsetof(WebConfig, http2)   },
        {}
};

static int parse_http(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        return config_parse_table(c, key, node, http_items, data);
}

/* bcrypt as crypt(3) writes it: $2a$, $2b$ or $2y$, a two-digit cost, '$',
 * 22 characters of salt and 31 of hash. Never quotes the hash itself. */
static int check_bcrypt(ConfigContext *c, const char *key, yaml_node_t *node, const char *h) {
        static const char alphabet[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        unsigned cost;

        if (h[0] != '$' || h[1] != '2' || !h[2] || !strchr("aby", h[2]) || h[3] != '$')
                return config_error(c, node, key, "is not a bcrypt hash: it must start with $2a$, $2b$ or $2y$ "
                                    "(e.g. from htpasswd -nBC 10 USER)");
        if (h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$')
                return config_error(c, node, key, "is not a bcrypt hash: expected two cost digits and '$' after %.4s", h);
        cost = (unsigned) (h[4] - '0') * 10 + (unsigned) (h[5] - '0');
        if (cost < 4 || cost > 31)
                return config_error(c, node, key, "bcrypt cost %u is out of range 4..31", cost);
        if (cost > WEB_CONFIG_MAX_BCRYPT_COST)
                return config_error(c, node, key, "bcrypt cost %u is above %u: every check would take seconds of CPU",
                                    cost, WEB_CONFIG_MAX_BCRYPT_COST);
        if (strlen(h) != 60 || strspn(h + 7, alphabet) != 53)
                return config_error(c, node, key, "is not a bcrypt hash: expected 53 characters of [./A-Za-z0-9] "
                                    "after the cost, 60 in all");
        return 0;
}

static int parse_users(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        WebConfig *w = data;
        int ret = 0, r;

        if (node->type != YAML_MAPPING_NODE)
                return config_error(c, node, key, "expected a mapping of user names to bcrypt hashes");

        size_t n = (size_t) (node->data.mapping.pairs.top - node->data.mapping.pairs.start);
        if (n > WEB_CONFIG_MAX_USERS)
                return config_error(c, node, key, "has %zu users, more than the limit of %u", n, WEB_CONFIG_MAX_USERS);
        w->users = calloc(n + 1, sizeof(WebUser));
        if (!w->users)
                return -ENOMEM;

        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
                yaml_node_t *k = config_node(c, p->key), *v = config_node(c, p->value);
                _cleanup_free_ char *path = NULL;
                char buf[CONFIG_QUOTE_MAX];
                const char *name, *hash;

                if (!k || !v)
                        continue;
                r = config_node_scalar(c, key, k, "a user name", &name);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ret = r;
                        continue;
                }
                if (asprintf(&path, "%s.%s", key, config_quote(buf, name)) < 0)
                        return -ENOMEM;

                if (strchr(name, ':'))
                        r = config_error(c, k, path, "a user name cannot contain ':' in basic auth");
                else if (web_config_find_user(w, name))
                        r = config_error(c, k, path, "duplicate user");
                else {
                        r = config_node_scalar(c, path, v, "a bcrypt hash", &hash);
                        if (r == 0)
                                r = check_bcrypt(c, path, v, hash);
                }
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ret = r;
                        continue;
                }

                WebUser *u = &w->users[w->n_users];
                u->name = strdup(name);
                u->hash = strdup(hash);
                if (!u->name || !u->hash) {
                        free(u->name);
                        free(u->hash);
                        return -ENOMEM;
                }
                w->n_users++;
        }
        return ret;
}

static const ConfigItem web_items[] = {
        { "tls_server_config",  parse_tls   },
        { "http_server_config", parse_http  },
        { "basic_auth_users",   parse_users },
        {}
};

static yaml_node_t *find_key(ConfigContext *c, yaml_node_t *mapping, const char *key) {
        for (yaml_node_pair_t *p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
                yaml_node_t *k = config_node(c, p->key);
                if (k && k->type == YAML_SCALAR_NODE && streq((const char *) k->data.scalar.value, key))
                        return config_node(c, p->value);
        }
        return NULL;
}

/* Relative paths are relative to the web config file, as in every exporter. */
static int resolve_path(const char *config_path, char **p) {
        _cleanup_free_ char *copy = NULL;
        char *s;

        if (!*p || (*p)[0] == '/')
                return 0;
        copy = strdup(config_path);
        if (!copy)
                return -ENOMEM;
        if (asprintf(&s, "%s/%s", dirname(copy), *p) < 0)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

/* Reads a whole PEM file; *ret_why says what went wrong, in words. */
/* secret: the file holds a private key, which only the agent should read. */
static int read_pem(const char *path, bool secret, char **ret, const char **ret_why) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *b = NULL;
        size_t n = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0) {
                *ret_why = strerror(errno);
                return -errno;
        }
        if (!S_ISREG(st.st_mode)) {
                *ret_why = "not a regular file";
                return -EINVAL;
        }
        b = malloc(WEB_CONFIG_MAX_PEM + 1);
        if (!b)
                return -ENOMEM;
        while (n < WEB_CONFIG_MAX_PEM + 1) {
                ssize_t k = read(fd, b + n, WEB_CONFIG_MAX_PEM + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = -errno;
                        *ret_why = strerror(errno);
                        explicit_bzero(b, n);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n > WEB_CONFIG_MAX_PEM) {
                explicit_bzero(b, n);
                *ret_why = "larger than 1 MiB";
                return -E2BIG;
        }
        b[n] = 0;
        if (strlen(b) != n) {
                explicit_bzero(b, n);
                *ret_why = "not a PEM file (it contains NUL bytes)";
                return -EINVAL;
        }
        if (secret)
                secret_file_warn_mode(path, st.st_mode);
        *ret = TAKE_PTR(b);
        return 0;
}

static int count_certificates(const char *pem, unsigned *ret_n) {
        gnutls_datum_t d = { (unsigned char *) pem, (unsigned) strlen(pem) };
        gnutls_x509_crt_t *list = NULL;
        unsigned n = 0;
        int r;

        r = gnutls_x509_crt_list_import2(&list, &n, &d, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(list[i]);
        gnutls_free(list);
        *ret_n = n;
        return 0;
}

static int certificate_error(ConfigContext *c, const char *key, const char *path, int gnutls_error) {
        if (gnutls_error >= 0 || gnutls_error == GNUTLS_E_NO_CERTIFICATE_FOUND)
                return config_error(c, NULL, key, "%s holds no PEM certificate", path);
        return config_error(c, NULL, key, "%s holds a certificate that cannot be parsed: %s", path,
                            gnutls_strerror(gnutls_error));
}

static int check_key_pair(const char *cert, const char *key) {
        gnutls_certificate_credentials_t cred;
        gnutls_datum_t c = { (unsigned char *) cert, (unsigned) strlen(cert) };
        gnutls_datum_t k = { (unsigned char *) key, (unsigned) strlen(key) };
        int r;

        r = gnutls_certificate_allocate_credentials(&cred);
        if (r < 0)
                return r;
        r = gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
        gnutls_certificate_free_credentials(cred);
        return r;
}

static int check_private_key(const char *key) {
        gnutls_x509_privkey_t pk;
        gnutls_datum_t k = { (unsigned char *) key, (unsigned) strlen(key) };
        int r;

        r = gnutls_x509_privkey_init(&pk);
        if (r < 0)
                return r;
        r = gnutls_x509_privkey_import2(pk, &k, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
        gnutls_x509_privkey_deinit(pk);
        return r;
}

/* Reads the TLS files and checks them; errors point at the keys naming them.
 * Inside a probe the config machinery reports errors of a key at its value:
 * the TLS mapping is handed over in the same way. */
static int read_tls_files(ConfigContext *c, yaml_node_t *tls, WebConfig *w) {
        const char *why = NULL;
        unsigned n;
        int ret = 0, r;

        c->probe_mapping = tls;
        c->probe_prefix = "tls_server_config";

        r = read_pem(w->cert_file, false, &w->cert_pem, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                ret = config_error(c, NULL, "cert_file", "cannot read %s: %s", w->cert_file, why);
        else {
                r = count_certificates(w->cert_pem, &n);
                if (r < 0 || n == 0)
                        ret = certificate_error(c, "cert_file", w->cert_file, r);
        }

        r = read_pem(w->key_file, true, &w->key_pem, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                ret = config_error(c, NULL, "key_file", "cannot read %s: %s", w->key_file, why);
        else if (check_private_key(w->key_pem) < 0)
                ret = config_error(c, NULL, "key_file", "%s holds no unencrypted PEM private key", w->key_file);
        else if (ret == 0) {
                r = check_key_pair(w->cert_pem, w->key_pem);
                if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
                        ret = config_error(c, NULL, "key_file", "%s is not the key of the certificate in %s",
                                           w->key_file, w->cert_file);
                else if (r < 0)
                        ret = config_error(c, NULL, "key_file", "%s and %s cannot be used together: %s",
                                           w->key_file, w->cert_file, gnutls_strerror(r));
        }

        if (w->client_ca_file) {
                r = read_pem(w->client_ca_file, false, &w->client_ca_pem, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = config_error(c, NULL, "client_ca_file", "cannot read %s: %s", w->client_ca_file, why);
                else {
                        r = count_certificates(w->client_ca_pem, &n);
                        if (r < 0 || n == 0)
                                ret = certificate_error(c, "client_ca_file", w->client_ca_file, r);
                }
        }

        c->probe_mapping = NULL;
        c->probe_prefix = NULL;
        return ret;
}

static int check_tls(ConfigContext *c, yaml_node_t *root, LoadState *s) {
        WebConfig *w = s->config;
        yaml_node_t *tls = find_key(c, root, "tls_server_config");
        int ret = 0, r;

        if (!w->tls || !tls || tls->type != YAML_MAPPING_NODE)
                return 0;

        c->probe_mapping = tls;
        c->probe_prefix = "tls_server_config";
        if (!w->cert_file)
                ret = config_error(c, NULL, "cert_file", "required key is missing%s",
                                   w->key_file ? ": key_file needs its certificate" : "");
        if (!w->key_file)
                ret = config_error(c, NULL, "key_file", "required key is missing%s",
                                   w->cert_file ? ": cert_file needs its private key" : "");
        if (!w->client_ca_file && w->client_auth != WEB_CLIENT_AUTH_NONE)
                ret = config_error(c, NULL, "client_ca_file", "required when client_auth_type is %s",
                                   client_auth_names[w->client_auth]);
        c->probe_mapping = NULL;
        c->probe_prefix = NULL;
        if (ret == -ENOMEM || c->n_errors > 0)
                return ret;

        r = resolve_path(w->path, &w->cert_file);
        if (r >= 0)
                r = resolve_path(w->path, &w->key_file);
        if (r >= 0)
                r = resolve_path(w->path, &w->client_ca_file);
        if (r < 0)
                return r;

        return s->read_files ? read_tls_files(c, tls, w) : 0;
}

static int web_parse_root(ConfigContext *c, yaml_node_t *root, void *userdata) {
        LoadState *s = userdata;
        int r;

        if (!root)
                return 0; /* an empty file: plain HTTP, no users, as in every exporter */

        r = config_parse_table(c, NULL, root, web_items, s->config);
        if (r == -ENOMEM)
                return r;
        int k = check_tls(c, root, s);
        return k < 0 ? k : r;
}

static int web_config_load(const char *filename, const char *data, size_t size, bool read_files, WebConfig **ret,
                           char ***ret_errors) {
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        int r;

        assert_return(filename, -EINVAL);
        assert_return(ret, -EINVAL);

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->path = strdup(filename);
        if (!w->path)
                return -ENOMEM;

        r = config_parse_yaml(filename, data, size, web_parse_root, &(LoadState) { .config = w, .read_files = read_files },
                              ret_errors);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(w);
        return 0;
}

int web_config_load_string(const char *filename, const char *data, size_t size, WebConfig **ret,
                           char ***ret_errors) {
        return web_config_load(filename, data, size, false, ret, ret_errors);
}

int web_config_load_file(const char *path, WebConfig **ret, char ***ret_errors) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        assert_return(path, -EINVAL);

        r = config_read_file(path, &data, &size, ret_errors);
        if (r < 0)
                return r;
        return web_config_load(path, data, size, true, ret, ret_errors);
}

static bool streq_null(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

bool web_config_tls_equal(const WebConfig *a, const WebConfig *b) {
        bool tls_a = a && a->tls, tls_b = b && b->tls;

        if (!tls_a || !tls_b)
                return tls_a == tls_b;
        return a->client_auth == b->client_auth && a->min_version == b->min_version &&
               streq_null(a->cert_pem, b->cert_pem) && streq_null(a->key_pem, b->key_pem) &&
               streq_null(a->client_ca_pem, b->client_ca_pem);
}

const char *web_config_find_user(const WebConfig *w, const char *name) {
        for (size_t i = 0; w && i < w->n_users; i++)
                if (streq(w->users[i].name, name))
                        return w->users[i].hash;
        return NULL;
}
