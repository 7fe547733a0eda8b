/* harness.c - worker threads, thread-local tallies, churn, the deadline and
 * invariant sampling: one call of prseq_run() is one run of one workload. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "evidence.h"
#include "harness.h"
#include "util.h"
#include "workloads.h"

/* Ops between two looks at the stop flag, the CPU and the clock. */
#define BATCH 64
/* The same for the built-in counters' batch calls (~0.5 ns an op): larger, so
 * the per-batch checks and invariant samples stay a small part of their cost. */
#define FAST_BATCH 1024
/* The supervisor wakes at least this often to look for Ctrl-C. */
#define POLL_NS 20000000ull
/* Past the deadline it looks at the evidence this often. */
#define EXTEND_POLL_NS 2000000ull

enum violation_kind {
    VIOLATION_CPU_ID_START = 1,   /* cpu_id_start != cpu_id outside a section */
    VIOLATION_GETCPU = 2,         /* getcpu() != cpu_id */
    VIOLATION_CPU_RANGE = 3,      /* cpu_id is not a possible CPU */
    VIOLATION_MM_CID_RANGE = 4,   /* mm_cid >= min(possible CPUs, threads of the process) */
    VIOLATION_CPU_NOT_ALLOWED = 5, /* cpu_id outside the thread's settled affinity mask */
    VIOLATION_NODE_ID = 6,        /* node_id != the NUMA node of cpu_id */
};

static int stop_requested;

void prseq_request_stop(void)
{
    __atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
}

/* The flag is cleared only here, by the caller at the start of a whole
 * top-level run (both halves of path="both" included): a run never clears
 * it, so a stop asked for during one half also stops the next. */
void prseq_clear_stop(void)
{
    __atomic_store_n(&stop_requested, 0, __ATOMIC_RELEASE);
}

int prseq_stop_requested(void)
{
    return __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE);
}

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
static void sample_invariants(struct prseq_run *run, struct prseq_area *area, cpu_set_t *mask)
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
        record_violation(run, VIOLATION_CPU_ID_START, before, start, 0);
    else if (before >= run->nr_cpus)
        record_violation(run, VIOLATION_CPU_RANGE, before, start, run->nr_cpus);
    else if (have_mask && gen1 == gen2 && busy == 0 && !CPU_ISSET_S(before, size, mask))
        record_violation(run, VIOLATION_CPU_NOT_ALLOWED, before, start,
                         (uint64_t)CPU_COUNT_S(size, mask));
    else if (have_cpu && cpu != before)
        record_violation(run, VIOLATION_GETCPU, before, start, cpu);
    else if (run->node_id_usable && run->cpu_node && run->cpu_node[before] >= 0 &&
             node != (uint32_t)run->cpu_node[before])
        record_violation(run, VIOLATION_NODE_ID, before, start, node);
    else if (run->res->owner != PRSEQ_OWNER_NONE && cid >= run->mm_cid_bound)
        record_violation(run, VIOLATION_MM_CID_RANGE, before, start, cid);
}

/* Mark the CPUs of a cpulist ("0-3,8,10-11") as on `node`. */
static void mark_cpulist(int16_t *map, uint32_t nr_cpus, const char *list, int node)
{
    const char *p = list;

    while (*p >= '0' && *p <= '9') {
        char *end;
        unsigned long lo = strtoul(p, &end, 10), hi = lo;
        if (*end == '-')
            hi = strtoul(end + 1, &end, 10);
        for (unsigned long cpu = lo; cpu <= hi && cpu < nr_cpus; cpu++)
            map[cpu] = (int16_t)node;
        p = *end == ',' ? end + 1 : end;
    }
}

/* NUMA node of every possible CPU, from <root>/nodeN/cpulist: one pass over
 * the node directories (root NULL = /sys/devices/system/node). A missing
 * tree leaves every CPU unknown (-1) at once, with no per-CPU probing. */
static int16_t *read_cpu_nodes(uint32_t nr_cpus, const char *root)
{
    int16_t *map = malloc(sizeof(*map) * nr_cpus);
    char path[4096], list[4096];
    struct dirent *e;
    DIR *d;

    if (!map)
        return NULL;
    for (uint32_t cpu = 0; cpu < nr_cpus; cpu++)
        map[cpu] = -1;
    if (!root || !root[0])
        root = "/sys/devices/system/node";
    d = opendir(root);
    if (!d)
        return map;
    while ((e = readdir(d))) {
        char *end;
        long node;
        FILE *f;
        size_t n;
        if (strncmp(e->d_name, "node", 4) != 0)
            continue;
        node = strtol(e->d_name + 4, &end, 10);
        if (end == e->d_name + 4 || *end || node < 0 || node > INT16_MAX)
            continue;
        snprintf(path, sizeof(path), "%s/%s/cpulist", root, e->d_name);
        f = fopen(path, "re");
        if (!f)
            continue;
        n = fread(list, 1, sizeof(list) - 1, f);
        fclose(f);
        list[n] = '\0';
        mark_cpulist(map, nr_cpus, list, (int)node);
    }
    closedir(d);
    return map;
}

