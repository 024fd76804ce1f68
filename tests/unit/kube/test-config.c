/* SPDX-License-Identifier: Apache-2.0 */
/* Kubeconfig files, the in-cluster service account, and YAML to JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kube-test-util.h"
#include "kube/kube-internal.h"

#define SA_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"

/* Each test gets its own directory; the kubeconfig goes to DIR/kube/config so
 * relative paths inside it resolve against DIR/kube, not the cwd. */
static int setup(void **state)
{
        *state = ku_mkdtemp();
        /* The environment must not steer kyb_kube_config_load(NULL, ...). */
        unsetenv("KUBECONFIG");
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        return 0;
}

static int teardown(void **state)
{
        ku_rm_rf(*state);
        free(*state);
        return 0;
}

static char *write_config(const char *dir, const char *yaml)
{
        ku_write(dir, "kube/config", yaml);
        return ku_path(dir, "kube/config");
}

static kyb_kube_config *load_ok(const char *dir, const char *context, const char *yaml)
{
        _cleanup_free_ char *path = write_config(dir, yaml);
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        if (kyb_kube_config_load(path, context, &cfg, &err) < 0)
                fail_msg("load: %s", kyb_error_message(err));
        assert_non_null(cfg);
        return cfg;
}

static void load_bad(const char *dir, const char *context, const char *yaml, int errnum,
                     const char *fragment)
{
        _cleanup_free_ char *path = write_config(dir, yaml);
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        assert_error(kyb_kube_config_load(path, context, &cfg, &err), err, errnum, fragment);
        assert_null(cfg);
        /* The path tells the operator which file to fix. */
        assert_non_null(strstr(kyb_error_message(err), path));
}

/* A kubeconfig with one context "c" on cluster "k" and user "u"; the user's
 * body (indented by 4) and the cluster's extra lines are the parameters. */
static char *one_context(const char *cluster_extra, const char *user_body)
{
        char *s = NULL;

        assert_true(asprintf(&s,
                             "apiVersion: v1\n"
                             "kind: Config\n"
                             "current-context: c\n"
                             "clusters:\n"
                             "- name: k\n"
                             "  cluster:\n"
                             "    server: https://k8s.example:6443\n"
                             "%s"
                             "contexts:\n"
                             "- name: c\n"
                             "  context:\n"
                             "    cluster: k\n"
                             "    user: u\n"
                             "users:\n"
                             "- name: u\n"
                             "  user:\n"
                             "%s",
                             cluster_extra, user_body) > 0);
        return s;
}

static void test_token_user(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *kdir = ku_path(dir, "kube"), *ca = ku_path(dir, "kube/pki/ca.crt");
        kyb_kube_config *cfg = load_ok(dir, NULL,
                                       "apiVersion: v1\n"
                                       "kind: Config\n"
                                       "current-context: dev\n"
                                       "clusters:\n"
                                       "- name: dev-cluster\n"
                                       "  cluster:\n"
                                       "    server: https://k8s.example:6443/\n"
                                       "    certificate-authority: pki/ca.crt\n"
                                       "contexts:\n"
                                       "- name: dev\n"
                                       "  context:\n"
                                       "    cluster: dev-cluster\n"
                                       "    user: dev-user\n"
                                       "    namespace: team-a\n"
                                       "users:\n"
                                       "- name: dev-user\n"
                                       "  user:\n"
                                       "    token: s3cr3t-token\n");

        /* The trailing slash goes: paths are appended to the server. */
        assert_string_equal(cfg->server, "https://k8s.example:6443");
        assert_string_equal(kyb_kube_config_server(cfg), "https://k8s.example:6443");
        assert_string_equal(cfg->ca_file, ca);
        assert_null(cfg->ca_data);
        assert_false(cfg->insecure);
        assert_string_equal(cfg->token, "s3cr3t-token");
        assert_null(cfg->token_file);
        assert_null(cfg->cert_file);
        assert_null(cfg->key_file);
        assert_null(cfg->cert_data);
        assert_null(cfg->key_data);
        assert_string_equal(cfg->ns, "team-a");
        assert_string_equal(kyb_kube_config_namespace(cfg), "team-a");
        kyb_kube_config_free(cfg);
}

