/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to src/lib/store: remembering that a checkpoint's files were
 * hashed and matched their manifest, so that a restore right after does not
 * read every GiB again.
 *
 * A seal records, per file, the inode, size and change time (ctime) seen
 * when the store itself hashed the file (at commit, or at a full verify).
 * Any write, truncation, chmod or replacement of a file moves its ctime or
 * inode, which user space cannot set back, so an unchanged identity means
 * unchanged content and verify may skip the hashing. Seals live in memory
 * only: after a restart the first verify of each checkpoint hashes
 * everything again. A modification within the same clock tick as the seal
 * itself could go unseen; the store seals right after its own writes, before
 * anybody else can know the directory.
 */
#pragma once

#include "store/store-internal.h"

/* Records the current identity of every manifest file of <root>/<id>. */
void store_seal(kyb_store *s, const char *id, const kyb_manifest *m, const char *manifest_sha);

/* True when a seal of id with this manifest exists and every file still
 * has the sealed identity. */
bool store_seal_intact(kyb_store *s, const char *id, const kyb_manifest *m,
                       const char *manifest_sha);

void store_unseal(kyb_store *s, const char *id);
void store_seals_free(kyb_store *s);
