/* worker.c - one worker thread: registration, thread_init, batches of ops
 * (one batch call for the built-in counters), invariant sampling, churned
 * lifetimes with random boundaries, and the tallies it leaves in its slot. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "aim.h"
#include "evidence.h"
#include "harness.h"
#include "util.h"
#include "workloads.h"

/* Ops between two looks at the stop flag, the CPU and the clock. */
#define BATCH 64
/* The same for the built-in counters' batch calls (~0.5 ns an op): larger, so
 * the per-batch checks and invariant samples stay a small part of their cost. */
#define FAST_BATCH 1024

/* What one worker thread holds while it runs. */
struct worker {
    struct prseq_run *run;
    struct prseq_slot *s;
    int (*op)(void *, struct prseq_thread *);
    prseq_batch_fn batch;          /* built-in counters: one call per batch */
    struct prseq_rseq_area *area;  /* NULL on the fallback path */
    cpu_set_t *mask;               /* invariant sampling's scratch mask, or NULL */
    uint64_t remaining;            /* the slot's budget left when the thread started */
    uint64_t done, batches, migrations;
    uint64_t born;                 /* churn: when this life began */
    /* Per slot, across churned threads: the slot's work moving between CPUs
     * is what migration chaos must show. */
    uint32_t last_cpu;
    uint32_t life_cpu;             /* this thread's CPU at its previous batch (UINT32_MAX: none) */
    struct prseq_overlap_watch watch;
    int registered;                /* this thread registered pytest-rseq's own area */
};

/* Churn: each thread of a slot lives a seeded time uniform in [m/2, 3m/2],
 * m = slots / churn_hz, so the run replaces about churn_hz threads/s. */
static uint64_t pick_lifetime(struct prseq_run *run, struct prseq_slot *s)
{
    double mean_ns;
    uint64_t x;

    if (run->cfg->churn_hz <= 0)
        return 0;
    mean_ns = (double)run->nr_slots / run->cfg->churn_hz * 1e9;
    x = run->cfg->seed ^ ((uint64_t)s->t.index << 32) ^ run->threads_started;
    return (uint64_t)(mean_ns / 2 + mean_ns * ((double)(prseq_rand(&x) >> 11) / 9007199254740992.0));
}

static void record_violation(struct prseq_run *run, uint64_t kind, uint64_t a, uint64_t b,
                             uint64_t c)
{
    if (__atomic_fetch_add(&run->invariant_violations, 1, __ATOMIC_RELAXED) == 0) {
        run->first_violation[0] = kind;
        run->first_violation[1] = a;
        run->first_violation[2] = b;
        run->first_violation[3] = c;
    }
}

/* Read the area's fields around getcpu(); if cpu_id did not change while
 * we looked, every field must agree with it. The affinity check counts only
 * when no mask change was in flight or started meanwhile (mask_busy 0,
 * mask_gen unchanged):
 * such a change migrates the thread before the injector's syscall returns,
 * and the kernel rewrites cpu_id before the thread runs user code again. */
static void sample_invariants(struct prseq_run *run, struct prseq_rseq_area *area, cpu_set_t *mask)
{
    uint32_t before, start, after, cid, node;
    unsigned int cpu = 0, cpu_node = 0;
    uint64_t gen1, gen2;
    uint32_t busy;
    size_t size = CPU_ALLOC_SIZE(run->nr_cpus);
    int have_mask, have_cpu;

    __atomic_fetch_add(&run->invariant_samples, 1, __ATOMIC_RELAXED);
    gen1 = __atomic_load_n(&run->mask_gen, __ATOMIC_SEQ_CST);
    busy = __atomic_load_n(&run->mask_busy, __ATOMIC_SEQ_CST);
    have_mask = mask && sched_getaffinity(0, size, mask) == 0;
    before = __atomic_load_n(&area->cpu_id, __ATOMIC_ACQUIRE);
    start = __atomic_load_n(&area->cpu_id_start, __ATOMIC_ACQUIRE);
    cid = __atomic_load_n(&area->mm_cid, __ATOMIC_ACQUIRE);
    node = __atomic_load_n(&area->node_id, __ATOMIC_ACQUIRE);
    /* The raw syscall: glibc's sched_getcpu() reads cpu_id from the area. */
    have_cpu = syscall(SYS_getcpu, &cpu, &cpu_node, NULL) == 0;
    after = __atomic_load_n(&area->cpu_id, __ATOMIC_ACQUIRE);
    gen2 = __atomic_load_n(&run->mask_gen, __ATOMIC_SEQ_CST);
    if (before != after)
        return;
    if (start != before)
        record_violation(run, PRSEQ_VIOLATION_CPU_ID_START, before, start, 0);
    else if (before >= run->nr_cpus)
        record_violation(run, PRSEQ_VIOLATION_CPU_RANGE, before, start, run->nr_cpus);
    else if (have_mask && gen1 == gen2 && busy == 0 && !CPU_ISSET_S(before, size, mask))
        record_violation(run, PRSEQ_VIOLATION_CPU_NOT_ALLOWED, before, start,
                         (uint64_t)CPU_COUNT_S(size, mask));
    else if (have_cpu && cpu != before)
        record_violation(run, PRSEQ_VIOLATION_GETCPU, before, start, cpu);
    else if (run->node_id_usable && run->cpu_node && run->cpu_node[before] >= 0 &&
             node != (uint32_t)run->cpu_node[before])
        record_violation(run, PRSEQ_VIOLATION_NODE_ID, before, start, node);
    else if (run->res->owner != PRSEQ_OWNER_NONE && cid >= run->mm_cid_bound)
        record_violation(run, PRSEQ_VIOLATION_MM_CID_RANGE, before, start, cid);
}

