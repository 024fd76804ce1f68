/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reaching an artifact's storage from the operator: the location and object
 * name of an artifact URI, opened with a custom resource's storage fields
 * and the credentials of the Secret they name (read by name, never listed).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/operator-internal.h"

static const kyb_kube_resource SECRETS = {"", "v1", "secrets", "Secret", true};

static char *secret_value(const json_t *secret, const char *key)
{
        const char *b64 = op_sget(json_object_get(secret, "data"), key);
        size_t n = b64 ? strlen(b64) : 0;
        char *out;
        int got;

        if (!b64 || n % 4 || !(out = calloc(1, n / 4 * 3 + 1)))
                return NULL;
        got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)b64, (int)n);
        if (got < 0) {
                free(out);
                return NULL;
        }
        while (n && b64[--n] == '=')
                got--;
        out[got] = '\0';
        return out;
}

/* Splits "s3://b/prefix/id.tar.zst?q" into "s3://b/prefix?q" and "id.tar.zst". */
static int split_artifact(const char *uri, char **location, char **key)
{
        const char *q = strchr(uri, '?'), *end = q ? q : uri + strlen(uri);
        const char *slash = end;

        while (slash > uri && slash[-1] != '/')
                slash--;
        if (slash <= uri || slash == end || slash - uri < 8)
                return -EINVAL;
        *key = strndup(slash, (size_t)(end - slash));
        if (asprintf(location, "%.*s%s", (int)(slash - 1 - uri), uri, q ? q : "") < 0)
                *location = NULL;
        return *key && *location ? 0 : -ENOMEM;
}

static void wipe_free(char *s)
{
        if (s)
                OPENSSL_cleanse(s, strlen(s));
        free(s);
}

int op_artifact_open(kyb_operator *op, const char *ns, const json_t *storage, const char *uri,
                     kyb_storage **s, char **key, kyb_error **err)
{
        const char *secret_name = op_sget(json_object_get(storage, "secretRef"), "name");
        _cleanup_free_ char *location = NULL;
        _cleanup_json_ json_t *secret = NULL;
        kyb_storage_credentials creds = {0};
        kyb_storage_opts o = {.endpoint = op_sget(storage, "endpoint"),
                              .region = op_sget(storage, "region")};
        char *id = NULL, *sk = NULL, *tok = NULL;
        int rc;

        if (split_artifact(uri, &location, key) < 0)
                return kyb_error_setf(err, EINVAL, "artifact URI %s has no object name", uri);
        if (json_is_true(json_object_get(storage, "forcePathStyle")))
                o.addressing = KYB_S3_ADDRESSING_PATH;
        if (secret_name) {
                if ((rc = kyb_kube_get(op->c, &SECRETS, ns, secret_name, &secret, err)) < 0)
                        return kyb_error_wrap(err, rc, "storage secret %s", secret_name);
                creds.access_key_id = id = secret_value(secret, "AWS_ACCESS_KEY_ID");
                creds.secret_access_key = sk = secret_value(secret, "AWS_SECRET_ACCESS_KEY");
                creds.session_token = tok = secret_value(secret, "AWS_SESSION_TOKEN");
                o.credentials = &creds;
        }
        rc = kyb_storage_open(location, &o, s, err);
        free(id);
        wipe_free(sk);
        wipe_free(tok);
        return rc;
}

int op_artifact_read(kyb_operator *op, const char *ns, const json_t *storage, const char *uri,
                     size_t max, char **out, size_t *len, kyb_error **err)
{
        _cleanup_free_ char *key = NULL, *buf = malloc(max + 1);
        kyb_storage_reader *r = NULL;
        kyb_storage *s = NULL;
        size_t n = 0;
        int rc;

        if (!buf)
                return kyb_error_set(err, ENOMEM, "%s", uri);
        if ((rc = op_artifact_open(op, ns, storage, uri, &s, &key, err)) < 0)
                return rc;
        if ((rc = kyb_storage_reader_open(s, key, &r, err)) >= 0) {
                ssize_t got;

                while ((got = kyb_storage_reader_read(r, buf + n, max + 1 - n, err)) > 0 &&
                       (n += (size_t)got) <= max)
                        ;
                rc = got < 0   ? (int)got
                     : n > max ? kyb_error_setf(err, EFBIG, "%s is over %zu bytes", uri, max)
                               : 0;
                kyb_storage_reader_close(r);
        }
        kyb_storage_close(s);
        if (rc < 0)
                return rc;
        buf[n] = '\0';
        *len = n;
        *out = TAKE_PTR(buf);
        return 0;
}
