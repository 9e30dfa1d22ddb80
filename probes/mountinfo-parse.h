/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Pure parsers of /proc/self/mountinfo and /proc/self/mountstats, which the
 * kernel serves from memory: reading them makes no NFS RPC, so they are safe
 * on the event loop even when the server is gone. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/macro.h"

typedef struct MountInfo {
        char *mount_point;   /* unescaped */
        char *root;          /* the mounted directory inside the source filesystem */
        char *fstype;        /* "nfs4"; "fuse.x" for FUSE subtypes */
        char *source;        /* "server:/export" */
        char *mount_options; /* per-mount: "rw,relatime" */
        char *super_options; /* of the filesystem: "rw,vers=4.2,hard,local_lock=none,..." */
} MountInfo;

void mount_info_done(MountInfo *m);

/* Finds the mount whose mount point is `path` (exact, after unescaping). When
 * several are stacked on one path the last, visible one is returned. Lines
 * the parser cannot read are skipped. Returns -ENOENT when `path` is not a
 * mount point, -ENOMEM. */
int mountinfo_find(const char *text, size_t size, const char *path, MountInfo *ret);

/* Whether the comma separated list has `option` as an element ("rw",
 * "local_lock=none"); an option without '=' also matches "option=..." never. */
bool mount_options_have(const char *options, const char *option);

typedef struct MountStats {
        uint64_t ops;            /* RPC operations, all kinds */
        uint64_t transmissions;  /* RPC transmissions (ops plus retransmissions) */
        uint64_t major_timeouts; /* "server not responding" events */
        uint64_t xprt_sends;
        uint64_t xprt_recvs;
        bool have_xprt;
} MountStats;

/* Sums the per-operation statistics of the NFS mount at `path` in
 * /proc/self/mountstats text. Returns -ENOENT when there is no NFS mount
 * there (other filesystems have no statistics). */
int mountstats_find(const char *text, size_t size, const char *path, MountStats *ret);
