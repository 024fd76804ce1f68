/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"

int kyb_mkdir_p(const char *path, mode_t mode, kyb_error **err)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return kyb_error_set(err, ENOMEM, "mkdir %s", path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return kyb_error_set(err, errno, "creating %s", p);
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return kyb_error_set(err, errno, "creating %s", p);
        return 0;
}
