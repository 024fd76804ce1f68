/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <cmocka.h>

#include "base/runner.h"

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void assert_msg(const kyb_error *err, const char *want)
{
        if (strcmp(kyb_error_message(err), want))
                fail_msg("got '%s'\nwant '%s'", kyb_error_message(err), want);
}

static void test_exit_codes(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts ok = {.argv = ARGV("/bin/true")};
        kyb_run_opts three = {.argv = ARGV("/bin/sh", "-c", "exit 3")};

        assert_int_equal(kyb_run(&ok, &r, &err), 0);
        assert_int_equal(r.exit_code, 0);
        assert_int_equal(r.signal, 0);
        assert_false(r.timed_out);
        assert_true(r.pid > 0);
        assert_string_equal(r.out.data, "");
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run_check(&ok, &r, &err), 0);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&three, &r, &err), 0); /* it ran: not an error */
        assert_int_equal(r.exit_code, 3);
        assert_null(err);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run_check(&three, &r, &err), -EIO);
        assert_msg(err, "sh exited with code 3");
}

static void test_check_quotes_stderr_tail(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts o = {.argv = ARGV("/bin/sh", "-c",
                                       "echo first >&2; echo 'line two' >&2; echo >&2; "
                                       "echo last >&2; printf 'fourth\\n\\n' >&2; exit 1")};

        assert_int_equal(kyb_run_check(&o, &r, &err), -EIO);
        assert_msg(err, "sh exited with code 1: line two; last; fourth");
}

static void test_killed_by_signal(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts o = {.argv = ARGV("/bin/sh", "-c", "echo dying >&2; kill -KILL $$")};

        assert_int_equal(kyb_run(&o, &r, &err), 0);
        assert_int_equal(r.signal, SIGKILL);
        assert_int_equal(r.exit_code, -1);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run_check(&o, &r, &err), -EIO);
        assert_msg(err, "sh killed by signal 9 (SIGKILL): dying");
}

static void test_captures_stdout_and_stderr(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {.argv = ARGV("/bin/sh", "-c", "echo out; echo err >&2; echo more")};

        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        assert_string_equal(r.out.data, "out\nmore\n");
        assert_int_equal(r.out.len, 9);
        assert_string_equal(r.err.data, "err\n");
        assert_false(r.out.truncated);
        assert_false(r.err.truncated);
}

static void test_large_output_on_both_streams(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {
            .argv = ARGV("/bin/sh", "-c",
                         "head -c 300000 /dev/zero >&2; head -c 500000 /dev/zero; "
                         "head -c 300000 /dev/zero >&2"),
            .max_output = 1 << 20,
        };

        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        assert_int_equal(r.out.len, 500000);
        assert_int_equal(r.err.len, 600000);
        assert_false(r.err.truncated);
}

static void test_output_truncation(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {
            .argv = ARGV("/bin/sh", "-c", "printf abcdef; head -c 200000 /dev/zero; echo x >&2"),
            .max_output = 1000,
        };

        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        assert_int_equal(r.exit_code, 0); /* the child was not blocked or killed */
        assert_int_equal(r.out.len, 1000);
        assert_true(r.out.truncated);
        assert_memory_equal(r.out.data, "abcdef", 6);
        assert_int_equal(r.out.data[1000], '\0');
        assert_string_equal(r.err.data, "x\n");
        assert_false(r.err.truncated);
}

static void test_missing_binary(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts o = {.argv = ARGV("/x/y")};
        kyb_run_opts nopath = {.argv = ARGV("true")};
        kyb_run_opts path = {.argv = ARGV("true"), .search_path = true};
        kyb_run_opts empty = {.argv = ARGV("")};

        assert_int_equal(kyb_run(&o, &r, &err), -ENOENT);
        assert_msg(err, "spawn /x/y: No such file or directory");
        assert_int_equal(r.pid, -1);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run_check(&o, &r, NULL), -ENOENT);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&nopath, &r, &err), -ENOENT);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&path, &r, &err), 0);
        assert_int_equal(r.exit_code, 0);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&empty, &r, &err), -EINVAL);
}

