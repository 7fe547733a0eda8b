/*
 * pytest_rseq.h - the C ABI between pytest-rseq and a downstream rseq workload.
 *
 * A workload library exports one function returning a pointer to a static
 * `struct prseq_workload` (any symbol name; "prseq_workload" by default).
 * pytest-rseq loads the library in a child process, creates the shared state
 * once, runs `op` (rseq path) or `fallback_op` (fallback path) from N native
 * threads under lifecycle chaos, and checks `total()` against the number of
 * ops the threads completed (or against `expected(ops_done)` when given).
 *
 * ABI version 2 (version 1 libraries load unchanged). Fields are never
 * reordered; a new version appends: version 2 appended `flags`, which the
 * harness reads only when abi_version >= 2.
 */
#ifndef PYTEST_RSEQ_H
#define PYTEST_RSEQ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-cdef-begin */
#define PRSEQ_ABI_VERSION 2

/* Bits of prseq_workload.flags (ABI version >= 2). */
/* Fork chaos may run this workload's callbacks (thread_init, op or
 * fallback_op, thread_exit, total) in the child of a fork taken while other
 * threads were running: they take no lock another thread could hold at the
 * fork and call nothing that is unsafe there. Without it the forked child
 * only touches its inherited rseq area and exits. */
#define PRSEQ_WORKLOAD_FORK_SAFE 1

/* One worker slot, owned by the harness. `local` belongs to the workload. */
struct prseq_thread {
    uint32_t index;   /* worker slot, 0..nr_threads-1; kept by a churn replacement */
    uint64_t aborts;  /* incremented by the workload's abort handler */
    void *local;      /* free for the workload (set it in thread_init) */
};

struct prseq_workload {
    uint32_t abi_version;                                  /* PRSEQ_ABI_VERSION */
    const char *name;
    void *(*create)(uint32_t nr_threads);                  /* shared state; NULL = failure */
    int (*thread_init)(void *state, struct prseq_thread *t);   /* optional; 0 or -errno */
    int (*op)(void *state, struct prseq_thread *t);            /* rseq path; 0 = one op done */
    int (*fallback_op)(void *state, struct prseq_thread *t);   /* same op, fallback path */
    void (*thread_exit)(void *state, struct prseq_thread *t);  /* optional */
    uint64_t (*total)(void *state);                        /* aggregate over all shards */
    uint64_t (*expected)(void *state, uint64_t ops_done);  /* optional; NULL = ops_done */
    uint32_t (*shards)(void *state, uint64_t *out, uint32_t max); /* optional */
    void (*destroy)(void *state);
    uint32_t flags;                                        /* ABI >= 2: PRSEQ_WORKLOAD_* bits */
};
/* cffi-cdef-end */

/* A library exports:  const struct prseq_workload *prseq_workload(void);  */
typedef const struct prseq_workload *(*prseq_workload_fn)(void);

/*
 * Helpers for workloads (not part of the versioned ABI above).
 *
 * Finding the calling thread's rseq area (see docs/c-abi.md):
 *   - glibc registered it (__rseq_size > 0): thread pointer + __rseq_offset;
 *   - registration="own": pytest-rseq registered a heap area for every
 *     worker thread before thread_init; the harness exports
 *     prseq_harness_rseq_area() for it (looked up with dlsym, so neither a
 *     link-time dependency nor the load order matters);
 *   - blocked modes or no registration: NULL (the harness then runs
 *     fallback_op only).
 * Call prseq_rseq_area() in thread_init and keep the pointer in t->local:
 * it does a dlsym on the "own" path, too slow for every op.
 */
/* cffi-cdef-begin */
/* The rseq signature: the word right before every abort handler, and the
 * last argument of the rseq syscall. These are the only place pytest-rseq
 * writes it (its own sections, the linter and the tests read them). */
#define PRSEQ_RSEQ_SIG_X86_64 0x53053053u
#define PRSEQ_RSEQ_SIG_AARCH64 0xd428bc00u /* "brk #0x45e0": traps if ever run */
/* cffi-cdef-end */
#if defined(__x86_64__)
#define PRSEQ_RSEQ_SIG PRSEQ_RSEQ_SIG_X86_64
#elif defined(__aarch64__)
#define PRSEQ_RSEQ_SIG PRSEQ_RSEQ_SIG_AARCH64
#endif

/* The kernel's struct rseq (uapi/linux/rseq.h), the fields up to mm_cid.
 * Only the first __rseq_size / AT_RSEQ_FEATURE_SIZE bytes are live. */
struct prseq_rseq_area {
    uint32_t cpu_id_start;
    uint32_t cpu_id;
    uint64_t rseq_cs;   /* address of the active struct prseq_rseq_cs, or 0 */
    uint32_t flags;
    uint32_t node_id;
    uint32_t mm_cid;
};

/* The kernel's struct rseq_cs: one per critical section, 32-byte aligned,
 * conventionally in the "__rseq_cs" ELF section (pytest_rseq.lint reads it). */
struct prseq_rseq_cs {
    uint32_t version;            /* 0 */
    uint32_t flags;              /* 0 */
    uint64_t start_ip;
    uint64_t post_commit_offset; /* end of the section - start_ip */
    uint64_t abort_ip;           /* preceded by the 4 signature bytes */
} __attribute__((aligned(32)));

#ifndef PRSEQ_NO_HELPERS
#include <dlfcn.h>
#include <stddef.h>

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* The area glibc registered for the calling thread, or NULL. */
static inline struct prseq_rseq_area *prseq_glibc_rseq_area(void)
{
    if (&__rseq_size == NULL || &__rseq_offset == NULL || __rseq_size == 0)
        return NULL;
    return (struct prseq_rseq_area *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* The rseq area the harness set up for the calling thread, or NULL. */
static inline struct prseq_rseq_area *prseq_rseq_area(void)
{
    struct prseq_rseq_area *(*harness)(void);
    struct prseq_rseq_area *area = prseq_glibc_rseq_area();

    if (area)
        return area;
    /* (void *)0 is RTLD_DEFAULT: search the global scope. */
    *(void **)&harness = dlsym((void *)0, "prseq_harness_rseq_area");
    return harness ? harness() : NULL;
}
#endif /* PRSEQ_NO_HELPERS */

#ifdef __cplusplus
}
#endif

#endif /* PYTEST_RSEQ_H */
