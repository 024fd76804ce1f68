/* SPDX-License-Identifier: Apache-2.0 */
/* src/lib/container without containerd: `runc state` parsing, runc root
 * templates, command lines, error quoting, and the lookup, checkpoint and
 * spec.dump paths against a fake runc (a shell script we write). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "container/container-internal.h"

/* What runc 1.1.5 prints for a running containerd container. */
static const char state_json[] =
    "{\n"
    "  \"ociVersion\": \"1.0.2-dev\",\n"
    "  \"id\": \"web\",\n"
    "  \"pid\": 14949,\n"
    "  \"status\": \"running\",\n"
    "  \"bundle\": \"/run/containerd/io.containerd.runtime.v2.task/default/web\",\n"
    "  \"rootfs\": \"/run/containerd/io.containerd.runtime.v2.task/default/web/rootfs\",\n"
    "  \"created\": \"2026-11-25T17:57:35.080257341Z\",\n"
    "  \"owner\": \"\"\n"
    "}";

static void assert_contains(const char *s, const char *want)
{
        if (!s || !strstr(s, want))
                fail_msg("'%s' lacks '%s'", s ? s : "(null)", want);
}

static void assert_argv(const kyb_strv *argv, const char *const *want)
{
        size_t i;

        for (i = 0; want[i]; i++) {
                if (i >= argv->n || strcmp(argv->v[i], want[i]))
                        fail_msg("argv[%zu] is '%s', want '%s'", i,
                                 i < argv->n ? argv->v[i] : "(end)", want[i]);
        }
        assert_int_equal(argv->n, i);
        assert_null(argv->v[i]);
}

static void test_parse_state(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_container c = {0};

        assert_int_equal(kyb_runc_parse_state(state_json, strlen(state_json), &c, &err), 0);
        assert_string_equal(c.id, "web");
        assert_int_equal(c.pid, 14949);
        assert_int_equal(c.status, KYB_CONTAINER_RUNNING);
        assert_string_equal(c.bundle, "/run/containerd/io.containerd.runtime.v2.task/default/web");
        kyb_container_clear(&c);
}

static void test_parse_state_statuses(void **state)
{
        static const struct {
                const char *name;
                kyb_container_status want;
        } cases[] = {
            {"creating", KYB_CONTAINER_CREATING}, {"created", KYB_CONTAINER_CREATED},
            {"running", KYB_CONTAINER_RUNNING},   {"paused", KYB_CONTAINER_PAUSED},
            {"stopped", KYB_CONTAINER_STOPPED},   {"exploded", KYB_CONTAINER_UNKNOWN},
        };

        for (size_t i = 0; i < KYB_ARRAY_SIZE(cases); i++) {
                _cleanup_error_ kyb_error *err = NULL;
                kyb_container c = {0};
                char json[256];

                snprintf(json, sizeof(json),
                         "{\"id\":\"a\",\"pid\":0,\"status\":\"%s\",\"bundle\":\"/b\"}",
                         cases[i].name);
                assert_int_equal(kyb_runc_parse_state(json, strlen(json), &c, &err), 0);
                assert_int_equal(c.status, cases[i].want);
                if (cases[i].want != KYB_CONTAINER_UNKNOWN)
                        assert_string_equal(kyb_container_status_name(c.status), cases[i].name);
                kyb_container_clear(&c);
        }
}

static void test_parse_state_rejects(void **state)
{
        static const struct {
                const char *json;
                const char *msg;
        } cases[] = {
            {"not json", "runc state: line 1:"},
            {"[]", "expected a JSON object"},
            {"{\"pid\":1,\"status\":\"running\",\"bundle\":\"/b\"}", "id: expected a string"},
            {"{\"id\":\"a\",\"pid\":\"1\",\"status\":\"running\",\"bundle\":\"/b\"}",
             "pid: expected an integer"},
            {"{\"id\":\"a\",\"pid\":-1,\"status\":\"running\",\"bundle\":\"/b\"}",
             "pid: -1 is out of range"},
            {"{\"id\":\"a\",\"pid\":99999999,\"status\":\"running\",\"bundle\":\"/b\"}",
             "out of range"},
            {"{\"id\":\"a\",\"pid\":1,\"bundle\":\"/b\"}", "status: expected a string"},
            {"{\"id\":\"a\",\"pid\":1,\"status\":\"running\",\"bundle\":\"b\"}",
             "bundle: 'b' is not an absolute path"},
            {"{\"id\":\"a\",\"id\":\"b\",\"pid\":1,\"status\":\"running\",\"bundle\":\"/b\"}",
             "duplicate"},
        };

        for (size_t i = 0; i < KYB_ARRAY_SIZE(cases); i++) {
                _cleanup_error_ kyb_error *err = NULL;
                kyb_container c = {0};

                assert_int_equal(
                    kyb_runc_parse_state(cases[i].json, strlen(cases[i].json), &c, &err), -EBADMSG);
                assert_contains(kyb_error_message(err), cases[i].msg);
                kyb_container_clear(&c);
        }
}

