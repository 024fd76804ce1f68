/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watch streams: one long GET ?watch=1 whose body is a sequence of
 * newline-delimited {"type": ..., "object": ...} events.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube-internal.h"

#define MAX_EVENT (64u << 20)

typedef struct watch_state {
        kyb_kube_watch_fn fn;
        void *ctx;
        const atomic_bool *stop;
        char *line;
        size_t len, cap;
        char *last_version;
        int rc;          /* first failure; stops the transfer */
        kyb_error *fail; /* its message */
        CURL *h;
        long http; /* the response's status, once known */
} watch_state;

static int event_type(const char *t, kyb_kube_event_type *out)
{
        static const struct {
                const char *name;
                kyb_kube_event_type type;
        } types[] = {{"ADDED", KYB_KUBE_ADDED},
                     {"MODIFIED", KYB_KUBE_MODIFIED},
                     {"DELETED", KYB_KUBE_DELETED},
                     {"BOOKMARK", KYB_KUBE_BOOKMARK}};

        for (size_t i = 0; t && i < KYB_ARRAY_SIZE(types); i++) {
                if (!strcmp(t, types[i].name)) {
                        *out = types[i].type;
                        return 0;
                }
        }
        return -EBADMSG;
}

/* An ERROR event carries a Status; 410 means our version is too old. */
static int error_event(watch_state *w, const json_t *st)
{
        long code = (long)json_integer_value(json_object_get(st, "code"));
        const char *msg = json_string_value(json_object_get(st, "message"));
        const char *reason = json_string_value(json_object_get(st, "reason"));

        return kyb_error_setf(&w->fail, kube_errno_for(code ? code : 500, reason),
                              "watch error %ld %s: %s", code, reason ? reason : "", msg ? msg : "");
}

static int handle_line(watch_state *w, const char *line, size_t len)
{
        _cleanup_json_ json_t *ev = json_loadb(line, len, 0, NULL);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *obj = json_object_get(ev, "object");
        kyb_kube_event_type t;
        const char *rv;

        if (!ev || !json_is_object(obj))
                return kyb_error_setf(&w->fail, EBADMSG, "watch: malformed event");
        if (type && !strcmp(type, "ERROR"))
                return error_event(w, obj);
        if (event_type(type, &t) < 0)
                return kyb_error_setf(&w->fail, EBADMSG, "watch: unknown event type %s",
                                      type ? type : "(none)");
        rv = kyb_kube_meta(obj, "resourceVersion");
        if (rv) {
                free(w->last_version);
                w->last_version = strdup(rv);
        }
        return w->fn(w->ctx, t, obj);
}

static int append(watch_state *w, const char *p, size_t n)
{
        if (w->len + n + 1 > MAX_EVENT)
                return kyb_error_setf(&w->fail, EFBIG, "watch: event over %u MiB", MAX_EVENT >> 20);
        if (w->len + n + 1 > w->cap) {
                size_t cap = KYB_MAX(w->cap * 2, w->len + n + 1);
                char *d = realloc(w->line, cap);

                if (!d)
                        return kyb_error_set(&w->fail, ENOMEM, "watch");
                w->line = d;
                w->cap = cap;
        }
        memcpy(w->line + w->len, p, n);
        w->len += n;
        return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
        watch_state *w = arg;
        size_t total = size * n, done = 0;

        if (!w->http)
                curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->http);
        if (w->http < 200 || w->http > 299) /* a Status, not events: kept whole */
                return (w->rc = append(w, p, total)) < 0 ? 0 : total;
        while (done < total && w->rc >= 0) {
                char *nl = memchr(p + done, '\n', total - done);
                size_t chunk = nl ? (size_t)(nl - (p + done)) : total - done;

                w->rc = append(w, p + done, chunk);
                done += chunk + (nl ? 1 : 0);
                if (w->rc >= 0 && nl) {
                        if (w->len)
                                w->rc = handle_line(w, w->line, w->len);
                        w->len = 0;
                }
        }
        return w->rc < 0 ? 0 : total;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
        watch_state *w = arg;

        return w->stop && atomic_load(w->stop) ? 1 : 0;
}

static int watch_path(const kyb_kube_resource *r, const char *ns, const kyb_kube_list_opts *o,
                      const char *rv, unsigned timeout_s, char **path, kyb_error **err)
{
        char t[16];
        int rc;

        snprintf(t, sizeof(t), "%u", timeout_s);
        if ((rc = kube_path(r, ns, NULL, NULL, path, err)) < 0 ||
            (rc = kube_query(path, "watch", "1", err)) < 0 ||
            (rc = kube_query(path, "allowWatchBookmarks", "true", err)) < 0 ||
            (rc = kube_query(path, "timeoutSeconds", t, err)) < 0 ||
            (rc = kube_query(path, "resourceVersion", rv, err)) < 0 ||
            (rc = kube_query(path, "labelSelector", o ? o->label_selector : NULL, err)) < 0)
                return rc;
        return kube_query(path, "fieldSelector", o ? o->field_selector : NULL, err);
}

static int run_watch(kyb_kube_client *c, CURL *h, struct curl_slist *headers, const char *path,
                     unsigned timeout_s, watch_state *w, kyb_error **err)
{
        _cleanup_free_ char *url = NULL;
        long http = 0;
        CURLcode cc;

        if (asprintf(&url, "%s%s", c->cfg.server, path) < 0)
                return kyb_error_set(err, ENOMEM, "watch");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
        /* The server ends the stream after timeoutSeconds; this only catches
         * a server that went silent. */
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s + 60) * 1000);
        w->h = h;
        cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
        if (cc == CURLE_OK && (http < 200 || http > 299))
                return kube_status_error(http, "GET", path, w->line, w->len, err);
        if (w->rc < 0 && w->fail)
                return kyb_error_move(err, &w->fail);
        if (w->rc < 0) /* the caller's handler stopped it */
                return w->rc;
        if (cc == CURLE_ABORTED_BY_CALLBACK)
                return -ECANCELED;
        if (cc != CURLE_OK)
                return kyb_error_setf(err, cc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : EIO,
                                      "watch %s: %s", path, curl_easy_strerror(cc));
        return 0;
}

int kyb_kube_watch(kyb_kube_client *c, const kyb_kube_resource *r, const char *ns,
                   const kyb_kube_list_opts *opts, const char *resource_version, unsigned timeout_s,
                   const atomic_bool *stop, kyb_kube_watch_fn fn, void *ctx, char **last_version,
                   kyb_error **err)
{
        _cleanup_free_ char *path = NULL;
        watch_state w = {.fn = fn, .ctx = ctx, .stop = stop};
        struct curl_slist *headers = NULL;
        CURL *h = NULL;
        int rc;

        if (!timeout_s)
                timeout_s = 300;
        if ((rc = watch_path(r, ns, opts, resource_version, timeout_s, &path, err)) < 0)
                return rc;
        if ((rc = kube_handle_get(c, &h, &headers, err)) < 0)
                return kyb_error_wrap(err, rc, "watch %s", path);
        rc = run_watch(c, h, headers, path, timeout_s, &w, err);
        /* A watch connection ended mid-stream is not worth reusing. */
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        if (last_version)
                *last_version = TAKE_PTR(w.last_version);
        free(w.last_version);
        free(w.line);
        kyb_error_free(w.fail);
        return rc;
}
