/* counters.h - what the built-in workloads share (counters.c, canaries.c)
 * and the functions workloads.c puts in its table. Internal to native/. */
#ifndef PRSEQ_COUNTERS_H
#define PRSEQ_COUNTERS_H

#include <stdint.h>

#include "workloads.h"

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

struct counter {
    enum counter_kind kind;
    uint32_t nr_shards;
    uint64_t delay;
    struct shard *shards;
};

/* counters.c */
void *counter_create(enum counter_kind kind, uint64_t extra_delay);
void *create_cpu_id(uint32_t nr_threads);
void *create_mm_cid(uint32_t nr_threads);
int counter_thread_init(void *state, struct prseq_thread *t);
int op_cpu_id(void *state, struct prseq_thread *t);
int op_mm_cid(void *state, struct prseq_thread *t);
int batch_cpu_id(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done);
int batch_mm_cid(void *state, struct prseq_thread *t, uint64_t n, uint64_t *done);
int op_fallback(void *state, struct prseq_thread *t);
uint64_t counter_total(void *state);
uint32_t counter_shards(void *state, uint64_t *out, uint32_t max);
void counter_destroy(void *state);
void free_local(void *state, struct prseq_thread *t);

/* canaries.c */
void *create_racy(uint32_t nr_threads);
void *create_bad_sig(uint32_t nr_threads);
void *create_stale_cpu(uint32_t nr_threads);
void *create_exit_loss(uint32_t nr_threads);
int clobber_thread_init(void *state, struct prseq_thread *t);
int op_clobber(void *state, struct prseq_thread *t);
int op_racy(void *state, struct prseq_thread *t);
int stale_thread_init(void *state, struct prseq_thread *t);
int op_stale_cpu(void *state, struct prseq_thread *t);
int exit_loss_thread_init(void *state, struct prseq_thread *t);
int op_exit_loss(void *state, struct prseq_thread *t);
void exit_loss_thread_exit(void *state, struct prseq_thread *t);
int op_bad_sig(void *state, struct prseq_thread *t);
void *create_clobber_start(uint32_t nr_threads);
void *create_clobber_range(uint32_t nr_threads);
void *create_clobber_not_allowed(uint32_t nr_threads);
void *create_clobber_stale(uint32_t nr_threads);
void *create_clobber_node(uint32_t nr_threads);
void *create_clobber_mm_cid(uint32_t nr_threads);

#endif /* PRSEQ_COUNTERS_H */
