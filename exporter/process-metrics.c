/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/lib/macro.h"
#include "process-metrics.h"

/* Reads a small /proc file in one read(): the kernel generates these files
 * whole, so one call returns a consistent snapshot. */
static int read_proc_file(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

static int parse_u64(const char *s, char **end, uint64_t *ret) {
        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, end, 10);
        if (errno != 0)
                return -errno;
        *ret = v;
        return 0;
}

int process_stat_parse(const char *stat, long ticks, long page_size, ProcessMetrics *ret,
                       uint64_t *ret_start_ticks) {
        /* Fields are counted from 1 as in proc(5). The command name (field 2)
         * may contain spaces and parentheses, so start after its last ')'. */
        uint64_t utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
        const char *p = strrchr(stat, ')');
        char *end;
        int r;

        if (!p || ticks <= 0 || page_size <= 0)
                return -EINVAL;
        p++;
        for (unsigned field = 3; field <= 24; field++) {
                while (*p == ' ')
                        p++;
                if (*p == 0 || *p == '\n')
                        return -EINVAL;
                if (field == 14 || field == 15 || field == 22 || field == 23 || field == 24) {
                        uint64_t v = 0;

                        r = parse_u64(p, &end, &v);
                        if (r < 0)
                                return r;
                        if (*end != ' ' && *end != '\n' && *end != 0)
                                return -EINVAL;
                        p = end;
                        switch (field) {
                        case 14: utime = v; break;
                        case 15: stime = v; break;
                        case 22: start = v; break;
                        case 23: vsize = v; break;
                        case 24: rss = v; break;
                        }
                } else
                        p += strcspn(p, " \n");
        }

        uint64_t cpu_ticks = utime + stime;
        if (cpu_ticks > UINT64_MAX / USEC_PER_SEC || rss > UINT64_MAX / (uint64_t) page_size)
                return -ERANGE;
        ret->cpu_usec = cpu_ticks * USEC_PER_SEC / (uint64_t) ticks;
        ret->virtual_bytes = vsize;
        ret->resident_bytes = rss * (uint64_t) page_size;
        *ret_start_ticks = start;
        return 0;
}

static int read_boot_time(uint64_t *ret) {
        char buf[16384]; /* /proc/stat of a few hundred CPUs; btime sits after the per-CPU lines */
        const char *p;
        int r;

        r = read_proc_file("/proc/stat", buf, sizeof buf);
        if (r < 0)
                return r;
        p = strstr(buf, "\nbtime ");
        if (!p)
                return -ENOENT;
        return parse_u64(p + strlen("\nbtime "), NULL, ret);
}

static int count_open_fds(uint64_t *ret) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        uint64_t n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        /* The directory stream held one descriptor while it was counted. */
        *ret = n > 0 ? n - 1 : 0;
        return 0;
}

int process_metrics_read(ProcessMetrics *ret) {
        /* The start time is fixed for the life of the process, and the boot
         * time only moves when the clock is stepped; read both once, so that
         * process_start_time_seconds never changes between scrapes (alerts
         * count its changes as restarts). */
        static usec_t start_time_usec = 0;
        long ticks = sysconf(_SC_CLK_TCK), page_size = sysconf(_SC_PAGESIZE);
        ProcessMetrics pm = {};
        uint64_t start_ticks;
        struct rlimit rl;
        char buf[1024];
        int r;

        r = read_proc_file("/proc/self/stat", buf, sizeof buf);
        if (r < 0)
                return r;
        r = process_stat_parse(buf, ticks, page_size, &pm, &start_ticks);
        if (r < 0)
                return r;

        if (start_time_usec == 0) {
                uint64_t btime;

                r = read_boot_time(&btime);
                if (r < 0)
                        return r;
                start_time_usec = btime * USEC_PER_SEC + start_ticks * USEC_PER_SEC / (uint64_t) ticks;
        }
        pm.start_time_usec = start_time_usec;

        r = count_open_fds(&pm.open_fds);
        if (r < 0)
                return r;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        pm.max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t) rl.rlim_cur;

        *ret = pm;
        return 0;
}
