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
 * ABI version 1. Fields are never reordered; a new version appends.
 */
#ifndef PYTEST_RSEQ_H
#define PYTEST_RSEQ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-cdef-begin */
#define PRSEQ_ABI_VERSION 1

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
};
/* cffi-cdef-end */

/* A library exports:  const struct prseq_workload *prseq_workload(void);  */
typedef const struct prseq_workload *(*prseq_workload_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PYTEST_RSEQ_H */
