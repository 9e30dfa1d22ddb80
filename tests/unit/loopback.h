/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Sockets on 127.0.0.1 for tests, on ports the kernel picks, and scripted
 * peers forked behind them. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"

/* A socket bound to 127.0.0.1 (listening, for SOCK_STREAM); *ret_port is
 * its port. */
static inline int test_loopback_socket(int type, uint16_t *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        if (type == SOCK_STREAM)
                ASSERT_OK(listen(fd, 64));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

/* A port nobody listens on: bound, read back and closed. */
static inline uint16_t test_free_port(void) {
        uint16_t port;

        close(test_loopback_socket(SOCK_STREAM, &port));
        return port;
}

typedef struct LoopbackPeer {
        pid_t pid;
        uint16_t port;
} LoopbackPeer;

/* Binds a loopback socket and forks. Returns the socket in the child, which
 * serves on it and _exit()s, and dies with the test even when an assertion
 * aborts it; returns -1 in the parent, with *ret filled. */
static inline int loopback_peer_fork(int type, LoopbackPeer *ret) {
        int fd = test_loopback_socket(type, &ret->port);

        ret->pid = fork();
        ASSERT_TRUE(ret->pid >= 0);
        if (ret->pid > 0) {
                close(fd);
                return -1;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        return fd;
}

/* For a peer's script: a pause that signals do not cut short. */
static inline void peer_sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static inline void loopback_peer_stop(LoopbackPeer *peer) {
        (void) kill(peer->pid, SIGKILL);
        (void) waitpid(peer->pid, NULL, 0);
}
