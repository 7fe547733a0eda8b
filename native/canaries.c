/* canaries.c - the built-in workloads that are broken on purpose, each with
 * one bug the gate must catch: no rseq at all, a wrong signature, the CPU
 * read outside the section, per-thread state lost at exit, and writes into
 * the rseq area that break one invariant each. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "arch/arch.h"
#include "counters.h"

/* Window (loop iterations) between the racy canary's load and store, added
 * to cs_delay: the bug is real without it, this only makes it show sooner. */
#define RACY_WINDOW 16
/* The bad-signature canary spins inside its section so that preemption and
 * signals land there and trigger the (fatal) abort. */
#define BAD_SIG_WINDOW 256
/* The stale-cpu canary reads cpu_id once every STALE_REFRESH ops and keeps
 * using it (never comparing it inside the section); its section spins
 * STALE_SECTION_WINDOW iterations between its load and its commit store, the
 * window in which a stale write and the owning CPU's write overlap. Its
 * stale period (~4096 ops of ~50 ns, ~0.2 ms) is longer than a migration
 * takes to land (~0.1-0.25 ms here), and each thread starts at its own
 * phase, so after two workers swap CPUs one refreshes while the other still
 * writes the shard of the CPU it left. */
#define STALE_REFRESH 4096
#define STALE_SECTION_WINDOW 32
/* The exit-loss canary flushes its per-thread remainder every EXIT_LOSS_FLUSH
 * ops: a power of two that divides every harness batch, so it only shows
 * when a thread leaves at an op that is not a multiple of a batch. */
#define EXIT_LOSS_FLUSH 64

/* Per-thread state of the clobbering canaries. */
struct clobber {
    struct prseq_rseq_area *area;
    uint32_t fake_cpu;
    uint32_t cpus[2]; /* two allowed CPUs, when there are two */
    int nr_cpus;
};

void *create_racy(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(RACY, RACY_WINDOW);
}

void *create_bad_sig(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BAD_SIG, BAD_SIG_WINDOW);
}

void *create_stale_cpu(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(STALE_CPU, STALE_SECTION_WINDOW);
}

void *create_exit_loss(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(EXIT_LOSS, 0);
}

#define CLOBBER_CREATE(FN, KIND)                 \
    void *FN(uint32_t nr_threads)                 \
    {                                            \
        (void)nr_threads;                        \
        return counter_create(KIND, 0);          \
    }
CLOBBER_CREATE(create_clobber_start, CLOBBER_CPU_ID_START)
CLOBBER_CREATE(create_clobber_range, CLOBBER_CPU_RANGE)
CLOBBER_CREATE(create_clobber_not_allowed, CLOBBER_NOT_ALLOWED)
CLOBBER_CREATE(create_clobber_stale, CLOBBER_STALE_CPU)
CLOBBER_CREATE(create_clobber_node, CLOBBER_NODE_ID)
CLOBBER_CREATE(create_clobber_mm_cid, CLOBBER_MM_CID)

int clobber_thread_init(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct clobber *k = calloc(1, sizeof(*k));
    size_t size = CPU_ALLOC_SIZE(c->nr_shards);
    cpu_set_t *mask = CPU_ALLOC(c->nr_shards);
    int owner, rc = 0;

    if (!k || !mask) {
        free(k);
        if (mask)
            CPU_FREE(mask);
        return -ENOMEM;
    }
    k->area = prseq_current_area(&owner);
    if (sched_getaffinity(0, size, mask) != 0) {
        rc = -errno;
        goto out;
    }
    for (uint32_t i = 0; i < c->nr_shards && k->nr_cpus < 2; i++)
        if (CPU_ISSET_S(i, size, mask))
            k->cpus[k->nr_cpus++] = i;
    k->fake_cpu = 0xfff0;
    if (c->kind == CLOBBER_NOT_ALLOWED && k->nr_cpus == 2) {
        CPU_ZERO_S(size, mask);
        CPU_SET_S(k->cpus[0], size, mask);
        if (sched_setaffinity(0, size, mask) != 0) {
            rc = -errno;
            goto out;
        }
        k->fake_cpu = k->cpus[1];
    }
out:
    CPU_FREE(mask);
    if (rc < 0)
        free(k);
    else
        t->local = k;
    return rc;
}

int op_clobber(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct clobber *k = t->local;
    struct prseq_rseq_area *a = k->area;
    unsigned int cpu = 0;

    op_fallback(state, t);
    if (!a)
        return 0;
    switch (c->kind) {
    case CLOBBER_CPU_ID_START:
        __atomic_store_n(&a->cpu_id_start, __atomic_load_n(&a->cpu_id, __ATOMIC_RELAXED) + 1,
                         __ATOMIC_RELAXED);
        break;
    case CLOBBER_CPU_RANGE:
    case CLOBBER_NOT_ALLOWED:
        __atomic_store_n(&a->cpu_id_start, k->fake_cpu, __ATOMIC_RELAXED);
        __atomic_store_n(&a->cpu_id, k->fake_cpu, __ATOMIC_RELAXED);
        break;
    case CLOBBER_STALE_CPU:
        if (k->nr_cpus < 2 || syscall(SYS_getcpu, &cpu, NULL, NULL) != 0)
            break;
        cpu = cpu == k->cpus[0] ? k->cpus[1] : k->cpus[0];
        __atomic_store_n(&a->cpu_id_start, cpu, __ATOMIC_RELAXED);
        __atomic_store_n(&a->cpu_id, cpu, __ATOMIC_RELAXED);
        break;
    case CLOBBER_NODE_ID:
        __atomic_store_n(&a->node_id, 0x7fffu, __ATOMIC_RELAXED);
        break;
    case CLOBBER_MM_CID:
        __atomic_store_n(&a->mm_cid, 0x7fffffffu, __ATOMIC_RELAXED);
        break;
    default:
        break;
    }
    return 0;
}

