/* SPDX-License-Identifier: Apache-2.0 */
#define KYB_LOG_MODULE "test"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/log.h"

/* Everything a test logged, read back from a memfd and cleared. */
static char *take_output(int fd)
{
        off_t len = lseek(fd, 0, SEEK_END);
        char *buf = calloc(1, (size_t)len + 1);

        assert_non_null(buf);
        assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return buf;
}

static int setup(void **state)
{
        int *fd = malloc(sizeof(*fd));

        *fd = memfd_create("log", MFD_CLOEXEC);
        *state = fd;
        return *fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        int *fd = *state;

        kyb_log_setup(KYB_LOG_INFO, KYB_LOG_TEXT, -1);
        close(*fd);
        free(fd);
        return 0;
}

static json_t *parse_record(const char *line)
{
        json_error_t jerr;
        json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &jerr);

        if (!j)
                fail_msg("not JSON: %s (%s)", line, jerr.text);
        return j;
}

static void test_json_record_fields(void **state)
{
        int fd = *(int *)*state;
        _cleanup_free_ char *out = NULL;
        const char *ts;
        json_t *j;
        int line;

        kyb_log_setup(KYB_LOG_INFO, KYB_LOG_JSON, fd);
        line = __LINE__ + 1;
        kyb_log_info("hello %d \"quoted\"", 42);
        out = take_output(fd);
        assert_int_equal(out[strlen(out) - 1], '\n');
        assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
        j = parse_record(out);
        assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
        assert_string_equal(json_string_value(json_object_get(j, "module")), "test");
        assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello 42 \"quoted\"");
        assert_string_equal(json_string_value(json_object_get(j, "file")),
                            "tests/unit/base/test-log.c");
        assert_int_equal(json_integer_value(json_object_get(j, "line")), line);
        ts = json_string_value(json_object_get(j, "ts"));
        /* 2024-05-01T12:00:00.123Z */
        assert_non_null(ts);
        assert_int_equal(strlen(ts), 24);
        assert_int_equal(ts[10], 'T');
        assert_int_equal(ts[19], '.');
        assert_int_equal(ts[23], 'Z');
        json_decref(j);
}

static void test_json_survives_invalid_utf8(void **state)
{
        int fd = *(int *)*state;
        _cleanup_free_ char *out = NULL;
        json_t *j;

        kyb_log_setup(KYB_LOG_INFO, KYB_LOG_JSON, fd);
        kyb_log_warn("bad \xff byte\nnext");
        out = take_output(fd);
        j = parse_record(out);
        assert_string_equal(json_string_value(json_object_get(j, "msg")), "bad ? byte\nnext");
        assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
        json_decref(j);
}

static void test_text_record(void **state)
{
        int fd = *(int *)*state;
        _cleanup_free_ char *out = NULL;
        _cleanup_free_ char *where = NULL;
        int line;

        kyb_log_setup(KYB_LOG_DEBUG, KYB_LOG_TEXT, fd);
        line = __LINE__ + 1;
        kyb_log_debug("two\nlines %s", "here");
        out = take_output(fd);
        assert_int_equal(
            asprintf(&where, " DEBUG [test] tests/unit/base/test-log.c:%d: ", line) > 0, 1);
        if (!strstr(out, where))
                fail_msg("'%s' lacks '%s'", out, where);
        assert_non_null(strstr(out, ": two\\nlines here\n"));
        assert_int_equal(out[23], 'Z');
}

static int side_effects;

static int bump(void)
{
        return ++side_effects;
}

