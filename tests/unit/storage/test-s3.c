/* SPDX-License-Identifier: Apache-2.0 */
/* The s3:// backend against tests/unit/storage/fake-s3: uploads, retries, aborts, downloads. */
#include <openssl/evp.h>
#include <stdio.h>
#include <sys/stat.h>

#include "archive-test-util.h"
#include "store/store.h"
#include "fake-s3.h"
#include "storage/s3-internal.h"
#include "storage/storage.h"

#define MIB    (1 << 20)
#define PART   (5 * MIB)
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN  "session-token-of-the-test"

typedef struct fixture {
        char *tmp;
        char *creds; /* a mounted-secret style directory */
        fake_s3 f;
        kyb_storage *s;
        uint64_t progress_last;
        unsigned progress_calls;
        bool progress_went_back;
} fixture;

static void progress(void *ctx, uint64_t bytes)
{
        fixture *fx = ctx;

        /* Called from worker threads, one at a time, with a growing total. */
        if (bytes <= __atomic_load_n(&fx->progress_last, __ATOMIC_SEQ_CST))
                fx->progress_went_back = true;
        __atomic_store_n(&fx->progress_last, bytes, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&fx->progress_calls, 1, __ATOMIC_SEQ_CST);
}

/* The fake with the tests' tuning; query is appended to the URI, md5 sets opts.content_md5. */
static kyb_storage *open_fake_with(fixture *fx, const char *query, bool md5)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *uri = NULL;
        kyb_storage *s = NULL;
        kyb_storage_opts o = {.credentials_dir = fx->creds,
                              .part_size = PART,
                              .max_parts_in_flight = 2,
                              .max_attempts = 3,
                              .retry_base_ms = 1,
                              .retry_max_ms = 4,
                              .content_md5 = md5,
                              .progress = progress,
                              .progress_ctx = fx};

        assert_true(asprintf(&uri, "s3://bkt/pre?endpoint=http://127.0.0.1:%d&path-style=true%s",
                             fx->f.port, query) > 0);
        if (kyb_storage_open(uri, &o, &s, &err) < 0)
                fail_msg("open: %s", kyb_error_message(err));
        return s;
}

static kyb_storage *open_fake(fixture *fx, const char *token)
{
        if (token)
                tu_write(fx->creds, "session-token", token, strlen(token));
        return open_fake_with(fx, "", false);
}

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fx->creds = tu_path(fx->tmp, "creds");
        tu_write(fx->creds, "access-key-id", "AKIDEXAMPLE\n", 12);
        tu_write(fx->creds, "secret-access-key", SECRET "\n", strlen(SECRET) + 1);
        fs3_start(&fx->f);
        fx->s = open_fake(fx, NULL);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        kyb_storage_close(fx->s);
        fs3_stop(&fx->f);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx->creds);
        free(fx);
        return 0;
}

static unsigned char *pattern(size_t len, unsigned seed)
{
        unsigned char *p = malloc(len);

        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
                p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
        return p;
}

/* Writes data in odd-sized pieces; returns what commit returned. */
static int upload(kyb_storage *s, const char *key, const unsigned char *data, size_t len,
                  kyb_storage_object *o, kyb_error **err)
{
        kyb_storage_writer *w = NULL;
        int rc;

        rc = kyb_storage_writer_open(s, key, &w, err);
        if (rc < 0)
                return rc;
        for (size_t off = 0; off < len; off += 100003) {
                rc = kyb_storage_writer_write(w, data + off, KYB_MIN(100003, len - off), err);
                if (rc < 0) {
                        kyb_storage_writer_abort(w);
                        return rc;
                }
        }
        return kyb_storage_writer_commit(w, o, err);
}

static void assert_stored(fixture *fx, const char *key, const unsigned char *data, size_t len)
{
        const fs3_object *o = fs3_find(&fx->f, key);

        assert_non_null(o);
        assert_int_equal(o->len, len);
        assert_memory_equal(o->data, data, len);
}

