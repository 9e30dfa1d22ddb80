/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Work that may block (a stat() on a hung NFS mount, a library without an
 * asynchronous API, an external checker) runs in a forked child, never on the
 * event loop. The child writes its report to a pipe; the parent collects it
 * when the child has exited.
 *
 * A child that must be given up (its probe hit the deadline) is abandoned:
 * it gets SIGKILL and is reaped whenever it really exits, which for a process
 * in uninterruptible sleep on a dead NFS server may be much later. Until then
 * child_abandoned_alive() tells its owner not to start another one, so hung
 * children never pile up.
 *
 * A child keeps only stdin, stdout, stderr and its pipe: every other
 * descriptor is closed right after the fork, so a child stuck in the kernel
 * holds none of the agent's listening sockets or connections. The child's
 * logging goes to stderr (the journal's socket was closed with the rest). */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>
#include <sys/types.h>

#include "macro.h"

typedef struct Child Child;

/* Runs in the child. Write the report to out_fd; the return value becomes
 * the exit status (0..125). */
typedef int (*ChildFunc)(int out_fd, void *arg);

/* In the parent, once the child exited and its output was read. status is
 * the exit status, or -EINTR when a signal killed it, -E2BIG when it wrote
 * more than max_output, or -ENOMEM when its output could not be kept (the
 * output is then incomplete and must not be used). */
typedef void (*ChildDone)(Child *c, int status, const char *output, size_t size, void *userdata);

/* SIGCHLD must be blocked in the calling thread (the manager does so). */
int child_spawn(sd_event *e, const char *description, ChildFunc func, void *arg, size_t max_output,
                ChildDone done, void *userdata, Child **ret);

/* Kills the child if it still runs and frees the handle once it is reaped;
 * `done` is not called. Accepts NULL; returns NULL. */
Child *child_abandon(Child *c);

pid_t child_pid(const Child *c);

/* Children spawned from now on get /dev/null as stdin, stdout and stderr.
 * For a short-lived parent whose output a pipe carries (rupost-health run by
 * a monitoring system): a child stuck in the kernel outlives the parent, and
 * holding the pipe open it would keep the reader waiting for the end. */
void child_set_null_stdio(bool b);

/* How many abandoned children with this description are not reaped yet:
 * a probe must not spawn another while its last one is stuck. NULL counts
 * them all, for a process that wants to reap them before it exits. */
unsigned child_abandoned_alive(const char *description);
