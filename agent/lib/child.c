/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "child.h"
#include "log.h"

struct Child {
        char *description;
        pid_t pid;
        int pipe_fd;
        sd_event_source *child_source;
        sd_event_source *pipe_source;
        Buf output;
        bool exited;
        bool eof;
        bool abandoned;
        int status;
        ChildDone done;
        void *userdata;
        Child *next_abandoned;
};

/* The child's end of the pipe is moved to this descriptor or above, out of
 * the way of stdio (an agent started with stdin closed gets 0 from pipe2()). */
#define CHILD_PIPE_FD_MIN 3

/* Abandoned children that were not reaped yet, so their number can be told
 * and so they are not leaked. There is one event loop and no threads. */
static Child *abandoned_list = NULL;
static bool null_stdio = false;

void child_set_null_stdio(bool b) {
        null_stdio = b;
}

static void child_stdio_to_null(void) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);

        if (fd < 0) {
                /* Closed is second best: the pipes are let go all the same. */
                (void) close(STDOUT_FILENO);
                (void) close(STDERR_FILENO);
                return;
        }
        (void) dup2(fd, STDIN_FILENO);
        (void) dup2(fd, STDOUT_FILENO);
        (void) dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
                (void) close(fd);
}

/* Closes every descriptor from 3 up but `keep`, by walking /proc/self/fd
 * with getdents64() on a stack buffer: after fork() only async-signal-safe
 * calls are safe, so no opendir() (it allocates). */
static int close_by_proc(int keep) {
        union {
                struct dirent64 d;
                char raw[4096];
        } buf;
        int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (dfd < 0)
                return -errno;
        for (;;) {
                long n = syscall(SYS_getdents64, dfd, buf.raw, sizeof buf.raw);
                if (n < 0) {
                        int r = -errno;
                        (void) close(dfd);
                        return r;
                }
                if (n == 0)
                        break;
                for (long off = 0; off < n;) {
                        const struct dirent64 *d = (const struct dirent64 *) (buf.raw + off);
                        int fd = 0;
                        bool number = d->d_name[0] != '\0';

                        off += d->d_reclen;
                        for (const char *p = d->d_name; *p && number; p++) {
                                if (*p < '0' || *p > '9' || fd > (INT_MAX - 9) / 10)
                                        number = false;
                                else
                                        fd = fd * 10 + (*p - '0');
                        }
                        if (number && fd > STDERR_FILENO && fd != keep && fd != dfd)
                                (void) close(fd);
                }
        }
        (void) close(dfd);
        return 0;
}

/* In the child, right after fork(): every descriptor but stdio and the
 * pipe goes. A child stuck in the kernel (stat() on a hung NFS mount) may
 * outlive the agent; holding copies of the listening sockets it would keep
 * a restarted agent from binding them, and holding the PostgreSQL and D-Bus
 * connections it would make them look alive to their peers. */
static void child_close_all_but(int keep) {
        assert(keep > STDERR_FILENO);

        if (keep > CHILD_PIPE_FD_MIN && close_range(CHILD_PIPE_FD_MIN, (unsigned) keep - 1, 0) < 0)
                goto fallback;
        if (close_range((unsigned) keep + 1, ~0U, 0) < 0)
                goto fallback;
        return;

fallback:
        /* close_range() is Linux 5.9; a seccomp filter may refuse it too. */
        if (close_by_proc(keep) >= 0)
                return;
        /* No /proc: try every number the limit allows. */
        struct rlimit rl;
        int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < INT_MAX
                          ? (int) rl.rlim_cur
                          : 65536;
        for (int fd = CHILD_PIPE_FD_MIN; fd < max; fd++)
                if (fd != keep)
                        (void) close(fd);
}

static Child *child_free(Child *c) {
        if (!c)
                return NULL;
        c->child_source = sd_event_source_disable_unref(c->child_source);
        c->pipe_source = sd_event_source_disable_unref(c->pipe_source);
        c->pipe_fd = safe_close(c->pipe_fd);
        buf_done(&c->output);
        free(c->description);
        free(c);
        return NULL;
}

static void abandoned_remove(Child *c) {
        for (Child **i = &abandoned_list; *i; i = &(*i)->next_abandoned)
                if (*i == c) {
                        *i = c->next_abandoned;
                        return;
                }
}

static void child_maybe_complete(Child *c) {
        if (!c->exited || !c->eof)
                return;
        if (c->abandoned) {
                abandoned_remove(c);
                child_free(c);
                return;
        }
        int status = c->output.overflow ? -E2BIG : c->output.out_of_memory ? -ENOMEM : c->status;
        /* The callback usually frees us through child_abandon(): nothing after it. */
        c->done(c, status, c->output.data ?: "", c->output.len, c->userdata);
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Child *c = userdata;

        c->exited = true;
        c->status = si->si_code == CLD_EXITED ? si->si_status : -EINTR;
        c->child_source = sd_event_source_disable_unref(c->child_source);
        child_maybe_complete(c);
        return 0;
}

