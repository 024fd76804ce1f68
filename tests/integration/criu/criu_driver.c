/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line face of src/lib/criu for test_criu_client.py. Prints one JSON
 * object on stdout and exits 0 on success, 1 on a failed operation, 2 on
 * usage errors.
 *
 *   criu_driver [--criu PATH] version | features
 *   criu_driver [--criu PATH] dump|pre-dump|restore [options]
 *   criu_driver [--criu PATH] lazy-restore [options]   (daemon + lazy restore)
 *   criu_driver [--criu PATH] parallel-dump PID:DIR... (leave-running dumps,
 *                                                       one thread each)
 * options: --pid N --images DIR --work DIR --parent REL --log-file NAME
 *   --log-level N --timeout-ms N --root DIR --ghost-limit N --external X
 *   --ext-mnt KEY:VAL --leave-running --track-mem --shell-job --ext-unix-sk
 *   --tcp-established --file-locks --sibling --manage-cgroups
 *   --notify (record notifications) --fail-at NAME (callback fails there)
 *   --lazy-wait-ms N (lazy-restore: how long to wait for the daemon)
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "criu/criu.h"

#define MAX_LIST 16

typedef struct recorder {
        json_t *events; /* [{"name": ..., "pid": ...}] */
        const char *fail_at;
} recorder;

typedef struct args {
        const char *criu, *cmd;
        kyb_criu_opts o;
        const char *external[MAX_LIST];
        kyb_criu_ext_mount mnt[MAX_LIST];
        bool record;
        const char *fail_at;
        int64_t lazy_wait_ms;
        int first_positional;
} args;

static int record(const kyb_criu_notification *n, void *data, kyb_error **err)
{
        recorder *r = data;

        json_array_append_new(r->events, json_pack("{s:s, s:i, s:b}", "name", n->name, "pid",
                                                   (int)n->pid, "fd", n->fd >= 0));
        if (r->fail_at && !strcmp(r->fail_at, n->name))
                return kyb_error_setf(err, ECANCELED, "injected failure at %s", n->name);
        return 0;
}

static bool flag(args *a, const char *s)
{
        static const struct {
                const char *name;
                size_t off;
        } flags[] = {
            {"--leave-running", offsetof(kyb_criu_opts, leave_running)},
            {"--track-mem", offsetof(kyb_criu_opts, track_mem)},
            {"--shell-job", offsetof(kyb_criu_opts, shell_job)},
            {"--ext-unix-sk", offsetof(kyb_criu_opts, ext_unix_sk)},
            {"--tcp-established", offsetof(kyb_criu_opts, tcp_established)},
            {"--file-locks", offsetof(kyb_criu_opts, file_locks)},
            {"--sibling", offsetof(kyb_criu_opts, restore_sibling)},
            {"--manage-cgroups", offsetof(kyb_criu_opts, manage_cgroups)},
        };

        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
                if (!strcmp(s, flags[i].name)) {
                        *(bool *)((char *)&a->o + flags[i].off) = true;
                        return true;
                }
        if (!strcmp(s, "--notify"))
                a->record = true;
        return !strcmp(s, "--notify");
}

static bool add_mnt(args *a, char *kv)
{
        char *colon = strchr(kv, ':');

        if (!colon || a->o.n_ext_mnt == MAX_LIST)
                return false;
        *colon = '\0';
        a->mnt[a->o.n_ext_mnt++] = (kyb_criu_ext_mount){kv, colon + 1};
        a->o.ext_mnt = a->mnt;
        return true;
}

static bool option(args *a, const char *name, char *v)
{
        if (!strcmp(name, "--pid"))
                a->o.pid = atoi(v);
        else if (!strcmp(name, "--images"))
                a->o.images_dir = v;
        else if (!strcmp(name, "--work"))
                a->o.work_dir = v;
        else if (!strcmp(name, "--parent"))
                a->o.parent_img = v;
        else if (!strcmp(name, "--log-file"))
                a->o.log_file = v;
        else if (!strcmp(name, "--log-level"))
                a->o.log_level = atoi(v);
        else if (!strcmp(name, "--timeout-ms"))
                a->o.timeout_ms = atoll(v);
        else if (!strcmp(name, "--root"))
                a->o.root = v;
        else if (!strcmp(name, "--ghost-limit"))
                a->o.ghost_limit = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(name, "--fail-at"))
                a->fail_at = v;
        else if (!strcmp(name, "--lazy-wait-ms"))
                a->lazy_wait_ms = atoll(v);
        else if (!strcmp(name, "--external") && a->o.n_external < MAX_LIST) {
                a->external[a->o.n_external++] = v;
                a->o.external = a->external;
        } else if (!strcmp(name, "--ext-mnt"))
                return add_mnt(a, v);
        else
                return false;
        return true;
}

