/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to src/lib/agent: agent.proto messages <-> engine structs.
 * Outgoing messages are allocated field by field with malloc so that
 * protobuf_c_message_free_unpacked() releases them.
 */
#pragma once

#include "agent.pb-c.h"
#include "ckpt/engine.h"

/* Borrows strings from req: keep req alive while spec is used. */
int kyb_agent_checkpoint_spec(const Kybernate__Agent__V1__CheckpointRequest *req,
                              kyb_checkpoint_spec *spec, kyb_label **labels, kyb_error **err);
/* *pairs (freed by the caller) backs spec->gpu_uuid_map. */
int kyb_agent_restore_spec(const Kybernate__Agent__V1__RestoreRequest *req, kyb_restore_spec *spec,
                           struct kyb_gpu_uuid_pair **pairs, kyb_error **err);

Kybernate__Agent__V1__CheckpointInfo *kyb_agent_checkpoint_info(const kyb_checkpoint *c);
Kybernate__Agent__V1__RestoreResult *kyb_agent_restore_result(const kyb_restore_result *r);
