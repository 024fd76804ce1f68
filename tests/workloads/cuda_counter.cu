// SPDX-License-Identifier: Apache-2.0
//
// cuda_counter: the `counter` workload with its state in GPU memory. A
// device buffer of N 64-bit slots holds a pattern derived from a counter;
// every step a kernel rewrites one block of slots for the next counter value
// and checks, on the device, that the block it overwrites still holds the
// previous value. "verify" copies the whole buffer back and checks every
// slot against the counter. After a checkpoint/restore of the CUDA state
// (cuCheckpointProcess*) and of the process (CRIU), the buffer must hold the
// same values and the counter must continue.
//
// Built on a GPU host by scripts/gpu/run-real-gpu-tests.sh:
//   nvcc -O2 -o cuda_counter cuda_counter.cu wl_common.c
// Protocol (status/ctl files, mark, verify): docs/workloads.md.
extern "C" {
#include "wl_common.h"
}

#include <cuda_runtime.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr unsigned kThreads = 256;

struct cuda_counter {
        struct wl *w;
        uint64_t counter;  // steps done
        uint64_t nslots;   // slots in the device buffer
        uint64_t block;    // slots rewritten per step
        uint64_t *dev;     // device buffer
        uint32_t *dev_bad; // device-side mismatch counter
};

__host__ __device__ uint64_t mix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

// Value of slot i after `gen` full generations of rewriting it.
__host__ __device__ uint64_t slot_value(uint64_t i, uint64_t gen)
{
        return mix64((i << 20) ^ gen ^ 0x6375646163ULL);
}

__global__ void fill(uint64_t *buf, uint64_t n)
{
        uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;

        if (i < n)
                buf[i] = slot_value(i, 0);
}

// Step c rewrites slots [start, start + len) from generation gen to gen + 1.
__global__ void step_kernel(uint64_t *buf, uint64_t start, uint64_t len, uint64_t gen,
                            uint32_t *bad)
{
        uint64_t k = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;

        if (k >= len)
                return;
        uint64_t i = start + k;
        if (buf[i] != slot_value(i, gen))
                atomicAdd(bad, 1u);
        buf[i] = slot_value(i, gen + 1);
}

uint64_t blocks_per_pass(const cuda_counter *st)
{
        return st->nslots / st->block;
}

// Generation of slot i after `done` steps.
uint64_t generation(const cuda_counter *st, uint64_t i, uint64_t done)
{
        uint64_t per_pass = blocks_per_pass(st);
        uint64_t b = i / st->block;

        return done / per_pass + (b < done % per_pass ? 1 : 0);
}

bool cuda_ok(struct wl *w, cudaError_t e, const char *what)
{
        if (e == cudaSuccess)
                return true;
        wl_error(w, "%s: %s", what, cudaGetErrorString(e));
        return false;
}

void step(cuda_counter *st)
{
        uint64_t per_pass = blocks_per_pass(st);
        uint64_t b = st->counter % per_pass;
        uint64_t gen = st->counter / per_pass;
        unsigned grid = (unsigned)((st->block + kThreads - 1) / kThreads);

        step_kernel<<<grid, kThreads>>>(st->dev, b * st->block, st->block, gen, st->dev_bad);
        if (cuda_ok(st->w, cudaDeviceSynchronize(), "step"))
                st->counter++;
}

uint64_t progress(void *ctx)
{
        return static_cast<cuda_counter *>(ctx)->counter;
}

bool check(void *ctx, char *msg, size_t len)
{
        auto *st = static_cast<cuda_counter *>(ctx);
        size_t bytes = st->nslots * sizeof(uint64_t);
        auto *host = static_cast<uint64_t *>(malloc(bytes));
        uint32_t dev_bad = 0;
        uint64_t bad = 0, first = 0, sum = 0;

        if (!host || !cuda_ok(st->w, cudaMemcpy(host, st->dev, bytes, cudaMemcpyDeviceToHost),
                              "copy buffer") ||
            !cuda_ok(st->w, cudaMemcpy(&dev_bad, st->dev_bad, 4, cudaMemcpyDeviceToHost),
                     "copy mismatch counter")) {
                snprintf(msg, len, "cannot read the device buffer");
                free(host);
                return false;
        }
        for (uint64_t i = 0; i < st->nslots; i++) {
                if (host[i] != slot_value(i, generation(st, i, st->counter)) && !bad++)
                        first = i;
                sum = mix64(sum ^ host[i]);
        }
        free(host);
        if (bad || dev_bad) {
                snprintf(msg, len,
                         "%" PRIu64 " of %" PRIu64 " device slots differ from counter %" PRIu64
                         " (first: slot %" PRIu64 "); %u mismatches seen by the kernel",
                         bad, st->nslots, st->counter, first, dev_bad);
                return false;
        }
        snprintf(msg, len, "counter=%" PRIu64 " slots=%" PRIu64 " checksum=%016" PRIx64,
                 st->counter, st->nslots, sum);
        return true;
}

int parse(int argc, char **argv, struct wl *w, cuda_counter *st)
{
        const char *v;
        int r;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help")) {
                        printf("usage: cuda_counter [--size BYTES] [--block SLOTS] [options]\n"
                               "Device buffer (default 256M) rewritten block by block.\n%s",
                               wl_common_help);
                        exit(0);
                }
                if ((r = wl_parse_common(w, argc, argv, &i)) != 0) {
                        if (r < 0)
                                return -1;
                        continue;
                }
                if ((r = wl_opt_value(argc, argv, &i, "--size", &v)) != 0) {
                        uint64_t bytes;
                        if (r < 0 || wl_parse_size(v, &bytes) || bytes < 8 * kThreads)
                                return -1;
                        st->nslots = bytes / sizeof(uint64_t);
                        continue;
                }
                if ((r = wl_opt_value(argc, argv, &i, "--block", &v)) != 0) {
                        if (r < 0 || wl_parse_u64(v, &st->block) || st->block == 0)
                                return -1;
                        continue;
                }
                fprintf(stderr, "cuda_counter: unknown argument '%s'\n", argv[i]);
                return -1;
        }
        st->nslots -= st->nslots % st->block;
        return st->nslots ? 0 : -1;
}

} // namespace

int main(int argc, char **argv)
{
        struct wl w = {};
        cuda_counter st = {};
        int r;

        w.name = "cuda_counter";
        w.interval_ms = 1;
        st.w = &w;
        st.nslots = (256ULL << 20) / sizeof(uint64_t);
        st.block = 1 << 16;
        if (parse(argc, argv, &w, &st) < 0 || wl_setup(&w) < 0)
                return 2;
        w.progress = progress;
        w.check = check;
        w.ctx = &st;
        if (!cuda_ok(&w, cudaMalloc(&st.dev, st.nslots * sizeof(uint64_t)), "cudaMalloc") ||
            !cuda_ok(&w, cudaMalloc(&st.dev_bad, 4), "cudaMalloc") ||
            !cuda_ok(&w, cudaMemset(st.dev_bad, 0, 4), "cudaMemset"))
                return 2;
        fill<<<(unsigned)((st.nslots + kThreads - 1) / kThreads), kThreads>>>(st.dev, st.nslots);
        if (!cuda_ok(&w, cudaDeviceSynchronize(), "fill"))
                return 2;
        wl_ready(&w, "slots=%" PRIu64 " bytes=%" PRIu64, st.nslots, st.nslots * 8);
        for (;;) {
                step(&st);
                r = wl_service(&w);
                if (r >= 0)
                        return r;
                wl_tick_sleep(&w);
        }
}
