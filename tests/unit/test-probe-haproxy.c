/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The haproxy probe against a fake runtime API: a forked child serving a
 * unix socket in a temporary directory with the answer a real HAProxy 2.6
 * gave (two nodes, three backends, one peer), and variants of it with
 * servers down, a backend with none up, a peer not established, a stick
 * table almost full, a refused command, a cut answer, a peer that never
 * finishes, and no HAProxy at all. */

#include <sys/stat.h>
#include <sys/un.h>

#include "loopback.h"
#include "probe-run.h"

static char *real_answer(void) {
        const char *root = getenv("TEST_SOURCE_ROOT");
        char path[1024];
        struct stat st;

        ASSERT_TRUE(root);
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz-haproxy/node1-2.6.12.txt", root);
        FILE *f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_OK(fstat(fileno(f), &st));
        char *data = calloc(1, (size_t) st.st_size + 1);
        ASSERT_TRUE(data);
        ASSERT_EQ(fread(data, 1, (size_t) st.st_size, f), st.st_size);
        fclose(f);
        return data;
}

/* The answer with the first occurrence of `old` replaced. */
static char *edit(const char *text, const char *old, const char *new) {
        const char *at = strstr(text, old);
        char *s = NULL;

        ASSERT_TRUE(at);
        ASSERT_TRUE(asprintf(&s, "%.*s%s%s", (int) (at - text), text, new, at + strlen(old)) > 0);
        return s;
}

typedef struct Fake {
        pid_t pid;
        char dir[64];
        char path[100];
} Fake;

/* Serves one connection: reads the command line, checks it, answers and
 * closes (or, with hang, answers half and never closes). */
static Fake fake_start(const char *answer, bool hang) {
        Fake f = {};
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(f.dir, sizeof f.dir, "/tmp/test-haproxy-XXXXXX");
        ASSERT_TRUE(mkdtemp(f.dir));
        snprintf(f.path, sizeof f.path, "%s/admin.sock", f.dir);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f.path);

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 4));

        f.pid = fork();
        ASSERT_TRUE(f.pid >= 0);
        if (f.pid > 0) {
                close(fd);
                return f;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        int c = accept(fd, NULL, NULL);
        char line[256];
        size_t n = 0;
        while (n < sizeof line - 1) {
                ssize_t k = read(c, line + n, 1);
                if (k <= 0 || line[n] == '\n')
                        break;
                n++;
        }
        line[n] = 0;
        if (!streq(line, "show info;show stat;show peers;show table"))
                _exit(3);
        size_t len = strlen(answer);
        size_t send_len = hang ? len / 2 : len;
        for (size_t off = 0; off < send_len;) {
                ssize_t k = write(c, answer + off, send_len - off);
                if (k <= 0)
                        _exit(2);
                off += (size_t) k;
        }
        if (hang)
                sleep(30);
        _exit(0);
}

static void fake_stop(Fake *f) {
        if (f->pid > 0)
                loopback_peer_stop(&(LoopbackPeer) { .pid = f->pid });
        (void) unlink(f->path);
        (void) rmdir(f->dir);
}

/* The value of the sample of `family` whose labels contain `labels`
 * (NULL: any), -1 if absent; *ret_count counts the family's samples. */
static double sample(const Probe *p, const char *family, const char *labels, size_t *ret_count) {
        double v = -1;
        size_t n = 0;

        for (size_t i = 0; i < p->last.n_samples; i++) {
                const Sample *s = &p->last.samples[i];
                if (!streq(s->family->name, family))
                        continue;
                n++;
                if (!labels || (s->labels && strstr(s->labels, labels)))
                        v = s->value;
        }
        if (ret_count)
                *ret_count = n;
        return v;
}


/* Runs a haproxy probe (with extra keys) against the answer; `answer` NULL
 * means no socket at all. */
static Probe *run_against(ProbeRun *run, Fake *fake, const char *answer, bool hang, const char *extra) {
        char yaml[2048];

        if (answer)
                *fake = fake_start(answer, hang);
        else
                snprintf(fake->path, sizeof fake->path, "/tmp/test-haproxy-does-not-exist/admin.sock");
        snprintf(yaml, sizeof yaml,
                 "probes:\n"
                 "  - name: haproxy\n"
                 "    type: haproxy\n"
                 "    timeout: 500ms\n"
                 "    socket: %s\n"
                 "%s",
                 fake->path, extra);
        probe_run_load(run, yaml);
        return probe_run_once(run, 5 * USEC_PER_SEC);
}

