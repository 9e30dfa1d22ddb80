/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rupost-health when the agent is not running: it runs the configured
 * probes once itself, against loopback servers the test starts, and says
 * so. The binary is run as an operator runs it; no agent is ever started.
 *
 * The hung-share case needs root and /dev/fuse (a FUSE mount that never
 * answers, as in the nfs probe's test) and is skipped without them. */

#include <json-c/json.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "build-config.h"
#include "cli-run.h"
#include "config.h"
#include "fuse-hang.h"
#include "loopback.h"
#include "oneshot.h"

typedef struct Fixture {
        char dir[64];
        char socket[128]; /* where no agent is */
        char config[128];
} Fixture;

static void fixture_make_config(Fixture *f, const char *yaml) {
        FILE *file = fopen(f->config, "we");

        ASSERT_TRUE(file);
        ASSERT_TRUE(fputs(yaml, file) >= 0);
        ASSERT_OK(fclose(file));
}

static void fixture_make(Fixture *f, const char *yaml) {
        snprintf(f->dir, sizeof f->dir, "/tmp/test-health-fallback-XXXXXX");
        ASSERT_TRUE(mkdtemp(f->dir));
        snprintf(f->socket, sizeof f->socket, "%s/control.sock", f->dir);
        snprintf(f->config, sizeof f->config, "%s/agent.yaml", f->dir);
        fixture_make_config(f, yaml);
}

static void fixture_done(Fixture *f) {
        (void) unlink(f->socket);
        ASSERT_OK(unlink(f->config));
        ASSERT_OK(rmdir(f->dir));
}

static struct json_object *get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v))
                ASSERT_FAIL("JSON has no key \"%s\"", key);
        return v;
}

/* The table's line of probe `name`, up to its end; the test fails without
 * one. */
static char *probe_line(const char *out, const char *name) {
        size_t l = strlen(name);

        for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, name, l) == 0 && p[l] == ' ')
                        return strndup(p, strcspn(p, "\n"));
        ASSERT_FAIL("no line for probe %s in:\n%s", name, out);
}

#define ASSERT_PROBE_LINE(out, name, status, reason)                             \
        do {                                                                     \
                _cleanup_free_ char *_l = probe_line((out), (name));             \
                ASSERT_CONTAINS(_l, "  " status "  ");                           \
                ASSERT_CONTAINS(_l, reason);                                     \
        } while (0)

/* A peer that greets as an SMTP server does and keeps the connection open
 * until the probe is gone. */
