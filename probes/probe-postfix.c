/* SPDX-License-Identifier: GPL-2.0-or-later */
/* postfix: is the master running, and how do its queues look.
 *
 * Liveness is judged the way `postfix status` does (master -t): the master
 * holds an exclusive flock on $queue_directory/pid/master.pid for as long
 * as it runs. We try the same lock without waiting: EWOULDBLOCK means a
 * master holds it; if we got it, nobody does, and we let go at once, since
 * it is the lock a starting master needs. The pid in the file must also run
 * on this host: on a shared NFS queue a lock held with a pid that is not
 * ours is another host's master.
 *
 * Queue depth counts the finished queue files (regular, mode u+x, as qmgr
 * and pickup accept them; hashed subdirectories included) in maildrop,
 * incoming, active, deferred and hold. The age of the oldest message:
 *  - maildrop, incoming, active: the file's mtime, which is its arrival in
 *    the queue (for a message retried from deferred, the moment its retry
 *    came due): how long it has been waiting here;
 *  - deferred, hold: Postfix keeps the next retry time in a deferred file's
 *    mtime, so the mtime says nothing about age. The arrival time is read
 *    from the file's own 'T' record instead (the first few hundred bytes),
 *    falling back to ctime when it cannot be read.
 *
 * The queue lives on NFS, where any stat() may hang: all of it runs in a
 * forked child (lib/child.h) that writes a text report, parsed by
 * postfix-report.c. A child that misses the deadline is abandoned, and no
 * new one starts while it is stuck. */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "lib/child.h"
#include "lib/log.h"
#include "lib/parse-util.h"
#include "postfix-report.h"
#include "probes.h"

#define POSTFIX_DEFAULT_QUEUE_DIRECTORY "/var/spool/postfix"
/* hash_queue_depth is at most a few levels; anything deeper is not Postfix's. */
#define POSTFIX_MAX_DEPTH 8
/* Arrival times read per queue and run; past it ctime stands in. */
#define POSTFIX_MAX_ARRIVAL_READS 20000U
#define POSTFIX_HEADER_READ 512

typedef enum Threshold {
        THRESHOLD_ACTIVE,
        THRESHOLD_DEFERRED,
        THRESHOLD_HOLD,
        THRESHOLD_INCOMING, /* incoming + maildrop: cleanup or pickup starved */
        _THRESHOLD_MAX,
} Threshold;

static const struct {
        const char *name;
        unsigned warning, critical;
} threshold_defaults[_THRESHOLD_MAX] = {
        /* qmgr_message_active_limit is 20000: near it, the active queue is congested. */
        [THRESHOLD_ACTIVE] = { "active", 5000, 15000 },
        [THRESHOLD_DEFERRED] = { "deferred", 500, 5000 },
        [THRESHOLD_HOLD] = { "hold", 100, 1000 },
        [THRESHOLD_INCOMING] = { "incoming and maildrop", 1000, 5000 },
};

#define DEFAULT_AGE_WARNING (15 * USEC_PER_MINUTE)
#define DEFAULT_AGE_CRITICAL (30 * USEC_PER_MINUTE)

typedef struct PostfixProbe {
        /* configuration */
        char *queue_directory;
        unsigned warning[_THRESHOLD_MAX];
        unsigned critical[_THRESHOLD_MAX];
        usec_t age_warning;
        usec_t age_critical;

        char *description; /* of the child, to find a hung one */

        /* one run */
        Child *child;
        bool completed;    /* the child reported, as opposed to being given up */
        usec_t hung_since; /* CLOCK_REALTIME when a child was last abandoned while running */
} PostfixProbe;

static const MetricFamily family_master_up = {
        .name = "rupost_postfix_master_up",
        .type = METRIC_GAUGE,
        .help = "Whether the Postfix master holds the lock on pid/master.pid and runs on this host.",
};
static const MetricFamily family_queue_messages = {
        .name = "rupost_postfix_queue_messages",
        .type = METRIC_GAUGE,
        .help = "Messages in a Postfix queue (finished queue files).",
};
static const MetricFamily family_queue_oldest = {
        .name = "rupost_postfix_queue_oldest_message_age_seconds",
        .type = METRIC_GAUGE,
        .help = "Age of the oldest message in a Postfix queue: time in the queue for maildrop, incoming and "
                "active, time since arrival for deferred and hold; 0 when empty.",
};

