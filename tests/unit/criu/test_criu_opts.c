/* SPDX-License-Identifier: Apache-2.0 */
/* src/lib/criu without CRIU: option mapping, validation, feature checks,
 * log Error-line extraction and the failure message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "criu/criu-internal.h"

static void assert_contains(const char *s, const char *want)
{
        if (!s || !strstr(s, want))
                fail_msg("'%s' lacks '%s'", s ? s : "(null)", want);
}

/* Builds pb for o and returns it packed and unpacked again, so what is
 * checked is what goes over the wire. */
static CriuOpts *wire(const kyb_criu_opts *o, kyb_criu_op op, int images_fd, int work_fd)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_criu_pb_opts pb;
        uint8_t buf[4096];
        size_t len;
        CriuOpts *back;

        assert_int_equal(kyb_criu_opts_validate(o, op, &err), 0);
        assert_int_equal(kyb_criu_pb_opts_build(o, op, images_fd, work_fd, &pb, &err), 0);
        len = criu_opts__get_packed_size(&pb.opts);
        assert_true(len < sizeof(buf));
        criu_opts__pack(&pb.opts, buf);
        kyb_criu_pb_opts_free(&pb);
        back = criu_opts__unpack(NULL, len, buf);
        assert_non_null(back);
        return back;
}

static void test_minimal_dump_keeps_criu_defaults(void **state)
{
        kyb_criu_opts o = {.pid = 42, .images_dir_fd = 7};
        CriuOpts *pb = wire(&o, KYB_CRIU_OP_DUMP, 7, -1);

        assert_int_equal(pb->images_dir_fd, 7);
        assert_null(pb->images_dir);
        assert_true(pb->has_pid);
        assert_int_equal(pb->pid, 42);
        assert_string_equal(pb->log_file, "dump.log");
        /* Nothing the caller did not ask for is sent: CRIU's defaults rule. */
        assert_false(pb->has_leave_running);
        assert_false(pb->has_track_mem);
        assert_false(pb->has_shell_job);
        assert_false(pb->has_notify_scripts);
        assert_false(pb->has_work_dir_fd);
        assert_false(pb->has_log_level);
        assert_int_equal(pb->log_level, 2);
        assert_false(pb->has_ghost_limit);
        assert_false(pb->has_manage_cgroups_mode);
        assert_false(pb->has_lazy_pages);
        assert_int_equal(pb->n_ext_mnt, 0);
        criu_opts__free_unpacked(pb, NULL);
}

static int dummy_notify(const kyb_criu_notification *n, void *data, kyb_error **err)
{
        return 0;
}

static void test_full_dump_mapping(void **state)
{
        const kyb_criu_ext_mount mnt[] = {{"/data", "data"}, {"/etc/hosts", "hosts"}};
        const char *const ext[] = {"mnt[/x]:x", "net[4026531992]:extnet"};
        kyb_criu_opts o = {
            .pid = 123,
            .images_dir = "/img",
            .parent_img = "../pre1",
            .leave_running = true,
            .shell_job = true,
            .tcp_established = true,
            .ext_unix_sk = true,
            .file_locks = true,
            .manage_cgroups = true,
            .cgroups_mode = KYB_CRIU_CG_FULL,
            .ext_mnt = mnt,
            .n_ext_mnt = 2,
            .external = ext,
            .n_external = 2,
            .ghost_limit = 4096,
            .log_level = 4,
            .log_file = "ckpt.log",
            .freeze_timeout_s = 7,
            .notify = dummy_notify,
        };
        CriuOpts *pb = wire(&o, KYB_CRIU_OP_DUMP, 9, 11);

        assert_int_equal(pb->images_dir_fd, 9);
        assert_true(pb->has_work_dir_fd);
        assert_int_equal(pb->work_dir_fd, 11);
        assert_string_equal(pb->parent_img, "../pre1");
        assert_true(pb->has_track_mem && pb->track_mem); /* implied by parent_img */
        assert_true(pb->has_leave_running && pb->leave_running);
        assert_true(pb->has_shell_job && pb->shell_job);
        assert_true(pb->has_tcp_established && pb->tcp_established);
        assert_true(pb->has_ext_unix_sk && pb->ext_unix_sk);
        assert_true(pb->has_file_locks && pb->file_locks);
        assert_true(pb->has_manage_cgroups && pb->manage_cgroups);
        assert_true(pb->has_manage_cgroups_mode);
        assert_int_equal(pb->manage_cgroups_mode, CRIU_CG_MODE__FULL);
        assert_int_equal(pb->n_ext_mnt, 2);
        assert_string_equal(pb->ext_mnt[1]->key, "/etc/hosts");
        assert_string_equal(pb->ext_mnt[1]->val, "hosts");
        assert_int_equal(pb->n_external, 2);
        assert_string_equal(pb->external[1], "net[4026531992]:extnet");
        assert_true(pb->has_ghost_limit);
        assert_int_equal(pb->ghost_limit, 4096);
        assert_true(pb->has_log_level);
        assert_int_equal(pb->log_level, 4);
        assert_string_equal(pb->log_file, "ckpt.log");
        assert_true(pb->has_timeout);
        assert_int_equal(pb->timeout, 7);
        assert_true(pb->has_notify_scripts && pb->notify_scripts);
        criu_opts__free_unpacked(pb, NULL);
}

