/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workload of test_criu_client.py: counts forever, publishing
 * "<count> <getpid()>" to FILE every 20 ms (write + rename, so readers never
 * see a torn line). Options:
 *   --mem MB       keep MB of anonymous memory, filled once; while nothing
 *                  dirties it, each tick checks 64 of its pages and
 *                  publishes "corrupt" and exits 3 on a wrong byte (a lazy
 *                  restore that lost pages must not pass for counting)
 *   --dirty KB     rewrite KB of that memory each tick (pre-dump deltas)
 *   --keep-fd N    keep descriptor N open (an external socket, say)
 *   --children N   fork N children that sleep, making a tree
 *   --keep-session stay in the caller's session (whose leader CRIU cannot
 *                  dump from inside a PID namespace) instead of setsid()
 * Every other inherited descriptor is closed and stdio goes to /dev/null,
 * so the tree holds nothing CRIU would need to be told about.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct opts {
        const char *file;
        size_t mem_mb, dirty_kb;
        int keep_fd, children;
        bool keep_session;
} opts;

static int parse(int argc, char **argv, opts *o)
{
        *o = (opts){.keep_fd = -1};
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (!strcmp(a, "--mem") && v)
                        o->mem_mb = strtoul(argv[++i], NULL, 10);
                else if (!strcmp(a, "--dirty") && v)
                        o->dirty_kb = strtoul(argv[++i], NULL, 10);
                else if (!strcmp(a, "--keep-fd") && v)
                        o->keep_fd = atoi(argv[++i]);
                else if (!strcmp(a, "--children") && v)
                        o->children = atoi(argv[++i]);
                else if (!strcmp(a, "--keep-session"))
                        o->keep_session = true;
                else if (a[0] != '-' && !o->file)
                        o->file = a;
                else
                        return -1;
        }
        return o->file ? 0 : -1;
}

static void isolate_fds(int keep)
{
        int null = open("/dev/null", O_RDWR);

        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        for (int fd = 3; fd < 1024; fd++)
                if (fd != keep)
                        close(fd);
}

static void publish(const char *file, unsigned long n)
{
        char tmp[4096];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", file);
        f = fopen(tmp, "w");
        if (!f)
                return;
        fprintf(f, "%lu %d\n", n, (int)getpid());
        fclose(f);
        rename(tmp, file);
}

/* Pages spread over the region, a different set each tick. */
static int verify(const char *mem, size_t size, unsigned long n)
{
        size_t pages = size / 4096;

        for (size_t i = 0; pages && i < 64; i++) {
                size_t page = (n * 64 + i) * 7919 % pages;

                if (mem[page * 4096] != 0x5a || mem[page * 4096 + 4095] != 0x5a)
                        return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        opts o;
        char *mem = NULL;
        size_t size;

        if (parse(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: counter FILE [--mem MB] [--dirty KB] [--keep-fd N] "
                                "[--children N] [--keep-session]\n");
                return 2;
        }
        size = o.mem_mb << 20;
        if (size) {
                mem = malloc(size);
                if (!mem)
                        return 1;
                memset(mem, 0x5a, size);
        }
        isolate_fds(o.keep_fd);
        if (!o.keep_session)
                setsid();
        for (int i = 0; i < o.children; i++)
                if (fork() == 0)
                        for (;;)
                                pause();
        for (unsigned long n = 0;; n++) {
                size_t dirty = o.dirty_kb << 10;

                for (size_t off = 0; mem && off < dirty && off < size; off += 4096)
                        mem[(n * 4096 + off) % size] = (char)n;
                if (mem && !dirty && verify(mem, size, n) < 0) {
                        FILE *f = fopen(o.file, "w");

                        if (f) {
                                fputs("corrupt\n", f);
                                fclose(f);
                        }
                        return 3;
                }
                publish(o.file, n);
                usleep(20000);
        }
}
