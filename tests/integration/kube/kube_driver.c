/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives src/lib/kube against a real API server for
 * tests/integration/test_kube_client.py and bench/operator.py.
 *
 *   kube_driver KUBECONFIG get RES NS NAME
 *   kube_driver KUBECONFIG list RES NS [LABEL_SELECTOR [PAGE_SIZE]]
 *   kube_driver KUBECONFIG create RES NS JSON
 *   kube_driver KUBECONFIG update|status RES JSON
 *   kube_driver KUBECONFIG patch RES NS NAME merge|json JSON [status]
 *   kube_driver KUBECONFIG delete RES NS NAME [UID [RV]]
 *   kube_driver KUBECONFIG watch RES NS RV TIMEOUT_S
 *   kube_driver KUBECONFIG informer RES NS [compact]   (until SIGTERM)
 *   kube_driver KUBECONFIG leader NS NAME ID LEASE_MS RENEW_MS RETRY_MS
 *   kube_driver KUBECONFIG event RES NS NAME TYPE REASON MESSAGE
 *
 * RES is a plural: pods, nodes, events, leases, checkpointrequests,
 * restorerequests, checkpointpolicies. Results go to stdout as JSON lines;
 * a failure prints "errno=N message" on stderr and exits 1.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kube/informer.h"
#include "kube/kube.h"
#include "kube/leader.h"

static const kyb_kube_resource *resource(const char *plural)
{
        static const kyb_kube_resource *all[] = {
            &KYB_KUBE_PODS,
            &KYB_KUBE_NODES,
            &KYB_KUBE_EVENTS,
            &KYB_KUBE_LEASES,
            &KYB_KUBE_CHECKPOINT_REQUESTS,
            &KYB_KUBE_RESTORE_REQUESTS,
            &KYB_KUBE_CHECKPOINT_POLICIES,
        };

        for (size_t i = 0; i < KYB_ARRAY_SIZE(all); i++) {
                if (!strcmp(all[i]->plural, plural))
                        return all[i];
        }
        fprintf(stderr, "unknown resource %s\n", plural);
        exit(2);
}

static json_t *parse(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);

        if (!j) {
                fprintf(stderr, "bad JSON: %s\n", e.text);
                exit(2);
        }
        return j;
}

static int fail(kyb_error *err, int rc)
{
        fprintf(stderr, "errno=%d %s\n", -rc, kyb_error_message(err));
        kyb_error_free(err);
        return 1;
}

static void print(const json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT);

        printf("%s\n", s ? s : "null");
        fflush(stdout);
        free(s);
}

static void line(const char *event, const json_t *obj)
{
        char *key = kyb_kube_key(obj);
        json_t *o = json_pack("{s:s, s:s, s:s?}", "event", event, "key", key ? key : "", "rv",
                              kyb_kube_meta(obj, "resourceVersion"));

        print(o);
        json_decref(o);
        free(key);
}

static int on_watch(void *ctx, kyb_kube_event_type t, json_t *obj)
{
        static const char *names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK"};

        line(names[t], obj);
        return 0;
}

static void on_add(void *ctx, json_t *obj)
{
        line("add", obj);
}

static void on_update(void *ctx, json_t *old, json_t *obj)
{
        line("update", obj);
}

static void on_delete(void *ctx, json_t *obj)
{
        line("delete", obj);
}

static void on_started(void *ctx)
{
        printf("{\"leader\": \"started\"}\n");
        fflush(stdout);
}

static void on_stopped(void *ctx)
{
        printf("{\"leader\": \"stopped\"}\n");
        fflush(stdout);
}

static int wait_signal(void)
{
        sigset_t set;
        int sig = 0;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigwait(&set, &sig);
        return sig;
}

static int run_informer(kyb_kube_client *c, char **argv)
{
        kyb_kube_informer_opts o = {
            .resource = resource(argv[0]),
            .ns = strcmp(argv[1], "-") ? argv[1] : NULL,
            .backoff_max_ms = 1000,
            .compact = argv[2] && !strcmp(argv[2], "compact"),
            .handlers = {.on_add = on_add, .on_update = on_update, .on_delete = on_delete},
        };
        kyb_kube_informer *inf = NULL;
        kyb_kube_informer_stats st;
        kyb_error *err = NULL;
        int rc;

        if ((rc = kyb_kube_informer_new(c, &o, &inf, &err)) < 0 ||
            (rc = kyb_kube_informer_start(inf, &err)) < 0)
                return fail(err, rc);
        if (kyb_kube_informer_wait_synced(inf, 60000))
                printf("{\"synced\": true}\n");
        fflush(stdout);
        wait_signal();
        kyb_kube_informer_stats_get(inf, &st);
        printf("{\"lists\": %u, \"watches\": %u, \"failures\": %u, \"objects\": %zu}\n", st.lists,
               st.watches, st.failures, st.objects);
        kyb_kube_informer_free(inf);
        return 0;
}

