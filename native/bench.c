/* bench.c - tight native loops for the benchmarks (see bench.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abi.h"
#include "arch/arch.h"
#include "bench.h"
#include "util.h"
#include "workloads.h"

struct bench_shard {
    _Alignas(PRSEQ_CACHELINE) uint64_t value;
};

struct bench_state {
    int variant;
    uint64_t ops_per_thread;
    uint32_t nr_shards;
    struct bench_shard *shards;        /* per-CPU shards (rseq, getcpu) */
    const struct prseq_workload *w;    /* builtin variants */
    void *wstate;
    _Alignas(PRSEQ_CACHELINE) uint64_t shared;   /* atomic and mutex variants */
    _Alignas(PRSEQ_CACHELINE) pthread_mutex_t lock;
    _Alignas(PRSEQ_CACHELINE) int failed;
};

struct bench_worker {
    _Alignas(PRSEQ_CACHELINE) struct bench_state *st;
    pthread_t thread;
    uint32_t index;
    int started;
    int error;
    uint64_t ops;
    uint64_t aborts;
    uint64_t cpu_ns;
};

static const char *const variant_names[PRSEQ_BENCH_NR_VARIANTS] = {
    "rseq_cpu_id", "rseq_mm_cid", "atomic", "getcpu_shard", "mutex",
    "builtin_cpu_id", "builtin_mm_cid",
};

