/* SPDX-License-Identifier: Apache-2.0 */
/* proto3 JSON mapping of agent.proto messages through kyb_pb_to_json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent.pb-c.h"
#include "base/macro.h"
#include "rpc/json.h"

static char *render(const ProtobufCMessage *msg)
{
        json_t *j = kyb_pb_to_json(msg);
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

        json_decref(j);
        return s;
}

static void test_checkpoint_info(void **state)
{
        Kybernate__Agent__V1__CheckpointInfo info = KYBERNATE__AGENT__V1__CHECKPOINT_INFO__INIT;
        Kybernate__Agent__V1__Target target = KYBERNATE__AGENT__V1__TARGET__INIT;
        Kybernate__Agent__V1__ProcessTarget proc = KYBERNATE__AGENT__V1__PROCESS_TARGET__INIT;
        Kybernate__Agent__V1__StepDuration d1 = KYBERNATE__AGENT__V1__STEP_DURATION__INIT;
        Kybernate__Agent__V1__StepDuration *durations[] = {&d1};
        Kybernate__Agent__V1__CheckpointInfo__LabelsEntry l1 =
            KYBERNATE__AGENT__V1__CHECKPOINT_INFO__LABELS_ENTRY__INIT;
        Kybernate__Agent__V1__CheckpointInfo__LabelsEntry *labels[] = {&l1};
        _cleanup_free_ char *s = NULL;

        proc.pid = 42;
        target.kind_case = KYBERNATE__AGENT__V1__TARGET__KIND_PROCESS;
        target.process = &proc;
        d1.step = KYBERNATE__AGENT__V1__STEP__STEP_CRIU_DUMP;
        d1.duration_ns = 1234567890123LL;
        l1.key = "app";
        l1.value = "llm \"x\"";
        info.id = "ckpt-1";
        info.target = &target;
        info.size_bytes = 18446744073709551615ULL;
        info.pre_dump = 1;
        info.n_durations = 1;
        info.durations = durations;
        info.n_labels = 1;
        info.labels = labels;
        s = render(&info.base);
        assert_string_equal(s, "{\"durations\":[{\"durationNs\":\"1234567890123\","
                               "\"step\":\"STEP_CRIU_DUMP\"}],\"id\":\"ckpt-1\","
                               "\"labels\":{\"app\":\"llm \\\"x\\\"\"},\"preDump\":true,"
                               "\"sizeBytes\":\"18446744073709551615\","
                               "\"target\":{\"process\":{\"pid\":42}}}");
}

static void test_defaults_omitted_and_bytes(void **state)
{
        Kybernate__Agent__V1__VersionResponse v = KYBERNATE__AGENT__V1__VERSION_RESPONSE__INIT;
        _cleanup_free_ char *s = render(&v.base);

        assert_string_equal(s, "{}");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_checkpoint_info),
            cmocka_unit_test(test_defaults_omitted_and_bytes),
        };

        return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
