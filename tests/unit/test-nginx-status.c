/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The stub_status parser on what nginx really prints (with its trailing
 * blanks), on variants seen in the wild, and on bodies that are not
 * stub_status at all: each refusal names the line and what was expected. */

#include "lib/macro.h"
#include "probes/nginx-status-parse.h"
#include "tests.h"

typedef struct Case {
        const char *name;
        const char *body;
        int r;
        NginxStatus want;
        const char *error;
} Case;

static const Case cases[] = {
        {
                .name = "nginx 1.22 as served",
                .body = "Active connections: 291 \n"
                        "server accepts handled requests\n"
                        " 16630948 16630948 31070465 \n"
                        "Reading: 6 Writing: 179 Waiting: 106 \n",
                .want = { 291, 16630948, 16630948, 31070465, 6, 179, 106 },
        },
        {
                .name = "idle box",
                .body = "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \nReading: 0 Writing: 1 Waiting: 0 \n",
                .want = { 1, 1, 1, 1, 0, 1, 0 },
        },
        {
                .name = "CRLF line ends",
                .body = "Active connections: 2\r\nserver accepts handled requests\r\n 10 9 40\r\nReading: 0 Writing: 1 Waiting: 1\r\n",
                .want = { 2, 10, 9, 40, 0, 1, 1 },
        },
        {
                .name = "dropped connections",
                .body = "Active connections: 1024 \nserver accepts handled requests\n 500000 499000 900000 \nReading: 0 Writing: 24 Waiting: 1000 \n",
                .want = { 1024, 500000, 499000, 900000, 0, 24, 1000 },
        },
        {
                .name = "no final newline",
                .body = "Active connections: 3\nserver accepts handled requests\n 5 5 7\nReading: 0 Writing: 1 Waiting: 2",
                .want = { 3, 5, 5, 7, 0, 1, 2 },
        },
        {
                .name = "extra column (request_time builds)",
                .body = "Active connections: 3\nserver accepts handled requests request_time\n 5 5 7 1234\nReading: 0 Writing: 1 Waiting: 2\n",
                .want = { 3, 5, 5, 7, 0, 1, 2 },
        },
        {
                .name = "counters near 2^64",
                .body = "Active connections: 1\nserver accepts handled requests\n 18446744073709551615 18446744073709551615 18446744073709551615\nReading: 0 Writing: 1 Waiting: 0\n",
                .want = { 1, UINT64_MAX, UINT64_MAX, UINT64_MAX, 0, 1, 0 },
        },
        { .name = "empty", .body = "", .r = -EBADMSG, .error = "the body is empty" },
        {
                .name = "an HTML error page",
                .body = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n",
                .r = -EBADMSG,
                .error = "line 1: expected 'Active connections: N'",
        },
        {
                .name = "cut after line 2",
                .body = "Active connections: 1 \nserver accepts handled requests\n",
                .r = -EBADMSG,
                .error = "line 3: missing",
        },
        {
                .name = "two numbers on line 3",
                .body = "Active connections: 1\nserver accepts handled requests\n 1 1\nReading: 0 Writing: 1 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "line 3: expected three numbers",
        },
        {
                .name = "negative number",
                .body = "Active connections: -1\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "line 1:",
        },
        {
                .name = "overflow",
                .body = "Active connections: 1\nserver accepts handled requests\n 18446744073709551616 1 1\nReading: 0 Writing: 1 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "line 3:",
        },
        {
                .name = "handled above accepts",
                .body = "Active connections: 1\nserver accepts handled requests\n 1 2 3\nReading: 0 Writing: 1 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "handled is larger than accepts",
        },
        {
                .name = "Writing missing",
                .body = "Active connections: 1\nserver accepts handled requests\n 1 1 1\nReading: 0 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "line 4: expected 'Reading: N Writing: N Waiting: N'",
        },
        {
                .name = "trailing garbage",
                .body = "Active connections: 1\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 0\nmore\n",
                .r = -EBADMSG,
                .error = "unexpected text after line 4",
        },
        {
                .name = "text after a number",
                .body = "Active connections: 1x\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 0\n",
                .r = -EBADMSG,
                .error = "line 1:",
        },
};

TEST(nginx_status_parse_table) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                NginxStatus s = {};
                const char *error = NULL;

                fprintf(stderr, "case: %s\n", c->name);
                int r = nginx_status_parse(c->body, strlen(c->body), &s, &error);
                ASSERT_EQ(r, c->r);
                if (r < 0) {
                        ASSERT_CONTAINS(error, c->error);
                        continue;
                }
                ASSERT_EQ(s.active, c->want.active);
                ASSERT_TRUE(s.accepts == c->want.accepts);
                ASSERT_TRUE(s.handled == c->want.handled);
                ASSERT_TRUE(s.requests == c->want.requests);
                ASSERT_EQ(s.reading, c->want.reading);
                ASSERT_EQ(s.writing, c->want.writing);
                ASSERT_EQ(s.waiting, c->want.waiting);
        }
}

TEST(nginx_status_not_nul_terminated) {
        /* The body comes from the network with a length, not a NUL. */
        static const char body[] = "Active connections: 7\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 6\nXX";
        NginxStatus s;
        ASSERT_OK(nginx_status_parse(body, sizeof body - 3, &s, NULL));
        ASSERT_EQ(s.active, 7);
        ASSERT_EQ(s.waiting, 6);
        /* An embedded NUL makes the line match nothing. */
        static const char nul[] = "Active connections: 7\0\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 6\n";
        ASSERT_ERROR(nginx_status_parse(nul, sizeof nul - 1, &s, NULL), EBADMSG);
}

DEFINE_TEST_MAIN()