static void test_restore_mapping(void **state)
{
        kyb_criu_opts o = {
            .images_dir = "/img",
            .lazy_pages = true,
            .restore_sibling = true,
            .root = "/",
            .orphan_pts_master = true,
            .cgroups_mode = KYB_CRIU_CG_IGNORE,
        };
        CriuOpts *pb = wire(&o, KYB_CRIU_OP_RESTORE, -1, -1);

        /* No fd: the path goes on the wire and images_dir_fd says so. */
        assert_int_equal(pb->images_dir_fd, -1);
        assert_string_equal(pb->images_dir, "/img");
        assert_false(pb->has_pid);
        assert_string_equal(pb->log_file, "restore.log");
        assert_true(pb->has_lazy_pages && pb->lazy_pages);
        assert_true(pb->has_rst_sibling && pb->rst_sibling);
        assert_string_equal(pb->root, "/");
        assert_true(pb->has_orphan_pts_master && pb->orphan_pts_master);
        assert_true(pb->has_manage_cgroups_mode);
        assert_int_equal(pb->manage_cgroups_mode, CRIU_CG_MODE__IGNORE);
        assert_false(pb->has_leave_running);
        criu_opts__free_unpacked(pb, NULL);
}

static void test_pre_dump_request(void **state)
{
        kyb_criu_opts o = {.pid = 5, .images_dir = "/img"};
        CriuOpts *pb = wire(&o, KYB_CRIU_OP_PRE_DUMP, 8, -1);

        assert_string_equal(pb->log_file, "pre-dump.log");
        assert_int_equal(kyb_criu_op_req_type(KYB_CRIU_OP_PRE_DUMP),
                         CRIU_REQ_TYPE__SINGLE_PRE_DUMP);
        assert_int_equal(kyb_criu_op_req_type(KYB_CRIU_OP_DUMP), CRIU_REQ_TYPE__DUMP);
        assert_int_equal(kyb_criu_op_req_type(KYB_CRIU_OP_RESTORE), CRIU_REQ_TYPE__RESTORE);
        criu_opts__free_unpacked(pb, NULL);
}

static void expect_invalid(const kyb_criu_opts *o, kyb_criu_op op, const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_criu_opts_validate(o, op, &err), -EINVAL);
        assert_contains(kyb_error_message(err), fragment);
}

