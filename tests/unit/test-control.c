/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control protocol's framing, and the agent's control socket served on a
 * real event loop: the server runs in a child process, the test is its client. */

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "tests.h"

#include "build-config.h"
#include "cluster-fixture.h"
#include "config.h"
#include "control.h"
#include "control.pb-c.h"
#include "lib/control-proto.h"
#include "lib/log.h"
#include "manager.h"
#include "node.h"
#include "probe.h"

typedef Rupost__Control__Response Response;
typedef Rupost__Control__ProbeState ProbeState;

/* ---- framing ------------------------------------------------------------ */

static uint8_t *pack_sample_response(size_t *ret_size) {
        Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        ProbeState a = RUPOST__CONTROL__PROBE_STATE__INIT, b = RUPOST__CONTROL__PROBE_STATE__INIT;
        ProbeState *ps[] = { &a, &b };
        uint8_t *data;

        a.name = (char *) "smtp";
        a.type = (char *) "tcp";
        a.status = (char *) "ok";
        a.last_status = (char *) "ok";
        a.runs = 12;
        a.have_result = true;
        a.duration_seconds = 0.012;
        b.name = (char *) "imap";
        b.type = (char *) "tcp";
        b.status = (char *) "critical";
        b.reason = (char *) "connection refused";
        b.timeouts = 3;
        resp.node = (char *) "mail1";
        resp.version = (char *) "1.2.3";
        resp.start_time = 1700000000.5;
        resp.n_probes = 2;
        resp.probes = ps;

        ASSERT_OK(control_frame_pack(&resp.base, CONTROL_MAX_MESSAGE, &data, ret_size));
        return data;
}

static void assert_sample_response(const Response *r) {
        ASSERT_STREQ(r->error, "");
        ASSERT_STREQ(r->node, "mail1");
        ASSERT_STREQ(r->version, "1.2.3");
        ASSERT_TRUE(r->start_time == 1700000000.5);
        ASSERT_EQ(r->n_probes, 2);
        ASSERT_STREQ(r->probes[0]->name, "smtp");
        ASSERT_STREQ(r->probes[0]->status, "ok");
        ASSERT_EQ(r->probes[0]->runs, 12);
        ASSERT_TRUE(r->probes[0]->have_result);
        ASSERT_TRUE(r->probes[0]->duration_seconds == 0.012);
        ASSERT_STREQ(r->probes[1]->name, "imap");
        ASSERT_STREQ(r->probes[1]->status, "critical");
        ASSERT_STREQ(r->probes[1]->reason, "connection refused");
        ASSERT_EQ(r->probes[1]->timeouts, 3);
        ASSERT_FALSE(r->probes[1]->have_result);
}

TEST(frame_round_trip) {
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;

        data = pack_sample_response(&size);
        ASSERT_TRUE(size > CONTROL_FRAME_HEADER_SIZE);
        /* The header is the body's length, big-endian. */
        ASSERT_EQ(((size_t) data[0] << 24 | (size_t) data[1] << 16 | (size_t) data[2] << 8 | data[3]),
                  size - CONTROL_FRAME_HEADER_SIZE);

        ASSERT_OK(control_frame_unpack(&rupost__control__response__descriptor, data, size, CONTROL_MAX_MESSAGE,
                                       &m));
        assert_sample_response((const Response *) m);
}

TEST(frame_reader_byte_by_byte) {
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t size, used;

        data = pack_sample_response(&size);
        for (size_t i = 0; i + 1 < size; i++) {
                ASSERT_EQ(control_reader_push(&r, data + i, 1, &used), 0);
                ASSERT_EQ(used, 1);
        }
        ASSERT_EQ(control_reader_push(&r, data + size - 1, 1, &used), 1);
        /* Nothing past the frame is taken. */
        ASSERT_EQ(control_reader_push(&r, "x", 1, &used), 1);
        ASSERT_EQ(used, 0);

        ASSERT_OK(control_reader_unpack(&r, &rupost__control__response__descriptor, &m));
        assert_sample_response((const Response *) m);
}

TEST(frame_status_request_is_empty) {
        Rupost__Control__Request req = RUPOST__CONTROL__REQUEST__INIT;
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;

        /* proto3 leaves out fields at their default, so STATUS is a bare
         * zero length: the decoder must take an empty body. */
        ASSERT_OK(control_frame_pack(&req.base, CONTROL_MAX_MESSAGE, &data, &size));
        ASSERT_EQ(size, 4);
        ASSERT_EQ(data[0] | data[1] | data[2] | data[3], 0);
        ASSERT_OK(control_frame_unpack(&rupost__control__request__descriptor, data, size, CONTROL_MAX_MESSAGE, &m));
        ASSERT_EQ(((Rupost__Control__Request *) m)->kind, RUPOST__CONTROL__REQUEST__KIND__STATUS);
}

TEST(frame_oversized_rejected) {
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        ProtobufCMessage *m = NULL;
        uint32_t over = CONTROL_MAX_MESSAGE + 1;
        uint32_t max = CONTROL_MAX_MESSAGE;
        uint8_t hdr[4] = { over >> 24, (over >> 16) & 0xff, (over >> 8) & 0xff, over & 0xff };
        uint8_t max_hdr[4] = { max >> 24, (max >> 16) & 0xff, (max >> 8) & 0xff, max & 0xff };
        uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
        size_t n;

        ASSERT_ERROR(control_frame_parse_header(hdr, CONTROL_MAX_MESSAGE, &n), EMSGSIZE);
        ASSERT_ERROR(control_frame_parse_header(huge, CONTROL_MAX_MESSAGE, &n), EMSGSIZE);
        ASSERT_OK(control_frame_parse_header(max_hdr, CONTROL_MAX_MESSAGE, &n));
        ASSERT_EQ(n, CONTROL_MAX_MESSAGE);

        ASSERT_ERROR(control_frame_unpack(&rupost__control__request__descriptor, hdr, sizeof hdr,
                                          CONTROL_MAX_MESSAGE, &m), EMSGSIZE);
        ASSERT_ERROR(control_reader_push(&r, hdr, sizeof hdr, NULL), EMSGSIZE);

        /* An announced maximum costs nothing until the bytes arrive. */
        control_reader_done(&r);
        ASSERT_EQ(control_reader_push(&r, max_hdr, sizeof max_hdr, NULL), 0);
        ASSERT_TRUE(r.body == NULL);
        ASSERT_EQ(control_reader_push(&r, "abc", 3, NULL), 0);
        ASSERT_TRUE(r.allocated < 64 * 1024);
}

