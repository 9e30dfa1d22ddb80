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

typedef enum SockaddrFlags {
        /* Port 0, "any free port": for listeners set up by tests, never in a
         * configuration, where it would put a service on a port no one knows. */
        SOCKADDR_PORT_ZERO = 1 << 0,
} SockaddrFlags;

/* The one address grammar of every address key and flag: a numeric
 * "192.0.2.1:25", "[2001:db8::1]:25" or ":25" (every address, IPv6 with IPv4
 * mapped). Names are never resolved: a lookup could block the loop. Returns
 * -EINVAL for anything else, with *ret_problem (when not NULL) saying why in
 * a few words an operator can act on. */
int sockaddr_parse_full(const char *s, SockaddrFlags flags, union sockaddr_union *ret, socklen_t *ret_len,
                        const char **ret_problem);
static inline int sockaddr_parse(const char *s, union sockaddr_union *ret, socklen_t *ret_len) {
        return sockaddr_parse_full(s, 0, ret, ret_len, NULL);
}
/* What the messages call the grammar. */
#define SOCKADDR_GRAMMAR "IPv4:port, [IPv6]:port or :port"

/* "192.0.2.1:25" or "[2001:db8::1]:25"; buf should hold SOCKADDR_STRING_MAX. */
#define SOCKADDR_STRING_MAX (INET6_ADDRSTRLEN + 8)
const char *sockaddr_to_string(const union sockaddr_union *sa, char *buf, size_t len);
