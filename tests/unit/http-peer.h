/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* A tiny HTTP/1.1 server for tests, forked on loopback: each connection is
 * served by a child of its own, so a slow or silent answer never holds up
 * the others. The answer is chosen by the request path:
 *
 *   /ok        200 with a small body
 *   /redirect  301 to https://mail.test/
 *   /wrong     301 to http://elsewhere.test/
 *   /slow      200 after 1.5 s
 *   /hang      reads the request, never answers
 *   /big       200 with a 1 MiB body
 *   /sogo      200, body "SOGo" plus the Host header it received
 *   /status    the contents of the file http_peer_status_file (read at each request)
 *   /close     closes without answering
 *   else       404
 */

#include <stdio.h>
#include <string.h>

#include "lib/macro.h"
#include "loopback.h"
#include "tests.h"

typedef struct HttpPeer {
        pid_t pid;
        uint16_t port;
} HttpPeer;

static char http_peer_status_file[64];

static void http_peer_write(int c, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = write(c, s, n);
                if (k <= 0)
                        return;
                s += k;
                n -= (size_t) k;
        }
}

static void http_peer_answer(int c, const char *status, const char *extra_headers, const char *body, size_t len) {
        char head[512];
        int n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                         status, len, extra_headers);
        http_peer_write(c, head, (size_t) n);
        http_peer_write(c, body, len);
}

static void http_peer_serve(int c) {
        char req[4096];
        size_t len = 0;

        while (len < sizeof req - 1) {
                ssize_t k = read(c, req + len, sizeof req - 1 - len);
                if (k <= 0)
                        _exit(0);
                len += (size_t) k;
                req[len] = 0;
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        char path[256] = "";
        (void) sscanf(req, "%*s %255s", path);
        const char *host = strcasestr(req, "\r\nHost: ");
        char host_value[128] = "";
        if (host)
                (void) sscanf(host + 8, "%127[^\r]", host_value);

        if (streq(path, "/ok"))
                http_peer_answer(c, "200 OK", "", "hello\n", 6);
        else if (streq(path, "/redirect"))
                http_peer_answer(c, "301 Moved Permanently", "Location: https://mail.test/\r\n", "", 0);
        else if (streq(path, "/wrong"))
                http_peer_answer(c, "301 Moved Permanently", "Location: http://elsewhere.test/\r\n", "", 0);
        else if (streq(path, "/slow")) {
                peer_sleep_ms(1500);
                http_peer_answer(c, "200 OK", "", "late\n", 5);
        } else if (streq(path, "/hang"))
                peer_sleep_ms(60000);
        else if (streq(path, "/big")) {
                static char big[1024 * 1024];
                memset(big, 'x', sizeof big);
                http_peer_answer(c, "200 OK", "", big, sizeof big);
        } else if (streq(path, "/sogo")) {
                char body[256];
                int n = snprintf(body, sizeof body, "SOGo host=%s\n", host_value);
                http_peer_answer(c, "200 OK", "", body, (size_t) n);
        } else if (streq(path, "/status")) {
                char body[4096];
                FILE *f = fopen(http_peer_status_file, "re");
                size_t n = f ? fread(body, 1, sizeof body, f) : 0;
                if (f)
                        fclose(f);
                http_peer_answer(c, "200 OK", "Content-Type: text/plain\r\n", body, n);
        }
        else if (streq(path, "/close"))
                ;
        else
                http_peer_answer(c, "404 Not Found", "", "not found\n", 10);
        _exit(0);
}

static HttpPeer http_peer_start(void) {
        HttpPeer peer = {};
        int fd = test_loopback_socket(SOCK_STREAM, &peer.port);

        peer.pid = fork();
        ASSERT_TRUE(peer.pid >= 0);
        if (peer.pid > 0) {
                (void) setpgid(peer.pid, peer.pid);
                close(fd);
                return peer;
        }
        /* A process group of its own, so that stopping it ends the
         * connection children too. */
        (void) setpgid(0, 0);
        /* A failing test aborts without stopping us: go with it. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void) signal(SIGCHLD, SIG_IGN);
        for (;;) {
                int c = accept(fd, NULL, NULL);
                if (c < 0)
                        continue;
                if (fork() == 0) {
                        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                        close(fd);
                        http_peer_serve(c);
                }
                close(c);
        }
}

static void http_peer_stop(HttpPeer *peer) {
        (void) kill(-peer->pid, SIGKILL);
        (void) kill(peer->pid, SIGKILL);
        (void) waitpid(peer->pid, NULL, 0);
}
