/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The dovecot probe: the doveadm who parser on what Dovecot 2.3 prints, on
 * the 2.4 header, with doveadm's warnings mixed in, and on output that is
 * not a connection list (each refusal names its line); the first-line
 * helper that quotes a failing doveadm; the limit format; and the checks of
 * the probe's keys. Reading the unit's limits over D-Bus and running the
 * real doveadm are covered by the integration test in the node box. */

#include "probe-run.h"
#include "probes/dovecot-parse.h"

typedef struct WhoCase {
        const char *name;
        const char *text;
        int r;
        const char *error;
        /* imap, pop3, lmtp, managesieve, other */
        uint64_t connections[_DOVECOT_SERVICE_MAX];
        uint64_t users;
        uint64_t messages;
} WhoCase;

static const WhoCase who_cases[] = {
        {
                .name = "no connections (Dovecot 2.3)",
                .text = "username\tproto\tpid\tip\n",
        },
        {
                .name = "connections of two users",
                .text = "username\tproto\tpid\tip\n"
                        "alice@rupost.test\timap\t4711\t10.231.0.11\n"
                        "alice@rupost.test\timap\t4712\t10.231.0.12\n"
                        "bob@rupost.test\tsieve\t4713\t127.0.0.1\n"
                        "bob@rupost.test\tpop3\t4714\t\n"
                        "alice@rupost.test\tlmtp\t4715\t127.0.0.1\n",
                .connections = { 2, 1, 1, 1, 0 },
                .users = 2,
        },
        {
                .name = "unknown protocols are other; an empty user is a connection, not a user",
                .text = "username\tproto\tpid\tip\n"
                        "carol\tsubmission\t99\t::1\n"
                        "\timap\t100\t::1\n"
                        "carol\tIMAP\t101\t::1\n",
                .connections = { 1, 0, 0, 0, 2 },
                .users = 1,
        },
        {
                .name = "doveadm's warnings before and after the table",
                .text = "doveconf: Warning: service auth { client_limit=1000 } is lower than required\n"
                        "username\tproto\tpid\tip\n"
                        "dave\timap\t7\t1.2.3.4\n"
                        "doveadm: Warning: something else\n",
                .connections = { 1, 0, 0, 0, 0 },
                .users = 1,
                .messages = 2,
        },
        {
                .name = "Dovecot 2.4: 'service' column, more columns, CRLF, blank lines, no final newline",
                .text = "username\tservice\tpid\tip\talt_username\r\n\r\n"
                        "erin\tmanagesieve\t5\t1.2.3.4\t\r\n"
                        "erin\tpop3\t6\t1.2.3.4\tx",
                .connections = { 0, 1, 0, 1, 0 },
                .users = 1,
        },
        { .name = "empty output", .text = "", .r = -EBADMSG, .error = "no header line (0 lines of messages)" },
        {
                .name = "only an error message",
                .text = "Error: socket(/run/dovecot/anvil) failed: No such file or directory\n",
                .r = -EBADMSG,
                .error = "no header line (1 lines of messages): not doveadm who output",
        },
        {
                .name = "doveadm who without -1",
                .text = "username\t#\tproto\t(pids)\t(ips)\nalice\t2\timap\t(1 2)\t(10.0.0.1)\n",
                .r = -EBADMSG,
                .error = "line 1: a '#' column: this is doveadm who without -1",
        },
        {
                .name = "some other table",
                .text = "name\tprocess_count\nimap\t3\n",
                .r = -EBADMSG,
                .error = "line 1: not the header of doveadm who (no 'username' and 'proto' columns)",
        },
        {
                .name = "a row with a field missing",
                .text = "username\tproto\tpid\tip\nalice\timap\t1\t::1\nbob\timap\t2\n",
                .r = -EBADMSG,
                .error = "line 3: 3 fields, the header has 4",
        },
        {
                .name = "a pid that is not a number",
                .text = "username\tproto\tpid\tip\nalice\timap\t-1\t::1\n",
                .r = -EBADMSG,
                .error = "line 2: the pid is not a number",
        },
        {
                .name = "a NUL byte",
                .text = "username\tproto\tpid\tip\nali\0ce\timap\t1\t::1\n",
                .r = -EBADMSG,
                .error = "line 2: NUL byte",
        },
        {
                .name = "too many columns",
                .text = "username\tproto\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq\tr\ts\tt\tu\tv\tw"
                        "\tx\ty\tz\t1\t2\t3\t4\t5\n",
                .r = -EBADMSG,
                .error = "line 1: more than 32 fields",
        },
};

TEST(doveadm_who_parse_table) {
        for (size_t i = 0; i < ELEMENTSOF(who_cases); i++) {
                const WhoCase *c = &who_cases[i];
                /* The NUL case has its length past the embedded NUL. */
                size_t len = strlen(c->text);
                if (strstr(c->name, "NUL"))
                        len += 1 + strlen(c->text + len + 1);
                DoveadmWho w = {};
                char error[160] = "";

                fprintf(stderr, "case %s\n", c->name);
                int r = doveadm_who_parse(c->text, len, &w, error, sizeof error);
                if (r != c->r)
                        fprintf(stderr, "  got %d: %s\n", r, error);
                ASSERT_EQ(r, c->r);
                if (r < 0) {
                        ASSERT_CONTAINS(error, c->error);
                        continue;
                }
                uint64_t total = 0;
                for (DovecotService s = 0; s < _DOVECOT_SERVICE_MAX; s++) {
                        ASSERT_EQ(w.connections[s], c->connections[s]);
                        total += c->connections[s];
                }
                ASSERT_EQ(w.total, total);
                ASSERT_EQ(w.users, c->users);
                ASSERT_EQ(w.n_messages, c->messages);
        }
}

