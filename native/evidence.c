/* evidence.c - what a run must show before its verdict may be "ok", and the
 * attribution of aborts to their causes.
 *
 * Attribution is an upper bound at op (library workloads) or fast-batch
 * (built-in counters) granularity: the aborts that appeared during one op or
 * batch go to "signal" up to the number of storm signals the thread handled
 * meanwhile, then to "membarrier" up to the number of fences in flight or
 * issued meanwhile, and the rest to preemption (res->aborts minus both).
 * A signal or a fence aborts at most one section of a thread, so neither
 * count can exceed what its cause could have done. */
#define _GNU_SOURCE
#include <sched.h>

#include "chaos.h"
#include "evidence.h"
#include "util.h"

/* While migrations are missing, one worker is asked to move at most this often. */
#define MOVE_EVERY_NS 2000000ull

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void add(uint64_t *p, uint64_t n)
{
    /* Only the slot's own thread writes these; the supervisor reads them. */
    __atomic_store_n(p, load(p) + n, __ATOMIC_RELAXED);
}

void prseq_attribute_aborts_slow(struct prseq_slot *s, const struct prseq_abort_mark *m)
{
    uint64_t aborts, signals, gen, fences, by_signal, by_fence;

    if (s->t.aborts < m->aborts) /* a workload that rewinds its counter */
        return;
    aborts = s->t.aborts - m->aborts;
    signals = load(&s->signals_handled) - m->signals;
    gen = __atomic_load_n(&s->run->fence_gen, __ATOMIC_ACQUIRE);
    /* Fences that overlapped the op: the odd values in [m->fences, gen]. */
    fences = (gen + 1) / 2 - m->fences / 2;
    by_signal = aborts < signals ? aborts : signals;
    by_fence = aborts - by_signal < fences ? aborts - by_signal : fences;
    if (by_signal)
        add(&s->aborts_signal, by_signal);
    if (by_fence)
        add(&s->aborts_membarrier, by_fence);
}

void prseq_note_batch(struct prseq_run *run, struct prseq_slot *s, struct prseq_overlap_watch *w,
                      uint32_t prev, uint32_t cpu)
{
    if (!run->cpu_ticks || cpu >= run->nr_cpus)
        return;
    __atomic_fetch_add(&run->cpu_ticks[cpu].n, 1, __ATOMIC_RELAXED);
    if (prev != cpu) {
        w->left = prev < run->nr_cpus ? prev : UINT32_MAX;
        if (w->left != UINT32_MAX)
            w->mark = __atomic_load_n(&run->cpu_ticks[prev].n, __ATOMIC_RELAXED);
        return;
    }
    if (w->left != UINT32_MAX &&
        __atomic_load_n(&run->cpu_ticks[w->left].n, __ATOMIC_RELAXED) != w->mark) {
        add(&s->overlapped_migrations, 1);
        w->left = UINT32_MAX;
    }
}

/* A supervisor wake-up this much later than planned counts as a stall. */
#define STALL_LATE_NS 10000000ull

void prseq_note_progress(struct prseq_run *run, uint64_t now, uint64_t planned)
{
    uint64_t ticks = 0, late = now > planned ? now - planned : 0;

    if (!run->cpu_ticks)
        return;
    for (uint32_t cpu = 0; cpu < run->nr_cpus; cpu++)
        ticks += __atomic_load_n(&run->cpu_ticks[cpu].n, __ATOMIC_RELAXED);
    /* No batch ended since the last look: the whole interval. Else a late
     * wake-up (the process was stopped or not run, and its workers ended
     * batches in the moment before this look): the lateness. */
    if (run->progress_look_ns && ticks == run->progress_mark)
        run->stalled_ns += now - run->progress_look_ns;
    else if (late >= STALL_LATE_NS)
        run->stalled_ns += late;
    run->progress_mark = ticks;
    run->progress_look_ns = now;
}

uint64_t prseq_stall_credit(const struct prseq_run *run)
{
    uint64_t most = (uint64_t)PRSEQ_STALL_ALLOWANCE_MS * 1000000ull;

    return run->stalled_ns < most ? run->stalled_ns : most;
}

void prseq_note_cpu(struct prseq_run *run, struct prseq_slot *s, uint32_t cpu, int migrated)
{
    if (migrated)
        add(&s->live_migrations, 1);
    if (run->cpus_seen && cpu < run->nr_cpus) {
        uint64_t bit = 1ull << (cpu % 64);
        if (!(__atomic_fetch_or(&run->cpus_seen[cpu / 64], bit, __ATOMIC_RELAXED) & bit))
            __atomic_fetch_add(&run->distinct_cpus, 1, __ATOMIC_RELAXED);
    }
}