static void test_templates(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_free_ char *s = NULL;
        char **v = NULL;

        assert_int_equal(
            kyb_runc_parse_templates("/run/a/{namespace}:/x/{namespace}/{namespace}", &v, &err), 0);
        assert_string_equal(v[0], "/run/a/{namespace}");
        assert_string_equal(v[1], "/x/{namespace}/{namespace}");
        assert_null(v[2]);
        assert_int_equal(kyb_runc_expand_root(v[1], "k8s.io", &s, &err), 0);
        assert_string_equal(s, "/x/k8s.io/k8s.io");
        free(s);
        s = NULL;
        assert_int_equal(kyb_runc_expand_root("/run/runc", "k8s.io", &s, &err), 0);
        assert_string_equal(s, "/run/runc");
        kyb_runc_free_templates(v);

        assert_int_equal(kyb_runc_parse_templates("/a:relative/{namespace}", &v, &err), -EINVAL);
        assert_contains(kyb_error_message(err), "runc root 'relative/{namespace}'");
        assert_int_equal(kyb_runc_parse_templates("/a::/b", &v, &err), -EINVAL);
        assert_int_equal(kyb_runc_parse_templates("/a:", &v, &err), -EINVAL);
}

static void test_new_defaults(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_runc_config cfg = {0};
        kyb_runc *r = NULL;

        assert_int_equal(kyb_runc_new(&cfg, &r, &err), 0);
        assert_string_equal(r->runc_path, "runc");
        assert_true(r->search_path);
        assert_null(r->criu_path);
        assert_string_equal(r->templates[0], KYB_RUNC_DEFAULT_ROOT);
        assert_null(r->templates[1]);
        kyb_runc_free(r);

        cfg = (kyb_runc_config){.runc_path = "/usr/sbin/runc",
                                .root_templates = "/r/{namespace}",
                                .criu_path = "/usr/local/sbin/criu"};
        assert_int_equal(kyb_runc_new(&cfg, &r, &err), 0);
        assert_false(r->search_path);
        assert_string_equal(r->criu_path, "/usr/local/sbin/criu");
        kyb_runc_free(r);

        cfg.root_templates = "run/{namespace}";
        assert_int_equal(kyb_runc_new(&cfg, &r, &err), -EINVAL);
}

static kyb_runc *new_runc(const char *path, const char *roots, const char *criu)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_runc_config cfg = {.runc_path = path, .root_templates = roots, .criu_path = criu};
        kyb_runc *r = NULL;

        if (kyb_runc_new(&cfg, &r, &err) < 0)
                fail_msg("kyb_runc_new: %s", kyb_error_message(err));
        return r;
}

