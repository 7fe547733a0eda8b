/* aim.h - aimed perturbation for mutant runs (aim.c).
 *
 * A mutant's bug window is often one instruction (a commit store left
 * outside its section, a CPU check left before it): random signals,
 * preemption and migrations almost never land there. When a run is given
 * aim addresses (prseq_config.aim_addrs, addresses inside the workload's
 * library), every worker puts a hardware execute breakpoint on each of them
 * (perf_event_open, PERF_TYPE_BREAKPOINT with sigtrap: the kernel sends the
 * thread itself a synchronous SIGTRAP when it reaches the address). The
 * handler perturbs the thread there with the causes the run's chaos already
 * uses: it moves to another CPU when the chaos migrates threads, else it
 * pauses so a thread sharing its CPU runs; with one thread a CPU and no
 * migrations nothing is armed (a lone signal cannot race anything).
 * A breakpoint inside a correct section aborts it like any signal; one in a
 * mutant's unprotected window does not, and the perturbation lands on the bug.
 *
 * The handler disarms the breakpoint that fired (a later one of the same
 * op still fires: late-start aims at its CPU check, then at its commit,
 * which the first hit left unprotected); once all are disarmed, the worker
 * re-arms them between batches after AIM_GAP_NS, so hits stay rare enough
 * for the run's throughput. Nothing is armed on the fallback path or without aim
 * addresses. When perf breakpoints are refused (perf_event_paranoid 3, a
 * seccomp filter, an old kernel), the run goes on unaimed and the result
 * says so (aim_errno). */
#ifndef PRSEQ_AIM_H
#define PRSEQ_AIM_H

#include "harness.h"

/* setup.c, after the slots exist: resolve the addresses, install the
 * SIGTRAP handler. Never fails the run (a failure is kept in aim_errno). */
void prseq_aim_setup(struct prseq_run *run);

/* setup.c, teardown: restore SIGTRAP's disposition, fill res->aim_*. */
void prseq_aim_teardown(struct prseq_run *run);

/* worker.c: open this thread's breakpoints (after thread_init), re-arm them
 * between batches, close them before thread_exit. `area` is the thread's
 * rseq area (NULL on the fallback path: then nothing is armed). */
void prseq_aim_worker_enter(struct prseq_run *run, struct prseq_slot *s,
                            struct prseq_rseq_area *area);
void prseq_aim_rearm_slow(void);
void prseq_aim_worker_leave(void);

/* Set while this thread's breakpoints are open but disarmed by a hit. */
extern __thread int prseq_aim_disarmed;

static inline void prseq_aim_poll(void)
{
    if (prseq_aim_disarmed)
        prseq_aim_rearm_slow();
}

#endif /* PRSEQ_AIM_H */
