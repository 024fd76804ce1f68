/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stub node for bench/operator.py: the node controller (src/lib/nodectl) of
 * one node with a no-op engine. checkpoint() returns at once (imageBytes 0)
 * and, standing in for the pod's sidecar, writes <id>.upload.json into
 * RESULT_DIR (temp file + rename) before it returns, so the request goes
 * Checkpointing -> Uploading -> Succeeded without waiting for a poll.
 * exists() is always false.
 *
 * Usage: nodectl_noop KUBECONFIG NODE RESULT_DIR [WORKERS]
 * Runs until SIGTERM or SIGINT, then prints {"checkpoints": N, "errors": E}
 * on stdout. Log level: $NODECTL_NOOP_LOG_LEVEL (default info, as the agent).
 * $NODECTL_NOOP_DELAY_MS makes each checkpoint take that long (tests use it
 * to fail the API server in the middle of one).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "kube/kube.h"
#include "nodectl/nodectl.h"

typedef struct noop {
        const char *result_dir;
        unsigned delay_ms;
        atomic_long checkpoints, errors;
} noop;

static int write_result(const noop *n, const char *id, kyb_error **err)
{
        char tmp[4096], path[4096];
        _cleanup_free_ char *body = NULL;
        _cleanup_json_ json_t *res = NULL;
        size_t len;
        int fd;

        if (snprintf(path, sizeof(path), "%s/%s.upload.json", n->result_dir, id) >=
                (int)sizeof(path) ||
            snprintf(tmp, sizeof(tmp), "%s/.%s.upload.json.tmp", n->result_dir, id) >=
                (int)sizeof(tmp))
                return kyb_error_setf(err, ENAMETOOLONG, "result path for %s", id);
        res = json_pack("{s:s+, s:s, s:i, s:i}", "artifact", "file:///dev/null/", id, "sha256",
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size",
                        0, "durationMs", 0);
        if (!res || !(body = json_dumps(res, JSON_COMPACT)))
                return kyb_error_set(err, ENOMEM, "result");
        len = strlen(body);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return kyb_error_setf(err, errno, "open %s", tmp);
        if (write(fd, body, len) != (ssize_t)len) {
                int e = errno ? errno : EIO;

                close(fd);
                unlink(tmp);
                return kyb_error_setf(err, e, "write %s", tmp);
        }
        close(fd);
        if (rename(tmp, path) < 0) {
                int e = errno;

                unlink(tmp);
                return kyb_error_setf(err, e, "rename %s", path);
        }
        return 0;
}

static int noop_checkpoint(void *ctx, const kyb_nodectl_job *job, json_t *status_out,
                           kyb_error **err)
{
        noop *n = ctx;
        int rc;

        if (n->delay_ms)
                usleep(n->delay_ms * 1000u);
        rc = write_result(n, job->checkpoint_id, err);

        if (rc < 0) {
                atomic_fetch_add(&n->errors, 1);
                return rc;
        }
        json_object_set_new(status_out, "imageBytes", json_integer(0));
        atomic_fetch_add(&n->checkpoints, 1);
        return 0;
}

static bool noop_exists(void *ctx, const char *checkpoint_id, json_t *status_out)
{
        return false;
}

int main(int argc, char **argv)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;
        kyb_kube_client *c = NULL;
        kyb_nodectl *nc = NULL;
        noop n = {0};
        kyb_nodectl_engine engine = {noop_checkpoint, noop_exists, &n};
        kyb_nodectl_opts o = {0};
        const char *level = getenv("NODECTL_NOOP_LOG_LEVEL");
        sigset_t set;
        int sig, rc = 1;

        if (argc < 4 || argc > 5) {
                fprintf(stderr, "usage: %s KUBECONFIG NODE RESULT_DIR [WORKERS]\n", argv[0]);
                return 2;
        }
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (kyb_log_configure(level && *level ? level : "info", "text", &err) < 0) {
                fprintf(stderr, "nodectl_noop: %s\n", kyb_error_message(err));
                return 2;
        }
        n.result_dir = argv[3];
        n.delay_ms = getenv("NODECTL_NOOP_DELAY_MS")
                         ? (unsigned)strtoul(getenv("NODECTL_NOOP_DELAY_MS"), NULL, 10)
                         : 0;
        o.node_name = argv[2];
        o.result_dir = argv[3];
        o.workers = argc == 5 ? (unsigned)strtoul(argv[4], NULL, 10) : 0;
        if (kyb_kube_config_load(argv[1], NULL, &cfg, &err) < 0 ||
            kyb_kube_client_new(cfg, &(kyb_kube_client_opts){.user_agent = "nodectl-noop"}, &c,
                                &err) < 0 ||
            kyb_nodectl_start(c, &o, &engine, &nc, &err) < 0) {
                fprintf(stderr, "nodectl_noop: %s\n", kyb_error_message(err));
                goto out;
        }
        fprintf(stderr, "nodectl_noop: node %s running\n", o.node_name);
        if (sigwait(&set, &sig) == 0)
                rc = 0;
        kyb_nodectl_free(nc);
        nc = NULL;
        printf("{\"checkpoints\": %ld, \"errors\": %ld}\n", atomic_load(&n.checkpoints),
               atomic_load(&n.errors));
        fflush(stdout);
out:
        kyb_nodectl_free(nc);
        kyb_kube_client_free(c);
        kyb_kube_config_free(cfg);
        return rc;
}
