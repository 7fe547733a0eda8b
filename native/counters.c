/* counters.c - the per-CPU counter every built-in workload shares (shards
 * by CPU id, create/total/shards/destroy, the fallback op), and the two
 * correct counters: by cpu_id and by mm_cid, per op and per batch. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "arch/arch.h"
#include "counters.h"
#include "util.h"

static uint64_t cs_delay;

void prseq_workloads_set_cs_delay(uint64_t iterations)
{
    cs_delay = iterations;
}

void *counter_create(enum counter_kind kind, uint64_t extra_delay)
{
    struct counter *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    c->nr_shards = prseq_possible_cpus();
    c->delay = cs_delay + extra_delay;
    c->shards = aligned_alloc(PRSEQ_CACHELINE, sizeof(struct shard) * c->nr_shards);
    if (!c->shards) {
        free(c);
        return NULL;
    }
    memset(c->shards, 0, sizeof(struct shard) * c->nr_shards);
    return c;
}

void *create_cpu_id(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BY_CPU_ID, 0);
}

void *create_mm_cid(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BY_MM_CID, 0);
}

int counter_thread_init(void *state, struct prseq_thread *t)
{
    int owner;
    (void)state;
    t->local = prseq_current_area(&owner);
    return 0;
}

/* n ops of a built-in counter: the same section and retry rule as
 * the ABI's per-op functions below, inlined in a loop for the batch the
 * harness calls for built-ins (no call per op). *done counts committed ops. */
static inline __attribute__((always_inline)) int
counter_ops(struct counter *c, struct prseq_thread *t, const uint32_t *index,
            const uint32_t *cmp, uint64_t n, uint64_t *done)
{
    struct prseq_rseq_area *area = t->local;
    struct shard *shards = c->shards;
    uint32_t nr_shards = c->nr_shards;
    uint64_t delay = c->delay, aborts = 0, i;
    int rc = 0;

    for (i = 0; i < n; i++) {
        for (;;) {
            uint32_t cpu = __atomic_load_n(index, __ATOMIC_RELAXED);
            int step;
            if (cpu >= nr_shards) {
                rc = -ERANGE;
                goto out;
            }
            step = prseq_arch_inc(area, cmp, cpu, &shards[cpu].value, delay);
            if (step == 0)
                break;
            if (step < 0)
                aborts++;
        }
    }
out:
    t->aborts += aborts;
    *done += i;
    return rc;
}

/* One op of each counter (the ABI's op): the batch code with n = 1.
 * mm_cid is read before the section and compared again inside it: reading
 * it outside only (librseq's old bug) lets two threads share a shard. */
int op_cpu_id(void *state, struct prseq_thread *t)
{
    struct prseq_rseq_area *area = t->local;
    uint64_t done = 0;
    return counter_ops(state, t, &area->cpu_id_start, &area->cpu_id, 1, &done);
}

int op_mm_cid(void *state, struct prseq_thread *t)
{
    struct prseq_rseq_area *area = t->local;
    uint64_t done = 0;
    return counter_ops(state, t, &area->mm_cid, &area->mm_cid, 1, &done);
}

/* The harness's fast path for the two counters: a whole batch per call. */
int batch_cpu_id(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done)
{
    struct prseq_rseq_area *area = t->local;

    return counter_ops(state, t, &area->cpu_id_start, &area->cpu_id, n, done);
}

int batch_mm_cid(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done)
{
    struct prseq_rseq_area *area = t->local;

    return counter_ops(state, t, &area->mm_cid, &area->mm_cid, n, done);
}

/* The fallback path: an atomic add on the shard of the CPU we run on. */
int op_fallback(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    int cpu = sched_getcpu();
    (void)t;
    if (cpu < 0 || (uint32_t)cpu >= c->nr_shards)
        cpu = 0;
    __atomic_fetch_add(&c->shards[cpu].value, 1, __ATOMIC_RELAXED);
    return 0;
}

uint64_t counter_total(void *state)
{
    struct counter *c = state;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->nr_shards; i++)
        sum += __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return sum;
}

uint32_t counter_shards(void *state, uint64_t *out, uint32_t max)
{
    struct counter *c = state;
    uint32_t n = c->nr_shards < max ? c->nr_shards : max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return n;
}

void counter_destroy(void *state)
{
    struct counter *c = state;
    free(c->shards);
    free(c);
}

/* thread_exit of the canaries that keep a heap block in t->local. */
void free_local(void *state, struct prseq_thread *t)
{
    (void)state;
    free(t->local);
    t->local = NULL;
}
