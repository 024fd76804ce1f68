/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AWS Signature Version 4. Requests are signed by libcurl (CURLOPT_AWS_SIGV4);
 * s3rver does not check signatures, so correctness is established here:
 *
 * 1. A reference signer, test code only, reproduces the canonical request,
 *    string to sign and signature of AWS's published test vectors
 *    (aws-sig-v4-test-suite: get-vanilla, post-vanilla,
 *    get-vanilla-query-order-key-case; the S3 API reference's GET Object
 *    example).
 * 2. libcurl, configured as the library configures it, puts exactly the
 *    published Authorization headers on the wire for those vectors.
 * 3. Every request the library really sends (multipart upload with an
 *    awkward key, list, HEAD, GET, DELETE) carries a signature that the
 *    reference signer recomputes from the request as received.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>

#include "fake-s3.h"
#include "store-test-util.h"
#include "storage/s3-internal.h"
#include "storage/storage.h"

#define SUITE_KEY    "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE   "20150830T123600Z"
#define EMPTY_HASH   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_AUTHZ(sig)                                                                           \
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "        \
        "SignedHeaders=host;x-amz-date, Signature=" sig
#define GET_VANILLA_SIG  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
#define POST_VANILLA_SIG "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
#define QUERY_ORDER_SIG  "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
/* Amazon S3 API reference, "Signature Calculations for the Authorization Header", GET Object. */
#define S3_DOC_KEY    "AKIAIOSFODNN7EXAMPLE"
#define S3_DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DOC_SIG    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"

/* ---- the reference signer (test code only) ---------------------------- */

typedef struct sig_input {
        const char *method;
        const char *uri;               /* canonical URI */
        const char *query;             /* canonical query string */
        const char *canonical_headers; /* "name:value\n" lines, sorted */
        const char *signed_headers;
        const char *payload_hash;
        const char *amz_date;
        const char *region;
        const char *service;
        const char *secret;
} sig_input;

typedef struct sig_output {
        char creq[8192];
        char sts[512];
        char signature[65];
} sig_output;

static void hex(const unsigned char *md, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
}

static void sha256_hex(const char *s, char out[65])
{
        unsigned char md[32];
        unsigned int n = 0;

        assert_int_equal(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL), 1);
        hex(md, 32, out);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
        unsigned int n = 32;

        assert_non_null(
            HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n));
}

