/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The reply parser, table-driven: each input is fed whole, then again one
 * byte at a time and in two pieces at every split point, and must give the
 * same replies or the same error every way. That is what split reads do. */

#include "probes/smtp-reply.h"
#include "tests.h"

typedef struct Case {
        const char *name;
        ReplyMode mode;
        const char *tag;
        const char *input;
        int result;            /* of the first feed that does not return 0: 1, -EBADMSG, -E2BIG; 0: incomplete */
        unsigned code;
        size_t n_lines;
        const char *first;     /* lines[0] */
        const char *last;      /* the last line */
        size_t consumed;       /* bytes used by the reply (when result is 1) */
        const char *error;     /* part of parser.error */
        size_t len;            /* of input, when it holds a NUL byte; 0: strlen */
} Case;

static size_t case_len(const Case *c) {
        return c->len ?: strlen(c->input);
}

static const Case cases[] = {
        { "one line", REPLY_SMTP, NULL, "220 mx.test ESMTP Postfix\r\n", 1, 220, 1, "mx.test ESMTP Postfix",
          "mx.test ESMTP Postfix", 27, NULL },
        { "LF only", REPLY_SMTP, NULL, "220 mx.test\n", 1, 220, 1, "mx.test", "mx.test", 12, NULL },
        { "multi-line greeting (postscreen)", REPLY_SMTP, NULL, "220-mx.test\r\n220-wait\r\n220 mx.test ESMTP\r\n", 1,
          220, 3, "mx.test", "mx.test ESMTP", 42, NULL },
        { "EHLO with STARTTLS last", REPLY_SMTP, NULL,
          "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n", 1, 250, 4, "mx.test",
          "STARTTLS", 62, NULL },
        { "code alone ends the reply", REPLY_SMTP, NULL, "250-a\r\n250\r\n", 1, 250, 2, "a", "", 12, NULL },
        { "next reply stays unconsumed", REPLY_SMTP, NULL, "220 ready\r\n221 bye\r\n", 1, 220, 1, "ready", "ready",
          11, NULL },
        { "incomplete line", REPLY_SMTP, NULL, "250-mx.test\r\n250-PIPE", 0, 0, 0, NULL, NULL, 0, NULL },
        { "continuation with another code", REPLY_SMTP, NULL, "250-mx.test\r\n251 other\r\n", -EBADMSG, 0, 0, NULL,
          NULL, 0, "line with code 251 inside a 250 reply" },
        { "garbage", REPLY_SMTP, NULL, "\x01\x02\xff garbage\r\n", -EBADMSG, 0, 0, NULL, NULL, 0,
          "not an SMTP reply line: '??? garbage'" },
        { "HTTP instead of SMTP", REPLY_SMTP, NULL, "HTTP/1.1 400 Bad Request\r\n", -EBADMSG, 0, 0, NULL, NULL, 0,
          "not an SMTP reply line" },
        { "code out of range", REPLY_SMTP, NULL, "199 x\r\n", -EBADMSG, 0, 0, NULL, NULL, 0, "not an SMTP reply line" },
        { "no separator", REPLY_SMTP, NULL, "220x\r\n", -EBADMSG, 0, 0, NULL, NULL, 0, "not an SMTP reply line" },
        { "NUL byte", REPLY_SMTP, NULL, "220 a\0b\r\n", -EBADMSG, 0, 0, NULL, NULL, 0, "NUL byte", .len = 9 },
        { "IMAP greeting", REPLY_IMAP, NULL, "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n", 1, 0, 1,
          "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.", NULL, 53, NULL },
        { "IMAP tagged", REPLY_IMAP, "a", "* CAPABILITY IMAP4rev1 STARTTLS\r\na OK done\r\n", 1, 0, 2,
          "* CAPABILITY IMAP4rev1 STARTTLS", "a OK done", 44, NULL },
        { "IMAP other tag is garbage", REPLY_IMAP, "a", "b OK done\r\n", -EBADMSG, 0, 0, NULL, NULL, 0,
          "not an IMAP response line: 'b OK done'" },
        { "IMAP tag prefix is not the tag", REPLY_IMAP, "a", "* x\r\nab OK\r\n", -EBADMSG, 0, 0, NULL, NULL, 0,
          "not an IMAP response line" },
        { "ManageSieve greeting", REPLY_SIEVE, NULL,
          "\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto\"\r\n\"STARTTLS\"\r\nOK \"ready.\"\r\n", 1,
          0, 4, "\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"", "OK \"ready.\"", 84, NULL },
        { "ManageSieve NO", REPLY_SIEVE, NULL, "NO \"failed\"\r\n", 1, 0, 1, "NO \"failed\"", "NO \"failed\"", 13,
          NULL },
        { "ManageSieve garbage", REPLY_SIEVE, NULL, "OKAY\r\n", -EBADMSG, 0, 0, NULL, NULL, 0,
          "not a ManageSieve response line: 'OKAY'" },
};