static int run_leader(kyb_kube_client *c, char **argv)
{
        kyb_kube_leader_opts o = {.ns = argv[0],
                                  .name = argv[1],
                                  .identity = argv[2],
                                  .lease_ms = (unsigned)atoi(argv[3]),
                                  .renew_deadline_ms = (unsigned)atoi(argv[4]),
                                  .retry_ms = (unsigned)atoi(argv[5]),
                                  .on_started = on_started,
                                  .on_stopped = on_stopped};
        kyb_kube_leader *l = NULL;
        kyb_error *err = NULL;
        int rc;

        if ((rc = kyb_kube_leader_start(c, &o, &l, &err)) < 0)
                return fail(err, rc);
        wait_signal();
        kyb_kube_leader_free(l);
        return 0;
}

static int run(kyb_kube_client *c, const char *cmd, int argc, char **argv)
{
        _cleanup_json_ json_t *out = NULL, *in = NULL;
        kyb_error *err = NULL;
        char *rv = NULL;
        int rc = -EINVAL;

        if (!strcmp(cmd, "get") && argc == 3)
                rc = kyb_kube_get(c, resource(argv[0]), argv[1], argv[2], &out, &err);
        else if (!strcmp(cmd, "list") && argc >= 2) {
                kyb_kube_list_opts o = {.label_selector = argc > 2 ? argv[2] : NULL,
                                        .page_size = argc > 3 ? (unsigned)atoi(argv[3]) : 0};

                rc = kyb_kube_list(c, resource(argv[0]), strcmp(argv[1], "-") ? argv[1] : NULL, &o,
                                   &in, &rv, &err);
                if (rc >= 0)
                        out = json_pack("{s:O, s:s?}", "items", in, "resourceVersion", rv);
                free(rv);
        } else if (!strcmp(cmd, "create") && argc == 3) {
                in = parse(argv[2]);
                rc = kyb_kube_create(c, resource(argv[0]), argv[1], in, &out, &err);
        } else if ((!strcmp(cmd, "update") || !strcmp(cmd, "status")) && argc == 2) {
                in = parse(argv[1]);
                rc = !strcmp(cmd, "update")
                         ? kyb_kube_update(c, resource(argv[0]), in, &out, &err)
                         : kyb_kube_update_status(c, resource(argv[0]), in, &out, &err);
        } else if (!strcmp(cmd, "patch") && argc >= 5) {
                in = parse(argv[4]);
                rc = kyb_kube_patch(c, resource(argv[0]), argv[1], argv[2],
                                    strcmp(argv[3], "json") ? KYB_KUBE_PATCH_MERGE
                                                            : KYB_KUBE_PATCH_JSON,
                                    in, argc > 5, &out, &err);
        } else if (!strcmp(cmd, "delete") && argc >= 3) {
                rc = kyb_kube_delete(c, resource(argv[0]), argv[1], argv[2],
                                     argc > 3 && *argv[3] ? argv[3] : NULL,
                                     argc > 4 ? argv[4] : NULL, &err);
        } else if (!strcmp(cmd, "watch") && argc == 4) {
                rc = kyb_kube_watch(c, resource(argv[0]), strcmp(argv[1], "-") ? argv[1] : NULL,
                                    NULL, argv[2], (unsigned)atoi(argv[3]), NULL, on_watch, NULL,
                                    NULL, &err);
        } else if (!strcmp(cmd, "event") && argc == 6) {
                rc = kyb_kube_get(c, resource(argv[0]), argv[1], argv[2], &in, &err);
                if (rc >= 0)
                        rc = kyb_kube_event(c, in, argv[3], argv[4], "kube-driver", argv[5], &err);
        } else if (!strcmp(cmd, "informer") && (argc == 2 || argc == 3)) {
                return run_informer(c, argv);
        } else if (!strcmp(cmd, "leader") && argc == 6) {
                return run_leader(c, argv);
        } else {
                fprintf(stderr, "bad command line (see the source)\n");
                return 2;
        }
        if (rc < 0)
                return fail(err, rc);
        if (out)
                print(out);
        return 0;
}

int main(int argc, char **argv)
{
        kyb_kube_config *cfg = NULL;
        kyb_kube_client *c = NULL;
        kyb_error *err = NULL;
        sigset_t set;
        int rc;

        if (argc < 3) {
                fprintf(stderr, "usage: kube_driver KUBECONFIG COMMAND ARGS...\n");
                return 2;
        }
        /* Blocked in every thread, taken by sigwait. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        if ((rc = kyb_kube_config_load(argv[1], NULL, &cfg, &err)) < 0 ||
            (rc = kyb_kube_client_new(cfg, NULL, &c, &err)) < 0)
                return fail(err, rc);
        rc = run(c, argv[2], argc - 3, argv + 3);
        kyb_kube_client_free(c);
        kyb_kube_config_free(cfg);
        return rc;
}