/* canary_racy: a per-CPU load/add/store with no rseq protection. Two
 * threads on one CPU (preemption) or a migration in the window lose counts. */
int op_racy(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct prseq_rseq_area *area = t->local;
    uint32_t cpu = area ? __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED)
                        : (uint32_t)sched_getcpu();
    volatile uint64_t *slot;
    uint64_t v;

    if (cpu >= c->nr_shards)
        return -ERANGE;
    slot = &c->shards[cpu].value;
    v = *slot;
    for (volatile uint64_t i = 0; i < c->delay; i++)
        ;
    *slot = v + 1;
    return 0;
}

/* canary_stale_cpu: reads cpu_id into a per-thread cache every
 * STALE_REFRESH ops and adds to that CPU's shard in a section that compares
 * the cached copy, not cpu_id (the bug). Preemption alone is harmless (the
 * thread resumes on the same CPU, and an abort discards the section); only a
 * migration between the read and the commit makes the thread write another
 * CPU's shard concurrently with that CPU's own writer: lost counts. */
struct stale_cpu {
    struct prseq_rseq_area *area;
    uint32_t cpu;  /* cpu_id as read at the last refresh */
    uint32_t left; /* ops until the next refresh */
};

int stale_thread_init(void *state, struct prseq_thread *t)
{
    struct stale_cpu *k = calloc(1, sizeof(*k));
    int owner;

    (void)state;
    if (!k)
        return -ENOMEM;
    k->area = prseq_current_area(&owner);
    /* Its own phase: the first refresh after 1..STALE_REFRESH ops. */
    k->cpu = UINT32_MAX;
    k->left = 1 + (uint32_t)(((uint64_t)(uintptr_t)k >> 6) * 0x9e3779b97f4a7c15ull >> 40) %
                      STALE_REFRESH;
    t->local = k; /* area NULL on the fallback path, which never reads it */
    return 0;
}

int op_stale_cpu(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct stale_cpu *k = t->local;

    for (;;) {
        uint32_t same;
        int rc;
        if (k->left == 0 || k->cpu == UINT32_MAX) {
            k->cpu = __atomic_load_n(&k->area->cpu_id, __ATOMIC_RELAXED);
            if (k->left == 0)
                k->left = STALE_REFRESH;
        }
        if (k->cpu >= c->nr_shards)
            return -ERANGE;
        same = k->cpu; /* the bug: the section compares this copy, not cpu_id */
        rc = prseq_arch_inc(k->area, &same, k->cpu, &c->shards[k->cpu].value, c->delay);
        if (rc == 0) {
            k->left--;
            return 0;
        }
        if (rc < 0)
            t->aborts++;
    }
}

/* canary_exit_loss: a per-thread batching counter. Each op adds to a
 * thread-local remainder that is flushed to the shard of the current CPU
 * every EXIT_LOSS_FLUSH ops; thread_exit frees the remainder without
 * flushing it (the bug: per-thread state lost at thread exit). */
struct exit_loss {
    uint64_t pending;
};

int exit_loss_thread_init(void *state, struct prseq_thread *t)
{
    (void)state;
    t->local = calloc(1, sizeof(struct exit_loss));
    return t->local ? 0 : -ENOMEM;
}

int op_exit_loss(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct exit_loss *l = t->local;
    int cpu;

    if (++l->pending < EXIT_LOSS_FLUSH)
        return 0;
    cpu = sched_getcpu();
    if (cpu < 0 || (uint32_t)cpu >= c->nr_shards)
        cpu = 0;
    __atomic_fetch_add(&c->shards[cpu].value, l->pending, __ATOMIC_RELAXED);
    l->pending = 0;
    return 0;
}

void exit_loss_thread_exit(void *state, struct prseq_thread *t)
{
    (void)state;
    free(t->local); /* the unflushed remainder goes with it */
    t->local = NULL;
}

/* canary_bad_signature: a correct section whose abort handler is preceded
 * by the wrong signature; the first abort kills the process with SIGSEGV. */
int op_bad_sig(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    struct prseq_rseq_area *area = t->local;

    for (;;) {
        uint32_t cpu = __atomic_load_n(&area->cpu_id_start, __ATOMIC_RELAXED);
        int rc;
        if (cpu >= c->nr_shards)
            return -ERANGE;
        rc = prseq_arch_inc_bad_sig(area, &area->cpu_id, cpu, &c->shards[cpu].value,
                                    c->delay);
        if (rc == 0)
            return 0;
        if (rc < 0)
            t->aborts++;
    }
}