/* CPUs in the calling thread's mask (the evidence rules waive migrations
 * on one CPU); all possible CPUs when the mask cannot be read. */
static uint32_t allowed_cpus(uint32_t nr_cpus)
{
    size_t size;
    cpu_set_t *mask = prseq_mask_alloc(nr_cpus, &size);
    uint32_t n = nr_cpus;

    if (mask && sched_getaffinity(0, size, mask) == 0)
        n = (uint32_t)CPU_COUNT_S(size, mask);
    CPU_FREE(mask);
    return n;
}

/* Threads this process has now (/proc/self/task entries). */
static uint32_t count_threads(void);

/* The kernel keeps mm_cid below min(threads of the process, the process's
 * nr_cpus_allowed), and nr_cpus_allowed is the union of every mask any of
 * its threads ever had, not the caller's mask now (a thread pinned to CPU 0
 * while another runs on CPU 1 still sees cids 0 and 1). A bound never below
 * the kernel's: the possible CPU ids, and the threads (the workers, those
 * there now, the injector threads, a margin). */
static uint32_t mm_cid_bound(const struct prseq_config *cfg, uint32_t nr_cpus)
{
    uint32_t threads = cfg->threads + count_threads() + 8;

    return threads < nr_cpus ? threads : nr_cpus;
}

/* Threads this process has now (/proc/self/task entries). */
static uint32_t count_threads(void)
{
    uint32_t n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;

    if (!d)
        return 64;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
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

static void *worker_main(void *arg)
{
    struct prseq_slot *s = arg;
    struct prseq_run *run = s->run;
    const struct prseq_config *cfg = run->cfg;
    int use_rseq = run->res->path == PRSEQ_PATH_RSEQ;
    int (*op)(void *, struct prseq_thread *) = use_rseq ? run->w->op : run->w->fallback_op;
    prseq_batch_fn batch = use_rseq ? prseq_builtin_batch(run->w) : NULL;
    uint64_t remaining = s->budget - s->ops, done = 0, batches = 0, migrations = 0;
    uint64_t born = 0;
    /* Per slot, across churned threads: the slot's work moving between
     * CPUs is what migration chaos must show. */
    uint32_t last_cpu = s->last_cpu;
    struct prseq_area *area;
    cpu_set_t *mask = NULL;
    size_t mask_size;
    int owner, registered = 0, entered = 0;

    prseq_chaos_worker_bind(s);
    slot_publish_tid(s, gettid());
    if (use_rseq && cfg->own_registration && !cfg->workload_registers) {
        int rc = prseq_own_register();
        if (rc < 0) {
            prseq_run_fail(run, -rc, "slot %u: registering the rseq area failed: %s",
                           s->t.index, strerror(-rc));
            goto out;
        }
        registered = 1;
    }
    area = prseq_current_area(&owner);
    if (use_rseq && !area && !cfg->workload_registers) {
        prseq_run_fail(run, ENOSYS, "slot %u: no registered rseq area in a worker thread",
                       s->t.index);
        goto out;
    }
    if (run->w->thread_init) {
        int rc = run->w->thread_init(run->state, &s->t);
        if (rc != 0) {
            prseq_run_fail(run, rc < 0 ? -rc : EINVAL, "%s: thread_init failed in slot %u: %s",
                           run->w->name, s->t.index, strerror(rc < 0 ? -rc : EINVAL));
            goto out;
        }
    }
    prseq_chaos_worker_enter(run, s);
    entered = 1;
    if (area && cfg->sample_every)
        mask = prseq_mask_alloc(run->nr_cpus, &mask_size);
    if (s->lifetime_ns)
        born = prseq_now_ns();

    while (!__atomic_load_n(&run->stop, __ATOMIC_RELAXED) && done < remaining) {
        uint64_t n = lifecycle_batch(s, batch ? FAST_BATCH : BATCH, remaining - done);
        uint32_t cpu;

        if (run_ops(run, s, op, batch, n, &done) < 0)
            goto leave;
        cpu = area ? __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED) : (uint32_t)sched_getcpu();
        if (cpu != last_cpu) {
            prseq_note_cpu(run, s, cpu, last_cpu != UINT32_MAX);
            migrations += last_cpu != UINT32_MAX;
            last_cpu = cpu;
            __atomic_store_n(&s->cpu, cpu, __ATOMIC_RELAXED);
        }
        evidence_poll(run, s, cpu);
        if (area && cfg->sample_every && ++batches % cfg->sample_every == 0)
            sample_invariants(run, area, mask);
        if (s->lifetime_ns && prseq_now_ns() - born >= s->lifetime_ns)
            break;
    }
    /* The deadline, a stop or the end of a churned life arrives between two
     * batches: finish a seeded random tail so the last op before
     * thread_exit lands at an arbitrary point, not on a batch boundary. */
    if (!__atomic_load_n(&run->error, __ATOMIC_ACQUIRE) && done < remaining)
        run_ops(run, s, op, batch, lifecycle_tail(s, batch ? FAST_BATCH : BATCH, remaining - done),
                &done);
leave:
    if (entered)
        prseq_chaos_worker_leave(run, s);
    if (run->w->thread_exit)
        run->w->thread_exit(run->state, &s->t);
out:
    if (registered)
        prseq_own_unregister();
    s->ops += done;
    s->migrations += migrations;
    s->last_cpu = last_cpu;
    if (mask)
        CPU_FREE(mask);
    slot_publish_tid(s, 0);
    __atomic_store_n(&s->exited, 1, __ATOMIC_RELEASE);
    sem_post(&run->exited);
    return NULL;
}

