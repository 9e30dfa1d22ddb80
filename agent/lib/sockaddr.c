/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockaddr.h"

static int parse_port(const char *s, uint16_t *ret) {
        unsigned long v = 0;

        if (!*s || strlen(s) > 5)
                return -EINVAL;
        for (const char *c = s; *c; c++) {
                if (*c < '0' || *c > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*c - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

int sockaddr_parse(const char *s, union sockaddr_union *ret, socklen_t *ret_len) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *colon;
        uint16_t port;
        size_t l;

        if (!s)
                return -EINVAL;

        if (s[0] == '[') {
                const char *end = strchr(s, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                l = (size_t) (end - s - 1);
                colon = end + 1;
                s++;
        } else {
                colon = strrchr(s, ':');
                if (!colon)
                        return -EINVAL;
                l = (size_t) (colon - s);
                /* An unbracketed IPv6 address is ambiguous with its port. */
                if (memchr(s, ':', l))
                        return -EINVAL;
        }
        if (l >= sizeof host || parse_port(colon + 1, &port) < 0)
                return -EINVAL;
        memcpy(host, s, l);
        host[l] = 0;

        *ret = (union sockaddr_union) {};
        if (l == 0) {
                ret->in6.sin6_family = AF_INET6;
                ret->in6.sin6_addr = in6addr_any;
                ret->in6.sin6_port = htons(port);
                *ret_len = sizeof ret->in6;
        } else if (inet_pton(AF_INET, host, &ret->in.sin_addr) == 1) {
                ret->in.sin_family = AF_INET;
                ret->in.sin_port = htons(port);
                *ret_len = sizeof ret->in;
        } else if (inet_pton(AF_INET6, host, &ret->in6.sin6_addr) == 1) {
                ret->in6.sin6_family = AF_INET6;
                ret->in6.sin6_port = htons(port);
                *ret_len = sizeof ret->in6;
        } else
                return -EINVAL;
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