static int on_pipe(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Child *c = userdata;
        char b[4096];

        for (;;) {
                ssize_t n = read(fd, b, sizeof b);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n <= 0)
                        break;
                /* Past the limit the rest is read and dropped, so the child never
                 * blocks on a full pipe; the overflow is reported at the end. */
                (void) buf_append(&c->output, b, (size_t) n);
        }
        c->eof = true;
        c->pipe_source = sd_event_source_disable_unref(c->pipe_source);
        c->pipe_fd = safe_close(c->pipe_fd);
        child_maybe_complete(c);
        return 0;
}

/* Abandoned children that have no child source (setting one up failed)
 * are reaped here, without blocking, whenever children are spawned or
 * counted. */
static void reap_unwatched(void) {
        for (Child **i = &abandoned_list; *i;) {
                Child *c = *i;

                if (c->child_source || c->exited || waitpid(c->pid, NULL, WNOHANG) <= 0) {
                        i = &c->next_abandoned;
                        continue;
                }
                *i = c->next_abandoned;
                child_free(c);
        }
}

int child_spawn(sd_event *e, const char *description, ChildFunc func, void *arg, size_t max_output,
                ChildDone done, void *userdata, Child **ret) {
        Child *c;
        int fds[2], r;

        reap_unwatched();

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->pipe_fd = -EBADF;
        c->output = BUF_INIT(max_output);
        c->done = done;
        c->userdata = userdata;
        c->description = strdup(description);
        if (!c->description) {
                child_free(c);
                return -ENOMEM;
        }

        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                child_free(c);
                return r;
        }

        c->pid = fork();
        if (c->pid < 0) {
                r = -errno;
                safe_close(fds[0]);
                safe_close(fds[1]);
                child_free(c);
                return r;
        }
        if (c->pid == 0) {
                sigset_t all;

                /* In the child: die with the agent, write blocking, then leave
                 * without running the parent's atexit handlers or flushing its stdio. */
                int out_fd = fds[1];

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                sigemptyset(&all);
                (void) sigprocmask(SIG_SETMASK, &all, NULL);
                safe_close(fds[0]);
                if (out_fd < CHILD_PIPE_FD_MIN) {
                        out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, CHILD_PIPE_FD_MIN);
                        if (out_fd < 0)
                                _exit(127);
                        safe_close(fds[1]);
                }
                child_close_all_but(out_fd);
                /* The journal's socket went with the rest, and libsystemd
                 * would keep sending to its old number, which the child may
                 * reuse for a file or a connection of its own: stderr it is. */
                log_setup(LOG_TARGET_STDERR);
                if (null_stdio)
                        child_stdio_to_null();
                (void) fcntl(out_fd, F_SETFL, 0);
                _exit(func(out_fd, arg) & 0x7f);
        }

        safe_close(fds[1]);
        c->pipe_fd = fds[0];
        r = sd_event_add_child(e, &c->child_source, c->pid, WEXITED, on_child_exit, c);
        if (r >= 0)
                r = sd_event_add_io(e, &c->pipe_source, c->pipe_fd, EPOLLIN, on_pipe, c);
        if (r < 0) {
                /* Never wait here: the child may already be stuck in the
                 * kernel, and SIGKILL takes effect only when it leaves. It is
                 * abandoned without a child source and reaped by
                 * reap_unwatched() once it is gone. */
                c->child_source = sd_event_source_disable_unref(c->child_source);
                c->pipe_source = sd_event_source_disable_unref(c->pipe_source);
                c->pipe_fd = safe_close(c->pipe_fd);
                c->eof = true;
                (void) child_abandon(c);
                reap_unwatched();
                return r;
        }
        (void) sd_event_source_set_description(c->child_source, c->description);

        *ret = c;
        return 0;
}

Child *child_abandon(Child *c) {
        if (!c)
                return NULL;
        if (c->exited && c->eof)
                return child_free(c);
        if (!c->exited)
                (void) kill(c->pid, SIGKILL);
        c->abandoned = true;
        c->next_abandoned = abandoned_list;
        abandoned_list = c;
        return NULL;
}

pid_t child_pid(const Child *c) {
        return c->pid;
}

unsigned child_abandoned_alive(const char *description) {
        unsigned n = 0;

        reap_unwatched();
        for (Child *c = abandoned_list; c; c = c->next_abandoned)
                if (!c->exited && (!description || streq(c->description, description)))
                        n++;
        return n;
}
