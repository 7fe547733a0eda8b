/* bench.h - tight native loops that the benchmarks compare the harness with.
 *
 * Each variant runs one per-CPU (or shared) increment per op in a plain loop
 * in N pthreads, with no harness around it: no function pointer, no batches,
 * no stop flag, no sampling. The rseq variants use the very section the
 * built-in counters use (prseq_arch_inc). The "builtin" variants run the
 * built-in counter's own batch function once per thread for all its ops:
 * the very machine code the harness runs, minus the harness around it, so
 * the difference to prseq_run() of that workload is the harness's cost.
 */
#ifndef PRSEQ_BENCH_H
#define PRSEQ_BENCH_H

#include <stdint.h>

/* cffi-cdef-begin */
#define PRSEQ_BENCH_RSEQ_CPU_ID 0    /* rseq section, shard by cpu_id (as "counter") */
#define PRSEQ_BENCH_RSEQ_MM_CID 1    /* rseq section, shard by mm_cid (as "counter_mm_cid") */
#define PRSEQ_BENCH_ATOMIC 2         /* one shared counter, atomic fetch_add */
#define PRSEQ_BENCH_GETCPU_SHARD 3   /* sched_getcpu() + atomic fetch_add on that CPU's shard */
#define PRSEQ_BENCH_MUTEX 4          /* one counter behind one pthread mutex */
#define PRSEQ_BENCH_BUILTIN_CPU_ID 5 /* built-in "counter": its batch, one call for all ops */
#define PRSEQ_BENCH_BUILTIN_MM_CID 6 /* built-in "counter_mm_cid": the same */
#define PRSEQ_BENCH_NR_VARIANTS 7

struct prseq_bench_result {
    int error;                /* 0 or a positive errno */
    char errmsg[256];
    uint32_t threads;
    uint64_t ops;             /* increments done, over all threads */
    uint64_t total;           /* sum of the counter(s) afterwards: equals ops when correct */
    uint64_t aborts;          /* rseq aborts (rseq variants only) */
    uint64_t wall_ns;         /* first pthread_create .. last join (as prseq_run times a run) */
    uint64_t cpu_ns;          /* sum of the workers' thread CPU time */
};

/* Run `variant` in `threads` threads, `ops_per_thread` increments each.
 * Returns 0 or a negative errno (also in out->error with a message). */
int prseq_bench_tight(int variant, uint32_t threads, uint64_t ops_per_thread,
                      struct prseq_bench_result *out);
/* Name of a variant ("rseq_cpu_id", ...), or NULL past the last one. */
const char *prseq_bench_variant_name(int variant);
/* cffi-cdef-end */

#endif /* PRSEQ_BENCH_H */
