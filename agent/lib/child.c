/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "buf.h"
#include "child.h"

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

int child_spawn(sd_event *e, const char *description, ChildFunc func, void *arg, size_t max_output,
                ChildDone done, void *userdata, Child **ret) {
        Child *c;
        int fds[2], r;

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
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                sigemptyset(&all);
                (void) sigprocmask(SIG_SETMASK, &all, NULL);
                safe_close(fds[0]);
                if (null_stdio)
                        child_stdio_to_null();
                (void) fcntl(fds[1], F_SETFL, 0);
                _exit(func(fds[1], arg) & 0x7f);
        }

        safe_close(fds[1]);
        c->pipe_fd = fds[0];
        r = sd_event_add_child(e, &c->child_source, c->pid, WEXITED, on_child_exit, c);
        if (r >= 0)
                r = sd_event_add_io(e, &c->pipe_source, c->pipe_fd, EPOLLIN, on_pipe, c);
        if (r < 0) {
                (void) kill(c->pid, SIGKILL);
                (void) waitpid(c->pid, NULL, 0);
                child_free(c);
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

        for (Child *c = abandoned_list; c; c = c->next_abandoned)
                if (!c->exited && (!description || streq(c->description, description)))
                        n++;
        return n;
}
