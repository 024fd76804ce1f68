/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "base/macro.h"
#include "rpc/status.h"

static const struct {
        grpc_status_code status;
        const char *name;
        int errnum; /* canonical errno for the reverse direction */
} status_table[] = {
    {GRPC_STATUS_OK, "OK", 0},
    {GRPC_STATUS_CANCELLED, "CANCELLED", ECANCELED},
    {GRPC_STATUS_UNKNOWN, "UNKNOWN", EPROTO},
    {GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", EINVAL},
    {GRPC_STATUS_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", ETIMEDOUT},
    {GRPC_STATUS_NOT_FOUND, "NOT_FOUND", ENOENT},
    {GRPC_STATUS_ALREADY_EXISTS, "ALREADY_EXISTS", EEXIST},
    {GRPC_STATUS_PERMISSION_DENIED, "PERMISSION_DENIED", EACCES},
    {GRPC_STATUS_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", ENOSPC},
    {GRPC_STATUS_FAILED_PRECONDITION, "FAILED_PRECONDITION", EBUSY},
    {GRPC_STATUS_ABORTED, "ABORTED", ECONNABORTED},
    {GRPC_STATUS_OUT_OF_RANGE, "OUT_OF_RANGE", ERANGE},
    {GRPC_STATUS_UNIMPLEMENTED, "UNIMPLEMENTED", ENOSYS},
    {GRPC_STATUS_INTERNAL, "INTERNAL", EIO},
    {GRPC_STATUS_UNAVAILABLE, "UNAVAILABLE", ENOTCONN},
    {GRPC_STATUS_DATA_LOSS, "DATA_LOSS", EBADMSG},
    {GRPC_STATUS_UNAUTHENTICATED, "UNAUTHENTICATED", EKEYREJECTED},
};

/* errno values that share a status with a canonical one above. */
static const struct {
        int errnum;
        grpc_status_code status;
} errno_aliases[] = {
    {ESRCH, GRPC_STATUS_NOT_FOUND},
    {ENOTDIR, GRPC_STATUS_NOT_FOUND},
    {EPERM, GRPC_STATUS_PERMISSION_DENIED},
    {EROFS, GRPC_STATUS_PERMISSION_DENIED},
    {EDQUOT, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {EAGAIN, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {EMFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {EALREADY, GRPC_STATUS_FAILED_PRECONDITION},
    {EINPROGRESS, GRPC_STATUS_FAILED_PRECONDITION},
    {ENOTEMPTY, GRPC_STATUS_FAILED_PRECONDITION},
    {ENOTSUP, GRPC_STATUS_UNIMPLEMENTED},
    {ENODEV, GRPC_STATUS_FAILED_PRECONDITION},
    {ECONNREFUSED, GRPC_STATUS_UNAVAILABLE},
    {ECONNRESET, GRPC_STATUS_UNAVAILABLE},
    {EPIPE, GRPC_STATUS_UNAVAILABLE},
    {EHOSTUNREACH, GRPC_STATUS_UNAVAILABLE},
    {EOVERFLOW, GRPC_STATUS_OUT_OF_RANGE},
    {E2BIG, GRPC_STATUS_INVALID_ARGUMENT},
    {ENAMETOOLONG, GRPC_STATUS_INVALID_ARGUMENT},
    {EILSEQ, GRPC_STATUS_DATA_LOSS},
};

grpc_status_code kyb_rpc_status_from_errno(int errnum)
{
        if (errnum < 0)
                errnum = -errnum;
        if (errnum == 0)
                return GRPC_STATUS_OK;
        for (size_t i = 0; i < KYB_ARRAY_SIZE(status_table); i++)
                if (status_table[i].errnum == errnum)
                        return status_table[i].status;
        for (size_t i = 0; i < KYB_ARRAY_SIZE(errno_aliases); i++)
                if (errno_aliases[i].errnum == errnum)
                        return errno_aliases[i].status;
        return GRPC_STATUS_INTERNAL;
}

int kyb_rpc_errno_from_status(grpc_status_code status)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(status_table); i++)
                if (status_table[i].status == status)
                        return status_table[i].errnum;
        return EPROTO;
}

const char *kyb_rpc_status_name(grpc_status_code status)
{
        for (size_t i = 0; i < KYB_ARRAY_SIZE(status_table); i++)
                if (status_table[i].status == status)
                        return status_table[i].name;
        return "UNKNOWN";
}
