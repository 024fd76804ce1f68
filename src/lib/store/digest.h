/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 through OpenSSL's EVP interface, as lowercase hex. Each context
 * belongs to one thread at a time; distinct contexts may run concurrently.
 */
#pragma once

#include <stddef.h>

#include "base/error.h"
#include "store/manifest.h"

typedef struct kyb_sha256 kyb_sha256;

int kyb_sha256_new(kyb_sha256 **out, kyb_error **err);
int kyb_sha256_update(kyb_sha256 *h, const void *data, size_t len, kyb_error **err);
/* Writes the digest as hex; the context must not be updated afterwards. */
int kyb_sha256_final(kyb_sha256 *h, char hex[KYB_SHA256_HEX_LEN + 1], kyb_error **err);
void kyb_sha256_free(kyb_sha256 *h);

static inline void kyb_sha256_freep(kyb_sha256 **h)
{
        kyb_sha256_free(*h);
        *h = NULL;
}

#define _cleanup_sha256_ _cleanup_(kyb_sha256_freep)

/* One-shot hash of a buffer. */
int kyb_sha256_buf(const void *data, size_t len, char hex[KYB_SHA256_HEX_LEN + 1], kyb_error **err);