static int parse(int argc, char **argv, args *a)
{
        int i = 1;

        *a = (args){.criu = KYB_CRIU_DEFAULT_PATH, .lazy_wait_ms = 30000};
        if (i + 1 < argc && !strcmp(argv[i], "--criu")) {
                a->criu = argv[i + 1];
                i += 2;
        }
        if (i >= argc)
                return -1;
        a->cmd = argv[i++];
        a->first_positional = i;
        for (; i < argc; i++) {
                if (argv[i][0] != '-')
                        continue; /* positional (parallel-dump) */
                if (flag(a, argv[i]))
                        continue;
                if (i + 1 >= argc || !option(a, argv[i], argv[i + 1]))
                        return -1;
                i++;
        }
        return 0;
}

static int emit(json_t *out, int rc)
{
        json_object_set_new(out, "ok", json_boolean(rc == 0));
        json_dumpf(out, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
        json_decref(out);
        return rc == 0 ? 0 : 1;
}

static void set_error(json_t *out, const kyb_error *err)
{
        json_object_set_new(out, "error", json_string(kyb_error_message(err)));
        json_object_set_new(out, "errno", json_integer(kyb_error_errno(err)));
}

static int cmd_info(kyb_criu *c, const char *cmd)
{
        const kyb_criu_version_info *v = kyb_criu_version(c);
        const kyb_criu_feature_set *f = kyb_criu_features(c);

        if (!strcmp(cmd, "version"))
                return emit(json_pack("{s:s, s:i, s:i, s:i, s:s}", "version", v->text, "major",
                                      v->major, "minor", v->minor, "sublevel", v->sublevel, "gitid",
                                      v->gitid),
                            0);
        return emit(json_pack("{s:b, s:b, s:b}", "mem_track", f->mem_track, "lazy_pages",
                              f->lazy_pages, "pidfd_store", f->pidfd_store),
                    0);
}

static int cmd_op(kyb_criu *c, args *a)
{
        recorder rec = {.events = json_array(), .fail_at = a->fail_at};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_result res = {0};
        json_t *out = json_object();
        int rc;

        if (a->record || a->fail_at) {
                a->o.notify = record;
                a->o.notify_data = &rec;
        }
        if (!strcmp(a->cmd, "dump"))
                rc = kyb_criu_dump(c, &a->o, &res, &err);
        else if (!strcmp(a->cmd, "pre-dump"))
                rc = kyb_criu_pre_dump(c, &a->o, &res, &err);
        else
                rc = kyb_criu_restore(c, &a->o, &res, &err);
        if (rc < 0)
                set_error(out, err);
        json_object_set_new(out, "pid", json_integer(res.pid));
        json_object_set_new(out, "duration_ms", json_integer(res.duration_ms));
        json_object_set_new(out, "notifications", rec.events);
        /* A sibling restore makes the tree our child: do not leave a zombie
         * (the test only needs to see that it was ours). */
        if (rc == 0 && a->o.restore_sibling && res.pid > 0)
                json_object_set_new(out, "child",
                                    json_boolean(waitpid(res.pid, NULL, WNOHANG) == 0));
        return emit(out, rc);
}

static int cmd_lazy_restore(kyb_criu *c, args *a)
{
        _cleanup_criu_lazy_pages_ kyb_criu_lazy_pages *lp = NULL;
        kyb_criu_lazy_opts lo = {
            .images_dir = a->o.images_dir, .work_dir = a->o.work_dir, .log_level = a->o.log_level};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_result res = {0};
        json_t *out = json_object();
        int64_t t0, t1;
        int rc;

        a->o.lazy_pages = true;
        rc = kyb_criu_lazy_pages_start(c, &lo, &lp, &err);
        if (rc == 0) {
                json_object_set_new(out, "daemon_pid", json_integer(kyb_criu_lazy_pages_pid(lp)));
                rc = kyb_criu_restore(c, &a->o, &res, &err);
        }
        t0 = res.duration_ms;
        if (rc == 0) {
                struct timespec s, e;

                clock_gettime(CLOCK_MONOTONIC, &s);
                rc = kyb_criu_lazy_pages_wait(lp, a->lazy_wait_ms, &err);
                clock_gettime(CLOCK_MONOTONIC, &e);
                t1 = (e.tv_sec - s.tv_sec) * 1000 + (e.tv_nsec - s.tv_nsec) / 1000000;
                json_object_set_new(out, "daemon_ms", json_integer(t1));
        }
        if (rc < 0)
                set_error(out, err);
        json_object_set_new(out, "pid", json_integer(res.pid));
        json_object_set_new(out, "duration_ms", json_integer(t0));
        return emit(out, rc);
}

typedef struct job {
        const kyb_criu *c;
        kyb_criu_opts o;
        int rc;
        kyb_error *err;
        kyb_criu_result res;
} job;

static void *run_job(void *p)
{
        job *j = p;

        j->rc = kyb_criu_dump(j->c, &j->o, &j->res, &j->err);
        return NULL;
}

/* Positional "PID:DIR" pairs, each dumped (leave-running) on its own
 * thread at the same time through one shared handle. */
static int cmd_parallel(kyb_criu *c, args *a, int argc, char **argv)
{
        job jobs[MAX_LIST];
        pthread_t th[MAX_LIST];
        json_t *out = json_object(), *list = json_array();
        int n = 0, failed = 0;

        for (int i = a->first_positional; i < argc && n < MAX_LIST; i++) {
                char *colon = strchr(argv[i], ':');

                if (argv[i][0] == '-' || !colon)
                        continue;
                *colon = '\0';
                jobs[n] = (job){.c = c, .o = a->o};
                jobs[n].o.pid = atoi(argv[i]);
                jobs[n].o.images_dir = colon + 1;
                jobs[n].o.leave_running = true;
                n++;
        }
        for (int i = 0; i < n; i++)
                pthread_create(&th[i], NULL, run_job, &jobs[i]);
        for (int i = 0; i < n; i++) {
                pthread_join(th[i], NULL);
                json_array_append_new(
                    list, json_pack("{s:i, s:b, s:s?, s:i}", "pid", (int)jobs[i].o.pid, "ok",
                                    jobs[i].rc == 0, "error", jobs[i].err ? jobs[i].err->msg : NULL,
                                    "duration_ms", (int)jobs[i].res.duration_ms));
                failed += jobs[i].rc < 0;
                kyb_error_free(jobs[i].err);
        }
        json_object_set_new(out, "jobs", list);
        return emit(out, failed ? -EIO : 0);
}

int main(int argc, char **argv)
{
        _cleanup_criu_ kyb_criu *c = NULL;
        _cleanup_error_ kyb_error *err = NULL;
        args a;

        if (parse(argc, argv, &a) < 0) {
                fprintf(stderr, "usage: criu_driver [--criu PATH] version|features|dump|"
                                "pre-dump|restore|lazy-restore|parallel-dump [options]\n");
                return 2;
        }
        if (kyb_criu_open(a.criu, &c, &err) < 0) {
                json_t *out = json_object();

                set_error(out, err);
                return emit(out, -1);
        }
        if (!strcmp(a.cmd, "version") || !strcmp(a.cmd, "features"))
                return cmd_info(c, a.cmd);
        if (!strcmp(a.cmd, "dump") || !strcmp(a.cmd, "pre-dump") || !strcmp(a.cmd, "restore"))
                return cmd_op(c, &a);
        if (!strcmp(a.cmd, "lazy-restore"))
                return cmd_lazy_restore(c, &a);
        if (!strcmp(a.cmd, "parallel-dump"))
                return cmd_parallel(c, &a, argc, argv);
        fprintf(stderr, "criu_driver: unknown command '%s'\n", a.cmd);
        return 2;
}
