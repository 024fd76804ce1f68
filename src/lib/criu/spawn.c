/* SPDX-License-Identifier: Apache-2.0 */
/*
 * criu child processes (swrk, lazy-pages). base/runner.h runs a program to
 * completion with exactly fds 0-2; CRIU needs one more descriptor (the RPC
 * socket, the lazy-pages status pipe) and a conversation while it runs, so
 * this is the same recipe with fd 3 added: posix_spawn, every other fd
 * closed in the child, a pidfd for deadlines and reaping (no SIGCHLD, no
 * waitpid(-1)), safe from many threads at once.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>

#include "criu/criu-internal.h"

/* dup2() targets in the child are 0..KYB_CRIU_SWRK_FD: a source there could
 * be overwritten by an earlier dup2. */
static int move_above(int *fd, int floor, bool owned)
{
        int nfd;

        if (*fd > floor)
                return 0;
        nfd = fcntl(*fd, F_DUPFD_CLOEXEC, floor + 1);
        if (nfd < 0)
                return -errno;
        if (owned)
                close(*fd);
        *fd = nfd;
        return 0;
}

typedef struct spawn_fds {
        int devnull, out_r, out_w, pass;
        bool pass_dup; /* pass is our duplicate of the caller's fd */
} spawn_fds;

static void spawn_fds_close(spawn_fds *f)
{
        kyb_closep(&f->devnull);
        kyb_closep(&f->out_r);
        kyb_closep(&f->out_w);
        if (f->pass_dup)
                kyb_closep(&f->pass);
}

static int open_fds(spawn_fds *f, int pass_fd)
{
        int p[2];
        int rc;

        f->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (f->devnull < 0)
                return -errno;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        f->out_r = p[0];
        f->out_w = p[1];
        rc = move_above(&f->devnull, KYB_CRIU_SWRK_FD, true);
        if (rc == 0)
                rc = move_above(&f->out_r, KYB_CRIU_SWRK_FD, true);
        if (rc == 0)
                rc = move_above(&f->out_w, KYB_CRIU_SWRK_FD, true);
        if (rc == 0 && pass_fd >= 0) {
                f->pass = pass_fd;
                rc = move_above(&f->pass, KYB_CRIU_SWRK_FD, false);
                f->pass_dup = f->pass != pass_fd;
        }
        /* Only our read end: a non-blocking stderr would surprise CRIU. */
        if (rc == 0 && fcntl(f->out_r, F_SETFL, O_NONBLOCK) < 0)
                rc = -errno;
        return rc;
}

static int file_actions(const spawn_fds *f, posix_spawn_file_actions_t *fa)
{
        int rc = posix_spawn_file_actions_adddup2(fa, f->devnull, STDIN_FILENO);

        if (rc == 0)
                rc = posix_spawn_file_actions_adddup2(fa, f->out_w, STDOUT_FILENO);
        if (rc == 0)
                rc = posix_spawn_file_actions_adddup2(fa, f->out_w, STDERR_FILENO);
        if (rc == 0 && f->pass >= 0)
                rc = posix_spawn_file_actions_adddup2(fa, f->pass, KYB_CRIU_SWRK_FD);
        /* O_CLOEXEC is only as good as every thread of the process: close
         * everything the child is not meant to have. */
        if (rc == 0)
                rc = posix_spawn_file_actions_addclosefrom_np(
                    fa, f->pass >= 0 ? KYB_CRIU_SWRK_FD + 1 : STDERR_FILENO + 1);
        return rc;
}

static int spawn_attrs(posix_spawnattr_t *attr)
{
        sigset_t none, all;
        int rc;

        sigemptyset(&none);
        sigfillset(&all);
        rc = posix_spawnattr_setsigmask(attr, &none);
        if (rc == 0)
                rc = posix_spawnattr_setsigdefault(attr, &all);
        if (rc == 0)
                rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        return rc;
}

static int do_spawn(const char *const *argv, const spawn_fds *f, pid_t *pid)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int rc;

        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        rc = file_actions(f, &fa);
        if (rc == 0)
                rc = spawn_attrs(&attr);
        if (rc == 0)
                rc = posix_spawn(pid, argv[0], &fa, &attr, (char *const *)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        return rc;
}