TEST(frame_truncated_rejected) {
        _cleanup_free_ uint8_t *data = NULL;
        ProtobufCMessage *m = NULL;
        size_t size;

        data = pack_sample_response(&size);
        for (size_t cut = 0; cut < size; cut++)
                ASSERT_ERROR(control_frame_unpack(&rupost__control__response__descriptor, data, cut,
                                                  CONTROL_MAX_MESSAGE, &m), EBADMSG);

        /* A header that claims fewer bytes than the message needs: the body
         * ends in the middle of a field. */
        data[3] -= 3;
        ASSERT_ERROR(control_frame_unpack(&rupost__control__response__descriptor, data, size - 3,
                                          CONTROL_MAX_MESSAGE, &m), EBADMSG);
        ASSERT_TRUE(m == NULL);
}

TEST(frame_trailing_bytes_rejected) {
        _cleanup_free_ uint8_t *data = NULL;
        ProtobufCMessage *m = NULL;
        uint8_t *longer;
        size_t size;

        data = pack_sample_response(&size);
        longer = realloc(data, size + 1);
        ASSERT_TRUE(longer);
        data = longer;
        data[size] = 0;
        ASSERT_ERROR(control_frame_unpack(&rupost__control__response__descriptor, data, size + 1,
                                          CONTROL_MAX_MESSAGE, &m), EBADMSG);
}

TEST(frame_garbage_rejected) {
        static const uint8_t garbage[] = { 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        /* Field 1 as a length-delimited string of 100 bytes, with 2 present. */
        static const uint8_t short_string[] = { 0, 0, 0, 4, 0x0a, 100, 'a', 'b' };
        ProtobufCMessage *m = NULL;

        ASSERT_ERROR(control_frame_unpack(&rupost__control__response__descriptor, garbage, sizeof garbage,
                                          CONTROL_MAX_MESSAGE, &m), EBADMSG);
        ASSERT_ERROR(control_frame_unpack(&rupost__control__response__descriptor, short_string,
                                          sizeof short_string, CONTROL_MAX_MESSAGE, &m), EBADMSG);
        ASSERT_ERROR(control_frame_unpack(&rupost__control__request__descriptor, garbage, sizeof garbage,
                                          CONTROL_MAX_MESSAGE, &m), EBADMSG);
}

TEST(frame_fd_eof_mid_frame) {
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        _cleanup_free_ uint8_t *data = NULL;
        int sv[2];
        size_t size;

        data = pack_sample_response(&size);
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
        ASSERT_EQ(control_reader_read_fd(&r, sv[0]), -EAGAIN);
        ASSERT_EQ(write(sv[1], data, size / 2), (ssize_t) (size / 2));
        ASSERT_EQ(control_reader_read_fd(&r, sv[0]), -EAGAIN);
        safe_close(sv[1]);
        ASSERT_EQ(control_reader_read_fd(&r, sv[0]), -EPIPE);
        safe_close(sv[0]);
}

TEST(frame_writer_partial) {
        _cleanup_(control_writer_done) ControlWriter w = {};
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        _cleanup_free_ char *big = NULL;
        uint8_t *data;
        size_t size;
        int sv[2], k, sndbuf = 4096;

        /* A response far larger than the socket buffer goes out in pieces. */
        big = malloc(1024 * 1024);
        ASSERT_TRUE(big);
        memset(big, 'x', 1024 * 1024 - 1);
        big[1024 * 1024 - 1] = 0;
        resp.error = big;
        ASSERT_OK(control_frame_pack(&resp.base, CONTROL_MAX_MESSAGE, &data, &size));
        control_writer_set(&w, data, size);

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
        unsigned rounds = 0;
        for (;;) {
                k = control_writer_write_fd(&w, sv[0]);
                if (k == 1)
                        break;
                ASSERT_EQ(k, -EAGAIN);
                rounds++;
                k = control_reader_read_fd(&r, sv[1]);
                ASSERT_EQ(k, -EAGAIN);
        }
        ASSERT_TRUE(rounds > 1);
        ASSERT_EQ(control_reader_read_fd(&r, sv[1]), 1);
        ASSERT_OK(control_reader_unpack(&r, &rupost__control__response__descriptor, &m));
        ASSERT_EQ(strlen(((Response *) m)->error), 1024 * 1024 - 1);
        safe_close(sv[0]);
        safe_close(sv[1]);
}

/* ---- a real server ------------------------------------------------------ */

typedef struct ProbeSpec {
        const char *name;
        ProbeStatus status;
        ProbeStatus last_status;
        const char *reason;
        bool have_result;
        bool running;
        /* Samples of the last run: every third a clock offset (source="s<k>"),
         * the others rupost_test_value{i="<k>"} padded to label_pad bytes. */
        unsigned n_samples;
        size_t label_pad;
} ProbeSpec;

static const MetricFamily test_offset_family = { "rupost_time_offset_seconds", METRIC_GAUGE, "Offset." },
                          test_value_family = { "rupost_test_value", METRIC_GAUGE, "A value." };

static void fill_test_samples(Probe *p, const ProbeSpec *spec) {
        p->last.samples = calloc(spec->n_samples, sizeof *p->last.samples);
        ASSERT_TRUE(spec->n_samples == 0 || p->last.samples);
        for (unsigned k = 0; k < spec->n_samples; k++) {
                Sample *x = &p->last.samples[k];
                bool offset = k % 3 == 2;
                size_t len = MAX(spec->label_pad, (size_t) 32);

                x->family = offset ? &test_offset_family : &test_value_family;
                x->labels = malloc(len + 1);
                ASSERT_TRUE(x->labels);
                snprintf(x->labels, len + 1, offset ? "source=\"s%u\"" : "i=\"%u\"", k);
                if (!offset && spec->label_pad > strlen(x->labels)) {
                        /* i="<k>",pad="xxxx" */
                        size_t l = strlen(x->labels);
                        memcpy(x->labels + l, ",pad=\"", 6);
                        memset(x->labels + l + 6, 'x', spec->label_pad - l - 7);
                        x->labels[spec->label_pad - 1] = '"';
                        x->labels[spec->label_pad] = 0;
                }
                x->value = k;
        }
        p->last.n_samples = spec->n_samples;
}

typedef struct TestServer {
        pid_t pid;
        char dir[64];
        char path[128];
} TestServer;

#define START_TIME_AGO (90 * USEC_PER_SEC)

/* The healing state the next server starts with; NULL: no healing section.
 * Set before server_start(); the child inherits it. */
static const NodeState *server_node_state = NULL;
static usec_t server_node_since_ago = 0;
#define SERVER_MAX_ATTEMPTS 5U
/* The cluster section the next server starts with; NULL: none. */
static const ClusterConfig *server_cluster = NULL;

/* The child: a Manager put together by hand around a loop, as manager.c
 * would, with probes in the given states. Exits 0 after a clean SIGTERM. */
_Noreturn static void server_child(const char *path, const ProbeSpec *specs, size_t n, int ready_fd) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        Probe **probes = calloc(n + 1, sizeof *probes);
        Config config = { .node = (char *) "mail1" };
        char state_file[160];
        sd_event *e = NULL;
        Manager m = {};
        sigset_t ss;
        int r;

        /* A failed assertion in the test must not leave a server behind. */
        ASSERT_OK(prctl(PR_SET_PDEATHSIG, SIGKILL));
        if (getppid() == 1)
                _exit(EXIT_FAILURE);

        ASSERT_TRUE(probes);
        for (size_t i = 0; i < n; i++) {
                Probe *p;

                ASSERT_OK(probe_new(probe_type_find("tcp"), specs[i].name, &p));
                p->status = specs[i].status;
                p->have_result = specs[i].have_result;
                p->running = specs[i].running;
                if (specs[i].have_result) {
                        p->last.status = specs[i].last_status;
                        p->last.reason = specs[i].reason ? strdup(specs[i].reason) : NULL;
                        p->last.started_realtime = now(CLOCK_REALTIME) - 3 * USEC_PER_SEC;
                        p->last.duration = 12 * USEC_PER_MSEC;
                        fill_test_samples(p, &specs[i]);
                }
                p->changed_realtime = now(CLOCK_REALTIME) - 60 * USEC_PER_SEC;
                p->n_runs = 10 + i;
                p->n_timeouts = i;
                probes[i] = p;
        }
        config.probes = probes;
        config.n_probes = n;

        ASSERT_OK(sigemptyset(&ss));
        ASSERT_OK(sigaddset(&ss, SIGTERM));
        ASSERT_OK(sigprocmask(SIG_BLOCK, &ss, NULL));
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL));
        m.event = e;
        m.config = &config;
        m.start_realtime = now(CLOCK_REALTIME) - START_TIME_AGO;
        if (server_node_state) {
                /* Beside the socket, so that the test can read what persists. */
                snprintf(state_file, sizeof state_file, "%s", path);
                snprintf(strrchr(state_file, '/'), sizeof state_file - (size_t) (strrchr(state_file, '/') - state_file),
                         "/state");
                config.healing = (HealingConfig) {
                        .enabled = true,
                        .max_attempts = SERVER_MAX_ATTEMPTS,
                        .state_file = state_file,
                };
                ASSERT_OK(node_new_for_test(&m, &config.healing, server_node_state,
                                            now(CLOCK_REALTIME) - server_node_since_ago, &m.node));
        }

        if (server_cluster) {
                config.cluster = *server_cluster;
                ASSERT_OK(cluster_new(e, &config.cluster, config.node, &m.cluster));
        }

        r = control_server_new(&m, path, &s);
        if (r < 0)
                _exit(10);
        ASSERT_EQ(write(ready_fd, "R", 1), 1);
        safe_close(ready_fd);

        ASSERT_OK(sd_event_loop(e));

        s = control_server_free(s);
        cluster_free(m.cluster);
        node_free(m.node);
        for (size_t i = 0; i < n; i++)
                probe_free(probes[i]);
        free(probes);
        sd_event_unref(e);
        exit(EXIT_SUCCESS);
}