static LoopbackPeer smtp_peer_start(void) {
        LoopbackPeer peer;
        int fd = loopback_peer_fork(SOCK_STREAM, &peer);

        if (fd < 0)
                return peer;
        for (;;) {
                int c = accept(fd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                (void) !write(c, "220 mail.test ESMTP\r\n", 21);
                peer_sleep_ms(200);
                close(c);
        }
}

/* Four probes: a port that accepts, a greeting server, a closed port, and a
 * port that accepts but never greets (its probe ends at its own 500ms). */
typedef struct Servers {
        int listening;
        uint16_t open_port, closed_port;
        LoopbackPeer smtp;
        char yaml[2048];
} Servers;

static void servers_start(Servers *s) {
        s->listening = test_loopback_socket(SOCK_STREAM, &s->open_port);
        s->closed_port = test_free_port();
        s->smtp = smtp_peer_start();
        snprintf(s->yaml, sizeof s->yaml,
                 "node: mail-test\n"
                 "probes:\n"
                 "  - name: submission\n"
                 "    type: tcp\n"
                 "    interval: 100ms\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "  - name: smtp\n"
                 "    type: tcp\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "    expect: \"220 \"\n"
                 "  - name: imap\n"
                 "    type: tcp\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "  - name: silent\n"
                 "    type: tcp\n"
                 "    timeout: 500ms\n"
                 "    address: \"127.0.0.1:%u\"\n"
                 "    expect: \"220 \"\n",
                 s->open_port, s->smtp.port, s->closed_port, s->open_port);
}

static void servers_stop(Servers *s) {
        loopback_peer_stop(&s->smtp);
        safe_close(s->listening);
}

TEST(fallback_table) {
        _cleanup_(run_done) Run r = {};
        Servers s;
        Fixture f;
        char first[512];

        servers_start(&s);
        fixture_make(&f, s.yaml);
        r = run_cli("--control-socket", f.socket, "--config", f.config);
        fprintf(stderr, "%s%s  (exit %d in %.3fs)\n", r.out, r.err, r.exit_code, usec_to_seconds(r.took));

        /* The worst probe counts in full. */
        ASSERT_EQ(r.exit_code, 2);
        snprintf(first, sizeof first,
                 "the agent is not running (no control socket at %s): these results come from a one-off run of "
                 "the probes by rupost-health, not from the agent; nothing heals this node meanwhile\n"
                 "node mail-test, one-off run by rupost-health " PROJECT_VERSION ": critical\n",
                 f.socket);
        ASSERT_TRUE(strncmp(r.out, first, strlen(first)) == 0);
        ASSERT_PROBE_LINE(r.out, "submission", "ok", "accepted the connection");
        ASSERT_PROBE_LINE(r.out, "smtp", "ok", "answered '220 mail.test ESMTP'");
        ASSERT_PROBE_LINE(r.out, "imap", "critical", "Connection refused");
        ASSERT_PROBE_LINE(r.out, "silent", "critical", "no answer within 500ms while waiting for the banner");
        ASSERT_STREQ(r.err, "");

        /* The silent probe ends at its own timeout, and the command right
         * after it: not at the bound (the longest timeout plus the margin). */
        ASSERT_TRUE(r.took >= 500 * USEC_PER_MSEC);
        ASSERT_TRUE(r.took < 500 * USEC_PER_MSEC + ONESHOT_MARGIN);

        fixture_done(&f);
        servers_stop(&s);
}

TEST(fallback_json) {
        _cleanup_(run_done) Run r = {}, k = {};
        struct json_object *root, *probes;
        Servers s;
        Fixture f;

        servers_start(&s);
        fixture_make(&f, s.yaml);
        r = run_cli("--control-socket", f.socket, "--config", f.config, "--json");
        ASSERT_EQ(r.exit_code, 2);
        root = json_tokener_parse(r.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "source")), "rupost-health");
        ASSERT_CONTAINS(json_object_get_string(get(root, "agent_error")), "the agent is not running (no control socket at ");
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "critical");
        ASSERT_STREQ(json_object_get_string(get(root, "node")), "mail-test");
        ASSERT_TRUE(get(root, "node_state") == NULL);

        probes = get(root, "probes");
        ASSERT_EQ(json_object_array_length(probes), 4U);
        {
                static const char *const names[] = { "submission", "smtp", "imap", "silent" };
                static const char *const statuses[] = { "ok", "ok", "critical", "critical" };

                for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                        struct json_object *p = json_object_array_get_idx(probes, i);

                        ASSERT_STREQ(json_object_get_string(get(p, "name")), names[i]);
                        /* One run, no hysteresis: the run's own status. */
                        ASSERT_STREQ(json_object_get_string(get(p, "status")), statuses[i]);
                        ASSERT_STREQ(json_object_get_string(get(p, "last_status")), statuses[i]);
                        /* Once, though the first probe's interval is shorter
                         * than the last one's timeout. */
                        ASSERT_EQ(json_object_get_int(get(p, "runs")), 1);
                        ASSERT_EQ(json_object_get_int(get(p, "timeouts")), i == 3 ? 1 : 0);
                        ASSERT_FALSE(json_object_get_boolean(get(p, "running")));
                }
        }
        json_object_put(root);

        /* skew falls back too; no probe here measures a clock. */
        k = run_cli("--control-socket", f.socket, "--config", f.config, "--json", "skew");
        ASSERT_EQ(k.exit_code, 1);
        root = json_tokener_parse(k.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "source")), "rupost-health");
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "warning");
        json_object_put(root);

        fixture_done(&f);
        servers_stop(&s);
}

/* Every probe ok: still a warning, because the agent is down. */
TEST(fallback_all_ok_is_a_warning) {
        _cleanup_(run_done) Run r = {}, j = {};
        char yaml[512];
        uint16_t port;
        int fd = test_loopback_socket(SOCK_STREAM, &port);
        Fixture f;

        snprintf(yaml, sizeof yaml,
                 "node: mail-test\nprobes:\n  - name: smtp\n    type: tcp\n    address: \"127.0.0.1:%u\"\n", port);
        fixture_make(&f, yaml);
        r = run_cli("--control-socket", f.socket, "--config", f.config);
        ASSERT_EQ(r.exit_code, 1);
        ASSERT_CONTAINS(r.out, "one-off run by rupost-health " PROJECT_VERSION ": warning\n");
        ASSERT_PROBE_LINE(r.out, "smtp", "ok", "accepted the connection");

        j = run_cli("--control-socket", f.socket, "--config", f.config, "--json");
        ASSERT_EQ(j.exit_code, 1);
        ASSERT_CONTAINS(j.out, "\"status\": \"warning\"");

        fixture_done(&f);
        safe_close(fd);
}