int kyb_criu_spawn(const char *const *argv, int pass_fd, kyb_criu_proc *p, kyb_error **err)
{
        spawn_fds f = {.devnull = -1, .out_r = -1, .out_w = -1, .pass = -1};
        int rc;

        *p = (kyb_criu_proc)KYB_CRIU_PROC_INIT;
        rc = open_fds(&f, pass_fd);
        if (rc < 0) {
                spawn_fds_close(&f);
                return kyb_error_set(err, -rc, "spawn %s: set up descriptors", argv[0]);
        }
        rc = do_spawn(argv, &f, &p->pid);
        if (rc != 0) {
                spawn_fds_close(&f);
                p->pid = -1;
                return kyb_error_set(err, rc, "spawn %s", argv[0]);
        }
        p->errfd = TAKE_FD(f.out_r);
        spawn_fds_close(&f);
        /* Our unreaped child cannot be recycled: this pidfd is the right one. */
        p->pidfd = pidfd_open(p->pid, 0);
        if (p->pidfd < 0) {
                rc = -errno;
                kill(p->pid, SIGKILL);
                while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                p->reaped = true;
                return kyb_error_set(err, -rc, "pidfd_open for %s", argv[0]);
        }
        return 0;
}

static int reap(kyb_criu_proc *p, kyb_error **err)
{
        siginfo_t si = {0};

        if (p->reaped || p->pidfd < 0)
                return 0;
        while (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED) < 0)
                if (errno != EINTR)
                        return kyb_error_set(err, errno, "wait for criu (pid %d)", (int)p->pid);
        p->reaped = true;
        p->status = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
        return 0;
}

static void drain_output(kyb_criu_proc *p)
{
        int rc;

        while ((rc = kyb_criu_tail_read(p->errfd, &p->out)) > 0)
                ;
        if (rc == 0) { /* every writer is gone: stop polling it */
                close(p->errfd);
                p->errfd = -1;
        }
}

static int poll_left(int64_t deadline_ms)
{
        int64_t left;

        if (deadline_ms < 0)
                return -1;
        left = deadline_ms - kyb_criu_now_ms();
        return (int)KYB_MAX(0, KYB_MIN(left, (int64_t)INT32_MAX));
}

int kyb_criu_proc_wait(kyb_criu_proc *p, int64_t deadline_ms, bool kill_late, kyb_error **err)
{
        while (!p->reaped && p->pidfd >= 0) {
                struct pollfd f[2] = {
                    {.fd = p->pidfd, .events = POLLIN},
                    {.fd = p->errfd, .events = POLLIN},
                };
                int n = poll(f, 2, poll_left(deadline_ms));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "poll criu (pid %d)", (int)p->pid);
                /* Keep its output flowing: a full pipe would block it. */
                if (f[1].revents)
                        drain_output(p);
                if (f[0].revents)
                        return reap(p, err);
                if (n == 0 && !kill_late)
                        return kyb_error_setf(err, ETIMEDOUT, "criu (pid %d) still running",
                                              (int)p->pid);
                if (n == 0) {
                        kyb_criu_proc_kill(p);
                        return kyb_error_setf(err, ETIMEDOUT,
                                              "criu (pid %d) killed at the deadline", (int)p->pid);
                }
        }
        return 0;
}

void kyb_criu_proc_kill(kyb_criu_proc *p)
{
        if (p->reaped || p->pidfd < 0)
                return;
        pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
        reap(p, NULL);
}

void kyb_criu_proc_release(kyb_criu_proc *p)
{
        kyb_criu_proc_kill(p);
        kyb_closep(&p->pidfd);
        kyb_closep(&p->errfd);
        p->pidfd = p->errfd = -1;
}

void kyb_criu_proc_describe(const kyb_criu_proc *p, char *buf, size_t size)
{
        if (!p->reaped)
                snprintf(buf, size, "is still running");
        else if (p->status >= 0)
                snprintf(buf, size, "exited with code %d", p->status);
        else
                snprintf(buf, size, "was killed by signal %d (SIG%s)", -p->status,
                         sigabbrev_np(-p->status) ? sigabbrev_np(-p->status) : "?");
}