static void test_timeout_kills(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts o = {.argv = ARGV("/bin/sleep", "30"), .timeout_ms = 200};

        assert_int_equal(kyb_run(&o, &r, &err), -ETIMEDOUT);
        assert_msg(err, "/bin/sleep timed out after 200 ms, killed");
        assert_true(r.timed_out);
        assert_int_equal(r.signal, SIGKILL);
        assert_true(r.duration_ms >= 200);
        assert_true(r.duration_ms < 5000);
        /* reaped: the pid is gone */
        assert_int_equal(kill(r.pid, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void test_timeout_term_then_kill(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts polite = {
            .argv = ARGV("/bin/sh", "-c", "trap 'exit 7' TERM; sleep 30 >/dev/null & wait"),
            .timeout_ms = 200,
            .term_grace_ms = 5000,
        };
        kyb_run_opts stubborn = {
            .argv = ARGV("/bin/sh", "-c", "trap '' TERM; exec sleep 30"),
            .timeout_ms = 200,
            .term_grace_ms = 200,
        };

        assert_int_equal(kyb_run(&polite, &r, &err), -ETIMEDOUT);
        assert_msg(err, "/bin/sh timed out after 200 ms, terminated");
        assert_int_equal(r.exit_code, 7);
        assert_true(r.duration_ms < 4000);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&stubborn, &r, &err), -ETIMEDOUT);
        assert_msg(err, "/bin/sh timed out after 200 ms, killed");
        assert_int_equal(r.signal, SIGKILL);
        assert_true(r.duration_ms >= 400);
        assert_true(r.duration_ms < 5000);
}

static void test_grandchild_holding_pipe(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {.argv = ARGV("/bin/sh", "-c", "sleep 3 & echo done")};

        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        assert_string_equal(r.out.data, "done\n");
        assert_true(r.duration_ms < 2500);
}

static void test_cwd_and_env(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        _cleanup_error_ kyb_error *err = NULL;
        kyb_run_opts pwd = {.argv = ARGV("/bin/pwd"), .cwd = "/usr/bin"};
        kyb_run_opts bad_cwd = {.argv = ARGV("/bin/pwd"), .cwd = "/nonexistent"};
        kyb_run_opts env = {.argv = ARGV("/usr/bin/env"), .envp = ARGV("FOO=bar", "A=b c")};
        kyb_run_opts inherit = {.argv = ARGV("/usr/bin/env")};

        assert_int_equal(kyb_run(&pwd, &r, &err), 0);
        assert_string_equal(r.out.data, "/usr/bin\n");
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&bad_cwd, &r, &err), -ENOENT);
        assert_msg(err, "spawn /bin/pwd in /nonexistent: No such file or directory");
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&env, &r, &err), 0);
        assert_string_equal(r.out.data, "FOO=bar\nA=b c\n");
        assert_int_equal(setenv("KYB_RUNNER_TEST", "inherited", 1), 0);
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&inherit, &r, &err), 0);
        assert_non_null(strstr(r.out.data, "KYB_RUNNER_TEST=inherited\n"));
}

static void test_stdin(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts devnull = {.argv = ARGV("/bin/cat"), .timeout_ms = 5000};
        kyb_run_opts from_fd = {.argv = ARGV("/bin/cat"), .stdin_from_fd = true};
        int p[2];

        assert_int_equal(kyb_run(&devnull, &r, NULL), 0);
        assert_string_equal(r.out.data, "");
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], "hello", 5), 5);
        close(p[1]);
        from_fd.stdin_fd = p[0];
        kyb_run_result_free(&r);
        assert_int_equal(kyb_run(&from_fd, &r, NULL), 0);
        assert_string_equal(r.out.data, "hello");
        close(p[0]);
}

/* An fd without O_CLOEXEC, as a careless library might leave one. */
static void test_no_fd_leaks(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {.argv = ARGV("/bin/ls", "/proc/self/fd")};
        int stray = open("/dev/null", O_RDONLY);
        char *save = NULL;
        int n = 0;

        assert_true(stray >= 0);
        assert_int_equal(dup2(stray, 57), 57);
        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        close(57);
        close(stray);
        /* ls itself holds one fd (3) on the directory it lists. */
        for (char *l = strtok_r(r.out.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (atoi(l) > 3)
                        fail_msg("fd %s leaked into the child", l);
                n++;
        }
        assert_int_equal(n, 4);
}

static void test_signal_state_is_reset(void **state)
{
        _cleanup_run_result_ kyb_run_result r = {0};
        kyb_run_opts o = {.argv = ARGV("/bin/sh", "-c", "kill -TERM $$; sleep 1; exit 0")};
        sigset_t term, old;

        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        assert_int_equal(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
        assert_int_equal(kyb_run(&o, &r, NULL), 0);
        assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
        assert_int_equal(r.signal, SIGTERM);
}

static void *run_echo(void *arg)
{
        char word[32];
        kyb_run_opts o = {.argv = ARGV("/bin/echo", word)};
        kyb_run_result r;
        bool ok = true;

        for (int i = 0; i < 10 && ok; i++) {
                snprintf(word, sizeof(word), "t%ld-%d", (long)(intptr_t)arg, i);
                ok = kyb_run(&o, &r, NULL) == 0 && !strncmp(r.out.data, word, strlen(word));
                kyb_run_result_free(&r);
        }
        return ok ? arg : NULL;
}

static void test_concurrent_runs(void **state)
{
        pthread_t t[4];

        for (intptr_t i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, run_echo, (void *)(i + 1)), 0);
        for (intptr_t i = 0; i < 4; i++) {
                void *ret;

                pthread_join(t[i], &ret);
                assert_ptr_equal(ret, (void *)(i + 1));
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_exit_codes),
            cmocka_unit_test(test_check_quotes_stderr_tail),
            cmocka_unit_test(test_killed_by_signal),
            cmocka_unit_test(test_captures_stdout_and_stderr),
            cmocka_unit_test(test_large_output_on_both_streams),
            cmocka_unit_test(test_output_truncation),
            cmocka_unit_test(test_missing_binary),
            cmocka_unit_test(test_timeout_kills),
            cmocka_unit_test(test_timeout_term_then_kill),
            cmocka_unit_test(test_grandchild_holding_pipe),
            cmocka_unit_test(test_cwd_and_env),
            cmocka_unit_test(test_stdin),
            cmocka_unit_test(test_no_fd_leaks),
            cmocka_unit_test(test_signal_state_is_reset),
            cmocka_unit_test(test_concurrent_runs),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