static void test_checkpoint_argv(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_strv_ kyb_strv argv = {0};
        kyb_runc *r = new_runc(NULL, NULL, "/usr/local/sbin/criu");
        kyb_container c = {
            .namespace_ = "default", .id = "web", .root = "/run/containerd/runc/default"};
        kyb_runc_checkpoint_opts o = {
            .images_dir = "/s/.inprogress-x/checkpoint",
            .work_dir = "/w/dump-x",
            .leave_running = true,
            .flags = {.tcp_established = true,
                      .ext_unix_sk = true,
                      .shell_job = true,
                      .file_locks = true},
        };

        assert_int_equal(kyb_runc_checkpoint_argv(r, &c, &o, &argv, &err), 0);
        assert_argv(&argv, (const char *const[]){
                               "runc", "--criu", "/usr/local/sbin/criu", "--log-format", "json",
                               "--root", "/run/containerd/runc/default", "checkpoint",
                               "--image-path", "/s/.inprogress-x/checkpoint", "--work-path",
                               "/w/dump-x", "--leave-running", "--tcp-established", "--file-locks",
                               "--ext-unix-sk", "--shell-job", "web", NULL});
        kyb_strv_clear(&argv);

        o = (kyb_runc_checkpoint_opts){.images_dir = "/i", .work_dir = "/w"};
        assert_int_equal(kyb_runc_checkpoint_argv(r, &c, &o, &argv, &err), 0);
        assert_argv(&argv, (const char *const[]){
                               "runc", "--criu", "/usr/local/sbin/criu", "--log-format", "json",
                               "--root", "/run/containerd/runc/default", "checkpoint",
                               "--image-path", "/i", "--work-path", "/w", "web", NULL});
        kyb_strv_clear(&argv);

        o.work_dir = "work";
        assert_int_equal(kyb_runc_checkpoint_argv(r, &c, &o, &argv, &err), -EINVAL);
        assert_contains(kyb_error_message(err), "work path 'work' is not an absolute path");
        kyb_runc_free(r);
}

static void test_restore_argv(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_strv_ kyb_strv argv = {0};
        kyb_runc *r = new_runc("/usr/sbin/runc", NULL, NULL);
        kyb_runc_restore_opts o = {
            .root = "/run/containerd/runc/k8s.io",
            .images_dir = "/s/c1/checkpoint",
            .work_dir = "/w/restore-c1",
            .bundle = "/b/web",
            .flags = {.tcp_established = true},
        };

        assert_int_equal(
            kyb_runc_restore_argv(r, "web-2", &o, "/w/restore-c1/init.pid", &argv, &err), 0);
        assert_argv(&argv, (const char *const[]){"/usr/sbin/runc", "--log-format", "json", "--root",
                                                 "/run/containerd/runc/k8s.io", "restore",
                                                 "--detach", "--image-path", "/s/c1/checkpoint",
                                                 "--work-path", "/w/restore-c1", "--bundle",
                                                 "/b/web", "--pid-file", "/w/restore-c1/init.pid",
                                                 "--tcp-established", "web-2", NULL});
        kyb_strv_clear(&argv);

        o.bundle = "b/web";
        assert_int_equal(kyb_runc_restore_argv(r, "web-2", &o, "/p", &argv, &err), -EINVAL);
        assert_contains(kyb_error_message(err), "bundle 'b/web'");
        kyb_runc_free(r);
}

static void test_stderr_errors(void **state)
{
        static const char text[] =
            "{\"level\":\"info\",\"msg\":\"hello\",\"time\":\"t\"}\n"
            "{\"level\":\"error\",\"msg\":\"criu failed: type NOTIFY errno 0\\nlog file: "
            "/w/dump.log\",\"time\":\"t\"}\n"
            "\n"
            "panic: not json at all\n"
            "{\"level\":\"fatal\",\"msg\":\"bye\"}\n";
        static const char quiet[] = "{\"level\":\"warning\",\"msg\":\"x\"}\n";
        _cleanup_free_ char *s = kyb_runc_stderr_errors(text, strlen(text));

        assert_string_equal(s, "criu failed: type NOTIFY errno 0 log file: /w/dump.log; panic: "
                               "not json at all; bye");
        assert_null(kyb_runc_stderr_errors(quiet, strlen(quiet)));
}

static void test_criu_errors(void **state)
{
        static const char log[] =
            "(00.001) Version: 4.1.1\n"
            "(00.058794) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE\n"
            "(00.176209) Error (criu/page-xfer.c:263): page-xfer: Unable to splice data\n"
            "(00.176231) Error (criu/bfd.c:131): bfd: Error flushing image: No space left\n"
            "(00.176232) Error (criu/bfd.c:131): bfd: Error flushing image: No space left\n"
            "(00.176332) Error (criu/mem.c:672): Can't dump page with parasite\n"
            "(00.200000)      1: Error (criu/cr-restore.c:1): restore task\n"
            "(00.246526) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"
            "(00.300000) Errors are fine in prose\n";
        _cleanup_free_ char *s = kyb_runc_criu_errors(log, strlen(log), 4);
        _cleanup_free_ char *none = kyb_runc_criu_errors("(00.1) all good\n", 16, 4);

        assert_string_equal(s, "Error (criu/bfd.c:131): bfd: Error flushing image: No space left; "
                               "Error (criu/mem.c:672): Can't dump page with parasite; "
                               "Error (criu/cr-restore.c:1): restore task; "
                               "Error (criu/cr-dump.c:2111): Dumping FAILED.");
        assert_null(none);
}

