/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <arpa/inet.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tls-inspect.h"

const MetricFamily tls_family_certificate_expiry = {
        .name = "rupost_tls_certificate_expiry_timestamp_seconds",
        .type = METRIC_GAUGE,
        .help = "When the certificate the peer presented (the leaf) expires.",
};
const MetricFamily tls_family_dh_bits = {
        .name = "rupost_tls_dh_bits",
        .type = METRIC_GAUGE,
        .help = "Size of the finite-field Diffie-Hellman parameters the peer used for the key exchange "
                "(only reported for DHE).",
};
const MetricFamily tls_family_self_signed = {
        .name = "rupost_tls_self_signed",
        .type = METRIC_GAUGE,
        .help = "Whether the peer's certificate is self-signed (1) or issued by another key (0).",
};

#define container_of_tls(ptr, member) ((TlsExpect *) ((char *) (ptr) - offsetof(TlsExpect, member)))

int tls_expect_parse_warning_days(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                  void *data) {
        int r = config_parse_uint(c, key, node, item, data);
        if (r >= 0)
                container_of_tls(data, cert_warning_days)->set |= TLS_EXPECT_SET_WARNING_DAYS;
        return r;
}

int tls_expect_parse_critical_days(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                   void *data) {
        int r = config_parse_uint(c, key, node, item, data);
        if (r >= 0)
                container_of_tls(data, cert_critical_days)->set |= TLS_EXPECT_SET_CRITICAL_DAYS;
        return r;
}

int tls_expect_parse_dh_min_bits(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                 void *data) {
        int r = config_parse_uint(c, key, node, item, data);
        if (r >= 0)
                container_of_tls(data, dh_min_bits)->set |= TLS_EXPECT_SET_DH_MIN_BITS;
        return r;
}

int tls_expect_verify(TlsExpect *e, ConfigContext *c) {
        if (!(e->set & TLS_EXPECT_SET_WARNING_DAYS))
                e->cert_warning_days = TLS_DEFAULT_CERT_WARNING_DAYS;
        if (!(e->set & TLS_EXPECT_SET_CRITICAL_DAYS))
                e->cert_critical_days = TLS_DEFAULT_CERT_CRITICAL_DAYS;
        if (!(e->set & TLS_EXPECT_SET_DH_MIN_BITS))
                e->dh_min_bits = TLS_DEFAULT_DH_MIN_BITS;
        if (e->cert_critical_days > e->cert_warning_days)
                return config_error(c, NULL, "cert_critical_days",
                                    "%u is more than cert_warning_days (%u): the warning would never come first",
                                    e->cert_critical_days, e->cert_warning_days);
        return 0;
}

static void leaf_subject(X509 *cert, char *buf, size_t size) {
        X509_NAME *name = X509_get_subject_name(cert);
        int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);

        buf[0] = 0;
        if (i >= 0) {
                ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
                unsigned char *utf8 = NULL;
                int n = ASN1_STRING_to_UTF8(&utf8, s);
                if (n > 0) {
                        /* For a reason line: printable ASCII only. */
                        size_t j = 0;
                        for (int k = 0; k < n && j + 1 < size; k++)
                                buf[j++] = utf8[k] < 0x20 || utf8[k] >= 0x7f ? '?' : (char) utf8[k];
                        buf[j] = 0;
                }
                OPENSSL_free(utf8);
        }
        if (!buf[0])
                X509_NAME_oneline(name, buf, (int) size);
}

static bool is_self_signed(X509 *cert) {
        EVP_PKEY *key = X509_get0_pubkey(cert);

        /* Issuer equals subject (and the key identifiers agree), and the
         * signature verifies with the certificate's own key: a certificate
         * that merely repeats its CA's name is not self-signed. */
        if (X509_check_issued(cert, cert) != X509_V_OK || !key)
                return false;
        bool r = X509_verify(cert, key) == 1;
        ERR_clear_error();
        return r;
}

static bool name_is_ip(const char *s) {
        unsigned char b[16];
        return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void key_exchange(SSL *ssl, TlsInfo *info) {
        EVP_PKEY *key = NULL;

        if (SSL_get_peer_tmp_key(ssl, &key) != 1 || !key)
                return;

        int id = EVP_PKEY_get_base_id(key);
        char group[64] = "";
        size_t len = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1)
                group[0] = 0;

        if (id == EVP_PKEY_DH || id == EVP_PKEY_DHX) {
                int bits = EVP_PKEY_get_bits(key);
                info->dh_bits = bits > 0 ? (unsigned) bits : 0;
                snprintf(info->group, sizeof info->group, "%s", group[0] ? group : "DH");
        } else if (group[0])
                snprintf(info->group, sizeof info->group, "%s", group);
        else
                snprintf(info->group, sizeof info->group, "%s", OBJ_nid2sn(id));
        EVP_PKEY_free(key);
        ERR_clear_error();
}

