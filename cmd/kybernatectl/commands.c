/* SPDX-License-Identifier: Apache-2.0 */
/* One function per kybernatectl command: parse its arguments, call the
 * agent, report. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.pb-c.h"
#include "ctl.h"

#define METHOD(name) "/kybernate.agent.v1.Agent/" name

typedef Kybernate__Agent__V1__CheckpointRequest CheckpointRequest;
typedef Kybernate__Agent__V1__CheckpointOptions CheckpointOptions;
typedef Kybernate__Agent__V1__CheckpointProgress CheckpointProgress;
typedef Kybernate__Agent__V1__RestoreRequest RestoreRequest;
typedef Kybernate__Agent__V1__RestoreOptions RestoreOptions;
typedef Kybernate__Agent__V1__RestoreProgress RestoreProgress;
typedef Kybernate__Agent__V1__ListCheckpointsRequest ListRequest;
typedef Kybernate__Agent__V1__ListCheckpointsResponse ListResponse;
typedef Kybernate__Agent__V1__CheckpointInfo CheckpointInfo;
typedef Kybernate__Agent__V1__CheckpointRequest__LabelsEntry LabelsEntry;
typedef Kybernate__Agent__V1__GpuUuidPair GpuUuidPair;

#define MAX_LIST_ARGS 32

static int usage_error(const char *cmd, const char *fmt, ...) _printf_(2, 3);

static int usage_error(const char *cmd, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "kybernatectl %s: ", cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nSee 'kybernatectl --help'.\n");
        return CTL_USAGE;
}

static kyb_rpc_call_options call_opts(const ctl *c)
{
        return (kyb_rpc_call_options){.timeout_ms = c->timeout_ms};
}

static int unary(ctl *c, const char *what, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_rpc_call_options opts = call_opts(c);

        if (kyb_rpc_unary(c->client, method, req, resp_type, &opts, resp, &err) < 0)
                return ctl_fail(what, err);
        return CTL_OK;
}

static int simple_call(ctl *c, const char *what, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_type)
{
        ProtobufCMessage *resp = NULL;
        int rc = unary(c, what, method, req, resp_type, &resp);

        if (rc == CTL_OK) {
                ctl_print_message(c, resp);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return rc;
}

static int cmd_version(ctl *c, int argc, char **argv)
{
        Kybernate__Agent__V1__VersionRequest req = KYBERNATE__AGENT__V1__VERSION_REQUEST__INIT;

        return simple_call(c, "version", METHOD("Version"), &req.base,
                           &kybernate__agent__v1__version_response__descriptor);
}

static int cmd_health(ctl *c, int argc, char **argv)
{
        Kybernate__Agent__V1__HealthRequest req = KYBERNATE__AGENT__V1__HEALTH_REQUEST__INIT;

        return simple_call(c, "health", METHOD("Health"), &req.base,
                           &kybernate__agent__v1__health_response__descriptor);
}

/* ------------------------------------------------------------------------ */
/* labels: KEY=VALUE arguments into a map field */

typedef Kybernate__Agent__V1__ListCheckpointsRequest__LabelSelectorEntry SelectorEntry;

/* Checkpoint labels and list selectors are distinct map-entry types of the
 * same shape; each command initialises entries of its own type. */
typedef union label_entry {
        LabelsEntry label;
        SelectorEntry selector;
} label_entry;

typedef struct label_args {
        label_entry entries[MAX_LIST_ARGS];
        void *ptrs[MAX_LIST_ARGS];
        size_t n;
        bool selector;
} label_args;

static int add_label(label_args *l, const char *cmd, char *arg)
{
        label_entry *e;

        char *eq = strchr(arg, '=');

        if (!eq || eq == arg)
                return usage_error(cmd, "label '%s' is not KEY=VALUE", arg);
        if (l->n == MAX_LIST_ARGS)
                return usage_error(cmd, "too many labels (at most %d)", MAX_LIST_ARGS);
        *eq = '\0';
        e = &l->entries[l->n];
        if (l->selector) {
                kybernate__agent__v1__list_checkpoints_request__label_selector_entry__init(
                    &e->selector);
                e->selector.key = arg;
                e->selector.value = eq + 1;
        } else {
                kybernate__agent__v1__checkpoint_request__labels_entry__init(&e->label);
                e->label.key = arg;
                e->label.value = eq + 1;
        }
        l->ptrs[l->n++] = e;
        return CTL_OK;
}

/* ------------------------------------------------------------------------ */
/* checkpoint */