/* A socket file left by an agent that died: nobody listens, same fallback. */
TEST(fallback_when_nothing_listens) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(run_done) Run r = {};
        Fixture f;
        int fd;

        fixture_make(&f, "node: mail-test\nprobes: []\n");
        ASSERT_TRUE(strlen(f.socket) < sizeof sa.sun_path);
        memcpy(sa.sun_path, f.socket, strlen(f.socket) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        safe_close(fd);

        r = run_cli("--control-socket", f.socket, "--config", f.config);
        ASSERT_EQ(r.exit_code, 1);
        ASSERT_CONTAINS(r.out, "the agent is not running (nothing listens on ");
        ASSERT_CONTAINS(r.out, "no probes configured\n");
        fixture_done(&f);
}

TEST(no_fallback) {
        _cleanup_(run_done) Run r = {};
        uint16_t port;
        int fd = test_loopback_socket(SOCK_STREAM, &port);
        char yaml[512];
        Fixture f;

        snprintf(yaml, sizeof yaml,
                 "node: mail-test\nprobes:\n  - name: smtp\n    type: tcp\n    address: \"127.0.0.1:%u\"\n", port);
        fixture_make(&f, yaml);
        r = run_cli("--control-socket", f.socket, "--config", f.config, "--no-fallback");
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "rupost-health: the agent is not running (no control socket at ");
        fixture_done(&f);
        safe_close(fd);
}

/* The cluster view and maintenance are the agent's: no fallback. */
TEST(agent_verbs_do_not_fall_back) {
        static const char *const verbs[][2] = { { "cluster", NULL }, { "maintenance", "off" } };
        Fixture f;

        fixture_make(&f, "node: mail-test\nprobes: []\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_(run_done) Run r = run_cli("--control-socket", f.socket, "--config", f.config, verbs[i][0],
                                                    verbs[i][1]);

                ASSERT_EQ(r.exit_code, 3);
                ASSERT_STREQ(r.out, "");
                ASSERT_CONTAINS(r.err, "the agent is not running (no control socket at ");
                ASSERT_TRUE(strstr(r.err, "one-off") == NULL);
        }
        fixture_done(&f);
}

/* An agent configured with another socket may be running there: it is
 * asked there, and nothing runs behind its back. Here it accepts and never
 * answers, as a busy agent would. */
TEST(config_names_another_socket) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(run_done) Run r = {};
        char yaml[512], sock[128];
        Fixture f;
        int fd;

        if (access(CONFIG_DEFAULT_CONTROL_SOCKET, F_OK) >= 0) {
                fprintf(stderr, "skipped: an agent's socket exists at " CONFIG_DEFAULT_CONTROL_SOCKET "\n");
                return;
        }
        fixture_make(&f, "");
        snprintf(sock, sizeof sock, "%s/other.sock", f.dir);
        snprintf(yaml, sizeof yaml, "node: mail-test\ncontrol_socket: \"%s\"\nprobes: []\n", sock);
        fixture_make_config(&f, yaml);
        ASSERT_TRUE(strlen(sock) < sizeof sa.sun_path);
        memcpy(sa.sun_path, sock, strlen(sock) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 8));

        r = run_cli("--config", f.config, "--timeout", "300ms");
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "the agent did not answer on ");
        ASSERT_CONTAINS(r.err, sock);

        safe_close(fd);
        ASSERT_OK(unlink(sock));
        fixture_done(&f);
}