static void test_token_file_and_cert_paths(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *yaml = one_context("", "    tokenFile: secrets/token\n"
                                                    "    client-certificate: certs/client.crt\n"
                                                    "    client-key: /etc/kyb/client.key\n");
        _cleanup_free_ char *token = ku_path(dir, "kube/secrets/token");
        _cleanup_free_ char *cert = ku_path(dir, "kube/certs/client.crt");
        kyb_kube_config *cfg = load_ok(dir, NULL, yaml);

        assert_null(cfg->token);
        assert_string_equal(cfg->token_file, token);
        assert_string_equal(cfg->cert_file, cert);
        /* Absolute paths are kept as they are. */
        assert_string_equal(cfg->key_file, "/etc/kyb/client.key");
        assert_null(cfg->cert_data);
        assert_null(cfg->key_data);
        assert_null(cfg->ca_file);
        kyb_kube_config_free(cfg);
}

/* A kubeconfig named by a bare relative path resolves against ".". */
static void test_relative_kubeconfig_path(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *yaml = one_context("", "    client-certificate: c.crt\n"
                                                    "    client-key: c.key\n");
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        ku_write(dir, "config", yaml);
        assert_int_equal(chdir(dir), 0);
        assert_int_equal(kyb_kube_config_load("config", NULL, &cfg, &err), 0);
        assert_int_equal(chdir(cwd), 0);
        assert_string_equal(cfg->cert_file, "./c.crt");
        assert_string_equal(cfg->key_file, "./c.key");
        kyb_kube_config_free(cfg);
}

static void test_inline_data(void **state)
{
        const char *dir = *state;
        /* 2, 1 and 0 padding characters, and a value with a NUL byte. */
        _cleanup_free_ char *yaml = one_context("    certificate-authority-data: Q0EtUEVNCg==\n"
                                                "    insecure-skip-tls-verify: true\n",
                                                "    client-certificate-data: Y2xpZW50LWNlcnQ=\n"
                                                "    client-key-data: YWJj\n");
        kyb_kube_config *cfg = load_ok(dir, NULL, yaml);

        assert_true(cfg->insecure);
        assert_null(cfg->ca_file);
        assert_int_equal(cfg->ca_len, 7);
        assert_memory_equal(cfg->ca_data, "CA-PEM\n", 8); /* NUL-terminated too */
        assert_null(cfg->cert_file);
        assert_int_equal(cfg->cert_len, 11);
        assert_string_equal(cfg->cert_data, "client-cert");
        assert_null(cfg->key_file);
        assert_int_equal(cfg->key_len, 3);
        assert_string_equal(cfg->key_data, "abc");
        kyb_kube_config_free(cfg);

        free(yaml);
        yaml = one_context("    certificate-authority-data: AAEC/w==\n"
                           "    insecure-skip-tls-verify: false\n",
                           "    client-certificate-data: aA==\n"
                           "    client-key-data: aGk=\n");
        cfg = load_ok(dir, NULL, yaml);
        assert_false(cfg->insecure);
        assert_int_equal(cfg->ca_len, 4);
        assert_memory_equal(cfg->ca_data, "\x00\x01\x02\xff", 4);
        assert_int_equal(cfg->cert_len, 1);
        assert_string_equal(cfg->cert_data, "h");
        assert_int_equal(cfg->key_len, 2);
        assert_string_equal(cfg->key_data, "hi");
        kyb_kube_config_free(cfg);
}

static const char *two_contexts = "current-context: a\n"
                                  "clusters:\n"
                                  "- name: ka\n"
                                  "  cluster: {server: 'https://a.example'}\n"
                                  "- name: kb\n"
                                  "  cluster: {server: 'http://b.example:8080'}\n"
                                  "contexts:\n"
                                  "- name: a\n"
                                  "  context: {cluster: ka, namespace: ns-a}\n"
                                  "- name: b\n"
                                  "  context: {cluster: kb}\n"
                                  "- name: c\n"
                                  "  context: {cluster: kb, namespace: ''}\n";

