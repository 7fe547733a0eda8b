/* chaos_cpu.c - injectors that move workers between CPUs or fence them:
 * affinity churn (with the swaps that keep every CPU written) and
 * membarrier fences; and the schedule's pick of a live worker, which the
 * signal storm uses too. chaos.c starts, stops and counts them. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "chaos.h"

/* A live worker TID picked by the schedule, or 0. With lock set, returns
 * with that slot's tid_lock held (release it with pick_release) so the TID
 * stays the worker's own until the caller is done with it. */
pid_t chaos_pick_worker(struct chaos *c, uint64_t *rng, struct prseq_slot **slot, int lock)
{
    struct prseq_run *run = c->run;
    uint32_t first = (uint32_t)(prseq_rand(rng) % run->nr_slots);

    for (uint32_t k = 0; k < run->nr_slots; k++) {
        struct prseq_slot *s = &run->slots[(first + k) % run->nr_slots];
        pid_t tid;
        if (lock)
            pthread_mutex_lock(&s->tid_lock);
        tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
        if (tid > 0) {
            *slot = s;
            return tid;
        }
        if (lock)
            pthread_mutex_unlock(&s->tid_lock);
    }
    return 0;
}

static void pick_release(struct prseq_slot *slot)
{
    pthread_mutex_unlock(&slot->tid_lock);
}

/* ---- affinity churn --------------------------------------------------- */

/* The masks affinity churn moves workers between: each allowed CPU alone
 * (two workers on one CPU preempt each other; a move is a migration),
 * sparse pairs where there are gaps, and the whole allowed set. */
static cpu_set_t *affinity_add_mask(struct chaos *c)
{
    cpu_set_t *mask = prseq_mask_alloc(c->run->nr_cpus, &c->mask_size);

    if (mask)
        c->masks[c->nr_masks++] = mask;
    return mask;
}

int chaos_affinity_setup(struct chaos *c)
{
    uint32_t nr = c->run->nr_cpus, n = 0;
    uint32_t *cpus = malloc(sizeof(*cpus) * nr);
    cpu_set_t *mask;
    int rc = 0;

    if (!cpus)
        return -ENOMEM;
    for (uint32_t i = 0; i < nr; i++)
        if (CPU_ISSET_S(i, c->mask_size, c->allowed))
            cpus[n++] = i;
    for (uint32_t i = 0; i < n && c->nr_masks < CHAOS_MAX_CHOICES - 2 && rc == 0; i++) {
        if ((mask = affinity_add_mask(c))) {
            CPU_SET_S(cpus[i], c->mask_size, mask);
            c->single_cpu[c->nr_single++] = cpus[i];
        } else
            rc = -ENOMEM;
    }
    if (n >= 3 && rc == 0) {
        if ((mask = affinity_add_mask(c)))
            for (uint32_t i = 0; i < n; i += 2)
                CPU_SET_S(cpus[i], c->mask_size, mask);
        else
            rc = -ENOMEM;
    }
    free(cpus);
    if (rc == 0 && n == 0)
        rc = -EINVAL;
    if (rc == 0)
        c->masks[c->nr_masks++] = c->allowed; /* owned by c->allowed: not freed twice */
    return rc;
}

/* The mask index of the next affinity event for a worker now on `cpu`:
 * three times in four a flip, the single CPU of a different allowed CPU, so
 * the event is a migration at whatever point the worker was (a random mask
 * often keeps it where it is); otherwise any of the masks. */
static int affinity_pick(struct chaos *c, uint64_t *rng, uint32_t cpu)
{
    uint64_t r = prseq_rand(rng);

    if ((r & 3) != 0 && c->nr_single >= 2) {
        int k = (int)((r >> 2) % (uint64_t)c->nr_single);
        if (c->single_cpu[k] == cpu)
            k = (k + 1 + (int)((r >> 32) % (uint64_t)(c->nr_single - 1))) % c->nr_single;
        return k;
    }
    return (int)((r >> 2) % (uint64_t)c->nr_masks);
}

/* The index of the single-CPU mask of `cpu`, or -1. */
static int single_mask(const struct chaos *c, uint32_t cpu)
{
    for (int k = 0; k < c->nr_single; k++)
        if (c->single_cpu[k] == cpu)
            return k;
    return -1;
}

