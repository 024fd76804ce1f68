/* SPDX-License-Identifier: Apache-2.0 */
/* The kyb_runc handle and finding a container's runc state. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/runner.h"
#include "base/validate.h"
#include "container/container-internal.h"

/* `runc state` answers at once; a hung one must not hold a request. */
#define STATE_TIMEOUT_MS 30000

int kyb_runc_new(const kyb_runc_config *cfg, kyb_runc **out, kyb_error **err)
{
        const char *path =
            cfg->runc_path && *cfg->runc_path ? cfg->runc_path : KYB_RUNC_DEFAULT_PATH;
        const char *roots = cfg->root_templates && *cfg->root_templates ? cfg->root_templates
                                                                        : KYB_RUNC_DEFAULT_ROOT;
        kyb_runc *r = calloc(1, sizeof(*r));
        int rc;

        if (!r)
                return kyb_error_set(err, ENOMEM, "runc");
        r->runc_path = strdup(path);
        r->search_path = !strchr(path, '/');
        r->criu_path = cfg->criu_path ? strdup(cfg->criu_path) : NULL;
        if (!r->runc_path || (cfg->criu_path && !r->criu_path))
                rc = kyb_error_set(err, ENOMEM, "runc");
        else
                rc = kyb_runc_parse_templates(roots, &r->templates, err);
        if (rc < 0) {
                kyb_runc_free(r);
                return rc;
        }
        *out = r;
        return 0;
}

void kyb_runc_free(kyb_runc *r)
{
        if (!r)
                return;
        free(r->runc_path);
        free(r->criu_path);
        kyb_runc_free_templates(r->templates);
        free(r);
}

void kyb_container_clear(kyb_container *c)
{
        free(c->namespace_);
        free(c->id);
        free(c->root);
        free(c->bundle);
        *c = (kyb_container){0};
}

static int validate_name(const char *ns, const char *id, kyb_error **err)
{
        int rc = kyb_validate_id("container namespace", ns, err);

        return rc < 0 ? rc : kyb_validate_id("container id", id, err);
}

