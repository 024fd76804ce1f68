/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/config.h"

typedef struct settings {
        char *socket_path;
        bool verbose;
        int64_t workers;
        int64_t max_size;
        int64_t timeout_ms;
        char *name;
} settings;

static const kyb_config_option opts[] = {
    {"socket-path", KYB_CONFIG_STRING, offsetof(settings, socket_path), "/run/def.sock", 0, 0,
     "gRPC socket of the agent"},
    {"verbose", KYB_CONFIG_BOOL, offsetof(settings, verbose), "false", 0, 0, "log more"},
    {"workers", KYB_CONFIG_INT64, offsetof(settings, workers), "4", 1, 64, "worker threads"},
    {"max-size", KYB_CONFIG_SIZE, offsetof(settings, max_size), "1Mi", 0, INT64_C(1) << 40,
     "largest image"},
    {"timeout", KYB_CONFIG_DURATION, offsetof(settings, timeout_ms), "30s", 100, 600000,
     "request deadline"},
    {"name", KYB_CONFIG_STRING, offsetof(settings, name), NULL, 0, 0, "instance name"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Per-test scratch directory for YAML files. */
typedef struct fixture {
        char dir[64];
        char path[128];
        settings s;
        kyb_config_status st;
        kyb_error *err;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));

        strcpy(f->dir, "/tmp/kyb-config-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/kyb.yaml", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;

        kyb_config_free(opts, N_OPTS, &f->s);
        kyb_error_free(f->err);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

static void write_yaml(fixture *f, const char *text)
{
        FILE *fp = fopen(f->path, "w");

        assert_non_null(fp);
        fputs(text, fp);
        assert_int_equal(fclose(fp), 0);
}

/* Loads with argv (NULL-terminated, argv[0] included) and envp. */
static int load(fixture *f, const char *const *argv, const char *const *envp)
{
        int argc = 0;
        kyb_config_sources src = {
            .env_prefix = "KYB",
            .envp = (char *const *)envp,
            .argv = (char *const *)argv,
        };

        while (argv && argv[argc])
                argc++;
        src.argc = argc;
        kyb_error_free(f->err);
        f->err = NULL;
        return kyb_config_load(opts, N_OPTS, &f->s, &src, &f->st, &f->err);
}

static void expect_error(fixture *f, int rc, int errnum, const char *msg)
{
        assert_int_equal(rc, -errnum);
        if (strcmp(kyb_error_message(f->err), msg))
                fail_msg("got '%s'\nwant '%s'", kyb_error_message(f->err), msg);
}

static const char *const no_env[] = {NULL};

static void test_defaults(void **state)
{
        fixture *f = *state;

        assert_int_equal(load(f, NULL, no_env), 0);
        assert_string_equal(f->s.socket_path, "/run/def.sock");
        assert_false(f->s.verbose);
        assert_int_equal(f->s.workers, 4);
        assert_int_equal(f->s.max_size, 1 << 20);
        assert_int_equal(f->s.timeout_ms, 30000);
        assert_null(f->s.name);
        assert_null(f->st.file);
        assert_int_equal(f->st.next_arg, 0);
}

static void test_precedence_of_all_sources(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--config", f->path, "--socket-path=/flag.sock", NULL};
        const char *env[] = {"KYB_SOCKET_PATH=/env.sock", "KYB_WORKERS=8", "OTHER=1", NULL};

        write_yaml(f, "socket-path: /yaml.sock\nworkers: 2\ntimeout: 5s\nname: yaml\n");
        assert_int_equal(load(f, argv, env), 0);
        assert_string_equal(f->s.socket_path, "/flag.sock"); /* flag > env > yaml > default */
        assert_int_equal(f->s.workers, 8);                   /* env > yaml */
        assert_int_equal(f->s.timeout_ms, 5000);             /* yaml > default */
        assert_string_equal(f->s.name, "yaml");
        assert_int_equal(f->s.max_size, 1 << 20); /* default */
        assert_string_equal(f->st.file, f->path);
        assert_int_equal(f->st.next_arg, 4);
}

static void test_file_selection(void **state)
{
        fixture *f = *state;
        char env_config[160];
        const char *env[] = {env_config, NULL};
        kyb_config_sources src = {.env_prefix = "KYB", .envp = (char *const *)no_env};
        const char *argv[] = {"prog", "--config=", NULL};

        write_yaml(f, "workers: 7\n");
        src.default_file = f->path;
        assert_int_equal(kyb_config_load(opts, N_OPTS, &f->s, &src, &f->st, NULL), 0);
        assert_int_equal(f->s.workers, 7);
        src.default_file = "/nonexistent/kyb.yaml"; /* a missing default file is fine */
        assert_int_equal(kyb_config_load(opts, N_OPTS, &f->s, &src, &f->st, NULL), 0);
        assert_int_equal(f->s.workers, 4);
        assert_null(f->st.file);
        snprintf(env_config, sizeof(env_config), "KYB_CONFIG=%s", f->path);
        assert_int_equal(load(f, NULL, env), 0);
        assert_int_equal(f->s.workers, 7);
        assert_int_equal(load(f, argv, env), 0); /* --config= disables the file */
        assert_int_equal(f->s.workers, 4);
}

static void test_missing_named_file(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--config", "/nonexistent/x.yaml", NULL};
        const char *env[] = {"KYB_CONFIG=/nonexistent/y.yaml", NULL};

        expect_error(f, load(f, argv, no_env), ENOENT,
                     "config /nonexistent/x.yaml: No such file or directory");
        expect_error(f, load(f, NULL, env), ENOENT,
                     "config /nonexistent/y.yaml: No such file or directory");
}

static void test_value_parsing(void **state)
{
        fixture *f = *state;
        static const struct {
                const char *flag;
                size_t offset;
                int64_t want;
        } cases[] = {
            {"--max-size=512", offsetof(settings, max_size), 512},
            {"--max-size=64Ki", offsetof(settings, max_size), 65536},
            {"--max-size=2K", offsetof(settings, max_size), 2000},
            {"--max-size=3Mi", offsetof(settings, max_size), 3 << 20},
            {"--max-size=1G", offsetof(settings, max_size), 1000000000},
            {"--max-size=1Gi", offsetof(settings, max_size), INT64_C(1) << 30},
            {"--max-size=1Ti", offsetof(settings, max_size), INT64_C(1) << 40},
            {"--timeout=250ms", offsetof(settings, timeout_ms), 250},
            {"--timeout=2m", offsetof(settings, timeout_ms), 120000},
            {"--timeout=1m30s", offsetof(settings, timeout_ms), 90000},
            {"--timeout=10m", offsetof(settings, timeout_ms), 600000},
            {"--workers=+64", offsetof(settings, workers), 64},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *argv[] = {"prog", cases[i].flag, NULL};

                assert_int_equal(load(f, argv, no_env), 0);
                assert_int_equal(*(int64_t *)((char *)&f->s + cases[i].offset), cases[i].want);
        }
}

static void test_bad_values(void **state)
{
        fixture *f = *state;
        static const struct {
                const char *flag;
                int errnum;
                const char *msg;
        } cases[] = {
            {"--workers=abc", EINVAL, "option workers: 'abc' is not an integer"},
            {"--workers=", EINVAL, "option workers: '' is not an integer"},
            {"--workers= 5", EINVAL, "option workers: ' 5' is not an integer"},
            {"--workers=99999999999999999999", ERANGE,
             "option workers: '99999999999999999999' does not fit in 64 bits"},
            {"--workers=0", ERANGE, "option workers: 0 is out of range 1..64"},
            {"--workers=65", ERANGE, "option workers: 65 is out of range 1..64"},
            {"--max-size=12X", EINVAL, "option max-size: '12X' is not a size (e.g. 512, 64Ki, 1G)"},
            {"--max-size=-1", EINVAL, "option max-size: '-1' is not a size (e.g. 512, 64Ki, 1G)"},
            {"--max-size=1.5Gi", EINVAL,
             "option max-size: '1.5Gi' is not a size (e.g. 512, 64Ki, 1G)"},
            {"--max-size=2Ti", ERANGE, "option max-size: 2Ti is out of range 0..1Ti"},
            {"--max-size=9999999Ti", ERANGE,
             "option max-size: '9999999Ti' does not fit in 64 bits"},
            {"--timeout=10x", EINVAL,
             "option timeout: '10x' is not a duration (e.g. 500ms, 30s, 5m, 1h)"},
            {"--timeout=30", EINVAL,
             "option timeout: '30' is not a duration (e.g. 500ms, 30s, 5m, 1h)"},
            {"--timeout=1h", ERANGE, "option timeout: 1h is out of range 100ms..10m"},
            {"--timeout=50ms", ERANGE, "option timeout: 50ms is out of range 100ms..10m"},
            {"--verbose=maybe", EINVAL, "option verbose: 'maybe' is not a boolean (true or false)"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *argv[] = {"prog", cases[i].flag, NULL};
                char want[256];

                snprintf(want, sizeof(want), "config command line: %s", cases[i].msg);
                expect_error(f, load(f, argv, no_env), cases[i].errnum, want);
                /* a failed load leaves no strings behind */
                assert_null(f->s.socket_path);
        }
}

static void test_bad_env_value(void **state)
{
        fixture *f = *state;
        const char *env[] = {"KYB_TIMEOUT=10x", NULL};
        const char *empty[] = {"KYB_WORKERS=", NULL};

        expect_error(f, load(f, NULL, env), EINVAL,
                     "config environment KYB_TIMEOUT: option timeout: '10x' is not a duration "
                     "(e.g. 500ms, 30s, 5m, 1h)");
        assert_int_equal(load(f, NULL, empty), 0); /* empty means unset */
        assert_int_equal(f->s.workers, 4);
}

static void test_env_override(void **state)
{
        fixture *f = *state;
        const char *env[] = {"KYB_VERBOSE=yes", "KYB_MAX_SIZE=2Gi", "KYB_NAME=from-env",
                             "KYB_SOCKET_PATHX=/no", NULL};

        assert_int_equal(load(f, NULL, env), 0);
        assert_true(f->s.verbose);
        assert_int_equal(f->s.max_size, INT64_C(2) << 30);
        assert_string_equal(f->s.name, "from-env");
        assert_string_equal(f->s.socket_path, "/run/def.sock");
}

static void test_process_environment(void **state)
{
        fixture *f = *state;
        kyb_config_sources src = {.env_prefix = "KYBTEST"};

        assert_int_equal(setenv("KYBTEST_WORKERS", "9", 1), 0);
        assert_int_equal(kyb_config_load(opts, N_OPTS, &f->s, &src, &f->st, NULL), 0);
        assert_int_equal(f->s.workers, 9);
        src.env_prefix = NULL; /* no prefix: the environment is not read */
        assert_int_equal(kyb_config_load(opts, N_OPTS, &f->s, &src, &f->st, NULL), 0);
        assert_int_equal(f->s.workers, 4);
        unsetenv("KYBTEST_WORKERS");
}

static void test_yaml_errors(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--config", f->path, NULL};
        static const struct {
                const char *yaml;
                const char *msg; /* after "config <path>" */
        } cases[] = {
            {"workers: 3\nbogus: 1\n", ":2:1: unknown option 'bogus'"},
            {"workers: 3\ntimeout:   10x\n",
             ":2:12: option timeout: '10x' is not a duration (e.g. 500ms, 30s, 5m, 1h)"},
            {"workers: [1, 2]\n", ":1:10: option workers: expected a value, got a sequence"},
            {"workers:\n  a: 1\n", ":2:3: option workers: expected a value, got a mapping"},
            {"workers: 3\nworkers: 4\n", ":2:10: option workers: set twice"},
            {"name:\n", ":1:6: option name: no value given"},
            {"workers: 200\n", ":1:10: option workers: 200 is out of range 1..64"},
            {"- workers\n", ":1:1: expected a mapping of option names to values"},
            {"[a]: 1\n", ":1:1: option names must be scalars"},
            {"workers: 1\n---\nworkers: 2\n", ":2:1: only one YAML document is allowed"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char want[512];

                write_yaml(f, cases[i].yaml);
                snprintf(want, sizeof(want), "config %s%s", f->path, cases[i].msg);
                assert_true(load(f, argv, no_env) < 0);
                if (strcmp(kyb_error_message(f->err), want))
                        fail_msg("got '%s'\nwant '%s'", kyb_error_message(f->err), want);
        }
}

static void test_malformed_yaml(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--config", f->path, NULL};
        char prefix[256];

        write_yaml(f, "workers: 3\nname: x: y\n");
        assert_int_equal(load(f, argv, no_env), -EINVAL);
        snprintf(prefix, sizeof(prefix), "config %s:2:8: invalid YAML: ", f->path);
        assert_memory_equal(kyb_error_message(f->err), prefix, strlen(prefix));
        write_yaml(f, "workers: \"unterminated\n");
        assert_int_equal(load(f, argv, no_env), -EINVAL);
        assert_non_null(strstr(kyb_error_message(f->err), "invalid YAML"));
}

static void test_yaml_forms(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--config", f->path, NULL};

        write_yaml(f, "");
        assert_int_equal(load(f, argv, no_env), 0);
        write_yaml(f, "# only a comment\n---\n");
        assert_int_equal(load(f, argv, no_env), 0);
        write_yaml(f, "---\nverbose: on\nname: \"quoted: yes\"\nmax-size: '4Ki'\n...\n");
        assert_int_equal(load(f, argv, no_env), 0);
        assert_true(f->s.verbose);
        assert_string_equal(f->s.name, "quoted: yes");
        assert_int_equal(f->s.max_size, 4096);
}

static void test_subcommand_index(void **state)
{
        fixture *f = *state;
        const char *sub[] = {"prog",       "--verbose",   "--workers", "5",
                             "checkpoint", "--workers=9", NULL};
        const char *dashdash[] = {"prog", "--workers=6", "--", "--verbose", NULL};
        const char *all[] = {"prog", "--verbose", NULL};
        const char *only[] = {"prog", NULL};

        assert_int_equal(load(f, sub, no_env), 0);
        assert_int_equal(f->st.next_arg, 4);
        assert_int_equal(f->s.workers, 5);
        assert_true(f->s.verbose);
        assert_int_equal(load(f, dashdash, no_env), 0);
        assert_int_equal(f->st.next_arg, 3);
        assert_int_equal(f->s.workers, 6);
        assert_false(f->s.verbose);
        assert_int_equal(load(f, all, no_env), 0);
        assert_int_equal(f->st.next_arg, 2);
        assert_int_equal(load(f, only, no_env), 0);
        assert_int_equal(f->st.next_arg, 1);
}

static void test_bool_flags(void **state)
{
        fixture *f = *state;
        const char *on[] = {"prog", "--verbose", NULL};
        const char *off[] = {"prog", "--verbose", "--no-verbose", NULL};
        const char *explicit[] = {"prog", "--verbose=false", NULL};
        const char *yaml_on[] = {"prog", "--config", f->path, "--no-verbose", NULL};
        const char *bad[] = {"prog", "--no-verbose=true", NULL};
        const char *not_bool[] = {"prog", "--no-workers", NULL};

        assert_int_equal(load(f, on, no_env), 0);
        assert_true(f->s.verbose);
        assert_int_equal(load(f, off, no_env), 0);
        assert_false(f->s.verbose);
        assert_int_equal(load(f, explicit, no_env), 0);
        assert_false(f->s.verbose);
        write_yaml(f, "verbose: true\n");
        assert_int_equal(load(f, yaml_on, no_env), 0);
        assert_false(f->s.verbose);
        expect_error(f, load(f, bad, no_env), EINVAL,
                     "config command line: option --no-verbose takes no value");
        expect_error(f, load(f, not_bool, no_env), EINVAL,
                     "config command line: unknown option --no-workers");
}

static void test_flag_syntax_errors(void **state)
{
        fixture *f = *state;
        const char *unknown[] = {"prog", "--bogus=1", NULL};
        const char *shortopt[] = {"prog", "-x", NULL};
        const char *missing[] = {"prog", "--workers", NULL};
        const char *missing_cfg[] = {"prog", "--config", NULL};

        expect_error(f, load(f, unknown, no_env), EINVAL,
                     "config command line: unknown option --bogus");
        expect_error(f, load(f, shortopt, no_env), EINVAL,
                     "config command line: unknown option -x");
        expect_error(f, load(f, missing, no_env), EINVAL,
                     "config command line: option --workers needs a value");
        expect_error(f, load(f, missing_cfg, no_env), EINVAL,
                     "config command line: option --config needs a value");
}

static void test_help_flag(void **state)
{
        fixture *f = *state;
        const char *argv[] = {"prog", "--workers=9", "--help", "--bogus", NULL};
        const char *env[] = {"KYB_TIMEOUT=garbage", NULL};

        assert_int_equal(load(f, argv, env), 0);
        assert_true(f->st.help);
        assert_int_equal(f->s.workers, 4); /* only defaults */
}

static void test_help_text(void **state)
{
        _cleanup_free_ char *help = kyb_config_help(opts, N_OPTS, "KYB");
        static const char *const want[] = {
            "  --config FILE\n        YAML file with option values (env: KYB_CONFIG)\n",
            "  --socket-path STRING\n        gRPC socket of the agent\n"
            "        default: /run/def.sock; env: KYB_SOCKET_PATH\n",
            "  --[no-]verbose\n        log more\n        default: false; env: KYB_VERBOSE\n",
            "  --workers INT\n",
            "default: 4; range: 1..64; env: KYB_WORKERS\n",
            "  --max-size SIZE\n",
            "default: 1Mi; range: 0..1Ti; env: KYB_MAX_SIZE\n",
            "  --timeout DURATION\n        request deadline\n"
            "        default: 30s; range: 100ms..10m; env: KYB_TIMEOUT\n",
            "default: none; env: KYB_NAME\n",
            "  -h, --help\n",
        };

        assert_non_null(help);
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                if (!strstr(help, want[i]))
                        fail_msg("help lacks '%s':\n%s", want[i], help);
        }
}

static void test_reload_and_free(void **state)
{
        fixture *f = *state;
        const char *a[] = {"prog", "--name=one", NULL};
        const char *b[] = {"prog", "--name", "two", "--name=three", NULL};

        assert_int_equal(load(f, a, no_env), 0);
        assert_string_equal(f->s.name, "one");
        assert_int_equal(load(f, b, no_env), 0); /* old strings are freed, not leaked */
        assert_string_equal(f->s.name, "three");
        kyb_config_free(opts, N_OPTS, &f->s);
        assert_null(f->s.name);
        assert_null(f->s.socket_path);
        kyb_config_free(opts, N_OPTS, &f->s);
}

static void test_bad_table(void **state)
{
        static const kyb_config_option dup[] = {
            {"a", KYB_CONFIG_BOOL, 0, NULL, 0, 0, ""},
            {"a", KYB_CONFIG_BOOL, 0, NULL, 0, 0, ""},
        };
        static const kyb_config_option reserved[] = {
            {"config", KYB_CONFIG_BOOL, 0, NULL, 0, 0, ""},
        };
        static const kyb_config_option bad_default[] = {
            {"t", KYB_CONFIG_DURATION, 0, "soon", 0, 0, ""},
        };
        _cleanup_error_ kyb_error *err = NULL;
        int64_t target = 0;

        assert_int_equal(kyb_config_load(dup, 2, &target, NULL, NULL, &err), -EINVAL);
        assert_string_equal(kyb_error_message(err), "config table: duplicate option 'a'");
        assert_int_equal(kyb_config_load(reserved, 1, &target, NULL, NULL, &err), -EINVAL);
        assert_int_equal(kyb_config_load(bad_default, 1, &target, NULL, NULL, &err), -EINVAL);
        assert_string_equal(kyb_error_message(err),
                            "config default: option t: 'soon' is not a duration "
                            "(e.g. 500ms, 30s, 5m, 1h)");
}

static void test_parsers(void **state)
{
        int64_t v;
        bool b;

        assert_int_equal(kyb_parse_duration_ms("0", &v, NULL), 0);
        assert_int_equal(v, 0);
        assert_int_equal(kyb_parse_duration_ms("1h2m3s4ms", &v, NULL), 0);
        assert_int_equal(v, 3723004);
        assert_int_equal(kyb_parse_duration_ms("", &v, NULL), -EINVAL);
        assert_int_equal(kyb_parse_duration_ms("5s ", &v, NULL), -EINVAL);
        assert_int_equal(kyb_parse_duration_ms("-5s", &v, NULL), -EINVAL);
        assert_int_equal(kyb_parse_size("0", &v, NULL), 0);
        assert_int_equal(kyb_parse_size("7B", &v, NULL), 0);
        assert_int_equal(v, 7);
        assert_int_equal(kyb_parse_size("Ki", &v, NULL), -EINVAL);
        assert_int_equal(kyb_parse_int64("-9223372036854775808", &v, NULL), 0);
        assert_int_equal(v, INT64_MIN);
        assert_int_equal(kyb_parse_bool("OFF", &b, NULL), 0);
        assert_false(b);
        assert_int_equal(kyb_parse_bool("1", &b, NULL), 0);
        assert_true(b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_defaults),
            T(test_precedence_of_all_sources),
            T(test_file_selection),
            T(test_missing_named_file),
            T(test_value_parsing),
            T(test_bad_values),
            T(test_bad_env_value),
            T(test_env_override),
            T(test_process_environment),
            T(test_yaml_errors),
            T(test_malformed_yaml),
            T(test_yaml_forms),
            T(test_subcommand_index),
            T(test_bool_flags),
            T(test_flag_syntax_errors),
            T(test_help_flag),
            T(test_help_text),
            T(test_reload_and_free),
            cmocka_unit_test(test_bad_table),
            cmocka_unit_test(test_parsers),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