static void ref_sign(const sig_input *in, sig_output *out)
{
        char date[9], key0[128], creq_hash[65];
        unsigned char k[32];

        snprintf(out->creq, sizeof(out->creq), "%s\n%s\n%s\n%s\n%s\n%s", in->method, in->uri,
                 in->query, in->canonical_headers, in->signed_headers, in->payload_hash);
        sha256_hex(out->creq, creq_hash);
        snprintf(date, sizeof(date), "%.8s", in->amz_date);
        snprintf(out->sts, sizeof(out->sts), "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                 in->amz_date, date, in->region, in->service, creq_hash);
        snprintf(key0, sizeof(key0), "AWS4%s", in->secret);
        hmac(key0, strlen(key0), date, k);
        hmac(k, 32, in->region, k);
        hmac(k, 32, in->service, k);
        hmac(k, 32, "aws4_request", k);
        hmac(k, 32, out->sts, k);
        hex(k, 32, out->signature);
}

static void assert_sts_hash(const sig_output *o, const char *creq_hash)
{
        char want[512];

        snprintf(want, sizeof(want),
                 "AWS4-HMAC-SHA256\n" SUITE_DATE "\n20150830/us-east-1/service/aws4_request\n%s",
                 creq_hash);
        assert_string_equal(o->sts, want);
}

static void test_reference_get_vanilla(void **state)
{
        sig_output o;

        ref_sign(&(sig_input){"GET", "/", "",
                              "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n",
                              "host;x-amz-date", EMPTY_HASH, SUITE_DATE, "us-east-1", "service",
                              SUITE_SECRET},
                 &o);
        /* get-vanilla.creq, .sts and .authz of the test suite */
        assert_string_equal(o.creq, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T12"
                                    "3600Z\n\nhost;x-amz-date\n" EMPTY_HASH);
        assert_sts_hash(&o, "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
        assert_string_equal(o.signature, GET_VANILLA_SIG);
}

static void test_reference_post_vanilla(void **state)
{
        sig_output o;

        ref_sign(&(sig_input){"POST", "/", "",
                              "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n",
                              "host;x-amz-date", EMPTY_HASH, SUITE_DATE, "us-east-1", "service",
                              SUITE_SECRET},
                 &o);
        assert_sts_hash(&o, "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87");
        assert_string_equal(o.signature, POST_VANILLA_SIG);
}

static void test_reference_query_order(void **state)
{
        _cleanup_free_ char *query = NULL;
        sig_output o;

        /* The library's canonical query from the vector's unordered parameters. */
        assert_int_equal(s3_query_build((s3_param[]){{"Param2", "value2"}, {"Param1", "value1"}}, 2,
                                        &query, NULL),
                         0);
        assert_string_equal(query, "Param1=value1&Param2=value2");
        ref_sign(&(sig_input){"GET", "/", query,
                              "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n",
                              "host;x-amz-date", EMPTY_HASH, SUITE_DATE, "us-east-1", "service",
                              SUITE_SECRET},
                 &o);
        assert_sts_hash(&o, "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0");
        assert_string_equal(o.signature, QUERY_ORDER_SIG);
}

static void test_reference_s3_get_object(void **state)
{
        char creq_hash[65];
        sig_output o;

        ref_sign(&(sig_input){"GET", "/test.txt", "",
                              "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                              "x-amz-content-sha256:" EMPTY_HASH "\nx-amz-date:20130524T000000Z\n",
                              "host;range;x-amz-content-sha256;x-amz-date", EMPTY_HASH,
                              "20130524T000000Z", "us-east-1", "s3", S3_DOC_SECRET},
                 &o);
        sha256_hex(o.creq, creq_hash);
        assert_string_equal(creq_hash,
                            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
        assert_string_equal(o.signature, S3_DOC_SIG);
}

/* ---- libcurl on the wire ---------------------------------------------- */

typedef struct fixture {
        fake_s3 f;
        char *tmp;
} fixture;

static int setup(void **state)
{
        fixture *fx = calloc(1, sizeof(*fx));

        assert_non_null(fx);
        fx->tmp = tu_mkdtemp();
        fs3_start(&fx->f);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        fixture *fx = *state;

        fs3_stop(&fx->f);
        tu_rm_rf(fx->tmp);
        free(fx->tmp);
        free(fx);
        return 0;
}

static size_t discard(char *p, size_t s, size_t n, void *c)
{
        return s * n;
}

/* Sends a suite request through libcurl, configured as s3_sign_setup() configures it. */
static void send_suite_request(fixture *fx, const char *method, const char *query)
{
        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = NULL;
        char url[256];

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s%s", fx->f.port, query ? "?" : "",
                 query ? query : "");
        hdrs = curl_slist_append(hdrs, "Host: example.amazonaws.com");
        hdrs = curl_slist_append(hdrs, "X-Amz-Date: " SUITE_DATE);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:service");
        curl_easy_setopt(h, CURLOPT_USERNAME, SUITE_KEY);
        curl_easy_setopt(h, CURLOPT_PASSWORD, SUITE_SECRET);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        if (!strcmp(method, "POST")) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        }
        assert_int_equal(curl_easy_perform(h), CURLE_OK);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
}

static void assert_last_authz(fixture *fx, const char *want)
{
        char authz[512];

        assert_non_null(
            fs3_header(&fx->f.log[fx->f.n_log - 1], "Authorization", authz, sizeof(authz)));
        assert_string_equal(authz, want);
}

static void test_curl_signs_suite_vectors(void **state)
{
        fixture *fx = *state;
        _cleanup_free_ char *query = NULL;

        send_suite_request(fx, "GET", NULL);
        assert_last_authz(fx, SUITE_AUTHZ(GET_VANILLA_SIG));
        send_suite_request(fx, "POST", NULL);
        assert_last_authz(fx, SUITE_AUTHZ(POST_VANILLA_SIG));
        /* libcurl signs the query as written: the library must write it canonically. */
        assert_int_equal(s3_query_build((s3_param[]){{"Param2", "value2"}, {"Param1", "value1"}}, 2,
                                        &query, NULL),
                         0);
        send_suite_request(fx, "GET", query);
        assert_last_authz(fx, SUITE_AUTHZ(QUERY_ORDER_SIG));
}

static kyb_storage *open_storage(fixture *fx, const char *uri, const char *key, const char *secret)
{
        _cleanup_free_ char *creds = tu_path(fx->tmp, key);
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s = NULL;

        tu_write(creds, "access-key-id", key, strlen(key));
        tu_write(creds, "secret-access-key", secret, strlen(secret));
        if (kyb_storage_open(uri,
                             &(kyb_storage_opts){.credentials_dir = creds,
                                                 .part_size = 5 << 20,
                                                 .max_parts_in_flight = 2},
                             &s, &err) < 0)
                fail_msg("open: %s", kyb_error_message(err));
        return s;
}

static void test_library_signs_s3_example(void **state)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_storage *s;
        CURL *h = curl_easy_init();
        s3_response resp = {0};
        char spec[128];

        /* Virtual-hosted, port 80 in the Host header, the connection goes to the fake. */
        s = open_storage(
            fx,
            "s3://examplebucket?endpoint=http://s3.amazonaws.com&region=us-east-1&path-style=false",
            S3_DOC_KEY, S3_DOC_SECRET);
        snprintf(spec, sizeof(spec), "examplebucket.s3.amazonaws.com:80:127.0.0.1:%d", fx->f.port);
        assert_int_equal(s3_client_set_connect_to(s, spec, NULL), 0);
        assert_int_equal(s3_client_set_fixed_date(s, "20130524T000000Z", NULL), 0);
        if (s3_perform(s->impl, h,
                       &(s3_request){.method = "GET", .key = "test.txt", .range = "bytes=0-9"},
                       &resp, &err) < 0)
                fail_msg("GET: %s", kyb_error_message(err));
        assert_last_authz(fx, "AWS4-HMAC-SHA256 Credential=" S3_DOC_KEY "/20130524/us-east-1/s3/"
                              "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;"
                              "x-amz-date, Signature=" S3_DOC_SIG);
        s3_response_clear(&resp);
        curl_easy_cleanup(h);
        kyb_storage_close(s);
}

