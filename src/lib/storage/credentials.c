/* SPDX-License-Identifier: Apache-2.0 */
/*
 * S3 credentials: a mounted secret directory or the AWS_* environment.
 * Values are checked to be printable (they become HTTP headers and libcurl
 * options, so a newline would inject a header) and are wiped when freed.
 * No message ever contains a value.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/s3-internal.h"

#define ACCESS_KEY_FILE    "access-key-id"
#define SECRET_KEY_FILE    "secret-access-key"
#define SESSION_TOKEN_FILE "session-token"

static void wipe_free(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

void s3_credentials_clear(s3_credentials *c)
{
        wipe_free(c->access_key);
        wipe_free(c->secret_key);
        wipe_free(c->session_token);
        *c = (s3_credentials){0};
}

static int check_value(const char *what, const char *v, kyb_error **err)
{
        if (!*v)
                return kyb_error_setf(err, EINVAL, "credentials: %s is empty", what);
        for (const char *p = v; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                        return kyb_error_setf(err, EINVAL,
                                              "credentials: %s has characters that are not "
                                              "printable ASCII",
                                              what);
        return 0;
}

static int read_fd(int fd, const char *name, char *buf, size_t cap, size_t *len, kyb_error **err)
{
        *len = 0;
        for (;;) {
                ssize_t n = read(fd, buf + *len, cap - *len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kyb_error_set(err, errno, "credentials: reading %s", name);
                if (n == 0)
                        return 0;
                *len += (size_t)n;
                if (*len == cap)
                        return kyb_error_setf(err, EINVAL, "credentials: %s is too large", name);
        }
}

/*
 * Reads dir/name, trimming trailing whitespace. Links are followed: a
 * Kubernetes secret volume presents its files as symlinks into ..data/.
 */
static int read_secret(int dirfd, const char *name, bool optional, char **out, kyb_error **err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        char *buf = NULL;
        struct stat st;
        size_t len = 0;
        int rc;

        *out = NULL;
        if (fd < 0 && errno == ENOENT && optional)
                return 0;
        if (fd < 0)
                return kyb_error_set(err, errno, "credentials: opening %s", name);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return kyb_error_setf(err, EINVAL, "credentials: %s is not a regular file", name);
        buf = malloc(S3_SECRET_MAX + 1);
        if (!buf)
                return kyb_error_set(err, ENOMEM, "credentials");
        rc = read_fd(fd, name, buf, S3_SECRET_MAX, &len, err);
        while (len > 0 && strchr(" \t\r\n", buf[len - 1]))
                len--;
        buf[len] = '\0';
        if (rc >= 0 && strlen(buf) != len)
                rc = kyb_error_setf(err, EINVAL, "credentials: %s contains a NUL byte", name);
        if (rc >= 0)
                rc = check_value(name, buf, err);
        if (rc < 0) {
                explicit_bzero(buf, S3_SECRET_MAX + 1);
                free(buf);
                return rc;
        }
        *out = buf;
        return 0;
}

static int load_dir(const char *dir, s3_credentials *c, kyb_error **err)
{
        _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int rc;

        if (dirfd < 0)
                return kyb_error_set(err, errno, "credentials: opening %s", dir);
        if ((rc = read_secret(dirfd, ACCESS_KEY_FILE, false, &c->access_key, err)) < 0 ||
            (rc = read_secret(dirfd, SECRET_KEY_FILE, false, &c->secret_key, err)) < 0 ||
            (rc = read_secret(dirfd, SESSION_TOKEN_FILE, true, &c->session_token, err)) < 0)
                return kyb_error_wrap(err, rc, "%s", dir);
        return 0;
}

static int from_env(const char *name, bool optional, char **out, kyb_error **err)
{
        const char *v = getenv(name);
        int rc;

        *out = NULL;
        if ((!v || !*v) && optional)
                return 0;
        if (!v || !*v)
                return kyb_error_setf(err, EINVAL,
                                      "credentials: %s is not set (and no credentials directory "
                                      "was given)",
                                      name);
        rc = check_value(name, v, err);
        if (rc < 0)
                return rc;
        *out = strdup(v);
        if (!*out)
                return kyb_error_set(err, ENOMEM, "credentials");
        return 0;
}

int s3_credentials_load(const char *dir, s3_credentials *c, kyb_error **err)
{
        int rc;

        *c = (s3_credentials){0};
        if (dir && *dir)
                rc = load_dir(dir, c, err);
        else if ((rc = from_env("AWS_ACCESS_KEY_ID", false, &c->access_key, err)) >= 0 &&
                 (rc = from_env("AWS_SECRET_ACCESS_KEY", false, &c->secret_key, err)) >= 0)
                rc = from_env("AWS_SESSION_TOKEN", true, &c->session_token, err);
        if (rc < 0)
                s3_credentials_clear(c);
        return rc;
}

static int copy_value(const char *what, const char *v, char **out, kyb_error **err)
{
        int rc = check_value(what, v, err);

        if (rc < 0)
                return rc;
        *out = strdup(v);
        return *out ? 0 : kyb_error_set(err, ENOMEM, "credentials");
}

int s3_credentials_copy(const kyb_storage_credentials *in, s3_credentials *c, kyb_error **err)
{
        int rc;

        *c = (s3_credentials){0};
        if (!in->access_key_id || !in->secret_access_key)
                return kyb_error_setf(err, EINVAL,
                                      "credentials: access key ID and secret key are both needed");
        if ((rc = copy_value("access key ID", in->access_key_id, &c->access_key, err)) >= 0 &&
            (rc = copy_value("secret access key", in->secret_access_key, &c->secret_key, err)) >=
                0 &&
            in->session_token)
                rc = copy_value("session token", in->session_token, &c->session_token, err);
        if (rc < 0)
                s3_credentials_clear(c);
        return rc;
}