static void server_start_at(TestServer *t, const char *path, const ProbeSpec *specs, size_t n) {
        int pipefd[2];
        char c;

        snprintf(t->path, sizeof t->path, "%s", path);
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        t->pid = fork();
        ASSERT_TRUE(t->pid >= 0);
        if (t->pid == 0) {
                safe_close(pipefd[0]);
                server_child(t->path, specs, n, pipefd[1]);
        }
        safe_close(pipefd[1]);
        ASSERT_EQ(read(pipefd[0], &c, 1), 1); /* EOF here: the server failed to start */
        safe_close(pipefd[0]);
}

static void server_start(TestServer *t, const ProbeSpec *specs, size_t n) {
        char path[128];

        snprintf(t->dir, sizeof t->dir, "/tmp/test-control-XXXXXX");
        ASSERT_TRUE(mkdtemp(t->dir));
        /* A directory that does not exist yet: the server creates it. */
        snprintf(path, sizeof path, "%s/run/control.sock", t->dir);
        server_start_at(t, path, specs, n);
}

static void server_stop(TestServer *t) {
        int status;

        ASSERT_OK(kill(t->pid, SIGTERM));
        ASSERT_EQ(waitpid(t->pid, &status, 0), t->pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        /* control_server_free() removed the socket. */
        ASSERT_TRUE(access(t->path, F_OK) < 0 && errno == ENOENT);
}

static void test_dir_remove(TestServer *t) {
        char run[160];

        snprintf(run, sizeof run, "%s/run/state", t->dir);
        (void) unlink(run);
        snprintf(run, sizeof run, "%s/run", t->dir);
        (void) rmdir(run);
        ASSERT_OK(rmdir(t->dir));
}

static int client_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 20 };
        int fd;

        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        /* A hung server fails the test instead of hanging it. */
        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof sa));
        return fd;
}

static void send_all(int fd, const void *data, size_t size) {
        ASSERT_EQ(send(fd, data, size, MSG_NOSIGNAL), (ssize_t) size);
}

/* Reads one response frame from a blocking socket. */
static Response *client_read_response(int fd) {
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        ProtobufCMessage *m = NULL;

        for (;;) {
                uint8_t buf[4096];
                ssize_t l = read(fd, buf, sizeof buf);
                size_t used;
                int k;

                ASSERT_TRUE(l > 0);
                k = control_reader_push(&r, buf, (size_t) l, &used);
                ASSERT_OK(k);
                if (k == 1) {
                        ASSERT_EQ(used, (size_t) l); /* nothing after the response */
                        break;
                }
        }
        ASSERT_OK(control_reader_unpack(&r, &rupost__control__response__descriptor, &m));
        return (Response *) m;
}

