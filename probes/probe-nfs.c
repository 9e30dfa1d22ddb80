/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nfs: one shared NFSv4 directory (mail queues, mailboxes, archives,
 * records) is mounted the way the product needs it and answers.
 *
 * Two steps. First, on the loop, what the kernel says without asking the
 * server: /proc/self/mountinfo (is the path a mount point, of the expected
 * filesystem type, read-write, with the required options such as
 * local_lock=none for the queue handover) and /proc/self/mountstats (RPC
 * retransmissions and major timeouts). Reading them makes no RPC.
 *
 * Then the active check, which touches the server and may hang for as long
 * as the server is gone (a hard mount, or a FUSE stand-in, waits in D state
 * and ignores SIGKILL): it runs in a forked child (lib/child.h) under the
 * probe's deadline. The child stats the directory (owner 420:420, the
 * product's rule), then, as that owner, writes, fsyncs, reads back and
 * unlinks a canary file `.rupost-agent-<node>` (whose mtime, set by the
 * server, gives the server's clock against ours), and reads statvfs. A child that missed its deadline is
 * abandoned; while it is stuck no other is spawned, and each run says so. */

#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "lib/buf.h"
#include "lib/child.h"
#include "lib/parse-util.h"
#include "manager.h"
#include "mountinfo-parse.h"
#include "probes.h"

#define PROC_FILE_MAX (4U * 1024U * 1024U)
#define CANARY_PREFIX ".rupost-agent-"
#define DEFAULT_OWNER "420:420"

typedef struct NfsProbe {
        /* configuration */
        char *path;
        char *mount_point; /* where the share is mounted: path itself, or a parent of it */
        char *share;
        char *fstype;
        char **required_options;
        char *owner;
        unsigned space_warning;  /* percent free */
        unsigned space_critical;
        unsigned inodes_warning;
        unsigned inodes_critical;
        usec_t skew_warning;

        uid_t uid;
        gid_t gid;
        char *description; /* of the child, unique per share */

        /* one run */
        Child *child;
        usec_t spawned;
        size_t responsive_sample; /* index of the rupost_nfs_mount_responsive sample */
        char *mount_problem;      /* what mountinfo said was wrong, judged with the rest */
        char canary[PATH_MAX];

        /* across runs */
        usec_t hung_since; /* CLOCK_REALTIME when a child was abandoned, 0 if none */
} NfsProbe;

/* What the child reports over its pipe: a fixed binary record, since parent
 * and child are the same program. */
typedef struct NfsReport {
        int stat_errno;
        uid_t uid;
        gid_t gid;
        int canary_errno;
        char canary_step[32]; /* which step failed: "create", "write", "fsync", ... */
        usec_t before_write;  /* CLOCK_REALTIME */
        usec_t after_fsync;
        usec_t mtime; /* of the canary, as the server set it */
        usec_t io_duration;
        int statvfs_errno;
        uint64_t size_bytes;
        uint64_t avail_bytes;
        uint64_t files;
        uint64_t files_free;
} NfsReport;

#define DEFINE_FAMILY(var, n, h) \
        static const MetricFamily var = { .name = n, .type = METRIC_GAUGE, .help = h }

DEFINE_FAMILY(family_present, "rupost_nfs_mount_present",
              "Whether the share is mounted with the expected filesystem type (1) or not (0), from mountinfo.");
DEFINE_FAMILY(family_responsive, "rupost_nfs_mount_responsive",
              "Whether the last active check of the share (stat, write, fsync, read, unlink) finished in time.");
DEFINE_FAMILY(family_duration, "rupost_nfs_check_duration_seconds",
              "How long the last active check of the share took.");
DEFINE_FAMILY(family_avail, "rupost_filesystem_avail_bytes", "Space available to unprivileged users on the share.");
DEFINE_FAMILY(family_size, "rupost_filesystem_size_bytes", "Size of the filesystem of the share.");
DEFINE_FAMILY(family_files_free, "rupost_filesystem_files_free", "Free inodes on the filesystem of the share.");
DEFINE_FAMILY(family_owner_ok, "rupost_nfs_owner_ok",
              "Whether the share's directory has the expected owner (the product requires 420:420).");
static const MetricFamily family_major_timeouts = {
        .name = "rupost_nfs_rpc_major_timeouts_total",
        .type = METRIC_COUNTER,
        .help = "NFS RPC major timeouts (\"server not responding\") on the share's mount, from mountstats.",
};
static const MetricFamily family_retransmissions = {
        .name = "rupost_nfs_rpc_retransmissions_total",
        .type = METRIC_COUNTER,
        .help = "NFS RPC retransmissions on the share's mount, from mountstats.",
};

static const ConfigItem nfs_config_items[] = {
        { "path",             config_parse_string, offsetof(NfsProbe, path), .required = true },
        { "mount_point",      config_parse_string, offsetof(NfsProbe, mount_point)            },
        { "share",            config_parse_string, offsetof(NfsProbe, share)                  },
        { "fstype",           config_parse_string, offsetof(NfsProbe, fstype)                 },
        { "required_options", config_parse_strv,   offsetof(NfsProbe, required_options), 0, 32 },
        { "owner",            config_parse_string, offsetof(NfsProbe, owner)                  },
        { "space_warning",    config_parse_uint,   offsetof(NfsProbe, space_warning),   1, 99 },
        { "space_critical",   config_parse_uint,   offsetof(NfsProbe, space_critical),  1, 99 },
        { "inodes_warning",   config_parse_uint,   offsetof(NfsProbe, inodes_warning),  1, 99 },
        { "inodes_critical",  config_parse_uint,   offsetof(NfsProbe, inodes_critical), 1, 99 },
        { "skew_warning",     config_parse_duration, offsetof(NfsProbe, skew_warning), USEC_PER_MSEC, USEC_PER_HOUR },
        {}
};

/* "420:420" */
static int parse_owner(const char *s, uid_t *ret_uid, gid_t *ret_gid) {
        _cleanup_free_ char *copy = strdup(s);
        uint64_t u, g;
        char *colon;

        if (!copy)
                return -ENOMEM;
        colon = strchr(copy, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        if (safe_atou64(copy, &u) < 0 || safe_atou64(colon + 1, &g) < 0 || u >= UINT32_MAX || g >= UINT32_MAX)
                return -EINVAL;
        *ret_uid = (uid_t) u;
        *ret_gid = (gid_t) g;
        return 0;
}

static int set_default(char **field, const char *value) {
        if (*field)
                return 0;
        *field = strdup(value);
        return *field ? 0 : -ENOMEM;
}

static int nfs_verify(Probe *p, ConfigContext *c) {
        NfsProbe *n = probe_get_userdata(p);
        int r = 0;

        if (n->path[0] != '/' || strstr(n->path, "/../") || strlen(n->path) > PATH_MAX - 128)
                r = config_error(c, NULL, "path", "'%s' is not an absolute path", n->path);
        /* mountinfo shows mount points without a trailing slash. */
        for (size_t l = strlen(n->path); l > 1 && n->path[l - 1] == '/'; l--)
                n->path[l - 1] = 0;
        if (set_default(&n->mount_point, n->path) < 0)
                return -ENOMEM;
        for (size_t l = strlen(n->mount_point); l > 1 && n->mount_point[l - 1] == '/'; l--)
                n->mount_point[l - 1] = 0;
        if (n->mount_point[0] != '/' ||
            (!streq(n->mount_point, "/") && !streq(n->mount_point, n->path) &&
             (strncmp(n->path, n->mount_point, strlen(n->mount_point)) != 0 || n->path[strlen(n->mount_point)] != '/')))
                r = config_error(c, NULL, "mount_point", "'%s' is not '%s' or a parent directory of it", n->mount_point,
                                 n->path);
        if (!n->share) {
                const char *base = strrchr(n->path, '/');
                if (set_default(&n->share, base && base[1] ? base + 1 : n->path) < 0)
                        return -ENOMEM;
        }
        if (set_default(&n->fstype, "nfs4") < 0 || set_default(&n->owner, DEFAULT_OWNER) < 0)
                return -ENOMEM;
        if (parse_owner(n->owner, &n->uid, &n->gid) < 0)
                r = config_error(c, NULL, "owner", "'%s' is not numeric UID:GID, like 420:420", n->owner);
        n->space_warning = n->space_warning ?: 10;
        n->space_critical = n->space_critical ?: 5;
        n->inodes_warning = n->inodes_warning ?: 10;
        n->inodes_critical = n->inodes_critical ?: 5;
        n->skew_warning = n->skew_warning ?: USEC_PER_SEC;
        if (n->space_critical > n->space_warning)
                r = config_error(c, NULL, "space_critical", "is above space_warning (%u%%)", n->space_warning);
        if (n->inodes_critical > n->inodes_warning)
                r = config_error(c, NULL, "inodes_critical", "is above inodes_warning (%u%%)", n->inodes_warning);
        if (asprintf(&n->description, "nfs %s", n->path) < 0)
                return -ENOMEM;
        return r;
}

static void nfs_stop(Probe *p) {
        NfsProbe *n = probe_get_userdata(p);

        if (n->child) {
                /* Still running at the deadline or on cancellation: it is
                 * stuck on the server, probably in D state. */
                if (n->hung_since == 0)
                        n->hung_since = now(CLOCK_REALTIME);
                n->child = child_abandon(n->child);
        }
        free(n->mount_problem);
        n->mount_problem = NULL;
}

static void nfs_done(Probe *p) {
        NfsProbe *n = probe_get_userdata(p);

        free(n->path);
        free(n->mount_point);
        free(n->share);
        free(n->fstype);
        strv_free(n->required_options);
        free(n->owner);
        free(n->description);
}

static int read_proc_file(const char *path, Buf *ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        char b[16384];

        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t k = read(fd, b, sizeof b);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return buf_status(ret);
                if (buf_append(ret, b, (size_t) k) < 0)
                        return -EFBIG;
        }
}

static void format_bytes(char *buf, size_t len, uint64_t b) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) b;
        size_t u = 0;

        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static const char *node_name(Probe *p, char *buf, size_t len) {
        const char *node = p->manager ? manager_node_name(p->manager) : "";

        if (!*node && gethostname(buf, len - 1) == 0)
                node = buf;
        else
                snprintf(buf, len, "%s", *node ? node : "unknown");
        buf[len - 1] = 0;
        for (char *c = buf; *c; c++)
                if (*c == '/')
                        *c = '_';
        return buf;
}

