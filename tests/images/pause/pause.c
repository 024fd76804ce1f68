/* SPDX-License-Identifier: Apache-2.0
 *
 * Minimal pod-sandbox "pause" process for Kybernate's test environment
 * (the local stand-in for registry.k8s.io/pause, built statically by
 * scripts/setup/containerd.sh). As PID 1 of a pod it must:
 *   - reap every child that gets re-parented to it (SIGCHLD),
 *   - exit cleanly on SIGINT/SIGTERM,
 *   - otherwise sleep, using no CPU.
 * `pause -v` prints the version and exits.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KYB_PAUSE_VERSION "kybernate-pause-1"

static void on_term(int sig)
{
        (void)sig;
        _exit(0);
}

static void on_chld(int sig)
{
        int saved = errno;
        (void)sig;
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        errno = saved;
}

int main(int argc, char **argv)
{
        struct sigaction sa;

        if (argc == 2 && strcmp(argv[1], "-v") == 0) {
                puts(KYB_PAUSE_VERSION);
                return 0;
        }
        if (getpid() != 1)
                fprintf(stderr, "pause: warning: not running as PID 1\n");

        memset(&sa, 0, sizeof(sa));
        sigemptyset(&sa.sa_mask);
        sa.sa_handler = on_term;
        if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
                return 1;
        sa.sa_handler = on_chld;
        sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
        if (sigaction(SIGCHLD, &sa, NULL) < 0)
                return 2;

        for (;;)
                pause();
        return 42; /* not reached */
}
