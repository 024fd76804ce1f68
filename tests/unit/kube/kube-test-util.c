/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "kube-test-util.h"
#include "store/fsutil.h"

void ku_assert_error(int rc, const kyb_error *err, int errnum, const char *fragment,
                     const char *file, int line)
{
        if (rc != -errnum)
                fail_msg("%s:%d: rc %d (%s), expected %d; message: %s", file, line, rc,
                         kyb_strerror(-rc), -errnum, kyb_error_message(err));
        if (kyb_error_errno(err) != errnum)
                fail_msg("%s:%d: error object errno %d, expected %d (%s)", file, line,
                         kyb_error_errno(err), errnum, kyb_error_message(err));
        if (fragment && !strstr(kyb_error_message(err), fragment))
                fail_msg("%s:%d: message '%s' lacks '%s'", file, line, kyb_error_message(err),
                         fragment);
}

char *ku_mkdtemp(void)
{
        const char *tmp = getenv("TMPDIR");
        char *p = NULL;

        assert_true(asprintf(&p, "%s/kyb-kube-test-XXXXXX", tmp && *tmp ? tmp : "/tmp") > 0);
        assert_non_null(mkdtemp(p));
        return p;
}

void ku_rm_rf(const char *path)
{
        if (path)
                (void)kyb_fs_rm_rf_at(AT_FDCWD, path, NULL, NULL);
}

char *ku_path(const char *dir, const char *rel)
{
        char *p = NULL;

        assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
        return p;
}

void ku_write(const char *dir, const char *rel, const char *text)
{
        _cleanup_free_ char *path = ku_path(dir, rel);
        FILE *f;

        for (char *s = strchr(path + strlen(dir) + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                if (mkdir(path, 0700) < 0)
                        assert_true(access(path, F_OK) == 0);
                *s = '/';
        }
        assert_non_null(f = fopen(path, "we"));
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

uint64_t ku_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