/* In the child: everything that may block on the server. */
/* The canary is written as the share's owner, as Postfix and Dovecot
 * write: a server that squashes root (root_squash, the NFS default) maps
 * root to nobody, and root's CAP_DAC_OVERRIDE would hide a mode that locks
 * the owner out. Only root can switch; anyone else writes as itself. */
static int become_owner(uid_t uid, gid_t gid) {
        if (geteuid() != 0)
                return 0;
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        return 0;
}

static int nfs_child(int out_fd, void *arg) {
        const NfsProbe *n = arg;
        const char *canary = n->canary;
        const char *path_end = strrchr(canary, '/');
        char dir[PATH_MAX], content[128], back[128];
        NfsReport rep = {};
        struct stat st;
        struct statvfs sv;
        int fd;

        snprintf(dir, sizeof dir, "%.*s", (int) (path_end - canary), canary);
        usec_t begin = now(CLOCK_MONOTONIC);

        if (stat(dir, &st) < 0)
                rep.stat_errno = errno;
        else {
                rep.uid = st.st_uid;
                rep.gid = st.st_gid;
        }

#define STEP(name, expr)                                        \
        if (rep.canary_errno == 0 && !(expr)) {                 \
                rep.canary_errno = errno ?: EIO;                \
                snprintf(rep.canary_step, sizeof rep.canary_step, "%s", name); \
        }
        if (rep.stat_errno == 0) {
                int r = become_owner(n->uid, n->gid);
                if (r < 0) {
                        rep.canary_errno = -r;
                        snprintf(rep.canary_step, sizeof rep.canary_step, "switch");
                }
        }
        errno = 0;
        if (rep.stat_errno == 0 && rep.canary_errno == 0) {
                int len = snprintf(content, sizeof content, "rupost-agent canary %llu\n",
                                   (unsigned long long) now(CLOCK_REALTIME));
                rep.before_write = now(CLOCK_REALTIME);
                fd = open(canary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                STEP("create", fd >= 0);
                STEP("write", fd < 0 || write(fd, content, (size_t) len) == len);
                STEP("fsync", fd < 0 || fsync(fd) == 0);
                rep.after_fsync = now(CLOCK_REALTIME);
                STEP("stat", fd < 0 || fstat(fd, &st) == 0);
                if (rep.canary_errno == 0)
                        rep.mtime = (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC + (usec_t) st.st_mtim.tv_nsec / 1000;
                if (fd >= 0)
                        STEP("close", close(fd) == 0);
                fd = rep.canary_errno == 0 ? open(canary, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
                STEP("open for reading", rep.canary_errno != 0 || fd >= 0);
                ssize_t k = fd >= 0 ? read(fd, back, sizeof back) : -1;
                STEP("read", rep.canary_errno != 0 || k >= 0);
                if (rep.canary_errno == 0 && (k != len || memcmp(back, content, (size_t) len) != 0)) {
                        rep.canary_errno = EILSEQ;
                        snprintf(rep.canary_step, sizeof rep.canary_step, "read back");
                }
                if (fd >= 0)
                        (void) close(fd);
                /* Remove it whatever happened before, so no canary stays behind. */
                if (unlink(canary) < 0 && errno != ENOENT && rep.canary_errno == 0) {
                        rep.canary_errno = errno;
                        snprintf(rep.canary_step, sizeof rep.canary_step, "unlink");
                }
        }
#undef STEP
        rep.io_duration = now(CLOCK_MONOTONIC) - begin;

        if (statvfs(dir, &sv) < 0)
                rep.statvfs_errno = errno;
        else {
                rep.size_bytes = (uint64_t) sv.f_blocks * sv.f_frsize;
                rep.avail_bytes = (uint64_t) sv.f_bavail * sv.f_frsize;
                rep.files = sv.f_files;
                rep.files_free = sv.f_favail;
        }
        return write(out_fd, &rep, sizeof rep) == sizeof rep ? 0 : 1;
}

static int percent_of(uint64_t part, uint64_t whole) {
        return whole == 0 ? 100 : (int) (part * 100 / whole);
}

static int nfs_judge(Probe *p, const NfsReport *rep) {
        NfsProbe *n = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(1024);
        char a[32], s[32];
        int r;

        p->pending.samples[n->responsive_sample].value = 1;
        (void) probe_add_sample(p, &family_duration, usec_to_seconds(now(CLOCK_MONOTONIC) - n->spawned), "share",
                                n->share, NULL);

        if (n->mount_problem)
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "%s", n->mount_problem);

        if (rep->stat_errno != 0) {
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "cannot stat %s: %s", n->path, strerror(rep->stat_errno));
                goto finish;
        }
        bool owner_ok = rep->uid == n->uid && rep->gid == n->gid;
        (void) probe_add_sample(p, &family_owner_ok, owner_ok, "share", n->share, NULL);
        if (!owner_ok)
                probe_reason_add(&reason, &status, PROBE_CRITICAL,
                       "owner is %u:%u, expected %u:%u: run chown -R %u:%u %s on the NFS server", rep->uid, rep->gid,
                       n->uid, n->gid, n->uid, n->gid, n->path);

        if (rep->canary_errno != 0 && streq(rep->canary_step, "switch"))
                probe_reason_add(&reason, &status, PROBE_CRITICAL,
                                 "cannot write the canary as the owner %u:%u: %s (the agent needs CAP_SETUID and "
                                 "CAP_SETGID)", n->uid, n->gid, strerror(rep->canary_errno));
        else if (rep->canary_errno != 0)
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "canary %s: %s as %u:%u failed: %s", n->canary,
                                 rep->canary_step, n->uid, n->gid,
                                 rep->canary_errno == EILSEQ ? "read back other bytes than written"
                                                             : strerror(rep->canary_errno));
        else {
                /* The server stamped the mtime somewhere between our two readings. */
                double mid = ((double) rep->before_write + (double) rep->after_fsync) / 2 / 1e6;
                double skew = (double) rep->mtime / 1e6 - mid;
                double uncertainty = ((double) rep->after_fsync - (double) rep->before_write) / 2 / 1e6;
                char source[256];

                snprintf(source, sizeof source, "nfs:%s", n->share);
                (void) probe_add_sample(p, &family_time_offset_seconds, skew, "source", source, NULL);
                if (fabs(skew) - uncertainty > usec_to_seconds(n->skew_warning))
                        probe_reason_add(&reason, &status, PROBE_WARNING,
                               "the NFS server's clock is %.3f s %s of ours (by the canary's mtime): the cluster "
                               "tolerates %g s; check chrony on the NFS server",
                               fabs(skew), skew > 0 ? "ahead" : "behind", usec_to_seconds(n->skew_warning));
        }

        if (rep->statvfs_errno != 0)
                probe_reason_add(&reason, &status, PROBE_CRITICAL, "statvfs of %s failed: %s", n->path,
                       strerror(rep->statvfs_errno));
        else {
                (void) probe_add_sample(p, &family_avail, (double) rep->avail_bytes, "share", n->share, NULL);
                (void) probe_add_sample(p, &family_size, (double) rep->size_bytes, "share", n->share, NULL);
                (void) probe_add_sample(p, &family_files_free, (double) rep->files_free, "share", n->share, NULL);

                int space = percent_of(rep->avail_bytes, rep->size_bytes);
                format_bytes(a, sizeof a, rep->avail_bytes);
                format_bytes(s, sizeof s, rep->size_bytes);
                if (space < (int) n->space_warning)
                        probe_reason_add(&reason, &status, space < (int) n->space_critical ? PROBE_CRITICAL : PROBE_WARNING,
                               "only %d%% space free on %s (%s of %s): free space or grow the export", space,
                               n->path, a, s);
                /* Some filesystems have no fixed inode table and say 0. */
                int inodes = percent_of(rep->files_free, rep->files);
                if (rep->files > 0 && inodes < (int) n->inodes_warning)
                        probe_reason_add(&reason, &status, inodes < (int) n->inodes_critical ? PROBE_CRITICAL : PROBE_WARNING,
                               "only %d%% inodes free on %s (%" PRIu64 " of %" PRIu64 ")", inodes, n->path,
                               rep->files_free, rep->files);
                if (status == PROBE_OK)
                        (void) buf_printf(&reason,
                                          "%s: %s, owner %u:%u, write+fsync+read+unlink in %.1f ms, %d%% space free "
                                          "(%s of %s)",
                                          n->path, n->fstype, rep->uid, rep->gid,
                                          (double) rep->io_duration / USEC_PER_MSEC, space, a, s);
        }

finish:
        r = probe_finish(p, status, "%s%s", reason.data ?: "", reason.overflow ? "..." : "");
        buf_done(&reason);
        return r;
}