/* ---- the library's own requests, re-verified -------------------------- */

/* S3's URI encoding, written independently of the library's. */
static void aws_encode(const char *s, size_t len, bool keep_slash, char *out)
{
        size_t j = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (isalnum(c) || strchr("-._~", c) || (keep_slash && c == '/'))
                        out[j++] = (char)c;
                else
                        j += (size_t)sprintf(out + j, "%%%02X", c);
        }
        out[j] = '\0';
}

static size_t aws_decode(const char *s, size_t len, char *out)
{
        size_t j = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned v;

                if (s[i] == '%' && i + 2 < len + 1 && sscanf(s + i + 1, "%2x", &v) == 1) {
                        out[j++] = (char)v;
                        i += 2;
                } else {
                        out[j++] = s[i];
                }
        }
        out[j] = '\0';
        return j;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The canonical query of a raw query: each name and value decoded, re-encoded, sorted. */
static void canonical_query(const char *raw, char *out)
{
        char *items[16];
        size_t n = 0;

        out[0] = '\0';
        for (const char *p = raw; *p;) {
                size_t len = strcspn(p, "&");
                const char *eq = memchr(p, '=', len);
                size_t klen = eq ? (size_t)(eq - p) : len;
                char k[512], v[512], ek[1024], ev[1024];
                size_t kl = aws_decode(p, klen, k);
                size_t vl = eq ? aws_decode(eq + 1, len - klen - 1, v) : 0;

                aws_encode(k, kl, false, ek);
                aws_encode(v, vl, false, ev);
                assert_true(asprintf(&items[n++], "%s=%s", ek, ev) > 0);
                p += len + (p[len] == '&');
        }
        qsort(items, n, sizeof(*items), cmp_str);
        for (size_t i = 0; i < n; i++) {
                strcat(out, i ? "&" : "");
                strcat(out, items[i]);
                free(items[i]);
        }
}

static void canonical_headers(const fs3_request *r, const char *signed_headers, char *out)
{
        char names[512], *save = NULL;

        snprintf(names, sizeof(names), "%s", signed_headers);
        out[0] = '\0';
        for (char *n = strtok_r(names, ";", &save); n; n = strtok_r(NULL, ";", &save)) {
                char v[4096];

                assert_non_null(fs3_header(r, n, v, sizeof(v)));
                sprintf(out + strlen(out), "%s:%s\n", n, v);
        }
}