/* ---- lifecycle boundaries ---------------------------------------------
 * A worker's life must not end on a multiple of any batch: a workload that
 * keeps per-thread state (a batching counter, a cache) and loses it at
 * thread_exit only shows when the thread leaves at an arbitrary op. Each
 * life draws from its own generator (seed, slot, how many lives the slot
 * had), so the lengths repeat for a seed where the schedule does. */

static uint64_t life_rng(const struct prseq_run *run, const struct prseq_slot *s)
{
    return run->cfg->seed ^ 0xd1b54a32d192ed03ull ^ ((uint64_t)s->t.index << 40) ^ s->lives;
}

/* Ops in the next batch: the first of a life is a random length in
 * [1, cap] (its first boundary lands anywhere), the rest are whole batches
 * for throughput; never more than `left`. */
static uint64_t lifecycle_batch(struct prseq_slot *s, uint64_t cap, uint64_t left)
{
    uint64_t n = cap;

    if (!s->first_done) {
        n = 1 + prseq_rand(&s->rng) % cap;
        s->first_done = 1;
    }
    return n < left ? n : left;
}

/* Ops a leaving worker still does: random in [0, cap), at most `left`. */
static uint64_t lifecycle_tail(struct prseq_slot *s, uint64_t cap, uint64_t left)
{
    uint64_t n = prseq_rand(&s->rng) % cap;

    return n < left ? n : left;
}

/* n ops: one batch call for the built-in counters, else one op call each.
 * Adds the ops done to *done; a negative errno stops the run. */
static int run_ops(struct prseq_run *run, struct prseq_slot *s,
                   int (*op)(void *, struct prseq_thread *), prseq_batch_fn batch, uint64_t n,
                   uint64_t *done)
{
    if (n == 0)
        return 0;
    if (batch) {
        /* Built-in counters: the whole batch in one call, section inlined. */
        struct prseq_abort_mark mark;
        int rc;

        prseq_abort_mark(s, &mark);
        rc = batch(run->state, &s->t, n, done);
        attribute_aborts(s, &mark);
        if (rc < 0) {
            prseq_run_fail(run, -rc, "%s: op returned %d (%s) in slot %u", run->w->name, rc,
                           strerror(-rc), s->t.index);
            return rc;
        }
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        struct prseq_abort_mark mark;
        int rc;

        prseq_abort_mark(s, &mark);
        rc = op(run->state, &s->t);
        attribute_aborts(s, &mark);
        if (rc == 0) {
            (*done)++;
        } else if (rc < 0) {
            prseq_run_fail(run, -rc, "%s: op returned %d (%s) in slot %u", run->w->name, rc,
                           strerror(-rc), s->t.index);
            return rc;
        }
    }
    return 0;
}

/* Injectors that act on a worker by TID (sched_setaffinity is not limited
 * to this process) hold the slot's tid_lock across the call: the TID is
 * set and cleared under it, so it never names a thread that already left. */
static void slot_publish_tid(struct prseq_slot *s, pid_t tid)
{
    pthread_mutex_lock(&s->tid_lock);
    __atomic_store_n(&s->tid, tid, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->tid_lock);
}

/* Registration, the area, thread_init and the injectors' worker hook; 0, or
 * -1 when the run failed (the thread then leaves without thread_exit). */
static int worker_enter(struct worker *k)
{
    struct prseq_run *run = k->run;
    struct prseq_slot *s = k->s;
    const struct prseq_config *cfg = run->cfg;
    int use_rseq = run->res->path == PRSEQ_PATH_RSEQ;
    size_t mask_size;
    int owner;

    if (use_rseq && cfg->own_registration && !cfg->workload_registers) {
        int rc = prseq_own_register();
        if (rc < 0) {
            prseq_run_fail(run, -rc, "slot %u: registering the rseq area failed: %s",
                           s->t.index, strerror(-rc));
            return -1;
        }
        k->registered = 1;
    }
    k->area = prseq_current_area(&owner);
    if (use_rseq && !k->area && !cfg->workload_registers) {
        prseq_run_fail(run, ENOSYS, "slot %u: no registered rseq area in a worker thread",
                       s->t.index);
        return -1;
    }
    if (run->w->thread_init) {
        int rc = run->w->thread_init(run->state, &s->t);
        if (rc != 0) {
            prseq_run_fail(run, rc < 0 ? -rc : EINVAL, "%s: thread_init failed in slot %u: %s",
                           run->w->name, s->t.index, strerror(rc < 0 ? -rc : EINVAL));
            return -1;
        }
    }
    prseq_chaos_worker_enter(run, s);
    if (use_rseq)
        prseq_aim_worker_enter(run, s, k->area);
    if (k->area && cfg->sample_every)
        k->mask = prseq_mask_alloc(run->nr_cpus, &mask_size);
    if (s->lifetime_ns)
        k->born = prseq_now_ns();
    return 0;
}