static void test_validation(void **state)
{
        const kyb_criu_ext_mount bad_mnt[] = {{"/data", NULL}};
        const char *const empty_ext[] = {""};

        expect_invalid(&(kyb_criu_opts){.pid = 1}, KYB_CRIU_OP_DUMP, "no images directory");
        /* fds 0-2 are "unset", so zeroed options never hand CRIU stdin. */
        expect_invalid(&(kyb_criu_opts){.pid = 1, .images_dir_fd = 2}, KYB_CRIU_OP_DUMP,
                       "no images directory");
        expect_invalid(&(kyb_criu_opts){.images_dir = "/i"}, KYB_CRIU_OP_DUMP, "pid");
        expect_invalid(&(kyb_criu_opts){.pid = -1, .images_dir = "/i"}, KYB_CRIU_OP_DUMP, "pid");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i"}, KYB_CRIU_OP_RESTORE,
                       "pid is a dump option");
        expect_invalid(&(kyb_criu_opts){.images_dir = "/i", .leave_running = true},
                       KYB_CRIU_OP_RESTORE, "dump options");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .lazy_pages = true},
                       KYB_CRIU_OP_DUMP, "lazy_pages");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .root = "/"},
                       KYB_CRIU_OP_PRE_DUMP, "restore options");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .log_file = "a/b.log"},
                       KYB_CRIU_OP_DUMP, "plain file name");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .log_file = ".."},
                       KYB_CRIU_OP_DUMP, "plain file name");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .log_level = 5},
                       KYB_CRIU_OP_DUMP, "log_level 5");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .cgroups_mode = 42},
                       KYB_CRIU_OP_DUMP, "cgroups_mode");
        expect_invalid(
            &(kyb_criu_opts){.pid = 3, .images_dir = "/i", .ext_mnt = bad_mnt, .n_ext_mnt = 1},
            KYB_CRIU_OP_DUMP, "ext_mnt[0]");
        expect_invalid(&(kyb_criu_opts){.pid = 3, .images_dir = "/i", .n_ext_mnt = 1},
                       KYB_CRIU_OP_DUMP, "ext_mnt is NULL");
        expect_invalid(
            &(kyb_criu_opts){.pid = 3, .images_dir = "/i", .external = empty_ext, .n_external = 1},
            KYB_CRIU_OP_DUMP, "external[0]");
}

static void expect_feature_missing(const kyb_criu_opts *o, kyb_criu_op op,
                                   const kyb_criu_feature_set *f, const char *fragment)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_criu_opts_check_features(o, op, f, &err), -ENOTSUP);
        assert_contains(kyb_error_message(err), fragment);
}

static void test_feature_checks(void **state)
{
        const kyb_criu_feature_set none = {0};
        const kyb_criu_feature_set all = {.mem_track = true, .lazy_pages = true};
        kyb_criu_opts dump = {.pid = 1, .images_dir = "/i"};
        kyb_criu_opts track = {.pid = 1, .images_dir = "/i", .track_mem = true};
        kyb_criu_opts parent = {.pid = 1, .images_dir = "/i", .parent_img = "../p"};
        kyb_criu_opts lazy = {.images_dir = "/i", .lazy_pages = true};

        assert_int_equal(kyb_criu_opts_check_features(&dump, KYB_CRIU_OP_DUMP, &none, NULL), 0);
        expect_feature_missing(&dump, KYB_CRIU_OP_PRE_DUMP, &none,
                               "pre-dump needs memory tracking");
        expect_feature_missing(&dump, KYB_CRIU_OP_PRE_DUMP, &none, "soft-dirty");
        expect_feature_missing(&track, KYB_CRIU_OP_DUMP, &none, "track_mem needs");
        expect_feature_missing(&parent, KYB_CRIU_OP_DUMP, &none, "parent_img needs");
        expect_feature_missing(&lazy, KYB_CRIU_OP_RESTORE, &none, "userfaultfd");
        assert_int_equal(kyb_criu_opts_check_features(&dump, KYB_CRIU_OP_PRE_DUMP, &all, NULL), 0);
        assert_int_equal(kyb_criu_opts_check_features(&parent, KYB_CRIU_OP_DUMP, &all, NULL), 0);
        assert_int_equal(kyb_criu_opts_check_features(&lazy, KYB_CRIU_OP_RESTORE, &all, NULL), 0);
}