static void assert_closed(int fd) {
        char c;
        ssize_t l = read(fd, &c, 1);
        ASSERT_TRUE(l == 0 || (l < 0 && errno == ECONNRESET));
}

static Response *request(const char *path, const void *data, size_t size) {
        int fd = client_connect(path);
        Response *resp;

        send_all(fd, data, size);
        resp = client_read_response(fd);
        assert_closed(fd);
        safe_close(fd);
        return resp;
}

static const uint8_t status_request[] = { 0, 0, 0, 0 };

static void response_free(Response *r) {
        protobuf_c_message_free_unpacked(&r->base, NULL);
}

static const ProbeSpec some_probes[] = {
        { "smtp", PROBE_OK, PROBE_OK, "220 mail1 ESMTP", true, false },
        { "imap", PROBE_OK, PROBE_CRITICAL, "connection refused", true, true },
        { "ldap", PROBE_UNKNOWN, 0, NULL, false, true },
};

TEST(server_status) {
        TestServer t;
        Response *r;
        double now_s = usec_to_seconds(now(CLOCK_REALTIME));

        server_start(&t, some_probes, ELEMENTSOF(some_probes));
        r = request(t.path, status_request, sizeof status_request);

        ASSERT_STREQ(r->error, "");
        ASSERT_STREQ(r->node, "mail1");
        ASSERT_STREQ(r->version, PROJECT_VERSION);
        ASSERT_TRUE(fabs(now_s - usec_to_seconds(START_TIME_AGO) - r->start_time) < 10);
        ASSERT_EQ(r->n_probes, 3);

        ASSERT_STREQ(r->probes[0]->name, "smtp");
        ASSERT_STREQ(r->probes[0]->type, "tcp");
        ASSERT_STREQ(r->probes[0]->status, "ok");
        ASSERT_STREQ(r->probes[0]->last_status, "ok");
        ASSERT_STREQ(r->probes[0]->reason, "220 mail1 ESMTP");
        ASSERT_TRUE(r->probes[0]->have_result);
        ASSERT_FALSE(r->probes[0]->running);
        ASSERT_TRUE(fabs(r->probes[0]->duration_seconds - 0.012) < 1e-9);
        ASSERT_TRUE(fabs(now_s - 3 - r->probes[0]->last_run_at) < 10);
        ASSERT_TRUE(fabs(now_s - 60 - r->probes[0]->changed_at) < 10);
        ASSERT_EQ(r->probes[0]->runs, 10);
        ASSERT_EQ(r->probes[0]->timeouts, 0);

        /* Reported status after hysteresis and the raw one, side by side. */
        ASSERT_STREQ(r->probes[1]->name, "imap");
        ASSERT_STREQ(r->probes[1]->status, "ok");
        ASSERT_STREQ(r->probes[1]->last_status, "critical");
        ASSERT_STREQ(r->probes[1]->reason, "connection refused");
        ASSERT_TRUE(r->probes[1]->running);
        ASSERT_EQ(r->probes[1]->runs, 11);
        ASSERT_EQ(r->probes[1]->timeouts, 1);

        /* Never ran: nothing from a previous run pretends to exist. */
        ASSERT_STREQ(r->probes[2]->name, "ldap");
        ASSERT_STREQ(r->probes[2]->status, "unknown");
        ASSERT_FALSE(r->probes[2]->have_result);
        ASSERT_STREQ(r->probes[2]->last_status, "");
        ASSERT_STREQ(r->probes[2]->reason, "");
        ASSERT_TRUE(r->probes[2]->last_run_at == 0);
        ASSERT_TRUE(r->probes[2]->running);
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_request_in_pieces) {
        TestServer t;
        Response *r;
        int fd;

        server_start(&t, some_probes, 1);
        fd = client_connect(t.path);
        for (size_t i = 0; i < sizeof status_request; i++) {
                send_all(fd, status_request + i, 1);
                usleep(20 * 1000);
        }
        r = client_read_response(fd);
        ASSERT_STREQ(r->error, "");
        ASSERT_EQ(r->n_probes, 1);
        response_free(r);
        safe_close(fd);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_socket_mode) {
        TestServer t;
        struct stat st;
        char run[160];

        server_start(&t, NULL, 0);
        ASSERT_OK(lstat(t.path, &st));
        ASSERT_TRUE(S_ISSOCK(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0660);

        snprintf(run, sizeof run, "%s/run", t.dir);
        ASSERT_OK(stat(run, &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0755);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_no_probes) {
        TestServer t;
        Response *r;

        server_start(&t, NULL, 0);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        ASSERT_EQ(r->n_probes, 0);
        response_free(r);
        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_bad_requests) {
        static const uint8_t garbage[] = { 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff };
        static const uint8_t unknown_kind[] = { 0, 0, 0, 2, 0x08, 7 };
        static const uint8_t too_large[] = { 0x7f, 0, 0, 0 };
        TestServer t;
        Response *r;
        int fd;

        server_start(&t, some_probes, ELEMENTSOF(some_probes));

        r = request(t.path, garbage, sizeof garbage);
        ASSERT_CONTAINS(r->error, "malformed request");
        ASSERT_EQ(r->n_probes, 0);
        response_free(r);

        r = request(t.path, unknown_kind, sizeof unknown_kind);
        ASSERT_CONTAINS(r->error, "unknown request kind 7");
        response_free(r);

        r = request(t.path, too_large, sizeof too_large);
        ASSERT_CONTAINS(r->error, "request too large: 2130706432 bytes announced");
        response_free(r);

        /* Half a header, then the client stops sending but still listens. */
        fd = client_connect(t.path);
        send_all(fd, status_request, 2);
        ASSERT_OK(shutdown(fd, SHUT_WR));
        r = client_read_response(fd);
        ASSERT_CONTAINS(r->error, "truncated request: 2 of 4 length bytes");
        response_free(r);
        safe_close(fd);

        /* A client that hangs up at once costs nothing. */
        fd = client_connect(t.path);
        safe_close(fd);

        /* And the server still answers properly after all that. */
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        ASSERT_EQ(r->n_probes, 3);
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_stalled_client) {
        TestServer t;
        Response *r;
        usec_t start, took;
        int stalled;

        server_start(&t, some_probes, 1);

        /* Stalls in the middle of its request ... */
        stalled = client_connect(t.path);
        send_all(stalled, status_request, 3);

        /* ... and another client is served at once, not after it. */
        start = now(CLOCK_MONOTONIC);
        r = request(t.path, status_request, sizeof status_request);
        took = now(CLOCK_MONOTONIC) - start;
        ASSERT_STREQ(r->error, "");
        ASSERT_TRUE(took < CONTROL_CONNECTION_TIMEOUT_USEC / 2);
        response_free(r);

        /* The staller is dropped at its deadline, not before. */
        assert_closed(stalled);
        took = now(CLOCK_MONOTONIC) - start;
        ASSERT_TRUE(took >= CONTROL_CONNECTION_TIMEOUT_USEC - USEC_PER_SEC);
        ASSERT_TRUE(took < CONTROL_CONNECTION_TIMEOUT_USEC + 5 * USEC_PER_SEC);
        safe_close(stalled);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_connection_cap) {
        int idle[CONTROL_MAX_CONNECTIONS];
        TestServer t;
        Response *r;
        int fd;

        server_start(&t, some_probes, 1);

        for (size_t i = 0; i < ELEMENTSOF(idle); i++)
                idle[i] = client_connect(t.path);

        /* One too many is told so, right away. */
        fd = client_connect(t.path);
        r = client_read_response(fd);
        ASSERT_CONTAINS(r->error, "too many control clients");
        response_free(r);
        safe_close(fd);

        /* Room again once one leaves; the server notices asynchronously. */
        safe_close(idle[0]);
        for (unsigned attempt = 0;; attempt++) {
                fd = client_connect(t.path);
                send_all(fd, status_request, sizeof status_request);
                r = client_read_response(fd);
                safe_close(fd);
                if (streq(r->error, ""))
                        break;
                ASSERT_CONTAINS(r->error, "too many control clients");
                ASSERT_TRUE(attempt < 100);
                response_free(r);
                usleep(20 * 1000);
        }
        ASSERT_EQ(r->n_probes, 1);
        response_free(r);

        for (size_t i = 1; i < ELEMENTSOF(idle); i++)
                safe_close(idle[i]);
        server_stop(&t);
        test_dir_remove(&t);
}

/* ---- the node's healing state and maintenance --------------------------- */

static uint8_t *pack_request(Rupost__Control__Request__Kind kind, bool on, const char *reason, size_t *ret_size) {
        Rupost__Control__Request req = RUPOST__CONTROL__REQUEST__INIT;
        uint8_t *data;

        req.kind = kind;
        req.maintenance_on = on;
        req.maintenance_reason = (char *) (reason ?: "");
        ASSERT_OK(control_frame_pack(&req.base, CONTROL_MAX_MESSAGE, &data, ret_size));
        return data;
}

static Response *request_kind(const char *path, Rupost__Control__Request__Kind kind, bool on, const char *reason) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;

        data = pack_request(kind, on, reason, &size);
        return request(path, data, size);
}

#define MAINTENANCE RUPOST__CONTROL__REQUEST__KIND__MAINTENANCE

static void server_start_with_node(TestServer *t, const NodeState *state, usec_t since_ago) {
        server_node_state = state;
        server_node_since_ago = since_ago;
        server_start(t, some_probes, 1);
        server_node_state = NULL;
}

static char *read_state_file(const TestServer *t) {
        char path[160], *text = calloc(1, 1024);
        _cleanup_fclose_ FILE *f = NULL;

        ASSERT_TRUE(text);
        snprintf(path, sizeof path, "%s/run/state", t->dir);
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fread(text, 1, 1023, f) > 0);
        return text;
}