static int start_slot(struct prseq_run *run, struct prseq_slot *s)
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

static int slot_wants_more(const struct prseq_slot *s)
{
    return s->ops < s->budget;
}

/* Join and (churn) restart workers that left; returns 1 while any slot has
 * work left. */
static int reap_slots(struct prseq_run *run)
{
    int busy = 0;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        if (s->joinable && __atomic_load_n(&s->exited, __ATOMIC_ACQUIRE)) {
            pthread_join(s->thread, NULL);
            s->joinable = 0;
            if (!__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE) && slot_wants_more(s))
                start_slot(run, s);
        }
        busy |= s->joinable;
    }
    return busy;
}

/* Per-slot budgets (the fallback half of path="both") end the run, which is
 * never extended: its evidence is looked after from the start. */
static int evidence_watched(const struct prseq_run *run, uint64_t now, uint64_t deadline)
{
    return now >= deadline || run->cfg->slot_budgets;
}

/* The supervisor may end the run at `now`: from the deadline on once no
 * evidence is missing or an invariant broke (a verdict already), and at the
 * cap whatever is missing. Meanwhile, a missing migration is asked for. */
static int run_may_end(struct prseq_run *run, uint64_t now, uint64_t deadline, uint64_t cap)
{
    uint32_t missing;

    prseq_evidence_sample(run);
    if (!evidence_watched(run, now, deadline))
        return 0;
    if (now >= deadline &&
        (now >= cap || __atomic_load_n(&run->invariant_violations, __ATOMIC_RELAXED)))
        return 1;
    missing = prseq_evidence_missing(run);
    if (missing & (PRSEQ_EVIDENCE_MIGRATION | PRSEQ_EVIDENCE_CONCURRENCY))
        prseq_request_migration(run, now);
    return now >= deadline && missing == 0;
}

/* Where the run must end even without evidence (never before the deadline). */
static uint64_t evidence_cap_ns(const struct prseq_config *cfg, uint64_t start, uint64_t deadline)
{
    uint64_t cap;

    if (!(cfg->evidence_cap_s > cfg->duration_s))
        return deadline;
    cap = start + (uint64_t)(cfg->evidence_cap_s * 1e9);
    return cap > deadline ? cap : deadline;
}

static int join_all(struct prseq_run *run, double timeout_s)
{
    struct timespec now;
    int stuck = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t limit = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec +
                     (uint64_t)(timeout_s * 1e9);
    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        struct timespec abs = prseq_ns_to_timespec(limit);
        if (!s->joinable)
            continue;
        if (pthread_timedjoin_np(s->thread, NULL, &abs) != 0) {
            stuck++;
            continue;
        }
        s->joinable = 0;
    }
    return stuck;
}

