/* SPDX-License-Identifier: Apache-2.0 */
/*
 * src/lib/storage behind a command line, for tests/integration/test_storage_s3.py:
 *
 *   storage_driver [options] upload DIR URI      archive a checkpoint directory to an object
 *   storage_driver [options] download URI DEST   fetch, verify and extract it
 *   storage_driver [options] list URI            objects below a location, one JSON line each
 *   storage_driver [options] stat URI
 *   storage_driver [options] delete URI
 *
 * Object URIs are a location plus a key: s3://bucket/prefix/ckpt.tar.zst,
 * file:///dir/ckpt.tar.zst. S3 endpoint and region default to
 * AWS_ENDPOINT_URL and AWS_REGION / AWS_DEFAULT_REGION; credentials come
 * from the AWS_* variables or --credentials-dir.
 *
 * --pause-after BYTES makes an upload stop once the archive has produced that
 * many bytes, print "paused" and wait for a line on stdin (so a test can
 * break the server mid-upload); --progress prints "stored N" after every
 * stored part. --payload and --content-md5 set kyb_storage_opts' payload and
 * content_md5, --job-size the zstd job size. Exit status: 0 success, 1
 * failure (message on stderr), 2 usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

typedef struct driver {
        kyb_storage_opts opts;
        kyb_archive_write_opts aopts;
        kyb_archive_limits limits;
        uint64_t pause_after;
        bool progress;
} driver;

typedef struct pausing_sink {
        kyb_storage_writer *w;
        uint64_t sent;
        uint64_t pause_after;
        bool paused;
} pausing_sink;

_Noreturn static void usage(void)
{
        fprintf(stderr,
                "usage: storage_driver [--part-size N] [--inflight N] [--attempts N]\n"
                "         [--retry-base-ms N] [--retry-max-ms N] [--level N] [--threads N]\n"
                "         [--job-size N] [--payload signed|unsigned] [--content-md5]\n"
                "         [--endpoint URL] [--region R] [--path-style] [--credentials-dir D]\n"
                "         [--max-total N] [--max-file N] [--max-entries N]\n"
                "         [--pause-after N] [--progress]\n"
                "       upload DIR URI | download URI DEST | list URI | stat URI | delete URI\n");
        exit(2);
}

static uint64_t number(const char *s)
{
        char *end = NULL;
        unsigned long long v = strtoull(s, &end, 10);

        if (!*s || *end)
                usage();
        return v;
}

static kyb_s3_payload payload_mode(const char *s)
{
        if (!strcmp(s, "signed"))
                return KYB_S3_PAYLOAD_SIGNED;
        if (!strcmp(s, "unsigned"))
                return KYB_S3_PAYLOAD_UNSIGNED;
        usage();
}

static void on_progress(void *ctx, uint64_t bytes)
{
        printf("stored %" PRIu64 "\n", bytes);
        fflush(stdout);
}

static int fail(kyb_error *err)
{
        fprintf(stderr, "storage_driver: %s\n", kyb_error_message(err));
        kyb_error_free(err);
        return 1;
}

static int open_object(const driver *d, const char *uri, kyb_storage **s, char **key,
                       kyb_error **err)
{
        _cleanup_free_ char *location = NULL;
        int rc;

        rc = kyb_storage_uri_split(uri, &location, key, err);
        if (rc < 0)
                return rc;
        return kyb_storage_open(location, &d->opts, s, err);
}

static void print_object(const kyb_storage_object *o)
{
        printf("{\"key\": \"%s\", \"size\": %" PRIu64 ", \"etag\": \"%s\"}\n", o->key, o->size,
               o->etag ? o->etag : "");
}

/* Stops once, mid-stream, until the test says go on. */
static int pausing_write(void *ctx, const void *buf, size_t len, kyb_error **err)
{
        pausing_sink *p = ctx;
        char line[16];

        if (!p->paused && p->sent + len > p->pause_after) {
                p->paused = true;
                printf("paused\n");
                fflush(stdout);
                if (!fgets(line, sizeof(line), stdin))
                        return kyb_error_setf(err, ECANCELED, "stdin closed while paused");
        }
        p->sent += len;
        return kyb_storage_writer_write(p->w, buf, len, err);
}