static const char *step_name(int step)
{
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&kybernate__agent__v1__step__descriptor, step);

        return v ? v->name + strlen("STEP_") : "?";
}

static int parse_gpu_mode(const char *cmd, const char *s, Kybernate__Agent__V1__GpuMode *out)
{
        if (!strcmp(s, "auto"))
                *out = KYBERNATE__AGENT__V1__GPU_MODE__GPU_MODE_AUTO;
        else if (!strcmp(s, "off"))
                *out = KYBERNATE__AGENT__V1__GPU_MODE__GPU_MODE_OFF;
        else if (!strcmp(s, "required"))
                *out = KYBERNATE__AGENT__V1__GPU_MODE__GPU_MODE_REQUIRED;
        else
                return usage_error(cmd, "--gpu must be auto, off or required, not '%s'", s);
        return CTL_OK;
}

/* "[NS/]ID" in place; the namespace defaults to containerd's "default". */
static void split_container(char *arg, Kybernate__Agent__V1__ContainerTarget *cont)
{
        char *slash = strchr(arg, '/');

        cont->namespace_ = slash ? arg : "default";
        cont->id = slash ? slash + 1 : arg;
        if (slash)
                *slash = '\0';
}

static int parse_target(const char *cmd, const char *pid, char *container,
                        Kybernate__Agent__V1__Target *t, Kybernate__Agent__V1__ProcessTarget *proc,
                        Kybernate__Agent__V1__ContainerTarget *cont)
{
        char *end;

        if (!pid == !container)
                return usage_error(cmd, "give exactly one of --pid and --container");
        if (pid) {
                long v = strtol(pid, &end, 10);
                if (*end || v <= 0 || v > INT32_MAX)
                        return usage_error(cmd, "--pid '%s' is not a process ID", pid);
                proc->pid = (int32_t)v;
                t->kind_case = KYBERNATE__AGENT__V1__TARGET__KIND_PROCESS;
                t->process = proc;
                return CTL_OK;
        }
        split_container(container, cont);
        t->kind_case = KYBERNATE__AGENT__V1__TARGET__KIND_CONTAINER;
        t->container = cont;
        return CTL_OK;
}

/* The fields of CheckpointProgress and RestoreProgress, which share a shape
 * but not a type. */
typedef struct progress_view {
        int step;
        const char *message;
        uint64_t done, total;
        const ProtobufCMessage *result;
} progress_view;

typedef void (*progress_view_fn)(const ProtobufCMessage *msg, progress_view *v);

static void checkpoint_view(const ProtobufCMessage *msg, progress_view *v)
{
        const CheckpointProgress *p = (const CheckpointProgress *)msg;

        *v = (progress_view){p->step, p->message, p->bytes_done, p->bytes_total,
                             p->result ? &p->result->base : NULL};
}

static void restore_view(const ProtobufCMessage *msg, progress_view *v)
{
        const RestoreProgress *p = (const RestoreProgress *)msg;

        *v = (progress_view){p->step, p->message, p->bytes_done, p->bytes_total,
                             p->result ? &p->result->base : NULL};
}

static void show_progress(ctl *c, const ProtobufCMessage *msg, progress_view_fn view)
{
        progress_view v;

        if (c->json) {
                ctl_print_message(c, msg);
                return;
        }
        view(msg, &v);
        if (v.result) {
                ctl_progress_end(c);
                ctl_print_message(c, v.result);
        } else {
                ctl_progress(c, v.step, step_name(v.step), v.message, v.done, v.total);
        }
}

static int stream_progress(ctl *c, const char *what, const char *method,
                           const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type,
                           progress_view_fn view)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_(kyb_rpc_stream_freep) kyb_rpc_stream *s = NULL;
        kyb_rpc_call_options opts = call_opts(c);
        ProtobufCMessage *msg;
        int rc;

        if (kyb_rpc_stream_open(c->client, method, req, type, &opts, &s, &err) < 0)
                return ctl_fail(what, err);
        while ((rc = kyb_rpc_stream_next(s, &msg, &err)) > 0) {
                show_progress(c, msg, view);
                protobuf_c_message_free_unpacked(msg, NULL);
        }
        ctl_progress_end(c);
        return rc < 0 ? ctl_fail(what, err) : CTL_OK;
}

