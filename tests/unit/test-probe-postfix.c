/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The postfix probe: its report parser and queue-file reader, table-driven;
 * then the probe itself on a fake queue tree in a temporary directory, with
 * a process holding the master lock (master up) or none (down), queue files
 * old and new, finished and not, in hashed subdirectories; and a FIFO in
 * place of pid/master.pid standing in for a hung NFS server, to prove that
 * the check is abandoned at the deadline and not started again while the
 * hung child lives. */

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <utime.h>

#include "lib/child.h"
#include "probe-run.h"
#include "probes/postfix-report.h"

/* ---- the report parser ---- */

typedef struct ReportCase {
        const char *text;
        int result;
        const char *error;
} ReportCase;

static const ReportCase report_cases[] = {
        { "master running 1234\nqueue maildrop 0 0\nqueue incoming 0 0\nqueue active 2 1700000000\n"
          "queue deferred 5 1690000000\nqueue hold 0 0\nend\n", 0, NULL },
        { "master error 13\nqueue active error 5\nend\n", 0, NULL },
        { "master running 1\n", -EBADMSG, "line 1: no 'end' (report cut short?)" },
        { "master running 1\nend", -EBADMSG, "line 2: line not terminated" },
        { "end\n", -EBADMSG, "no master line" },
        { "master running 1\nmaster running 2\nend\n", -EBADMSG, "line 2: master reported twice" },
        { "master sleeping 1\nend\n", -EBADMSG, "line 1: unknown master state" },
        { "master running -1\nend\n", -EBADMSG, "line 1: bad number" },
        { "master running 1\nqueue corrupt 1 1\nend\n", -EBADMSG, "line 2: unknown queue" },
        { "master running 1\nqueue active 1 1\nqueue active 1 1\nend\n", -EBADMSG, "line 3: queue reported twice" },
        { "master running 1\nqueue active 0 5\nend\n", -EBADMSG, "oldest time given for an empty queue" },
        { "master running 1\nqueue active 3 0\nend\n", -EBADMSG, "oldest time given for an empty queue, or missing" },
        { "master running 1\nqueue active 07 5\nend\n", -EBADMSG, "line 2: bad number" },
        { "master running 1\nqueue active error 0\nend\n", -EBADMSG, "bad error number" },
        { "master running 1\nend\nmaster running 2\n", -EBADMSG, "line 3: text after 'end'" },
        { "master running 1 extra\nend\n", -EBADMSG, "line 1: not a report line" },
        { "hello\n", -EBADMSG, "line 1: not a report line" },
};

TEST(postfix_report_parse_table) {
        for (size_t i = 0; i < ELEMENTSOF(report_cases); i++) {
                const ReportCase *c = &report_cases[i];
                PostfixReport r;
                char error[128] = "";

                int k = postfix_report_parse(c->text, strlen(c->text), &r, error, sizeof error);
                if (k != c->result)
                        fprintf(stderr, "case %zu: %d %s\n", i, k, error);
                ASSERT_EQ(k, c->result);
                if (c->error)
                        ASSERT_CONTAINS(error, c->error);
        }

        PostfixReport r;
        const char *t = report_cases[0].text;
        ASSERT_OK(postfix_report_parse(t, strlen(t), &r, NULL, 0));
        ASSERT_EQ(r.master, POSTFIX_MASTER_RUNNING);
        ASSERT_EQ(r.master_pid, 1234);
        ASSERT_TRUE(r.queues[POSTFIX_QUEUE_DEFERRED].present);
        ASSERT_EQ(r.queues[POSTFIX_QUEUE_DEFERRED].messages, 5u);
        ASSERT_EQ(r.queues[POSTFIX_QUEUE_DEFERRED].oldest, 1690000000);

        t = report_cases[1].text;
        ASSERT_OK(postfix_report_parse(t, strlen(t), &r, NULL, 0));
        ASSERT_EQ(r.master, POSTFIX_MASTER_ERROR);
        ASSERT_EQ(r.master_error, 13);
        ASSERT_EQ(r.queues[POSTFIX_QUEUE_ACTIVE].error, 5);
        ASSERT_FALSE(r.queues[POSTFIX_QUEUE_HOLD].present);

        /* A NUL byte inside a line. */
        static const char nul[] = "master running 1\0x\nend\n";
        ASSERT_ERROR(postfix_report_parse(nul, sizeof nul - 1, &r, NULL, 0), EBADMSG);
}

