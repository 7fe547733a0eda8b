/* percpu.c - a downstream library with two rseq structures, as a user of
 * pytest-rseq would write it:
 *   - a per-CPU counter (one cache line per possible CPU);
 *   - a per-CPU free list (a stack of nodes per CPU) with rseq pop and push;
 *     one op pops a node from the current CPU's list and pushes it back on
 *     the then current CPU's list, so `expected` is conservation of nodes.
 * Built twice (build.py): without PERCPU_BROKEN as libpercpu.so (the correct
 * workloads), with it as libpercpu_broken.so (deliberately broken ones the
 * gate must catch). The fallback paths use per-CPU spin locks and atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pytest_rseq.h"

#if defined(__x86_64__)
#include "percpu_x86_64.h"
#elif defined(__aarch64__)
#include "percpu_aarch64.h"
#else
#error "this example has critical sections for x86_64 and aarch64 only"
#endif

#define CACHELINE 64
/* Spin iterations inside the broken sections, so preemption lands there. */
#define BROKEN_WINDOW 256

/* Highest possible CPU id + 1: ids need not be contiguous. */
static uint32_t possible_cpus(void)
{
    char buf[4096];
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    unsigned long max = 0;
    size_t n;

    if (!f)
        return CPU_SETSIZE;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *p = buf; *p;) {
        char *end;
        unsigned long v;
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        v = strtoul(p, &end, 10);
        max = v > max ? v : max;
        p = end;
    }
    return (uint32_t)max + 1;
}

