/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Server-side TLS for scripted test peers: a certificate made on the spot,
 * self-signed or issued by a throwaway CA, valid for as long as a case
 * needs (or expired), with an EC key, or an RSA key and finite-field DHE. */

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests.h"

typedef struct CertSpec {
        const char *cn;          /* also the DNS subjectAltName; "peer.test" when NULL */
        long not_after_seconds;  /* from now; negative: expired; 0: 30 days */
        bool ca_issued;          /* issued by a CA instead of self-signed */
        bool rsa_dhe;            /* RSA key, TLS 1.2 with DHE only (to see DH sizes) */
} CertSpec;

static inline X509 *test_cert_new(EVP_PKEY *key, const char *cn, long not_after, X509_NAME *issuer,
                                  EVP_PKEY *issuer_key, bool ca) {
        X509 *cert = X509_new();
        char san[300];

        ASSERT_TRUE(cert);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), ca ? 1 : 2);
        X509_set_version(cert, 2);
        X509_gmtime_adj(X509_getm_notBefore(cert), not_after < 0 ? not_after - 86400L * 30 : -60);
        X509_gmtime_adj(X509_getm_notAfter(cert), not_after);
        X509_set_pubkey(cert, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC, (const unsigned char *) cn, -1,
                                   -1, 0);
        X509_set_issuer_name(cert, issuer ?: X509_get_subject_name(cert));

        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        snprintf(san, sizeof san, "DNS:%s", cn);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, ca ? NID_basic_constraints : NID_subject_alt_name,
                                                  ca ? "critical,CA:TRUE" : san);
        ASSERT_TRUE(ext);
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);

        ASSERT_TRUE(X509_sign(cert, issuer_key ?: key, EVP_sha256()) > 0);
        return cert;
}

/* Built in the parent before forking the peer, so that key generation does
 * not eat into the probe's deadline. */
static inline SSL_CTX *test_server_tls_context(const CertSpec *spec) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        const char *cn = spec && spec->cn ? spec->cn : "peer.test";
        long not_after = spec && spec->not_after_seconds ? spec->not_after_seconds : 86400L * 30;
        EVP_PKEY *key = spec && spec->rsa_dhe ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
        EVP_PKEY *ca_key = NULL;
        X509 *ca = NULL, *cert;

        ASSERT_TRUE(ctx && key);
        if (spec && spec->ca_issued) {
                ca_key = EVP_EC_gen("P-256");
                ASSERT_TRUE(ca_key);
                ca = test_cert_new(ca_key, "Test CA", 86400L * 3650, NULL, NULL, true);
                cert = test_cert_new(key, cn, not_after, X509_get_subject_name(ca), ca_key, false);
        } else
                cert = test_cert_new(key, cn, not_after, NULL, NULL, false);

        ASSERT_TRUE(SSL_CTX_use_certificate(ctx, cert) == 1);
        ASSERT_TRUE(SSL_CTX_use_PrivateKey(ctx, key) == 1);
        if (spec && spec->rsa_dhe) {
                ASSERT_TRUE(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) == 1);
                ASSERT_TRUE(SSL_CTX_set_cipher_list(ctx, "DHE-RSA-AES128-GCM-SHA256") == 1);
                /* Parameters sized to the key: ffdhe2048 for RSA 2048. */
                ASSERT_TRUE(SSL_CTX_set_dh_auto(ctx, 1) == 1);
        }
        X509_free(cert);
        X509_free(ca);
        EVP_PKEY_free(key);
        EVP_PKEY_free(ca_key);
        return ctx;
}
