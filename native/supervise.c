/* supervise.c - the run while it runs: the injectors and the workers
 * started, workers that left joined (and, under churn, replaced), the
 * deadline and the evidence watched, then everything stopped and joined
 * against a deadline. Also the process-wide stop flag (Ctrl-C). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "evidence.h"
#include "harness.h"
#include "util.h"

/* The supervisor wakes at least this often to look for Ctrl-C. */
#define POLL_NS 20000000ull
/* Past the deadline it looks at the evidence this often. */
#define EXTEND_POLL_NS 2000000ull
/* How long stopped workers may take to exit when the config does not say. */
#define JOIN_TIMEOUT_S 5.0

static int stop_requested;

void prseq_request_stop(void)
{
    __atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
}

/* The flag is cleared only here, by the caller at the start of a whole
 * top-level run (both halves of path="both" included): a run never clears
 * it, so a stop asked for during one half also stops the next. */
void prseq_clear_stop(void)
{
    __atomic_store_n(&stop_requested, 0, __ATOMIC_RELEASE);
}

int prseq_stop_requested(void)
{
    return __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE);
}

/* Join and (churn) restart workers that left; returns 1 while any slot has
 * work left. */
static int reap_slots(struct prseq_run *run)
{
    int busy = 0;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        if (s->joinable && __atomic_load_n(&s->exited, __ATOMIC_ACQUIRE)) {
            pthread_join(s->thread, NULL);
            s->joinable = 0;
            if (!__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE) && prseq_slot_wants_more(s))
                prseq_start_slot(run, s);
        }
        busy |= s->joinable;
    }
    return busy;
}

/* Per-slot budgets (the fallback half of path="both") end the run, which is
 * never extended: its evidence is looked after from the start. */
static int evidence_watched(const struct prseq_run *run, uint64_t now, uint64_t deadline)
{
    return now >= deadline || run->cfg->slot_budgets;
}

/* The supervisor may end the run at `now`: from the deadline on once no
 * evidence is missing or an invariant broke (a verdict already), and at the
 * cap whatever is missing. Meanwhile, from the start, missing migrations are
 * asked for (and the supervisor looks often while they are). */
static int run_may_end(struct prseq_run *run, uint64_t now, uint64_t deadline, uint64_t cap)
{
    uint32_t missing;

    prseq_evidence_sample(run);
    if (now >= deadline &&
        (now >= cap || __atomic_load_n(&run->invariant_violations, __ATOMIC_RELAXED)))
        return 1;
    missing = prseq_evidence_missing(run);
    run->moves_wanted = (missing & (PRSEQ_EVIDENCE_MIGRATION | PRSEQ_EVIDENCE_CONCURRENCY)) != 0;
    if (run->moves_wanted)
        prseq_request_migration(run, now);
    return now >= deadline && missing == 0;
}

/* Where the run must end even without evidence (never before the deadline). */
static uint64_t evidence_cap_ns(const struct prseq_config *cfg, uint64_t start, uint64_t deadline)
{
    uint64_t cap;

    if (!(cfg->evidence_cap_s > cfg->duration_s))
        return deadline;
    cap = start + (uint64_t)(cfg->evidence_cap_s * 1e9);
    return cap > deadline ? cap : deadline;
}

static int join_all(struct prseq_run *run, double timeout_s)
{
    struct timespec now;
    int stuck = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t limit = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec +
                     (uint64_t)(timeout_s * 1e9);
    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        struct timespec abs = prseq_ns_to_timespec(limit);
        if (!s->joinable)
            continue;
        if (pthread_timedjoin_np(s->thread, NULL, &abs) != 0) {
            stuck++;
            continue;
        }
        s->joinable = 0;
    }
    return stuck;
}

