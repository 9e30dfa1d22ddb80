/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The memcached reply parser on what servers send: a full pipelined reply,
 * a miss, errors for the set, replies cut at every byte, and what a server
 * that is not memcached (or is broken) sends. Versions compare numerically. */

#include "lib/macro.h"
#include "probes/memcached-stats.h"
#include "tests.h"

#define STATS                                                   \
        "STAT pid 4528\r\n"                                     \
        "STAT uptime 3600\r\n"                                  \
        "STAT time 1764316800\r\n"                              \
        "STAT version 1.6.18\r\n"                               \
        "STAT libevent 2.1.12-stable\r\n"                       \
        "STAT rusage_user 0.123456\r\n"                         \
        "STAT max_connections 1024\r\n"                         \
        "STAT curr_connections 2\r\n"                           \
        "STAT rejected_connections 0\r\n"                       \
        "STAT cmd_set 10\r\n"                                   \
        "STAT get_hits 7\r\n"                                   \
        "STAT get_misses 3\r\n"                                 \
        "STAT accepting_conns 1\r\n"                            \
        "STAT listen_disabled_num 0\r\n"                        \
        "STAT bytes 1048576\r\n"                                \
        "STAT limit_maxbytes 67108864\r\n"                      \
        "STAT evictions 12\r\n"                                 \
        "END\r\n"

static const char full[] = STATS "STORED\r\nVALUE rupost-agent:node1 0 5\r\nhello\r\nEND\r\n";

TEST(memcached_full_reply) {
        MemcachedReply r;

        ASSERT_OK(memcached_reply_parse(full, strlen(full), "rupost-agent:node1", &r));
        ASSERT_STREQ(r.version, "1.6.18");
        ASSERT_EQ(r.stats[MEMCACHED_STAT_UPTIME], 3600);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_TIME], 1764316800);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_MAX_CONNECTIONS], 1024);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_CURR_CONNECTIONS], 2);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_ACCEPTING_CONNS], 1);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_LIMIT_MAXBYTES], 67108864);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_EVICTIONS], 12);
        ASSERT_EQ(r.stats[MEMCACHED_STAT_GET_MISSES], 3);
        for (MemcachedStat s = 0; s < _MEMCACHED_STAT_MAX; s++)
                ASSERT_TRUE(r.have[s]);
        ASSERT_STREQ(r.set_result, "STORED");
        ASSERT_TRUE(r.got_value);
        ASSERT_STREQ(r.value, "hello");
        ASSERT_EQ(r.value_len, 5);

        /* Every prefix is incomplete, never an error or a success. */
        for (size_t n = 0; n < strlen(full); n++)
                ASSERT_ERROR(memcached_reply_parse(full, n, "rupost-agent:node1", &r), EAGAIN);
}

TEST(memcached_reply_table) {
        static const struct {
                const char *name;
                const char *reply;
                int r;
                const char *set_result;
                bool got_value;
                const char *error;
        } cases[] = {
                { "miss", "STAT time 1\r\nEND\r\nSTORED\r\nEND\r\n", 0, "STORED", false },
                { "out of memory", "END\r\nSERVER_ERROR out of memory storing object\r\nEND\r\n", 0,
                  "SERVER_ERROR out of memory storing object", false },
                { "value with cas", "END\r\nSTORED\r\nVALUE k 0 2 99\r\nok\r\nEND\r\n", 0, "STORED", true },
                { "bare LF", "STAT time 1\nEND\nSTORED\nVALUE k 0 2\r\nok\r\nEND\n", 0, "STORED", true },
                { "empty value", "END\r\nSTORED\r\nVALUE k 0 0\r\n\r\nEND\r\n", 0, "STORED", true },
                { "not memcached", "HTTP/1.1 400 Bad Request\r\n\r\n", -EBADMSG, NULL, false,
                  "not STAT or END: 'HTTP/1.1 400 Bad Request'" },
                { "ERROR to stats", "ERROR\r\n", -EBADMSG, NULL, false, "'ERROR'" },
                { "stat without value", "STAT uptime\r\nEND\r\n", -EBADMSG, NULL, false, "without a value" },
                { "stat not a number", "STAT uptime -5\r\nEND\r\n", -EBADMSG, NULL, false, "not a number" },
                { "unknown stat kept quiet", "STAT some_new_thing a b c\r\nEND\r\nSTORED\r\nEND\r\n", 0, "STORED", false },
                { "other key", "END\r\nSTORED\r\nVALUE other 0 2\r\nok\r\nEND\r\n", -EBADMSG, NULL, false,
                  "not VALUE or END" },
                { "huge value", "END\r\nSTORED\r\nVALUE k 0 100000\r\n", -EBADMSG, NULL, false, "longer than" },
                { "no CRLF after data", "END\r\nSTORED\r\nVALUE k 0 2\r\nokXXEND\r\n", -EBADMSG, NULL, false,
                  "not followed by CRLF" },
                { "missing END", "END\r\nSTORED\r\nVALUE k 0 2\r\nok\r\nSTORED\r\n", -EBADMSG, NULL, false,
                  "does not end with END" },
                { "length not a number", "END\r\nSTORED\r\nVALUE k 0 x\r\n", -EBADMSG, NULL, false, "no length" },
                { "control bytes quoted", "\x01\x02\r\n", -EBADMSG, NULL, false, "'?\?'" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MemcachedReply r;
                fprintf(stderr, "case: %s\n", cases[i].name);
                const char *key = strstr(cases[i].reply, "VALUE other") ? "k" : strstr(cases[i].reply, "VALUE k") ? "k" : "k";
                int k = memcached_reply_parse(cases[i].reply, strlen(cases[i].reply), key, &r);
                ASSERT_EQ(k, cases[i].r);
                if (k == 0) {
                        ASSERT_STREQ(r.set_result, cases[i].set_result);
                        ASSERT_EQ(r.got_value, cases[i].got_value);
                } else {
                        fprintf(stderr, "  %s\n", r.error);
                        ASSERT_CONTAINS(r.error, cases[i].error);
                }
        }

        MemcachedReply r;
        char big[MEMCACHED_REPLY_MAX + 2];
        memset(big, 'x', sizeof big);
        ASSERT_ERROR(memcached_reply_parse(big, sizeof big, "k", &r), E2BIG);
}

TEST(memcached_versions) {
        static const struct {
                const char *a, *b;
                int sign;
        } cases[] = {
                { "1.4.33", "1.4.33", 0 },  { "1.4.9", "1.4.33", -1 }, { "1.6.18", "1.4.33", 1 },
                { "1.4", "1.4.33", -1 },    { "1.4.33", "1.4", 1 },    { "1.4.33-rc1", "1.4.33", 0 },
                { "2", "1.99.99", 1 },      { "1.4.32", "1.4.33", -1 }, { "x", "1.4.33", -1 },
                { "1.5.0", "1.4.100", 1 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int c = memcached_version_compare(cases[i].a, cases[i].b);
                fprintf(stderr, "%s vs %s: %d\n", cases[i].a, cases[i].b, c);
                ASSERT_EQ(c < 0 ? -1 : c > 0 ? 1 : 0, cases[i].sign);
        }
        ASSERT_STREQ(memcached_stat_to_string(MEMCACHED_STAT_LIMIT_MAXBYTES), "limit_maxbytes");
        ASSERT_TRUE(memcached_stat_to_string(_MEMCACHED_STAT_MAX) == NULL);
}

DEFINE_TEST_MAIN()