/* Between two batches (never inside a section): note the CPU, honour a move
 * request, and sample the invariants every sample_every batches. */
static void worker_between_batches(struct worker *k)
{
    struct prseq_run *run = k->run;
    struct prseq_slot *s = k->s;
    uint32_t every = run->cfg->sample_every;
    uint32_t cpu = k->area ? __atomic_load_n(&k->area->cpu_id, __ATOMIC_RELAXED)
                           : (uint32_t)sched_getcpu();

    if (cpu != k->last_cpu) {
        prseq_note_cpu(run, s, cpu, k->last_cpu != UINT32_MAX);
        k->migrations += k->last_cpu != UINT32_MAX;
        k->last_cpu = cpu;
        __atomic_store_n(&s->cpu, cpu, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&s->aborts_seen, s->t.aborts, __ATOMIC_RELAXED);
    prseq_note_batch(run, s, &k->watch, k->life_cpu, cpu);
    k->life_cpu = cpu;
    evidence_poll(run, s, cpu);
    prseq_aim_poll();
    if (k->area && every && ++k->batches % every == 0)
        sample_invariants(run, k->area, k->mask);
}

/* Batches until the stop, the budget or the end of a churned life. */
static void worker_loop(struct worker *k)
{
    struct prseq_run *run = k->run;
    struct prseq_slot *s = k->s;
    uint64_t cap = k->batch ? FAST_BATCH : BATCH;

    while (!__atomic_load_n(&run->stop, __ATOMIC_RELAXED) && k->done < k->remaining) {
        uint64_t n = lifecycle_batch(s, cap, k->remaining - k->done);

        if (run_ops(run, s, k->op, k->batch, n, &k->done) < 0)
            return;
        worker_between_batches(k);
        if (s->lifetime_ns && prseq_now_ns() - k->born >= s->lifetime_ns)
            break;
    }
    /* The deadline, a stop or the end of a churned life arrives between two
     * batches: finish a seeded random tail so the last op before
     * thread_exit lands at an arbitrary point, not on a batch boundary. */
    if (!__atomic_load_n(&run->error, __ATOMIC_ACQUIRE) && k->done < k->remaining)
        run_ops(run, s, k->op, k->batch, lifecycle_tail(s, cap, k->remaining - k->done),
                &k->done);
}

/* Leave the slot: unregister, hand the tallies to the slot, tell the supervisor. */
static void worker_exit(struct worker *k)
{
    struct prseq_slot *s = k->s;

    if (k->registered)
        prseq_own_unregister();
    s->ops += k->done;
    s->migrations += k->migrations;
    __atomic_store_n(&s->aborts_seen, s->t.aborts, __ATOMIC_RELAXED);
    s->last_cpu = k->last_cpu;
    if (k->mask)
        CPU_FREE(k->mask);
    slot_publish_tid(s, 0);
    __atomic_store_n(&s->exited, 1, __ATOMIC_RELEASE);
    sem_post(&k->run->exited);
}

static void *worker_main(void *arg)
{
    struct prseq_slot *s = arg;
    struct prseq_run *run = s->run;
    int use_rseq = run->res->path == PRSEQ_PATH_RSEQ;
    struct worker k = {
        .run = run,
        .s = s,
        .op = use_rseq ? run->w->op : run->w->fallback_op,
        .batch = use_rseq ? prseq_builtin_batch(run->w) : NULL,
        .remaining = s->budget - s->ops,
        .last_cpu = s->last_cpu,
        .life_cpu = UINT32_MAX,
        .watch = {.left = UINT32_MAX},
    };

    prseq_chaos_worker_bind(s);
    slot_publish_tid(s, gettid());
    if (worker_enter(&k) == 0) {
        worker_loop(&k);
        prseq_aim_worker_leave();
        prseq_chaos_worker_leave(run, s);
        if (run->w->thread_exit)
            run->w->thread_exit(run->state, &s->t);
    }
    worker_exit(&k);
    return NULL;
}

int prseq_start_slot(struct prseq_run *run, struct prseq_slot *s)
{
    int rc;

    s->exited = 0;
    s->lifetime_ns = pick_lifetime(run, s);
    s->rng = life_rng(run, s);
    s->first_done = 0;
    s->lives++;
    rc = pthread_create(&s->thread, NULL, worker_main, s);
    if (rc != 0) {
        prseq_run_fail(run, rc, "pthread_create for slot %u failed: %s", s->t.index,
                       strerror(rc));
        s->exited = 1;
        return -rc;
    }
    s->joinable = 1;
    run->threads_started++;
    return 0;
}

int prseq_slot_wants_more(const struct prseq_slot *s)
{
    return s->ops < s->budget;
}
