/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's node controller: see node.c and nodectl/nodectl.h. */
#pragma once

#include "base/error.h"

struct kyb_agent;

/* Starts it when the configuration asks for it (node-controller). */
int kyb_agent_node_start(struct kyb_agent *agent, kyb_error **err);
/* Lets running checkpoints finish, then stops; safe when it never started. */
void kyb_agent_node_stop(struct kyb_agent *agent);
