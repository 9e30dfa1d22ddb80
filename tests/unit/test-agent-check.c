/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HAProxy's agent-check port: each connection gets the one line the reply
 * callback writes, and is closed; a manager that does not heal answers
 * "up ready" on the default port, so HAProxy never keeps a veto from a time
 * the agent healed. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent-check.h"
#include "config.h"
#include "loopback.h"
#include "manager.h"
#include "run-until.h"

static const char *reply_counting(void *userdata, char *buf, size_t len) {
        unsigned *n = userdata;

        snprintf(buf, len, "down #call %u\n", ++*n);
        return buf;
}

/* Connects to port on loopback; the loop must run for the answer. */
static int connect_to(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(fd);
                return -errno;
        }
        return fd;
}

/* What the port said until it closed the connection. */
static char *read_answer(sd_event *e, int fd) {
        static char buf[512];
        size_t got = 0;
        bool closed = false;

        ASSERT_TRUE(RUN_UNTIL(e, ({
                ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, MSG_DONTWAIT);
                if (k > 0)
                        got += (size_t) k;
                else if (k == 0)
                        closed = true;
                closed;
        }), 5 * USEC_PER_SEC));
        buf[got] = 0;
        close(fd);
        return buf;
}

TEST(one_line_per_connection) {
        _cleanup_(agent_check_freep) AgentCheck *a = NULL;
        sd_event *e = NULL;
        unsigned calls = 0;
        char address[32];
        uint16_t port = test_free_port();

        ASSERT_OK(sd_event_new(&e));
        snprintf(address, sizeof address, "127.0.0.1:%u", port);
        ASSERT_OK(agent_check_new(e, address, reply_counting, &calls, &a));
        ASSERT_STREQ(agent_check_address(a), address);

        ASSERT_STREQ(read_answer(e, connect_to(port)), "down #call 1\n");
        ASSERT_STREQ(read_answer(e, connect_to(port)), "down #call 2\n");

        /* A second listener on the same port is refused, with the error. */
        AgentCheck *b = NULL;
        ASSERT_EQ(agent_check_new(e, address, reply_counting, &calls, &b), -EADDRINUSE);
        ASSERT_EQ(agent_check_new(e, "nowhere", reply_counting, &calls, &b), -EINVAL);

        a = agent_check_free(a);
        ASSERT_EQ(connect_to(port), -ECONNREFUSED);
        sd_event_unref(e);
}

TEST(without_healing_up_ready) {
        static const char yaml[] = "node: n1\n"
                                   "probes:\n"
                                   "  - name: tcp\n"
                                   "    type: tcp\n"
                                   "    address: \"127.0.0.1:1\"\n"
                                   "    interval: 1h\n";
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_strv_free_ char **errors = NULL;
        char web[64], control[64];
        sigset_t saved;
        Manager *m = NULL;

        /* The default port is fixed; another program may hold it. */
        int probe = connect_to(9470);
        if (probe >= 0) {
                close(probe);
                fprintf(stderr, "skipped: something listens on port 9470 already\n");
                return;
        }
        snprintf(web, sizeof web, "127.0.0.1:%u", test_free_port());
        snprintf(control, sizeof control, "/tmp/test-agent-check-%d.sock", (int) getpid());
        ASSERT_OK(config_load_string("test.yaml", yaml, strlen(yaml), &config, &errors));

        ASSERT_OK(sigprocmask(SIG_SETMASK, NULL, &saved));
        ASSERT_OK(manager_new(&(ManagerOptions) { .web_listen_address = web, .control_socket = control }, &m));
        ASSERT_OK(manager_start(m, TAKE_PTR(config)));
        ASSERT_TRUE(m->node == NULL);
        ASSERT_STREQ(read_answer(m->event, connect_to(9470)), "up ready\n");

        manager_free(m);
        (void) unlink(control);
        ASSERT_OK(sigprocmask(SIG_SETMASK, &saved, NULL));
}

DEFINE_TEST_MAIN();