/* Feeds `input` in pieces of `chunk` bytes (0: whole). */
static int feed(const Case *c, size_t chunk, size_t split, Reply *ret, size_t *ret_consumed, ReplyParser *p) {
        size_t len = case_len(c);
        size_t off = 0;

        reply_parser_init(p, c->mode, 0, 0);
        ASSERT_OK(reply_parser_set_tag(p, c->tag));
        while (off < len) {
                size_t n = chunk ? MIN(chunk, len - off) : split ? (off < split ? split - off : len - off) : len - off;
                size_t consumed = 0;
                int r = reply_parser_feed(p, c->input + off, n, &consumed, ret);
                ASSERT_TRUE(consumed <= n);
                off += consumed;
                if (r != 0) {
                        *ret_consumed = off;
                        return r;
                }
                ASSERT_EQ(consumed, n);
        }
        *ret_consumed = off;
        return 0;
}

static void check(const Case *c, size_t chunk, size_t split) {
        ReplyParser p;
        Reply reply = {};
        size_t consumed = 0;
        int r = feed(c, chunk, split, &reply, &consumed, &p);

        if (r != c->result)
                fprintf(stderr, "case '%s' chunk %zu split %zu: got %d (%s)\n", c->name, chunk, split, r, p.error);
        ASSERT_EQ(r, c->result);
        if (r == 1) {
                ASSERT_EQ(reply.code, c->code);
                ASSERT_EQ(reply.n_lines, c->n_lines);
                ASSERT_STREQ(reply.lines[0], c->first);
                if (c->last)
                        ASSERT_STREQ(reply_last_line(&reply), c->last);
                ASSERT_EQ(consumed, c->consumed);
                ASSERT_TRUE(reply.lines[reply.n_lines] == NULL);
        }
        if (r < 0)
                ASSERT_CONTAINS(p.error, c->error);
        reply_done(&reply);
        reply_parser_done(&p);
}

TEST(reply_parser_table) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                size_t len = case_len(c);

                check(c, 0, 0);
                check(c, 1, 0);
                check(c, 7, 0);
                for (size_t s = 1; s < len; s++)
                        check(c, 0, s);
        }
}