static void test_small_object(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage_object o = {0};
        kyb_storage_object *v = NULL;
        kyb_storage_reader *r = NULL;
        char buf[64];
        size_t n = 0;

        if (upload(fx->s, "a/obj", (const unsigned char *)"hello", 5, &o, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        assert_string_equal(o.key, "a/obj");
        assert_int_equal(o.size, 5);
        assert_string_equal(o.etag, "5d41402abc4b2a76b9719d911017c592"); /* md5("hello") */
        kyb_storage_object_clear(&o);
        assert_stored(fx, "pre/a/obj", (const unsigned char *)"hello", 5);
        assert_int_equal(fs3_count(&fx->f, "PUT ?"), 1); /* one PUT, no multipart */
        assert_int_equal(fs3_count(&fx->f, "uploads"), 0);
        assert_int_equal(fs3_count(&fx->f, "HEAD ?"), 1);
        assert_int_equal(fx->progress_last, 5);

        assert_int_equal(kyb_storage_reader_open(fx->s, "a/obj", &r, &err), 0);
        assert_int_equal(kyb_storage_reader_read(r, buf, sizeof(buf), &err), 5);
        assert_int_equal(kyb_storage_reader_read(r, buf, sizeof(buf), &err), 0);
        kyb_storage_reader_close(r);

        assert_int_equal(kyb_storage_list(fx->s, NULL, &v, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].key, "a/obj");
        assert_int_equal(v[0].size, 5);
        assert_int_equal(v[0].mtime_ns, 1714564800000000000LL);
        kyb_storage_objects_free(v, n);

        assert_int_equal(kyb_storage_delete(fx->s, "a/obj", &err), 0);
        assert_null(fs3_find(&fx->f, "pre/a/obj"));
        assert_error(kyb_storage_stat(fx->s, "a/obj", &o, &err), err, ENOENT, "HTTP 404");
        assert_error(kyb_storage_delete(fx->s, "a/obj", &err), err, ENOENT, NULL);
        assert_error(kyb_storage_reader_open(fx->s, "a/obj", &r, &err), err, ENOENT, "NoSuchKey");
}

static void test_empty_object(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(upload(fx->s, "empty", NULL, 0, NULL, &err), 0);
        assert_stored(fx, "pre/empty", NULL, 0);
}

/*
 * Every PUT carried x-amz-content-sha256 of exactly its bytes (signed) or
 * UNSIGNED-PAYLOAD, and Content-MD5 of its bytes only when md5 is on.
 */
static void assert_part_digests(fixture *fx, size_t from, bool signed_payload, bool md5_on)
{
        size_t puts = 0;

        for (size_t i = from; i < fx->f.n_log; i++) {
                const fs3_request *r = &fx->f.log[i];
                char md5[64], sha[80], want_sha[KYB_SHA256_HEX_LEN + 1];
                char want_md5[S3_MD5_B64_LEN + 1];

                if (strcmp(r->method, "PUT"))
                        continue;
                puts++;
                assert_int_equal(s3_digests(r->body, r->body_len, want_sha, want_md5, NULL), 0);
                assert_non_null(fs3_header(r, "x-amz-content-sha256", sha, sizeof(sha)));
                assert_string_equal(sha, signed_payload ? want_sha : S3_UNSIGNED_PAYLOAD);
                if (!md5_on) {
                        assert_null(fs3_header(r, "Content-MD5", md5, sizeof(md5)));
                        continue;
                }
                assert_non_null(fs3_header(r, "Content-MD5", md5, sizeof(md5)));
                assert_string_equal(md5, want_md5);
        }
        assert_true(puts > 0);
}

static void test_multipart_upload(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = 2 * PART + 12345;
        _cleanup_free_ unsigned char *data = pattern(len, 1);

        if (upload(fx->s, "big", data, len, NULL, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        assert_stored(fx, "pre/big", data, len);
        assert_int_equal(fs3_count(&fx->f, "POST ?uploads="), 1);
        assert_int_equal(fs3_count(&fx->f, "PUT ?partNumber="), 3);
        assert_int_equal(fs3_count(&fx->f, "POST ?uploadId="), 1);
        assert_int_equal(fs3_count(&fx->f, "HEAD"), 1);
        assert_int_equal(fs3_count(&fx->f, "DELETE"), 0);
        assert_part_digests(fx, 0, true, false); /* http:// signs the payload by default */
        assert_int_equal(fx->progress_last, len);
        /* Parts finish in any order; a smaller total seen late is not reported. */
        assert_in_range(fx->progress_calls, 1, 3);
        assert_false(fx->progress_went_back);
}

static void test_unsigned_payload(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = 2 * PART + 777;
        _cleanup_free_ unsigned char *data = pattern(len, 8);
        kyb_storage *s = open_fake_with(fx, "&payload=unsigned", false);
        char auth[512];

        if (upload(s, "u", data, len, NULL, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        kyb_storage_close(s);
        assert_stored(fx, "pre/u", data, len);
        assert_part_digests(fx, 0, false, false);
        /* The header still says what the body is, under the signature. */
        assert_non_null(fs3_header(&fx->f.log[1], "Authorization", auth, sizeof(auth)));
        assert_non_null(strstr(auth, ";x-amz-content-sha256"));
}

static void test_content_md5_on_request(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = PART + 5;
        _cleanup_free_ unsigned char *data = pattern(len, 9);
        kyb_storage *s = open_fake_with(fx, "&payload=unsigned", true);
        size_t from;

        if (upload(s, "m", data, len, NULL, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        kyb_storage_close(s);
        assert_part_digests(fx, 0, false, true);
        /* The URI's content-md5=false wins over the opts' default. */
        from = fx->f.n_log;
        s = open_fake_with(fx, "&content-md5=false", true);
        assert_int_equal(upload(s, "m", data, len, NULL, &err), 0);
        kyb_storage_close(s);
        assert_part_digests(fx, from, true, false);
}

static bool signs_payload(const char *uri, kyb_s3_payload opt)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s = NULL;
        bool v;

        setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
        if (kyb_storage_open(uri, &(kyb_storage_opts){.payload = opt}, &s, &err) < 0)
                fail_msg("open %s: %s", uri, kyb_error_message(err));
        v = ((const s3_client *)s->impl)->sign_payload;
        kyb_storage_close(s);
        return v;
}

/* Auto signs where nothing else protects the body: plain http. */
static void test_payload_auto_follows_scheme(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s = NULL;

        assert_false(signs_payload("s3://bkt", KYB_S3_PAYLOAD_AUTO)); /* https://s3.<region>... */
        assert_false(signs_payload("s3://bkt?endpoint=https://minio.example:9000", 0));
        assert_true(signs_payload("s3://bkt?endpoint=http://minio.example:9000", 0));
        assert_true(signs_payload("s3://bkt", KYB_S3_PAYLOAD_SIGNED));
        assert_true(signs_payload("s3://bkt?payload=signed", KYB_S3_PAYLOAD_UNSIGNED));
        assert_false(signs_payload("s3://bkt?endpoint=http://h&payload=unsigned", 0));
        assert_error(kyb_storage_open("s3://bkt", &(kyb_storage_opts){.payload = 7}, &s, &err), err,
                     EINVAL, "payload signing mode 7");
}

static void test_exact_part_multiple(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ unsigned char *data = pattern(2 * PART, 2);

        assert_int_equal(upload(fx->s, "two", data, 2 * PART, NULL, &err), 0);
        assert_stored(fx, "pre/two", data, 2 * PART);
        assert_int_equal(fs3_count(&fx->f, "PUT ?partNumber="), 2);
}

static void test_retries_then_succeeds(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = PART + 1000;
        _cleanup_free_ unsigned char *data = pattern(len, 3);

        fx->f.fail_match = "PUT ?partNumber=2";
        fx->f.fail_count = 2;
        fx->f.fail_status = 503;
        fx->f.fail_code = "SlowDown";
        if (upload(fx->s, "retried", data, len, NULL, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        assert_stored(fx, "pre/retried", data, len);
        assert_int_equal(fs3_count(&fx->f, "PUT ?partNumber=2"), 3);
}

static void test_retries_dropped_connection(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        fx->f.fail_match = "PUT ?";
        fx->f.fail_count = 1;
        fx->f.fail_status = 0; /* the connection closes without an answer */
        assert_int_equal(upload(fx->s, "x", (const unsigned char *)"abc", 3, NULL, &err), 0);
        assert_int_equal(fs3_count(&fx->f, "PUT ?"), 2);
}

static void test_no_retry_on_client_errors(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        fx->f.all_status = 403;
        fx->f.fail_code = "AccessDenied";
        assert_error(upload(fx->s, "x", (const unsigned char *)"abc", 3, NULL, &err), err, EACCES,
                     "PUT s3://bkt/pre/x: HTTP 403 AccessDenied: fake AccessDenied");
        assert_int_equal(fs3_count(&fx->f, "PUT"), 1);
        fx->f.fail_code = "SignatureDoesNotMatch";
        assert_error(upload(fx->s, "x", (const unsigned char *)"abc", 3, NULL, &err), err,
                     EKEYREJECTED, "SignatureDoesNotMatch");
        assert_null(strstr(kyb_error_message(err), SECRET));
}

static void test_gives_up_and_aborts(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = 3 * PART;
        _cleanup_free_ unsigned char *data = pattern(len, 4);

        fx->f.fail_match = "PUT ?partNumber=";
        fx->f.fail_count = UINT32_MAX;
        fx->f.fail_status = 500;
        assert_error(upload(fx->s, "doomed", data, len, NULL, &err), err, EIO,
                     "gave up after 3 attempts");
        assert_non_null(strstr(kyb_error_message(err), "HTTP 500 InternalError"));
        assert_int_equal(fs3_count(&fx->f, "DELETE ?uploadId="), 1);
        assert_null(fs3_find(&fx->f, "pre/doomed"));
        assert_true(fx->f.uploads[0].aborted);
}

static void test_abort_by_producer(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ unsigned char *data = pattern(PART + 10, 5);
        kyb_storage_writer *w = NULL;

        assert_int_equal(kyb_storage_writer_open(fx->s, "half", &w, &err), 0);
        assert_int_equal(kyb_storage_writer_write(w, data, PART + 10, &err), 0);
        kyb_storage_writer_abort(w);
        assert_int_equal(fs3_count(&fx->f, "DELETE ?uploadId="), 1);
        assert_int_equal(fs3_count(&fx->f, "POST ?uploadId="), 0);
        assert_null(fs3_find(&fx->f, "pre/half"));
}

static void test_complete_error_in_body(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ unsigned char *data = pattern(PART + 10, 6);

        fx->f.complete_error = true;
        assert_error(upload(fx->s, "c", data, PART + 10, NULL, &err), err, EIO,
                     "complete multipart upload: InternalError");
        assert_int_equal(fs3_count(&fx->f, "DELETE ?uploadId="), 1);
        assert_null(fs3_find(&fx->f, "pre/c"));
}

static void test_stored_size_is_checked(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;

        fx->f.head_size_delta = -1;
        assert_error(upload(fx->s, "short", (const unsigned char *)"abcdef", 6, NULL, &err), err,
                     EBADMSG, "stored object has 5 bytes, 6 were sent");
        assert_null(fs3_find(&fx->f, "pre/short")); /* the bad object was deleted */
}

static void test_session_token_is_sent_and_signed(void **state)
{
        fixture *fx = *state;
        kyb_storage *s = open_fake(fx, TOKEN "\n");
        char tok[128], auth[512];

        assert_int_equal(upload(s, "t", (const unsigned char *)"x", 1, NULL, NULL), 0);
        assert_non_null(fs3_header(&fx->f.log[0], "x-amz-security-token", tok, sizeof(tok)));
        assert_string_equal(tok, TOKEN);
        assert_non_null(fs3_header(&fx->f.log[0], "Authorization", auth, sizeof(auth)));
        assert_non_null(strstr(auth, "Credential=AKIDEXAMPLE/"));
        assert_non_null(strstr(auth, ";x-amz-security-token"));
        assert_null(strstr(auth, SECRET));
        kyb_storage_close(s);
}

static void test_download_resumes(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        size_t len = 3 * MIB + 7;
        _cleanup_free_ unsigned char *data = pattern(len, 7);
        _cleanup_free_ unsigned char *back = malloc(len + 1);
        kyb_storage_reader *r = NULL;
        size_t got = 0;
        ssize_t n;
        char range[64], match[64];

        fs3_put(&fx->f, "pre/dl", data, len);
        fx->f.drop_get_after = 100000;
        assert_int_equal(kyb_storage_reader_open(fx->s, "dl", &r, &err), 0);
        while ((n = kyb_storage_reader_read(r, back + got, KYB_MIN(65536, len + 1 - got), &err)) >
               0)
                got += (size_t)n;
        if (n < 0)
                fail_msg("read: %s", kyb_error_message(err));
        kyb_storage_reader_close(r);
        assert_int_equal(got, len);
        assert_memory_equal(back, data, len);
        assert_int_equal(fs3_count(&fx->f, "GET"), 2);
        assert_non_null(fs3_header(&fx->f.log[1], "Range", range, sizeof(range)));
        assert_non_null(strstr(range, "bytes="));
        assert_true(strtoull(range + 6, NULL, 10) >= 1);
        assert_non_null(fs3_header(&fx->f.log[1], "If-Match", match, sizeof(match)));
}

/* A checkpoint whose pages do not compress: its archive needs several parts. */
static char *noisy_checkpoint(const char *tmp, size_t size)
{
        _cleanup_free_ char *root = tu_path(tmp, "noisy-store");
        _cleanup_manifest_ kyb_manifest *m = tu_sample_manifest();
        _cleanup_free_ unsigned char *noise = malloc(size);
        unsigned seed = 12345;
        kyb_store_txn *txn = NULL;
        kyb_store *s = NULL;

        assert_non_null(noise);
        for (size_t i = 0; i < size; i++)
                noise[i] = (unsigned char)(rand_r(&seed) >> 7);
        assert_int_equal(kyb_store_open(root, &s, NULL), 0);
        assert_int_equal(kyb_store_begin(s, "c2", &txn, NULL), 0);
        tu_write(kyb_store_txn_images_dir(txn), "pages-1.img", noise, size);
        tu_write(kyb_store_txn_dir(txn), "config.dump", "{}", 2);
        assert_int_equal(kyb_store_commit(txn, m, NULL), 0);
        kyb_store_close(s);
        return tu_path(root, "c2");
}

static void test_checkpoint_pipeline_multipart(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *ckpt = noisy_checkpoint(fx->tmp, 12 * MIB);
        _cleanup_free_ char *dest = tu_path(fx->tmp, "restored");
        kyb_archive_stats st = {0};

        if (kyb_storage_upload_checkpoint(fx->s, "c2.tar.zst", ckpt,
                                          &(kyb_archive_write_opts){.level = 1, .threads = 2}, &st,
                                          NULL, &err) < 0)
                fail_msg("upload: %s", kyb_error_message(err));
        assert_int_equal(fs3_count(&fx->f, "PUT ?partNumber="), 3);
        assert_int_equal(fx->progress_last, st.compressed_bytes);
        if (kyb_storage_download_checkpoint(fx->s, "c2.tar.zst", dest, NULL, &err) < 0)
                fail_msg("download: %s", kyb_error_message(err));
        ut_assert_same_tree(ckpt, dest);
}

static void test_failed_pipeline_aborts(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *ckpt = ut_make_checkpoint(fx->tmp, 1000);

        tu_write(ckpt, "config.dump", "{\"id\":\"y\"}", 10); /* same size, other bytes */
        assert_error(
            kyb_storage_upload_checkpoint(fx->s, "bad.tar.zst", ckpt, NULL, NULL, NULL, &err), err,
            EBADMSG, "config.dump: SHA-256 mismatch");
        assert_null(fs3_find(&fx->f, "pre/bad.tar.zst"));
        assert_int_equal(fs3_count(&fx->f, "PUT"), 0); /* nothing was ever sent */
}

static void test_credentials(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *bad = tu_path(fx->tmp, "bad-creds");
        kyb_storage *s = NULL;

        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        unsetenv("AWS_SESSION_TOKEN");
        assert_error(kyb_storage_open("s3://bkt", NULL, &s, &err), err, EINVAL,
                     "AWS_ACCESS_KEY_ID is not set");
        setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "bad\nvalue", 1);
        assert_error(kyb_storage_open("s3://bkt", NULL, &s, &err), err, EINVAL,
                     "AWS_SECRET_ACCESS_KEY has characters");
        assert_null(strstr(kyb_error_message(err), "bad"));
        setenv("AWS_SECRET_ACCESS_KEY", "good", 1);
        assert_int_equal(kyb_storage_open("s3://bkt", NULL, &s, &err), 0);
        kyb_storage_close(s);
        tu_write(bad, "access-key-id", "AKID", 4);
        assert_error(
            kyb_storage_open("s3://bkt", &(kyb_storage_opts){.credentials_dir = bad}, &s, &err),
            err, ENOENT, "secret-access-key");
        tu_write(bad, "secret-access-key", "\n\n", 2);
        assert_error(
            kyb_storage_open("s3://bkt", &(kyb_storage_opts){.credentials_dir = bad}, &s, &err),
            err, EINVAL, "secret-access-key is empty");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_small_object),
            T(test_empty_object),
            T(test_multipart_upload),
            T(test_unsigned_payload),
            T(test_content_md5_on_request),
            T(test_payload_auto_follows_scheme),
            T(test_exact_part_multiple),
            T(test_retries_then_succeeds),
            T(test_retries_dropped_connection),
            T(test_no_retry_on_client_errors),
            T(test_gives_up_and_aborts),
            T(test_abort_by_producer),
            T(test_complete_error_in_body),
            T(test_stored_size_is_checked),
            T(test_session_token_is_sent_and_signed),
            T(test_download_resumes),
            T(test_checkpoint_pipeline_multipart),
            T(test_failed_pipeline_aborts),
            T(test_credentials),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
