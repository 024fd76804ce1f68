/* SPDX-License-Identifier: Apache-2.0 */
/* Client configuration: kubeconfig files and the in-cluster service account. */
#include <errno.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kube/kube-internal.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* ---- YAML to JSON ----------------------------------------------------------- */

static int yaml_node(yaml_parser_t *p, yaml_event_t *first, int depth, json_t **out,
                     kyb_error **err);

static int yaml_next(yaml_parser_t *p, yaml_event_t *ev, kyb_error **err)
{
        if (!yaml_parser_parse(p, ev))
                return kyb_error_setf(err, EINVAL, "YAML line %zu: %s", p->problem_mark.line + 1,
                                      p->problem ? p->problem : "parse error");
        return 0;
}

static int yaml_collection(yaml_parser_t *p, bool mapping, int depth, json_t *coll, kyb_error **err)
{
        yaml_event_type_t end = mapping ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;

        for (;;) {
                _cleanup_json_ json_t *key = NULL, *val = NULL;
                yaml_event_t ev;
                int rc = yaml_next(p, &ev, err);

                if (rc < 0)
                        return rc;
                if (ev.type == end) {
                        yaml_event_delete(&ev);
                        return 0;
                }
                rc = yaml_node(p, &ev, depth + 1, mapping ? &key : &val, err);
                if (rc >= 0 && mapping) {
                        if (!json_is_string(key))
                                return kyb_error_setf(err, EINVAL,
                                                      "YAML: mapping key is not a scalar");
                        if ((rc = yaml_next(p, &ev, err)) >= 0)
                                rc = yaml_node(p, &ev, depth + 1, &val, err);
                }
                if (rc < 0)
                        return rc;
                if (mapping)
                        json_object_set(coll, json_string_value(key), val);
                else
                        json_array_append(coll, val);
        }
}

/* Consumes `first` (and the events of its children). */
static int yaml_node(yaml_parser_t *p, yaml_event_t *first, int depth, json_t **out,
                     kyb_error **err)
{
        yaml_event_type_t type = first->type;
        int rc = 0;

        if (depth > 64) {
                yaml_event_delete(first);
                return kyb_error_setf(err, EINVAL, "YAML nested too deeply");
        }
        if (type == YAML_SCALAR_EVENT)
                *out =
                    json_stringn((const char *)first->data.scalar.value, first->data.scalar.length);
        else if (type == YAML_MAPPING_START_EVENT)
                *out = json_object();
        else if (type == YAML_SEQUENCE_START_EVENT)
                *out = json_array();
        else if (type == YAML_ALIAS_EVENT)
                rc = kyb_error_setf(err, ENOTSUP, "YAML aliases are not supported");
        else
                rc = kyb_error_setf(err, EINVAL, "YAML: unexpected event %d", type);
        yaml_event_delete(first);
        if (rc < 0)
                return rc;
        if (!*out)
                return kyb_error_setf(err, EINVAL, "YAML scalar is not valid UTF-8");
        if (type == YAML_SCALAR_EVENT)
                return 0;
        return yaml_collection(p, type == YAML_MAPPING_START_EVENT, depth, *out, err);
}

static int yaml_document(yaml_parser_t *p, json_t **out, kyb_error **err)
{
        yaml_event_t ev;
        int rc;

        /* stream start, document start, the root node */
        for (;;) {
                if ((rc = yaml_next(p, &ev, err)) < 0)
                        return rc;
                if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
                        yaml_event_delete(&ev);
                        continue;
                }
                if (ev.type == YAML_STREAM_END_EVENT) {
                        yaml_event_delete(&ev);
                        return kyb_error_setf(err, EINVAL, "empty YAML document");
                }
                return yaml_node(p, &ev, 0, out, err);
        }
}

int kube_yaml_to_json(const char *text, size_t len, json_t **out, kyb_error **err)
{
        yaml_parser_t p;
        int rc;

        *out = NULL;
        if (!yaml_parser_initialize(&p))
                return kyb_error_set(err, ENOMEM, "YAML parser");
        yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
        rc = yaml_document(&p, out, err);
        yaml_parser_delete(&p);
        if (rc < 0) {
                json_decref(*out);
                *out = NULL;
        }
        return rc;
}