static int upload_pausing(const driver *d, kyb_storage *s, const char *key, const char *dir,
                          kyb_storage_object *o, kyb_error **err)
{
        pausing_sink p = {.pause_after = d->pause_after};
        int rc;

        rc = kyb_storage_writer_open(s, key, &p.w, err);
        if (rc < 0)
                return rc;
        rc = kyb_archive_write(dir, pausing_write, &p, &d->aopts, NULL, err);
        if (rc < 0) {
                kyb_storage_writer_abort_after(p.w, err);
                return rc;
        }
        return kyb_storage_writer_commit(p.w, o, err);
}

static int cmd_upload(const driver *d, const char *dir, const char *uri)
{
        kyb_error *err = NULL;
        _cleanup_free_ char *key = NULL;
        kyb_storage *s = NULL;
        kyb_storage_object o = {0};
        kyb_archive_stats st = {0};
        int rc;

        rc = open_object(d, uri, &s, &key, &err);
        if (rc >= 0 && d->pause_after)
                rc = upload_pausing(d, s, key, dir, &o, &err);
        else if (rc >= 0)
                rc = kyb_storage_upload_checkpoint(s, key, dir, &d->aopts, &st, &o, &err);
        kyb_storage_close(s);
        if (rc < 0)
                return fail(err);
        printf("{\"key\": \"%s\", \"size\": %" PRIu64 ", \"files\": %" PRIu64
               ", \"file_bytes\": %" PRIu64 "}\n",
               o.key, o.size, st.files, st.file_bytes);
        kyb_storage_object_clear(&o);
        return 0;
}

static int cmd_download(const driver *d, const char *uri, const char *dest)
{
        kyb_error *err = NULL;
        _cleanup_free_ char *key = NULL;
        kyb_storage *s = NULL;
        int rc;

        rc = open_object(d, uri, &s, &key, &err);
        if (rc >= 0)
                rc = kyb_storage_download_checkpoint(s, key, dest, &d->limits, &err);
        kyb_storage_close(s);
        return rc < 0 ? fail(err) : 0;
}

static int cmd_list(const driver *d, const char *uri)
{
        kyb_error *err = NULL;
        kyb_storage *s = NULL;
        kyb_storage_object *v = NULL;
        size_t n = 0;
        int rc;

        rc = kyb_storage_open(uri, &d->opts, &s, &err);
        if (rc >= 0)
                rc = kyb_storage_list(s, NULL, &v, &n, &err);
        kyb_storage_close(s);
        if (rc < 0)
                return fail(err);
        for (size_t i = 0; i < n; i++)
                print_object(&v[i]);
        kyb_storage_objects_free(v, n);
        return 0;
}

static int cmd_stat_or_delete(const driver *d, const char *uri, bool del)
{
        kyb_error *err = NULL;
        _cleanup_free_ char *key = NULL;
        kyb_storage *s = NULL;
        kyb_storage_object o = {0};
        int rc;

        rc = open_object(d, uri, &s, &key, &err);
        if (rc >= 0)
                rc = del ? kyb_storage_delete(s, key, &err) : kyb_storage_stat(s, key, &o, &err);
        kyb_storage_close(s);
        if (rc < 0)
                return fail(err);
        if (!del)
                print_object(&o);
        kyb_storage_object_clear(&o);
        return 0;
}

