/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* What a TLS probe checks about the session it just established, beyond
 * "the handshake worked": the leaf certificate's expiry (the leaf only:
 * roots and intermediates in the chain expire on their own schedule and
 * alarming on them is a known false alarm), whether it names the host
 * clients connect to, whether it is the self-signed built-in one, and the
 * key exchange: for finite-field DHE the size of the DH parameters, which
 * the product wants at 4096 bits (the rupost-builtin-dhparam.pem file).
 *
 * Inspection reads the established session and never blocks. Judging is
 * pure, for tests. The probe types that speak TLS embed a TlsExpect in their
 * object and its keys with TLS_EXPECT_CONFIG_ITEMS(). */

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "probe.h"

#define TLS_DEFAULT_CERT_WARNING_DAYS 14U
#define TLS_DEFAULT_CERT_CRITICAL_DAYS 3U
#define TLS_DEFAULT_DH_MIN_BITS 2048U
#define TLS_RECOMMENDED_DH_BITS 4096U

typedef struct TlsExpect {
        unsigned cert_warning_days;
        unsigned cert_critical_days;
        unsigned dh_min_bits;
        bool allow_self_signed;
        unsigned set; /* which keys the configuration gave, TLS_EXPECT_SET_* */
} TlsExpect;

enum {
        TLS_EXPECT_SET_WARNING_DAYS = 1U << 0,
        TLS_EXPECT_SET_CRITICAL_DAYS = 1U << 1,
        TLS_EXPECT_SET_DH_MIN_BITS = 1U << 2,
};

int tls_expect_parse_warning_days(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                  void *data);
int tls_expect_parse_critical_days(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                   void *data);
int tls_expect_parse_dh_min_bits(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                 void *data);

/* The keys, for a probe type's table; `member` is its TlsExpect field. */
#define TLS_EXPECT_CONFIG_ITEMS(type, member)                                                                 \
        { "cert_warning_days", tls_expect_parse_warning_days,                                                \
          offsetof(type, member.cert_warning_days), .max = 3650 },                                           \
        { "cert_critical_days", tls_expect_parse_critical_days,                                              \
          offsetof(type, member.cert_critical_days), .max = 3650 },                                          \
        { "dh_min_bits", tls_expect_parse_dh_min_bits, offsetof(type, member.dh_min_bits), .min = 512,       \
          .max = 16384 },                                                                                    \
        { "allow_self_signed", config_parse_bool, offsetof(type, member.allow_self_signed) }

/* Fills in the defaults of keys not given and checks that they agree; for
 * a probe type's verify(). */
int tls_expect_verify(TlsExpect *e, ConfigContext *c);

typedef struct TlsInfo {
        bool have_certificate;
        int64_t not_after; /* the leaf's notAfter, seconds since the epoch */
        char subject[128]; /* the leaf's common name, or its subject line */
        char server_name[128]; /* the name checked against the leaf, when one was */
        bool hostname_checked;
        bool hostname_matches;
        bool self_signed;
        char protocol[16];
        char cipher[64];
        char group[32];    /* key exchange group: "X25519", "prime256v1", "ffdhe4096", "DH" */
        unsigned dh_bits;  /* finite-field DH parameter size; 0 for ECDHE or none */
} TlsInfo;

/* Reads the established session. server_name, when set, is checked against
 * the leaf (DNS name, or IP address when it is one). */
int tls_inspect(SSL *ssl, const char *server_name, TlsInfo *ret);

/* The verdict on a session: OK, or the worst problem found with every
 * problem listed in `reason` ("; " between them). Pure. */
ProbeStatus tls_judge(const TlsInfo *info, const TlsExpect *e, int64_t now_sec, char *reason, size_t size);

/* rupost_tls_certificate_expiry_timestamp_seconds, rupost_tls_dh_bits,
 * rupost_tls_self_signed. */
void tls_add_samples(Probe *p, const TlsInfo *info);

extern const MetricFamily tls_family_certificate_expiry;
extern const MetricFamily tls_family_dh_bits;
extern const MetricFamily tls_family_self_signed;