#define T(f) offsetof(PostfixProbe, f)
static const ConfigItem postfix_config_items[] = {
        { "queue_directory",   config_parse_string,   T(queue_directory)                           },
        { "active_warning",    config_parse_uint,     T(warning[THRESHOLD_ACTIVE]),    1, 10000000 },
        { "active_critical",   config_parse_uint,     T(critical[THRESHOLD_ACTIVE]),   1, 10000000 },
        { "deferred_warning",  config_parse_uint,     T(warning[THRESHOLD_DEFERRED]),  1, 10000000 },
        { "deferred_critical", config_parse_uint,     T(critical[THRESHOLD_DEFERRED]), 1, 10000000 },
        { "hold_warning",      config_parse_uint,     T(warning[THRESHOLD_HOLD]),      1, 10000000 },
        { "hold_critical",     config_parse_uint,     T(critical[THRESHOLD_HOLD]),     1, 10000000 },
        { "incoming_warning",  config_parse_uint,     T(warning[THRESHOLD_INCOMING]),  1, 10000000 },
        { "incoming_critical", config_parse_uint,     T(critical[THRESHOLD_INCOMING]), 1, 10000000 },
        { "age_warning",       config_parse_duration, T(age_warning),  USEC_PER_SEC, 30 * USEC_PER_DAY },
        { "age_critical",      config_parse_duration, T(age_critical), USEC_PER_SEC, 30 * USEC_PER_DAY },
        {}
};
#undef T

static int postfix_verify(Probe *p, ConfigContext *c) {
        PostfixProbe *x = probe_get_userdata(p);
        static const char *const keys[_THRESHOLD_MAX] = {
                [THRESHOLD_ACTIVE] = "active_critical",
                [THRESHOLD_DEFERRED] = "deferred_critical",
                [THRESHOLD_HOLD] = "hold_critical",
                [THRESHOLD_INCOMING] = "incoming_critical",
        };
        int ret = 0; /* every finding is gathered, for one --check-config to list them all */

        if (!x->queue_directory) {
                x->queue_directory = strdup(POSTFIX_DEFAULT_QUEUE_DIRECTORY);
                if (!x->queue_directory)
                        return -ENOMEM;
        }
        if (x->queue_directory[0] != '/' || strlen(x->queue_directory) > 1024)
                config_gather(&ret, config_error(c, NULL, "queue_directory", "'%s' is not an absolute path",
                                                 x->queue_directory));

        /* A count of 0 cannot be a threshold, so 0 (not given) means the default. */
        for (Threshold t = 0; t < _THRESHOLD_MAX; t++) {
                if (x->warning[t] == 0)
                        x->warning[t] = MIN(threshold_defaults[t].warning, x->critical[t] ?: UINT_MAX);
                if (x->critical[t] == 0)
                        x->critical[t] = MAX(threshold_defaults[t].critical, x->warning[t]);
                if (x->warning[t] > x->critical[t])
                        config_gather(&ret, config_error(c, NULL, keys[t], "%u is below the warning threshold %u",
                                                         x->critical[t], x->warning[t]));
        }
        if (x->age_warning == 0)
                x->age_warning = MIN(DEFAULT_AGE_WARNING, x->age_critical ?: USEC_INFINITY);
        if (x->age_critical == 0)
                x->age_critical = MAX(DEFAULT_AGE_CRITICAL, x->age_warning);
        if (x->age_warning > x->age_critical)
                config_gather(&ret, config_error(c, NULL, "age_critical", "is shorter than age_warning"));
        if (ret < 0)
                return ret;

        if (asprintf(&x->description, "postfix queue check of %s", x->queue_directory) < 0) {
                x->description = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---- in the child: may block on NFS; writes the report and exits ---- */

static void check_master(FILE *out, int qfd) {
        _cleanup_close_ int fd = -EBADF;
        char buf[64];
        ssize_t n;
        uint64_t pid = 0;

        /* O_RDWR as Postfix itself opens it: on NFSv4 an exclusive flock is a
         * write lock on the server and needs a file open for writing. Where
         * the agent may not write (a read-only view of the queue, as its
         * unit's sandbox gives it), a local flock works on a read-only file. */
        fd = openat(qfd, "pid/master.pid", O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0 && (errno == EROFS || errno == EACCES))
                fd = openat(qfd, "pid/master.pid", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOENT)
                        fprintf(out, "master no-pid-file 0\n");
                else
                        fprintf(out, "master error %d\n", errno);
                return;
        }

        /* The pid first: a plain read of a small file (which is also where
         * a hung server would stop us, like any other access). */
        n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
                buf[n] = 0;
                char *s = buf + strspn(buf, " \t");
                s[strcspn(s, " \t\r\n")] = 0;
                if (safe_atou64(s, &pid) < 0 || pid > INT32_MAX)
                        pid = 0;
        }

        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                /* Nobody holds it. Let go at once: a starting master needs it. */
                (void) flock(fd, LOCK_UN);
                fprintf(out, "master not-locked %" PRIu64 "\n", pid);
                return;
        }
        if (errno != EWOULDBLOCK) {
                fprintf(out, "master error %d\n", errno);
                return;
        }
        /* Locked. Unreadable pid: trust the lock, as postfix status does. */
        if (pid == 0 || kill((pid_t) pid, 0) == 0 || errno == EPERM)
                fprintf(out, "master running %" PRIu64 "\n", pid);
        else
                fprintf(out, "master locked-dead %" PRIu64 "\n", pid);
}

