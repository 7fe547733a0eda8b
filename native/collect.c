/* collect.c - a finished run's numbers into struct prseq_result: the
 * evidence still missing, the injectors' counts, the slots' tallies, the
 * first invariant violation, and what the workload itself reports. */
#define _GNU_SOURCE
#include <string.h>

#include "evidence.h"
#include "harness.h"

/* The slots' tallies, summed, and each slot's ops. */
static void collect_slots(struct prseq_run *run)
{
    struct prseq_result *res = run->res;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        res->ops += s->ops;
        res->aborts += s->t.aborts;
        res->aborts_signal += s->aborts_signal;
        res->aborts_membarrier += s->aborts_membarrier;
        res->migrations += s->migrations;
        res->overlapped_migrations += s->overlapped_migrations;
        res->slot_ops[i] = s->ops;
    }
}

void prseq_run_collect(struct prseq_run *run)
{
    const struct prseq_workload *w = run->w;
    struct prseq_result *res = run->res;

    res->evidence_missing = prseq_evidence_missing(run);
    res->distinct_cpus = run->distinct_cpus;
    res->evidence_moves = run->moves;
    prseq_chaos_finish(run);
    collect_slots(run);
    res->threads_started = run->threads_started;
    res->invariant_samples = run->invariant_samples;
    res->invariant_violations = run->invariant_violations;
    memcpy(res->first_violation, run->first_violation, sizeof(res->first_violation));
    res->expected = w->expected ? w->expected(run->state, res->ops) : res->ops;
    res->observed = w->total(run->state);
    if (w->shards)
        res->nr_shards = w->shards(run->state, res->shards, PRSEQ_MAX_SHARDS);
    if (run->error && !res->error)
        res->error = run->error;
}