static void test_context_selection(void **state)
{
        const char *dir = *state;
        kyb_kube_config *cfg = load_ok(dir, NULL, two_contexts);

        assert_string_equal(cfg->server, "https://a.example");
        assert_string_equal(kyb_kube_config_namespace(cfg), "ns-a");
        /* A context without a user is anonymous, not an error. */
        assert_null(cfg->token);
        assert_null(cfg->cert_file);
        kyb_kube_config_free(cfg);

        /* An explicit context wins over current-context; no namespace: "default". */
        cfg = load_ok(dir, "b", two_contexts);
        assert_string_equal(cfg->server, "http://b.example:8080");
        assert_string_equal(cfg->ns, "default");
        assert_string_equal(kyb_kube_config_namespace(cfg), "default");
        kyb_kube_config_free(cfg);

        cfg = load_ok(dir, "c", two_contexts);
        assert_string_equal(kyb_kube_config_namespace(cfg), "default");
        kyb_kube_config_free(cfg);
}

static void test_missing_references(void **state)
{
        const char *dir = *state;

        load_bad(dir, "nope", two_contexts, ENOENT, "context \"nope\" not found");
        load_bad(dir, NULL,
                 "current-context: a\n"
                 "clusters: [{name: other, cluster: {server: 'https://x'}}]\n"
                 "contexts: [{name: a, context: {cluster: gone, user: u}}]\n",
                 ENOENT, "context \"a\": cluster \"gone\" not found");
        load_bad(dir, NULL,
                 "current-context: a\n"
                 "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
                 "contexts: [{name: a, context: {user: u}}]\n",
                 ENOENT, "context \"a\": cluster \"\" not found");
        load_bad(dir, NULL,
                 "current-context: a\n"
                 "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
                 "contexts: [{name: a, context: {cluster: k, user: ghost}}]\n"
                 "users: [{name: u, user: {token: t}}]\n",
                 ENOENT, "context \"a\": user \"ghost\" not found");
        load_bad(dir, NULL, "clusters: []\ncontexts: []\n", EINVAL, "no current-context");
}

static void test_unsupported_auth(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *exec = one_context("", "    exec:\n"
                                                    "      apiVersion: "
                                                    "client.authentication.k8s.io/v1\n"
                                                    "      command: aws\n");
        _cleanup_free_ char *provider = one_context("", "    auth-provider:\n"
                                                        "      name: oidc\n");
        _cleanup_free_ char *basic = one_context("", "    username: admin\n"
                                                     "    password: hunter2\n");

        load_bad(dir, NULL, exec, ENOTSUP, "user \"u\": exec and auth-provider credentials");
        load_bad(dir, NULL, provider, ENOTSUP, "use a token, a token file or a client certificate");
        load_bad(dir, NULL, basic, ENOTSUP, "user \"u\": basic auth is not supported");
}

static void test_invalid_configs(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *cert_only = one_context("", "    client-certificate: c.crt\n");
        _cleanup_free_ char *key_only = one_context("", "    client-key-data: YWJj\n");
        _cleanup_free_ char *no_scheme = NULL;
        _cleanup_free_ char *missing = ku_path(dir, "absent");
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        load_bad(dir, NULL, cert_only, EINVAL, "client certificate and key come together");
        load_bad(dir, NULL, key_only, EINVAL, "client certificate and key come together");
        load_bad(dir, NULL,
                 "current-context: a\n"
                 "clusters:\n"
                 "- name: k\n"
                 "  cluster:\n"
                 "    server: https://x\n"
                 "   bad-indent: 1\n",
                 EINVAL, "YAML line 6");
        load_bad(dir, NULL, "current-context: [a\n", EINVAL, "YAML line 2");
        load_bad(dir, NULL, "", EINVAL, "empty YAML document");

        no_scheme = one_context("", "    token: t\n");
        /* Overwrite the server line with one that has no scheme. */
        memcpy(strstr(no_scheme, "https://"), "ftp://xx", 8);
        load_bad(dir, NULL, no_scheme, EINVAL, "cluster \"k\": cluster has no http(s) server");
        load_bad(dir, NULL,
                 "current-context: a\n"
                 "clusters: [{name: k, cluster: {certificate-authority-data: Q0EtUEVNCg==}}]\n"
                 "contexts: [{name: a, context: {cluster: k}}]\n",
                 EINVAL, "has no http(s) server");

        assert_error(kyb_kube_config_load(missing, NULL, &cfg, &err), err, ENOENT, missing);
        assert_null(cfg);
}