typedef struct QueueScan {
        bool read_arrival;
        unsigned arrival_reads;
        uint64_t messages;
        int64_t oldest;
} QueueScan;

static int64_t file_arrival(QueueScan *q, int dfd, const char *name, const struct stat *st) {
        if (!q->read_arrival)
                return (int64_t) st->st_mtime;
        if (q->arrival_reads < POSTFIX_MAX_ARRIVAL_READS) {
                _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
                char buf[POSTFIX_HEADER_READ];
                int64_t t;

                q->arrival_reads++;
                if (fd >= 0) {
                        ssize_t n = pread(fd, buf, sizeof buf, 0);
                        if (n > 0 && postfix_queue_file_arrival(buf, (size_t) n, &t) >= 0 && t > 0)
                                return t;
                }
        }
        return (int64_t) st->st_ctime;
}

static int scan_dir(QueueScan *q, int dfd, unsigned depth) {
        DIR *d;
        struct dirent *de;
        int fd2;

        fd2 = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (fd2 < 0)
                return -errno;
        d = fdopendir(fd2);
        if (!d) {
                int r = -errno;
                safe_close(fd2);
                return r;
        }

        errno = 0;
        while ((de = readdir(d))) {
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                /* Files come and go while we look: a vanished one is not an error. */
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        if (depth >= POSTFIX_MAX_DEPTH)
                                continue;
                        _cleanup_close_ int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                        if (sub >= 0)
                                (void) scan_dir(q, sub, depth + 1);
                        continue;
                }
                /* Only finished queue files: cleanup sets u+x once the file is
                 * complete and fsynced; anything else is still being written. */
                if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
                        continue;
                q->messages++;
                int64_t t = file_arrival(q, dfd, de->d_name, &st);
                if (t > 0 && (q->oldest == 0 || t < q->oldest))
                        q->oldest = t;
        }
        int r = errno ? -errno : 0;
        closedir(d);
        return r;
}

