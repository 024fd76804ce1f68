/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/error.h"

static void test_set_appends_strerror(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_error_set(&err, ENOENT, "opening %s", "/x"), -ENOENT);
        assert_string_equal(kyb_error_message(err), "opening /x: No such file or directory");
        assert_int_equal(kyb_error_errno(err), ENOENT);
}

static void test_setf_has_no_strerror(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_error_setf(&err, EINVAL, "bad %d", 7), -EINVAL);
        assert_string_equal(kyb_error_message(err), "bad 7");
        assert_int_equal(kyb_error_errno(err), EINVAL);
}

static void test_wrap_builds_path_and_keeps_errno(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        kyb_error_set(&err, EACCES, "open %s", "inventory.img");
        assert_int_equal(kyb_error_wrap(&err, -EIO, "criu"), -EACCES);
        assert_int_equal(kyb_error_wrap(&err, -EIO, "restore pod/%s", "x"), -EACCES);
        assert_string_equal(kyb_error_message(err),
                            "restore pod/x: criu: open inventory.img: Permission denied");
        assert_int_equal(kyb_error_errno(err), EACCES);
}

static void test_wrap_without_details_uses_fallback(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_error_wrap(&err, -ENOSPC, "write %s", "img"), -ENOSPC);
        assert_string_equal(kyb_error_message(err), "write img: No space left on device");
}

static void test_null_err_is_allowed(void **state)
{
        kyb_error *none = NULL;

        assert_int_equal(kyb_error_set(NULL, ENOENT, "x"), -ENOENT);
        assert_int_equal(kyb_error_setf(NULL, -EPERM, "x"), -EPERM);
        assert_int_equal(kyb_error_wrap(NULL, -ENOMEM, "x"), -ENOMEM);
        assert_int_equal(kyb_error_move(NULL, &none), -EIO);
        assert_string_equal(kyb_error_message(NULL), "unknown error");
        assert_int_equal(kyb_error_errno(NULL), 0);
}

static void test_errno_normalized(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_error_setf(&err, 0, "zero"), -EIO);
        assert_int_equal(kyb_error_errno(err), EIO);
        assert_int_equal(kyb_error_set(&err, -EBUSY, "negative"), -EBUSY);
        assert_string_equal(kyb_error_message(err), "negative: Device or resource busy");
}

static void test_move_transfers_ownership(void **state)
{
        _cleanup_error_ kyb_error *src = NULL;
        _cleanup_error_ kyb_error *dst = NULL;

        kyb_error_setf(&dst, EINVAL, "old");
        kyb_error_setf(&src, ETIMEDOUT, "new");
        assert_int_equal(kyb_error_move(&dst, &src), -ETIMEDOUT);
        assert_null(src);
        assert_string_equal(kyb_error_message(dst), "new");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_set_appends_strerror),
            cmocka_unit_test(test_setf_has_no_strerror),
            cmocka_unit_test(test_wrap_builds_path_and_keeps_errno),
            cmocka_unit_test(test_wrap_without_details_uses_fallback),
            cmocka_unit_test(test_null_err_is_allowed),
            cmocka_unit_test(test_errno_normalized),
            cmocka_unit_test(test_move_transfers_ownership),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