static void test_event_names(void **state)
{
        assert_int_equal(kyb_criu_event_from_name("pre-dump"), KYB_CRIU_EV_PRE_DUMP);
        assert_int_equal(kyb_criu_event_from_name("post-resume"), KYB_CRIU_EV_POST_RESUME);
        assert_int_equal(kyb_criu_event_from_name("network-lock"), KYB_CRIU_EV_NETWORK_LOCK);
        assert_int_equal(kyb_criu_event_from_name("orphan-pts-master"),
                         KYB_CRIU_EV_ORPHAN_PTS_MASTER);
        assert_int_equal(kyb_criu_event_from_name("something-new"), KYB_CRIU_EV_OTHER);
        assert_int_equal(kyb_criu_event_from_name(NULL), KYB_CRIU_EV_OTHER);
        assert_string_equal(kyb_criu_event_name(KYB_CRIU_EV_POST_RESTORE), "post-restore");
        assert_string_equal(kyb_criu_event_name(KYB_CRIU_EV_OTHER), "other");
}

static void test_error_line_detection(void **state)
{
        assert_true(kyb_criu_is_error_line("(00.012345) Error (criu/cr-dump.c:2093): boom"));
        assert_true(
            kyb_criu_is_error_line("(00.035990)      1: Error (criu/mount.c:48): mnt: BUG"));
        assert_true(kyb_criu_is_error_line("Error (criu/cr-service.c:1): no timestamp at -v2"));
        assert_true(kyb_criu_is_error_line("(00.1) Error: short form"));
        assert_false(kyb_criu_is_error_line("(00.012345) Warn  (criu/x.c:1): careful"));
        assert_false(kyb_criu_is_error_line("(00.012345) Dumping FAILED."));
        assert_false(kyb_criu_is_error_line("(00.012345) cg: Error in name"));
        assert_false(kyb_criu_is_error_line("(00.012345)      1: Errors are fine"));
        assert_false(kyb_criu_is_error_line(""));
}

static const char sample_log[] =
    "(00.000001) Version: 4.1.1\n"
    "(00.030001) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self\n"
    "(00.030100) Warn  (compel/x.c:1): not an error\n"
    "(00.031000) Error (a.c:1): one\n"
    "(00.031001)      1: Error (b.c:2): two\n"
    "(00.031002) Error (c.c:3): three\r\n"
    "(00.031003) Error (d.c:4): four\n"
    "(00.031004) Error (e.c:5): five\n"
    "(00.031005) Error (criu/cr-dump.c:2111): Dumping FAILED.";

static void test_last_error_lines(void **state)
{
        _cleanup_free_ char *all = kyb_criu_text_errors(sample_log, strlen(sample_log), 5);
        _cleanup_free_ char *two = kyb_criu_text_errors(sample_log, strlen(sample_log), 2);
        const char *quiet = "(0.1) Info\n(0.2) Warn  (x): y\n";
        _cleanup_free_ char *none = kyb_criu_text_errors(quiet, strlen(quiet), 5);

        /* The last five, oldest first, trailing CR/LF trimmed, one line. */
        assert_string_equal(all, "(00.031001)      1: Error (b.c:2): two; "
                                 "(00.031002) Error (c.c:3): three; "
                                 "(00.031003) Error (d.c:4): four; "
                                 "(00.031004) Error (e.c:5): five; "
                                 "(00.031005) Error (criu/cr-dump.c:2111): Dumping FAILED.");
        assert_string_equal(two, "(00.031004) Error (e.c:5): five; "
                                 "(00.031005) Error (criu/cr-dump.c:2111): Dumping FAILED.");
        assert_null(none);
}

