/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary bytes as manifest.json. The parser must refuse
 * malformed input with an error and never crash; what it accepts must
 * serialise and parse again to the same manifest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        kyb_manifest *m = NULL, *again = NULL;
        char *json = NULL, *json2 = NULL;
        size_t len = 0, len2 = 0;

        if (kyb_manifest_from_json((const char *)data, size, &m, NULL) < 0)
                return 0;
        if (kyb_manifest_to_json(m, &json, &len, NULL) < 0 ||
            kyb_manifest_from_json(json, len, &again, NULL) < 0 ||
            kyb_manifest_to_json(again, &json2, &len2, NULL) < 0 || len != len2 ||
            memcmp(json, json2, len))
                abort(); /* accepted once, it must round-trip */
        free(json);
        free(json2);
        kyb_manifest_free(m);
        kyb_manifest_free(again);
        return 0;
}
