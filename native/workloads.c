/* workloads.c - the built-in workloads: rseq per-CPU counters, their
 * fallback ops, and deliberately broken canaries the gate must catch. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "arch/arch.h"
#include "workloads.h"

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

struct shard {
    _Alignas(PRSEQ_CACHELINE) uint64_t value;
};

enum counter_kind {
    BY_CPU_ID,
    BY_MM_CID,
    RACY,
    BAD_SIG,
    /* Canaries that count correctly but write into the rseq area: each one
     * breaks exactly one invariant the harness samples. */
    CLOBBER_CPU_ID_START, /* cpu_id_start != cpu_id outside a section */
    CLOBBER_CPU_RANGE,    /* cpu_id is not a possible CPU */
    CLOBBER_NOT_ALLOWED,  /* pins itself to one CPU, claims another allowed one */
    CLOBBER_STALE_CPU,    /* claims the other allowed CPU: getcpu() disagrees */
    CLOBBER_NODE_ID,      /* node_id is not the node of cpu_id */
    CLOBBER_MM_CID,       /* mm_cid far above any bound */
    STALE_CPU,            /* cpu read before the section, never compared in it */
    EXIT_LOSS,            /* per-thread remainder dropped at thread_exit */
};

/* Per-thread state of the clobbering canaries. */
struct clobber {
    struct prseq_rseq_area *area;
    uint32_t fake_cpu;
    uint32_t cpus[2]; /* two allowed CPUs, when there are two */
    int nr_cpus;
};

struct counter {
    enum counter_kind kind;
    uint32_t nr_shards;
    uint64_t delay;
    struct shard *shards;
};

static uint64_t cs_delay;

void prseq_workloads_set_cs_delay(uint64_t iterations)
{
    cs_delay = iterations;
}

/* Highest possible CPU id + 1, from /sys/devices/system/cpu/possible
 * ("0-3", "0,2-5"): shard arrays are indexed by CPU id, and ids need not be
 * contiguous, so the count of CPUs is not enough. */
uint32_t prseq_possible_cpus(void)
{
    char buf[4096];
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    unsigned long max = 0;
    size_t n;
    char *p;

    if (!f)
        return CPU_SETSIZE;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (p = buf; *p;) {
        char *end;
        unsigned long v;
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        v = strtoul(p, &end, 10);
        if (v > max)
            max = v;
        p = end;
    }
    return (uint32_t)max + 1;
}

static void *counter_create(enum counter_kind kind, uint64_t extra_delay)
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

static void *create_cpu_id(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BY_CPU_ID, 0);
}

static void *create_mm_cid(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BY_MM_CID, 0);
}

static void *create_racy(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(RACY, RACY_WINDOW);
}

static void *create_bad_sig(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(BAD_SIG, BAD_SIG_WINDOW);
}

static void *create_stale_cpu(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(STALE_CPU, STALE_SECTION_WINDOW);
}

static void *create_exit_loss(uint32_t nr_threads)
{
    (void)nr_threads;
    return counter_create(EXIT_LOSS, 0);
}

#define CLOBBER_CREATE(FN, KIND)                 \
    static void *FN(uint32_t nr_threads)         \
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

static int clobber_thread_init(void *state, struct prseq_thread *t)
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

/* thread_exit of the canaries that keep a heap block in t->local. */
static void free_local(void *state, struct prseq_thread *t)
{
    (void)state;
    free(t->local);
    t->local = NULL;
}

static int op_fallback(void *state, struct prseq_thread *t);

static int op_clobber(void *state, struct prseq_thread *t)
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

static int counter_thread_init(void *state, struct prseq_thread *t)
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
static int op_cpu_id(void *state, struct prseq_thread *t)
{
    struct prseq_rseq_area *area = t->local;
    uint64_t done = 0;
    return counter_ops(state, t, &area->cpu_id_start, &area->cpu_id, 1, &done);
}

static int op_mm_cid(void *state, struct prseq_thread *t)
{
    struct prseq_rseq_area *area = t->local;
    uint64_t done = 0;
    return counter_ops(state, t, &area->mm_cid, &area->mm_cid, 1, &done);
}

/* The harness's fast path for the two counters: a whole batch per call. */
static int batch_cpu_id(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done)
{
    struct prseq_rseq_area *area = t->local;

    return counter_ops(state, t, &area->cpu_id_start, &area->cpu_id, n, done);
}

static int batch_mm_cid(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done)
{
    struct prseq_rseq_area *area = t->local;

    return counter_ops(state, t, &area->mm_cid, &area->mm_cid, n, done);
}

/* canary_racy: a per-CPU load/add/store with no rseq protection. Two
 * threads on one CPU (preemption) or a migration in the window lose counts. */
static int op_racy(void *state, struct prseq_thread *t)
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

static int stale_thread_init(void *state, struct prseq_thread *t)
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

static int op_stale_cpu(void *state, struct prseq_thread *t)
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

