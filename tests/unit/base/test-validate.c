/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/validate.h"

static void expect_rejected(const char *id, const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_validate_id("container id", id, &err), -EINVAL);
        assert_non_null(strstr(kyb_error_message(err), "container id"));
        if (!strstr(kyb_error_message(err), fragment))
                fail_msg("'%s': message '%s' lacks '%s'", id, kyb_error_message(err), fragment);
}

static void test_rejects_bad_ids(void **state)
{
        char longid[KYB_ID_MAX_LEN + 2];

        memset(longid, 'a', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        expect_rejected("", "empty");
        expect_rejected(NULL, "empty");
        expect_rejected(".", "not allowed");
        expect_rejected("..", "not allowed");
        expect_rejected("a/b", "'/'");
        expect_rejected("../x", "'/'");
        expect_rejected("/etc", "'/'");
        expect_rejected(".hidden", "must start with a letter or digit");
        expect_rejected("-rf", "must start with a letter or digit");
        expect_rejected("_x", "must start with a letter or digit");
        expect_rejected(longid, "longer than 128");
        expect_rejected("a\nb", "control character 0x0a at offset 1");
        expect_rejected("a\x1b[31m", "control character 0x1b");
        expect_rejected("a b", "character ' ' at offset 1");
        expect_rejected("a$b", "'$'");
        expect_rejected("caf\xc3\xa9", "non-ASCII byte 0xc3");
}

static void test_accepts_good_ids(void **state)
{
        static const char *const ok[] = {
            "a",
            "0",
            "pod-1.ckpt_2",
            "A.b-C_d",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        };
        char maxid[KYB_ID_MAX_LEN + 1];

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                assert_int_equal(kyb_validate_id("id", ok[i], NULL), 0);
        memset(maxid, 'z', sizeof(maxid) - 1);
        maxid[sizeof(maxid) - 1] = '\0';
        assert_int_equal(kyb_validate_id("id", maxid, NULL), 0);
}

static void test_path_join_id(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *a = NULL;
        _cleanup_free_ char *b = NULL;
        _cleanup_free_ char *c = NULL;
        char *bad = (char *)"sentinel";

        assert_int_equal(kyb_path_join_id("/var/lib/kyb", "abc", &a, &err), 0);
        assert_string_equal(a, "/var/lib/kyb/abc");
        assert_int_equal(kyb_path_join_id("/var/lib/kyb//", "abc", &b, &err), 0);
        assert_string_equal(b, "/var/lib/kyb/abc");
        assert_int_equal(kyb_path_join_id("/", "abc", &c, &err), 0);
        assert_string_equal(c, "/abc");
        assert_int_equal(kyb_path_join_id("/var/lib/kyb", "../etc", &bad, &err), -EINVAL);
        assert_null(bad);
        assert_non_null(strstr(kyb_error_message(err), "invalid id"));
        assert_int_equal(kyb_path_join_id("", "abc", &bad, &err), -EINVAL);
}

static void test_validate_pid(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_validate_pid("pid", 1, &err), 0);
        assert_int_equal(kyb_validate_pid("pid", 4194304, &err), 0);
        assert_int_equal(kyb_validate_pid("pid", 0, &err), -EINVAL);
        assert_int_equal(kyb_validate_pid("pid", -1, &err), -EINVAL);
        assert_int_equal(kyb_validate_pid("target pid", 4194305, &err), -EINVAL);
        assert_string_equal(kyb_error_message(err),
                            "invalid target pid 4194305: must be in 1..4194304");
        assert_int_equal(kyb_validate_pid("pid", INT64_MAX, NULL), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_rejects_bad_ids),
            cmocka_unit_test(test_accepts_good_ids),
            cmocka_unit_test(test_path_join_id),
            cmocka_unit_test(test_validate_pid),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