/* Which path and whose area the workers will use. */
static int choose_path(const struct prseq_config *cfg, struct prseq_result *res)
{
    int owner;

    res->path = PRSEQ_PATH_FALLBACK;
    res->owner = PRSEQ_OWNER_NONE;
    if (cfg->path != PRSEQ_PATH_RSEQ)
        return 0;
    if (cfg->own_registration && cfg->workload_registers) {
        /* The workload registers its own area in thread_init (librseq style). */
        struct prseq_abi_info abi;
        prseq_abi_probe(&abi);
        if (abi.available) {
            res->path = PRSEQ_PATH_RSEQ;
            res->owner = PRSEQ_OWNER_WORKLOAD;
        }
        return 0;
    }
    if (cfg->own_registration) {
        int rc = prseq_own_register();
        if (rc == -ENOSYS || rc == -EPERM)
            return 0;
        if (rc < 0) {
            res->error = -rc;
            snprintf(res->errmsg, sizeof(res->errmsg),
                     "registering pytest-rseq's own area failed: %s (is glibc's registration "
                     "still on?)",
                     strerror(-rc));
            return rc;
        }
        prseq_own_unregister();
        res->path = PRSEQ_PATH_RSEQ;
        res->owner = PRSEQ_OWNER_OWN;
        return 0;
    }
    if (prseq_current_area(&owner)) {
        res->path = PRSEQ_PATH_RSEQ;
        res->owner = owner;
    }
    return 0;
}

/* One run on `run` (zeroed, owned by prseq_run). Sets *stuck when workers
 * outlived the join deadline: the run must then never be freed. */
static int run_body(const struct prseq_workload *w, const struct prseq_config *cfg,
                    struct prseq_result *res, struct prseq_run *run, int *stuck_out)
{
    const char *bad;
    uint64_t start, deadline, cap;
    int stuck;

    memset(res, 0, sizeof(*res));
    bad = prseq_workload_problem(w);
    if (bad) {
        res->error = EINVAL;
        snprintf(res->errmsg, sizeof(res->errmsg), "workload %s: missing or invalid %s",
                 w && w->name ? w->name : "?", bad);
        return -EINVAL;
    }
    if (cfg->threads == 0 || cfg->threads > PRSEQ_MAX_THREADS || !(cfg->duration_s > 0)) {
        res->error = EINVAL;
        snprintf(res->errmsg, sizeof(res->errmsg), "bad config: threads=%u duration=%g",
                 cfg->threads, cfg->duration_s);
        return -EINVAL;
    }
    if (choose_path(cfg, res) < 0)
        return -res->error;
    run->w = w;
    run->cfg = cfg;
    run->res = res;
    run->nr_slots = cfg->threads;
    run->nr_cpus = prseq_possible_cpus();
    run->cpu_node = read_cpu_nodes(run->nr_cpus, cfg->node_root);
    run->cpus_seen = calloc((run->nr_cpus + 63) / 64, sizeof(uint64_t));
    run->node_id_usable = prseq_node_id_usable(res->owner);
    run->mm_cid_bound = mm_cid_bound(cfg, run->nr_cpus);
    run->nr_cpus_allowed = allowed_cpus(run->nr_cpus);
    res->threads = cfg->threads;
    prseq_workloads_set_cs_delay(cfg->cs_delay);

    run->state = w->create(cfg->threads);
    if (!run->state) {
        res->error = ENOMEM;
        snprintf(res->errmsg, sizeof(res->errmsg), "%s: create(%u) returned NULL", w->name,
                 cfg->threads);
        free(run->cpu_node);
        free(run->cpus_seen);
        return -ENOMEM;
    }
    run->slots = aligned_alloc(64, sizeof(struct prseq_slot) * cfg->threads);
    if (!run->slots || sem_init(&run->exited, 0, 0) != 0) {
        free(run->slots);
        free(run->cpu_node);
        free(run->cpus_seen);
        w->destroy(run->state);
        res->error = ENOMEM;
        snprintf(res->errmsg, sizeof(res->errmsg), "out of memory for %u slots", cfg->threads);
        return -ENOMEM;
    }
    memset(run->slots, 0, sizeof(struct prseq_slot) * cfg->threads);
    for (uint32_t i = 0; i < cfg->threads; i++) {
        struct prseq_slot *s = &run->slots[i];
        s->run = run;
        s->t.index = i;
        s->last_cpu = UINT32_MAX;
        pthread_mutex_init(&s->tid_lock, NULL);
        s->budget = cfg->slot_budgets ? cfg->slot_budgets[i]
                    : cfg->ops_per_thread ? cfg->ops_per_thread
                                          : UINT64_MAX;
    }

    start = prseq_now_ns();
    deadline = start + (uint64_t)(cfg->duration_s * 1e9);
    cap = evidence_cap_ns(cfg, start, deadline);
    /* Injectors first: a worker joins them (timer, cpuset) as it starts. */
    {
        int rc = prseq_chaos_start(run);
        if (rc < 0 && !run->error)
            prseq_run_fail(run, -rc, "starting the injectors failed: %s", strerror(-rc));
    }
    for (uint32_t i = 0; i < cfg->threads && !run->error; i++)
        if (slot_wants_more(&run->slots[i]))
            start_slot(run, &run->slots[i]);

