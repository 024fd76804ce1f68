/* SPDX-License-Identifier: Apache-2.0 */
/*
 * counter: a counter and a memory region whose contents are a deterministic
 * function of the counter.
 *
 * The region has S 64-bit slots. Step c (c = 0, 1, 2, ...) writes H(c) into
 * slot c mod S, so after step `counter - 1` slot i holds H(c_i), c_i being
 * the largest c < counter with c = i (mod S), or H(i - S) (the initial fill)
 * when there is none. Before overwriting a slot each step checks that it
 * still holds its expected value, so a corruption is caught even if the slot
 * is rewritten before the next verify. Progress = counter.
 */
#include "wl_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct counter {
        struct wl *w;
        uint64_t counter; /* number of steps done */
        uint64_t nslots;
        uint64_t *region;
        uint64_t steps_per_tick;
};

static uint64_t slot_value(int64_t c)
{
        return wl_mix64((uint64_t)c ^ 0x636f756e746572ULL);
}

/* value slot i must hold after `done` steps */
static uint64_t expected_slot(const struct counter *st, uint64_t i, uint64_t done)
{
        int64_t last;

        if (done == 0 || i > done - 1)
                return slot_value((int64_t)i - (int64_t)st->nslots);
        last = (int64_t)(done - 1 - ((done - 1 - i) % st->nslots));
        return slot_value(last);
}

static void step(struct counter *st)
{
        uint64_t c = st->counter;
        uint64_t i = c % st->nslots;
        uint64_t want = slot_value((int64_t)c - (int64_t)st->nslots);

        if (st->region[i] != want)
                wl_error(st->w,
                         "slot %" PRIu64 " holds 0x%016" PRIx64 ", expected 0x%016" PRIx64
                         " before step %" PRIu64,
                         i, st->region[i], want, c);
        st->region[i] = slot_value((int64_t)c);
        st->counter = c + 1;
}

static uint64_t counter_progress(void *ctx)
{
        return ((struct counter *)ctx)->counter;
}

static bool counter_check(void *ctx, char *msg, size_t len)
{
        struct counter *st = ctx;
        uint64_t sum = 0;
        uint64_t bad = 0;
        uint64_t first = 0;

        for (uint64_t i = 0; i < st->nslots; i++) {
                uint64_t want = expected_slot(st, i, st->counter);

                if (st->region[i] != want) {
                        if (!bad)
                                first = i;
                        bad++;
                }
                sum = wl_mix64(sum ^ st->region[i]);
        }
        if (bad) {
                snprintf(msg, len,
                         "%" PRIu64 " of %" PRIu64 " slots differ from counter %" PRIu64
                         " (first: slot %" PRIu64 ")",
                         bad, st->nslots, st->counter, first);
                return false;
        }
        snprintf(msg, len, "counter=%" PRIu64 " slots=%" PRIu64 " checksum=%016" PRIx64,
                 st->counter, st->nslots, sum);
        return true;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: counter [options]\n"
                "Counts one step per tick; each step rewrites one slot of a memory region\n"
                "whose contents are a deterministic function of the counter. Progress is\n"
                "the counter.\n"
                "  --slots N              64-bit slots in the region (default 65536 = 512 KiB)\n"
                "  --steps N              steps per tick (default 1; tick default 1 ms)\n"
                "%s",
                wl_common_help);
}

int main(int argc, char **argv)
{
        struct wl w = {.name = "counter", .interval_ms = 1};
        struct counter st = {.w = &w, .nslots = 65536, .steps_per_tick = 1};
        const char *v;
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
                if ((r = wl_opt_value(argc, argv, &i, "--slots", &v)) != 0) {
                        if (r < 0 || wl_parse_size(v, &st.nslots) || st.nslots == 0 ||
                            st.nslots > (1ULL << 32)) {
                                fprintf(stderr, "bad --slots\n");
                                return 2;
                        }
                        continue;
                }
                if ((r = wl_opt_value(argc, argv, &i, "--steps", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &st.steps_per_tick) ||
                            st.steps_per_tick == 0) {
                                fprintf(stderr, "bad --steps\n");
                                return 2;
                        }
                        continue;
                }
                fprintf(stderr, "counter: unknown argument '%s'\n", argv[i]);
                usage(stderr);
                return 2;
        }
        if (wl_setup(&w) < 0)
                return 2;
        w.progress = counter_progress;
        w.check = counter_check;
        w.ctx = &st;

        st.region = mmap(NULL, st.nslots * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (st.region == MAP_FAILED) {
                perror("mmap");
                return 2;
        }
        for (uint64_t i = 0; i < st.nslots; i++)
                st.region[i] = slot_value((int64_t)i - (int64_t)st.nslots);

        wl_ready(&w, "slots=%" PRIu64, st.nslots);
        for (;;) {
                for (uint64_t k = 0; k < st.steps_per_tick; k++)
                        step(&st);
                r = wl_service(&w);
                if (r >= 0)
                        return r;
                wl_tick_sleep(&w);
        }
}
