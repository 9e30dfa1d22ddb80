/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "lib/time-util.h"
#include "tests.h"

TEST(parse_duration_valid) {
        static const struct {
                const char *text;
                usec_t usec;
        } cases[] = {
                { "250ms", 250 * USEC_PER_MSEC },
                { "5s", 5 * USEC_PER_SEC },
                { "1.5s", 1500 * USEC_PER_MSEC },
                { "1m30s", 90 * USEC_PER_SEC },
                { "2h", 2 * USEC_PER_HOUR },
                { "1d", USEC_PER_DAY },
                { "10us", 10 },
                { "0s", 0 },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                usec_t u = 1;
                ASSERT_OK(parse_duration(cases[i].text, &u));
                ASSERT_EQ(u, cases[i].usec);
        }
}

TEST(parse_duration_invalid) {
        static const char *const bad[] = { "", "5", "s", "5x", "-1s", "1.s5", " 5s", "5s ", "ms", "1e3s" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                usec_t u = 42;
                if (parse_duration(bad[i], &u) >= 0)
                        ASSERT_FAIL("'%s' was accepted", bad[i]);
                ASSERT_EQ(u, 42);
        }
        usec_t u;
        ASSERT_ERROR(parse_duration("99999999999999999999s", &u), ERANGE);
}

TEST(format_duration) {
        char b[DURATION_MAX];
        ASSERT_STREQ(format_duration(b, sizeof b, 5 * USEC_PER_SEC), "5s");
        ASSERT_STREQ(format_duration(b, sizeof b, 250 * USEC_PER_MSEC), "250ms");
        ASSERT_STREQ(format_duration(b, sizeof b, 1500 * USEC_PER_MSEC), "1.5s");
        ASSERT_STREQ(format_duration(b, sizeof b, 7), "7us");
}

DEFINE_TEST_MAIN()
