/* workloads.c - the table of built-in workloads (counters.c, canaries.c):
 * lookup by name or index, and the batch function of the fast counters. */
#define _GNU_SOURCE
#include <string.h>

#include "counters.h"

#define COUNTER_WORKLOAD(NAME, CREATE, OP)                                   \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = CREATE,                                                    \
        .thread_init = counter_thread_init,                                  \
        .op = OP,                                                            \
        .fallback_op = op_fallback,                                          \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

#define CLOBBER_WORKLOAD(NAME, CREATE)                                       \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = CREATE,                                                    \
        .thread_init = clobber_thread_init,                                  \
        .op = op_clobber,                                                    \
        .fallback_op = op_fallback,                                          \
        .thread_exit = free_local,                                            \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

#define EXIT_LOSS_WORKLOAD(NAME)                                             \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = create_exit_loss,                                          \
        .thread_init = exit_loss_thread_init,                                \
        .op = op_exit_loss,                                                  \
        .fallback_op = op_exit_loss,                                         \
        .thread_exit = exit_loss_thread_exit,                                \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

static const struct prseq_workload builtins[] = {
    COUNTER_WORKLOAD("counter", create_cpu_id, op_cpu_id),
    COUNTER_WORKLOAD("counter_mm_cid", create_mm_cid, op_mm_cid),
    COUNTER_WORKLOAD("canary_racy", create_racy, op_racy),
    COUNTER_WORKLOAD("canary_bad_signature", create_bad_sig, op_bad_sig),
    CLOBBER_WORKLOAD("canary_clobber_cpu_id_start", create_clobber_start),
    CLOBBER_WORKLOAD("canary_clobber_cpu_range", create_clobber_range),
    CLOBBER_WORKLOAD("canary_clobber_not_allowed", create_clobber_not_allowed),
    CLOBBER_WORKLOAD("canary_clobber_stale_cpu", create_clobber_stale),
    CLOBBER_WORKLOAD("canary_clobber_node_id", create_clobber_node),
    CLOBBER_WORKLOAD("canary_clobber_mm_cid", create_clobber_mm_cid),
    {
        .abi_version = PRSEQ_ABI_VERSION,
        .name = "canary_stale_cpu",
        .create = create_stale_cpu,
        .thread_init = stale_thread_init,
        .op = op_stale_cpu,
        .fallback_op = op_fallback,
        .thread_exit = free_local,
        .total = counter_total,
        .shards = counter_shards,
        .destroy = counter_destroy,
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,
    },
    EXIT_LOSS_WORKLOAD("canary_exit_loss"),
};

#define NR_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))

const struct prseq_workload *prseq_builtin(const char *name)
{
    for (size_t i = 0; i < NR_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

const char *prseq_builtin_name(uint32_t index)
{
    return index < NR_BUILTINS ? builtins[index].name : NULL;
}

prseq_batch_fn prseq_builtin_batch(const struct prseq_workload *w)
{
    if (w == &builtins[0])
        return batch_cpu_id;
    if (w == &builtins[1])
        return batch_mm_cid;
    return NULL;
}