/* ---- helpers --------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len, kyb_error **err)
{
        _cleanup_free_ char *buf = NULL;
        FILE *f = fopen(path, "re");
        size_t cap = 0, n = 0;

        if (!f)
                return kyb_error_set(err, errno, "%s", path);
        for (;;) {
                if (n + 4096 + 1 > cap) {
                        char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);

                        if (!nb) {
                                fclose(f);
                                return kyb_error_set(err, ENOMEM, "%s", path);
                        }
                        buf = nb;
                }
                size_t got = fread(buf + n, 1, cap - n - 1, f);

                n += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                fclose(f);
                return kyb_error_set(err, EIO, "reading %s", path);
        }
        fclose(f);
        buf[n] = '\0';
        *len = n;
        *out = TAKE_PTR(buf);
        return 0;
}

static int b64_decode(const char *what, const char *in, char **out, size_t *len, kyb_error **err)
{
        size_t n = strlen(in), pad = 0;
        _cleanup_free_ char *buf = malloc(n / 4 * 3 + 4);
        int got;

        if (!buf)
                return kyb_error_set(err, ENOMEM, "%s", what);
        while (pad < n && in[n - 1 - pad] == '=')
                pad++;
        /* EVP_DecodeBlock takes '=' anywhere as a zero sextet: only up to two
         * at the end are padding ("====" would make the length negative). */
        if (n % 4 || pad > 2 || memchr(in, '=', n - pad) ||
            (got = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)in, (int)n)) < 0)
                return kyb_error_setf(err, EINVAL, "%s is not valid base64", what);
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        got -= (int)pad;
        buf[got] = '\0';
        *len = (size_t)got;
        *out = TAKE_PTR(buf);
        return 0;
}

static const char *str(const json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

/* A named entry of kubeconfig's "clusters", "users" or "contexts" lists. */
static const json_t *named(const json_t *root, const char *list, const char *field,
                           const char *name)
{
        size_t i;
        json_t *e;

        json_array_foreach(json_object_get(root, list), i, e)
        {
                if (json_is_string(json_object_get(e, "name")) && !strcmp(str(e, "name"), name))
                        return json_object_get(e, field);
        }
        return NULL;
}

/* Kubeconfig paths are relative to the file that names them. */
static int resolve_path(const char *dir, const char *p, char **out, kyb_error **err)
{
        if (!p) {
                *out = NULL;
                return 0;
        }
        if (p[0] == '/' ? asprintf(out, "%s", p) < 0 : asprintf(out, "%s/%s", dir, p) < 0)
                return kyb_error_set(err, ENOMEM, "path");
        return 0;
}

static int data_or_file(const json_t *o, const char *key, const char *dir, char **file, char **data,
                        size_t *len, kyb_error **err)
{
        _cleanup_free_ char *data_key = NULL;
        const char *d;

        if (asprintf(&data_key, "%s-data", key) < 0)
                return kyb_error_set(err, ENOMEM, "%s", key);
        d = str(o, data_key);
        if (d)
                return b64_decode(data_key, d, data, len, err);
        return resolve_path(dir, str(o, key), file, err);
}

/* ---- kubeconfig ------------------------------------------------------------- */

static int load_cluster(kyb_kube_config *cfg, const json_t *cl, const char *dir, kyb_error **err)
{
        const char *server = str(cl, "server");
        const char *skip = str(cl, "insecure-skip-tls-verify");

        if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)))
                return kyb_error_setf(err, EINVAL, "cluster has no http(s) server");
        cfg->server = strndup(server, strlen(server) - (server[strlen(server) - 1] == '/'));
        cfg->insecure = skip && !strcmp(skip, "true");
        return data_or_file(cl, "certificate-authority", dir, &cfg->ca_file, &cfg->ca_data,
                            &cfg->ca_len, err);
}