static const struct option checkpoint_opts[] = {
    {"pid", required_argument, NULL, 'p'},
    {"container", required_argument, NULL, 'c'},
    {"id", required_argument, NULL, 'i'},
    {"leave-running", no_argument, NULL, 'r'},
    {"gpu", required_argument, NULL, 'g'},
    {"tcp-established", no_argument, NULL, 't'},
    {"file-locks", no_argument, NULL, 'f'},
    {"shell-job", no_argument, NULL, 's'},
    {"pre-dump", no_argument, NULL, 'P'},
    {"parent", required_argument, NULL, 'a'},
    {"lazy-pages", no_argument, NULL, 'z'},
    {"label", required_argument, NULL, 'l'},
    {0},
};

static int checkpoint_option(int opt, char *arg, CheckpointRequest *req, CheckpointOptions *o,
                             label_args *labels, const char **pid, char **container)
{
        switch (opt) {
        case 'p':
                *pid = arg;
                return CTL_OK;
        case 'c':
                *container = arg;
                return CTL_OK;
        case 'i':
                req->checkpoint_id = arg;
                return CTL_OK;
        case 'r':
                o->leave_running = 1;
                return CTL_OK;
        case 'g':
                return parse_gpu_mode("checkpoint", arg, &o->gpu_mode);
        case 't':
                o->tcp_established = 1;
                return CTL_OK;
        case 'f':
                o->file_locks = 1;
                return CTL_OK;
        case 's':
                o->shell_job = 1;
                return CTL_OK;
        case 'P':
                o->pre_dump = 1;
                return CTL_OK;
        case 'a':
                o->parent_checkpoint_id = arg;
                return CTL_OK;
        case 'z':
                o->lazy_pages = 1;
                return CTL_OK;
        case 'l':
                return add_label(labels, "checkpoint", arg);
        default:
                return CTL_USAGE;
        }
}

static int cmd_checkpoint(ctl *c, int argc, char **argv)
{
        CheckpointRequest req = KYBERNATE__AGENT__V1__CHECKPOINT_REQUEST__INIT;
        CheckpointOptions o = KYBERNATE__AGENT__V1__CHECKPOINT_OPTIONS__INIT;
        Kybernate__Agent__V1__Target t = KYBERNATE__AGENT__V1__TARGET__INIT;
        Kybernate__Agent__V1__ProcessTarget proc = KYBERNATE__AGENT__V1__PROCESS_TARGET__INIT;
        Kybernate__Agent__V1__ContainerTarget cont = KYBERNATE__AGENT__V1__CONTAINER_TARGET__INIT;
        label_args labels = {0};
        const char *pid = NULL;
        char *container = NULL;
        int opt, rc;

        while ((opt = getopt_long(argc, argv, "", checkpoint_opts, NULL)) != -1)
                if ((rc = checkpoint_option(opt, optarg, &req, &o, &labels, &pid, &container)))
                        return rc;
        if (optind < argc)
                return usage_error("checkpoint", "unexpected argument '%s'", argv[optind]);
        if ((rc = parse_target("checkpoint", pid, container, &t, &proc, &cont)))
                return rc;
        req.target = &t;
        req.options = &o;
        req.n_labels = labels.n;
        req.labels = (LabelsEntry **)labels.ptrs;
        return stream_progress(c, "checkpoint", METHOD("Checkpoint"), &req.base,
                               &kybernate__agent__v1__checkpoint_progress__descriptor,
                               checkpoint_view);
}

/* ------------------------------------------------------------------------ */
/* restore */

typedef struct gpu_map_args {
        GpuUuidPair pairs[MAX_LIST_ARGS];
        GpuUuidPair *ptrs[MAX_LIST_ARGS];
        size_t n;
} gpu_map_args;

static int add_gpu_pair(gpu_map_args *m, char *arg)
{
        char *eq = strchr(arg, '=');

        if (!eq || eq == arg || !eq[1])
                return usage_error("restore", "--gpu-map '%s' is not OLD_UUID=NEW_UUID", arg);
        if (m->n == MAX_LIST_ARGS)
                return usage_error("restore", "too many --gpu-map pairs (at most %d)",
                                   MAX_LIST_ARGS);
        *eq = '\0';
        kybernate__agent__v1__gpu_uuid_pair__init(&m->pairs[m->n]);
        m->pairs[m->n].old_uuid = arg;
        m->pairs[m->n].new_uuid = eq + 1;
        m->ptrs[m->n] = &m->pairs[m->n];
        m->n++;
        return CTL_OK;
}

