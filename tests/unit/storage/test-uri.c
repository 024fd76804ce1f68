/* SPDX-License-Identifier: Apache-2.0 */
/* Location URIs, object keys, S3 encodings and URLs. */
#include <stdio.h>
#include <stdlib.h>

#include "store-test-util.h"
#include "storage/s3-internal.h"
#include "storage/storage.h"

static void parse_ok(const char *uri, kyb_storage_uri *u)
{
        _cleanup_error_ kyb_error *err = NULL;

        if (kyb_storage_uri_parse(uri, u, &err) < 0)
                fail_msg("%s: %s", uri, kyb_error_message(err));
}

static void parse_bad(const char *uri, const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage_uri u;

        assert_error(kyb_storage_uri_parse(uri, &u, &err), err, EINVAL, fragment);
        assert_null(u.bucket);
        assert_null(u.path);
}

static void test_file_uris(void **state)
{
        kyb_storage_uri u;

        parse_ok("file:///var/lib/kyb/", &u);
        assert_int_equal(u.scheme, KYB_STORAGE_FILE);
        assert_string_equal(u.path, "/var/lib/kyb");
        kyb_storage_uri_clear(&u);
        parse_ok("file:///", &u);
        assert_string_equal(u.path, "/");
        kyb_storage_uri_clear(&u);
        parse_ok("file://localhost/mnt/shared%20vol", &u);
        assert_string_equal(u.path, "/mnt/shared vol");
        kyb_storage_uri_clear(&u);
        parse_bad("file://host/x", "absolute path");
        parse_bad("file://relative", "absolute path");
        parse_bad("file:///x?y=1", "no options");
        parse_bad("file:///a%00b", "percent escape");
        parse_bad("file:///a%zz", "percent escape");
        parse_bad("file:///a%0ab", "printable");
        parse_bad("http://example.com/x", "file:// or s3://");
        parse_bad("", "empty");
}

static void test_s3_uris(void **state)
{
        kyb_storage_uri u;

        parse_ok("s3://my-bucket", &u);
        assert_int_equal(u.scheme, KYB_STORAGE_S3);
        assert_string_equal(u.bucket, "my-bucket");
        assert_string_equal(u.path, "");
        assert_null(u.endpoint);
        assert_int_equal(u.addressing, KYB_S3_ADDRESSING_AUTO);
        kyb_storage_uri_clear(&u);
        parse_ok("s3://my-bucket/team/a/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1"
                 "&path-style=true",
                 &u);
        assert_string_equal(u.path, "team/a");
        assert_string_equal(u.endpoint, "http://127.0.0.1:9000");
        assert_string_equal(u.region, "eu-west-1");
        assert_int_equal(u.addressing, KYB_S3_ADDRESSING_PATH);
        kyb_storage_uri_clear(&u);
        parse_ok("s3://b.with.dots/p?path-style=false&endpoint=https://minio.local/", &u);
        assert_int_equal(u.addressing, KYB_S3_ADDRESSING_VIRTUAL);
        assert_string_equal(u.endpoint, "https://minio.local/");
        assert_int_equal(u.payload, KYB_S3_PAYLOAD_AUTO);
        assert_false(u.content_md5_set);
        kyb_storage_uri_clear(&u);
        parse_ok("s3://bkt?payload=unsigned&content-md5=true", &u);
        assert_int_equal(u.payload, KYB_S3_PAYLOAD_UNSIGNED);
        assert_true(u.content_md5_set);
        assert_true(u.content_md5);
        kyb_storage_uri_clear(&u);
        parse_ok("s3://bkt?content-md5=0&payload=signed", &u);
        assert_int_equal(u.payload, KYB_S3_PAYLOAD_SIGNED);
        assert_true(u.content_md5_set);
        assert_false(u.content_md5);
        kyb_storage_uri_clear(&u);
}