    for (;;) {
        uint64_t now = prseq_now_ns();
        uint64_t until = now < deadline ? deadline : cap;
        uint64_t poll = evidence_watched(run, now, deadline) ? EXTEND_POLL_NS : POLL_NS;
        uint64_t wake = now + poll < until ? now + poll : until;
        struct timespec abs = prseq_ns_to_timespec(wake);

        if (!reap_slots(run) || run_may_end(run, now, deadline, cap) ||
            __atomic_load_n(&run->stop, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE))
            break;
        while (sem_clockwait(&run->exited, CLOCK_MONOTONIC, &abs) != 0 && errno == EINTR)
            ;
    }
    __atomic_store_n(&run->stop, 1, __ATOMIC_RELEASE);
    prseq_chaos_stop(run);
    {
        uint64_t ended = prseq_now_ns();
        res->extended_s = ended > deadline ? (double)(ended - deadline) / 1e9 : 0.0;
    }
    stuck = join_all(run, cfg->join_timeout_s > 0 ? cfg->join_timeout_s : 5.0);
    res->duration_s = (double)(prseq_now_ns() - start) / 1e9;
    if (stuck) {
        /* The state may still be in use: leak it rather than free it under
         * a running thread. The child process exits right after this. */
        res->error = ETIMEDOUT;
        snprintf(res->errmsg, sizeof(res->errmsg),
                 "%d worker thread(s) did not stop within %.1f s of the deadline", stuck,
                 cfg->join_timeout_s > 0 ? cfg->join_timeout_s : 5.0);
        *stuck_out = 1;
        return -ETIMEDOUT;
    }
    res->evidence_missing = prseq_evidence_missing(run);
    res->distinct_cpus = run->distinct_cpus;
    res->evidence_moves = run->moves;
    prseq_chaos_finish(run);

    for (uint32_t i = 0; i < cfg->threads; i++) {
        struct prseq_slot *s = &run->slots[i];
        res->ops += s->ops;
        res->aborts += s->t.aborts;
        res->aborts_signal += s->aborts_signal;
        res->aborts_membarrier += s->aborts_membarrier;
        res->migrations += s->migrations;
        res->slot_ops[i] = s->ops;
    }
    res->threads_started = run->threads_started;
    res->invariant_samples = run->invariant_samples;
    res->invariant_violations = run->invariant_violations;
    memcpy(res->first_violation, run->first_violation, sizeof(res->first_violation));
    res->expected = w->expected ? w->expected(run->state, res->ops) : res->ops;
    res->observed = w->total(run->state);
    if (w->shards)
        res->nr_shards = w->shards(run->state, res->shards,
                                   (uint32_t)(sizeof(res->shards) / sizeof(res->shards[0])));
    if (run->error && !res->error)
        res->error = run->error;
    w->destroy(run->state);
    sem_destroy(&run->exited);
    for (uint32_t i = 0; i < cfg->threads; i++)
        pthread_mutex_destroy(&run->slots[i].tid_lock);
    free(run->slots);
    free(run->cpu_node);
    free(run->cpus_seen);
    return res->error ? -res->error : 0;
}

/* Everything a run's threads may touch lives in one heap block: when workers
 * miss the join deadline the block (run, private config and result) is
 * leaked, never freed or reused under them; the caller only gets a copy. */
struct run_box {
    struct prseq_run run;
    struct prseq_config cfg;
    struct prseq_result res;
    uint64_t budgets[];
};

int prseq_run(const struct prseq_workload *w, const struct prseq_config *cfg,
              struct prseq_result *res)
{
    size_t budgets = cfg->slot_budgets && cfg->threads <= PRSEQ_MAX_THREADS ? cfg->threads : 0;
    struct run_box *box = calloc(1, sizeof(*box) + budgets * sizeof(uint64_t));
    int stuck = 0, rc;

    if (!box) {
        memset(res, 0, sizeof(*res));
        res->error = ENOMEM;
        snprintf(res->errmsg, sizeof(res->errmsg), "out of memory for the run");
        return -ENOMEM;
    }
    box->cfg = *cfg;
    if (budgets) {
        memcpy(box->budgets, cfg->slot_budgets, budgets * sizeof(uint64_t));
        box->cfg.slot_budgets = box->budgets;
    }
    rc = run_body(w, &box->cfg, &box->res, &box->run, &stuck);
    *res = box->res;
    if (!stuck)
        free(box);
    return rc;
}