static int exit_loss_thread_init(void *state, struct prseq_thread *t)
{
    (void)state;
    t->local = calloc(1, sizeof(struct exit_loss));
    return t->local ? 0 : -ENOMEM;
}

static int op_exit_loss(void *state, struct prseq_thread *t)
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

static void exit_loss_thread_exit(void *state, struct prseq_thread *t)
{
    (void)state;
    free(t->local); /* the unflushed remainder goes with it */
    t->local = NULL;
}

/* canary_bad_signature: a correct section whose abort handler is preceded
 * by the wrong signature; the first abort kills the process with SIGSEGV. */
static int op_bad_sig(void *state, struct prseq_thread *t)
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

/* The fallback path: an atomic add on the shard of the CPU we run on. */
static int op_fallback(void *state, struct prseq_thread *t)
{
    struct counter *c = state;
    int cpu = sched_getcpu();
    (void)t;
    if (cpu < 0 || (uint32_t)cpu >= c->nr_shards)
        cpu = 0;
    __atomic_fetch_add(&c->shards[cpu].value, 1, __ATOMIC_RELAXED);
    return 0;
}

static uint64_t counter_total(void *state)
{
    struct counter *c = state;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->nr_shards; i++)
        sum += __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return sum;
}

static uint32_t counter_shards(void *state, uint64_t *out, uint32_t max)
{
    struct counter *c = state;
    uint32_t n = c->nr_shards < max ? c->nr_shards : max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = __atomic_load_n(&c->shards[i].value, __ATOMIC_RELAXED);
    return n;
}

static void counter_destroy(void *state)
{
    struct counter *c = state;
    free(c->shards);
    free(c);
}

#define COUNTER_WORKLOAD(NAME, CREATE, OP)                                   \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = CREATE,                                                    \
        .thread_init = counter_thread_init,                                  \
        .op = OP,                                                            \
        .fallback_op = op_fallback,                                          \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

#define CLOBBER_WORKLOAD(NAME, CREATE)                                       \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = CREATE,                                                    \
        .thread_init = clobber_thread_init,                                  \
        .op = op_clobber,                                                    \
        .fallback_op = op_fallback,                                          \
        .thread_exit = free_local,                                            \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

#define EXIT_LOSS_WORKLOAD(NAME)                                             \
    {                                                                        \
        .abi_version = PRSEQ_ABI_VERSION,                                    \
        .name = NAME,                                                        \
        .create = create_exit_loss,                                          \
        .thread_init = exit_loss_thread_init,                                \
        .op = op_exit_loss,                                                  \
        .fallback_op = op_exit_loss,                                         \
        .thread_exit = exit_loss_thread_exit,                                \
        .total = counter_total,                                              \
        .shards = counter_shards,                                            \
        .destroy = counter_destroy,                                          \
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,                                   \
    }

static const struct prseq_workload builtins[] = {
    COUNTER_WORKLOAD("counter", create_cpu_id, op_cpu_id),
    COUNTER_WORKLOAD("counter_mm_cid", create_mm_cid, op_mm_cid),
    COUNTER_WORKLOAD("canary_racy", create_racy, op_racy),
    COUNTER_WORKLOAD("canary_bad_signature", create_bad_sig, op_bad_sig),
    CLOBBER_WORKLOAD("canary_clobber_cpu_id_start", create_clobber_start),
    CLOBBER_WORKLOAD("canary_clobber_cpu_range", create_clobber_range),
    CLOBBER_WORKLOAD("canary_clobber_not_allowed", create_clobber_not_allowed),
    CLOBBER_WORKLOAD("canary_clobber_stale_cpu", create_clobber_stale),
    CLOBBER_WORKLOAD("canary_clobber_node_id", create_clobber_node),
    CLOBBER_WORKLOAD("canary_clobber_mm_cid", create_clobber_mm_cid),
    {
        .abi_version = PRSEQ_ABI_VERSION,
        .name = "canary_stale_cpu",
        .create = create_stale_cpu,
        .thread_init = stale_thread_init,
        .op = op_stale_cpu,
        .fallback_op = op_fallback,
        .thread_exit = free_local,
        .total = counter_total,
        .shards = counter_shards,
        .destroy = counter_destroy,
        .flags = PRSEQ_WORKLOAD_FORK_SAFE,
    },
    EXIT_LOSS_WORKLOAD("canary_exit_loss"),
};

#define NR_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))

const struct prseq_workload *prseq_builtin(const char *name)
{
    for (size_t i = 0; i < NR_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return &builtins[i];
    return NULL;
}

const char *prseq_builtin_name(uint32_t index)
{
    return index < NR_BUILTINS ? builtins[index].name : NULL;
}

prseq_batch_fn prseq_builtin_batch(const struct prseq_workload *w)
{
    if (w == &builtins[0])
        return batch_cpu_id;
    if (w == &builtins[1])
        return batch_mm_cid;
    return NULL;
}
