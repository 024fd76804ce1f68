/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the files of src/lib/kube; not part of its interface. */
#pragma once

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>

#include "kube/kube.h"

struct kyb_kube_config {
        char *server;  /* "https://host:port", no trailing slash */
        char *ca_file; /* PEM bundle path, or ... */
        char *ca_data; /* ... PEM bytes */
        size_t ca_len;
        bool insecure;    /* insecure-skip-tls-verify */
        char *token;      /* bearer token, or ... */
        char *token_file; /* ... re-read on each request (rotated tokens) */
        char *cert_file, *key_file;
        char *cert_data, *key_data;
        size_t cert_len, key_len;
        char *ns;
};

struct kyb_kube_client {
        kyb_kube_config cfg; /* a deep copy, owned */
        unsigned timeout_ms;
        char *user_agent;

        /* Idle easy handles: a request takes one and puts it back so
         * connections are reused and requests can run concurrently. */
        pthread_mutex_t mu;
        CURL **idle;
        size_t n_idle, cap_idle;
};

/* Converts a YAML document (a kubeconfig; JSON is YAML too) into JSON:
 * mappings become objects, sequences arrays, scalars strings. */
int kube_yaml_to_json(const char *text, size_t len, json_t **out, kyb_error **err);

int kube_config_copy(kyb_kube_config *dst, const kyb_kube_config *src, kyb_error **err);
void kube_config_clear(kyb_kube_config *cfg);

/* A configured easy handle (TLS, auth, agent) from the pool or new; put it
 * back with kube_handle_put (which resets the per-request options). */
int kube_handle_get(kyb_kube_client *c, CURL **out, struct curl_slist **headers, kyb_error **err);
void kube_handle_put(kyb_kube_client *c, CURL *h, struct curl_slist *headers);

/* "/api/v1/namespaces/NS/pods[/NAME][/SUB]" for resource r. */
int kube_path(const kyb_kube_resource *r, const char *ns, const char *name, const char *sub,
              char **out, kyb_error **err);
/* Appends "?a=b&c=d" pieces, URL-encoding values; NULL values are skipped. */
int kube_query(char **path, const char *key, const char *value, kyb_error **err);

/* Turns an HTTP status and an optional Status body into an error. */
int kube_status_error(long http, const char *method, const char *path, const char *body, size_t len,
                      kyb_error **err);
int kube_errno_for(long http, const char *reason);