/* A live worker other than `self` last seen on `cpu`, returned with its
 * tid_lock held, or NULL. Only this injector holds two slot locks at once;
 * a worker takes only its own. */
static struct prseq_slot *worker_on(struct chaos *c, const struct prseq_slot *self, uint32_t cpu)
{
    struct prseq_run *run = c->run;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        if (s == self || __atomic_load_n(&s->cpu, __ATOMIC_RELAXED) != cpu)
            continue;
        /* A try: this thread already holds another slot's lock, and two
         * blocking locks taken in either order is a deadlock pattern (TSan
         * flags it) even though no other thread ever holds two. A busy
         * partner is skipped. */
        if (pthread_mutex_trylock(&s->tid_lock) != 0)
            continue;
        if (s->tid > 0 && __atomic_load_n(&s->cpu, __ATOMIC_RELAXED) == cpu)
            return s;
        pthread_mutex_unlock(&s->tid_lock);
    }
    return NULL;
}

/* sched_setaffinity reaches any process: the TID is used only while the
 * slot's tid_lock is held, and the worker clears it under that lock.
 * A flip of a worker from CPU X to CPU Y is a swap when a worker runs on Y:
 * that one goes to X at the same event, so every CPU keeps a writer (a
 * move that empties X leaves a stale write to X's data nobody to meet). */
void chaos_affinity_fire(struct chaos *c, uint64_t *rng)
{
    struct prseq_slot *slot, *partner = NULL;
    pid_t tid = chaos_pick_worker(c, rng, &slot, 1);
    uint32_t cpu;
    int k, back = -1, rc;

    if (tid <= 0)
        return;
    cpu = __atomic_load_n(&slot->cpu, __ATOMIC_RELAXED);
    k = affinity_pick(c, rng, cpu);
    if (k < c->nr_single && (back = single_mask(c, cpu)) >= 0)
        partner = worker_on(c, slot, c->single_cpu[k]);
    prseq_mask_change_begin(c->run);
    rc = sched_setaffinity(tid, c->mask_size, c->masks[k]);
    if (partner && rc == 0 &&
        sched_setaffinity(partner->tid, c->mask_size, c->masks[back]) == 0) {
        __atomic_fetch_add(&c->affinity_changes, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->affinity_swaps, 1, __ATOMIC_RELAXED);
    }
    prseq_mask_change_end(c->run);
    if (partner)
        pick_release(partner);
    pick_release(slot);
    if (rc == 0)
        __atomic_fetch_add(&c->affinity_changes, 1, __ATOMIC_RELAXED);
}

/* Give every live worker the mask it started with. */
void chaos_affinity_restore(struct chaos *c)
{
    struct prseq_run *run = c->run;

    prseq_mask_change_begin(run);
    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        pthread_mutex_lock(&s->tid_lock);
        if (s->tid > 0)
            sched_setaffinity(s->tid, c->mask_size, c->allowed);
        pthread_mutex_unlock(&s->tid_lock);
    }
    prseq_mask_change_end(run);
}

void chaos_affinity_free(struct chaos *c)
{
    for (int i = 0; i < c->nr_masks; i++)
        if (c->masks[i] != c->allowed)
            CPU_FREE(c->masks[i]);
    if (c->allowed)
        CPU_FREE(c->allowed);
    c->nr_masks = 0;
    c->allowed = NULL;
}

/* ---- membarrier ------------------------------------------------------- */

int chaos_membarrier_setup(void)
{
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
        return -errno;
    return 0;
}

/* fence_gen is odd while a fence is in flight, so a worker can tell which
 * fences overlapped its op (evidence.c). */
void chaos_membarrier_fire(struct chaos *c, uint64_t *rng)
{
    long rc;

    (void)rng;
    __atomic_fetch_add(&c->run->fence_gen, 1, __ATOMIC_SEQ_CST);
    rc = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    __atomic_fetch_add(&c->run->fence_gen, 1, __ATOMIC_SEQ_CST);
    if (rc == 0)
        __atomic_fetch_add(&c->membarriers, 1, __ATOMIC_RELAXED);
}
