/* SPDX-License-Identifier: GPL-2.0-or-later */
/* NTP client packets: the request layout, timestamp conversions across the
 * era boundary, the on-wire offset and delay, and every rule a reply must pass
 * before its timestamps are believed. */

#include "lib/macro.h"
#include "probes/ntp-packet.h"
#include "tests.h"

#define T(sec, frac) (((NtpTimestamp) (sec) << 32) | (uint32_t) (frac))

TEST(ntp_request_layout) {
        uint8_t b[NTP_PACKET_SIZE];
        NtpTimestamp t1 = T(0xe1234567u, 0x89abcdefu);

        memset(b, 0xaa, sizeof b);
        ntp_request_build(b, t1);
        ASSERT_EQ(b[0], 0x23); /* LI 0, VN 4, mode 3 */
        for (size_t i = 1; i < 40; i++)
                ASSERT_EQ(b[i], 0);
        static const uint8_t want[8] = { 0xe1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
        ASSERT_TRUE(memcmp(b + 40, want, 8) == 0);
}

TEST(ntp_timestamp_conversions) {
        static const struct {
                usec_t realtime;
                NtpTimestamp ntp;
        } cases[] = {
                { 0, T(NTP_UNIX_EPOCH_OFFSET, 0) },
                { 1500000, T(NTP_UNIX_EPOCH_OFFSET + 1, 0x80000000u) },
                /* 2036-02-07 06:28:16 UTC: era 1 begins, seconds wrap to 0 */
                { (4294967296ULL - NTP_UNIX_EPOCH_OFFSET) * USEC_PER_SEC, T(0, 0) },
                { (4294967296ULL - NTP_UNIX_EPOCH_OFFSET + 10) * USEC_PER_SEC + 250000, T(10, 0x40000000u) },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ASSERT_EQ(ntp_timestamp_from_realtime(cases[i].realtime), cases[i].ntp);
                ASSERT_EQ(ntp_timestamp_to_realtime(cases[i].ntp), cases[i].realtime);
        }
        /* Microseconds survive the round trip. */
        usec_t u = 1764547200123456ULL;
        ASSERT_EQ(ntp_timestamp_to_realtime(ntp_timestamp_from_realtime(u)), u);
}

TEST(ntp_offset_and_delay) {
        static const struct {
                double t1, t2, t3, t4; /* seconds, relative */
                double offset, delay;
        } cases[] = {
                /* server 1.234 s ahead, 2 ms on the wire, no processing time */
                { 100.000, 101.235, 101.235, 100.002, 1.234, 0.002 },
                /* server 0.5 s behind, 10 ms round trip, 4 ms spent in the server */
                { 100.000, 99.503, 99.507, 100.010, -0.5, 0.006 },
                /* perfectly in step */
                { 5.0, 5.001, 5.001, 5.002, 0, 0.002 },
                /* a server that claims more processing time than the round trip took: delay clamped at 0 */
                { 5.0, 5.000, 5.010, 5.005, 0.0025, 0 },
        };
        NtpTimestamp base = T(3900000000u, 0);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                double o, d;
#define TS(x) (base + (NtpTimestamp) ((x) * 4294967296.0 + 0.5))
                ntp_offset_delay(TS(cases[i].t1), TS(cases[i].t2), TS(cases[i].t3), TS(cases[i].t4), &o, &d);
#undef TS
                ASSERT_TRUE(fabs(o - cases[i].offset) < 1e-6);
                ASSERT_TRUE(fabs(d - cases[i].delay) < 1e-6);
        }

        /* Across the era boundary (T1 just before 2036, the others after). */
        double o, d;
        ntp_offset_delay(T(0xffffffffu, 0x80000000u), T(0, 0x80000000u), T(0, 0x80000000u), T(1, 0), &o, &d);
        ASSERT_TRUE(fabs(o - 0.25) < 1e-9);
        ASSERT_TRUE(fabs(d - 1.5) < 1e-9);
}

static void put64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

/* A well-formed server reply to t1, then modified per case. */
static void make_reply(uint8_t b[NTP_PACKET_SIZE], NtpTimestamp t1) {
        memset(b, 0, NTP_PACKET_SIZE);
        b[0] = 0 << 6 | 4 << 3 | 4;
        b[1] = 2;
        b[2] = 6;
        b[3] = 0xe9;
        b[4] = 0, b[5] = 1, b[6] = 0x80, b[7] = 0;  /* root delay 1.5 s */
        b[8] = 0, b[9] = 0, b[10] = 0x40, b[11] = 0; /* root dispersion 0.25 s */
        memcpy(b + 12, "\x0a\x00\x00\x05", 4);
        put64(b + 16, t1 - T(64, 0));
        put64(b + 24, t1);
        put64(b + 32, t1 + T(1, 0));
        put64(b + 40, t1 + T(1, 0x1000));
}