static int load_user(kyb_kube_config *cfg, const json_t *u, const char *dir, kyb_error **err)
{
        int rc;

        if (json_object_get(u, "exec") || json_object_get(u, "auth-provider"))
                return kyb_error_setf(err, ENOTSUP,
                                      "exec and auth-provider credentials are not supported; "
                                      "use a token, a token file or a client certificate");
        if (json_object_get(u, "username") || json_object_get(u, "password"))
                return kyb_error_setf(err, ENOTSUP, "basic auth is not supported");
        if (str(u, "token") && !(cfg->token = strdup(str(u, "token"))))
                return kyb_error_set(err, ENOMEM, "token");
        if ((rc = resolve_path(dir, str(u, "tokenFile"), &cfg->token_file, err)) < 0 ||
            (rc = data_or_file(u, "client-certificate", dir, &cfg->cert_file, &cfg->cert_data,
                               &cfg->cert_len, err)) < 0 ||
            (rc = data_or_file(u, "client-key", dir, &cfg->key_file, &cfg->key_data, &cfg->key_len,
                               err)) < 0)
                return rc;
        if (!!(cfg->cert_file || cfg->cert_data) != !!(cfg->key_file || cfg->key_data))
                return kyb_error_setf(err, EINVAL, "client certificate and key come together");
        return 0;
}

static int load_context(kyb_kube_config *cfg, const json_t *root, const char *context,
                        const char *dir, kyb_error **err)
{
        const json_t *ctx = named(root, "contexts", "context", context);
        const json_t *cl, *u;
        const char *ns;
        int rc;

        if (!ctx)
                return kyb_error_setf(err, ENOENT, "context \"%s\" not found", context);
        cl = str(ctx, "cluster") ? named(root, "clusters", "cluster", str(ctx, "cluster")) : NULL;
        if (!cl)
                return kyb_error_setf(err, ENOENT, "context \"%s\": cluster \"%s\" not found",
                                      context, str(ctx, "cluster") ? str(ctx, "cluster") : "");
        if ((rc = load_cluster(cfg, cl, dir, err)) < 0)
                return kyb_error_wrap(err, rc, "cluster \"%s\"", str(ctx, "cluster"));
        u = str(ctx, "user") ? named(root, "users", "user", str(ctx, "user")) : NULL;
        if (str(ctx, "user") && !u)
                return kyb_error_setf(err, ENOENT, "context \"%s\": user \"%s\" not found", context,
                                      str(ctx, "user"));
        if (u && (rc = load_user(cfg, u, dir, err)) < 0)
                return kyb_error_wrap(err, rc, "user \"%s\"", str(ctx, "user"));
        ns = str(ctx, "namespace");
        cfg->ns = strdup(ns && *ns ? ns : "default");
        return cfg->ns && cfg->server ? 0 : kyb_error_set(err, ENOMEM, "config");
}

static int load_file(const char *path, const char *context, kyb_kube_config *cfg, kyb_error **err)
{
        _cleanup_free_ char *text = NULL, *dircopy = strdup(path);
        _cleanup_json_ json_t *root = NULL;
        size_t len = 0;
        int rc;

        if (!dircopy)
                return kyb_error_set(err, ENOMEM, "%s", path);
        if ((rc = read_file(path, &text, &len, err)) < 0 ||
            (rc = kube_yaml_to_json(text, len, &root, err)) < 0)
                return rc;
        if (!context)
                context = str(root, "current-context");
        if (!context || !*context)
                return kyb_error_setf(err, EINVAL, "no context given and no current-context");
        return load_context(cfg, root, context, dirname(dircopy), err);
}

int kyb_kube_config_load(const char *path, const char *context, kyb_kube_config **out,
                         kyb_error **err)
{
        _cleanup_free_ char *home_cfg = NULL, *env_cfg = NULL;
        kyb_kube_config *cfg;
        int rc;

        if (!path && getenv("KUBECONFIG") && *getenv("KUBECONFIG")) {
                /* A list (a:b) names files to merge; merging is not done:
                 * the first file is used. */
                if (!(env_cfg = strndup(getenv("KUBECONFIG"), strcspn(getenv("KUBECONFIG"), ":"))))
                        return kyb_error_set(err, ENOMEM, "KUBECONFIG");
                path = env_cfg;
        }
        if (!path && getenv("KUBERNETES_SERVICE_HOST"))
                return kyb_kube_config_in_cluster(NULL, out, err);
        if (!path) {
                if (!getenv("HOME") || asprintf(&home_cfg, "%s/.kube/config", getenv("HOME")) < 0)
                        return kyb_error_setf(
                            err, ENOENT, "no kubeconfig: pass one, set KUBECONFIG or run in a pod");
                path = home_cfg;
        }
        if (!(cfg = calloc(1, sizeof(*cfg))))
                return kyb_error_set(err, ENOMEM, "config");
        rc = load_file(path, context, cfg, err);
        if (rc < 0) {
                kyb_kube_config_free(cfg);
                return kyb_error_wrap(err, rc, "kubeconfig %s", path);
        }
        *out = cfg;
        return 0;
}