/* ------------------------------------------------------------------------ */
/* against a fake runc */

typedef struct fixture {
        char dir[64];
        char runc[128];
        char root[128];
        char work[128];
} fixture;

static void write_file(const char *path, const char *text, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        chmod(path, mode);
}

/* The fake answers `state` with state_json for "web", fails `checkpoint`
 * the way runc does when CRIU failed, and logs its argv to <dir>/argv. */
static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        char path[256], script[2048];

        strcpy(f->dir, "/tmp/kyb-test-container-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->runc, sizeof(f->runc), "%s/runc", f->dir);
        snprintf(f->root, sizeof(f->root), "%s/root/default", f->dir);
        snprintf(f->work, sizeof(f->work), "%s/work", f->dir);
        snprintf(path, sizeof(path), "%s/root", f->dir);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(mkdir(f->root, 0755), 0);
        snprintf(path, sizeof(path), "%s/web", f->root);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/web/state.json", f->root);
        write_file(path, "{}", 0644);
        assert_int_equal(mkdir(f->work, 0755), 0);
        snprintf(script, sizeof(script),
                 "#!/bin/sh\n"
                 "echo \"$@\" >> %s/argv\n"
                 "for a in \"$@\"; do case \"$a\" in\n"
                 "state) cat <<'EOF'\n%s\nEOF\nexit 0;;\n"
                 "checkpoint) echo '{\"level\":\"error\",\"msg\":\"criu failed: type NOTIFY "
                 "errno 0\"}' >&2; exit 1;;\n"
                 "esac; done\nexit 3\n",
                 f->dir, state_json);
        write_file(f->runc, script, 0755);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void test_find(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        char roots[512];
        kyb_container c = {0};
        kyb_runc *r;
        char *root = NULL;

        snprintf(roots, sizeof(roots), "%s/none/{namespace}:%s/root/{namespace}", f->dir, f->dir);
        r = new_runc(f->runc, roots, NULL);
        assert_int_equal(kyb_runc_find(r, "default", "web", 0, &c, &err), 0);
        assert_string_equal(c.namespace_, "default");
        assert_string_equal(c.id, "web");
        assert_string_equal(c.root, f->root);
        assert_int_equal(c.pid, 14949);
        assert_int_equal(c.status, KYB_CONTAINER_RUNNING);
        kyb_container_clear(&c);

        assert_int_equal(kyb_runc_find(r, "default", "db", 0, &c, &err), -ENOENT);
        assert_contains(kyb_error_message(err), "container default/db not found under ");
        assert_contains(kyb_error_message(err), "/none/default, ");
        assert_int_equal(kyb_runc_find(r, "default", "../web", 0, &c, &err), -EINVAL);
        assert_int_equal(kyb_runc_find(r, "k8s.io", "web", 0, &c, &err), -ENOENT);

        /* A new container goes to the first root that exists, not over an old one. */
        assert_int_equal(kyb_runc_root_for_new(r, "default", "web", &root, &err), -EEXIST);
        assert_contains(kyb_error_message(err), "container default/web already exists under");
        assert_int_equal(kyb_runc_root_for_new(r, "default", "web-2", &root, &err), 0);
        assert_string_equal(root, f->root);
        free(root);
        assert_int_equal(kyb_runc_root_for_new(r, "k8s.io", "web", &root, &err), 0);
        assert_contains(root, "/none/k8s.io");
        free(root);
        kyb_runc_free(r);
}

static void test_find_state_mismatch(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        char roots[256], path[256];
        kyb_container c = {0};
        kyb_runc *r;

        /* runc answered for another container than asked: refused. */
        snprintf(path, sizeof(path), "%s/other", f->root);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/other/state.json", f->root);
        write_file(path, "{}", 0644);
        snprintf(roots, sizeof(roots), "%s/root/{namespace}", f->dir);
        r = new_runc(f->runc, roots, NULL);
        assert_int_equal(kyb_runc_find(r, "default", "other", 0, &c, &err), -EBADMSG);
        assert_contains(kyb_error_message(err), "runc state other answered for 'web'");
        assert_null(c.id);
        kyb_runc_free(r);
}

static void test_checkpoint_failure_quotes_criu_log(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        char roots[256], path[256], images[256];
        kyb_container c = {0};
        kyb_runc *r;

        snprintf(roots, sizeof(roots), "%s/root/{namespace}", f->dir);
        snprintf(images, sizeof(images), "%s/images", f->dir);
        snprintf(path, sizeof(path), "%s/dump.log", f->work);
        write_file(path,
                   "(00.1) Error (criu/sk-inet.c:1): inet: Connected TCP socket, consider "
                   "using --tcp-established option.\n(00.2) Error (criu/cr-dump.c:2): Dumping "
                   "FAILED.\n",
                   0644);
        r = new_runc(f->runc, roots, NULL);
        assert_int_equal(kyb_runc_find(r, "default", "web", 0, &c, &err), 0);
        kyb_runc_checkpoint_opts o = {.images_dir = images, .work_dir = f->work};
        assert_int_equal(kyb_runc_checkpoint(r, &c, &o, &err), -EIO);
        assert_string_equal(kyb_error_message(err),
                            "runc checkpoint default/web: runc exited with code 1: criu failed: "
                            "type NOTIFY errno 0; criu: Error (criu/sk-inet.c:1): inet: "
                            "Connected TCP socket, consider using --tcp-established option.; "
                            "Error (criu/cr-dump.c:2): Dumping FAILED.");
        kyb_container_clear(&c);
        kyb_runc_free(r);
}

static void test_missing_runc(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        char roots[256];
        kyb_container c = {0};
        kyb_runc *r;

        snprintf(roots, sizeof(roots), "%s/root/{namespace}", f->dir);
        r = new_runc("/nonexistent/runc", roots, NULL);
        assert_int_equal(kyb_runc_find(r, "default", "web", 0, &c, &err), -EIO);
        assert_contains(kyb_error_message(err), "runc state: spawn /nonexistent/runc");
        kyb_runc_free(r);
}

static void test_save_spec(void **state)
{
        fixture *f = *state;
        _cleanup_error_ kyb_error *err = NULL;
        char bundle[128], out[128], path[256], buf[64] = "";
        struct stat st;
        int fd;

        snprintf(bundle, sizeof(bundle), "%s/bundle", f->dir);
        snprintf(out, sizeof(out), "%s/out", f->dir);
        assert_int_equal(mkdir(bundle, 0700), 0);
        assert_int_equal(mkdir(out, 0700), 0);
        snprintf(path, sizeof(path), "%s/config.json", bundle);
        write_file(path, "{\"ociVersion\":\"1.0.2\"}", 0600);
        assert_int_equal(kyb_container_save_spec(bundle, out, "spec.dump", &err), 0);
        snprintf(path, sizeof(path), "%s/spec.dump", out);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), 22);
        assert_int_equal(fstat(fd, &st), 0);
        close(fd);
        assert_string_equal(buf, "{\"ociVersion\":\"1.0.2\"}");
        assert_int_equal(st.st_mode & 07777, 0600);

        /* Never over an existing file, never through a symbolic link. */
        assert_int_equal(kyb_container_save_spec(bundle, out, "spec.dump", &err), -EEXIST);
        snprintf(path, sizeof(path), "%s/config.json", bundle);
        unlink(path);
        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(kyb_container_save_spec(bundle, out, "other.dump", &err), -ELOOP);
        assert_contains(kyb_error_message(err), "config.json");
        unlink(path);
        assert_int_equal(kyb_container_save_spec(bundle, out, "other.dump", &err), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_state),
            cmocka_unit_test(test_parse_state_statuses),
            cmocka_unit_test(test_parse_state_rejects),
            cmocka_unit_test(test_templates),
            cmocka_unit_test(test_new_defaults),
            cmocka_unit_test(test_checkpoint_argv),
            cmocka_unit_test(test_restore_argv),
            cmocka_unit_test(test_stderr_errors),
            cmocka_unit_test(test_criu_errors),
            cmocka_unit_test_setup_teardown(test_find, setup, teardown),
            cmocka_unit_test_setup_teardown(test_find_state_mismatch, setup, teardown),
            cmocka_unit_test_setup_teardown(test_checkpoint_failure_quotes_criu_log, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_missing_runc, setup, teardown),
            cmocka_unit_test_setup_teardown(test_save_spec, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
