/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
 * a candidate takes the lease when it is free or when its holder has not
 * renewed it for lease_ms as measured on the candidate's own clock (from
 * the moment the candidate saw the record change, so clock skew between
 * nodes does not matter); the leader renews every retry_ms and gives up
 * leadership when it could not renew for renew_deadline_ms.
 *
 * Writes are conditional on the Lease's resourceVersion, so two candidates
 * can never both believe they hold it: the loser gets a 409 and re-reads.
 */
#pragma once

#include "kube/kube.h"

typedef struct kyb_kube_leader kyb_kube_leader;

typedef struct kyb_kube_leader_opts {
        const char *ns;
        const char *name;
        const char *identity;
        unsigned lease_ms;          /* 0: 15 s */
        unsigned renew_deadline_ms; /* 0: 10 s */
        unsigned retry_ms;          /* 0: 2 s */
        /* Called on the election thread. on_started: this candidate leads
         * now. on_stopped: it lost the lease (or was stopped while leading);
         * a controller should stop acting at once. */
        void (*on_started)(void *ctx);
        void (*on_stopped)(void *ctx);
        /* Optional: a failed read or write of the Lease other than losing a
         * race (forbidden, unreachable): the election keeps trying. */
        void (*on_error)(void *ctx, const kyb_error *err);
        void *ctx;
} kyb_kube_leader_opts;

int kyb_kube_leader_start(kyb_kube_client *c, const kyb_kube_leader_opts *opts,
                          kyb_kube_leader **out, kyb_error **err);
bool kyb_kube_leader_is_leader(kyb_kube_leader *l);
/* Stops campaigning; a leader releases the lease (holder cleared, so the
 * next candidate need not wait for it to expire). */
void kyb_kube_leader_free(kyb_kube_leader *l);
