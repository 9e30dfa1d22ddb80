/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent-check.h"
#include "lib/log.h"
#include "lib/sockaddr.h"

struct AgentCheck {
        char *address;
        int fd;
        sd_event_source *source;
        AgentCheckReply reply;
        void *userdata;
};

static int on_connection(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AgentCheck *a = userdata;
        char line[300];

        /* Answer and close at once; HAProxy reads one line. A client that does
         * not read gets what fits in the socket buffer and nothing more. */
        for (int i = 0; i < 16; i++) {
                _cleanup_close_ int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                        break;
                a->reply(a->userdata, line, sizeof line);
                (void) send(c, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        return 0;
}

int agent_check_new(sd_event *e, const char *address, AgentCheckReply reply, void *userdata, AgentCheck **ret) {
        _cleanup_(agent_check_freep) AgentCheck *a = NULL;
        union sockaddr_union sa;
        socklen_t len;
        int one = 1, r;

        r = sockaddr_parse(address, &sa, &len);
        if (r < 0)
                return log_error_errno(r, "Bad agent-check address '%s'.", address);

        a = calloc(1, sizeof *a);
        if (!a)
                return log_oom();
        a->fd = -EBADF;
        a->reply = reply;
        a->userdata = userdata;
        a->address = strdup(address);
        if (!a->address)
                return log_oom();

        a->fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (a->fd < 0)
                return log_error_errno(errno, "Failed to create the agent-check socket: %m");
        (void) setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa.sa.sa_family == AF_INET6) {
                int zero = 0;
                (void) setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        }
        if (bind(a->fd, &sa.sa, len) < 0)
                return log_error_errno(errno, "Failed to bind the agent-check port %s: %m", address);
        if (listen(a->fd, 64) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", address);

        r = sd_event_add_io(e, &a->source, a->fd, EPOLLIN, on_connection, a);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the agent-check socket: %m");
        *ret = TAKE_PTR(a);
        return 0;
}

AgentCheck *agent_check_free(AgentCheck *a) {
        if (!a)
                return NULL;
        sd_event_source_disable_unref(a->source);
        safe_close(a->fd);
        free(a->address);
        free(a);
        return NULL;
}

const char *agent_check_address(const AgentCheck *a) {
        return a ? a->address : NULL;
}
