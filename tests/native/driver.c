/* driver.c - runs the native core without Python, for the sanitizer builds.
 *
 * Usage: driver WORKLOAD PATH THREADS SECONDS [signals affinity churn membarrier timers]
 * Exits 0 when the per-CPU total equals the ops tally, 1 when it does not,
 * 2 on a harness error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prseq_core.h"

const char *prseq_build_version(void) { return "driver"; }
const char *prseq_source_hash(void) { return "driver"; }

static struct prseq_result res;

int main(int argc, char **argv)
{
    struct prseq_config cfg;
    const struct prseq_workload *w;

    if (argc < 5) {
        fprintf(stderr, "usage: %s WORKLOAD rseq|fallback THREADS SECONDS [hz...]\n", argv[0]);
        return 2;
    }
    w = prseq_builtin(argv[1]);
    if (!w) {
        fprintf(stderr, "unknown workload %s\n", argv[1]);
        return 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.path = strcmp(argv[2], "fallback") == 0 ? PRSEQ_PATH_FALLBACK : PRSEQ_PATH_RSEQ;
    cfg.threads = (uint32_t)atoi(argv[3]);
    cfg.duration_s = atof(argv[4]);
    cfg.join_timeout_s = 10;
    cfg.seed = 1;
    cfg.sample_every = 16;
    if (argc > 5)
        cfg.signals_hz = atof(argv[5]);
    if (argc > 6)
        cfg.affinity_hz = atof(argv[6]);
    if (argc > 7)
        cfg.churn_hz = atof(argv[7]);
    if (argc > 8)
        cfg.membarrier_hz = atof(argv[8]);
    if (argc > 9)
        cfg.timer_hz = atof(argv[9]);
    if (prseq_run(w, &cfg, &res) < 0) {
        fprintf(stderr, "run failed: %s\n", res.errmsg);
        return 2;
    }
    printf("%s path=%d ops=%llu expected=%llu observed=%llu aborts=%llu started=%llu\n",
           w->name, res.path, (unsigned long long)res.ops, (unsigned long long)res.expected,
           (unsigned long long)res.observed, (unsigned long long)res.aborts,
           (unsigned long long)res.threads_started);
    return res.observed == res.expected ? 0 : 1;
}
