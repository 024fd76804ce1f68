/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary bytes as a compressed checkpoint archive. The
 * extractor must refuse what is not a valid, verified artifact with an
 * error, never crash, hang, write outside its directory or leave a partial
 * directory behind.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "store/fsutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct cursor {
        const uint8_t *data;
        size_t size, off;
} cursor;

static ssize_t source(void *ctx, void *buf, size_t len, kyb_error **err)
{
        cursor *c = ctx;
        size_t n = KYB_MIN(len, c->size - c->off);

        memcpy(buf, c->data + c->off, n);
        c->off += n;
        return (ssize_t)n;
}

static char parent[64];

static void remove_parent(void)
{
        rmdir(parent);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char dest[96];
        cursor c = {data, size, 0};
        kyb_archive_limits limits = {
            .max_file_bytes = 1 << 20, .max_total_bytes = 4 << 20, .max_entries = 256};
        kyb_error *err = NULL;
        struct stat st;

        if (!parent[0]) {
                snprintf(parent, sizeof(parent), "/tmp/kyb-fuzz-XXXXXX");
                if (!mkdtemp(parent))
                        abort();
                atexit(remove_parent);
        }
        snprintf(dest, sizeof(dest), "%s/out", parent);
        if (kyb_archive_extract(source, &c, dest, &limits, &err) < 0) {
                /* A refused archive leaves nothing behind. */
                if (stat(dest, &st) == 0)
                        abort();
        } else if (kyb_fs_rm_rf_at(AT_FDCWD, dest, NULL, NULL) < 0) {
                abort(); /* only a verified artifact gets here */
        }
        kyb_error_free(err);
        return 0;
}