static void *cache_aligned_zalloc(size_t size)
{
    size_t rounded = (size + CACHELINE - 1) / CACHELINE * CACHELINE;
    void *p = aligned_alloc(CACHELINE, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

/* Every worker keeps its thread's rseq area in t->local. */
static int find_area(void *state, struct prseq_thread *t)
{
    (void)state;
    t->local = prseq_rseq_area();
    return 0;
}

/* ---- per-CPU counter ------------------------------------------------- */

struct counter_shard {
    _Alignas(CACHELINE) uint64_t value;
};

struct counter {
    uint32_t nr_cpus;
    struct counter_shard *shards;
};

static void *counter_create(uint32_t nr_threads)
{
    struct counter *c = calloc(1, sizeof(*c));
    (void)nr_threads;
    if (!c)
        return NULL;
    c->nr_cpus = possible_cpus();
    c->shards = cache_aligned_zalloc(sizeof(*c->shards) * c->nr_cpus);
    if (!c->shards) {
        free(c);
        return NULL;
    }
    return c;
}

static void counter_destroy(void *state)
{
    struct counter *c = state;
    free(c->shards);
    free(c);
}

static uint64_t counter_total(void *state)
{
    struct counter *c = state;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->nr_cpus; i++)
        sum += __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return sum;
}

static uint32_t counter_shards(void *state, uint64_t *out, uint32_t max)
{
    struct counter *c = state;
    uint32_t n = c->nr_cpus < max ? c->nr_cpus : max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return n;
}

static int counter_fallback(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    int cpu = sched_getcpu();
    (void)t;
    if (cpu < 0 || (uint32_t)cpu >= c->nr_cpus)
        cpu = 0;
    __atomic_fetch_add(&c->shards[cpu].value, 1, __ATOMIC_RELAXED);
    return 0;
}

static int counter_add(void *state, struct prseq_thread *t, uint64_t delay,
                       int (*section)(struct prseq_rseq_area *, uint32_t, uint64_t *, uint64_t))
{
    struct counter *c = state;
    struct prseq_rseq_area *rs = t->local;

    if (!rs)
        return -ENOSYS;
    for (;;) {
        uint32_t cpu = __atomic_load_n(&rs->cpu_id_start, __ATOMIC_RELAXED);
        int rc;
        if (cpu >= c->nr_cpus)
            return -ERANGE;
        rc = section(rs, cpu, &c->shards[cpu].value, delay);
        if (rc == 0)
            return 0;
        if (rc < 0)
            t->aborts++;
    }
}

#ifndef PERCPU_BROKEN
static int counter_op(void *state, struct prseq_thread *t)
{
    return counter_add(state, t, 0, percpu_add);
}
#else
/* Broken: per-CPU load/add/store with no rseq at all. */
static int counter_racy_op(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    int cpu = sched_getcpu();
    volatile uint64_t *slot;
    uint64_t v;
    (void)t;

    if (cpu < 0 || (uint32_t)cpu >= c->nr_cpus)
        return -ERANGE;
    slot = &c->shards[cpu].value;
    v = *slot;
    for (volatile int i = 0; i < 16; i++)
        ;
    *slot = v + 1;
    return 0;
}

/* Broken: a correct section whose abort handler has the wrong signature. */
static int counter_bad_signature_op(void *state, struct prseq_thread *t)
{
    return counter_add(state, t, BROKEN_WINDOW, percpu_add_bad_signature);
}
#endif

/* ---- per-CPU free list ----------------------------------------------- */

struct node {
    struct node *next; /* offset 0: the sections load and store it there */
    uint32_t id;
};

struct freelist_head {
    _Alignas(CACHELINE) void *head;
    int lock; /* fallback path only */
};

struct freelist {
    uint32_t nr_cpus;
    uint32_t nr_nodes;
    struct freelist_head *lists;
    struct node *nodes;
    unsigned char *seen; /* scratch for total() */
};

static void *freelist_create(uint32_t nr_threads)
{
    struct freelist *f = calloc(1, sizeof(*f));
    uint32_t per_cpu = 2 * nr_threads + 2;

    if (!f)
        return NULL;
    f->nr_cpus = possible_cpus();
    f->nr_nodes = per_cpu * f->nr_cpus;
    f->lists = cache_aligned_zalloc(sizeof(*f->lists) * f->nr_cpus);
    f->nodes = calloc(f->nr_nodes, sizeof(*f->nodes));
    f->seen = calloc(f->nr_nodes, 1);
    if (!f->lists || !f->nodes || !f->seen) {
        free(f->lists);
        free(f->nodes);
        free(f->seen);
        free(f);
        return NULL;
    }
    for (uint32_t i = 0; i < f->nr_nodes; i++) {
        struct freelist_head *l = &f->lists[i % f->nr_cpus];
        f->nodes[i].id = i;
        f->nodes[i].next = l->head;
        l->head = &f->nodes[i];
    }
    return f;
}

static void freelist_destroy(void *state)
{
    struct freelist *f = state;
    free(f->lists);
    free(f->nodes);
    free(f->seen);
    free(f);
}

/* Conservation of nodes: every node must be on exactly one list, once. */
static uint64_t freelist_expected(void *state, uint64_t ops_done)
{
    struct freelist *f = state;
    (void)ops_done;
    return f->nr_nodes;
}

/* Distinct nodes reachable from the heads, plus one for every time a walk
 * meets a node already seen (a cycle or a node on two lists). Equal to
 * nr_nodes only when the lists are intact. */
static uint64_t freelist_total(void *state)
{
    struct freelist *f = state;
    uint64_t total = 0;

    memset(f->seen, 0, f->nr_nodes);
    for (uint32_t c = 0; c < f->nr_cpus; c++) {
        for (struct node *n = f->lists[c].head; n; n = n->next) {
            if (n < f->nodes || n >= f->nodes + f->nr_nodes) {
                total++; /* a pointer that is no node at all */
                break;
            }
            if (f->seen[n->id]) {
                total++;
                break;
            }
            f->seen[n->id] = 1;
            total++;
        }
    }
    return total;
}

static uint32_t freelist_shards(void *state, uint64_t *out, uint32_t max)
{
    struct freelist *f = state;
    uint32_t n = f->nr_cpus < max ? f->nr_cpus : max;

    for (uint32_t c = 0; c < n; c++) {
        uint64_t len = 0;
        for (struct node *p = f->lists[c].head; p && len <= f->nr_nodes; p = p->next)
            len++;
        out[c] = len;
    }
    return n;
}

static void lock(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void unlock(int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static int freelist_fallback(void *state, struct prseq_thread *t)
{
    struct freelist *f = state;
    struct freelist_head *l;
    struct node *n;
    int cpu = sched_getcpu();
    (void)t;

    if (cpu < 0 || (uint32_t)cpu >= f->nr_cpus)
        cpu = 0;
    l = &f->lists[cpu];
    lock(&l->lock);
    n = l->head;
    if (n)
        l->head = n->next;
    unlock(&l->lock);
    if (!n)
        return 1; /* this CPU's list is empty: no op, try again */
    cpu = sched_getcpu();
    if (cpu < 0 || (uint32_t)cpu >= f->nr_cpus)
        cpu = 0;
    l = &f->lists[cpu];
    lock(&l->lock);
    n->next = l->head;
    l->head = n;
    unlock(&l->lock);
    return 0;
}

static int freelist_pop(struct freelist *f, struct prseq_thread *t, struct node **out)
{
    struct prseq_rseq_area *rs = t->local;

    for (;;) {
        uint32_t cpu = __atomic_load_n(&rs->cpu_id_start, __ATOMIC_RELAXED);
        void *node = NULL;
        int rc;
        if (cpu >= f->nr_cpus)
            return -ERANGE;
        rc = percpu_pop(rs, cpu, &f->lists[cpu].head, &node);
        if (rc == 0) {
            *out = node;
            return 0;
        }
        if (rc < 0) {
            t->aborts++;
            continue;
        }
        /* a CPU mismatch, or this CPU's list is empty */
        if (__atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED) == cpu)
            return 1;
    }
}

typedef int (*push_fn)(struct prseq_rseq_area *, uint32_t, void **, void *, uint64_t);

static inline int push_correct(struct prseq_rseq_area *rs, uint32_t cpu, void **head,
                               void *node, uint64_t delay)
{
    (void)delay;
    return percpu_push(rs, cpu, head, node);
}

static int freelist_op_with(void *state, struct prseq_thread *t, push_fn push, uint64_t delay)
{
    struct freelist *f = state;
    struct prseq_rseq_area *rs = t->local;
    struct node *n;
    int rc;

    if (!rs)
        return -ENOSYS;
    rc = freelist_pop(f, t, &n);
    if (rc != 0)
        return rc;
    for (;;) {
        uint32_t cpu = __atomic_load_n(&rs->cpu_id_start, __ATOMIC_RELAXED);
        if (cpu >= f->nr_cpus)
            return -ERANGE;
        rc = push(rs, cpu, &f->lists[cpu].head, n, delay);
        if (rc == 0)
            return 0;
        if (rc < 0)
            t->aborts++;
    }
}

#ifndef PERCPU_BROKEN
static int freelist_op(void *state, struct prseq_thread *t)
{
    return freelist_op_with(state, t, push_correct, 0);
}
#else
/* Broken: the push stores head before node->next (see percpu_x86_64.h). */
static int freelist_commit_early_op(void *state, struct prseq_thread *t)
{
    return freelist_op_with(state, t, percpu_push_commit_early, BROKEN_WINDOW);
}
#endif

/* ---- the exported workloads ------------------------------------------ */

#define WORKLOAD(SYM, NAME, CREATE, OP, FALLBACK, TOTAL, EXPECTED, SHARDS, DESTROY) \
    const struct prseq_workload *SYM(void);                                      \
    const struct prseq_workload *SYM(void)                                       \
    {                                                                            \
        static const struct prseq_workload w = {                                 \
            .abi_version = PRSEQ_ABI_VERSION,                                    \
            .name = NAME,                                                        \
            .create = CREATE,                                                    \
            .thread_init = find_area,                                            \
            .op = OP,                                                            \
            .fallback_op = FALLBACK,                                             \
            .total = TOTAL,                                                      \
            .expected = EXPECTED,                                                \
            .shards = SHARDS,                                                    \
            .destroy = DESTROY,                                                  \
        };                                                                       \
        return &w;                                                               \
    }

#ifndef PERCPU_BROKEN
WORKLOAD(percpu_counter, "percpu_counter", counter_create, counter_op, counter_fallback,
         counter_total, NULL, counter_shards, counter_destroy)
WORKLOAD(percpu_freelist, "percpu_freelist", freelist_create, freelist_op, freelist_fallback,
         freelist_total, freelist_expected, freelist_shards, freelist_destroy)
#else
WORKLOAD(percpu_counter_racy, "percpu_counter_racy", counter_create, counter_racy_op,
         counter_fallback, counter_total, NULL, counter_shards, counter_destroy)
WORKLOAD(percpu_counter_bad_signature, "percpu_counter_bad_signature", counter_create,
         counter_bad_signature_op, counter_fallback, counter_total, NULL, counter_shards,
         counter_destroy)
WORKLOAD(percpu_freelist_commit_early, "percpu_freelist_commit_early", freelist_create,
         freelist_commit_early_op, freelist_fallback, freelist_total, freelist_expected,
         freelist_shards, freelist_destroy)
#endif