TEST(server_status_node_withdrawn) {
        NodeState st = {
                .id = NODE_WITHDRAWN,
                .reason = "dovecot: connection refused",
                .attempts = 1,
                .backoff = 40 * USEC_PER_SEC,
        };
        double now_s = usec_to_seconds(now(CLOCK_REALTIME));
        TestServer t;
        Response *r;

        server_start_with_node(&t, &st, 5 * USEC_PER_SEC);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        ASSERT_EQ(r->n_probes, 1);
        ASSERT_TRUE(r->node_state);
        ASSERT_TRUE(r->node_state->healing_enabled);
        ASSERT_STREQ(r->node_state->state, "withdrawn");
        ASSERT_STREQ(r->node_state->reason, "dovecot: connection refused");
        ASSERT_TRUE(fabs(now_s - 5 - r->node_state->since) < 5);
        ASSERT_EQ(r->node_state->recovery_attempts, 1);
        ASSERT_EQ(r->node_state->max_attempts, SERVER_MAX_ATTEMPTS);
        /* The backoff was armed when the node was withdrawn. */
        ASSERT_TRUE(fabs(r->node_state->next_attempt_at - (r->node_state->since + 40)) < 1e-3);
        ASSERT_FALSE(r->node_state->maintenance);
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_status_without_healing) {
        TestServer t;
        Response *r;

        server_start(&t, some_probes, 1);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        /* Present, so that a client tells "healing off" from an old agent. */
        ASSERT_TRUE(r->node_state);
        ASSERT_FALSE(r->node_state->healing_enabled);
        ASSERT_STREQ(r->node_state->state, "");

        response_free(r);
        r = request_kind(t.path, MAINTENANCE, true, "kernel update");
        ASSERT_STREQ(r->error, "healing is not configured on this node: maintenance has no effect");
        response_free(r);

        r = request_kind(t.path, RUPOST__CONTROL__REQUEST__KIND__CLUSTER, false, NULL);
        ASSERT_CONTAINS(r->error, "the cluster state is not configured on this node");
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

static Response *request_cluster(const char *path) {
        return request_kind(path, RUPOST__CONTROL__REQUEST__KIND__CLUSTER, false, NULL);
}

/* Asks until the view has n nodes: the first renewal and a NOTIFY take a
 * moment to reach the server's loop. */
static Response *wait_cluster_view(const char *path, size_t n) {
        Response *r = NULL;

        for (int i = 0; i < 200; i++) {
                r = request_cluster(path);
                if (streq(r->error, "") && r->n_cluster == n)
                        return r;
                if (i + 1 < 200)
                        response_free(r);
                usleep(50 * 1000);
        }
        ASSERT_FAIL("the cluster view never had %zu nodes (last: %zu, error '%s')", n, r->n_cluster, r->error);
}

TEST(server_cluster_view) {
        double now_s;
        const Rupost__Control__ClusterNode *cn;
        ClusterFixture f;
        TestServer t;
        Response *r;

        if (!cluster_fixture_start(&f))
                return;
        server_cluster = &f.config;
        server_start(&t, some_probes, 1);
        server_cluster = NULL;

        /* Our own row, once the first renewal read the registry back. */
        r = wait_cluster_view(t.path, 1);
        now_s = usec_to_seconds(now(CLOCK_REALTIME));
        ASSERT_STREQ(r->node, "mail1");
        cn = r->cluster[0];
        ASSERT_STREQ(cn->name, "mail1");
        ASSERT_STREQ(cn->state, "starting");
        ASSERT_STREQ(cn->reason, "");
        ASSERT_TRUE(cn->lease_age_seconds >= 0 && cn->lease_age_seconds < 2);
        ASSERT_TRUE(fabs(now_s - cn->updated_at) < 30);
        response_free(r);

        /* Two other agents: mail2 withdrawn, renewed 4 s ago with a lease
         * of 60 s (not ours: the age must not be guessed from our ttl);
         * mail0 gone, renewed 25 s ago, in a state of a newer agent, shown
         * as stored. */
        cluster_fixture_sql(&f, "INSERT INTO rupost_agent.nodes (name, state, reason, lease_expires, updated_at, "
                                "renewed_at) VALUES "
                                "('mail2', 'withdrawn', 'dovecot: connection refused', now() + interval '56 seconds', "
                                "now() - interval '1 minute', now() - interval '4 seconds'), "
                                "('mail0', 'evacuating', '', now() - interval '15 seconds', now() - interval '1 hour', "
                                "now() - interval '25 seconds')");
        r = wait_cluster_view(t.path, 3);
        now_s = usec_to_seconds(now(CLOCK_REALTIME));
        /* Sorted by name. */
        ASSERT_STREQ(r->cluster[0]->name, "mail0");
        ASSERT_STREQ(r->cluster[1]->name, "mail1");
        ASSERT_STREQ(r->cluster[2]->name, "mail2");
        cn = r->cluster[0];
        ASSERT_STREQ(cn->state, "evacuating");
        ASSERT_TRUE(fabs(cn->lease_age_seconds - 25) < 2);
        ASSERT_TRUE(fabs(now_s - 3600 - cn->updated_at) < 10);
        cn = r->cluster[2];
        ASSERT_STREQ(cn->state, "withdrawn");
        ASSERT_STREQ(cn->reason, "dovecot: connection refused");
        ASSERT_TRUE(fabs(cn->lease_age_seconds - 4) < 2);
        ASSERT_TRUE(fabs(now_s - 60 - cn->updated_at) < 10);
        response_free(r);

        /* Our own lease is renewed every 500 ms: its age stays below that
         * and a round trip, however long the agent has run. */
        usleep(2000 * 1000);
        r = request_cluster(t.path);
        ASSERT_STREQ(r->cluster[1]->name, "mail1");
        ASSERT_TRUE(r->cluster[1]->lease_age_seconds < 1.0);
        response_free(r);

        /* The DB gone: the last view stays, every lease ages on. */
        pg_server_stop(&f.server);
        usleep(1500 * 1000);
        r = request_cluster(t.path);
        ASSERT_STREQ(r->error, "");
        ASSERT_EQ(r->n_cluster, 3);
        ASSERT_STREQ(r->cluster[1]->name, "mail1");
        ASSERT_TRUE(r->cluster[1]->lease_age_seconds >= 1.5);
        ASSERT_TRUE(r->cluster[2]->lease_age_seconds >= 4 + 1);
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
        cluster_fixture_stop(&f);
}

TEST(server_cluster_before_the_first_view) {
        ClusterFixture f;
        TestServer t;
        Response *r;

        cluster_fixture_unreachable(&f);
        server_cluster = &f.config;
        server_start(&t, some_probes, 1);
        server_cluster = NULL;

        /* Not "no nodes registered": nothing is known yet. */
        r = request_cluster(t.path);
        ASSERT_CONTAINS(r->error, "the cluster database has not been read yet: ");
        ASSERT_EQ(r->n_cluster, 0);
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

/* ---- samples and the failure scope ---------------------------------------- */

static size_t samples_text_bytes(const ProbeState *p) {
        size_t b = 0;
        for (size_t j = 0; j < p->n_samples; j++)
                b += strlen(p->samples[j]->family) + strlen(p->samples[j]->labels) + CONTROL_SAMPLE_OVERHEAD;
        return b;
}

TEST(server_samples_offsets_first) {
        static const ProbeSpec specs[] = {
                { .name = "clock", .status = PROBE_OK, .last_status = PROBE_OK, .reason = "fine", .have_result = true,
                  .n_samples = 6 },
                { .name = "none", .status = PROBE_OK, .last_status = PROBE_OK, .reason = "fine", .have_result = true },
                { .name = "never", .status = PROBE_UNKNOWN },
        };
        TestServer t;
        Response *r;
        const ProbeState *p;

        server_start(&t, specs, ELEMENTSOF(specs));
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_EQ(r->n_probes, 3);
        p = r->probes[0];
        ASSERT_EQ(p->n_samples, 6);
        ASSERT_EQ(p->samples_omitted, 0);
        /* The clock offsets (k = 2, 5) first, then the rest in the probe's order. */
        ASSERT_STREQ(p->samples[0]->family, "rupost_time_offset_seconds");
        ASSERT_STREQ(p->samples[0]->labels, "source=\"s2\"");
        ASSERT_TRUE(p->samples[0]->value == 2);
        ASSERT_STREQ(p->samples[1]->labels, "source=\"s5\"");
        ASSERT_STREQ(p->samples[2]->family, "rupost_test_value");
        ASSERT_STREQ(p->samples[2]->labels, "i=\"0\"");
        ASSERT_TRUE(p->samples[2]->value == 0);
        ASSERT_STREQ(p->samples[5]->labels, "i=\"4\"");
        ASSERT_EQ(r->probes[1]->n_samples, 0);
        ASSERT_EQ(r->probes[2]->n_samples, 0);
        /* No cluster section: no scope, even for a failure. */
        ASSERT_STREQ(r->probes[0]->scope, "");
        response_free(r);
        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_samples_bounded) {
        /* 300 samples: over the per-probe limit. Then two probes whose
         * padded labels (8 KiB each) would make 4 MiB: over the budget. */
        static const ProbeSpec many[] = {
                { .name = "many", .status = PROBE_OK, .last_status = PROBE_OK, .have_result = true, .n_samples = 300 },
        };
        static const ProbeSpec big[] = {
                { .name = "big1", .status = PROBE_OK, .last_status = PROBE_OK, .have_result = true, .n_samples = 256,
                  .label_pad = 8192 },
                { .name = "big2", .status = PROBE_OK, .last_status = PROBE_OK, .have_result = true, .n_samples = 256,
                  .label_pad = 8192 },
        };
        TestServer t;
        Response *r;
        size_t bytes;

        server_start(&t, many, ELEMENTSOF(many));
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_EQ(r->probes[0]->n_samples, CONTROL_SAMPLES_PER_PROBE);
        ASSERT_EQ(r->probes[0]->samples_omitted, 300 - CONTROL_SAMPLES_PER_PROBE);
        /* All 100 offsets made it: they go first. */
        for (unsigned k = 0; k < 100; k++)
                ASSERT_STREQ(r->probes[0]->samples[k]->family, "rupost_time_offset_seconds");
        response_free(r);
        server_stop(&t);
        test_dir_remove(&t);

        server_start(&t, big, ELEMENTSOF(big));
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        bytes = samples_text_bytes(r->probes[0]) + samples_text_bytes(r->probes[1]);
        ASSERT_TRUE(bytes <= CONTROL_SAMPLES_MAX_BYTES);
        /* Filled up to within one sample of the budget, the rest counted. */
        ASSERT_TRUE(bytes + 8192 + CONTROL_SAMPLE_OVERHEAD + 64 > CONTROL_SAMPLES_MAX_BYTES);
        ASSERT_EQ(r->probes[0]->n_samples + r->probes[0]->samples_omitted, 256);
        ASSERT_EQ(r->probes[1]->n_samples + r->probes[1]->samples_omitted, 256);
        ASSERT_TRUE(r->probes[1]->samples_omitted > 0);
        /* The second probe's short offsets still fit after the long labels ran out. */
        ASSERT_TRUE(r->probes[1]->n_samples > 0);
        ASSERT_STREQ(r->probes[1]->samples[0]->family, "rupost_time_offset_seconds");
        response_free(r);
        server_stop(&t);
        test_dir_remove(&t);
}

static Response *wait_scope(const char *path, size_t probe, const char *scope) {
        Response *r = NULL;

        for (int i = 0; i < 200; i++) {
                r = request(path, status_request, sizeof status_request);
                if (streq(r->probes[probe]->scope, scope))
                        return r;
                if (i + 1 < 200)
                        response_free(r);
                usleep(50 * 1000);
        }
        ASSERT_FAIL("probe %zu never had scope '%s' (last: '%s')", probe, scope, r->probes[probe]->scope);
}

TEST(server_failure_scope) {
        static const ProbeSpec specs[] = {
                { "memcached", PROBE_CRITICAL, PROBE_CRITICAL, "connection refused", true, false },
                { "nfs", PROBE_CRITICAL, PROBE_CRITICAL, "stat timed out", true, false },
                { "smtp", PROBE_OK, PROBE_OK, "220", true, false },
        };
        ClusterFixture f;
        TestServer t;
        Response *r;

        if (!cluster_fixture_start(&f))
                return;
        server_cluster = &f.config;
        server_start(&t, specs, ELEMENTSOF(specs));
        server_cluster = NULL;

        /* Registered, but no other node: nothing to compare with. */
        r = wait_cluster_view(t.path, 1);
        response_free(r);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->probes[0]->scope, "unknown");
        ASSERT_STREQ(r->probes[2]->scope, "");
        response_free(r);

        /* mail2 sees memcached failing now; mail3 saw it, but recovered 10 s
         * ago (the withdrawal guard's window still counts that, the scope
         * does not); mail4 sees it too, but its lease expired: not live. */
        cluster_fixture_sql(&f, "INSERT INTO rupost_agent.nodes (name, state, lease_expires, renewed_at, live_for) VALUES "
                                "('mail2', 'in_service', now() + interval '1 minute', now(), interval '1 minute'), "
                                "('mail3', 'in_service', now() + interval '1 minute', now(), interval '1 minute'), "
                                "('mail4', 'in_service', now() - interval '1 second', now() - interval '1 hour', interval '3 seconds')");
        cluster_fixture_sql(&f, "INSERT INTO rupost_agent.probe_failures (node, probe, reason, cleared_at) VALUES "
                                "('mail2', 'memcached', 'refused', NULL), "
                                "('mail3', 'memcached', 'refused', now() - interval '10 seconds'), "
                                "('mail4', 'memcached', 'refused', NULL), "
                                "('mail4', 'nfs', 'hung', NULL)");
        r = wait_scope(t.path, 0, "shared 1/2");
        ASSERT_EQ(r->probes[0]->peers_failing, 1);
        ASSERT_EQ(r->probes[0]->live_peers, 2);
        /* Nobody live sees nfs failing: this node's own fault. */
        ASSERT_STREQ(r->probes[1]->scope, "local");
        ASSERT_EQ(r->probes[1]->peers_failing, 0);
        ASSERT_EQ(r->probes[1]->live_peers, 2);
        /* Not failing here: no scope, whatever the peers see. */
        ASSERT_STREQ(r->probes[2]->scope, "");
        response_free(r);

        cluster_fixture_sql(&f, "UPDATE rupost_agent.probe_failures SET cleared_at = NULL WHERE node = 'mail3'");
        r = wait_scope(t.path, 0, "shared 2/2");
        response_free(r);

        /* The DB gone: the last view says nothing current. */
        pg_server_stop(&f.server);
        r = wait_scope(t.path, 0, "unknown");
        ASSERT_STREQ(r->probes[1]->scope, "unknown");
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
        cluster_fixture_stop(&f);
}

TEST(server_maintenance_on_off) {
        NodeState st = { .id = NODE_IN_SERVICE };
        char long_reason[CONTROL_MAINTENANCE_REASON_MAX + 2];
        _cleanup_free_ char *persisted = NULL, *persisted_off = NULL;
        TestServer t;
        Response *r;

        server_start_with_node(&t, &st, 600 * USEC_PER_SEC);

        r = request_kind(t.path, MAINTENANCE, true, NULL);
        ASSERT_STREQ(r->error, "a reason is required to switch maintenance on");
        response_free(r);

        memset(long_reason, 'x', sizeof long_reason - 1);
        long_reason[sizeof long_reason - 1] = 0;
        r = request_kind(t.path, MAINTENANCE, true, long_reason);
        ASSERT_STREQ(r->error, "the maintenance reason is 201 bytes long, the limit is 200");
        response_free(r);
        long_reason[CONTROL_MAINTENANCE_REASON_MAX] = 0;

        /* A newline would forge a line of the state file. */
        r = request_kind(t.path, MAINTENANCE, true, "disk swap\nmaintenance=0");
        ASSERT_STREQ(r->error, "the maintenance reason has a control character (0x0a) at byte 9");
        response_free(r);

        /* None of that changed anything. */
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->node_state->state, "in_service");
        response_free(r);

        r = request_kind(t.path, MAINTENANCE, true, long_reason);
        ASSERT_STREQ(r->error, "");
        ASSERT_STREQ(r->node_state->state, "maintenance");
        ASSERT_EQ(strlen(r->node_state->reason), CONTROL_MAINTENANCE_REASON_MAX);
        response_free(r);

        r = request_kind(t.path, MAINTENANCE, true, "kernel update, ticket OPS-42");
        ASSERT_STREQ(r->error, "");
        /* Already in maintenance: switching on again keeps the first reason. */
        ASSERT_EQ(strlen(r->node_state->reason), CONTROL_MAINTENANCE_REASON_MAX);
        ASSERT_EQ(r->n_probes, 0); /* the answer is the node, not the probes */
        response_free(r);

        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->node_state->state, "maintenance");
        ASSERT_TRUE(r->node_state->maintenance);
        ASSERT_TRUE(fabs(usec_to_seconds(now(CLOCK_REALTIME)) - r->node_state->since) < 10);
        ASSERT_EQ(r->n_probes, 1);
        response_free(r);
        /* It survives a restart of the agent. */
        persisted = read_state_file(&t);
        ASSERT_TRUE(strncmp(persisted, "maintenance=1\nreason=xxxxx", 26) == 0);

        r = request_kind(t.path, MAINTENANCE, false, NULL);
        ASSERT_STREQ(r->error, "");
        /* Back to being judged from scratch. */
        ASSERT_STREQ(r->node_state->state, "starting");
        ASSERT_FALSE(r->node_state->maintenance);
        ASSERT_STREQ(r->node_state->reason, "");
        response_free(r);
        persisted_off = read_state_file(&t);
        ASSERT_STREQ(persisted_off, "maintenance=0\nreason=\n");

        server_stop(&t);
        test_dir_remove(&t);
}

