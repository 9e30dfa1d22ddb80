/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one address grammar: what every address key, flag and listener accepts. */
#include <arpa/inet.h>

#include "lib/macro.h"
#include "lib/sockaddr.h"
#include "tests.h"

TEST(parse_good) {
        static const struct {
                const char *s;
                SockaddrFlags flags;
                const char *printed;
        } good[] = {
                { "127.0.0.1:9469", 0, "127.0.0.1:9469" },
                { "0.0.0.0:1", 0, "0.0.0.0:1" },
                { ":9469", 0, "[::]:9469" },
                { "[::1]:80", 0, "[::1]:80" },
                { "[2001:db8::5]:65535", 0, "[2001:db8::5]:65535" },
                { "127.0.0.1:0", SOCKADDR_PORT_ZERO, "127.0.0.1:0" },
                { "[::]:0", SOCKADDR_PORT_ZERO, "[::]:0" },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char buf[SOCKADDR_STRING_MAX];
                union sockaddr_union sa;
                const char *why = NULL;
                socklen_t len = 0;

                ASSERT_OK(sockaddr_parse_full(good[i].s, good[i].flags, &sa, &len, &why));
                ASSERT_TRUE(!why);
                ASSERT_EQ(len, sa.sa.sa_family == AF_INET ? sizeof sa.in : sizeof sa.in6);
                ASSERT_STREQ(sockaddr_to_string(&sa, buf, sizeof buf), good[i].printed);
        }
}

TEST(parse_bad) {
        static const struct {
                const char *s;
                const char *why;
        } bad[] = {
                { "", "empty" },
                { ":", "port must be a number 1..65535" },
                { "9469", "missing ':port'" },
                { "127.0.0.1", "missing ':port'" },
                { "127.0.0.1:", "port must be a number 1..65535" },
                { "127.0.0.1:0", "port must be a number 1..65535" },
                { "127.0.0.1:65536", "port must be a number 1..65535" },
                { "127.0.0.1:-1", "port must be a number 1..65535" },
                { "127.0.0.1:+80", "port must be a number 1..65535" },
                { "127.0.0.1:80x", "port must be a number 1..65535" },
                { "[::1]:99999999999999999999", "port must be a number 1..65535" },
                { "::1:80", "IPv6 addresses need brackets, like [::1]:25" },
                { "[::1]", "missing ':port' after ']'" },
                { "[::1]80", "missing ':port' after ']'" },
                { "[::1:80", "missing ']'" },
                { "[]:80", "invalid IPv6 address" },
                { "[zz::1]:1", "invalid IPv6 address" },
                { "[127.0.0.1]:80", "invalid IPv6 address" },
                { "256.0.0.1:80", "invalid IPv4 address" },
                { "1.2.3:80", "invalid IPv4 address" },
                /* The case of issue 11: accepted by the check, refused at start. */
                { "localhost:9469",
                  "host names are not resolved (a lookup could block the agent): give an IP address, like 127.0.0.1 or [::1]" },
                { "ho st:1", "invalid character in the address" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                union sockaddr_union sa;
                const char *why = NULL;
                socklen_t len;

                if (sockaddr_parse_full(bad[i].s, 0, &sa, &len, &why) != -EINVAL)
                        ASSERT_FAIL("'%s' was accepted", bad[i].s);
                ASSERT_STREQ(why, bad[i].why);
                /* And without asking why. */
                ASSERT_ERROR(sockaddr_parse(bad[i].s, &sa, &len), EINVAL);
        }
        ASSERT_ERROR(sockaddr_parse(NULL, NULL, NULL), EINVAL);
}

DEFINE_TEST_MAIN()
