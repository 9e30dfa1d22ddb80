/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <string.h>

#include "exporter/negotiate.h"
#include "tests.h"

#define TEXT EXPOSITION_TEXT_0_0_4
#define OM1 EXPOSITION_OPENMETRICS_1_0_0
#define OM0 EXPOSITION_OPENMETRICS_0_0_1

TEST(accept) {
        static const struct {
                const char *accept;
                Exposition expected;
        } cases[] = {
                /* What Prometheus versions send. */
                { "text/plain;version=0.0.4;q=1,*/*;q=0.1", TEXT }, /* 2.0 to 2.4 */
                { "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", OM0 },
                { "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                  OM1 },
                /* 3.x defaults, and with scrape_protocols preferring text */
                { "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                  "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                  "text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                  OM1 },
                { "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1", TEXT },
                /* native histograms on: protobuf first, which we do not serve */
                { "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"
                  "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
                  "text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
                  OM1 },

                /* Clients that did not ask for OpenMetrics. */
                { NULL, TEXT },
                { "", TEXT },
                { "*/*", TEXT },
                { "application/*", TEXT },
                { "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", TEXT },
                { "application/json", TEXT },
                { "text/plain", TEXT },

                /* q=0 refuses. */
                { "application/openmetrics-text;version=1.0.0;q=0", TEXT },
                { "application/openmetrics-text;q=0.0,text/plain;q=0.1", TEXT },
                { "application/openmetrics-text;version=1.0.0;q=0,application/openmetrics-text;version=0.0.1", OM0 },
                /* A more specific range decides: text refused, OpenMetrics left. */
                { "text/plain;version=0.0.4;q=0,*/*,application/openmetrics-text;q=0.1", OM1 },
                /* Equal q: what comes first. */
                { "application/openmetrics-text, text/plain", OM1 },
                { "text/plain, application/openmetrics-text", TEXT },
                /* ...unless the first is a wildcard: a type named beats one matched */
                { "*/*, application/openmetrics-text", OM1 },
                { "text/*, application/openmetrics-text", OM1 },
                { "*/*;q=0.5, application/openmetrics-text;q=0.4", TEXT },

                /* Versions, parameters, case, spacing, quoting. */
                { "application/openmetrics-text", OM1 },
                { "application/openmetrics-text;version=2.0.0", TEXT },
                { "application/openmetrics-text;version=2.0.0,application/openmetrics-text;version=0.0.1;q=0.2", OM0 },
                { "Application/OpenMetrics-Text; Version=1.0.0; Q=0.9", OM1 },
                { "  application/openmetrics-text ; version = \"1.0.0\" ; q = 0.5 ", OM1 },
                { "application/openmetrics-text;charset=utf-8;version=1.0.0", OM1 },
                /* version after q is an accept extension, not the type's */
                { "application/openmetrics-text;q=0.5;version=2.0.0", OM1 },

                /* Garbage: the odd element is skipped, the header is not. */
                { "application/openmetrics-text;q=2", TEXT },
                { "application/openmetrics-text;q=0.5000", TEXT },
                { "application/openmetrics-text;q=", TEXT },
                { "application/openmetrics-text;q=-1", TEXT },
                { "application/openmetrics-text;q=abc,text/plain", TEXT },
                { "application/openmetrics-text garbage", TEXT },
                { "application/openmetrics-text;version=\"1.0.0", TEXT },
                { "application/openmetrics-text;;", TEXT },
                { "application/openmetrics-text/x", TEXT },
                { "/openmetrics-text", TEXT },
                { "openmetrics-text", TEXT },
                { "\x01\xff,,,;;;===\"\\", TEXT },
                { ",,,application/openmetrics-text,,,", OM1 },
                { "x/y;a=\"b,c\",application/openmetrics-text", OM1 },
                { "x/y;a=\"b,application/openmetrics-text\"", TEXT },
                { "bad one;q=1,application/openmetrics-text;q=0.9,text/plain;q=0.8", OM1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Exposition x = negotiate_exposition(cases[i].accept);
                if (x != cases[i].expected)
                        fprintf(stderr, "case %zu: \"%s\" gave %d\n", i, cases[i].accept ?: "(null)", x);
                ASSERT_EQ(x, cases[i].expected);
        }
}

TEST(long_accept) {
        /* Longer than MHD lets in; still one linear pass, still right. */
        size_t n = 64 * 1024;
        _cleanup_free_ char *s = malloc(n + 64);

        ASSERT_TRUE(s);
        for (size_t i = 0; i < n; i += 8)
                memcpy(s + i, "a/b;c=d,", 8);
        strcpy(s + n, "application/openmetrics-text");
        ASSERT_EQ(negotiate_exposition(s), OM1);
        memset(s, ',', n);
        ASSERT_EQ(negotiate_exposition(s), OM1);
        memset(s, ';', n); /* one element, broken from its start */
        ASSERT_EQ(negotiate_exposition(s), TEXT);
        memset(s, '"', n); /* one long unterminated quote swallows the rest */
        ASSERT_EQ(negotiate_exposition(s), TEXT);
}

TEST(content_types) {
        ASSERT_STREQ(exposition_content_type(TEXT), "text/plain; version=0.0.4; charset=utf-8");
        ASSERT_STREQ(exposition_content_type(OM1), "application/openmetrics-text; version=1.0.0; charset=utf-8");
        ASSERT_STREQ(exposition_content_type(OM0), "application/openmetrics-text; version=0.0.1; charset=utf-8");
        ASSERT_FALSE(exposition_is_openmetrics(TEXT));
        ASSERT_TRUE(exposition_is_openmetrics(OM1));
        ASSERT_TRUE(exposition_is_openmetrics(OM0));
}

TEST(accept_encoding) {
        static const struct {
                const char *accept_encoding;
                bool gzip;
        } cases[] = {
                { "gzip", true }, /* Prometheus */
                { "gzip, deflate", true },
                { "deflate, gzip, br, zstd", true }, /* curl --compressed */
                { "gzip, deflate, br", true },
                { "GZIP", true },
                { "x-gzip", true },
                { "*", true },
                { "br;q=1.0, gzip;q=0.8, *;q=0.1", true },
                { "gzip;q=0.001", true },

                { NULL, false },
                { "", false },
                { "identity", false },
                { "deflate, br", false },
                { "gzip;q=0", false },
                { "gzip;q=0.000", false },
                { "*;q=0", false },
                { "gzip;q=0, *", false }, /* the explicit refusal wins over the wildcard */
                { "*, gzip;q=0", false },
                { "gzip;q=0.5, identity", false }, /* identity is preferred */
                { "gzip;q=0.5, identity;q=0.5", true },
                { "gzip;q=abc", false },
                { "gzip;q=1.5", false },
                { "gzipx", false },
                { "gzip/x", false },
                { "\"gzip\"", false },
                { "garbage here, gzip", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool gzip = negotiate_gzip(cases[i].accept_encoding);
                if (gzip != cases[i].gzip)
                        fprintf(stderr, "case %zu: \"%s\" gave %d\n", i, cases[i].accept_encoding ?: "(null)", gzip);
                ASSERT_EQ(gzip, cases[i].gzip);
        }
}

DEFINE_TEST_MAIN();