/* Switches maintenance on as uid 'nobody' with the given supplementary
 * groups, from a child (the kernel records the credentials at connect()).
 * True when the agent answered with expect_error ("" for success). */
static bool maintenance_as_nobody(const char *path, const gid_t *groups, size_t n_groups, const char *expect_error) {
        const struct passwd *pw = getpwnam("nobody");
        int status;
        pid_t pid;

        ASSERT_TRUE(pw);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                Response *r;

                if (setgroups(n_groups, groups) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
                        _exit(2);
                r = request_kind(path, MAINTENANCE, true, "drill");
                if (!streq(r->error, expect_error)) {
                        fprintf(stderr, "unexpected answer: \"%s\"\n", r->error);
                        _exit(1);
                }
                response_free(r);
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(server_maintenance_needs_root_or_group) {
        NodeState st = { .id = NODE_IN_SERVICE };
        struct stat sst;
        TestServer t;
        Response *r;

        if (geteuid() != 0 || !getpwnam("nobody")) {
                fprintf(stderr, "skipped: needs root and a 'nobody' user\n");
                return;
        }

        server_start_with_node(&t, &st, 0);
        /* Let anyone reach the socket: the credentials must be what says no. */
        ASSERT_OK(chmod(t.dir, 0755));
        ASSERT_OK(chmod(t.path, 0666));
        ASSERT_OK(stat(t.path, &sst));

        ASSERT_TRUE(maintenance_as_nobody(t.path, NULL, 0,
                                          "permission denied: switching maintenance needs root or membership in "
                                          "the group of the control socket ('" CONTROL_SOCKET_GROUP "'); "
                                          "uid 65534 is neither"));
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->node_state->state, "in_service");
        response_free(r);

        /* A member of the socket's group (only as a supplementary group) may. */
        ASSERT_TRUE(maintenance_as_nobody(t.path, (gid_t[]) { 4242, sst.st_gid }, 2, ""));
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->node_state->state, "maintenance");
        ASSERT_STREQ(r->node_state->reason, "drill");
        response_free(r);

        server_stop(&t);
        test_dir_remove(&t);
}