/* A record as Postfix writes it: type, length in 7-bit groups, data. */
static size_t put_record(uint8_t *p, char type, const char *data, size_t len) {
        size_t n = 0;
        p[n++] = (uint8_t) type;
        size_t l = len;
        do {
                uint8_t b = l & 0x7f;
                l >>= 7;
                if (l)
                        b |= 0x80;
                p[n++] = b;
        } while (l);
        memcpy(p + n, data, len);
        return n + len;
}

static size_t make_queue_file(uint8_t *buf, int64_t arrival) {
        char t[64], pad[200];
        size_t n = 0;

        n += put_record(buf + n, 'C', "             123              45               1               0", 63);
        /* A long record before T, so that its length takes two bytes. */
        memset(pad, 'x', sizeof pad);
        n += put_record(buf + n, 'A', pad, sizeof pad);
        snprintf(t, sizeof t, "%" PRId64 " 123456", arrival);
        n += put_record(buf + n, 'T', t, strlen(t));
        n += put_record(buf + n, 'S', "sender@example.org", 18);
        n += put_record(buf + n, 'M', "", 0);
        return n;
}

TEST(postfix_queue_file_arrival) {
        uint8_t buf[512];
        int64_t t = 0;
        size_t n = make_queue_file(buf, 1700000000);

        ASSERT_OK(postfix_queue_file_arrival(buf, n, &t));
        ASSERT_EQ(t, 1700000000);
        /* Cut short before the T record. */
        ASSERT_ERROR(postfix_queue_file_arrival(buf, 70, &t), ENOENT);
        /* Content before any T record. */
        uint8_t m[] = { 'M', 0, 'T', 3, '1', '2', '3' };
        ASSERT_ERROR(postfix_queue_file_arrival(m, sizeof m, &t), ENOENT);
        /* Seconds alone (old format). */
        uint8_t old[] = { 'T', 3, '1', '2', '3' };
        ASSERT_OK(postfix_queue_file_arrival(old, sizeof old, &t));
        ASSERT_EQ(t, 123);
        /* Not a number. */
        uint8_t bad[] = { 'T', 3, 'a', 'b', 'c' };
        ASSERT_ERROR(postfix_queue_file_arrival(bad, sizeof bad, &t), EBADMSG);
        /* A length that never ends. */
        uint8_t endless[] = { 'C', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1 };
        ASSERT_ERROR(postfix_queue_file_arrival(endless, sizeof endless, &t), EBADMSG);
        ASSERT_ERROR(postfix_queue_file_arrival("", 0, &t), ENOENT);
}

/* ---- the probe on a fake queue ---- */

static char queue_dir[64];

static void write_file(const char *rel, mode_t mode, const void *data, size_t size, time_t mtime) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", queue_dir, rel);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, size), (ssize_t) size);
        close(fd);
        ASSERT_OK(chmod(path, mode));
        if (mtime) {
                struct utimbuf u = { .actime = mtime, .modtime = mtime };
                ASSERT_OK(utime(path, &u));
        }
}

static void make_dir(const char *rel) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", queue_dir, rel);
        ASSERT_OK(mkdir(path, 0700));
}

static void make_queue(void) {
        time_t t = time(NULL);
        uint8_t qf[512];
        size_t n;

        snprintf(queue_dir, sizeof queue_dir, "/tmp/test-probe-postfix-XXXXXX");
        ASSERT_TRUE(mkdtemp(queue_dir));
        make_dir("pid");
        make_dir("maildrop");
        make_dir("incoming");
        make_dir("active");
        make_dir("deferred");
        make_dir("deferred/A");
        make_dir("deferred/B");
        make_dir("hold");
        write_file("pid/master.pid", 0644, "       1\n", 9, 0);

        /* Finished files count; one still being written (no u+x) does not. */
        write_file("incoming/4Xa1", 0700, "x", 1, t - 10);
        write_file("incoming/4Xa2", 0600, "x", 1, t - 10000);
        write_file("active/4Xb1", 0700, "x", 1, t - 60);
        write_file("active/4Xb2", 0700, "x", 1, t - 120);
        /* Deferred: mtime is the next retry time (the future); the arrival is
         * in the file, two hours and one hour ago. */
        n = make_queue_file(qf, (int64_t) t - 7200);
        write_file("deferred/A/A1B2", 0700, qf, n, t + 3600);
        n = make_queue_file(qf, (int64_t) t - 3600);
        write_file("deferred/B/B1C2", 0700, qf, n, t + 600);
        write_file("deferred/B/B1C3", 0700, qf, n, t + 600);
}