static void on_child_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        Probe *p = userdata;
        NfsProbe *n = probe_get_userdata(p);
        NfsReport rep;

        bool complete = status == 0 && size == sizeof rep;

        /* Copy before freeing the handle: `output` belongs to it. */
        if (complete)
                memcpy(&rep, output, sizeof rep);
        n->child = child_abandon(c);
        if (!complete) {
                (void) probe_finish(p, PROBE_UNKNOWN, "the check of %s ended without a report (%s %d)", n->path,
                                    status < 0 ? "error" : "exit status", status);
                return;
        }
        (void) nfs_judge(p, &rep);
}

/* The kernel's view: no RPC. Returns 1 to go on with the active check. */
static int nfs_check_mount(Probe *p) {
        NfsProbe *n = probe_get_userdata(p);
        _cleanup_(mount_info_done) MountInfo mi = {};
        Buf text = BUF_INIT(PROC_FILE_MAX);
        int r;

        r = read_proc_file("/proc/self/mountinfo", &text);
        if (r >= 0)
                r = mountinfo_find(text.data ?: "", text.len, n->mount_point, &mi);
        buf_done(&text);
        if (r == -ENOENT) {
                (void) probe_add_sample(p, &family_present, 0, "share", n->share, NULL);
                return probe_finish(p, PROBE_CRITICAL,
                                    "%s is not mounted (not in /proc/self/mountinfo): mount the share "
                                    "(check /etc/fstab and that the NFS server exports it)",
                                    n->mount_point);
        }
        if (r < 0)
                return probe_finish_errno(p, r, "cannot read /proc/self/mountinfo");

        bool type_ok = streq(mi.fstype, n->fstype);
        (void) probe_add_sample(p, &family_present, type_ok, "share", n->share, NULL);

        Buf problem = BUF_INIT(512);
        if (!type_ok)
                (void) buf_printf(&problem, "%s is mounted as %s from %s, expected %s", n->mount_point, mi.fstype, mi.source,
                                  n->fstype);
        if (!mount_options_have(mi.mount_options, "rw") || mount_options_have(mi.super_options, "ro"))
                (void) buf_printf(&problem, "%s%s is mounted read-only: remount it rw", problem.len ? "; " : "",
                                  n->mount_point);
        for (char **o = n->required_options; o && *o; o++)
                if (!mount_options_have(mi.super_options, *o) && !mount_options_have(mi.mount_options, *o))
                        (void) buf_printf(&problem, "%s%s is mounted without %s (options: %s): add it to the mount options",
                                          problem.len ? "; " : "", n->mount_point, *o, mi.super_options);
        if (problem.len > 0)
                n->mount_problem = buf_steal(&problem);
        buf_done(&problem);

        MountStats ms;
        text = BUF_INIT(PROC_FILE_MAX);
        if (read_proc_file("/proc/self/mountstats", &text) >= 0 &&
            mountstats_find(text.data ?: "", text.len, n->mount_point, &ms) >= 0) {
                (void) probe_add_sample(p, &family_major_timeouts, (double) ms.major_timeouts, "share", n->share,
                                        NULL);
                (void) probe_add_sample(p, &family_retransmissions,
                                        (double) (ms.transmissions > ms.ops ? ms.transmissions - ms.ops : 0), "share",
                                        n->share, NULL);
        }
        buf_done(&text);
        return 1;
}