static int slot_live(const struct prseq_slot *s)
{
    return s->joinable && !__atomic_load_n(&s->exited, __ATOMIC_ACQUIRE);
}

void prseq_request_migration(struct prseq_run *run, uint64_t now)
{
    /* A fallback half of path="both" lasts as long as its op budgets, often
     * a few milliseconds: it asks at every look of the supervisor. */
    uint64_t every = run->cfg->slot_budgets ? 0 : MOVE_EVERY_NS;

    if (run->move_requests && now - run->last_request_ns < every)
        return;
    run->last_request_ns = now;
    /* The first round asks every live slot at once; then one live slot per
     * round, round robin (a slot whose budget is spent has nobody to move). */
    if (!run->move_requests) {
        for (uint32_t i = 0; i < run->nr_slots; i++)
            if (slot_live(&run->slots[i]))
                __atomic_store_n(&run->slots[i].move_request, PRSEQ_MOVE_ANY, __ATOMIC_RELEASE);
        run->move_requests = run->nr_slots;
        return;
    }
    for (uint32_t k = 0; k < run->nr_slots; k++) {
        struct prseq_slot *s = &run->slots[run->move_requests++ % run->nr_slots];
        if (slot_live(s)) {
            __atomic_store_n(&s->move_request, PRSEQ_MOVE_ANY, __ATOMIC_RELEASE);
            return;
        }
    }
}

/* Supervisor, once per run at a seeded point before the deadline: ask one
 * live worker (picked from `pick`) to move to another CPU, which asks a
 * worker on that CPU to come the other way: an aimed swap in the middle of
 * the run, with every CPU keeping a writer, whatever the scheduler did. */
