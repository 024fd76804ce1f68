/* SPDX-License-Identifier: Apache-2.0 */
/* What runc prints: `runc state` JSON, its JSON log lines, CRIU's logs. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "container/container-internal.h"

#define QUOTE_MAX 300 /* characters kept of one quoted line */

static const char *const status_names[] = {
    [KYB_CONTAINER_UNKNOWN] = "unknown", [KYB_CONTAINER_CREATING] = "creating",
    [KYB_CONTAINER_CREATED] = "created", [KYB_CONTAINER_RUNNING] = "running",
    [KYB_CONTAINER_PAUSED] = "paused",   [KYB_CONTAINER_STOPPED] = "stopped",
};

const char *kyb_container_status_name(kyb_container_status s)
{
        if ((size_t)s < KYB_ARRAY_SIZE(status_names))
                return status_names[s];
        return "unknown";
}

kyb_container_status kyb_container_status_from_name(const char *s)
{
        for (size_t i = 1; i < KYB_ARRAY_SIZE(status_names); i++)
                if (!strcmp(s, status_names[i]))
                        return (kyb_container_status)i;
        return KYB_CONTAINER_UNKNOWN;
}

static int get_string(json_t *root, const char *key, const char **out, kyb_error **err)
{
        json_t *v = json_object_get(root, key);

        if (!json_is_string(v))
                return kyb_error_setf(err, EBADMSG, "runc state: %s: expected a string", key);
        *out = json_string_value(v);
        return 0;
}

static int get_pid(json_t *root, pid_t *out, kyb_error **err)
{
        json_t *v = json_object_get(root, "pid");
        json_int_t pid;

        if (!json_is_integer(v))
                return kyb_error_setf(err, EBADMSG, "runc state: pid: expected an integer");
        pid = json_integer_value(v);
        if (pid < 0 || pid > 4194304)
                return kyb_error_setf(err, EBADMSG, "runc state: pid: %lld is out of range",
                                      (long long)pid);
        *out = (pid_t)pid;
        return 0;
}

static int fill_state(json_t *root, kyb_container *out, kyb_error **err)
{
        const char *id = NULL, *status = NULL, *bundle = NULL;
        pid_t pid = 0;
        int rc;

        if (!json_is_object(root))
                return kyb_error_setf(err, EBADMSG, "runc state: expected a JSON object");
        rc = get_string(root, "id", &id, err);
        if (rc >= 0)
                rc = get_string(root, "status", &status, err);
        if (rc >= 0)
                rc = get_string(root, "bundle", &bundle, err);
        if (rc >= 0)
                rc = get_pid(root, &pid, err);
        if (rc < 0)
                return rc;
        if (bundle[0] != '/')
                return kyb_error_setf(err, EBADMSG,
                                      "runc state: bundle: '%s' is not an absolute path", bundle);
        free(out->id);
        free(out->bundle);
        out->id = strdup(id);
        out->bundle = strdup(bundle);
        if (!out->id || !out->bundle)
                return kyb_error_set(err, ENOMEM, "runc state");
        out->pid = pid;
        out->status = kyb_container_status_from_name(status);
        return 0;
}

int kyb_runc_parse_state(const char *json, size_t len, kyb_container *out, kyb_error **err)
{
        json_error_t jerr;
        json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        int rc;

        if (!root)
                return kyb_error_setf(err, EBADMSG, "runc state: line %d: %s", jerr.line,
                                      jerr.text);
        rc = fill_state(root, out, err);
        json_decref(root);
        return rc;
}

/* ------------------------------------------------------------------------ */
/* quoting logs */

typedef struct joined {
        char *s;
        size_t len;
} joined;

static void join_append(joined *j, const char *line, size_t len)
{
        char *p;

        while (len && isspace((unsigned char)line[len - 1]))
                len--;
        while (len && isspace((unsigned char)*line)) {
                line++;
                len--;
        }
        if (!len)
                return;
        len = KYB_MIN(len, (size_t)QUOTE_MAX);
        p = realloc(j->s, j->len + len + 3);
        if (!p)
                return;
        if (j->len) {
                memcpy(p + j->len, "; ", 2);
                j->len += 2;
        }
        memcpy(p + j->len, line, len);
        j->len += len;
        p[j->len] = '\0';
        /* runc's messages embed newlines ("...\nlog file: ..."). */
        for (char *c = p; *c; c++)
                if (*c == '\n' || *c == '\t')
                        *c = ' ';
        j->s = p;
}

static void quote_runc_line(joined *j, const char *line, size_t len)
{
        json_t *root = json_loadb(line, len, 0, NULL);
        const char *level, *msg;

        if (!root) {
                join_append(j, line, len);
                return;
        }
        level = json_string_value(json_object_get(root, "level"));
        msg = json_string_value(json_object_get(root, "msg"));
        if (msg && level && (!strcmp(level, "error") || !strcmp(level, "fatal")))
                join_append(j, msg, strlen(msg));
        json_decref(root);
}

char *kyb_runc_stderr_errors(const char *text, size_t len)
{
        const char *end = text + len, *p = text;
        joined j = {0};

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

                quote_runc_line(&j, p, n);
                p += n + 1;
        }
        return j.s;
}

/* "(00.176209) Error (criu/bfd.c:131): ..." -> "Error (criu/bfd.c:131): ...";
 * NULL when the line is not a CRIU error. */
static const char *criu_error_text(const char *line, size_t len, size_t *out_len)
{
        const char *end = line + len, *p = line;

        if (p < end && *p == '(') {
                const char *close = memchr(p, ')', (size_t)(end - p));
                if (!close)
                        return NULL;
                p = close + 1;
        }
        while (p < end && (*p == ' ' || isdigit((unsigned char)*p) || *p == ':'))
                p++;
        if ((size_t)(end - p) < 6 || (strncmp(p, "Error (", 7) && strncmp(p, "Error:", 6)))
                return NULL;
        *out_len = (size_t)(end - p);
        return p;
}

char *kyb_runc_criu_errors(const char *text, size_t len, size_t max)
{
        const char *end = text + len, *p = text;
        const char **line = calloc(max ? max : 1, sizeof(*line));
        size_t *llen = calloc(max ? max : 1, sizeof(*llen));
        size_t n = 0;
        joined j = {0};

        while (line && llen && max && p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p), elen = 0;
                const char *e = criu_error_text(p, ln, &elen);

                p += ln + 1;
                if (!e ||
                    (n && llen[(n - 1) % max] == elen && !memcmp(line[(n - 1) % max], e, elen)))
                        continue;
                line[n % max] = e;
                llen[n % max] = elen;
                n++;
        }
        for (size_t i = n > max ? n - max : 0; line && llen && i < n; i++)
                join_append(&j, line[i % max], llen[i % max]);
        free(line);
        free(llen);
        return j.s;
}