static int nfs_start(Probe *p) {
        NfsProbe *n = probe_get_userdata(p);
        char node[256];
        int r;

        probe_set_phase(p, "reading /proc/self/mountinfo");
        r = nfs_check_mount(p);
        if (r <= 0)
                return r;

        if (child_abandoned_alive(n->description) > 0) {
                char since[64] = "an earlier run";
                if (n->hung_since > 0) {
                        time_t t = (time_t) (n->hung_since / USEC_PER_SEC);
                        struct tm tm;
                        strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
                }
                (void) probe_add_sample(p, &family_responsive, 0, "share", n->share, NULL);
                return probe_finish(p, PROBE_CRITICAL,
                                    "previous check of %s still hung (since %s): the NFS server does not answer%s%s",
                                    n->path, since, n->mount_problem ? "; " : "", n->mount_problem ?: "");
        }
        n->hung_since = 0;

        snprintf(n->canary, sizeof n->canary, "%s/" CANARY_PREFIX "%s", n->path, node_name(p, node, sizeof node));
        /* Counted as unresponsive until the child reports: if the deadline
         * comes first, that is what the run recorded. */
        n->responsive_sample = p->pending.n_samples;
        r = probe_add_sample(p, &family_responsive, 0, "share", n->share, NULL);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot record a sample");

        probe_set_phase(p, "waiting for stat, write and fsync on the share");
        n->spawned = now(CLOCK_MONOTONIC);
        r = child_spawn(probe_get_event(p), n->description, nfs_child, n, sizeof(NfsReport), on_child_done, p,
                        &n->child);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot fork the check");
        return 0;
}

const ProbeType probe_type_nfs = {
        .name = "nfs",
        .object_size = sizeof(NfsProbe),
        .config_items = nfs_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 2,
        .verify = nfs_verify,
        .start = nfs_start,
        .stop = nfs_stop,
        .done = nfs_done,
};