TEST(ntp_reply_verdicts) {
        static const struct {
                const char *name;
                size_t size;
                int byte, value; /* byte to overwrite, -1 for none */
                NtpVerdict verdict;
        } cases[] = {
                { "good",                   48, -1, 0,    NTP_REPLY_OK },
                { "with extension bytes",   68, -1, 0,    NTP_REPLY_OK },
                { "version 3 server",       48, 0,  0x1c, NTP_REPLY_OK },
                { "truncated",              47, -1, 0,    NTP_REPLY_TOO_SHORT },
                { "empty",                  0,  -1, 0,    NTP_REPLY_TOO_SHORT },
                { "version 0",              48, 0,  0x04, NTP_REPLY_BAD_VERSION },
                { "version 7",              48, 0,  0x3c, NTP_REPLY_BAD_VERSION },
                { "client mode echoed",     48, 0,  0x23, NTP_REPLY_BAD_MODE },
                { "symmetric active",       48, 0,  0x21, NTP_REPLY_BAD_MODE },
                { "broadcast",              48, 0,  0x25, NTP_REPLY_BAD_MODE },
                { "origin differs",         48, 31, 0x01, NTP_REPLY_BOGUS_ORIGIN },
                { "kiss-o'-death",          48, 1,  0,    NTP_REPLY_KISS_OF_DEATH },
                { "leap 3 (unsynced)",      48, 0,  0xe4, NTP_REPLY_UNSYNCHRONIZED },
                { "leap 1 is fine",         48, 0,  0x64, NTP_REPLY_OK },
        };
        NtpTimestamp t1 = T(3960000000u, 0x12345678u);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t b[80] = {};
                NtpReply r;

                fprintf(stderr, "case: %s\n", cases[i].name);
                make_reply(b, t1);
                if (cases[i].byte >= 0)
                        b[cases[i].byte] = (uint8_t) cases[i].value;
                ASSERT_EQ(ntp_reply_parse(b, cases[i].size, t1, &r), cases[i].verdict);
                ASSERT_TRUE(ntp_verdict_to_string(cases[i].verdict) != NULL);
        }

        /* Fields of a good reply. */
        uint8_t b[NTP_PACKET_SIZE];
        NtpReply r;
        make_reply(b, t1);
        ASSERT_EQ(ntp_reply_parse(b, sizeof b, t1, &r), NTP_REPLY_OK);
        ASSERT_EQ(r.stratum, 2);
        ASSERT_EQ(r.version, 4);
        ASSERT_TRUE(r.root_delay == 1.5);
        ASSERT_TRUE(r.root_dispersion == 0.25);
        ASSERT_EQ(r.origin, t1);
        ASSERT_EQ(r.receive, t1 + T(1, 0));
        ASSERT_EQ(r.transmit, t1 + T(1, 0x1000));

        /* A kiss-o'-death carries its code in the refid. */
        make_reply(b, t1);
        b[1] = 0;
        memcpy(b + 12, "RATE", 4);
        ASSERT_EQ(ntp_reply_parse(b, sizeof b, t1, &r), NTP_REPLY_KISS_OF_DEATH);
        ASSERT_STREQ(r.refid, "RATE");
        /* ... printable only. */
        memcpy(b + 12, "D\x01\xff", 3);
        ASSERT_EQ(ntp_reply_parse(b, sizeof b, t1, &r), NTP_REPLY_KISS_OF_DEATH);
        ASSERT_STREQ(r.refid, "D??E");

        /* No timestamps. */
        make_reply(b, t1);
        memset(b + 32, 0, 8);
        ASSERT_EQ(ntp_reply_parse(b, sizeof b, t1, &r), NTP_REPLY_NO_TIMESTAMPS);

        /* The origin check comes before the kiss-o'-death: a spoofed KoD from
         * someone who did not see our request is ignored, not obeyed. */
        make_reply(b, t1);
        b[1] = 0;
        ASSERT_EQ(ntp_reply_parse(b, sizeof b, t1 + 1, &r), NTP_REPLY_BOGUS_ORIGIN);

        ASSERT_TRUE(ntp_verdict_to_string(_NTP_VERDICT_MAX) == NULL);
        ASSERT_TRUE(ntp_verdict_to_string(-1) == NULL);
}

DEFINE_TEST_MAIN()
