/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics/metrics.h"

static void test_counter_and_labels(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_metrics *m = NULL;
        _cleanup_free_ char *text = NULL;

        assert_int_equal(kyb_metrics_new(&m, &err), 0);
        kyb_metric *c = kyb_metrics_counter(m, "kyb_things_total", "Things seen.", "kind");
        kyb_metric *plain = kyb_metrics_counter(m, "kyb_plain_total", "No labels.", NULL);
        kyb_metric_add(c, "a", 1);
        kyb_metric_add(c, "a", 2);
        kyb_metric_add(c, "quote\"back\\slash\nnl", 1);
        assert_true(kyb_metric_value(c, "a") == 3);
        text = kyb_metrics_render(m);
        assert_non_null(strstr(text, "# HELP kyb_things_total Things seen.\n"
                                     "# TYPE kyb_things_total counter\n"));
        assert_non_null(strstr(text, "kyb_things_total{kind=\"a\"} 3\n"));
        assert_non_null(strstr(text, "kyb_things_total{kind=\"quote\\\"back\\\\slash\\nnl\"} 1\n"));
        /* An unlabelled metric reports 0 before its first update. */
        assert_non_null(strstr(text, "kyb_plain_total 0\n"));
        (void)plain;
        kyb_metrics_free(m);
}

static void test_gauge_set(void **state)
{
        kyb_metrics *m = NULL;
        _cleanup_free_ char *text = NULL;

        assert_int_equal(kyb_metrics_new(&m, NULL), 0);
        kyb_metric *g = kyb_metrics_gauge(m, "kyb_bytes", "Bytes.", NULL);
        kyb_metric_set(g, NULL, 10);
        kyb_metric_set(g, NULL, 4.5);
        text = kyb_metrics_render(m);
        assert_non_null(strstr(text, "# TYPE kyb_bytes gauge\nkyb_bytes 4.5\n"));
        kyb_metrics_free(m);
}

static void test_histogram_buckets_cumulative(void **state)
{
        static const double buckets[] = {0.1, 1, 10};
        kyb_metrics *m = NULL;
        _cleanup_free_ char *text = NULL;

        assert_int_equal(kyb_metrics_new(&m, NULL), 0);
        kyb_metric *h = kyb_metrics_histogram(m, "kyb_seconds", "Durations.", "step", buckets, 3);
        kyb_metric_observe(h, "dump", 0.05);
        kyb_metric_observe(h, "dump", 0.5);
        kyb_metric_observe(h, "dump", 0.5);
        kyb_metric_observe(h, "dump", 100);
        text = kyb_metrics_render(m);
        assert_non_null(
            strstr(text, "kyb_seconds_bucket{step=\"dump\",le=\"0.10000000000000001\"} 1\n"));
        assert_non_null(strstr(text, "kyb_seconds_bucket{step=\"dump\",le=\"1\"} 3\n"));
        assert_non_null(strstr(text, "kyb_seconds_bucket{step=\"dump\",le=\"10\"} 3\n"));
        assert_non_null(strstr(text, "kyb_seconds_bucket{step=\"dump\",le=\"+Inf\"} 4\n"));
        assert_non_null(strstr(text, "kyb_seconds_sum{step=\"dump\"} 101.05\n"));
        assert_non_null(strstr(text, "kyb_seconds_count{step=\"dump\"} 4\n"));
        kyb_metrics_free(m);
}

static void test_http_rejects_bad_address(void **state)
{
        _cleanup_error_ kyb_error *err = NULL;
        kyb_http *h = NULL;

        assert_int_equal(kyb_http_start("localhost", NULL, NULL, NULL, &h, &err), -EINVAL);
        assert_non_null(strstr(kyb_error_message(err), "HOST:PORT"));
        assert_int_equal(kyb_http_start("127.0.0.1:99999", NULL, NULL, NULL, &h, &err), -EINVAL);
        assert_int_equal(kyb_http_start("::1:80", NULL, NULL, NULL, &h, &err), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_counter_and_labels),
            cmocka_unit_test(test_gauge_set),
            cmocka_unit_test(test_histogram_buckets_cumulative),
            cmocka_unit_test(test_http_rejects_bad_address),
        };

        return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