int kyb_kube_config_in_cluster(const char *sa_dir, kyb_kube_config **out, kyb_error **err)
{
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        _cleanup_free_ char *ns = NULL;
        kyb_kube_config *cfg;
        size_t len;
        int rc = 0;

        if (!host || !port)
                return kyb_error_setf(err, ENOENT,
                                      "in-cluster: KUBERNETES_SERVICE_HOST/PORT not set");
        if (!sa_dir)
                sa_dir = SA_DIR;
        if (!(cfg = calloc(1, sizeof(*cfg))))
                return kyb_error_set(err, ENOMEM, "config");
        if (asprintf(&cfg->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                     port) < 0 ||
            asprintf(&cfg->token_file, "%s/token", sa_dir) < 0 ||
            asprintf(&cfg->ca_file, "%s/ca.crt", sa_dir) < 0)
                rc = kyb_error_set(err, ENOMEM, "config");
        if (rc >= 0 && access(cfg->token_file, R_OK) < 0)
                rc = kyb_error_set(err, errno, "in-cluster: %s", cfg->token_file);
        if (rc >= 0 && asprintf(&ns, "%s/namespace", sa_dir) >= 0 &&
            read_file(ns, &cfg->ns, &len, NULL) >= 0)
                cfg->ns[strcspn(cfg->ns, "\n")] = '\0';
        if (rc >= 0 && cfg->ns && !*cfg->ns) {
                free(cfg->ns);
                cfg->ns = NULL;
        }
        if (rc >= 0 && !cfg->ns && !(cfg->ns = strdup("default")))
                rc = kyb_error_set(err, ENOMEM, "config");
        if (rc < 0) {
                kyb_kube_config_free(cfg);
                return rc;
        }
        *out = cfg;
        return 0;
}

void kube_config_clear(kyb_kube_config *cfg)
{
        /* Credentials do not linger in freed memory. */
        if (cfg->token)
                OPENSSL_cleanse(cfg->token, strlen(cfg->token));
        if (cfg->key_data)
                OPENSSL_cleanse(cfg->key_data, cfg->key_len);
        free(cfg->server);
        free(cfg->ca_file);
        free(cfg->ca_data);
        free(cfg->token);
        free(cfg->token_file);
        free(cfg->cert_file);
        free(cfg->key_file);
        free(cfg->cert_data);
        free(cfg->key_data);
        free(cfg->ns);
        *cfg = (kyb_kube_config){0};
}

static char *dup_mem(const char *p, size_t len, bool *oom)
{
        char *d;

        if (!p)
                return NULL;
        d = malloc(len + 1);
        if (!d) {
                *oom = true;
                return NULL;
        }
        memcpy(d, p, len);
        d[len] = '\0';
        return d;
}

int kube_config_copy(kyb_kube_config *dst, const kyb_kube_config *src, kyb_error **err)
{
        bool oom = false;

        *dst = *src;
#define S(f) dst->f = dup_mem(src->f, src->f ? strlen(src->f) : 0, &oom)
        S(server);
        S(ca_file);
        S(token);
        S(token_file);
        S(cert_file);
        S(key_file);
        S(ns);
#undef S
        dst->ca_data = dup_mem(src->ca_data, src->ca_len, &oom);
        dst->cert_data = dup_mem(src->cert_data, src->cert_len, &oom);
        dst->key_data = dup_mem(src->key_data, src->key_len, &oom);
        if (oom) {
                kube_config_clear(dst);
                return kyb_error_set(err, ENOMEM, "config");
        }
        return 0;
}

void kyb_kube_config_free(kyb_kube_config *cfg)
{
        if (!cfg)
                return;
        kube_config_clear(cfg);
        free(cfg);
}

const char *kyb_kube_config_server(const kyb_kube_config *cfg)
{
        return cfg->server;
}

const char *kyb_kube_config_namespace(const kyb_kube_config *cfg)
{
        return cfg->ns ? cfg->ns : "default";
}