TEST(server_stale_and_live_socket) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        sd_event *e = NULL;
        TestServer t;
        Manager m = {};
        Response *r;
        char path[160];
        int status, fd;

        log_set_max_level(LOG_CRIT); /* the refusals below log errors on purpose */
        ASSERT_OK(sd_event_new(&e));
        m.event = e;

        server_start(&t, some_probes, 1);

        /* Another agent listens there: it must not be taken over. */
        ASSERT_ERROR(control_server_new(&m, t.path, &s), EADDRINUSE);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_STREQ(r->error, "");
        response_free(r);

        /* An agent killed hard leaves its socket behind; the next one
         * replaces it. */
        ASSERT_OK(kill(t.pid, SIGKILL));
        ASSERT_EQ(waitpid(t.pid, &status, 0), t.pid);
        ASSERT_OK(access(t.path, F_OK));
        snprintf(path, sizeof path, "%s", t.path);
        server_start_at(&t, path, some_probes, 2);
        r = request(t.path, status_request, sizeof status_request);
        ASSERT_EQ(r->n_probes, 2);
        response_free(r);
        server_stop(&t);

        /* Something that is not a socket is never removed. */
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        safe_close(fd);
        ASSERT_ERROR(control_server_new(&m, path, &s), EEXIST);
        ASSERT_OK(access(path, F_OK));
        ASSERT_OK(unlink(path));

        /* Relative paths and paths too long for sun_path are refused. */
        ASSERT_ERROR(control_server_new(&m, "control.sock", &s), EINVAL);
        char long_path[200];
        memset(long_path, 'a', sizeof long_path - 1);
        long_path[0] = '/';
        long_path[sizeof long_path - 1] = 0;
        ASSERT_ERROR(control_server_new(&m, long_path, &s), ENAMETOOLONG);

        /* In this process too: the socket appears, and goes with the server. */
        ASSERT_OK(control_server_new(&m, path, &s));
        ASSERT_OK(access(path, F_OK));
        s = control_server_free(s);
        ASSERT_TRUE(access(path, F_OK) < 0 && errno == ENOENT);

        log_set_max_level(LOG_INFO);
        sd_event_unref(e);
        test_dir_remove(&t);
}

DEFINE_TEST_MAIN();
