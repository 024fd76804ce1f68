/* SPDX-License-Identifier: Apache-2.0 */
/* runc command lines and the runc root templates they start from. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "container/container-internal.h"

#define NS_PLACEHOLDER "{namespace}"

static void strv_take(kyb_strv *s, char *str)
{
        if (!str || s->oom) {
                s->oom = true;
                free(str);
                return;
        }
        if (s->n + 2 > s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                char **v = realloc(s->v, cap * sizeof(*v));

                if (!v) {
                        s->oom = true;
                        free(str);
                        return;
                }
                s->v = v;
                s->cap = cap;
        }
        s->v[s->n++] = str;
        s->v[s->n] = NULL;
}

void kyb_strv_push(kyb_strv *s, const char *str)
{
        strv_take(s, strdup(str));
}

void kyb_strv_pushf(kyb_strv *s, const char *fmt, ...)
{
        char *str = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&str, fmt, ap) < 0)
                str = NULL;
        va_end(ap);
        strv_take(s, str);
}

void kyb_strv_clear(kyb_strv *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (kyb_strv){0};
}

void kyb_runc_free_templates(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

int kyb_runc_parse_templates(const char *text, char ***out, kyb_error **err)
{
        _cleanup_strv_ kyb_strv v = {0};
        const char *p = text;

        for (;;) {
                const char *end = strchrnul(p, ':');
                size_t len = (size_t)(end - p);

                if (len == 0 || *p != '/')
                        return kyb_error_setf(err, EINVAL,
                                              "runc root '%.*s' in '%s': every entry must be an "
                                              "absolute path",
                                              (int)len, p, text);
                strv_take(&v, strndup(p, len));
                if (!*end)
                        break;
                p = end + 1;
        }
        if (v.oom)
                return kyb_error_set(err, ENOMEM, "runc roots");
        *out = v.v;
        v = (kyb_strv){0};
        return 0;
}

int kyb_runc_expand_root(const char *tmpl, const char *ns, char **out, kyb_error **err)
{
        size_t plen = strlen(NS_PLACEHOLDER), nlen = strlen(ns);
        size_t cap = strlen(tmpl) + 1, pos = 0;
        const char *p;
        char *s;

        for (p = strstr(tmpl, NS_PLACEHOLDER); p; p = strstr(p + plen, NS_PLACEHOLDER))
                cap += nlen;
        s = malloc(cap);
        if (!s)
                return kyb_error_set(err, ENOMEM, "runc root");
        for (p = tmpl; *p;) {
                if (!strncmp(p, NS_PLACEHOLDER, plen)) {
                        memcpy(s + pos, ns, nlen);
                        pos += nlen;
                        p += plen;
                } else {
                        s[pos++] = *p++;
                }
        }
        s[pos] = '\0';
        *out = s;
        return 0;
}

/* --log-format json: runc's errors arrive as {"level":"error","msg":...}
 * lines that kyb_runc_stderr_errors() quotes without the timestamps. */
void kyb_runc_argv_prefix(const kyb_runc *r, const char *root, const char *verb, kyb_strv *argv)
{
        kyb_strv_push(argv, r->runc_path);
        if (r->criu_path) {
                kyb_strv_push(argv, "--criu");
                kyb_strv_push(argv, r->criu_path);
        }
        kyb_strv_push(argv, "--log-format");
        kyb_strv_push(argv, "json");
        kyb_strv_push(argv, "--root");
        kyb_strv_push(argv, root);
        kyb_strv_push(argv, verb);
}

static void push_flags(const kyb_runc_criu_flags *f, kyb_strv *argv)
{
        if (f->tcp_established)
                kyb_strv_push(argv, "--tcp-established");
        if (f->file_locks)
                kyb_strv_push(argv, "--file-locks");
        if (f->ext_unix_sk)
                kyb_strv_push(argv, "--ext-unix-sk");
        if (f->shell_job)
                kyb_strv_push(argv, "--shell-job");
}

/* runc resolves relative paths against the bundle, not our cwd. */
static int check_absolute(const char *what, const char *path, kyb_error **err)
{
        if (!path || path[0] != '/')
                return kyb_error_setf(err, EINVAL, "%s '%s' is not an absolute path", what,
                                      path ? path : "");
        return 0;
}

int kyb_runc_checkpoint_argv(const kyb_runc *r, const kyb_container *c,
                             const kyb_runc_checkpoint_opts *o, kyb_strv *argv, kyb_error **err)
{
        int rc = check_absolute("image path", o->images_dir, err);

        if (rc >= 0)
                rc = check_absolute("work path", o->work_dir, err);
        if (rc < 0)
                return rc;
        kyb_runc_argv_prefix(r, c->root, "checkpoint", argv);
        kyb_strv_push(argv, "--image-path");
        kyb_strv_push(argv, o->images_dir);
        kyb_strv_push(argv, "--work-path");
        kyb_strv_push(argv, o->work_dir);
        if (o->leave_running)
                kyb_strv_push(argv, "--leave-running");
        push_flags(&o->flags, argv);
        kyb_strv_push(argv, c->id);
        return argv->oom ? kyb_error_set(err, ENOMEM, "runc argv") : 0;
}

int kyb_runc_restore_argv(const kyb_runc *r, const char *id, const kyb_runc_restore_opts *o,
                          const char *pid_file, kyb_strv *argv, kyb_error **err)
{
        int rc = check_absolute("image path", o->images_dir, err);

        if (rc >= 0)
                rc = check_absolute("work path", o->work_dir, err);
        if (rc >= 0)
                rc = check_absolute("bundle", o->bundle, err);
        if (rc >= 0)
                rc = check_absolute("pid file", pid_file, err);
        if (rc < 0)
                return rc;
        kyb_runc_argv_prefix(r, o->root, "restore", argv);
        kyb_strv_push(argv, "--detach");
        kyb_strv_push(argv, "--image-path");
        kyb_strv_push(argv, o->images_dir);
        kyb_strv_push(argv, "--work-path");
        kyb_strv_push(argv, o->work_dir);
        kyb_strv_push(argv, "--bundle");
        kyb_strv_push(argv, o->bundle);
        kyb_strv_push(argv, "--pid-file");
        kyb_strv_push(argv, pid_file);
        push_flags(&o->flags, argv);
        kyb_strv_push(argv, id);
        return argv->oom ? kyb_error_set(err, ENOMEM, "runc argv") : 0;
}
