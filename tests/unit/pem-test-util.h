/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* PEM files for the web config tests, made at test time: a CA, a server
 * certificate and a client certificate it issued, a client certificate it did
 * not issue, and the keys. Written into a fresh directory under /tmp. */

#include <openssl/pem.h>
#include <stdio.h>
#include <unistd.h>

#include "tls-test-util.h"

typedef struct TestPki {
        char dir[64];
        char ca[128], server_cert[128], server_key[128], other_key[128];
        char client_cert[128], client_key[128], stranger_cert[128], stranger_key[128];
} TestPki;

static inline void test_write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fputs(content, f) >= 0);
        ASSERT_OK(fclose(f));
}

static inline void test_write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        if (cert)
                ASSERT_TRUE(PEM_write_X509(f, cert) == 1);
        if (key)
                ASSERT_TRUE(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
        ASSERT_OK(fclose(f));
}

static inline void test_pki_make(TestPki *p) {
        EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *server_key = EVP_EC_gen("P-256"), *other_key = EVP_EC_gen("P-256");
        EVP_PKEY *client_key = EVP_EC_gen("P-256"), *stranger_key = EVP_EC_gen("P-256");
        X509 *ca, *server, *client, *stranger;

        ASSERT_TRUE(ca_key && server_key && other_key && client_key && stranger_key);
        snprintf(p->dir, sizeof p->dir, "/tmp/test-web-XXXXXX");
        ASSERT_TRUE(mkdtemp(p->dir));
#define PKI_PATH(field, name) snprintf(p->field, sizeof p->field, "%s/" name, p->dir)
        PKI_PATH(ca, "ca.pem");
        PKI_PATH(server_cert, "server.pem");
        PKI_PATH(server_key, "server.key");
        PKI_PATH(other_key, "other.key");
        PKI_PATH(client_cert, "client.pem");
        PKI_PATH(client_key, "client.key");
        PKI_PATH(stranger_cert, "stranger.pem");
        PKI_PATH(stranger_key, "stranger.key");
#undef PKI_PATH

        ca = test_cert_new(ca_key, "Test CA", 86400L * 30, NULL, NULL, true);
        server = test_cert_new(server_key, "localhost", 86400L * 30, X509_get_subject_name(ca), ca_key, false);
        client = test_cert_new(client_key, "prometheus", 86400L * 30, X509_get_subject_name(ca), ca_key, false);
        stranger = test_cert_new(stranger_key, "stranger", 86400L * 30, NULL, NULL, false);

        test_write_pem(p->ca, ca, NULL);
        test_write_pem(p->server_cert, server, NULL);
        test_write_pem(p->server_key, NULL, server_key);
        test_write_pem(p->other_key, NULL, other_key);
        test_write_pem(p->client_cert, client, NULL);
        test_write_pem(p->client_key, NULL, client_key);
        test_write_pem(p->stranger_cert, stranger, NULL);
        test_write_pem(p->stranger_key, NULL, stranger_key);

        X509_free(ca);
        X509_free(server);
        X509_free(client);
        X509_free(stranger);
        EVP_PKEY_free(ca_key);
        EVP_PKEY_free(server_key);
        EVP_PKEY_free(other_key);
        EVP_PKEY_free(client_key);
        EVP_PKEY_free(stranger_key);
}

/* A path in the directory, for files the test writes itself. */
static inline const char *test_pki_path(const TestPki *p, const char *name, char buf[static 128]) {
        snprintf(buf, 128, "%s/%s", p->dir, name);
        return buf;
}

/* Removes the files made here and those of `extra` the test wrote, then the directory. */
static inline void test_pki_remove(TestPki *p, const char *const *extra) {
        const char *files[] = { p->ca, p->server_cert, p->server_key, p->other_key,
                                p->client_cert, p->client_key, p->stranger_cert, p->stranger_key };
        char buf[128];

        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                ASSERT_OK(unlink(files[i]) < 0 ? -errno : 0);
        for (; extra && *extra; extra++)
                (void) unlink(test_pki_path(p, *extra, buf));
        ASSERT_OK(rmdir(p->dir) < 0 ? -errno : 0);
}