static void remove_queue(void) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", queue_dir);
        ASSERT_EQ(system(cmd), 0);
}

/* A process holding the master lock, as a running master does; it writes
 * `pid` (its own when 0) into the file. */
static pid_t hold_master_lock(pid_t pid) {
        int ready[2];
        char path[256];

        ASSERT_OK(pipe2(ready, O_CLOEXEC));
        pid_t holder = fork();
        ASSERT_TRUE(holder >= 0);
        if (holder == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                snprintf(path, sizeof path, "%s/pid/master.pid", queue_dir);
                int fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd < 0 || flock(fd, LOCK_EX) < 0)
                        _exit(1);
                char line[32];
                int l = snprintf(line, sizeof line, "%*d\n", 10, pid ?: getpid());
                if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t) l, 0) != l)
                        _exit(1);
                (void) !write(ready[1], "x", 1);
                pause();
                _exit(0);
        }
        close(ready[1]);
        char c;
        ASSERT_EQ(read(ready[0], &c, 1), 1);
        close(ready[0]);
        return holder;
}

static void stop_process(pid_t pid) {
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
}

static Probe *run_start(ProbeRun *r, const char *extra, const char *timeout) {
        char yaml[1024];

        snprintf(yaml, sizeof yaml,
                 "probes:\n"
                 "  - name: postfix\n"
                 "    type: postfix\n"
                 "    interval: 1m\n"
                 "    timeout: %s\n"
                 "    queue_directory: %s\n"
                 "%s",
                 timeout, queue_dir, extra);
        probe_run_load(r, yaml);
        return probe_run_once(r, 5 * USEC_PER_SEC);
}

TEST(postfix_probe_master_up_and_queues) {
        ProbeRun r;

        test_block_sigchld();
        make_queue();
        pid_t holder = hold_master_lock(0);

        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_OK);
        char want[64];
        snprintf(want, sizeof want, "master running (pid %d)", (int) holder);
        ASSERT_CONTAINS(r.probe->last.reason, want);
        ASSERT_CONTAINS(r.probe->last.reason, "queues: maildrop 0, incoming 1, active 2, deferred 3, hold 0");
        ASSERT_EQ(probe_sample_value(r.probe, "rupost_postfix_master_up", NULL), 1);
        ASSERT_EQ(probe_sample_value(r.probe, "rupost_postfix_queue_messages", "queue=\"deferred\""), 3);
        ASSERT_EQ(probe_sample_value(r.probe, "rupost_postfix_queue_messages", "queue=\"incoming\""), 1);
        /* Deferred age from the arrival time in the file, not the retry mtime. */
        double age = probe_sample_value(r.probe, "rupost_postfix_queue_oldest_message_age_seconds", "queue=\"deferred\"");
        ASSERT_TRUE(age >= 7200 && age < 7260);
        age = probe_sample_value(r.probe, "rupost_postfix_queue_oldest_message_age_seconds", "queue=\"active\"");
        ASSERT_TRUE(age >= 120 && age < 180);
        ASSERT_EQ(probe_sample_value(r.probe, "rupost_postfix_queue_oldest_message_age_seconds", "queue=\"hold\""), 0);
        probe_run_done(&r);

        /* Thresholds: a deferred backlog and a message stuck in active. */
        write_file("active/4Xb3", 0700, "x", 1, time(NULL) - 40 * 60);
        run_start(&r, "    deferred_warning: 2\n", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "deferred queue holds 3 messages (warning at 2)");
        ASSERT_CONTAINS(r.probe->last.reason, "oldest message in active has waited 40min");
        ASSERT_CONTAINS(r.probe->last.reason, "(critical at 30min)");
        probe_run_done(&r);

        stop_process(holder);
        remove_queue();
}