static void test_invalid_base64(void **state)
{
        const char *dir = *state;
        /* Bad characters, a length that is no multiple of 4, padding that is
         * longer than base64 allows or sits in the middle. */
        static const char *bad[] = {"Q0Et!EVN", "Q0EtUEVNCg=", "====", "A===", "YQ==YWJj", "YW=j"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                _cleanup_free_ char *extra = NULL, *yaml = NULL;

                assert_true(asprintf(&extra, "    certificate-authority-data: '%s'\n", bad[i]) > 0);
                yaml = one_context(extra, "    token: t\n");
                load_bad(dir, NULL, yaml, EINVAL, "certificate-authority-data is not valid base64");
        }
}

static void test_kubeconfig_from_environment(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *yaml = one_context("", "    token: from-env\n");
        _cleanup_free_ char *path = write_config(dir, yaml), *missing = ku_path(dir, "nope");
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        setenv("KUBECONFIG", path, 1);
        /* KUBECONFIG comes before the in-cluster service account. */
        setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), 0);
        assert_string_equal(cfg->token, "from-env");
        kyb_kube_config_free(cfg);
        cfg = NULL;

        /* A KUBECONFIG that names nothing is an error, not a reason to fall
         * back to the service account. */
        setenv("KUBECONFIG", missing, 1);
        assert_error(kyb_kube_config_load(NULL, NULL, &cfg, &err), err, ENOENT, missing);
        assert_null(cfg);
        unsetenv("KUBECONFIG");
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_kubeconfig_from_home(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *yaml = one_context("", "    token: from-home\n");
        _cleanup_free_ char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        ku_write(dir, ".kube/config", yaml);
        setenv("HOME", dir, 1);
        setenv("KUBECONFIG", "", 1); /* empty counts as unset */
        assert_int_equal(kyb_kube_config_load(NULL, NULL, &cfg, &err), 0);
        assert_string_equal(cfg->token, "from-home");
        kyb_kube_config_free(cfg);
        if (old_home)
                setenv("HOME", old_home, 1);
        else
                unsetenv("HOME");
        unsetenv("KUBECONFIG");
}

static void service_account(const char *dir, const char *ns)
{
        ku_write(dir, "sa/token", "sa-token\n");
        ku_write(dir, "sa/ca.crt", "CA\n");
        if (ns)
                ku_write(dir, "sa/namespace", ns);
}

static void test_in_cluster(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *sa = ku_path(dir, "sa");
        _cleanup_free_ char *token = ku_path(dir, "sa/token"), *ca = ku_path(dir, "sa/ca.crt");
        _cleanup_free_ char *nsfile = ku_path(dir, "sa/namespace");
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;

        service_account(dir, "kyb-system\n");
        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        assert_int_equal(kyb_kube_config_in_cluster(sa, &cfg, &err), 0);
        assert_string_equal(cfg->server, "https://10.96.0.1:443");
        /* The token is read per request (it rotates), so only its path is kept. */
        assert_null(cfg->token);
        assert_string_equal(cfg->token_file, token);
        assert_string_equal(cfg->ca_file, ca);
        assert_string_equal(kyb_kube_config_namespace(cfg), "kyb-system");
        assert_false(cfg->insecure);
        kyb_kube_config_free(cfg);

        setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
        assert_int_equal(kyb_kube_config_in_cluster(sa, &cfg, &err), 0);
        assert_string_equal(cfg->server, "https://[fd00:10:96::1]:6443");
        kyb_kube_config_free(cfg);

        /* Without a namespace file the namespace is "default". */
        assert_int_equal(unlink(nsfile), 0);
        assert_int_equal(kyb_kube_config_in_cluster(sa, &cfg, &err), 0);
        assert_string_equal(cfg->ns, "default");
        kyb_kube_config_free(cfg);
        cfg = NULL;

        /* Without a token there is no way to authenticate: fail early. */
        assert_int_equal(unlink(token), 0);
        assert_error(kyb_kube_config_in_cluster(sa, &cfg, &err), err, ENOENT, token);
        assert_null(cfg);

        unsetenv("KUBERNETES_SERVICE_PORT");
        assert_error(kyb_kube_config_in_cluster(sa, &cfg, &err), err, ENOENT,
                     "KUBERNETES_SERVICE_HOST/PORT not set");
        unsetenv("KUBERNETES_SERVICE_HOST");
}

