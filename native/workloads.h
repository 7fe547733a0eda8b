/* workloads.h - built-in workloads and the per-CPU helpers they share. */
#ifndef PRSEQ_WORKLOADS_H
#define PRSEQ_WORKLOADS_H

#include <stdint.h>

#include "prseq_core.h"

#define PRSEQ_CACHELINE 64

/* Delay-loop iterations inside the built-in sections (Chaos.cs_delay). Set
 * by the harness before create(). */
void prseq_workloads_set_cs_delay(uint64_t iterations);

/* Run n ops of a built-in workload in one call (the section inlined in a
 * loop); adds the ops done to *done; 0 or a negative errno. */
typedef int (*prseq_batch_fn)(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done);

/* The batch function of a built-in counter, or NULL (canaries, libraries:
 * the harness calls their op once per op). */
prseq_batch_fn prseq_builtin_batch(const struct prseq_workload *w);

#endif /* PRSEQ_WORKLOADS_H */
