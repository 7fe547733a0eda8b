/* util.h - helpers every part of a run uses (util.c); they call nothing
 * else of the core. */
#ifndef PRSEQ_UTIL_H
#define PRSEQ_UTIL_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "prseq_core.h"

struct prseq_run;

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t prseq_now_ns(void);

/* An absolute time in nanoseconds as a struct timespec. */
struct timespec prseq_ns_to_timespec(uint64_t ns);

/* splitmix64: the seeded generator of every schedule (churn, injectors). */
uint64_t prseq_rand(uint64_t *state);

/* A CPU mask sized for nr_cpus possible CPU ids (CPU_ALLOC), zeroed, and
 * its size in bytes for the *_S macros and sched_{get,set}affinity; NULL
 * when out of memory. Free with CPU_FREE. */
cpu_set_t *prseq_mask_alloc(uint32_t nr_cpus, size_t *size);

/* Record an error that stops the run (first one wins). */
void prseq_run_fail(struct prseq_run *run, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Injectors that change CPU masks wrap the change in these, so invariant
 * sampling can tell a settled mask from one that is moving. */
void prseq_mask_change_begin(struct prseq_run *run);
void prseq_mask_change_end(struct prseq_run *run);

/* The first required field of `w` that is wrong ("abi_version", "create", ...),
 * or NULL when the workload can run. */
const char *prseq_workload_problem(const struct prseq_workload *w);

/* The workload's PRSEQ_WORKLOAD_* flags (0 for an ABI version 1 workload,
 * whose structure has no flags field). */
uint32_t prseq_workload_flags(const struct prseq_workload *w);

#endif /* PRSEQ_UTIL_H */