/* Without KUBECONFIG, KUBERNETES_SERVICE_HOST selects the in-cluster account
 * at its fixed path; whether that exists depends on where the test runs. */
static void test_in_cluster_from_load(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = NULL;
        int rc;

        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        rc = kyb_kube_config_load(NULL, NULL, &cfg, &err);
        if (access(SA_TOKEN, R_OK) == 0) {
                assert_int_equal(rc, 0);
                assert_string_equal(cfg->server, "https://10.96.0.1:443");
                assert_string_equal(cfg->token_file, SA_TOKEN);
                kyb_kube_config_free(cfg);
        } else {
                assert_error(rc, err, ENOENT, "in-cluster: " SA_TOKEN);
                assert_null(cfg);
        }
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
}

/* The client keeps its own copy of the configuration, and reads a token file
 * on every request so that rotated service-account tokens are picked up. */
static void test_client_copies_config_and_rereads_token(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *yaml = one_context("    certificate-authority-data: AAEC/w==\n",
                                                "    tokenFile: token\n"
                                                "    client-certificate-data: aA==\n"
                                                "    client-key-data: aGk=\n");
        _cleanup_error_ kyb_error *err = NULL;
        kyb_kube_config *cfg = load_ok(dir, "c", yaml);
        kyb_kube_client *c = NULL;
        struct curl_slist *headers = NULL;
        CURL *h = NULL;

        assert_int_equal(kyb_kube_client_new(cfg, NULL, &c, &err), 0);
        kyb_kube_config_free(cfg);
        assert_string_equal(c->cfg.server, "https://k8s.example:6443");
        assert_int_equal(c->cfg.ca_len, 4);
        assert_memory_equal(c->cfg.ca_data, "\x00\x01\x02\xff", 4);
        assert_string_equal(c->cfg.cert_data, "h");
        assert_string_equal(c->cfg.key_data, "hi");
        assert_string_equal(c->cfg.ns, "default");
        assert_string_equal(c->user_agent, "kybernate");
        assert_int_equal(c->timeout_ms, 30000);

        ku_write(dir, "kube/token", "first\n");
        assert_int_equal(kube_handle_get(c, &h, &headers, &err), 0);
        assert_non_null(headers);
        assert_string_equal(headers->data, "Authorization: Bearer first");
        assert_null(headers->next);
        kube_handle_put(c, h, headers);

        ku_write(dir, "kube/token", "second\r\n");
        assert_int_equal(kube_handle_get(c, &h, &headers, &err), 0);
        assert_string_equal(headers->data, "Authorization: Bearer second");
        kube_handle_put(c, h, headers);

        ku_write(dir, "kube/token", "");
        assert_error(kube_handle_get(c, &h, &headers, &err), err, EINVAL, "is empty");
        kyb_kube_client_free(c);
}

/* ---- YAML to JSON ----------------------------------------------------------- */

static void yaml_equal(const char *yaml, const char *expected_json)
{
        _cleanup_error_ kyb_error *err = NULL;
        _cleanup_json_ json_t *got = NULL, *want = json_loads(expected_json, JSON_DECODE_ANY, NULL);

        assert_non_null(want);
        if (kube_yaml_to_json(yaml, strlen(yaml), &got, &err) < 0)
                fail_msg("%s: %s", yaml, kyb_error_message(err));
        if (!json_equal(got, want)) {
                _cleanup_free_ char *s = json_dumps(got, JSON_SORT_KEYS);

                fail_msg("%s: got %s, want %s", yaml, s, expected_json);
        }
}