static const struct option restore_opts[] = {
    {"container", required_argument, NULL, 'c'},
    {"bundle", required_argument, NULL, 'b'},
    {"tcp-established", no_argument, NULL, 't'},
    {"file-locks", no_argument, NULL, 'f'},
    {"shell-job", no_argument, NULL, 's'},
    {"lazy-pages", no_argument, NULL, 'z'},
    {"gpu", required_argument, NULL, 'g'},
    {"gpu-map", required_argument, NULL, 'm'},
    {0},
};

static int restore_option(int opt, char *arg, RestoreOptions *o, char **container,
                          gpu_map_args *map)
{
        switch (opt) {
        case 'c':
                *container = arg;
                return CTL_OK;
        case 'b':
                o->bundle = arg;
                return CTL_OK;
        case 't':
                o->tcp_established = 1;
                return CTL_OK;
        case 'f':
                o->file_locks = 1;
                return CTL_OK;
        case 's':
                o->shell_job = 1;
                return CTL_OK;
        case 'z':
                o->lazy_pages = 1;
                return CTL_OK;
        case 'g':
                return parse_gpu_mode("restore", arg, &o->gpu_mode);
        case 'm':
                return add_gpu_pair(map, arg);
        default:
                return CTL_USAGE;
        }
}

static int cmd_restore(ctl *c, int argc, char **argv)
{
        RestoreRequest req = KYBERNATE__AGENT__V1__RESTORE_REQUEST__INIT;
        RestoreOptions o = KYBERNATE__AGENT__V1__RESTORE_OPTIONS__INIT;
        Kybernate__Agent__V1__ContainerTarget cont = KYBERNATE__AGENT__V1__CONTAINER_TARGET__INIT;
        gpu_map_args map = {0};
        char *container = NULL;
        int opt, rc;

        while ((opt = getopt_long(argc, argv, "", restore_opts, NULL)) != -1)
                if ((rc = restore_option(opt, optarg, &o, &container, &map)))
                        return rc;
        if (optind != argc - 1)
                return usage_error("restore", "needs exactly one checkpoint ID");
        if (container) {
                split_container(container, &cont);
                o.container = &cont;
        }
        o.n_gpu_uuid_map = map.n;
        o.gpu_uuid_map = map.ptrs;
        req.checkpoint_id = argv[optind];
        req.options = &o;
        return stream_progress(c, "restore", METHOD("Restore"), &req.base,
                               &kybernate__agent__v1__restore_progress__descriptor, restore_view);
}

/* ------------------------------------------------------------------------ */
/* list, inspect, delete */

static void print_table(const ListResponse *resp)
{
        char size[32];

        printf("%-40s %-10s %-24s %10s %s\n", "ID", "TARGET", "CREATED", "SIZE", "GPU");
        for (size_t i = 0; i < resp->n_checkpoints; i++) {
                const CheckpointInfo *ci = resp->checkpoints[i];
                char target[64] = "-", created[32] = "-";
                time_t secs = (time_t)(ci->created_at_ns / 1000000000LL);
                struct tm tm;

                if (ci->target && ci->target->process)
                        snprintf(target, sizeof(target), "pid %d", ci->target->process->pid);
                else if (ci->target && ci->target->container)
                        snprintf(target, sizeof(target), "%.60s", ci->target->container->id);
                if (gmtime_r(&secs, &tm))
                        strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
                printf("%-40s %-10s %-24s %10s %s\n", ci->id, target, created,
                       ctl_human_bytes(ci->size_bytes, size, sizeof(size)),
                       ci->gpu && ci->gpu->n_devices ? "yes" : "no");
        }
}

static int cmd_list(ctl *c, int argc, char **argv)
{
        ListRequest req = KYBERNATE__AGENT__V1__LIST_CHECKPOINTS_REQUEST__INIT;
        label_args labels = {.selector = true};
        ProtobufCMessage *resp = NULL;
        int rc;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--label") || i + 1 == argc)
                        return usage_error("list", "unexpected argument '%s'", argv[i]);
                if ((rc = add_label(&labels, "list", argv[++i])))
                        return rc;
        }
        req.n_label_selector = labels.n;
        req.label_selector = (SelectorEntry **)labels.ptrs;
        rc = unary(c, "list", METHOD("ListCheckpoints"), &req.base,
                   &kybernate__agent__v1__list_checkpoints_response__descriptor, &resp);
        if (rc != CTL_OK)
                return rc;
        if (c->json)
                ctl_print_message(c, resp);
        else
                print_table((ListResponse *)resp);
        protobuf_c_message_free_unpacked(resp, NULL);
        return CTL_OK;
}