typedef struct Case {
        const char *name;
        const char *old, *new; /* edit of the real answer */
        const char *old2, *new2;
        const char *extra;
        bool hang;
        ProbeStatus status;
        const char *reason;
        double up;
} Case;

static const Case cases[] = {
        {
                .name = "healthy node (real answer)",
                .status = PROBE_OK,
                .reason = "haproxy 2.6.12-1+deb12u4: 3 backends, 6 servers up, 1 peer established",
                .up = 1,
        },
        {
                .name = "peer connecting",
                .old = "last_status=ESTA", .new = "last_status=CONN",
                .status = PROBE_WARNING,
                .reason = "peer node2 (10.231.0.12:10000) is CONN, not ESTA: stick tables are not synchronised",
                .up = 1,
        },
        {
                .name = "fewer peers than expected",
                .extra = "    expected_peers: 2\n",
                .status = PROBE_CRITICAL,
                .reason = "haproxy has 1 remote peer on port 10000, expected 2",
                .up = 1,
        },
        {
                .name = "peers on another port are not judged",
                .old = "last_status=ESTA", .new = "last_status=CONN",
                .extra = "    peer_port: 10001\n",
                .status = PROBE_OK,
                .up = 1,
        },
        {
                .name = "backup server down",
                .old = "smtp,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,", .new = "smtp,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,",
                .status = PROBE_WARNING,
                .reason = "1 server DOWN: smtp/node2",
                .up = 1,
        },
        {
                .name = "backend without a server up",
                .old = "https,node1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,", .new = "https,node1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,",
                .old2 = "https,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,", .new2 = "https,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,",
                .status = PROBE_CRITICAL,
                .reason = "backend https has no server up (node1 DOWN, node2 MAINT): clients of it get errors; 1 server DOWN: https/node1",
                .up = 1,
        },
        {
                .name = "stick table almost full",
                .old = "# table: imaps, type: ip, size:102400, used:0", .new = "# table: imaps, type: ip, size:102400, used:97000",
                .status = PROBE_WARNING,
                .reason = "stick table imaps is 95% full (97000 of 102400)",
                .up = 1,
        },
        {
                .name = "show peers refused",
                .old = "0x55783cb82740: [28/Nov/2026:08:22:44]", .new = "Permission denied.\n\n0x55783cb82740: [28/Nov/2026:08:22:44]",
                .status = PROBE_UNKNOWN,
                .reason = "haproxy refused 'show peers' on ",
                .up = 0,
        },
        {
                .name = "cut short",
                .old = "# table: https", .new = "",
                .old2 = "\n# table: imaps, type: ip, size:102400, used:0\n# table: smtp, type: ip, size:102400, used:0\n\n", .new2 = "",
                .status = PROBE_UNKNOWN,
                .reason = "the answer ended before all four commands were answered",
                .up = 0,
        },
        {
                .name = "never finishes",
                .hang = true,
                .status = PROBE_CRITICAL,
                .reason = "no answer within 500ms while reading the runtime API answer",
                .up = -1,
        },
};

TEST(haproxy_probe_against_a_fake_runtime_api) {
        _cleanup_free_ char *real = real_answer();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                _cleanup_free_ char *a1 = NULL, *a2 = NULL;
                ProbeRun run = {};
                Fake fake = {};

                fprintf(stderr, "case: %s\n", c->name);
                const char *answer = real;
                if (c->old)
                        answer = a1 = edit(answer, c->old, c->new);
                if (c->old2)
                        answer = a2 = edit(answer, c->old2, c->new2);
                Probe *p = run_against(&run, &fake, answer, c->hang, c->extra ?: "");
                ASSERT_EQ(p->last.status, c->status);
                if (c->reason)
                        ASSERT_CONTAINS(p->last.reason, c->reason);
                ASSERT_TRUE(sample(p, "rupost_haproxy_up", NULL, NULL) == c->up);
                if (c->up == 1) {
                        size_t n;
                        /* 6 servers x 5 states, one of them 1 */
                        (void) sample(p, "rupost_haproxy_server_status", NULL, &n);
                        ASSERT_EQ(n, 30);
                        ASSERT_TRUE(sample(p, "rupost_haproxy_server_status",
                                           "proxy=\"smtp\",server=\"node1\",state=\"UP\"", NULL) == 1);
                        ASSERT_TRUE(sample(p, "rupost_haproxy_server_status",
                                           "proxy=\"smtp\",server=\"node1\",state=\"DOWN\"", NULL) == 0);
                        ASSERT_TRUE(sample(p, "rupost_haproxy_backend_active_servers", "proxy=\"smtp\"", NULL) == 1);
                        ASSERT_TRUE(sample(p, "rupost_haproxy_stick_table_size", "table=\"https\"", NULL) == 102400);
                        ASSERT_TRUE(sample(p, "rupost_haproxy_process_current_connections", NULL, NULL) == 0);
                        (void) sample(p, "rupost_haproxy_peer_connected", NULL, &n);
                        ASSERT_EQ(n, 1); /* the local peer is not a connection */
                        ASSERT_TRUE(sample(p, "rupost_node_manageable", NULL, NULL) == 1);
                }

                probe_run_done(&run);
                fake_stop(&fake);
        }
}