static void test_disabled_level_skips_arguments(void **state)
{
        int fd = *(int *)*state;
        _cleanup_free_ char *out = NULL;

        side_effects = 0;
        kyb_log_setup(KYB_LOG_WARN, KYB_LOG_TEXT, fd);
        kyb_log_info("%d", bump());
        kyb_log_debug("%d", bump());
        kyb_log_trace("%d", bump());
        assert_int_equal(side_effects, 0);
        out = take_output(fd);
        assert_string_equal(out, "");
        kyb_log_warn("%d", bump());
        kyb_log_error("%d", bump());
        assert_int_equal(side_effects, 2);
        free(out);
        out = take_output(fd);
        assert_non_null(strstr(out, "WARN "));
        assert_non_null(strstr(out, "ERROR"));
        assert_false(kyb_log_enabled(KYB_LOG_INFO));
        assert_true(kyb_log_enabled(KYB_LOG_WARN));
}

static void test_error_ctx(void **state)
{
        int fd = *(int *)*state;
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *out = NULL;
        json_t *j;

        kyb_error_set(&err, ENOENT, "open %s", "inventory.img");
        kyb_log_setup(KYB_LOG_ERROR, KYB_LOG_JSON, fd);
        errno = EBUSY;
        kyb_log_error_ctx(err, "restore %s", "pod/x");
        assert_int_equal(errno, EBUSY);
        out = take_output(fd);
        j = parse_record(out);
        assert_string_equal(json_string_value(json_object_get(j, "msg")),
                            "restore pod/x: open inventory.img: No such file or directory");
        assert_string_equal(json_string_value(json_object_get(j, "errno")), "ENOENT");
        assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
        json_decref(j);
}

static void test_level_and_format_names(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_log_level level;
        kyb_log_format format;

        assert_int_equal(kyb_log_level_from_string("debug", &level, &err), 0);
        assert_int_equal(level, KYB_LOG_DEBUG);
        assert_int_equal(kyb_log_level_from_string("WARNING", &level, &err), 0);
        assert_int_equal(level, KYB_LOG_WARN);
        assert_int_equal(kyb_log_level_from_string("trace", &level, &err), 0);
        assert_int_equal(level, KYB_LOG_TRACE);
        assert_int_equal(kyb_log_level_from_string("loud", &level, &err), -EINVAL);
        assert_non_null(strstr(kyb_error_message(err), "unknown log level 'loud'"));
        assert_int_equal(kyb_log_format_from_string("JSON", &format, &err), 0);
        assert_int_equal(format, KYB_LOG_JSON);
        assert_int_equal(kyb_log_format_from_string("xml", &format, &err), -EINVAL);
        assert_non_null(strstr(kyb_error_message(err), "unknown log format 'xml'"));
        assert_int_equal(kyb_log_format_from_string(NULL, &format, NULL), -EINVAL);
        assert_string_equal(kyb_log_level_to_string(KYB_LOG_INFO), "info");
}

#define THREADS 4
#define RECORDS 250

static void *log_many(void *arg)
{
        for (int i = 0; i < RECORDS; i++)
                kyb_log_info("thread %ld record %d %s", (long)(intptr_t)arg, i,
                             "padding padding padding padding padding padding padding");
        return NULL;
}

static void test_concurrent_records_do_not_interleave(void **state)
{
        int fd = *(int *)*state;
        _cleanup_free_ char *out = NULL;
        pthread_t t[THREADS];
        int lines = 0;

        kyb_log_setup(KYB_LOG_INFO, KYB_LOG_JSON, fd);
        for (intptr_t i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, log_many, (void *)i), 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        out = take_output(fd);
        for (char *save = NULL, *l = strtok_r(out, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
                json_decref(parse_record(l));
                lines++;
        }
        assert_int_equal(lines, THREADS * RECORDS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_json_record_fields, setup, teardown),
            cmocka_unit_test_setup_teardown(test_json_survives_invalid_utf8, setup, teardown),
            cmocka_unit_test_setup_teardown(test_text_record, setup, teardown),
            cmocka_unit_test_setup_teardown(test_disabled_level_skips_arguments, setup, teardown),
            cmocka_unit_test_setup_teardown(test_error_ctx, setup, teardown),
            cmocka_unit_test(test_level_and_format_names),
            cmocka_unit_test_setup_teardown(test_concurrent_records_do_not_interleave, setup,
                                            teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