static void check_queue(FILE *out, int qfd, PostfixQueue queue) {
        const char *name = postfix_queue_to_string(queue);
        QueueScan q = {
                .read_arrival = queue == POSTFIX_QUEUE_DEFERRED || queue == POSTFIX_QUEUE_HOLD,
        };
        _cleanup_close_ int dfd = openat(qfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        int r;

        if (dfd < 0) {
                fprintf(out, "queue %s error %d\n", name, errno);
                return;
        }
        r = scan_dir(&q, dfd, 0);
        if (r < 0)
                fprintf(out, "queue %s error %d\n", name, -r);
        else
                fprintf(out, "queue %s %" PRIu64 " %" PRId64 "\n", name, q.messages, q.messages ? q.oldest : 0);
}

static int postfix_child(int out_fd, void *arg) {
        const char *queue_directory = arg;
        FILE *out = fdopen(out_fd, "w");
        _cleanup_close_ int qfd = -EBADF;

        if (!out)
                return 1;
        qfd = open(queue_directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (qfd < 0) {
                /* Neither the master nor the queues can be judged: say so per line. */
                int e = errno;
                fprintf(out, "master error %d\n", e);
                for (PostfixQueue q = 0; q < _POSTFIX_QUEUE_MAX; q++)
                        fprintf(out, "queue %s error %d\n", postfix_queue_to_string(q), e);
        } else {
                check_master(out, qfd);
                for (PostfixQueue q = 0; q < _POSTFIX_QUEUE_MAX; q++)
                        check_queue(out, qfd, q);
        }
        fprintf(out, "end\n");
        return fclose(out) == 0 ? 0 : 1;
}

/* ---- in the agent ---- */

/* Appends one problem to the reason and raises the status. */
static void problem(ProbeStatus *status, ProbeStatus s, char *reason, size_t size, const char *fmt, ...)
        _printf_(5, 6);
static void problem(ProbeStatus *status, ProbeStatus s, char *reason, size_t size, const char *fmt, ...) {
        size_t l = strlen(reason);
        va_list ap;

        *status = probe_status_worst(*status, s);
        if (l > 0 && l + 2 < size) {
                memcpy(reason + l, "; ", 3);
                l += 2;
        }
        if (l + 1 >= size)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(reason + l, size - l, fmt, ap);
        va_end(ap);
}

/* "40min", "2h 5min", "3d 4h": waits an operator reads at a glance. */
static const char *format_age(char *buf, size_t size, usec_t u) {
        uint64_t s = u / USEC_PER_SEC;

        if (s >= 86400)
                snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
        else if (s >= 3600)
                snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "min", s / 3600, s % 3600 / 60);
        else if (s >= 60)
                snprintf(buf, size, "%" PRIu64 "min", s / 60);
        else
                snprintf(buf, size, "%" PRIu64 "s", s);
        return buf;
}

static void judge_count(PostfixProbe *x, Threshold t, uint64_t n, ProbeStatus *status, char *reason, size_t size) {
        if (n >= x->critical[t])
                problem(status, PROBE_CRITICAL, reason, size, "%s queue holds %" PRIu64 " messages (critical at %u)",
                        threshold_defaults[t].name, n, x->critical[t]);
        else if (n >= x->warning[t])
                problem(status, PROBE_WARNING, reason, size, "%s queue holds %" PRIu64 " messages (warning at %u)",
                        threshold_defaults[t].name, n, x->warning[t]);
}

static int postfix_judge(Probe *p, const PostfixReport *rep) {
        PostfixProbe *x = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        char reason[1024] = "";
        int64_t now_sec = (int64_t) (now(CLOCK_REALTIME) / USEC_PER_SEC);

        switch (rep->master) {
        case POSTFIX_MASTER_RUNNING:
                (void) probe_add_sample(p, &family_master_up, 1, NULL);
                break;
        case POSTFIX_MASTER_NOT_LOCKED:
                (void) probe_add_sample(p, &family_master_up, 0, NULL);
                problem(&status, PROBE_CRITICAL, reason, sizeof reason,
                        "postfix master not running: %s/pid/master.pid is not locked (start it: systemctl start postfix)",
                        x->queue_directory);
                break;
        case POSTFIX_MASTER_NO_PID_FILE:
                (void) probe_add_sample(p, &family_master_up, 0, NULL);
                problem(&status, PROBE_CRITICAL, reason, sizeof reason,
                        "postfix master not running: %s/pid/master.pid does not exist", x->queue_directory);
                break;
        case POSTFIX_MASTER_LOCKED_DEAD:
                (void) probe_add_sample(p, &family_master_up, 0, NULL);
                problem(&status, PROBE_CRITICAL, reason, sizeof reason,
                        "%s/pid/master.pid is locked, but its pid %d does not run on this host: another host's "
                        "master may be using this queue; fence it before starting postfix here",
                        x->queue_directory, (int) rep->master_pid);
                break;
        default:
                problem(&status, PROBE_UNKNOWN, reason, sizeof reason, "cannot check %s/pid/master.pid: %s%s",
                        x->queue_directory, strerror(rep->master_error),
                        rep->master_error == ENOLCK ? " (is the queue's NFS mount without locking, nolock?)"
                        : rep->master_error == EBADF
                                ? " (NFS needs the file writable to test the lock: let the agent write the queue)"
                                : "");
        }

        uint64_t incoming = 0;
        char summary[256] = "";
        size_t sl = 0;
        for (PostfixQueue q = 0; q < _POSTFIX_QUEUE_MAX; q++) {
                const PostfixQueueReport *qr = &rep->queues[q];
                const char *name = postfix_queue_to_string(q);

                if (!qr->present || qr->error) {
                        problem(&status, PROBE_UNKNOWN, reason, sizeof reason, "cannot read the %s queue: %s", name,
                                qr->present ? strerror(qr->error) : "not reported");
                        continue;
                }
                int64_t age = qr->messages > 0 ? MAX(now_sec - qr->oldest, (int64_t) 0) : 0;
                (void) probe_add_sample(p, &family_queue_messages, (double) qr->messages, "queue", name, NULL);
                (void) probe_add_sample(p, &family_queue_oldest, (double) age, "queue", name, NULL);
                sl += (size_t) snprintf(summary + sl, sl < sizeof summary ? sizeof summary - sl : 0, "%s%s %" PRIu64,
                                        sl ? ", " : "", name, qr->messages);
                sl = MIN(sl, sizeof summary);

                switch (q) {
                case POSTFIX_QUEUE_ACTIVE:
                        judge_count(x, THRESHOLD_ACTIVE, qr->messages, &status, reason, sizeof reason);
                        break;
                case POSTFIX_QUEUE_DEFERRED:
                        judge_count(x, THRESHOLD_DEFERRED, qr->messages, &status, reason, sizeof reason);
                        break;
                case POSTFIX_QUEUE_HOLD:
                        judge_count(x, THRESHOLD_HOLD, qr->messages, &status, reason, sizeof reason);
                        break;
                default:
                        incoming += qr->messages;
                }

                /* Mail should pass through these quickly; deferred and hold wait by design. */
                if (q == POSTFIX_QUEUE_MAILDROP || q == POSTFIX_QUEUE_INCOMING || q == POSTFIX_QUEUE_ACTIVE) {
                        char a[32], lim[32];
                        usec_t age_usec = (usec_t) age * USEC_PER_SEC;
                        if (age_usec >= x->age_critical)
                                problem(&status, PROBE_CRITICAL, reason, sizeof reason,
                                        "oldest message in %s has waited %s (critical at %s)", name,
                                        format_age(a, sizeof a, age_usec),
                                        format_age(lim, sizeof lim, x->age_critical));
                        else if (age_usec >= x->age_warning)
                                problem(&status, PROBE_WARNING, reason, sizeof reason,
                                        "oldest message in %s has waited %s (warning at %s)", name,
                                        format_age(a, sizeof a, age_usec),
                                        format_age(lim, sizeof lim, x->age_warning));
                }
        }
        judge_count(x, THRESHOLD_INCOMING, incoming, &status, reason, sizeof reason);

        if (status == PROBE_OK)
                return probe_finish(p, PROBE_OK, "master running (pid %d); queues: %s", (int) rep->master_pid,
                                    summary);
        return probe_finish(p, status, "%s", reason);
}

static void on_child_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        Probe *p = userdata;
        PostfixProbe *x = probe_get_userdata(p);
        PostfixReport rep;
        char error[128];

        x->completed = true;
        x->hung_since = 0;
        if (status == -E2BIG) {
                (void) probe_finish(p, PROBE_UNKNOWN, "the queue check wrote more than %d bytes", POSTFIX_REPORT_MAX);
                return;
        }
        if (status != 0) {
                (void) probe_finish(p, PROBE_UNKNOWN, "the queue check of %s failed (%s %d)", x->queue_directory,
                                    status < 0 ? "killed by a signal," : "exit status", status);
                return;
        }
        if (postfix_report_parse(output, size, &rep, error, sizeof error) < 0) {
                (void) probe_finish(p, PROBE_UNKNOWN, "the queue check of %s reported garbage: %s",
                                    x->queue_directory, error);
                return;
        }
        (void) postfix_judge(p, &rep);
}

