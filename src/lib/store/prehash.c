/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/digest.h"
#include "store/prehash.h"

#define CHUNK     (1 << 20)
#define IDLE_NS   2000000L /* poll interval while nothing grows */
#define MAX_FILES 4096

typedef struct followed {
        char *name;
        int fd;
        dev_t dev;
        ino_t ino;
        uint64_t done; /* bytes hashed */
        bool broken;   /* shrank or unreadable: hash again at commit */
        kyb_sha256 *h;
} followed;

struct store_prehash {
        int images_fd;
        pthread_t thread;
        bool started;
        atomic_bool stop;
        followed *files;
        size_t n;
        uint8_t *buf;
};

static followed *find(store_prehash *p, const char *name)
{
        for (size_t i = 0; i < p->n; i++)
                if (!strcmp(p->files[i].name, name))
                        return &p->files[i];
        return NULL;
}

static void follow(store_prehash *p, const char *name)
{
        followed *f;
        struct stat st;
        int fd;

        if (p->n == MAX_FILES || find(p, name))
                return;
        fd = openat(p->images_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return;
        }
        f = &p->files[p->n];
        *f = (followed){.name = strdup(name), .fd = fd, .dev = st.st_dev, .ino = st.st_ino};
        if (!f->name || kyb_sha256_new(&f->h, NULL) < 0) {
                free(f->name);
                kyb_sha256_free(f->h);
                close(fd);
                return;
        }
        p->n++;
}

static void scan(store_prehash *p)
{
        int fd = openat(p->images_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;

        if (!d) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        while ((de = readdir(d)))
                if (de->d_type == DT_REG)
                        follow(p, de->d_name);
        closedir(d);
}

/* Hashes what was appended since the last look; returns the bytes taken. */
static uint64_t catch_up(store_prehash *p, followed *f, uint64_t limit)
{
        uint64_t start = f->done;
        struct stat st;

        if (f->broken || fstat(f->fd, &st) < 0)
                return 0;
        if ((uint64_t)st.st_size < f->done) {
                f->broken = true;
                return 0;
        }
        while (f->done < (uint64_t)st.st_size && f->done - start < limit) {
                size_t want = (size_t)KYB_MIN((uint64_t)CHUNK, (uint64_t)st.st_size - f->done);
                ssize_t got = pread(f->fd, p->buf, want, (off_t)f->done);
                if (got == 0)
                        break; /* truncated under us: the next fstat tells */
                if (got < 0 || kyb_sha256_update(f->h, p->buf, (size_t)got, NULL) < 0) {
                        f->broken = true;
                        break;
                }
                f->done += (uint64_t)got;
        }
        /* Start the writeback now so the commit's fsync finds it done. */
        if (f->done > start)
                sync_file_range(f->fd, (off_t)start, (off_t)(f->done - start),
                                SYNC_FILE_RANGE_WRITE);
        return f->done - start;
}

static void *follow_loop(void *arg)
{
        store_prehash *p = arg;
        struct timespec idle = {0, IDLE_NS};

        while (!atomic_load(&p->stop)) {
                uint64_t progress = 0;

                scan(p);
                for (size_t i = 0; i < p->n; i++)
                        progress += catch_up(p, &p->files[i], 64 * CHUNK);
                if (!progress)
                        nanosleep(&idle, NULL);
        }
        return NULL;
}

int store_prehash_start(int images_fd, store_prehash **out, kyb_error **err)
{
        store_prehash *p = calloc(1, sizeof(*p));
        int rc;

        if (!p || !(p->files = calloc(MAX_FILES, sizeof(*p->files))) || !(p->buf = malloc(CHUNK))) {
                store_prehash_free(p);
                return kyb_error_set(err, ENOMEM, "allocating image hasher");
        }
        p->images_fd = images_fd;
        rc = pthread_create(&p->thread, NULL, follow_loop, p);
        if (rc != 0) {
                store_prehash_free(p);
                return kyb_error_set(err, rc, "starting image hasher");
        }
        p->started = true;
        *out = p;
        return 0;
}

void store_prehash_stop(store_prehash *p)
{
        if (!p || atomic_exchange(&p->stop, true) || !p->started)
                return;
        pthread_join(p->thread, NULL);
}

int store_prehash_finish(store_prehash *p, const char *name, int fd, uint64_t *size,
                         char sha256[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        followed *f = p ? find(p, name) : NULL;
        struct stat st;
        int rc;

        if (!f || f->broken || fstat(fd, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino)
                return 0;
        catch_up(p, f, UINT64_MAX);
        if (f->broken || f->done != (uint64_t)st.st_size)
                return 0;
        rc = kyb_sha256_final(f->h, sha256, err);
        if (rc < 0)
                return rc;
        f->broken = true; /* the context is spent */
        if (fsync(f->fd) < 0)
                return kyb_error_set(err, errno, "fsync %s", name);
        *size = f->done;
        return 1;
}

void store_prehash_free(store_prehash *p)
{
        if (!p)
                return;
        store_prehash_stop(p);
        for (size_t i = 0; p->files && i < p->n; i++) {
                free(p->files[i].name);
                kyb_sha256_free(p->files[i].h);
                close(p->files[i].fd);
        }
        free(p->files);
        free(p->buf);
        free(p);
}