static void test_log_file_scan(void **state)
{
        char dir[] = "/tmp/kyb-criu-log-XXXXXX";
        _cleanup_close_ int dfd = -1;
        _cleanup_free_ char *lines = NULL, *missing = NULL, *longest = NULL;
        char path[256], big[600];
        FILE *f;

        assert_non_null(mkdtemp(dir));
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        snprintf(path, sizeof(path), "%s/dump.log", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        /* Megabytes of debug output before the failure are streamed, not
         * loaded: only the ring of Error lines is kept. */
        for (int i = 0; i < 50000; i++)
                fprintf(f, "(00.%06d) Dumping page %d of many, nothing to see here\n", i, i);
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        fprintf(f, "%s\n", sample_log);
        fprintf(f, "(01.000000) Error (criu/files.c:9): %s\n", big);
        fprintf(f, "(01.000001) Error (criu/files.c:10): final");
        fclose(f);
        kyb_criu_log_errors(dfd, "dump.log", 3, &lines);
        assert_non_null(lines);
        assert_null(strstr(lines, "rlimit"));
        assert_null(strstr(lines, "five"));
        assert_true(!strncmp(lines,
                             "(00.031005) Error (criu/cr-dump.c:2111): Dumping FAILED.; "
                             "(01.000000) Error (criu/files.c:9): xxx",
                             97));
        /* A long line is cut at 300 characters. */
        longest = strndup(strstr(lines, "(01.000000)"), strcspn(strstr(lines, "(01.000000)"), ";"));
        assert_int_equal(strlen(longest), 300);
        assert_contains(lines, "; (01.000001) Error (criu/files.c:10): final");
        kyb_criu_log_errors(dfd, "nope.log", 5, &missing);
        assert_null(missing);
        kyb_criu_log_errors(-1, "dump.log", 5, &missing);
        assert_null(missing);
        unlink(path);
        rmdir(dir);
}

static void expect_fail(int errnum, const char *cr_errmsg, const char *lines, const char *out,
                        int want_errno, const char *want)
{
        _cleanup_error_ kyb_error *err = NULL;

        assert_int_equal(kyb_criu_fail(&err, errnum, "criu dump pid 123", cr_errmsg, lines, out),
                         -want_errno);
        assert_string_equal(kyb_error_message(err), want);
        assert_int_equal(kyb_error_errno(err), want_errno);
}

static void test_failure_message(void **state)
{
        const char *lines = "(00.01) Error (criu/util.c:1533): rlimit: no; "
                            "(00.02) Error (criu/cr-dump.c:2093): Dumping FAILED.";

        /* cr_errmsg comes with its newline and repeats a log line: once. */
        expect_fail(ESRCH, "Error (criu/util.c:1533): rlimit: no\n", lines, "", ESRCH,
                    "criu dump pid 123: (00.01) Error (criu/util.c:1533): rlimit: no; "
                    "(00.02) Error (criu/cr-dump.c:2093): Dumping FAILED.");
        /* An older first error that scrolled out of the quoted lines. */
        expect_fail(0, "Error (x.c:1): the first one", "(0.2) Error (y.c:2): last", NULL, EIO,
                    "criu dump pid 123: (0.2) Error (y.c:2): last "
                    "(first error: Error (x.c:1): the first one)");
        /* No log: CRIU's message and its stderr. */
        expect_fail(EBADRQC, "Error (s.c:1): bad request", NULL,
                    "Warn: x\nError (criu/cr-service.c:7): Can't chdir to work_dir\n", EBADRQC,
                    "criu dump pid 123: Error (s.c:1): bad request; criu: Error "
                    "(criu/cr-service.c:7): Can't chdir to work_dir");
        expect_fail(0, NULL, NULL, "plain words\non two lines\n\n", EIO,
                    "criu dump pid 123: criu: plain words on two lines");
        expect_fail(0, "", NULL, "", EIO, "criu dump pid 123: failed without a reason in its log");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_minimal_dump_keeps_criu_defaults),
            cmocka_unit_test(test_full_dump_mapping),
            cmocka_unit_test(test_restore_mapping),
            cmocka_unit_test(test_pre_dump_request),
            cmocka_unit_test(test_validation),
            cmocka_unit_test(test_feature_checks),
            cmocka_unit_test(test_event_names),
            cmocka_unit_test(test_error_line_detection),
            cmocka_unit_test(test_last_error_lines),
            cmocka_unit_test(test_log_file_scan),
            cmocka_unit_test(test_failure_message),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
