// SPDX-License-Identifier: Apache-2.0
// Host<->device copy bandwidth with pinned host memory: the baseline of
// bench/gpu.py. Usage: gpu_bandwidth BYTES [REPEAT]
// Prints {"bytes": N, "h2d_gbps": X, "d2h_gbps": Y} (medians; GB = 1e9 bytes).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

static void check(cudaError_t e, const char *what)
{
        if (e != cudaSuccess) {
                fprintf(stderr, "gpu_bandwidth: %s: %s\n", what, cudaGetErrorString(e));
                exit(1);
        }
}

static double median(std::vector<double> v)
{
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
}

static double copy_gbps(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
        cudaEvent_t a, b;
        float ms = 0;

        check(cudaEventCreate(&a), "event");
        check(cudaEventCreate(&b), "event");
        check(cudaEventRecord(a), "record");
        check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
        check(cudaEventRecord(b), "record");
        check(cudaEventSynchronize(b), "sync");
        check(cudaEventElapsedTime(&ms, a, b), "elapsed");
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        return (double)bytes / (ms / 1e3) / 1e9;
}

int main(int argc, char **argv)
{
        size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : (1ULL << 30);
        int repeat = argc > 2 ? atoi(argv[2]) : 5;
        std::vector<double> h2d, d2h;
        void *host, *dev;

        check(cudaMallocHost(&host, bytes), "cudaMallocHost");
        check(cudaMalloc(&dev, bytes), "cudaMalloc");
        for (int i = 0; i < repeat; i++) {
                h2d.push_back(copy_gbps(dev, host, bytes, cudaMemcpyHostToDevice));
                d2h.push_back(copy_gbps(host, dev, bytes, cudaMemcpyDeviceToHost));
        }
        printf("{\"bytes\": %zu, \"h2d_gbps\": %.3f, \"d2h_gbps\": %.3f}\n", bytes, median(h2d),
               median(d2h));
        cudaFree(dev);
        cudaFreeHost(host);
        return 0;
}