/* Injectors first: a worker joins them (timer, cpuset) as it starts. */
static void start_all(struct prseq_run *run)
{
    int rc = prseq_chaos_start(run);

    if (rc < 0 && !run->error)
        prseq_run_fail(run, -rc, "starting the injectors failed: %s", strerror(-rc));
    for (uint32_t i = 0; i < run->nr_slots && !run->error; i++)
        if (prseq_slot_wants_more(&run->slots[i]))
            prseq_start_slot(run, &run->slots[i]);
}

/* One aimed swap per run, at a seeded point in [1/4, 3/4] of the duration
 * (not in a fallback half, whose op budgets end it): when it is due (0:
 * never), and in *pick the seeded choice of the slot it starts from. */
static uint64_t swap_schedule(const struct prseq_config *cfg, uint64_t start, uint64_t deadline,
                              uint64_t *pick)
{
    uint64_t x = cfg->seed ^ 0x2545f4914f6cdd1dull;
    uint64_t r = prseq_rand(&x);

    *pick = r >> 32;
    if (cfg->slot_budgets)
        return 0;
    return start + (deadline - start) / 4 +
           (uint64_t)((double)(deadline - start) / 2 * ((double)(r & 0xffffffffu) / 4294967296.0));
}

/* Sleep on worker exits, waking to reap, look at the evidence and the stop
 * flags, and to ask for the aimed swap when it is due, until the run may end.
 * Stall time (no batch ended) moves an evidence cap, within its allowance. */
static void watch(struct prseq_run *run, uint64_t start, uint64_t deadline, uint64_t cap0,
                  uint64_t swap_at, uint64_t swap_pick)
{
    /* The first look judges the time since the start (the workers' start up,
     * or a stop that came before it). */
    uint64_t wake = start;

    run->progress_look_ns = start;

    for (;;) {
        uint64_t now = prseq_now_ns();
        uint64_t until, poll, cap;
        struct timespec abs;

        prseq_note_progress(run, now, wake);
        cap = cap0 > deadline ? cap0 + prseq_stall_credit(run) : cap0;

        if (swap_at && now >= swap_at) {
            prseq_request_swap(run, swap_pick);
            swap_at = 0;
        }
        if (!reap_slots(run) || run_may_end(run, now, deadline, cap) ||
            __atomic_load_n(&run->stop, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE))
            return;
        until = now < deadline ? deadline : cap;
        poll = evidence_watched(run, now, deadline) || run->moves_wanted ? EXTEND_POLL_NS : POLL_NS;
        wake = now + poll < until ? now + poll : until;
        if (swap_at && swap_at < wake)
            wake = swap_at;
        abs = prseq_ns_to_timespec(wake);
        while (sem_clockwait(&run->exited, CLOCK_MONOTONIC, &abs) != 0 && errno == EINTR)
            ;
    }
}

int prseq_run_supervise(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;
    struct prseq_result *res = run->res;
    double join_s = cfg->join_timeout_s > 0 ? cfg->join_timeout_s : JOIN_TIMEOUT_S;
    uint64_t start = prseq_now_ns(), ended;
    uint64_t deadline = start + (uint64_t)(cfg->duration_s * 1e9);
    uint64_t swap_pick, swap_at = swap_schedule(cfg, start, deadline, &swap_pick);
    int stuck;

    start_all(run);
    watch(run, start, deadline, evidence_cap_ns(cfg, start, deadline), swap_at, swap_pick);
    __atomic_store_n(&run->stop, 1, __ATOMIC_RELEASE);
    prseq_chaos_stop(run);
    ended = prseq_now_ns();
    res->extended_s = ended > deadline ? (double)(ended - deadline) / 1e9 : 0.0;
    res->stalled_s = (double)run->stalled_ns / 1e9;
    stuck = join_all(run, join_s);
    res->duration_s = (double)(prseq_now_ns() - start) / 1e9;
    if (stuck) {
        res->error = ETIMEDOUT;
        snprintf(res->errmsg, sizeof(res->errmsg),
                 "%d worker thread(s) did not stop within %.1f s of the deadline", stuck,
                 join_s);
    }
    return stuck;
}
