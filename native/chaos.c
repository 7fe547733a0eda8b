/* chaos.c - native injectors that perturb the workers while they run.
 *
 * Foundation stage: no injector is built yet, so a run that asks for one
 * fails loudly instead of passing without the perturbation. */
#define _GNU_SOURCE
#include <errno.h>

#include "harness.h"

int prseq_chaos_start(struct prseq_run *run)
{
    const struct prseq_config *c = run->cfg;

    if (c->signals_hz > 0 || c->timer_hz > 0 || c->affinity_hz > 0 || c->cpuset_hz > 0 ||
        c->fork_hz > 0 || c->membarrier_hz > 0 || c->hotplug_hz > 0) {
        prseq_run_fail(run, EOPNOTSUPP, "this build has no native injectors yet");
        return -EOPNOTSUPP;
    }
    return 0;
}

void prseq_chaos_stop(struct prseq_run *run)
{
    (void)run;
}

void prseq_chaos_finish(struct prseq_run *run)
{
    (void)run;
}

void prseq_chaos_worker_enter(struct prseq_run *run, struct prseq_slot *slot)
{
    (void)run;
    (void)slot;
}

void prseq_chaos_worker_leave(struct prseq_run *run, struct prseq_slot *slot)
{
    (void)run;
    (void)slot;
}
