/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "rpc/json.h"
#include "rpc/status.h"

int ctl_fail(const char *what, const kyb_error *err)
{
        int e = kyb_error_errno(err);

        fprintf(stderr, "kybernatectl: %s: %s\n", what, kyb_error_message(err));
        if (kyb_rpc_status_from_errno(e) == GRPC_STATUS_UNAVAILABLE)
                return CTL_UNREACHABLE;
        return CTL_FAILED;
}

void ctl_print_message(const ctl *c, const ProtobufCMessage *msg)
{
        json_t *j = kyb_pb_to_json(msg);
        char *s = j ? json_dumps(j, c->json ? JSON_COMPACT : JSON_INDENT(2)) : NULL;

        puts(s ? s : "{}");
        free(s);
        json_decref(j);
}

char *ctl_human_bytes(uint64_t bytes, char *buf, size_t len)
{
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double)bytes;
        size_t u = 0;

        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
        return buf;
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* On a terminal: one redrawn line with a bar, bytes and rate. Otherwise:
 * a plain line whenever the step changes, for logs and pipes. */
void ctl_progress(ctl *c, int step, const char *step_name, const char *message, uint64_t done,
                  uint64_t total)
{
        char d[32], t[32], r[32];

        if (c->json)
                return;
        if (!c->tty) {
                if (step != c->last_step)
                        printf("%s: %s\n", step_name, message ? message : "");
                c->last_step = step;
                fflush(stdout);
                return;
        }
        if (c->started == 0)
                c->started = now_s();
        double rate = done / KYB_MAX(now_s() - c->started, 1e-3);
        int pct = total ? (int)(100.0 * (double)done / (double)total) : 0;
        int fill = pct / 5;
        printf("\r\033[K%-16s [%.*s%*s] %3d%% %s/%s %s/s", step_name, fill,
               "====================", 20 - fill, "", pct, ctl_human_bytes(done, d, sizeof(d)),
               ctl_human_bytes(total, t, sizeof(t)), ctl_human_bytes((uint64_t)rate, r, sizeof(r)));
        fflush(stdout);
        c->last_step = step;
}

void ctl_progress_end(const ctl *c)
{
        if (c->tty && !c->json)
                printf("\r\033[K");
}
