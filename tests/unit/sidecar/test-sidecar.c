/* SPDX-License-Identifier: Apache-2.0 */
/* The sidecar's retry backoff: doubling, bounded, jittered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sidecar/sidecar.h"

#define BASE 1000
#define MAX  60000

/* Every delay lies in [wait / 2, wait] for the wait of its failure count. */
static void test_doubles_up_to_the_ceiling(void **state)
{
        unsigned seed = 1;

        for (unsigned n = 1; n <= 40; n++) {
                int64_t wait = n <= 6 ? (int64_t)BASE << (n - 1) : MAX; /* 64 s > 60 s */

                for (int i = 0; i < 200; i++) {
                        int64_t d = kyb_sidecar_retry_delay_ms(BASE, MAX, n, &seed);

                        assert_in_range(d, wait / 2, wait);
                }
        }
}

/* Sidecars that failed together do not all come back at the same moment. */
static void test_jitter_spreads_retries(void **state)
{
        unsigned seed = 42;
        int64_t lo = INT64_MAX, hi = 0;

        for (int i = 0; i < 1000; i++) {
                int64_t d = kyb_sidecar_retry_delay_ms(BASE, MAX, 3, &seed);

                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
        }
        assert_true(lo < 2400); /* the window is [2000, 4000] */
        assert_true(hi > 3600);
}

static void test_edge_values(void **state)
{
        unsigned seed = 7;

        /* No interval: retry at the next scan. */
        assert_int_equal(kyb_sidecar_retry_delay_ms(0, MAX, 5, &seed), 0);
        /* A ceiling below the first interval does not shorten it. */
        assert_in_range(kyb_sidecar_retry_delay_ms(BASE, 10, 9, &seed), BASE / 2, BASE);
        /* Huge failure counts and intervals neither overflow nor exceed the ceiling. */
        assert_in_range(kyb_sidecar_retry_delay_ms(3600000, 86400000, UINT32_MAX, &seed),
                        86400000 / 2, 86400000);
        assert_in_range(kyb_sidecar_retry_delay_ms(BASE, MAX, 0, &seed), BASE / 2, BASE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_doubles_up_to_the_ceiling),
            cmocka_unit_test(test_jitter_spreads_retries),
            cmocka_unit_test(test_edge_values),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