int tls_inspect(SSL *ssl, const char *server_name, TlsInfo *ret) {
        TlsInfo info = {};
        struct tm tm;

        assert_return(ssl && ret, -EINVAL);

        snprintf(info.protocol, sizeof info.protocol, "%s", SSL_get_version(ssl));
        snprintf(info.cipher, sizeof info.cipher, "%s", SSL_get_cipher_name(ssl) ?: "");
        key_exchange(ssl, &info);

        /* The leaf only: SSL_get1_peer_certificate() is the peer's own certificate. */
        X509 *cert = SSL_get1_peer_certificate(ssl);
        if (cert) {
                info.have_certificate = true;
                if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
                        info.not_after = (int64_t) timegm(&tm);
                leaf_subject(cert, info.subject, sizeof info.subject);
                info.self_signed = is_self_signed(cert);
                if (server_name && server_name[0]) {
                        info.hostname_checked = true;
                        snprintf(info.server_name, sizeof info.server_name, "%s", server_name);
                        if (name_is_ip(server_name))
                                info.hostname_matches = X509_check_ip_asc(cert, server_name, 0) == 1;
                        else
                                info.hostname_matches = X509_check_host(cert, server_name, 0, 0, NULL) == 1;
                }
                X509_free(cert);
        }
        ERR_clear_error();
        *ret = info;
        return 0;
}

/* Appends one problem and raises the status. */
static void problem(ProbeStatus *status, ProbeStatus s, char *reason, size_t size, const char *fmt, ...)
        _printf_(5, 6);
static void problem(ProbeStatus *status, ProbeStatus s, char *reason, size_t size, const char *fmt, ...) {
        size_t l = strlen(reason);
        va_list ap;

        *status = probe_status_worst(*status, s);
        if (l > 0 && l + 2 < size) {
                memcpy(reason + l, "; ", 3);
                l += 2;
        }
        if (l + 1 >= size)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(reason + l, size - l, fmt, ap);
        va_end(ap);
}

ProbeStatus tls_judge(const TlsInfo *info, const TlsExpect *e, int64_t now_sec, char *reason, size_t size) {
        ProbeStatus status = PROBE_OK;

        assert_return(info && e && reason && size > 0, PROBE_UNKNOWN);
        reason[0] = 0;

        if (!info->have_certificate) {
                problem(&status, PROBE_CRITICAL, reason, size, "the peer presented no certificate");
                return status;
        }

        char date[32] = "?";
        time_t t = (time_t) info->not_after;
        struct tm tm;
        if (gmtime_r(&t, &tm))
                strftime(date, sizeof date, "%Y-%m-%d", &tm);

        int64_t left = info->not_after - now_sec;
        int64_t days = left / 86400;
        if (left <= 0)
                problem(&status, PROBE_CRITICAL, reason, size,
                        "certificate for %s expired on %s: deploy a new one with 'rupost cert add'", info->subject,
                        date);
        else if (days < (int64_t) e->cert_critical_days || days < (int64_t) e->cert_warning_days) {
                char in[32];
                if (days == 0)
                        snprintf(in, sizeof in, "within a day");
                else
                        snprintf(in, sizeof in, "in %" PRId64 " day%s", days, days == 1 ? "" : "s");
                problem(&status, days < (int64_t) e->cert_critical_days ? PROBE_CRITICAL : PROBE_WARNING, reason,
                        size, "certificate for %s expires %s (%s)", info->subject, in, date);
        }

        if (info->self_signed && !e->allow_self_signed)
                problem(&status, PROBE_WARNING, reason, size,
                        "self-signed certificate: replace the built-in certificate for production");

        /* A wrong name breaks clients that verify, but mail between servers
         * still flows: a warning for the operator, not a failing node. */
        if (info->hostname_checked && !info->hostname_matches)
                problem(&status, PROBE_WARNING, reason, size, "certificate for %s does not name %s: clients that verify will refuse it",
                        info->subject, info->server_name);

        if (info->dh_bits > 0 && info->dh_bits < e->dh_min_bits)
                problem(&status, PROBE_WARNING, reason, size,
                        "%u-bit DH parameters (%s) are below the minimum of %u: generate %u-bit ones with "
                        "'openssl dhparam -out rupost-builtin-dhparam.pem %u'",
                        info->dh_bits, info->cipher, e->dh_min_bits, TLS_RECOMMENDED_DH_BITS,
                        TLS_RECOMMENDED_DH_BITS);
        return status;
}

void tls_add_samples(Probe *p, const TlsInfo *info) {
        if (info->have_certificate) {
                (void) probe_add_sample(p, &tls_family_certificate_expiry, (double) info->not_after, NULL);
                (void) probe_add_sample(p, &tls_family_self_signed, info->self_signed ? 1 : 0, NULL);
        }
        if (info->dh_bits > 0)
                (void) probe_add_sample(p, &tls_family_dh_bits, info->dh_bits, NULL);
}
