/* workloads.h - built-in workloads and the per-CPU helpers they share. */
#ifndef PRSEQ_WORKLOADS_H
#define PRSEQ_WORKLOADS_H

#include <stdint.h>

#include "prseq_core.h"

#define PRSEQ_CACHELINE 64

/* Delay-loop iterations inside the built-in sections (Chaos.cs_delay). Set
 * by the harness before create(). */
void prseq_workloads_set_cs_delay(uint64_t iterations);

#endif /* PRSEQ_WORKLOADS_H */
