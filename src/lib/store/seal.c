/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/seal.h"

typedef struct sealed_file {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec ctime;
} sealed_file;

struct store_seal {
        struct store_seal *next;
        char *id;
        char manifest_sha[KYB_SHA256_HEX_LEN + 1];
        size_t n;
        sealed_file files[]; /* in manifest order */
};

static bool identity(int dirfd, const char *path, sealed_file *out)
{
        struct stat st;

        if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return false;
        *out = (sealed_file){st.st_dev, st.st_ino, st.st_size, st.st_ctim};
        return true;
}

static struct store_seal *make_seal(kyb_store *s, const char *id, const kyb_manifest *m,
                                    const char *manifest_sha)
{
        struct store_seal *seal = calloc(1, sizeof(*seal) + m->n_files * sizeof(sealed_file));
        int fd = openat(s->root_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        bool ok = seal && fd >= 0 && (seal->id = strdup(id));

        for (size_t i = 0; ok && i < m->n_files; i++)
                ok = identity(fd, m->files[i].path, &seal->files[i]);
        if (fd >= 0)
                close(fd);
        if (!ok) {
                if (seal)
                        free(seal->id);
                free(seal);
                return NULL;
        }
        seal->n = m->n_files;
        snprintf(seal->manifest_sha, sizeof(seal->manifest_sha), "%s", manifest_sha);
        return seal;
}

static struct store_seal **find(kyb_store *s, const char *id)
{
        struct store_seal **p = &s->seals;

        while (*p && strcmp((*p)->id, id))
                p = &(*p)->next;
        return p;
}

static void drop(struct store_seal **p)
{
        struct store_seal *seal = *p;

        *p = seal->next;
        free(seal->id);
        free(seal);
}

void store_seal(kyb_store *s, const char *id, const kyb_manifest *m, const char *manifest_sha)
{
        struct store_seal *seal = make_seal(s, id, m, manifest_sha);
        struct store_seal **p;

        pthread_mutex_lock(&s->lock);
        p = find(s, id);
        if (*p)
                drop(p);
        if (seal) {
                seal->next = s->seals;
                s->seals = seal;
        }
        pthread_mutex_unlock(&s->lock);
}

static bool same(const sealed_file *a, const sealed_file *b)
{
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
               a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

bool store_seal_intact(kyb_store *s, const char *id, const kyb_manifest *m,
                       const char *manifest_sha)
{
        struct store_seal *now = make_seal(s, id, m, manifest_sha);
        struct store_seal *seal;
        bool intact = false;

        pthread_mutex_lock(&s->lock);
        seal = *find(s, id);
        if (now && seal && seal->n == now->n && !strcmp(seal->manifest_sha, manifest_sha)) {
                intact = true;
                for (size_t i = 0; intact && i < now->n; i++)
                        intact = same(&seal->files[i], &now->files[i]);
        }
        pthread_mutex_unlock(&s->lock);
        if (now) {
                free(now->id);
                free(now);
        }
        return intact;
}

void store_unseal(kyb_store *s, const char *id)
{
        struct store_seal **p;

        pthread_mutex_lock(&s->lock);
        p = find(s, id);
        if (*p)
                drop(p);
        pthread_mutex_unlock(&s->lock);
}

void store_seals_free(kyb_store *s)
{
        while (s->seals)
                drop(&s->seals);
}
