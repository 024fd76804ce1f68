/* SPDX-License-Identifier: Apache-2.0 */
/* Loading libcuda.so.1, probing its version and entry points, cuInit once,
 * CUresult -> kyb_error, GPU UUID strings. Operations are in cuda-ops.c. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "cuda/cuda-internal.h"

typedef struct cuda_sym {
        const char *name;
        size_t offset; /* in kyb_cuda_fns */
        bool required;
} cuda_sym;

#define SYM(n, req)                                                                                \
        {                                                                                          \
#n, offsetof(kyb_cuda_fns, n), req                                                 \
        }

/* Looked up after the version check, so that an old driver is reported by
 * its version rather than by the first symbol it lacks. */
static const cuda_sym checkpoint_syms[] = {
    SYM(cuGetErrorName, false),
    SYM(cuGetErrorString, false),
    SYM(cuCheckpointProcessLock, true),
    SYM(cuCheckpointProcessCheckpoint, true),
    SYM(cuCheckpointProcessRestore, true),
    SYM(cuCheckpointProcessUnlock, true),
    SYM(cuCheckpointProcessGetState, true),
    SYM(cuCheckpointProcessGetRestoreThreadId, false),
};

static const struct {
        int result;
        int errnum;
        const char *name;
        const char *text; /* used only when the driver lacks cuGetErrorString */
} cuda_errors[] = {
    {KYB_CUDA_ERROR_INVALID_VALUE, EINVAL, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {KYB_CUDA_ERROR_OUT_OF_MEMORY, ENOMEM, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {KYB_CUDA_ERROR_NOT_INITIALIZED, EIO, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {KYB_CUDA_ERROR_DEINITIALIZED, EIO, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {KYB_CUDA_ERROR_STUB_LIBRARY, ENODEV, "CUDA_ERROR_STUB_LIBRARY",
     "CUDA driver is a stub library"},
    {KYB_CUDA_ERROR_INSUFFICIENT_DRIVER, ENOTSUP, "CUDA_ERROR_INSUFFICIENT_DRIVER",
     "CUDA driver version is insufficient"},
    {KYB_CUDA_ERROR_DEVICE_UNAVAILABLE, EBUSY, "CUDA_ERROR_DEVICE_UNAVAILABLE",
     "CUDA-capable device(s) is/are busy or unavailable"},
    {KYB_CUDA_ERROR_NO_DEVICE, ENODEV, "CUDA_ERROR_NO_DEVICE",
     "no CUDA-capable device is detected"},
    {KYB_CUDA_ERROR_INVALID_DEVICE, ENODEV, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {KYB_CUDA_ERROR_OPERATING_SYSTEM, EIO, "CUDA_ERROR_OPERATING_SYSTEM",
     "OS call failed or operation not supported on this OS"},
    {KYB_CUDA_ERROR_INVALID_HANDLE, EINVAL, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {KYB_CUDA_ERROR_ILLEGAL_STATE, EBUSY, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {KYB_CUDA_ERROR_NOT_FOUND, ENOENT, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {KYB_CUDA_ERROR_NOT_READY, EBUSY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {KYB_CUDA_ERROR_NOT_PERMITTED, EPERM, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {KYB_CUDA_ERROR_NOT_SUPPORTED, ENOTSUP, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {KYB_CUDA_ERROR_SYSTEM_NOT_READY, ENODEV, "CUDA_ERROR_SYSTEM_NOT_READY",
     "system not yet initialized"},
    {KYB_CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, ENOTSUP, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
     "system has unsupported display driver / cuda driver combination"},
    {KYB_CUDA_ERROR_TIMEOUT, ETIMEDOUT, "CUDA_ERROR_TIMEOUT", "the wait operation has timed out"},
    {KYB_CUDA_ERROR_UNKNOWN, EIO, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static int find_error(int result)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(cuda_errors); i++)
                if (cuda_errors[i].result == result)
                        return (int)i;
        return -1;
}

int kyb_cuda_result_errno(int result)
{
        int i;

        if (result == KYB_CUDA_SUCCESS)
                return 0;
        i = find_error(result);
        return i < 0 ? EIO : cuda_errors[i].errnum;
}

int kyb_cuda_fail(const kyb_cuda *c, int result, const char *op, int pid, kyb_error **err)
{
        const char *name = NULL, *text = NULL;
        char where[64], fallback[32];
        int i = find_error(result);

        /* The driver's own names and texts win: they know codes we do not. */
        if (c->fn.cuGetErrorName && c->fn.cuGetErrorName(result, &name) != KYB_CUDA_SUCCESS)
                name = NULL;
        if (c->fn.cuGetErrorString && c->fn.cuGetErrorString(result, &text) != KYB_CUDA_SUCCESS)
                text = NULL;
        if (!name && i >= 0)
                name = cuda_errors[i].name;
        if (!name) {
                snprintf(fallback, sizeof(fallback), "CUDA error %d", result);
                name = fallback;
        }
        if (!text)
                text = i >= 0 ? cuda_errors[i].text : "unknown error";
        if (pid > 0)
                snprintf(where, sizeof(where), "cuda %s pid %d", op, pid);
        else
                snprintf(where, sizeof(where), "cuda %s", op);
        return kyb_error_setf(err, kyb_cuda_result_errno(result), "%s: %s: %s", where, name, text);
}

/* dlopen's only report is a string; "not there" must read as "no driver"
 * (-ENODEV), anything else (a broken install) quotes the loader. */
static int load_library(const char *name, void **out, kyb_error **err)
{
        const char *msg;

        /* RTLD_NODELETE: after cuInit the driver runs threads of its own
         * inside the library, so its code must stay mapped after close. */
        *out = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (*out)
                return 0;
        msg = dlerror();
        if (!msg || strstr(msg, "No such file or directory"))
                return kyb_error_setf(err, ENODEV, "%s not found: no NVIDIA driver", name);
        return kyb_error_setf(err, ENODEV, "cannot load %s: %s", name, msg);
}

static void *lookup(void *dl, const char *name)
{
        (void)dlerror();
        return dlsym(dl, name);
}

static int bind_base(kyb_cuda *c, kyb_error **err)
{
        void *init = lookup(c->dl, "cuInit");
        void *version = lookup(c->dl, "cuDriverGetVersion");

        if (!init || !version)
                return kyb_error_setf(err, ENOTSUP, "%s lacks %s: not a CUDA driver library",
                                      c->lib_name, init ? "cuDriverGetVersion" : "cuInit");
        /* ISO C has no conversion from void * to a function pointer; POSIX
         * guarantees the representation is the same. */
        memcpy(&c->fn.cuInit, &init, sizeof(init));
        memcpy(&c->fn.cuDriverGetVersion, &version, sizeof(version));
        return 0;
}

static int probe_version(kyb_cuda *c, kyb_error **err)
{
        int r = c->fn.cuDriverGetVersion(&c->version);

        if (r != KYB_CUDA_SUCCESS)
                return kyb_cuda_fail(c, r, "driver version", 0, err);
        if (c->version < KYB_CUDA_MIN_VERSION)
                return kyb_error_setf(err, ENOTSUP,
                                      "CUDA driver %d.%d (%s) is too old: checkpointing needs "
                                      "NVIDIA driver >= 570 (CUDA %d.%d)",
                                      c->version / 1000, c->version % 1000 / 10, c->lib_name,
                                      KYB_CUDA_MIN_VERSION / 1000,
                                      KYB_CUDA_MIN_VERSION % 1000 / 10);
        return 0;
}

static int bind_checkpoint(kyb_cuda *c, kyb_error **err)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(checkpoint_syms); i++) {
                void *p = lookup(c->dl, checkpoint_syms[i].name);

                if (!p && checkpoint_syms[i].required)
                        return kyb_error_setf(err, ENOTSUP,
                                              "CUDA driver %d.%d (%s) lacks %s: checkpointing "
                                              "needs NVIDIA driver >= 570",
                                              c->version / 1000, c->version % 1000 / 10,
                                              c->lib_name, checkpoint_syms[i].name);
                memcpy((char *)&c->fn + checkpoint_syms[i].offset, &p, sizeof(p));
        }
        return 0;
}

int kyb_cuda_open(const char *lib_path, kyb_cuda **out, kyb_error **err)
{
        const char *name = lib_path ? lib_path : KYB_CUDA_LIB_DEFAULT;
        kyb_cuda *c;
        int rc;

        *out = NULL;
        c = calloc(1, sizeof(*c));
        if (!c || !(c->lib_name = strdup(name))) {
                free(c);
                return kyb_error_set(err, ENOMEM, "cuda");
        }
        pthread_mutex_init(&c->init_lock, NULL);
        rc = load_library(name, &c->dl, err);
        if (rc >= 0)
                rc = bind_base(c, err);
        if (rc >= 0)
                rc = probe_version(c, err);
        if (rc >= 0)
                rc = bind_checkpoint(c, err);
        if (rc < 0) {
                kyb_cuda_close(c);
                return rc;
        }
        *out = c;
        return 0;
}

void kyb_cuda_close(kyb_cuda *c)
{
        if (!c)
                return;
        if (c->dl)
                dlclose(c->dl);
        pthread_mutex_destroy(&c->init_lock);
        free(c->lib_name);
        free(c);
}

int kyb_cuda_version(const kyb_cuda *c)
{
        return c->version;
}

bool kyb_cuda_can_remap(const kyb_cuda *c)
{
        return c->version >= KYB_CUDA_REMAP_VERSION;
}

bool kyb_cuda_has_restore_thread_id(const kyb_cuda *c)
{
        return c->fn.cuCheckpointProcessGetRestoreThreadId != NULL;
}

int kyb_cuda_init(kyb_cuda *c, kyb_error **err)
{
        int r;

        pthread_mutex_lock(&c->init_lock);
        if (!c->init_done) {
                c->init_result = c->fn.cuInit(0);
                c->init_done = true;
        }
        r = c->init_result;
        pthread_mutex_unlock(&c->init_lock);
        return r == KYB_CUDA_SUCCESS ? 0 : kyb_cuda_fail(c, r, "init", 0, err);
}

static int hex_digit(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

int kyb_cuda_uuid_parse(const char *s, kyb_cuda_uuid *out, kyb_error **err)
{
        static const size_t dashes[] = {8, 13, 18, 23}; /* offsets after "GPU-" */
        const char *p;
        size_t n = 0, d = 0;

        if (!s || strncmp(s, "GPU-", 4) != 0 || strlen(s) != KYB_CUDA_UUID_STRLEN - 1)
                goto bad;
        for (p = s + 4; *p; p++) {
                int hi, lo;

                if (d < KYB_ARRAY_SIZE(dashes) && (size_t)(p - s - 4) == dashes[d]) {
                        if (*p != '-')
                                goto bad;
                        d++;
                        continue;
                }
                hi = hex_digit(p[0]);
                lo = hex_digit(p[1]);
                if (hi < 0 || lo < 0 || n >= sizeof(out->bytes))
                        goto bad;
                out->bytes[n++] = (unsigned char)(hi << 4 | lo);
                p++;
        }
        if (n == sizeof(out->bytes))
                return 0;
bad:
        return kyb_error_setf(err, EINVAL,
                              "'%s' is not a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                              s ? s : "(null)");
}

void kyb_cuda_uuid_format(const kyb_cuda_uuid *u, char out[KYB_CUDA_UUID_STRLEN])
{
        const unsigned char *b = u->bytes;

        snprintf(out, KYB_CUDA_UUID_STRLEN,
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                 b[14], b[15]);
}
