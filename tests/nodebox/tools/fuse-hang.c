/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse-hang DIR: mounts a filesystem on DIR that never answers (see
 * tests/unit/fuse-hang.h) and serves it until killed. Run inside a node box
 * (systemd-run), it stands in for an NFS share whose server went away while
 * the agent watches it. Stopping it aborts the connection: the waiting
 * requests fail with ENOTCONN and DIR stays a dead mount until unmounted. */

#include <stdlib.h>
#include <string.h>

#include "fuse-hang.h"

int main(int argc, char *argv[]) {
        if (argc != 2) {
                fprintf(stderr, "usage: fuse-hang DIR\n");
                return 2;
        }
        int fd = fuse_hang_mount(argv[1]);
        if (fd < 0) {
                fprintf(stderr, "fuse-hang: cannot mount on %s: %s\n", argv[1], strerror(-fd));
                return 1;
        }
        fprintf(stderr, "fuse-hang: %s mounted; every request will hang\n", argv[1]);
        fuse_hang_serve(fd);
}