TEST(broken_config) {
        _cleanup_(run_done) Run r = {}, j = {}, m = {};
        struct json_object *root;
        char expected[256];
        Fixture f;

        fixture_make(&f,
                     "node: mail-test\n"
                     "probes:\n"
                     "  - name: smtp\n"
                     "    type: tcp\n"
                     "    adress: \"127.0.0.1:25\"\n");
        r = run_cli("--control-socket", f.socket, "--config", f.config);
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "the agent is not running (no control socket at ");
        ASSERT_CONTAINS(r.err, "cannot be loaded to run the probes without it:\n");
        snprintf(expected, sizeof expected, "\n  %s:5:5: probes[0].adress: unknown key", f.config);
        ASSERT_CONTAINS(r.err, expected);

        j = run_cli("--control-socket", f.socket, "--config", f.config, "--json");
        ASSERT_EQ(j.exit_code, 3);
        root = json_tokener_parse(j.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "unknown");
        ASSERT_CONTAINS(json_object_get_string(json_object_array_get_idx(get(root, "config_errors"), 0)),
                        expected + 3);
        json_object_put(root);
        fixture_done(&f);

        /* No configuration at all: the same, with the loader's reason. */
        m = run_cli("--control-socket", f.socket, "--config", f.config);
        ASSERT_EQ(m.exit_code, 3);
        snprintf(expected, sizeof expected, "  %s: cannot open: No such file or directory\n", f.config);
        ASSERT_CONTAINS(m.err, expected);
}

/* A share that hangs: the probe's child sleeps in the kernel, immune to
 * SIGKILL. rupost-health still ends at the bound, says the child is stuck,
 * and leaves it to be reaped by whoever inherits it, here the test (a child
 * subreaper), once the server goes away. */
TEST(fallback_hung_share_is_bounded) {
        _cleanup_(run_done) Run r = {};
        char dir[] = "/tmp/test-health-fallback-share-XXXXXX", yaml[512];
        unsigned reaped = 0;
        pid_t server;
        Fixture f;
        int fd;

        if (geteuid() != 0) {
                fprintf(stderr, "skipped: needs root to mount a FUSE filesystem\n");
                return;
        }
        /* Other tests of this file do not mount: a private namespace from
         * here on is harmless to them. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                fprintf(stderr, "skipped: cannot make a private mount namespace: %m\n");
                return;
        }
        ASSERT_TRUE(mkdtemp(dir));
        fd = fuse_hang_mount(dir);
        if (fd < 0) {
                fprintf(stderr, "skipped: cannot mount FUSE on %s: %s\n", dir, strerror(-fd));
                ASSERT_OK(rmdir(dir));
                return;
        }
        server = fork();
        ASSERT_TRUE(server >= 0);
        if (server == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                fuse_hang_serve(fd);
        }
        safe_close(fd);
        ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 1));

        snprintf(yaml, sizeof yaml,
                 "node: mail-test\n"
                 "probes:\n"
                 "  - name: queues\n"
                 "    type: nfs\n"
                 "    timeout: 500ms\n"
                 "    path: \"%s\"\n"
                 "    fstype: fuse\n",
                 dir);
        fixture_make(&f, yaml);
        r = run_cli("--control-socket", f.socket, "--config", f.config);
        fprintf(stderr, "%s%s  (exit %d in %.3fs)\n", r.out, r.err, r.exit_code, usec_to_seconds(r.took));
        ASSERT_EQ(r.exit_code, 2);
        ASSERT_PROBE_LINE(r.out, "queues", "critical", "no answer within 500ms");
        ASSERT_CONTAINS(r.err, "1 child process of the probes did not die when killed at the deadline");
        /* It waited for the child as long as the bound allows, not longer. */
        ASSERT_TRUE(r.took >= 500 * USEC_PER_MSEC + ONESHOT_MARGIN);
        ASSERT_TRUE(r.took < 500 * USEC_PER_MSEC + ONESHOT_MARGIN + 1 * USEC_PER_SEC);

        /* The server goes away, the request fails, the orphan exits and its
         * new parent reaps it. */
        ASSERT_OK(kill(server, SIGKILL));
        ASSERT_EQ(waitpid(server, NULL, 0), server);
        for (usec_t end = now(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC; now(CLOCK_MONOTONIC) < end;) {
                pid_t pid = waitpid(-1, NULL, WNOHANG);

                if (pid > 0)
                        reaped++;
                else if (pid < 0 && errno == ECHILD)
                        break;
                else
                        peer_sleep_ms(20);
        }
        ASSERT_EQ(reaped, 1U);
        ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 0));

        (void) umount2(dir, MNT_DETACH);
        ASSERT_OK(rmdir(dir));
        fixture_done(&f);
}

DEFINE_TEST_MAIN();