static void parse_options(int argc, char **argv, driver *d)
{
        static const struct option longopts[] = {{"part-size", required_argument, NULL, 'p'},
                                                 {"inflight", required_argument, NULL, 'i'},
                                                 {"attempts", required_argument, NULL, 'a'},
                                                 {"retry-base-ms", required_argument, NULL, 'b'},
                                                 {"retry-max-ms", required_argument, NULL, 'm'},
                                                 {"level", required_argument, NULL, 'l'},
                                                 {"threads", required_argument, NULL, 't'},
                                                 {"endpoint", required_argument, NULL, 'e'},
                                                 {"region", required_argument, NULL, 'r'},
                                                 {"path-style", no_argument, NULL, 's'},
                                                 {"credentials-dir", required_argument, NULL, 'c'},
                                                 {"max-total", required_argument, NULL, 'T'},
                                                 {"max-file", required_argument, NULL, 'F'},
                                                 {"max-entries", required_argument, NULL, 'E'},
                                                 {"pause-after", required_argument, NULL, 'P'},
                                                 {"progress", no_argument, NULL, 'g'},
                                                 {"job-size", required_argument, NULL, 'j'},
                                                 {"payload", required_argument, NULL, 'y'},
                                                 {"content-md5", no_argument, NULL, 'M'},
                                                 {0}};
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'p':
                        d->opts.part_size = (size_t)number(optarg);
                        break;
                case 'i':
                        d->opts.max_parts_in_flight = (unsigned)number(optarg);
                        break;
                case 'a':
                        d->opts.max_attempts = (unsigned)number(optarg);
                        break;
                case 'b':
                        d->opts.retry_base_ms = (unsigned)number(optarg);
                        break;
                case 'm':
                        d->opts.retry_max_ms = (unsigned)number(optarg);
                        break;
                case 'l':
                        d->aopts.level = atoi(optarg);
                        break;
                case 't':
                        d->aopts.threads = (unsigned)number(optarg);
                        break;
                case 'e':
                        d->opts.endpoint = optarg;
                        break;
                case 'r':
                        d->opts.region = optarg;
                        break;
                case 's':
                        d->opts.addressing = KYB_S3_ADDRESSING_PATH;
                        break;
                case 'c':
                        d->opts.credentials_dir = optarg;
                        break;
                case 'T':
                        d->limits.max_total_bytes = number(optarg);
                        break;
                case 'F':
                        d->limits.max_file_bytes = number(optarg);
                        break;
                case 'E':
                        d->limits.max_entries = number(optarg);
                        break;
                case 'P':
                        d->pause_after = number(optarg);
                        break;
                case 'g':
                        d->progress = true;
                        break;
                case 'j':
                        d->aopts.job_size = (size_t)number(optarg);
                        break;
                case 'y':
                        d->opts.payload = payload_mode(optarg);
                        break;
                case 'M':
                        d->opts.content_md5 = true;
                        break;
                default:
                        usage();
                }
        }
}

static void env_defaults(driver *d)
{
        const char *region = getenv("AWS_REGION");

        if (!d->opts.endpoint && getenv("AWS_ENDPOINT_URL") && *getenv("AWS_ENDPOINT_URL"))
                d->opts.endpoint = getenv("AWS_ENDPOINT_URL");
        if (!region || !*region)
                region = getenv("AWS_DEFAULT_REGION");
        if (!d->opts.region && region && *region)
                d->opts.region = region;
        if (d->progress) {
                d->opts.progress = on_progress;
                d->opts.progress_ctx = d;
        }
}

int main(int argc, char **argv)
{
        driver d = {0};
        const char *cmd;

        parse_options(argc, argv, &d);
        env_defaults(&d);
        if (optind >= argc)
                usage();
        cmd = argv[optind];
        if (!strcmp(cmd, "upload") && argc - optind == 3)
                return cmd_upload(&d, argv[optind + 1], argv[optind + 2]);
        if (!strcmp(cmd, "download") && argc - optind == 3)
                return cmd_download(&d, argv[optind + 1], argv[optind + 2]);
        if (!strcmp(cmd, "list") && argc - optind == 2)
                return cmd_list(&d, argv[optind + 1]);
        if (!strcmp(cmd, "stat") && argc - optind == 2)
                return cmd_stat_or_delete(&d, argv[optind + 1], false);
        if (!strcmp(cmd, "delete") && argc - optind == 2)
                return cmd_stat_or_delete(&d, argv[optind + 1], true);
        usage();
}
