/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What /proc tells about processes: existence, start time, open
 * /dev/nvidia* descriptors, and the process tree below a PID (through
 * /proc/<pid>/task/<tid>/children, which lists the children of each thread).
 * The root is configurable so tests can use a fake tree.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "gpu/gpu-internal.h"

/* A larger tree is not a workload we can checkpoint in one go. */
#define MAX_TREE 65536

static bool proc_path(const kyb_gpu *g, char *buf, size_t len, const char *fmt, ...) _printf_(4, 5);

static bool proc_path(const kyb_gpu *g, char *buf, size_t len, const char *fmt, ...)
{
        va_list ap;
        int n = snprintf(buf, len, "%s/", g->proc_root);
        int m;

        if (n < 0 || (size_t)n >= len)
                return false;
        va_start(ap, fmt);
        m = vsnprintf(buf + n, len - (size_t)n, fmt, ap);
        va_end(ap);
        return m >= 0 && (size_t)m < len - (size_t)n;
}

bool gpu_proc_exists(const kyb_gpu *g, int32_t pid)
{
        char path[PATH_MAX];
        struct stat st;

        return pid > 0 && proc_path(g, path, sizeof(path), "%d", pid) && stat(path, &st) == 0 &&
               S_ISDIR(st.st_mode);
}

/* Field 22 of /proc/<pid>/stat, counted after the command name, which may
 * itself hold spaces and parentheses. */
uint64_t gpu_proc_start_time(const kyb_gpu *g, int32_t pid)
{
        char path[PATH_MAX], buf[1024];
        unsigned long long start = 0;
        const char *p;
        FILE *f;
        size_t n;

        if (!proc_path(g, path, sizeof(path), "%d/stat", pid) || !(f = fopen(path, "re")))
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (!p)
                return 0;
        /* after ')': state(3) ppid(4) ... starttime(22) */
        if (sscanf(p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
                   "%llu",
                   &start) != 1)
                return 0;
        return start;
}

bool gpu_proc_has_nvidia_fd(const kyb_gpu *g, int32_t pid)
{
        char path[PATH_MAX], target[PATH_MAX];
        struct dirent *de;
        bool found = false;
        DIR *d;

        if (!proc_path(g, path, sizeof(path), "%d/fd", pid) || !(d = opendir(path)))
                return false; /* gone, or not ours to look at */
        while (!found && (de = readdir(d))) {
                ssize_t n;

                if (de->d_name[0] == '.')
                        continue;
                n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
                if (n <= 0)
                        continue;
                target[n] = '\0';
                /* /dev/nvidia0.., /dev/nvidiactl, /dev/nvidia-uvm: all driver state */
                found = strncmp(target, "/dev/nvidia", strlen("/dev/nvidia")) == 0;
        }
        closedir(d);
        return found;
}

typedef struct pid_set {
        int32_t *v;
        size_t n, cap;
} pid_set;

static bool pid_set_has(const pid_set *s, int32_t pid)
{
        for (size_t i = 0; i < s->n; i++)
                if (s->v[i] == pid)
                        return true;
        return false;
}

static int pid_set_add(pid_set *s, int32_t pid, kyb_error **err)
{
        if (pid <= 0 || pid_set_has(s, pid))
                return 0;
        if (s->n >= MAX_TREE)
                return kyb_error_setf(err, E2BIG, "process tree larger than %d processes",
                                      MAX_TREE);
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                int32_t *v = realloc(s->v, cap * sizeof(*v));

                if (!v)
                        return kyb_error_set(err, ENOMEM, "process tree");
                s->v = v;
                s->cap = cap;
        }
        s->v[s->n++] = pid;
        return 0;
}

static int add_children_of_task(const kyb_gpu *g, int32_t pid, const char *tid, pid_set *s,
                                kyb_error **err)
{
        char path[PATH_MAX];
        int child, rc = 0;
        FILE *f;

        if (!proc_path(g, path, sizeof(path), "%d/task/%s/children", pid, tid))
                return 0;
        f = fopen(path, "re");
        if (!f)
                return 0; /* the thread or process ended meanwhile */
        while (rc >= 0 && fscanf(f, "%d", &child) == 1)
                rc = pid_set_add(s, child, err);
        fclose(f);
        return rc;
}

static int add_children(const kyb_gpu *g, int32_t pid, pid_set *s, kyb_error **err)
{
        char path[PATH_MAX];
        struct dirent *de;
        int rc = 0;
        DIR *d;

        if (!proc_path(g, path, sizeof(path), "%d/task", pid) || !(d = opendir(path)))
                return 0;
        while (rc >= 0 && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        rc = add_children_of_task(g, pid, de->d_name, s, err);
        closedir(d);
        return rc;
}

int gpu_proc_tree(const kyb_gpu *g, int32_t root, int32_t **out, size_t *n_out, kyb_error **err)
{
        pid_set s = {0};
        int rc;

        *out = NULL;
        *n_out = 0;
        if (!gpu_proc_exists(g, root))
                return kyb_error_setf(err, ENOENT, "no process %d", root);
        rc = pid_set_add(&s, root, err);
        /* s grows while it is walked: breadth first, each PID once. */
        for (size_t i = 0; rc >= 0 && i < s.n; i++)
                rc = add_children(g, s.v[i], &s, err);
        if (rc < 0) {
                free(s.v);
                return rc;
        }
        *out = s.v;
        *n_out = s.n;
        return 0;
}
