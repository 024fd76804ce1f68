/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bigmem: a large resident memory footprint with a checkable pattern.
 *
 * The region is split into 4 KiB pattern pages. Page p in generation g holds
 * words base(p, g) + j * K (j = word index), so every page differs from every
 * other page and from zero. Each tick rewrites the next R pages round-robin
 * (generation + 1), first checking that the page still held its previous
 * generation; a full verify checks every page against the generation implied
 * by the write count. Progress = ticks done.
 */
#include "wl_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE_BYTES 4096u
#define PAGE_WORDS (PAGE_BYTES / sizeof(uint64_t))
#define WORD_STEP  0xd6e8feb86659fd93ULL

struct bigmem {
        struct wl *w;
        uint64_t *mem;
        uint64_t npages;
        uint64_t rate;   /* pages rewritten per tick */
        uint64_t ticks;  /* progress */
        uint64_t writes; /* page rewrites done = ticks * rate */
};

static inline uint64_t page_base(uint64_t p, uint64_t g)
{
        return wl_mix64(p * 0x9e3779b97f4a7c15ULL ^ (g + 1) * 0xc2b2ae3d27d4eb4fULL);
}

static inline void fill_page(uint64_t *restrict w, uint64_t p, uint64_t g)
{
        uint64_t base = page_base(p, g);

        for (uint64_t j = 0; j < PAGE_WORDS; j++)
                w[j] = base + j * WORD_STEP;
}

/* index of the first differing word, or PAGE_WORDS when the page matches */
static inline uint64_t check_page(const uint64_t *restrict w, uint64_t p, uint64_t g)
{
        uint64_t base = page_base(p, g);
        uint64_t diff = 0;

        for (uint64_t j = 0; j < PAGE_WORDS; j++)
                diff |= w[j] ^ (base + j * WORD_STEP);
        if (!diff)
                return PAGE_WORDS;
        for (uint64_t j = 0; j < PAGE_WORDS; j++)
                if (w[j] != base + j * WORD_STEP)
                        return j;
        return PAGE_WORDS;
}

/* generation page p must hold after `writes` round-robin rewrites */
static inline uint64_t page_gen(const struct bigmem *st, uint64_t p)
{
        return st->writes / st->npages + (p < st->writes % st->npages ? 1 : 0);
}

static void tick(struct bigmem *st)
{
        for (uint64_t k = 0; k < st->rate; k++) {
                uint64_t p = st->writes % st->npages;
                uint64_t g = st->writes / st->npages;
                uint64_t *page = st->mem + p * PAGE_WORDS;
                uint64_t j = check_page(page, p, g);

                if (j != PAGE_WORDS)
                        wl_error(st->w,
                                 "page %" PRIu64 " word %" PRIu64 " holds 0x%016" PRIx64
                                 ", expected generation %" PRIu64 " (0x%016" PRIx64 ")",
                                 p, j, page[j], g, (uint64_t)(page_base(p, g) + j * WORD_STEP));
                fill_page(page, p, g + 1);
                st->writes++;
        }
        st->ticks++;
}

static uint64_t bigmem_progress(void *ctx)
{
        return ((struct bigmem *)ctx)->ticks;
}

static bool bigmem_check(void *ctx, char *msg, size_t len)
{
        struct bigmem *st = ctx;
        uint64_t bad = 0;
        uint64_t first = 0;
        uint64_t first_word = 0;

        for (uint64_t p = 0; p < st->npages; p++) {
                uint64_t j = check_page(st->mem + p * PAGE_WORDS, p, page_gen(st, p));

                if (j != PAGE_WORDS) {
                        if (!bad) {
                                first = p;
                                first_word = j;
                        }
                        bad++;
                }
        }
        if (bad) {
                snprintf(msg, len,
                         "%" PRIu64 " of %" PRIu64 " pages corrupt (first: page %" PRIu64
                         " word %" PRIu64 ", writes=%" PRIu64 ")",
                         bad, st->npages, first, first_word, st->writes);
                return false;
        }
        snprintf(msg, len, "pages=%" PRIu64 " bytes=%" PRIu64 " writes=%" PRIu64, st->npages,
                 st->npages * PAGE_BYTES, st->writes);
        return true;
}

struct fill_job {
        uint64_t *mem;
        uint64_t first;
        uint64_t count;
};

static void *fill_thread(void *arg)
{
        struct fill_job *job = arg;

        for (uint64_t p = job->first; p < job->first + job->count; p++)
                fill_page(job->mem + p * PAGE_WORDS, p, 0);
        return NULL;
}

