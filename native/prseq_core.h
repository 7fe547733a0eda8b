/*
 * prseq_core.h - the interface between the Python package and the native core.
 *
 * Everything between the cffi-cdef markers is read by native/build.py as the
 * cffi cdef, so this header is the single description of the boundary.
 */
#ifndef PRSEQ_CORE_H
#define PRSEQ_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "pytest_rseq.h"

/* cffi-cdef-begin */
#define PRSEQ_PATH_RSEQ 0
#define PRSEQ_PATH_FALLBACK 1

#define PRSEQ_OWNER_NONE 0   /* nobody registered an area for this thread */
#define PRSEQ_OWNER_GLIBC 1  /* glibc >= 2.35 registered it (__rseq_size > 0) */
#define PRSEQ_OWNER_OWN 2    /* pytest-rseq registered its own area */
#define PRSEQ_OWNER_WORKLOAD 3 /* the workload registers its own area (own mode) */

#define PRSEQ_MAX_THREADS 1024 /* worker threads of one run (prseq_config.threads) */
#define PRSEQ_MAX_SHARDS 4096  /* per-CPU values a run reports (prseq_result.shards) */

/* Kinds of rseq-area invariant violations (prseq_result.first_violation[0]). */
enum prseq_violation {
    PRSEQ_VIOLATION_CPU_ID_START = 1,    /* cpu_id_start != cpu_id outside a section */
    PRSEQ_VIOLATION_GETCPU = 2,          /* getcpu() != cpu_id */
    PRSEQ_VIOLATION_CPU_RANGE = 3,       /* cpu_id is not a possible CPU */
    PRSEQ_VIOLATION_MM_CID_RANGE = 4,    /* mm_cid >= min(possible CPUs, threads of the process) */
    PRSEQ_VIOLATION_CPU_NOT_ALLOWED = 5, /* cpu_id outside the thread's settled affinity mask */
    PRSEQ_VIOLATION_NODE_ID = 6,         /* node_id != the NUMA node of cpu_id */
};

/* Bits of prseq_result.evidence_missing: what the run did not show (see
 * docs/guide.md, "Verdicts"). The supervisor extends a run past duration_s,
 * up to evidence_cap_s, until none is missing. */
#define PRSEQ_EVIDENCE_ABORTS 1        /* rseq path: no section was aborted */
#define PRSEQ_EVIDENCE_SIGNAL 2        /* signals: no signal-attributed abort (fallback: none handled) */
#define PRSEQ_EVIDENCE_MEMBARRIER 4    /* fences: no membarrier-attributed abort (fallback: none issued) */
#define PRSEQ_EVIDENCE_MIGRATION 8     /* more than one CPU allowed and too few migrations:
                                          rseq path, 2+ threads: fewer than
                                          PRSEQ_MIN_OVERLAPPED_MIGRATIONS overlapped ones; else none */
#define PRSEQ_EVIDENCE_CHURN 16        /* churn: no worker thread was replaced */
#define PRSEQ_EVIDENCE_FORK 32         /* fork: no fork child completed its ops */
#define PRSEQ_EVIDENCE_HOTPLUG 64      /* hotplug: no CPU went offline or online */
#define PRSEQ_EVIDENCE_CONCURRENCY 128 /* fallback path: workers seen on fewer than 2 CPUs */
/* Overlapped migrations (a worker moved and ran on its new CPU while a worker
 * ran on the CPU it left) an rseq run of 2+ threads on 2+ CPUs must show. */
#define PRSEQ_MIN_OVERLAPPED_MIGRATIONS 16
/* Time in which no worker ended a batch (the process stopped or starved by the
 * machine, workers held in the kernel) does not count against the evidence
 * cap: the cap moves by that time, up to this many milliseconds a run. */
#define PRSEQ_STALL_ALLOWANCE_MS 5000

/* What the running process has: the ABI as glibc and the kernel report it. */
struct prseq_abi_info {
    int glibc_symbols;        /* 1 when __rseq_offset/__rseq_size/__rseq_flags resolve */
    int64_t rseq_offset;      /* __rseq_offset (thread pointer relative) */
    uint32_t glibc_size;      /* __rseq_size as glibc reports it (0 = not registered) */
    uint32_t glibc_flags;     /* __rseq_flags */
    uint32_t feature_size;    /* getauxval(AT_RSEQ_FEATURE_SIZE), 0 if absent */
    uint32_t align;           /* getauxval(AT_RSEQ_ALIGN), 0 if absent */
    uint32_t usable_size;     /* fields usable in glibc's area after the 20/32 rule */
    int32_t glibc_cpu_id;     /* cpu_id of glibc's area in the calling thread (-1/-2 states) */
    int syscall_errno;        /* probe: EINVAL = syscall present, ENOSYS/EPERM = blocked */
    int available;            /* the rseq syscall can be used in this process */
    int owner;                /* PRSEQ_OWNER_* for the calling thread */
    int mm_cid_usable;
    int node_id_usable;
    uint32_t own_size;        /* size pytest-rseq registers for its own area */
    uint32_t own_align;       /* alignment of that area */
};

