/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Archive + transfer of a whole checkpoint directory. Its own file so that
 * programs using only objects (the operator's retention and restores) do not
 * link libarchive and what it pulls in (libxml2, ICU, ...): ~15 shared
 * libraries fewer mapped into the operator.
 */
#include "storage/storage-internal.h"

int kyb_storage_upload_checkpoint(kyb_storage *s, const char *key, const char *checkpoint_dir,
                                  const kyb_archive_write_opts *aopts, kyb_archive_stats *stats,
                                  kyb_storage_object *info, kyb_error **err)
{
        kyb_storage_writer *w = NULL;
        int rc;

        if (info)
                *info = (kyb_storage_object){0};
        rc = kyb_storage_writer_open(s, key, &w, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "upload %s", key ? key : "");
        rc = kyb_archive_write(checkpoint_dir, kyb_storage_writer_sink, w, aopts, stats, err);
        if (rc < 0) {
                kyb_storage_writer_abort_after(w, err);
                return kyb_error_wrap(err, rc, "upload %s", key);
        }
        rc = kyb_storage_writer_commit(w, info, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "upload %s", key);
        return 0;
}

int kyb_storage_download_checkpoint(kyb_storage *s, const char *key, const char *dest_dir,
                                    const kyb_archive_limits *limits, kyb_error **err)
{
        kyb_storage_reader *r = NULL;
        int rc;

        rc = kyb_storage_reader_open(s, key, &r, err);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "download %s", key ? key : "");
        rc = kyb_archive_extract(kyb_storage_reader_source, r, dest_dir, limits, err);
        kyb_storage_reader_close(r);
        if (rc < 0)
                return kyb_error_wrap(err, rc, "download %s", key);
        return 0;
}