/* state.json is what runc itself reads to know a container. */
static bool root_knows(const char *root, const char *id)
{
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (asprintf(&path, "%s/%s/state.json", root, id) < 0)
                return false;
        return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* Appends ", <root>" (or "<root>") to a list for messages. */
static void list_append(char **list, const char *root)
{
        char *s = NULL;

        if (asprintf(&s, "%s%s%s", *list ? *list : "", *list ? ", " : "", root) < 0)
                return;
        free(*list);
        *list = s;
}

/* The first candidate root that holds ns/id, or NULL (*tried lists all). */
static int locate(const kyb_runc *r, const char *ns, const char *id, char **found, char **tried,
                  kyb_error **err)
{
        *found = NULL;
        for (size_t i = 0; r->templates[i]; i++) {
                char *root = NULL;
                int rc = kyb_runc_expand_root(r->templates[i], ns, &root, err);

                if (rc < 0)
                        return rc;
                if (root_knows(root, id)) {
                        *found = root;
                        return 0;
                }
                list_append(tried, root);
                free(root);
        }
        return 0;
}

int kyb_runc_run(const kyb_runc *r, char *const *argv, int64_t timeout_ms, const char *what,
                 kyb_run_result *res, kyb_error **err)
{
        kyb_run_opts o = {
            .argv = (const char *const *)argv,
            .search_path = r->search_path,
            .timeout_ms = timeout_ms,
            .term_grace_ms = 2000,
        };
        _cleanup_free_ char *msgs = NULL;
        int rc = kyb_run(&o, res, err);

        /* A runc that cannot be started is our setup's fault, not a missing
         * container: keep ENOENT from reading as NOT_FOUND. */
        if (rc < 0 && rc != -ETIMEDOUT && err && *err)
                return kyb_error_setf(err, EIO, "%s: %s", what, kyb_error_message(*err));
        if (rc < 0)
                return kyb_error_wrap(err, rc, "%s", what);
        if (res->exit_code == 0 && res->signal == 0)
                return 0;
        msgs = kyb_runc_stderr_errors(res->err.data, res->err.len);
        if (res->signal)
                return kyb_error_setf(err, EIO, "%s: runc killed by signal %d%s%s", what,
                                      res->signal, msgs ? ": " : "", msgs ? msgs : "");
        return kyb_error_setf(err, EIO, "%s: runc exited with code %d%s%s", what, res->exit_code,
                              msgs ? ": " : "", msgs ? msgs : "");
}

static int read_state(const kyb_runc *r, const char *root, const char *id, int64_t timeout_ms,
                      kyb_container *out, kyb_error **err)
{
        _cleanup_run_result_ kyb_run_result res = {0};
        _cleanup_strv_ kyb_strv argv = {0};
        int64_t t =
            timeout_ms > 0 ? KYB_MIN(timeout_ms, (int64_t)STATE_TIMEOUT_MS) : STATE_TIMEOUT_MS;
        int rc;

        kyb_runc_argv_prefix(r, root, "state", &argv);
        kyb_strv_push(&argv, id);
        if (argv.oom)
                return kyb_error_set(err, ENOMEM, "runc argv");
        rc = kyb_runc_run(r, argv.v, t, "runc state", &res, err);
        if (rc >= 0)
                rc = kyb_runc_parse_state(res.out.data, res.out.len, out, err);
        if (rc >= 0 && strcmp(out->id, id))
                rc = kyb_error_setf(err, EBADMSG, "runc state %s answered for '%s'", id, out->id);
        return rc;
}

int kyb_runc_find(const kyb_runc *r, const char *ns, const char *id, int64_t timeout_ms,
                  kyb_container *out, kyb_error **err)
{
        _cleanup_free_ char *tried = NULL;
        char *root = NULL;
        int rc = validate_name(ns, id, err);

        *out = (kyb_container){0};
        if (rc >= 0)
                rc = locate(r, ns, id, &root, &tried, err);
        if (rc < 0)
                return rc;
        if (!root)
                return kyb_error_setf(err, ENOENT, "container %s/%s not found under %s", ns, id,
                                      tried ? tried : "(no runc root)");
        out->root = root;
        out->namespace_ = strdup(ns);
        if (!out->namespace_)
                rc = kyb_error_set(err, ENOMEM, "container");
        if (rc >= 0)
                rc = read_state(r, root, id, timeout_ms, out, err);
        if (rc < 0) {
                kyb_container_clear(out);
                return kyb_error_wrap(err, rc, "container %s/%s", ns, id);
        }
        return 0;
}

/* The first candidate whose directory exists, else the first candidate. */
static int pick_new_root(const kyb_runc *r, const char *ns, char **root, kyb_error **err)
{
        _cleanup_free_ char *first = NULL;

        for (size_t i = 0; r->templates[i]; i++) {
                _cleanup_free_ char *cand = NULL;
                struct stat st;
                int rc = kyb_runc_expand_root(r->templates[i], ns, &cand, err);

                if (rc < 0)
                        return rc;
                if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode)) {
                        *root = TAKE_PTR(cand);
                        return 0;
                }
                if (!first)
                        first = TAKE_PTR(cand);
        }
        *root = TAKE_PTR(first);
        return 0;
}

int kyb_runc_root_for_new(const kyb_runc *r, const char *ns, const char *id, char **root,
                          kyb_error **err)
{
        _cleanup_free_ char *tried = NULL;
        _cleanup_free_ char *found = NULL;
        int rc = validate_name(ns, id, err);

        if (rc >= 0)
                rc = locate(r, ns, id, &found, &tried, err);
        if (rc < 0)
                return rc;
        if (found)
                return kyb_error_setf(err, EEXIST, "container %s/%s already exists under %s", ns,
                                      id, found);
        return pick_new_root(r, ns, root, err);
}