static void test_s3_uris_refused(void **state)
{
        parse_bad("s3://ab", "3..63");
        parse_bad("s3://-bucket", "bad character");
        parse_bad("s3://bu cket", "bad character");
        parse_bad("s3://bucket/a//b", "prefix");
        parse_bad("s3://bucket/../x", "prefix");
        parse_bad("s3://bucket/.hidden", "prefix");
        parse_bad("s3://bucket?colour=blue", "unknown or repeated URI option 'colour'");
        parse_bad("s3://bucket?region=a&region=b", "repeated");
        parse_bad("s3://bucket?region=us:east", "region");
        parse_bad("s3://bucket?region=", "region");
        parse_bad("s3://bucket?path-style=maybe", "path-style must be true or false");
        parse_bad("s3://bucket?payload=auto", "payload must be signed or unsigned");
        parse_bad("s3://bucket?payload=signed&payload=unsigned", "repeated");
        parse_bad("s3://bucket?content-md5=yes", "content-md5 must be true or false");
        parse_bad("s3://bucket?content-md5=true&content-md5=true", "repeated");
        parse_bad("s3://bucket?endpoint=ftp://x", "http:// or https://");
        parse_bad("s3://bucket?endpoint=http://h/path", "must not have a path");
        parse_bad("s3://bucket?endpoint=http://user@h", "plain");
        parse_bad("s3://bucket?endpoint", "without a value");
}

static void split_ok(const char *uri, const char *loc, const char *key)
{
        _cleanup_free_ char *l = NULL;
        _cleanup_free_ char *k = NULL;

        assert_int_equal(kyb_storage_uri_split(uri, &l, &k, NULL), 0);
        assert_string_equal(l, loc);
        assert_string_equal(k, key);
}

static void test_split(void **state)
{
        char *l = NULL, *k = NULL;

        split_ok("s3://b/p/x.tar.zst?region=r", "s3://b/p?region=r", "x.tar.zst");
        split_ok("s3://bkt/x", "s3://bkt/", "x");
        split_ok("file:///x", "file:///", "x");
        split_ok("file:///d/e/f.tzst", "file:///d/e", "f.tzst");
        assert_int_equal(kyb_storage_uri_split("s3://bkt", &l, &k, NULL), -EINVAL);
        assert_int_equal(kyb_storage_uri_split("s3://bkt/", &l, &k, NULL), -EINVAL);
        assert_int_equal(kyb_storage_uri_split("s3://b/p/?x=1", &l, &k, NULL), -EINVAL);
        assert_int_equal(kyb_storage_uri_split("nothing", &l, &k, NULL), -EINVAL);
        assert_null(l);
        assert_null(k);
}

static void test_keys(void **state)
{
        static const char *const good[] = {"a", "ckpt-1.tar.zst", "a/b/c", "x+y=z@1,2;3!"};
        static const char *const bad[] = {"",     "/a",  "a/",   "a//b",  ".a",
                                          "a/.b", "a b", "a\\b", "a\x01", "a/../b"};
        char longkey[KYB_STORAGE_KEY_MAX + 2];

        for (size_t i = 0; i < KYB_ARRAY_SIZE(good); i++)
                assert_int_equal(kyb_storage_check_key(good[i], NULL), 0);
        for (size_t i = 0; i < KYB_ARRAY_SIZE(bad); i++)
                if (kyb_storage_check_key(bad[i], NULL) != -EINVAL)
                        fail_msg("key '%s' accepted", bad[i]);
        memset(longkey, 'k', sizeof(longkey) - 1);
        longkey[sizeof(longkey) - 1] = '\0';
        assert_int_equal(kyb_storage_check_key(longkey, NULL), -EINVAL);
        longkey[KYB_STORAGE_KEY_MAX] = '\0';
        assert_int_equal(kyb_storage_check_key(longkey, NULL), 0);
}

static void encode_is(const char *in, bool keep_slash, const char *want)
{
        _cleanup_free_ char *out = NULL;

        assert_int_equal(s3_uri_encode(in, keep_slash, &out, NULL), 0);
        assert_string_equal(out, want);
}

static void test_uri_encode(void **state)
{
        encode_is("dir/x+y=z@1.tar", true, "dir/x%2By%3Dz%401.tar");
        encode_is("a/b", false, "a%2Fb");
        encode_is("AZaz09-._~", false, "AZaz09-._~");
        encode_is("a b$\xe1\x88\xb4", true, "a%20b%24%E1%88%B4");
}

