/* evidence.h - abort attribution and the evidence a run needs before it may
 * end (evidence.c). The worker marks its counters before an op (or a fast
 * batch) and attributes the aborts that appeared during it afterwards. */
#ifndef PRSEQ_EVIDENCE_H
#define PRSEQ_EVIDENCE_H

#include <stdint.h>

#include "harness.h"

/* The slot's counters just before one op or batch. */
struct prseq_abort_mark {
    uint64_t aborts;   /* t.aborts */
    uint64_t signals;  /* storm signals this slot's thread handled */
    uint64_t fences;   /* run->fence_gen (odd while a fence is in flight) */
};

void prseq_attribute_aborts_slow(struct prseq_slot *s, const struct prseq_abort_mark *m);

static inline void prseq_abort_mark(const struct prseq_slot *s, struct prseq_abort_mark *m)
{
    m->aborts = s->t.aborts;
    m->signals = __atomic_load_n(&s->signals_handled, __ATOMIC_RELAXED);
    m->fences = __atomic_load_n(&s->run->fence_gen, __ATOMIC_ACQUIRE);
}

/* Attribute the aborts since `m` (nothing to do in the common case: none). */
static inline void attribute_aborts(struct prseq_slot *s, const struct prseq_abort_mark *m)
{
    if (s->t.aborts != m->aborts)
        prseq_attribute_aborts_slow(s, m);
}

/* A worker saw itself on `cpu` for the first time in this slot, or after a
 * migration (`migrated`). */
void prseq_note_cpu(struct prseq_run *run, struct prseq_slot *s, uint32_t cpu, int migrated);

/* Supervisor, at every wake-up: under cpuset chaos, note how many CPUs the
 * cpuset allows now (the supervisor is in the cgroup with the workers). */
void prseq_evidence_sample(struct prseq_run *run);

/* Supervisor, at each look (`planned`: when it meant to wake; the start first):
 * time since its last look in which no worker ended a batch, or by which it
 * woke late, is stall time (a stopped or starved process, workers held in the
 * kernel); prseq_stall_credit() is how far it moves the evidence cap. */
void prseq_note_progress(struct prseq_run *run, uint64_t now, uint64_t planned);
uint64_t prseq_stall_credit(const struct prseq_run *run);

/* PRSEQ_EVIDENCE_* bits of what the run has not shown yet (0: it may end). */
uint32_t prseq_evidence_missing(struct prseq_run *run);

/* Supervisor, from the start of the run while migrations are missing (or,
 * on the fallback path, workers were seen on one CPU only): ask every live
 * worker once, then one live worker per round, round robin, at most every
 * 2 ms (every look in a fallback half of path="both", which its op budgets
 * end), to move itself to another CPU of its mask. */
void prseq_request_migration(struct prseq_run *run, uint64_t now);

/* Supervisor, once per run at a seeded point before the deadline: ask one
 * live worker to move and swap CPUs with a worker on its target CPU. */
void prseq_request_swap(struct prseq_run *run, uint64_t pick);

/* Worker, between batches (never inside a section): honour such a request.
 * `cpu` is the CPU it runs on now. */
void prseq_move_self(struct prseq_run *run, struct prseq_slot *s, uint32_t cpu);

/* A worker's watch on the CPU it left at its last migration (evidence.c). */
struct prseq_overlap_watch {
    uint32_t left; /* that CPU, or UINT32_MAX: nothing watched */
    uint64_t mark; /* the batches that CPU had ended when the move was seen */
};

/* Worker, at each batch boundary of one life: count the batch on `cpu`;
 * a move since `prev` (the CPU at the previous boundary of this life, or
 * UINT32_MAX) starts a watch on the CPU left, and a later batch on the same
 * CPU while the CPU left ended a batch of another worker is an overlapped
 * migration: the migrant and a worker on its old CPU ran at once, which is
 * what exposes a section that uses a CPU number read before it moved. */
void prseq_note_batch(struct prseq_run *run, struct prseq_slot *s, struct prseq_overlap_watch *w,
                      uint32_t prev, uint32_t cpu);

static inline void evidence_poll(struct prseq_run *run, struct prseq_slot *s, uint32_t cpu)
{
    if (__atomic_load_n(&s->move_request, __ATOMIC_RELAXED))
        prseq_move_self(run, s, cpu);
}

#endif /* PRSEQ_EVIDENCE_H */
