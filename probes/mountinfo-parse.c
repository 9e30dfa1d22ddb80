/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Formats: Documentation/filesystems/proc.rst (mountinfo, section 3.5) and
 * the kernel's nfs_show_stats() (mountstats). Both escape space, tab,
 * newline and backslash in paths as \ooo octal. */

#include <string.h>

#include "mountinfo-parse.h"

#define FIELDS_MAX 64

void mount_info_done(MountInfo *m) {
        free(m->mount_point);
        free(m->root);
        free(m->fstype);
        free(m->source);
        free(m->mount_options);
        free(m->super_options);
        *m = (MountInfo) {};
}

static bool is_octal(char c) {
        return c >= '0' && c <= '7';
}

/* Copies a field of `n` bytes, decoding \ooo. */
static char *unescape(const char *s, size_t n) {
        char *d = malloc(n + 1), *o = d;

        if (!d)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n && is_octal(s[i + 1]) && is_octal(s[i + 2]) && is_octal(s[i + 3])) {
                        unsigned v = (unsigned) (s[i + 1] - '0') << 6 | (unsigned) (s[i + 2] - '0') << 3 |
                                     (unsigned) (s[i + 3] - '0');
                        /* \000 would cut the string short: keep it literally. */
                        if (v != 0 && v <= 0xff) {
                                *o++ = (char) v;
                                i += 3;
                                continue;
                        }
                }
                *o++ = s[i];
        }
        *o = 0;
        return d;
}

typedef struct Field {
        const char *p;
        size_t n;
} Field;

/* Splits one line (without its newline) at spaces and tabs (mountinfo
 * escapes both inside paths; mountstats indents with tabs). Returns the number of
 * fields, at most `max`; more fields than that are not an error for a caller
 * that knows where its fields are. */
static size_t split(const char *line, size_t len, Field *fields, size_t max) {
        size_t k = 0, i = 0;

        while (i < len && k < max) {
                while (i < len && (line[i] == ' ' || line[i] == '\t'))
                        i++;
                if (i >= len)
                        break;
                size_t start = i;
                while (i < len && line[i] != ' ' && line[i] != '\t')
                        i++;
                fields[k++] = (Field) { line + start, i - start };
        }
        return k;
}

static bool field_is(const Field *f, const char *s) {
        return f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

/* Whether the escaped field names `path`. */
static int field_is_path(const Field *f, const char *path) {
        _cleanup_free_ char *u = unescape(f->p, f->n);
        if (!u)
                return -ENOMEM;
        return streq(u, path);
}

static int dup_field(const Field *f, char **ret) {
        *ret = unescape(f->p, f->n);
        return *ret ? 0 : -ENOMEM;
}

int mountinfo_find(const char *text, size_t size, const char *path, MountInfo *ret) {
        MountInfo found = {};
        bool have = false;
        int r;

        for (size_t off = 0; off < size;) {
                const char *line = text + off, *nl = memchr(line, '\n', size - off);
                size_t len = nl ? (size_t) (nl - line) : size - off;
                Field f[FIELDS_MAX];

                off += len + 1;
                /* id parent major:minor root mount-point options [optional...] - fstype source super */
                size_t n = split(line, len, f, FIELDS_MAX);
                if (n < 9)
                        continue;
                size_t dash = 0;
                for (size_t i = 6; i < n; i++)
                        if (field_is(&f[i], "-")) {
                                dash = i;
                                break;
                        }
                /* fstype and source must follow the separator; super options may be empty */
                if (dash == 0 || dash + 2 >= n)
                        continue;
                r = field_is_path(&f[4], path);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;

                /* Mounts stack: a later line for the same path hides earlier ones. */
                mount_info_done(&found);
                if (dup_field(&f[4], &found.mount_point) < 0 || dup_field(&f[3], &found.root) < 0 ||
                    dup_field(&f[5], &found.mount_options) < 0 || dup_field(&f[dash + 1], &found.fstype) < 0 ||
                    dup_field(&f[dash + 2], &found.source) < 0 ||
                    (dash + 3 < n ? dup_field(&f[dash + 3], &found.super_options) < 0
                                  : !(found.super_options = strdup("")))) {
                        mount_info_done(&found);
                        return -ENOMEM;
                }
                have = true;
        }
        if (!have)
                return -ENOENT;
        *ret = found;
        return 0;
}

bool mount_options_have(const char *options, const char *option) {
        size_t l = strlen(option);

        for (const char *p = options; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);
                if (n == l && memcmp(p, option, l) == 0)
                        return true;
                p = comma ? comma + 1 : NULL;
        }
        return false;
}

static bool parse_u64(const Field *f, uint64_t *ret) {
        uint64_t v = 0;

        if (f->n == 0 || f->n > 20)
                return false;
        for (size_t i = 0; i < f->n; i++) {
                if (f->p[i] < '0' || f->p[i] > '9')
                        return false;
                uint64_t d = (uint64_t) (f->p[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *ret = v;
        return true;
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int mountstats_find(const char *text, size_t size, const char *path, MountStats *ret) {
        MountStats s = {};
        bool in_mount = false, have = false, in_ops = false;
        int r;

        for (size_t off = 0; off < size;) {
                const char *line = text + off, *nl = memchr(line, '\n', size - off);
                size_t len = nl ? (size_t) (nl - line) : size - off;
                Field f[FIELDS_MAX];

                off += len + 1;
                size_t n = split(line, len, f, FIELDS_MAX);
                if (n == 0)
                        continue;

                /* device SRC mounted on MP with fstype TYPE [statvers=1.1] */
                if (field_is(&f[0], "device")) {
                        in_mount = in_ops = false;
                        if (n < 8 || !field_is(&f[2], "mounted") || !field_is(&f[3], "on") ||
                            !field_is(&f[5], "with") || !field_is(&f[6], "fstype"))
                                continue;
                        if (!field_is(&f[7], "nfs") && !field_is(&f[7], "nfs4"))
                                continue;
                        r = field_is_path(&f[4], path);
                        if (r < 0)
                                return r;
                        if (r > 0) {
                                /* As with mountinfo, the last stacked mount counts. */
                                s = (MountStats) {};
                                in_mount = have = true;
                        }
                        continue;
                }
                if (!in_mount)
                        continue;

                if (field_is(&f[0], "xprt:") && n >= 2) {
                        /* tcp/rdma: port bind_count connect_count connect_time idle_time sends recvs ...
                         * udp:      port bind_count sends recvs ... */
                        size_t at = field_is(&f[1], "udp") ? 4 : 7;
                        if (n > at + 1 && parse_u64(&f[at], &s.xprt_sends) && parse_u64(&f[at + 1], &s.xprt_recvs))
                                s.have_xprt = true;
                } else if (field_is(&f[0], "per-op"))
                        in_ops = true;
                else if (in_ops && n >= 4 && f[0].n > 1 && f[0].p[f[0].n - 1] == ':') {
                        /* OP: ops trans major_timeouts bytes_sent bytes_recv queue rtt execute [errors] */
                        uint64_t ops, trans, timeouts;
                        if (parse_u64(&f[1], &ops) && parse_u64(&f[2], &trans) && parse_u64(&f[3], &timeouts)) {
                                s.ops = add_sat(s.ops, ops);
                                s.transmissions = add_sat(s.transmissions, trans);
                                s.major_timeouts = add_sat(s.major_timeouts, timeouts);
                        }
                }
        }
        if (!have)
                return -ENOENT;
        *ret = s;
        return 0;
}
