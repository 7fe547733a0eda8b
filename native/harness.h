/* harness.h - the state of one run, shared by its phases (setup.c,
 * supervise.c, worker.c, collect.c), the injectors and the evidence code. */
#ifndef PRSEQ_HARNESS_H
#define PRSEQ_HARNESS_H

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/types.h>

#include "prseq_core.h"

struct aim;

/* One worker slot. A churned worker exits and a new thread takes the slot. */
struct prseq_slot {
    _Alignas(64) struct prseq_thread t;
    pthread_t thread;
    int joinable;              /* a pthread in this slot still needs joining */
    int exited;                /* written by the worker when it leaves */
    pid_t tid;                 /* kernel TID while running, 0 otherwise */
    pthread_mutex_t tid_lock;  /* tid changes, and TID-targeted injectors act, under it */
    uint64_t budget;           /* ops this slot must do (UINT64_MAX = none) */
    uint64_t ops;              /* ops done over every thread of this slot */
    uint64_t migrations;
    uint32_t last_cpu;         /* CPU the slot's last thread was last seen on */
    uint32_t cpu;              /* the running worker's CPU at its last batch (for injectors) */
    uint64_t lifetime_ns;      /* churn: how long the current thread lives */
    uint64_t rng;              /* the current life's generator (batch lengths, tail) */
    uint64_t lives;            /* threads this slot has started */
    int first_done;            /* the current life did its random first batch */
    void *timer;               /* chaos.c: the thread's POSIX timer (signal storm) */
    uint64_t timer_born;       /* when that timer started */
    struct prseq_run *run;
    /* evidence.c: live counts, written by the slot's thread only */
    uint64_t aborts_signal;
    uint64_t aborts_membarrier;
    uint64_t live_migrations;
    uint64_t overlapped_migrations; /* migrations seen while the CPU left kept a worker running */
    uint64_t aborts_seen;      /* t.aborts as the worker last published it (the workload's own
                                  field is written non-atomically: the supervisor reads this) */
    int move_request;          /* 0, PRSEQ_MOVE_ANY (the supervisor: move to another CPU
                                  and swap) or PRSEQ_MOVE_TO(cpu) (a swap partner) */
    /* chaos.c: storm signals handled by the slot's threads (own cache line) */
    _Alignas(64) uint64_t signals_handled;
};

#define PRSEQ_MOVE_ANY 1
#define PRSEQ_MOVE_TO(cpu) ((int)(cpu) + 2)

/* Batches that ended on one CPU (any worker), on its own cache line. */
struct prseq_cpu_ticks {
    _Alignas(64) uint64_t n;
};

struct prseq_run {
    const struct prseq_workload *w;
    const struct prseq_config *cfg;
    struct prseq_result *res;
    void *state;
    struct prseq_slot *slots;
    uint32_t nr_slots;
    uint32_t nr_cpus;          /* possible CPU ids */
    uint32_t nr_cpus_allowed;  /* CPUs in the process's mask when the run began */
    int stop;                  /* set once: workers leave at the next batch */
    int error;                 /* first errno that stopped the run */
    sem_t exited;              /* posted by every worker that leaves */
    uint64_t threads_started;
    uint64_t invariant_samples;
    uint64_t invariant_violations;
    uint64_t first_violation[4];
    uint64_t mask_gen;         /* moves at the start and end of every mask change */
    uint32_t mask_busy;        /* mask changes in flight */
    uint32_t mm_cid_bound;     /* mm_cid must stay below this */
    int node_id_usable;        /* the area's node_id field is filled by the kernel */
    int16_t *cpu_node;         /* NUMA node of each possible CPU (-1 unknown) */
    void *chaos;               /* owned by chaos.c */
    struct aim *aim;           /* owned by aim.c: breakpoints of a mutant run, or NULL */
    uint64_t fence_gen;        /* membarrier: +1 before and after each fence (odd: in flight) */
    uint64_t *cpus_seen;       /* evidence.c: bitmap of CPUs the workers were seen on */
    uint32_t distinct_cpus;    /* bits set in cpus_seen */
    struct prseq_cpu_ticks *cpu_ticks; /* evidence.c: per possible CPU, batches ended there */
    uint64_t move_requests;    /* evidence.c: workers asked to move (supervisor only) */
    uint64_t last_request_ns;  /* when the last one was asked */
    uint64_t moves;            /* workers that moved themselves on request */
    int moves_wanted;          /* supervisor: migrations are missing, workers are being asked */
    uint64_t progress_mark;    /* supervisor: batches ended (all CPUs) at its last look */
    uint64_t progress_look_ns; /* ... when it looked (the run's start before its first look) */
    uint64_t stalled_ns;       /* ... time between looks in which no batch ended */
    uint32_t cpuset_cpus_max;  /* cpuset chaos: most CPUs the cpuset allowed when sampled
                                  (from the injector's first write on) */
};

/* The phases of prseq_run() (harness.c), in order. */

/* setup.c: check the request, choose the path, read the topology, create
 * the workload's state and the slots. 0, or a negative errno with
 * res->error and res->errmsg set (nothing left allocated). */
int prseq_run_setup(struct prseq_run *run, const struct prseq_workload *w,
                    const struct prseq_config *cfg, struct prseq_result *res);

/* supervise.c: start the injectors and the workers, watch the deadline and
 * the evidence, stop and join. Returns how many workers outlived the join
 * deadline (then res->error is ETIMEDOUT and the run must never be freed). */
int prseq_run_supervise(struct prseq_run *run);

/* collect.c: the finished run's numbers into run->res. */
void prseq_run_collect(struct prseq_run *run);

/* setup.c: destroy the workload's state and free what setup allocated. */
void prseq_run_teardown(struct prseq_run *run);

/* worker.c: start a thread in slot `s` (0 or a negative errno; the run then
 * fails); 1 while the slot still has ops to do. */
int prseq_start_slot(struct prseq_run *run, struct prseq_slot *s);
int prseq_slot_wants_more(const struct prseq_slot *s);

/* Injectors (chaos.c). start runs after the workers started and returns 0
 * or a negative errno (the run then fails with a message); stop ends the
 * injector threads before the workers are joined; finish runs after the
 * workers are joined (restores signal dispositions) and adds the counts to
 * run->res. */
int prseq_chaos_start(struct prseq_run *run);
void prseq_chaos_stop(struct prseq_run *run);
void prseq_chaos_finish(struct prseq_run *run);

/* Worker hooks of the injectors: called once by every worker thread after
 * thread_init and before it leaves. */
void prseq_chaos_worker_enter(struct prseq_run *run, struct prseq_slot *slot);
void prseq_chaos_worker_leave(struct prseq_run *run, struct prseq_slot *slot);

/* Called first by every worker thread, before its TID is published: the
 * storm's handler then counts signals in the slot's signals_handled. */
void prseq_chaos_worker_bind(struct prseq_slot *slot);

#endif /* PRSEQ_HARNESS_H */
