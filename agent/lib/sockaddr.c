/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockaddr.h"

static bool all_of(const char *s, size_t n, const char *set) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(set, s[i]))
                        return false;
        return true;
}

/* Decimal digits only (no sign, no spaces), so every reader agrees. */
static const char *parse_port(const char *s, SockaddrFlags flags, uint16_t *ret) {
        unsigned long v = 0;

        if (!*s || strlen(s) > 5 || !all_of(s, strlen(s), "0123456789"))
                return "port must be a number 1..65535";
        for (const char *c = s; *c; c++)
                v = v * 10 + (unsigned long) (*c - '0');
        if (v > 65535 || (v == 0 && !(flags & SOCKADDR_PORT_ZERO)))
                return "port must be a number 1..65535";
        *ret = (uint16_t) v;
        return NULL;
}

static int problem(const char **ret_problem, const char *why) {
        if (ret_problem)
                *ret_problem = why;
        return -EINVAL;
}

int sockaddr_parse_full(const char *s, SockaddrFlags flags, union sockaddr_union *ret, socklen_t *ret_len,
                        const char **ret_problem) {
        char host[INET6_ADDRSTRLEN + 1];
        union sockaddr_union sa = {};
        const char *colon, *why;
        bool bracketed = false;
        uint16_t port;
        size_t l;

        if (!s || !*s)
                return problem(ret_problem, "empty");

        if (s[0] == '[') {
                const char *end = strchr(s, ']');
                if (!end)
                        return problem(ret_problem, "missing ']'");
                l = (size_t) (end - s - 1);
                if (l == 0 || l >= sizeof host)
                        return problem(ret_problem, "invalid IPv6 address");
                if (end[1] != ':')
                        return problem(ret_problem, "missing ':port' after ']'");
                colon = end + 1;
                s++;
                bracketed = true;
        } else {
                colon = strrchr(s, ':');
                if (!colon)
                        return problem(ret_problem, "missing ':port'");
                l = (size_t) (colon - s);
                /* An unbracketed IPv6 address is ambiguous with its port. */
                if (memchr(s, ':', l))
                        return problem(ret_problem, "IPv6 addresses need brackets, like [::1]:25");
                if (l >= sizeof host)
                        return problem(ret_problem, "host too long");
        }
        memcpy(host, s, l);
        host[l] = 0;

        if (bracketed) {
                if (inet_pton(AF_INET6, host, &sa.in6.sin6_addr) != 1)
                        return problem(ret_problem, "invalid IPv6 address");
                sa.in6.sin6_family = AF_INET6;
        } else if (l == 0) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_addr = in6addr_any;
        } else if (inet_pton(AF_INET, host, &sa.in.sin_addr) == 1)
                sa.in.sin_family = AF_INET;
        else if (all_of(host, l, "0123456789."))
                return problem(ret_problem, "invalid IPv4 address");
        else if (all_of(host, l, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_"))
                return problem(ret_problem,
                               "host names are not resolved (a lookup could block the agent): "
                               "give an IP address, like 127.0.0.1 or [::1]");
        else
                return problem(ret_problem, "invalid character in the address");

        why = parse_port(colon + 1, flags, &port);
        if (why)
                return problem(ret_problem, why);

        if (sa.sa.sa_family == AF_INET) {
                sa.in.sin_port = htons(port);
                *ret_len = sizeof sa.in;
        } else {
                sa.in6.sin6_port = htons(port);
                *ret_len = sizeof sa.in6;
        }
        *ret = sa;
        return 0;
}

const char *sockaddr_to_string(const union sockaddr_union *sa, char *buf, size_t len) {
        char host[INET6_ADDRSTRLEN];

        if (sa->sa.sa_family == AF_INET) {
                inet_ntop(AF_INET, &sa->in.sin_addr, host, sizeof host);
                snprintf(buf, len, "%s:%u", host, ntohs(sa->in.sin_port));
        } else if (sa->sa.sa_family == AF_INET6) {
                inet_ntop(AF_INET6, &sa->in6.sin6_addr, host, sizeof host);
                snprintf(buf, len, "[%s]:%u", host, ntohs(sa->in6.sin6_port));
        } else
                snprintf(buf, len, "(family %d)", sa->sa.sa_family);
        return buf;
}