TEST(postfix_probe_master_down) {
        char path[256];
        ProbeRun r;

        test_block_sigchld();
        make_queue();

        /* The file is there, nobody holds the lock. */
        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "postfix master not running: ");
        ASSERT_CONTAINS(r.probe->last.reason, "/pid/master.pid is not locked");
        ASSERT_EQ(probe_sample_value(r.probe, "rupost_postfix_master_up", NULL), 0);
        probe_run_done(&r);

        /* Down and a queue that cannot be read: still critical (healing acts
         * on critical), whatever order the findings came in. */
        snprintf(path, sizeof path, "%s/hold", queue_dir);
        ASSERT_OK(rmdir(path));
        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "/pid/master.pid is not locked");
        ASSERT_CONTAINS(r.probe->last.reason, "cannot read the hold queue: No such file or directory");
        probe_run_done(&r);
        make_dir("hold");

        /* Our probe must not keep the lock: a master can take it right after. */
        snprintf(path, sizeof path, "%s/pid/master.pid", queue_dir);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(flock(fd, LOCK_EX | LOCK_NB));
        close(fd);

        /* Locked with the pid of a process that is gone: another host's master. */
        pid_t gone = fork();
        if (gone == 0)
                _exit(0);
        ASSERT_TRUE(gone > 0);
        (void) waitpid(gone, NULL, 0);
        pid_t holder = hold_master_lock(gone);
        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "is locked, but its pid");
        ASSERT_CONTAINS(r.probe->last.reason, "another host's master may be using this queue");
        probe_run_done(&r);
        stop_process(holder);

        /* No pid file at all. */
        ASSERT_OK(unlink(path));
        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "/pid/master.pid does not exist");
        probe_run_done(&r);

        /* A queue directory that cannot be read is UNKNOWN, not down. */
        remove_queue();
        run_start(&r, "", "5s");
        ASSERT_EQ(r.probe->last.status, PROBE_UNKNOWN);
        ASSERT_CONTAINS(r.probe->last.reason, "cannot read the maildrop queue: No such file or directory");
        probe_run_done(&r);
}

TEST(postfix_probe_hung_queue) {
        ProbeRun r;
        char path[256];

        test_block_sigchld();
        make_queue();
        /* A FIFO nobody writes to: reading it blocks like a hung NFS server. */
        snprintf(path, sizeof path, "%s/pid/master.pid", queue_dir);
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0600));

        run_start(&r, "", "300ms");
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason,
                        "no answer within 300ms while checking the master lock and the queues (is the queue's NFS "
                        "mount hung?)");
        /* Given up and killed, but not reaped yet: still counted as alive. */
        char description[128];
        snprintf(description, sizeof description, "postfix queue check of %s", queue_dir);
        ASSERT_EQ(child_abandoned_alive(description), 1u);

        /* The next run comes while the hung child is still there: no second
         * child, a reason that says so. (The run's timer goes before the
         * child's exit is processed, as when a child hangs for real.) */
        ASSERT_OK(sd_event_source_set_priority(r.probe->timer, SD_EVENT_PRIORITY_IMPORTANT));
        probe_run_once(&r, 5 * USEC_PER_SEC);
        ASSERT_EQ(r.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(r.probe->last.reason, "still hung since");
        ASSERT_CONTAINS(r.probe->last.reason, "is its NFS mount hung?");

        /* Once the child is gone, checks run again. */
        (void) RUN_UNTIL(r.event, child_abandoned_alive(description) <= 0, 3 * USEC_PER_SEC);
        ASSERT_EQ(child_abandoned_alive(description), 0u);
        ASSERT_OK(unlink(path));
        write_file("pid/master.pid", 0644, "       1\n", 9, 0);
        probe_run_once(&r, 5 * USEC_PER_SEC);
        ASSERT_CONTAINS(r.probe->last.reason, "is not locked");
        probe_run_done(&r);
        remove_queue();
}

TEST(postfix_probe_config) {
        static const struct {
                const char *keys;
                const char *error;
        } cases[] = {
                { "    queue_directory: spool\n", "'spool' is not an absolute path" },
                { "    deferred_warning: 100\n    deferred_critical: 50\n",
                  "deferred_critical: 50 is below the warning threshold 100" },
                { "    active_warning: 0\n", "out of range" },
                { "    age_warning: 1h\n    age_critical: 10m\n", "is shorter than age_warning" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char yaml[512];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: p\n    type: postfix\n%s", cases[i].keys);
                test_config_load_fails(yaml, cases[i].error);
        }
}

DEFINE_TEST_MAIN()