TEST(no_haproxy) {
        ProbeRun run = {};
        Fake fake = {};

        Probe *p = run_against(&run, &fake, NULL, false, "");
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "does not exist: is haproxy running, with 'stats socket");
        ASSERT_TRUE(sample(p, "rupost_haproxy_up", NULL, NULL) == 0);
        ASSERT_TRUE(sample(p, "rupost_node_manageable", NULL, NULL) == 0);
        probe_run_done(&run);

        /* A socket file left behind by a haproxy that is gone. */
        char dir[] = "/tmp/test-haproxy-XXXXXX", yaml[512];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        ASSERT_TRUE(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/admin.sock", dir);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        close(fd);
        snprintf(yaml, sizeof yaml, "probes:\n  - name: haproxy\n    type: haproxy\n    socket: %s\n", sa.sun_path);
        probe_run_load(&run, yaml);
        p = probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "connect failed: Connection refused: haproxy is not running");
        unlink(sa.sun_path);
        rmdir(dir);
        probe_run_done(&run);
}

TEST(node_manageable_follows_the_control_system) {
        _cleanup_free_ char *real = real_answer();
        uint16_t port;

        /* The "control system": a port that listens (connects succeed from
         * the backlog), then the same port closed. */
        int lfd = test_loopback_socket(SOCK_STREAM, &port);

        for (int running = 1; running >= 0; running--) {
                ProbeRun run = {};
                char yaml[1024];

                /* Before the fork, or the fake's copy would keep it listening. */
                if (!running)
                        lfd = safe_close(lfd);
                Fake fake = fake_start(real, false);
                snprintf(yaml, sizeof yaml,
                         "probes:\n"
                         "  - name: control-panel\n"
                         "    type: tcp\n"
                         "    address: \"127.0.0.1:%u\"\n"
                         "  - name: haproxy\n"
                         "    type: haproxy\n"
                         "    socket: %s\n"
                         "    control_system_probe: control-panel\n",
                         port, fake.path);
                probe_run_load(&run, yaml);
                (void) probe_run_once(&run, 5 * USEC_PER_SEC);
                probe_run_select(&run, 1);
                Probe *p = probe_run_once(&run, 5 * USEC_PER_SEC);
                fprintf(stderr, "control %s: %s: %s\n", running ? "running" : "down",
                        probe_status_to_string(p->last.status), p->last.reason);
                /* HAProxy itself is fine either way. */
                ASSERT_EQ(p->last.status, PROBE_OK);
                ASSERT_TRUE(sample(p, "rupost_node_manageable", NULL, NULL) == running);
                if (!running)
                        ASSERT_CONTAINS(p->last.reason,
                                        "; node not manageable: control system probe 'control-panel' is critical");

                probe_run_done(&run);
                fake_stop(&fake);
        }
}

TEST(config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } bad[] = {
                { "    socket: run/haproxy.sock\n", "probes[0].socket: 'run/haproxy.sock' is not an absolute path" },
                { "    peer_port: 70000\n", "probes[0].peer_port" },
                { "    stick_table_warning: 0\n", "probes[0].stick_table_warning" },
                { "    control_system_probe: haproxy\n", "probes[0].control_system_probe: names this probe itself" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[512];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: haproxy\n    type: haproxy\n%s", bad[i].keys);
                test_config_load_fails(yaml, bad[i].error);
        }
}

DEFINE_TEST_MAIN()