/* Generation-0 fill, split over threads that are gone before "ready". */
static int fill_all(struct bigmem *st, unsigned nthreads)
{
        pthread_t tids[64];
        struct fill_job jobs[64];
        uint64_t per = st->npages / nthreads;

        for (unsigned t = 0; t < nthreads; t++) {
                jobs[t].mem = st->mem;
                jobs[t].first = per * t;
                jobs[t].count = t + 1 == nthreads ? st->npages - per * t : per;
        }
        for (unsigned t = 1; t < nthreads; t++)
                if (pthread_create(&tids[t], NULL, fill_thread, &jobs[t]) != 0)
                        return -1;
        fill_thread(&jobs[0]);
        for (unsigned t = 1; t < nthreads; t++)
                pthread_join(tids[t], NULL);
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: bigmem [options]\n"
                "Keeps SIZE bytes resident, filled with a pattern derived from page index and\n"
                "generation; rewrites RATE pages per tick (checking each before rewriting).\n"
                "Progress is the number of ticks.\n"
                "  --size SIZE            resident bytes, suffix K/M/G (default 64M)\n"
                "  --rate N               pages rewritten per tick (default 64; 0 = static)\n"
                "  --fill-threads N       threads for the initial fill (default: online CPUs,\n"
                "                         at most 8; they exit before \"ready\")\n"
                "  --hugepages            madvise(MADV_HUGEPAGE) on the region\n"
                "Ticks default to 10 ms.\n"
                "%s",
                wl_common_help);
}

int main(int argc, char **argv)
{
        struct wl w = {.name = "bigmem", .interval_ms = 10};
        struct bigmem st = {.w = &w, .rate = 64};
        uint64_t size = 64ULL << 20;
        uint64_t threads = 0;
        bool huge = false;
        const char *v;
        uint64_t t0;
        uint64_t fill_ms;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(stdout);
                        return 0;
                }
                r = wl_parse_common(&w, argc, argv, &i);
                if (r < 0)
                        return 2;
                if (r > 0)
                        continue;
                if ((r = wl_opt_value(argc, argv, &i, "--size", &v)) != 0) {
                        if (r < 0 || wl_parse_size(v, &size) || size < PAGE_BYTES) {
                                fprintf(stderr, "bad --size (at least 4K)\n");
                                return 2;
                        }
                        continue;
                }
                if ((r = wl_opt_value(argc, argv, &i, "--rate", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &st.rate)) {
                                fprintf(stderr, "bad --rate\n");
                                return 2;
                        }
                        continue;
                }
                if ((r = wl_opt_value(argc, argv, &i, "--fill-threads", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &threads) || threads == 0 || threads > 64) {
                                fprintf(stderr, "bad --fill-threads (1..64)\n");
                                return 2;
                        }
                        continue;
                }
                if (strcmp(argv[i], "--hugepages") == 0) {
                        huge = true;
                        continue;
                }
                fprintf(stderr, "bigmem: unknown argument '%s'\n", argv[i]);
                usage(stderr);
                return 2;
        }
        if (wl_setup(&w) < 0)
                return 2;
        w.progress = bigmem_progress;
        w.check = bigmem_check;
        w.ctx = &st;

        if (!threads) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);

                threads = n < 1 ? 1 : (n > 8 ? 8 : (uint64_t)n);
        }
        st.npages = size / PAGE_BYTES;
        if (threads > st.npages)
                threads = 1;
        st.mem = mmap(NULL, st.npages * PAGE_BYTES, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (st.mem == MAP_FAILED) {
                perror("mmap");
                return 2;
        }
        if (huge && madvise(st.mem, st.npages * PAGE_BYTES, MADV_HUGEPAGE) < 0)
                perror("madvise(MADV_HUGEPAGE)");
        t0 = wl_now_ns();
        if (fill_all(&st, (unsigned)threads) < 0) {
                perror("pthread_create");
                return 2;
        }
        fill_ms = (wl_now_ns() - t0) / 1000000ULL;

        wl_ready(&w, "pages=%" PRIu64 " bytes=%" PRIu64 " rate=%" PRIu64 " fill_ms=%" PRIu64,
                 st.npages, st.npages * PAGE_BYTES, st.rate, fill_ms);
        for (;;) {
                tick(&st);
                r = wl_service(&w);
                if (r >= 0)
                        return r;
                wl_tick_sleep(&w);
        }
}