TEST(doveadm_who_many_users) {
        /* Distinct users among many connections, in no particular order. */
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        ASSERT_TRUE(f);
        fputs("username\tproto\tpid\tip\n", f);
        for (unsigned i = 0; i < 5000; i++)
                fprintf(f, "user%u@rupost.test\t%s\t%u\t10.0.0.1\n", (i * 7919) % 1234, i % 3 ? "imap" : "pop3",
                        i + 1);
        ASSERT_EQ(fclose(f), 0);

        DoveadmWho w;
        ASSERT_OK(doveadm_who_parse(text, size, &w, NULL, 0));
        ASSERT_EQ(w.total, 5000u);
        ASSERT_EQ(w.users, 1234u);
        ASSERT_EQ(w.connections[DOVECOT_SERVICE_POP3], 1667u);
        ASSERT_EQ(w.connections[DOVECOT_SERVICE_IMAP], 3333u);
        free(text);
}

TEST(dovecot_service_names) {
        ASSERT_EQ(dovecot_service_from_proto("imap", 4), DOVECOT_SERVICE_IMAP);
        ASSERT_EQ(dovecot_service_from_proto("pop3", 4), DOVECOT_SERVICE_POP3);
        ASSERT_EQ(dovecot_service_from_proto("lmtp", 4), DOVECOT_SERVICE_LMTP);
        ASSERT_EQ(dovecot_service_from_proto("sieve", 5), DOVECOT_SERVICE_MANAGESIEVE);
        ASSERT_EQ(dovecot_service_from_proto("managesieve", 11), DOVECOT_SERVICE_MANAGESIEVE);
        ASSERT_EQ(dovecot_service_from_proto("imapx", 4), DOVECOT_SERVICE_IMAP); /* a slice */
        ASSERT_EQ(dovecot_service_from_proto("imapx", 5), DOVECOT_SERVICE_OTHER);
        ASSERT_EQ(dovecot_service_from_proto("", 0), DOVECOT_SERVICE_OTHER);
        ASSERT_STREQ(dovecot_service_to_string(DOVECOT_SERVICE_MANAGESIEVE), "managesieve");
        ASSERT_STREQ(dovecot_service_to_string(DOVECOT_SERVICE_OTHER), "other");
        ASSERT_TRUE(dovecot_service_to_string(_DOVECOT_SERVICE_MAX) == NULL);
}

TEST(doveadm_first_line) {
        char buf[32];
        const char *t;

        t = "\n\n  Error: connect(anvil) failed\nmore\n";
        ASSERT_STREQ(doveadm_first_line(t, strlen(t), buf, sizeof buf), "Error: connect(anvil) failed");
        t = "a\tb\x1b[31mc\r\n";
        ASSERT_STREQ(doveadm_first_line(t, strlen(t), buf, sizeof buf), "a b [31mc");
        t = "";
        ASSERT_STREQ(doveadm_first_line(t, 0, buf, sizeof buf), "");
        /* Cut to fit, never inside a UTF-8 sequence. */
        t = "0123456789012345678901234567\xd0\xbf\xd0\xbf\xd0\xbf";
        ASSERT_STREQ(doveadm_first_line(t, strlen(t), buf, sizeof buf), "0123456789012345678901234567\xd0\xbf");
        t = "012345678901234567890123456789\xd0\xbf";
        ASSERT_STREQ(doveadm_first_line(t, strlen(t), buf, sizeof buf), "012345678901234567890123456789");
}

TEST(dovecot_limit_format) {
        char buf[64];

        ASSERT_STREQ(dovecot_limit_format(buf, sizeof buf, 1048576, 1048576), "1048576");
        ASSERT_STREQ(dovecot_limit_format(buf, sizeof buf, 1024, 524288), "1024:524288");
        ASSERT_STREQ(dovecot_limit_format(buf, sizeof buf, UINT64_MAX, UINT64_MAX), "infinity");
        ASSERT_STREQ(dovecot_limit_format(buf, sizeof buf, 4096, UINT64_MAX), "4096:infinity");
}

TEST(dovecot_probe_config) {
        static const struct {
                const char *keys;
                const char *error;
        } bad[] = {
                { "    unit: dovecot\n", "'dovecot' is not a service unit name (like 'dovecot.service')" },
                { "    unit: dovecot.socket\n", "is not a service unit name" },
                { "    unit: \"dove cot.service\"\n", "is not a service unit name" },
                { "    expect_limit_nofile: 0\n", "out of range" },
                { "    expect_limit_nproc: 2000000000\n", "out of range" },
                { "    doveadm: /bin/sh\n", "doveadm" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[512];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: p\n    type: dovecot\n%s", bad[i].keys);
                test_config_load_fails(yaml, bad[i].error);
        }

        static const char *const good[] = {
                "probes:\n  - name: p\n    type: dovecot\n",
                "probes:\n  - name: p\n    type: dovecot\n    unit: dovecot@main.service\n"
                "    expect_limit_nofile: 65536\n    expect_limit_nproc: 1000\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(config_freep) Config *config = test_config_load(good[i]);

                ASSERT_EQ(config->n_probes, 1u);
                ASSERT_STREQ(config->probes[0]->type->name, "dovecot");
        }
}

DEFINE_TEST_MAIN()
