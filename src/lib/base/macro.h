/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small language helpers used everywhere: scope-bound cleanup of locals and
 * ownership transfer out of such locals.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)         __attribute__((cleanup(f)))
#define _unused_             __attribute__((unused))
#define _printf_(a, b)       __attribute__((format(printf, a, b)))
#define _nonnull_(...)       __attribute__((nonnull(__VA_ARGS__)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define KYB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KYB_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define KYB_MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Hand a pointer out of a _cleanup_ local so the cleanup sees NULL. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _kyb_tmp = (p);                                                      \
                (p) = NULL;                                                                        \
                _kyb_tmp;                                                                          \
        })

/* Same for file descriptors, which use -1 as "nothing to close". */
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _kyb_fd = (fd);                                                                \
                (fd) = -1;                                                                         \
                _kyb_fd;                                                                           \
        })

static inline void kyb_freep(void *p)
{
        free(*(void **)p);
}

static inline void kyb_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

#define _cleanup_free_  _cleanup_(kyb_freep)
#define _cleanup_close_ _cleanup_(kyb_closep)