static int postfix_start(Probe *p) {
        PostfixProbe *x = probe_get_userdata(p);
        int r;

        if (child_abandoned_alive(x->description) > 0) {
                char since[64] = "?";
                time_t t = (time_t) (x->hung_since / USEC_PER_SEC);
                struct tm tm;
                if (x->hung_since > 0 && localtime_r(&t, &tm))
                        strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm);
                return probe_finish(p, PROBE_CRITICAL,
                                    "previous check of %s still hung since %s: is its NFS mount hung?",
                                    x->queue_directory, since);
        }

        x->completed = false;
        probe_set_phase(p, "checking the master lock and the queues (is the queue's NFS mount hung?)");
        r = child_spawn(probe_get_event(p), x->description, postfix_child, x->queue_directory, POSTFIX_REPORT_MAX,
                        on_child_done, p, &x->child);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot start the queue check");
        return 0;
}

static void postfix_stop(Probe *p) {
        PostfixProbe *x = probe_get_userdata(p);

        if (!x->child)
                return;
        /* Still running at stop: the deadline passed (or the run was
         * cancelled). Remember since when, for the next run's reason. */
        if (!x->completed && x->hung_since == 0)
                x->hung_since = now(CLOCK_REALTIME);
        x->child = child_abandon(x->child);
}

static void postfix_done(Probe *p) {
        PostfixProbe *x = probe_get_userdata(p);

        x->child = child_abandon(x->child);
        free(x->queue_directory);
        free(x->description);
}

const ProbeType probe_type_postfix = {
        .name = "postfix",
        .object_size = sizeof(PostfixProbe),
        .config_items = postfix_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 10 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 2,
        .verify = postfix_verify,
        .start = postfix_start,
        .stop = postfix_stop,
        .done = postfix_done,
};
