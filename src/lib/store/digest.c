/* SPDX-License-Identifier: Apache-2.0 */
#include <openssl/evp.h>

#include "store/digest.h"

/* The opaque type is OpenSSL's context; the cast keeps OpenSSL out of our headers. */
static EVP_MD_CTX *ctx_of(kyb_sha256 *h)
{
        return (EVP_MD_CTX *)h;
}

int kyb_sha256_new(kyb_sha256 **out, kyb_error **err)
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        *out = NULL;
        if (!ctx)
                return kyb_error_set(err, ENOMEM, "sha256");
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return kyb_error_setf(err, EIO, "sha256: initialising the digest failed");
        }
        *out = (kyb_sha256 *)ctx;
        return 0;
}

int kyb_sha256_update(kyb_sha256 *h, const void *data, size_t len, kyb_error **err)
{
        if (EVP_DigestUpdate(ctx_of(h), data, len) != 1)
                return kyb_error_setf(err, EIO, "sha256: update failed");
        return 0;
}

int kyb_sha256_final(kyb_sha256 *h, char hex[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        static const char digits[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;

        if (EVP_DigestFinal_ex(ctx_of(h), md, &n) != 1 || n * 2 != KYB_SHA256_HEX_LEN)
                return kyb_error_setf(err, EIO, "sha256: finalising the digest failed");
        for (unsigned int i = 0; i < n; i++) {
                hex[2 * i] = digits[md[i] >> 4];
                hex[2 * i + 1] = digits[md[i] & 0xf];
        }
        hex[KYB_SHA256_HEX_LEN] = '\0';
        return 0;
}

void kyb_sha256_free(kyb_sha256 *h)
{
        EVP_MD_CTX_free(ctx_of(h));
}

int kyb_sha256_buf(const void *data, size_t len, char hex[KYB_SHA256_HEX_LEN + 1], kyb_error **err)
{
        _cleanup_sha256_ kyb_sha256 *h = NULL;
        int rc;

        rc = kyb_sha256_new(&h, err);
        if (rc < 0)
                return rc;
        rc = kyb_sha256_update(h, data, len, err);
        if (rc < 0)
                return rc;
        return kyb_sha256_final(h, hex, err);
}
