/* harness.c - prseq_run(): one call is one run of one workload, in phases
 * (setup.c, supervise.c with the workers of worker.c, collect.c), over a
 * heap block that is leaked, never freed, when workers outlive the join. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* One run on `run` (zeroed, owned by prseq_run). Sets *stuck when workers
 * outlived the join deadline: the run must then never be freed. */
static int run_body(const struct prseq_workload *w, const struct prseq_config *cfg,
                    struct prseq_result *res, struct prseq_run *run, int *stuck)
{
    if (prseq_run_setup(run, w, cfg, res) < 0)
        return -res->error;
    if (prseq_run_supervise(run) > 0) {
        /* The state may still be in use: leak it rather than free it under
         * a running thread. The child process exits right after this. */
        *stuck = 1;
        return -ETIMEDOUT;
    }
    prseq_run_collect(run);
    prseq_run_teardown(run);
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
