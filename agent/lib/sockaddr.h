/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

union sockaddr_union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage storage;
};

/* Parses a numeric "192.0.2.1:25", "[2001:db8::1]:25" or ":25" (any address,
 * IPv6 with IPv4 mapped). Never resolves names: that could block. Returns
 * -EINVAL for anything else. */
int sockaddr_parse(const char *s, union sockaddr_union *ret, socklen_t *ret_len);

/* "192.0.2.1:25" or "[2001:db8::1]:25"; buf should hold SOCKADDR_STRING_MAX. */
#define SOCKADDR_STRING_MAX (INET6_ADDRSTRLEN + 8)
const char *sockaddr_to_string(const union sockaddr_union *sa, char *buf, size_t len);