void prseq_request_swap(struct prseq_run *run, uint64_t pick)
{
    if (run->nr_slots < 2 || run->nr_cpus_allowed < 2)
        return;
    for (uint32_t k = 0; k < run->nr_slots; k++) {
        struct prseq_slot *s = &run->slots[(pick + k) % run->nr_slots];
        int none = 0;
        if (slot_live(s) && __atomic_compare_exchange_n(&s->move_request, &none, PRSEQ_MOVE_ANY,
                                                        0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
}

/* A swap: ask a live worker last seen on `target` (not `self`) to move
 * itself to `cpu`, so the CPU this worker leaves keeps a writer. */
static void ask_partner(struct prseq_run *run, const struct prseq_slot *self, uint32_t target,
                        uint32_t cpu)
{
    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *o = &run->slots[i];
        if (o != self && __atomic_load_n(&o->tid, __ATOMIC_ACQUIRE) > 0 &&
            __atomic_load_n(&o->cpu, __ATOMIC_RELAXED) == target) {
            int none = 0;
            __atomic_compare_exchange_n(&o->move_request, &none, PRSEQ_MOVE_TO(cpu), 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED);
            return;
        }
    }
}

/* The thread moves itself (a TID of our own, never another process's), then
 * gets its mask back: to the CPU a swap asked for, or else to the next CPU
 * of its mask after `cpu` (under cpuset chaos, of the group's CPUs, when a
 * shift held it to one), asking a worker on that CPU to come to `cpu` (a
 * swap). The kernel moves the thread before sched_setaffinity returns; the
 * worker sees the new CPU at its next batch, which counts as the migration. */
void prseq_move_self(struct prseq_run *run, struct prseq_slot *s, uint32_t cpu)
{
    size_t size;
    cpu_set_t *mine = prseq_mask_alloc(run->nr_cpus, &size);
    cpu_set_t *one = prseq_mask_alloc(run->nr_cpus, &size);
    int request = __atomic_exchange_n(&s->move_request, 0, __ATOMIC_ACQUIRE);
    int swap = request == PRSEQ_MOVE_ANY;

    if (!mine || !one || sched_getaffinity(0, size, mine) != 0)
        goto out;
    /* A cpuset shift holds the worker to one CPU: widen the group first
     * (a short fallback half may run only while the cpuset holds one CPU). */
    if (CPU_COUNT_S(size, mine) < 2 && chaos_cpuset_widen(run->chaos) &&
        sched_getaffinity(0, size, mine) != 0)
        goto out;
    if (CPU_COUNT_S(size, mine) < 2)
        goto out;
    for (uint32_t k = swap ? 1 : 0; k < run->nr_cpus; k++) {
        uint32_t target = swap ? (cpu + k) % run->nr_cpus : (uint32_t)(request - PRSEQ_MOVE_TO(0));
        if (target == cpu || target >= run->nr_cpus || !CPU_ISSET_S(target, size, mine)) {
            if (swap)
                continue;
            break;
        }
        CPU_ZERO_S(size, one);
        CPU_SET_S(target, size, one);
        prseq_mask_change_begin(run);
        if (sched_setaffinity(0, size, one) == 0) {
            sched_setaffinity(0, size, mine);
            __atomic_fetch_add(&run->moves, 1, __ATOMIC_RELAXED);
            if (swap)
                ask_partner(run, s, target, cpu);
        }
        prseq_mask_change_end(run);
        break;
    }
out:
    CPU_FREE(mine);
    CPU_FREE(one);
}

void prseq_evidence_sample(struct prseq_run *run)
{
    const struct chaos *c = run->chaos;
    size_t size;
    cpu_set_t *now;

    /* From the injector's first write on: before it the cpuset is the whole mask. */
    if (run->cfg->cpuset_hz <= 0 || !c || !__atomic_load_n(&c->cpuset_shifts, __ATOMIC_RELAXED))
        return;
    now = prseq_mask_alloc(run->nr_cpus, &size);
    if (now && sched_getaffinity(0, size, now) == 0 &&
        (uint32_t)CPU_COUNT_S(size, now) > run->cpuset_cpus_max)
        run->cpuset_cpus_max = (uint32_t)CPU_COUNT_S(size, now);
    CPU_FREE(now);
}

/* More than one CPU was allowed: the process's mask at the start, or under
 * cpuset chaos the largest cpuset sampled during the run (a cpuset that
 * stayed on one CPU leaves nothing to migrate to). */
static int several_cpus(const struct prseq_run *run)
{
    if (run->cfg->cpuset_hz > 0 && run->cpuset_cpus_max)
        return run->cpuset_cpus_max > 1;
    return run->nr_cpus_allowed > 1;
}

uint32_t prseq_evidence_missing(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;
    const struct chaos *c = run->chaos;
    int rseq = run->res->path == PRSEQ_PATH_RSEQ;
    /* On one allowed CPU nothing can migrate and nothing runs in parallel. */
    int several = several_cpus(run);
    uint64_t aborts = 0, by_signal = 0, by_fence = 0, migrations = 0, signals = 0, overlaps = 0;
    uint32_t missing = 0;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        aborts += load(&s->aborts_seen);
        by_signal += load(&s->aborts_signal);
        by_fence += load(&s->aborts_membarrier);
        migrations += load(&s->live_migrations);
        overlaps += load(&s->overlapped_migrations);
        signals += load(&s->signals_handled);
    }
    if (rseq && aborts == 0)
        missing |= PRSEQ_EVIDENCE_ABORTS;
    if ((cfg->signals_hz > 0 || cfg->timer_hz > 0) && (rseq ? by_signal : signals) == 0)
        missing |= PRSEQ_EVIDENCE_SIGNAL;
    if (cfg->membarrier_hz > 0 &&
        (rseq ? by_fence : (c ? __atomic_load_n(&c->membarriers, __ATOMIC_RELAXED) : 0)) == 0)
        missing |= PRSEQ_EVIDENCE_MEMBARRIER;
    /* One migration proves little: a stale CPU number only collides when the
     * CPU left still runs a writer. With 2+ threads the rseq path needs that
     * several times over (each exposes a stale-cpu bug about half the time). */
    if (several && rseq && run->nr_slots > 1 ? overlaps < PRSEQ_MIN_OVERLAPPED_MIGRATIONS
        : several && migrations == 0 && (rseq || cfg->affinity_hz > 0 || cfg->cpuset_hz > 0))
        missing |= PRSEQ_EVIDENCE_MIGRATION;
    if (cfg->churn_hz > 0 && run->threads_started <= run->nr_slots)
        missing |= PRSEQ_EVIDENCE_CHURN;
    if (cfg->fork_hz > 0 && (!c || __atomic_load_n(&c->forks, __ATOMIC_RELAXED) == 0))
        missing |= PRSEQ_EVIDENCE_FORK;
    if (cfg->hotplug_hz > 0 && (!c || __atomic_load_n(&c->hotplug_events, __ATOMIC_RELAXED) == 0))
        missing |= PRSEQ_EVIDENCE_HOTPLUG;
    if (!rseq && several && __atomic_load_n(&run->distinct_cpus, __ATOMIC_RELAXED) < 2)
        missing |= PRSEQ_EVIDENCE_CONCURRENCY;
    /* Per-slot budgets replay the rseq half of path="both" on the fallback
     * path: the causes were judged there; this half needs concurrency only. */
    if (cfg->slot_budgets)
        missing &= PRSEQ_EVIDENCE_CONCURRENCY;
    return missing;
}
