/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The --web.config.file of the exporter, in the format every Prometheus
 * exporter reads (TLS, client certificates, basic auth users with bcrypt
 * hashes, extra response headers), so that operators reuse the file they
 * already have for node_exporter. Parsed with the configuration's machinery:
 * errors are "file:line:column: key: what is wrong", unknown keys included.
 *
 * Keys of that format we do not implement are refused by name, never
 * silently ignored: a file that asks for a client certificate policy we
 * cannot enforce must not start a server that is more open than asked. */

#include <stdbool.h>
#include <stddef.h>

#include "lib/macro.h"

#define WEB_CONFIG_MAX_USERS 1024U
#define WEB_CONFIG_MAX_PEM (1024U * 1024U)
/* Costs above this make every check take seconds of CPU. */
#define WEB_CONFIG_MAX_BCRYPT_COST 16U

typedef enum WebClientAuth {
        WEB_CLIENT_AUTH_NONE,               /* NoClientCert */
        WEB_CLIENT_AUTH_VERIFY_IF_GIVEN,    /* VerifyClientCertIfGiven */
        WEB_CLIENT_AUTH_REQUIRE_AND_VERIFY, /* RequireAndVerifyClientCert */
        _WEB_CLIENT_AUTH_MAX,
        _WEB_CLIENT_AUTH_INVALID = -EINVAL,
} WebClientAuth;

typedef enum WebTlsVersion {
        WEB_TLS_12,
        WEB_TLS_13,
        _WEB_TLS_MAX,
        _WEB_TLS_INVALID = -EINVAL,
} WebTlsVersion;

typedef struct WebUser {
        char *name;
        char *hash; /* "$2b$10$...", 60 characters */
} WebUser;

typedef struct WebHeader {
        char *name;
        char *value;
} WebHeader;

typedef struct WebConfig {
        char *path;

        bool tls;
        /* Resolved against the directory of the file when relative. */
        char *cert_file;
        char *key_file;
        char *client_ca_file;
        /* The files' contents, read when loading from a file (not by
         * web_config_load_string()); key_pem is wiped when freed. */
        char *cert_pem;
        char *key_pem;
        char *client_ca_pem;
        WebClientAuth client_auth;
        WebTlsVersion min_version;

        WebUser *users;
        size_t n_users;

        WebHeader *headers;
        size_t n_headers;
        bool http2; /* accepted for compatibility; the server speaks HTTP/1.1 */
} WebConfig;

WebConfig *web_config_free(WebConfig *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(WebConfig *, web_config_free);

/* Loads the file and reads the certificate, key and CA files it names,
 * checking that they parse and that the key belongs to the certificate. On
 * failure returns -EINVAL (or the errno of opening the file) and the error
 * lines in ret_errors (caller frees with strv_free). Messages never quote the
 * key file or a password hash. */
int web_config_load_file(const char *path, WebConfig **ret, char ***ret_errors);
/* Parses only, without reading the files it names: for tests and the fuzzer. */
int web_config_load_string(const char *filename, const char *data, size_t size, WebConfig **ret,
                           char ***ret_errors);

/* Whether the two need the same TLS setup of the server (NULL: plain HTTP). */
bool web_config_tls_equal(const WebConfig *a, const WebConfig *b);
/* The user's hash, or NULL. */
const char *web_config_find_user(const WebConfig *w, const char *name);

/* The GnuTLS priority string for the minimum version. */
const char *web_tls_priorities(WebTlsVersion v);