static void test_yaml_to_json(void **state)
{
        /* JSON is YAML; every scalar becomes a string. */
        yaml_equal("{\"a\": [1, \"two\", {\"b\": true}], \"c\": {\"d\": null}, \"e\": []}",
                   "{\"a\": [\"1\", \"two\", {\"b\": \"true\"}], \"c\": {\"d\": \"null\"},"
                   " \"e\": []}");
        yaml_equal("---\n"
                   "# a comment\n"
                   "top:\n"
                   "  list:\n"
                   "  - name: x\n"
                   "    items: [p, q]\n"
                   "  - - nested\n"
                   "    - list\n"
                   "  - plain\n"
                   "  map: {k: v, 'quoted key': \"dq\\tvalue\"}\n"
                   "  block: |\n"
                   "    line1\n"
                   "    line2\n"
                   "  empty:\n"
                   "unicode: grüße\n",
                   "{\"top\": {\"list\": [{\"name\": \"x\", \"items\": [\"p\", \"q\"]},"
                   " [\"nested\", \"list\"], \"plain\"],"
                   " \"map\": {\"k\": \"v\", \"quoted key\": \"dq\\tvalue\"},"
                   " \"block\": \"line1\\nline2\\n\", \"empty\": \"\"},"
                   " \"unicode\": \"grüße\"}");
        yaml_equal("- a\n- b\n", "[\"a\", \"b\"]");
        yaml_equal("just a scalar", "\"just a scalar\"");
}

static void test_yaml_refused(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        json_t *out = (json_t *)1;
        /* Aliases could expand exponentially ("billion laughs"); not needed for
         * kubeconfigs, so refused. */
        const char *alias = "base: &b {server: x}\ncopy: *b\n";
        const char *unterminated = "a: b\nc: [d\n";
        char deep[200];

        assert_error(kube_yaml_to_json(alias, strlen(alias), &out, &err), err, ENOTSUP,
                     "aliases are not supported");
        assert_null(out);
        assert_error(kube_yaml_to_json("{[a]: b}", 8, &out, &err), err, EINVAL,
                     "mapping key is not a scalar");
        assert_null(out);
        /* libyaml reports an unterminated flow at the end of the stream. */
        assert_error(kube_yaml_to_json(unterminated, strlen(unterminated), &out, &err), err, EINVAL,
                     "YAML line 3");
        assert_error(kube_yaml_to_json("", 0, &out, &err), err, EINVAL, "empty YAML document");

        /* Recursion is bounded so a hostile file cannot exhaust the stack. */
        memset(deep, '[', 100);
        memset(deep + 100, ']', 100);
        assert_error(kube_yaml_to_json(deep, sizeof(deep), &out, &err), err, EINVAL,
                     "nested too deeply");
        assert_null(out);
        memset(deep, '[', 60);
        memset(deep + 60, ']', 60);
        kyb_error_freep(&err);
        assert_int_equal(kube_yaml_to_json(deep, 120, &out, &err), 0);
        json_decref(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_token_user, setup, teardown),
            cmocka_unit_test_setup_teardown(test_token_file_and_cert_paths, setup, teardown),
            cmocka_unit_test_setup_teardown(test_relative_kubeconfig_path, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inline_data, setup, teardown),
            cmocka_unit_test_setup_teardown(test_context_selection, setup, teardown),
            cmocka_unit_test_setup_teardown(test_missing_references, setup, teardown),
            cmocka_unit_test_setup_teardown(test_unsupported_auth, setup, teardown),
            cmocka_unit_test_setup_teardown(test_invalid_configs, setup, teardown),
            cmocka_unit_test_setup_teardown(test_invalid_base64, setup, teardown),
            cmocka_unit_test_setup_teardown(test_kubeconfig_from_environment, setup, teardown),
            cmocka_unit_test_setup_teardown(test_kubeconfig_from_home, setup, teardown),
            cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
            cmocka_unit_test_setup_teardown(test_in_cluster_from_load, setup, teardown),
            cmocka_unit_test_setup_teardown(test_client_copies_config_and_rereads_token, setup,
                                            teardown),
            cmocka_unit_test(test_yaml_to_json),
            cmocka_unit_test(test_yaml_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