const char *prseq_bench_variant_name(int variant)
{
    if (variant < 0 || variant >= PRSEQ_BENCH_NR_VARIANTS)
        return NULL;
    return variant_names[variant];
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The loop of the built-in "counter"/"counter_mm_cid" op, inlined: read the
 * shard index, run the section, retry on mismatch or abort. `field` is
 * &area->cpu_id or &area->mm_cid; the index comes from cpu_id_start for
 * cpu_id (as the built-in does) and from mm_cid itself otherwise. */
static int loop_rseq(struct bench_worker *wk, struct prseq_rseq_area *area, const uint32_t *field,
                     const uint32_t *index)
{
    struct bench_shard *shards = wk->st->shards;
    uint32_t nr_shards = wk->st->nr_shards;
    uint64_t aborts = 0, n = wk->st->ops_per_thread;

    for (uint64_t i = 0; i < n; i++) {
        for (;;) {
            uint32_t cpu = __atomic_load_n(index, __ATOMIC_RELAXED);
            int rc;
            if (cpu >= nr_shards)
                return ERANGE;
            rc = prseq_arch_inc(area, field, cpu, &shards[cpu].value, 0);
            if (rc == 0)
                break;
            if (rc < 0)
                aborts++;
        }
    }
    wk->aborts = aborts;
    return 0;
}

/* The built-in counter's batch function, called once for every op of the
 * thread: the harness's inner loop with nothing around it. */
static int loop_builtin(struct bench_worker *wk)
{
    struct bench_state *st = wk->st;
    struct prseq_thread t = {.index = wk->index};
    prseq_batch_fn batch = prseq_builtin_batch(st->w);
    uint64_t done = 0;
    int rc;

    if (!batch)
        return EINVAL;
    rc = st->w->thread_init ? st->w->thread_init(st->wstate, &t) : 0;
    if (rc == 0 && !t.local)
        rc = -ENOSYS;
    if (rc == 0)
        rc = batch(st->wstate, &t, st->ops_per_thread, &done);
    if (st->w->thread_exit)
        st->w->thread_exit(st->wstate, &t);
    wk->aborts = t.aborts;
    return rc < 0 ? -rc : 0;
}

static int run_variant(struct bench_worker *wk)
{
    struct bench_state *st = wk->st;
    uint64_t n = st->ops_per_thread;
    struct prseq_rseq_area *area;
    int owner;

    switch (st->variant) {
    case PRSEQ_BENCH_RSEQ_CPU_ID:
    case PRSEQ_BENCH_RSEQ_MM_CID:
        area = prseq_current_area(&owner);
        if (!area)
            return ENOSYS;
        if (st->variant == PRSEQ_BENCH_RSEQ_CPU_ID)
            return loop_rseq(wk, area, &area->cpu_id, &area->cpu_id_start);
        return loop_rseq(wk, area, &area->mm_cid, &area->mm_cid);
    case PRSEQ_BENCH_BUILTIN_CPU_ID:
    case PRSEQ_BENCH_BUILTIN_MM_CID:
        return loop_builtin(wk);
    case PRSEQ_BENCH_ATOMIC:
        for (uint64_t i = 0; i < n; i++)
            __atomic_fetch_add(&st->shared, 1, __ATOMIC_RELAXED);
        return 0;
    case PRSEQ_BENCH_GETCPU_SHARD:
        for (uint64_t i = 0; i < n; i++) {
            int cpu = sched_getcpu();
            if (cpu < 0 || (uint32_t)cpu >= st->nr_shards)
                cpu = 0;
            __atomic_fetch_add(&st->shards[cpu].value, 1, __ATOMIC_RELAXED);
        }
        return 0;
    case PRSEQ_BENCH_MUTEX:
        for (uint64_t i = 0; i < n; i++) {
            pthread_mutex_lock(&st->lock);
            st->shared++;
            pthread_mutex_unlock(&st->lock);
        }
        return 0;
    }
    return EINVAL;
}

static void *bench_worker_main(void *arg)
{
    struct bench_worker *wk = arg;
    uint64_t cpu0 = thread_cpu_ns();

    wk->error = run_variant(wk);
    wk->cpu_ns = thread_cpu_ns() - cpu0;
    if (!wk->error)
        wk->ops = wk->st->ops_per_thread;
    return NULL;
}

static int bench_fail(struct prseq_bench_result *out, int err, const char *what)
{
    out->error = err;
    snprintf(out->errmsg, sizeof(out->errmsg), "%s: %s", what, strerror(err));
    return -err;
}

/* The state of one variant: shards, lock, and for the "builtin" variants the
 * built-in counter's own state. NULL, with out->error set, on failure. */
static struct bench_state *bench_state_new(int variant, uint32_t threads, uint64_t ops_per_thread,
                                           struct prseq_bench_result *out)
{
    struct bench_state *st = aligned_alloc(PRSEQ_CACHELINE, sizeof(*st));

    if (!st) {
        bench_fail(out, ENOMEM, "allocating the benchmark state");
        return NULL;
    }
    memset(st, 0, sizeof(*st));
    st->variant = variant;
    st->ops_per_thread = ops_per_thread;
    st->nr_shards = prseq_possible_cpus();
    st->shards = aligned_alloc(PRSEQ_CACHELINE, sizeof(struct bench_shard) * st->nr_shards);
    if (!st->shards) {
        free(st);
        bench_fail(out, ENOMEM, "allocating the shards");
        return NULL;
    }
    memset(st->shards, 0, sizeof(struct bench_shard) * st->nr_shards);
    pthread_mutex_init(&st->lock, NULL);
    if (variant == PRSEQ_BENCH_BUILTIN_CPU_ID || variant == PRSEQ_BENCH_BUILTIN_MM_CID) {
        st->w = prseq_builtin(variant == PRSEQ_BENCH_BUILTIN_CPU_ID ? "counter"
                                                                     : "counter_mm_cid");
        prseq_workloads_set_cs_delay(0);
        st->wstate = st->w ? st->w->create(threads) : NULL;
        if (!st->wstate) {
            pthread_mutex_destroy(&st->lock);
            free(st->shards);
            free(st);
            bench_fail(out, ENOMEM, "creating the built-in counter");
            return NULL;
        }
    }
    return st;
}

/* The counters' sum (it must equal the ops done), then the state freed. */
static uint64_t bench_state_finish(struct bench_state *st)
{
    uint64_t total = st->shared;

    for (uint32_t i = 0; i < st->nr_shards; i++)
        total += st->shards[i].value;
    if (st->wstate) {
        total += st->w->total(st->wstate);
        st->w->destroy(st->wstate);
    }
    pthread_mutex_destroy(&st->lock);
    free(st->shards);
    free(st);
    return total;
}

/* Start the workers, join them, add up their tallies; 0 or the first errno. */
static int bench_threads(struct bench_state *st, struct bench_worker *workers, uint32_t threads,
                         struct prseq_bench_result *out)
{
    uint64_t start = prseq_now_ns();
    int err = 0;

    for (uint32_t i = 0; i < threads; i++) {
        int rc;
        workers[i].st = st;
        workers[i].index = i;
        rc = pthread_create(&workers[i].thread, NULL, bench_worker_main, &workers[i]);
        if (rc != 0) {
            err = rc;
            break;
        }
        workers[i].started = 1;
    }
    /* The loops are bounded (no stop flag to keep them tight), so a plain
     * join is enough: every worker ends after ops_per_thread increments. */
    for (uint32_t i = 0; i < threads; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
    out->wall_ns = prseq_now_ns() - start;
    for (uint32_t i = 0; i < threads; i++) {
        out->ops += workers[i].ops;
        out->aborts += workers[i].aborts;
        out->cpu_ns += workers[i].cpu_ns;
        if (workers[i].error && !err)
            err = workers[i].error;
    }
    return err;
}

int prseq_bench_tight(int variant, uint32_t threads, uint64_t ops_per_thread,
                      struct prseq_bench_result *out)
{
    struct bench_state *st;
    struct bench_worker *workers;
    int err;

    memset(out, 0, sizeof(*out));
    out->threads = threads;
    if (!prseq_bench_variant_name(variant))
        return bench_fail(out, EINVAL, "unknown variant");
    if (threads == 0 || threads > PRSEQ_MAX_THREADS || ops_per_thread == 0)
        return bench_fail(out, EINVAL, "threads and ops_per_thread must be > 0");
    workers = aligned_alloc(PRSEQ_CACHELINE, sizeof(*workers) * threads);
    if (!workers)
        return bench_fail(out, ENOMEM, "allocating the benchmark workers");
    st = bench_state_new(variant, threads, ops_per_thread, out);
    if (!st) {
        free(workers);
        return -out->error;
    }
    memset(workers, 0, sizeof(*workers) * threads);
    err = bench_threads(st, workers, threads, out);
    out->total = bench_state_finish(st);
    free(workers);
    if (err)
        return bench_fail(out, err, variant_names[variant]);
    return 0;
}
