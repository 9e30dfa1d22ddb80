/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A FUSE filesystem that hangs: it answers the kernel's INIT, so the mount
 * succeeds, then reads every request and answers none. A stat() on it sleeps
 * uninterruptibly, immune to SIGKILL, exactly like a hard NFS mount whose
 * server went away. Ending the server closes the device, which aborts the
 * connection and fails the waiting requests.
 *
 * Speaks the kernel protocol directly (INIT only), so no library is needed.
 * Used by the nfs probe's unit test and by the node box's fuse-hang tool. */

#pragma once

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>

/* Mounts the filesystem on DIR; returns the device fd to serve, or -errno
 * (ENOENT: no /dev/fuse, EPERM: no right to mount). */
static inline int fuse_hang_mount(const char *dir) {
        char options[128];
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
        if (mount("rupost-hang", dir, "fuse", MS_NOSUID | MS_NODEV, options) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Serves FD until the connection ends: INIT is answered, nothing else.
 * Exits 0 when the kernel ends the connection (umount), 1 on a read error. */
static inline _Noreturn void fuse_hang_serve(int fd) {
        static char buf[1024 * 1024 + 4096];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < (ssize_t) sizeof(struct fuse_in_header))
                        _exit(n < 0 && errno != ENODEV ? 1 : 0);
                struct fuse_in_header *in = (struct fuse_in_header *) buf;
                if (in->opcode != FUSE_INIT)
                        continue; /* the hang */
                struct fuse_init_in *init = (struct fuse_init_in *) (in + 1);
                struct {
                        struct fuse_out_header h;
                        struct fuse_init_out o;
                } out = {
                        .h = { .len = sizeof out, .unique = in->unique },
                        .o = { .major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION,
                               .max_readahead = init->max_readahead, .max_write = 4096 },
                };
                if (write(fd, &out, sizeof out) != sizeof out)
                        _exit(2);
        }
}