static int cmd_inspect(ctl *c, int argc, char **argv)
{
        Kybernate__Agent__V1__GetCheckpointRequest req =
            KYBERNATE__AGENT__V1__GET_CHECKPOINT_REQUEST__INIT;

        if (argc != 2)
                return usage_error("inspect", "needs exactly one checkpoint ID");
        req.checkpoint_id = argv[1];
        return simple_call(c, "inspect", METHOD("GetCheckpoint"), &req.base,
                           &kybernate__agent__v1__checkpoint_info__descriptor);
}

static int cmd_delete(ctl *c, int argc, char **argv)
{
        Kybernate__Agent__V1__DeleteCheckpointRequest req =
            KYBERNATE__AGENT__V1__DELETE_CHECKPOINT_REQUEST__INIT;

        if (argc != 2)
                return usage_error("delete", "needs exactly one checkpoint ID");
        req.checkpoint_id = argv[1];
        return simple_call(c, "delete", METHOD("DeleteCheckpoint"), &req.base,
                           &kybernate__agent__v1__delete_checkpoint_response__descriptor);
}

/* ------------------------------------------------------------------------ */
/* gpu */

static int parse_pid_arg(const char *cmd, const char *s, int32_t *pid)
{
        char *end;
        long v = strtol(s, &end, 10);

        if (*end || v <= 0 || v > INT32_MAX)
                return usage_error(cmd, "'%s' is not a process ID", s);
        *pid = (int32_t)v;
        return CTL_OK;
}

static int cmd_gpu(ctl *c, int argc, char **argv)
{
        int32_t pid = 0;
        int rc;

        if (argc < 2)
                return usage_error("gpu", "needs hibernate, resume or status");
        if (argc > 3 || (argc == 3 && (rc = parse_pid_arg("gpu", argv[2], &pid))))
                return argc > 3 ? usage_error("gpu", "too many arguments") : rc;
        if (!strcmp(argv[1], "status")) {
                Kybernate__Agent__V1__GpuStatusRequest req =
                    KYBERNATE__AGENT__V1__GPU_STATUS_REQUEST__INIT;
                req.pid = pid;
                return simple_call(c, "gpu status", METHOD("GpuStatus"), &req.base,
                                   &kybernate__agent__v1__gpu_status_response__descriptor);
        }
        if (argc != 3)
                return usage_error("gpu", "%s needs a PID", argv[1]);
        if (!strcmp(argv[1], "hibernate")) {
                Kybernate__Agent__V1__GpuHibernateRequest req =
                    KYBERNATE__AGENT__V1__GPU_HIBERNATE_REQUEST__INIT;
                req.pid = pid;
                return simple_call(c, "gpu hibernate", METHOD("GpuHibernate"), &req.base,
                                   &kybernate__agent__v1__gpu_process__descriptor);
        }
        if (!strcmp(argv[1], "resume")) {
                Kybernate__Agent__V1__GpuResumeRequest req =
                    KYBERNATE__AGENT__V1__GPU_RESUME_REQUEST__INIT;
                req.pid = pid;
                return simple_call(c, "gpu resume", METHOD("GpuResume"), &req.base,
                                   &kybernate__agent__v1__gpu_process__descriptor);
        }
        return usage_error("gpu", "unknown gpu command '%s'", argv[1]);
}

const ctl_command ctl_commands[] = {
    {"checkpoint", "--pid PID | --container [NS/]ID [OPTIONS]",
     "checkpoint a process tree or a containerd container; options: --id ID, "
     "--leave-running, --gpu auto|off|required, --tcp-established, --file-locks, "
     "--shell-job, --pre-dump, --parent ID, --lazy-pages, --label KEY=VALUE",
     cmd_checkpoint},
    {"restore", "ID [OPTIONS]",
     "restore a checkpoint; options: --container [NS/]ID, --bundle DIR, --tcp-established, "
     "--file-locks, --shell-job, --lazy-pages, --gpu MODE, --gpu-map OLD=NEW",
     cmd_restore},
    {"list", "[--label KEY=VALUE]...", "list local checkpoints", cmd_list},
    {"inspect", "ID", "show one checkpoint", cmd_inspect},
    {"delete", "ID", "delete one checkpoint", cmd_delete},
    {"gpu", "hibernate PID | resume PID | status [PID]", "GPU state of a process, in place",
     cmd_gpu},
    {"health", "", "agent health", cmd_health},
    {"version", "", "agent version", cmd_version},
    {NULL, NULL, NULL, NULL},
};