static void query_is(const s3_param *p, size_t n, const char *want)
{
        _cleanup_free_ char *q = NULL;

        assert_int_equal(s3_query_build(p, n, &q, NULL), 0);
        assert_string_equal(q, want);
}

static void test_query_build(void **state)
{
        query_is((s3_param[]){{"Param2", "value2"}, {"Param1", "value1"}}, 2,
                 "Param1=value1&Param2=value2");
        query_is((s3_param[]){{"uploads", ""}}, 1, "uploads=");
        query_is((s3_param[]){{"uploadId", "a+b/c"}, {"partNumber", "12"}}, 2,
                 "partNumber=12&uploadId=a%2Bb%2Fc");
        query_is((s3_param[]){{"prefix", "p/a b"}, {"list-type", "2"}}, 2,
                 "list-type=2&prefix=p%2Fa%20b");
        query_is(NULL, 0, "");
}

static kyb_storage *open_s3(const char *uri, const kyb_storage_opts *o)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s = NULL;

        if (kyb_storage_open(uri, o, &s, &err) < 0)
                fail_msg("%s: %s", uri, kyb_error_message(err));
        return s;
}

static void url_is(kyb_storage *s, const char *key, const char *query, const char *want)
{
        _cleanup_free_ char *url = NULL;
        _cleanup_free_ char *full = NULL;

        if (key)
                assert_int_equal(s3_full_key(s->impl, key, &full, NULL), 0);
        assert_int_equal(s3_url(s->impl, full, query, &url, NULL), 0);
        assert_string_equal(url, want);
}

static void test_urls(void **state)
{
        kyb_storage *s;

        setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
        s = open_s3("s3://bkt/pre?endpoint=http://127.0.0.1:9000/", NULL);
        url_is(s, "a b.tar", NULL, "http://127.0.0.1:9000/bkt/pre/a%20b.tar");
        url_is(s, NULL, "list-type=2", "http://127.0.0.1:9000/bkt?list-type=2");
        kyb_storage_close(s);
        s = open_s3("s3://bkt", &(kyb_storage_opts){.region = "eu-west-1"});
        url_is(s, "k", "uploads=", "https://bkt.s3.eu-west-1.amazonaws.com/k?uploads=");
        url_is(s, NULL, "list-type=2", "https://bkt.s3.eu-west-1.amazonaws.com/?list-type=2");
        kyb_storage_close(s);
        s = open_s3("s3://b.dotted/p", NULL);
        url_is(s, "k", NULL, "https://s3.us-east-1.amazonaws.com/b.dotted/p/k");
        kyb_storage_close(s);
        /* The URI's options win over the caller's. */
        s = open_s3(
            "s3://bkt?path-style=true&region=ap-south-1",
            &(kyb_storage_opts){.region = "eu-west-1", .addressing = KYB_S3_ADDRESSING_VIRTUAL});
        url_is(s, "k", NULL, "https://s3.ap-south-1.amazonaws.com/bkt/k");
        assert_string_equal(((s3_client *)s->impl)->sigv4, "aws:amz:ap-south-1:s3");
        kyb_storage_close(s);
}

static void test_open_checks_options(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s = NULL;

        setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
        assert_error(
            kyb_storage_open("s3://bkt", &(kyb_storage_opts){.part_size = 1 << 20}, &s, &err), err,
            EINVAL, "part size");
        assert_error(
            kyb_storage_open("s3://bkt", &(kyb_storage_opts){.max_parts_in_flight = 65}, &s, &err),
            err, EINVAL, "in flight");
        assert_error(kyb_storage_open("s3://bkt", &(kyb_storage_opts){.region = "EU"}, &s, &err),
                     err, EINVAL, "region");
        assert_error(kyb_storage_open("gs://bkt", NULL, &s, &err), err, EINVAL, "storage: ");
        assert_null(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_file_uris),
            cmocka_unit_test(test_s3_uris),
            cmocka_unit_test(test_s3_uris_refused),
            cmocka_unit_test(test_split),
            cmocka_unit_test(test_keys),
            cmocka_unit_test(test_uri_encode),
            cmocka_unit_test(test_query_build),
            cmocka_unit_test(test_urls),
            cmocka_unit_test(test_open_checks_options),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