TEST(reply_parser_bounds) {
        ReplyParser p;
        Reply reply = {};
        size_t consumed;
        char *big;

        /* A line longer than any server sends. */
        big = malloc(REPLY_MAX_LINE + 16);
        ASSERT_TRUE(big);
        memcpy(big, "250-", 4);
        memset(big + 4, 'x', REPLY_MAX_LINE + 10);
        reply_parser_init(&p, REPLY_SMTP, 0, 0);
        ASSERT_ERROR(reply_parser_feed(&p, big, REPLY_MAX_LINE + 14, &consumed, &reply), E2BIG);
        ASSERT_CONTAINS(p.error, "reply line longer than 8192 bytes");
        /* Once failed, it stays failed. */
        ASSERT_ERROR(reply_parser_feed(&p, "250 ok\r\n", 8, &consumed, &reply), EBADMSG);
        reply_parser_done(&p);
        free(big);

        /* Too many lines. */
        reply_parser_init(&p, REPLY_SMTP, 0, 4);
        static const char four[] = "250-a\r\n250-b\r\n250-c\r\n250-d\r\n250 e\r\n";
        ASSERT_ERROR(reply_parser_feed(&p, four, strlen(four), &consumed, &reply), E2BIG);
        ASSERT_CONTAINS(p.error, "more than 4 lines");
        reply_parser_done(&p);

        /* Too many bytes, even in short lines that arrive one by one. */
        reply_parser_init(&p, REPLY_SMTP, 64, 0);
        int r = 0;
        for (int i = 0; i < 20 && r == 0; i++)
                r = reply_parser_feed(&p, "250-abcdef\r\n", 12, &consumed, &reply);
        ASSERT_EQ(r, -E2BIG);
        ASSERT_CONTAINS(p.error, "reply longer than 64 bytes");
        reply_parser_done(&p);
}

TEST(reply_parser_consecutive_replies) {
        static const char two[] = "220 hi\r\n250-mx\r\n250 STARTTLS\r\n";
        ReplyParser p;
        Reply a = {}, b = {};
        size_t c1, c2;

        reply_parser_init(&p, REPLY_SMTP, 0, 0);
        ASSERT_EQ(reply_parser_feed(&p, two, strlen(two), &c1, &a), 1);
        ASSERT_EQ(a.code, 220u);
        ASSERT_EQ(reply_parser_feed(&p, two + c1, strlen(two) - c1, &c2, &b), 1);
        ASSERT_EQ(b.code, 250u);
        ASSERT_EQ(c1 + c2, strlen(two));
        ASSERT_TRUE(smtp_reply_has_keyword(&b, "starttls"));
        ASSERT_FALSE(smtp_reply_has_keyword(&b, "mx")); /* the first line is the name, not a keyword */
        reply_done(&a);
        reply_done(&b);
        reply_parser_done(&p);
}

TEST(reply_capabilities) {
        char *smtp_lines[] = { (char *) "mx", (char *) "SIZE 100", (char *) "STARTTLSX", NULL };
        Reply smtp = { .code = 250, .lines = smtp_lines, .n_lines = 3 };
        ASSERT_TRUE(smtp_reply_has_keyword(&smtp, "SIZE"));
        ASSERT_FALSE(smtp_reply_has_keyword(&smtp, "STARTTLS"));

        char *imap_lines[] = { (char *) "* CAPABILITY IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN", (char *) "a OK", NULL };
        Reply imap = { .lines = imap_lines, .n_lines = 2 };
        ASSERT_TRUE(reply_lists_capability(&imap, REPLY_IMAP, "STARTTLS"));
        ASSERT_FALSE(reply_lists_capability(&imap, REPLY_IMAP, "STARTTLS2"));

        char *greeting_lines[] = { (char *) "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready", NULL };
        Reply greeting = { .lines = greeting_lines, .n_lines = 1 };
        ASSERT_TRUE(reply_lists_capability(&greeting, REPLY_IMAP, "starttls"));

        char *sieve_lines[] = { (char *) "\"SIEVE\" \"STARTTLS\"", (char *) "\"STARTTLS\"", (char *) "OK", NULL };
        Reply sieve = { .lines = sieve_lines, .n_lines = 3 };
        ASSERT_TRUE(reply_lists_capability(&sieve, REPLY_SIEVE, "STARTTLS"));
        char *nosieve_lines[] = { (char *) "\"SIEVE\" \"STARTTLS\"", (char *) "OK", NULL };
        Reply nosieve = { .lines = nosieve_lines, .n_lines = 2 };
        ASSERT_FALSE(reply_lists_capability(&nosieve, REPLY_SIEVE, "STARTTLS"));
}

DEFINE_TEST_MAIN()