/* One run of the harness. Rates are per second; 0 disables an injector. */
struct prseq_config {
    uint32_t threads;
    uint64_t ops_per_thread;      /* 0 = no op budget, stop at the deadline */
    const uint64_t *slot_budgets; /* optional per-slot budgets (threads entries) */
    double duration_s;            /* deadline for the run */
    double evidence_cap_s;        /* while evidence is missing the run goes on up to
                                     this long in all (<= duration_s: never extended) */
    double join_timeout_s;        /* how long stopped workers may take to exit */
    int path;                     /* PRSEQ_PATH_* */
    int own_registration;         /* register pytest-rseq's own area per worker */
    int workload_registers;       /* own mode: the workload registers its area itself */
    uint64_t seed;
    uint64_t cs_delay;            /* delay loop iterations inside built-in sections */
    uint32_t sample_every;        /* invariant sample period in op batches (0 = off) */
    double signals_hz;
    double timer_hz;
    double affinity_hz;
    double cpuset_hz;
    double churn_hz;
    double fork_hz;
    double membarrier_hz;
    double hotplug_hz;
    const char *cpuset_dir;       /* cgroup dir whose cpuset.cpus the injector rewrites */
    const char *cpuset_tasks;     /* file that takes worker TIDs (tasks or cgroup.threads) */
    const char *cpuset_choices;   /* ';'-separated cpu lists to cycle through */
    const char *hotplug_cpus;     /* ','-separated CPU ids the hotplug injector may offline */
    const char *hotplug_root;     /* NULL = /sys/devices/system/cpu (tests pass a fake tree) */
    const char *node_root;        /* NULL = /sys/devices/system/node (tests pass a fake tree) */
    const uint64_t *aim_addrs;    /* mutant runs: breakpoint addresses in the workload's
                                     library (ELF virtual addresses), see native/aim.h */
    uint32_t nr_aim;              /* entries of aim_addrs (0 = no aim; at most 4) */
};

struct prseq_result {
    int error;                    /* 0, or a positive errno that stopped the run */
    char errmsg[256];
    int path;                     /* path actually used */
    int owner;                    /* PRSEQ_OWNER_* of the workers' areas */
    uint32_t threads;
    uint64_t ops;
    uint64_t expected;
    uint64_t observed;
    uint64_t aborts;
    uint64_t aborts_signal;       /* aborts attributed to storm signals (upper bound) */
    uint64_t aborts_membarrier;   /* aborts attributed to membarrier fences (upper bound) */
    uint64_t migrations;
    uint64_t signals_sent;
    uint64_t signals_delivered;
    uint64_t affinity_changes;
    uint64_t cpuset_shifts;
    uint64_t cpuset_errors;       /* cpuset.cpus writes the kernel refused */
    int cpuset_errno;             /* errno of the last refused write */
    char cpuset_last[64];         /* the last cpu list written successfully */
    uint64_t threads_started;
    uint64_t forks;
    uint64_t fork_errors;
    uint64_t membarriers;
    uint64_t hotplug_events;
    uint64_t timer_signals;       /* per-thread timer expirations (part of signals_sent) */
    uint64_t invariant_samples;
    uint64_t invariant_violations;
    uint64_t first_violation[4];  /* kind, cpu_id, cpu_id_start, other */
    uint64_t slot_ops[PRSEQ_MAX_THREADS]; /* ops completed per worker slot */
    uint32_t nr_shards;           /* entries of shards[] filled by the workload */
    uint64_t shards[PRSEQ_MAX_SHARDS]; /* per-CPU (or per-mm_cid) values after the run */
    double duration_s;
    double extended_s;            /* how long the run went on past duration_s for evidence */
    double stalled_s;             /* time no worker ended a batch (moves the evidence cap,
                                     up to PRSEQ_STALL_ALLOWANCE_MS) */
    uint32_t evidence_missing;    /* PRSEQ_EVIDENCE_* bits still missing at the end */
    uint32_t distinct_cpus;       /* CPUs the workers were seen on */
    uint64_t evidence_moves;      /* workers the harness moved to another CPU for evidence */
    uint64_t affinity_swaps;      /* affinity flips that moved a second worker the other way */
    uint64_t overlapped_migrations; /* migrations after which the CPU left kept running a worker */
    int aim_errno;                /* why some or all workers ran unaimed (0: none did) */
    uint64_t aim_threads;         /* worker threads whose aim breakpoints were set */
    uint64_t aim_hits;            /* breakpoint SIGTRAPs handled (each a signal) */
    uint64_t aim_moves;           /* hits after which the thread moved to another CPU */
    uint64_t aim_yields;          /* hits after which the thread yielded its CPU */
    uint64_t aim_in_section;      /* hits that found rseq_cs set: left alone (must stay 0) */
};

int prseq_abi_probe(struct prseq_abi_info *out);
const struct prseq_workload *prseq_builtin(const char *name);
const char *prseq_builtin_name(uint32_t index);
int prseq_run(const struct prseq_workload *w, const struct prseq_config *cfg,
              struct prseq_result *res);
void prseq_request_stop(void);
void prseq_clear_stop(void);
int prseq_stop_requested(void);
uint32_t prseq_possible_cpus(void);
const struct prseq_workload *prseq_load_library(const char *path, const char *symbol,
                                                char *err, size_t errlen);
int prseq_block_rseq(int err);
int prseq_membarrier_query(void);
const char *prseq_build_version(void);
const char *prseq_source_hash(void);
/* cffi-cdef-end */

#endif /* PRSEQ_CORE_H */