static void verify_request(const fs3_request *r, const char *secret)
{
        char authz[1024], date[32], sha[80], body_sha[65], uri[2048], dec[2048], query[2048];
        char headers[8192], signed_h[512], sent_sig[65], region[32];
        const char *p;
        sig_output o;

        assert_non_null(fs3_header(r, "Authorization", authz, sizeof(authz)));
        assert_non_null(fs3_header(r, "X-Amz-Date", date, sizeof(date)));
        assert_non_null(fs3_header(r, "x-amz-content-sha256", sha, sizeof(sha)));
        assert_int_equal(
            sscanf(strstr(authz, "Credential="), "Credential=%*[^/]/%*8s/%31[^/]/s3/", region), 1);
        assert_int_equal(
            sscanf(strstr(authz, "SignedHeaders="), "SignedHeaders=%511[^,]", signed_h), 1);
        assert_int_equal(sscanf(strstr(authz, "Signature="), "Signature=%64s", sent_sig), 1);
        for (p = "host;x-amz-content-sha256;x-amz-date"; *p;) {
                size_t len = strcspn(p, ";");
                char name[64];

                snprintf(name, sizeof(name), "%.*s", (int)len, p);
                assert_non_null(strstr(signed_h, name));
                p += len + (p[len] == ';');
        }
        /* The payload hash the signature covers is that of the bytes that arrived,
         * or UNSIGNED-PAYLOAD on an upload the client was told not to hash. */
        sha256_hex("", body_sha);
        if (r->body_len) {
                unsigned char md[32];
                unsigned int n = 0;

                EVP_Digest(r->body, r->body_len, md, &n, EVP_sha256(), NULL);
                hex(md, 32, body_sha);
        }
        if (strcmp(sha, S3_UNSIGNED_PAYLOAD) || strcmp(r->method, "PUT"))
                assert_string_equal(sha, body_sha);
        aws_encode(dec, aws_decode(r->path, strlen(r->path), dec), true, uri);
        canonical_query(r->query, query);
        canonical_headers(r, signed_h, headers);
        ref_sign(
            &(sig_input){r->method, uri, query, headers, signed_h, sha, date, region, "s3", secret},
            &o);
        if (strcmp(o.signature, sent_sig))
                fail_msg("%s %s?%s: signature %s, reference %s\ncanonical request:\n%s", r->method,
                         r->path, r->query, sent_sig, o.signature, o.creq);
}

static void library_requests_verify(void **state, const char *extra_query)
{
        fixture *fx = *state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *uri = NULL;
        _cleanup_free_ unsigned char *data = calloc(1, (5 << 20) + 10);
        static const char key[] = "dir/x+y=z@1,(2)!$'*.tar.zst";
        kyb_storage *s;
        kyb_storage_writer *w = NULL;
        kyb_storage_reader *r = NULL;
        kyb_storage_object *v = NULL, o = {0};
        char buf[4096];
        size_t n = 0;

        assert_true(asprintf(&uri,
                             "s3://bkt/p+q?endpoint=http://127.0.0.1:%d&path-style=true"
                             "&region=eu-central-1%s",
                             fx->f.port, extra_query) > 0);
        for (size_t i = 0; i < (5u << 20) + 10; i++)
                data[i] = (unsigned char)(i * 31);
        s = open_storage(fx, uri, SUITE_KEY, SUITE_SECRET);
        assert_int_equal(kyb_storage_writer_open(s, key, &w, &err), 0);
        assert_int_equal(kyb_storage_writer_write(w, data, (5 << 20) + 10, &err), 0);
        if (kyb_storage_writer_commit(w, NULL, &err) < 0)
                fail_msg("commit: %s", kyb_error_message(err));
        assert_int_equal(kyb_storage_list(s, "dir/x+", &v, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].key, key);
        kyb_storage_objects_free(v, n);
        assert_int_equal(kyb_storage_stat(s, key, &o, &err), 0);
        kyb_storage_object_clear(&o);
        assert_int_equal(kyb_storage_reader_open(s, key, &r, &err), 0);
        while (kyb_storage_reader_read(r, buf, sizeof(buf), &err) > 0)
                ;
        kyb_storage_reader_close(r);
        assert_int_equal(kyb_storage_delete(s, key, &err), 0);
        kyb_storage_close(s);
        assert_true(fx->f.n_log >= 9);
        for (size_t i = 0; i < fx->f.n_log; i++)
                verify_request(&fx->f.log[i], SUITE_SECRET);
}

static void test_library_requests_verify(void **state)
{
        library_requests_verify(state, "");
}

/* UNSIGNED-PAYLOAD is signed as the payload hash like any other value. */
static void test_library_unsigned_requests_verify(void **state)
{
        fixture *fx = *state;
        size_t unsigned_puts = 0;
        char sha[80];

        library_requests_verify(state, "&payload=unsigned&content-md5=true");
        for (size_t i = 0; i < fx->f.n_log; i++)
                if (fs3_header(&fx->f.log[i], "x-amz-content-sha256", sha, sizeof(sha)) &&
                    !strcmp(sha, S3_UNSIGNED_PAYLOAD))
                        unsigned_puts++;
        assert_int_equal(unsigned_puts, 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_reference_get_vanilla),
            cmocka_unit_test(test_reference_post_vanilla),
            cmocka_unit_test(test_reference_query_order),
            cmocka_unit_test(test_reference_s3_get_object),
            cmocka_unit_test_setup_teardown(test_curl_signs_suite_vectors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_library_signs_s3_example, setup, teardown),
            cmocka_unit_test_setup_teardown(test_library_requests_verify, setup, teardown),
            cmocka_unit_test_setup_teardown(test_library_unsigned_requests_verify, setup, teardown),
        };

        curl_global_init(CURL_GLOBAL_DEFAULT);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
