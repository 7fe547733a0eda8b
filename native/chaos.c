/* chaos.c - native injectors that perturb the workers while they run.
 *
 * Every injector is one thread started by prseq_chaos_start() that fires
 * at its configured rate on a schedule drawn from cfg->seed, and counts
 * what it actually did (a signal queued, a mask changed, a fence issued).
 * This file holds the framework, the signal storm (tgkill + per-thread
 * POSIX timers) and the hooks the harness calls; chaos_cpu.c holds affinity
 * churn and membarrier fences, chaos_sys.c cgroup cpusets, CPU hotplug and
 * fork churn. Everything changed is undone
 * in prseq_chaos_stop()/prseq_chaos_finish().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "chaos.h"

/* Catch-up bursts after a stall are cut to this many events. */
#define MAX_BURST 256
/* An injector thread looks at the stop flag at least this often. */
#define MAX_SLEEP_NS 5000000ull
/* First real-time signal number tried for the storm (SIGRTMIN + this). */
#define SIG_OFFSET 4

static uint64_t signals_delivered;
/* The slot counter of the worker running on this thread (abort attribution). */
static __thread uint64_t *slot_signals;

static void on_storm_signal(int sig, siginfo_t *info, void *uctx)
{
    uint64_t *mine = slot_signals;

    (void)sig;
    (void)info;
    (void)uctx;
    __atomic_fetch_add(&signals_delivered, 1, __ATOMIC_RELAXED);
    if (mine)
        __atomic_fetch_add(mine, 1, __ATOMIC_RELAXED);
}

void prseq_chaos_worker_bind(struct prseq_slot *slot)
{
    slot_signals = &slot->signals_handled;
}

static int stopping(struct chaos *c)
{
    return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&c->run->stop, __ATOMIC_ACQUIRE);
}

static void sleep_until(uint64_t abs_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(abs_ns / 1000000000ull),
                          .tv_nsec = (long)(abs_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *injector_main(void *arg)
{
    struct injector *inj = arg;
    struct chaos *c = inj->c;
    uint64_t rng = c->run->cfg->seed ^ (0x5851f42d4c957f2dull * (uint64_t)(inj - c->inj + 1));
    uint64_t start = prseq_now_ns(), fired = 0;
    double period_ns = 1e9 / inj->hz;
    int registered = 0;

    /* Fork children run ops from this thread: give it the area the workers
     * get (none when the workload registers its own). */
    if (inj->fire == chaos_fork_fire && c->run->res->path == PRSEQ_PATH_RSEQ &&
        c->run->cfg->own_registration && !c->run->cfg->workload_registers)
        registered = prseq_own_register() == 0;
    while (!stopping(c)) {
        uint64_t now = prseq_now_ns();
        uint64_t due = (uint64_t)((double)(now - start) / period_ns) + 1;
        uint64_t next;

        if (due - fired > MAX_BURST)
            fired = due - MAX_BURST;
        while (fired < due && !stopping(c)) {
            inj->fire(c, &rng);
            fired++;
        }
        next = start + (uint64_t)((double)fired * period_ns);
        now = prseq_now_ns();
        if (next > now + MAX_SLEEP_NS)
            next = now + MAX_SLEEP_NS;
        if (next > now)
            sleep_until(next);
    }
    if (registered)
        prseq_own_unregister();
    return NULL;
}

int chaos_add(struct chaos *c, const char *name, double hz,
              void (*fire)(struct chaos *, uint64_t *))
{
    struct injector *inj;

    if (!(hz > 0))
        return 0;
    if (c->nr_inj == CHAOS_MAX_INJECTORS)
        return -E2BIG;
    inj = &c->inj[c->nr_inj++];
    inj->name = name;
    inj->hz = hz;
    inj->fire = fire;
    inj->c = c;
    return 0;
}

/* ---- signal storm ---------------------------------------------------- */

static int pick_signal(void)
{
    for (int sig = SIGRTMIN + SIG_OFFSET; sig <= SIGRTMAX; sig++) {
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
            !(old.sa_flags & SA_SIGINFO))
            return sig;
    }
    return -EBUSY;
}

static int signals_setup(struct chaos *c)
{
    struct sigaction sa;
    int sig = pick_signal();

    if (sig < 0)
        return sig;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_storm_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &c->old_action) != 0)
        return -errno;
    c->signo = sig;
    c->handler_installed = 1;
    return 0;
}

static void signals_fire(struct chaos *c, uint64_t *rng)
{
    struct prseq_slot *slot;
    /* tgkill reaches only this process: no lock, a recycled TID is at worst
     * another of our threads, which has the handler too. */
    pid_t tid = chaos_pick_worker(c, rng, &slot, 0);

    if (tid > 0 && syscall(SYS_tgkill, getpid(), tid, c->signo) == 0)
        __atomic_fetch_add(&c->signals_sent, 1, __ATOMIC_RELAXED);
}

/* Per-thread timer: each worker gets threads/timer_hz seconds between
 * expirations, so all together fire about timer_hz signals per second, but
 * never more often than every TIMER_MIN_PERIOD_NS: delivering one signal
 * costs a worker ~8 us here, and a timer that fires faster than that
 * re-queues its signal on every return to user space, so the thread never
 * runs again (not even to its stop check). */
#define TIMER_MIN_PERIOD_NS 20000ull

static void timer_enter(struct chaos *c, struct prseq_slot *slot)
{
    struct prseq_run *run = c->run;
    struct sigevent sev;
    struct itimerspec its;
    timer_t *timer;
    uint64_t period_ns;

    if (!(run->cfg->timer_hz > 0) || !c->handler_installed)
        return;
    timer = malloc(sizeof(*timer));
    if (!timer)
        return;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = c->signo;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, timer) != 0) {
        prseq_run_fail(run, errno, "timer_create(SIGEV_THREAD_ID) failed: %s", strerror(errno));
        free(timer);
        return;
    }
    period_ns = (uint64_t)((double)run->nr_slots / run->cfg->timer_hz * 1e9);
    if (period_ns < TIMER_MIN_PERIOD_NS)
        period_ns = TIMER_MIN_PERIOD_NS;
    its.it_interval.tv_sec = (time_t)(period_ns / 1000000000ull);
    its.it_interval.tv_nsec = (long)(period_ns % 1000000000ull);
    its.it_value = its.it_interval;
    /* Armed under the lock, and only while the run goes on, so that
     * timers_disarm() sees every armed timer. */
    pthread_mutex_lock(&c->timer_lock);
    slot->timer = timer;
    if (!stopping(c)) {
        slot->timer_born = prseq_now_ns();
        timer_settime(*timer, 0, &its, NULL);
    }
    pthread_mutex_unlock(&c->timer_lock);
}

/* Count the expirations of a slot's timer since it was armed (an estimate
 * from its period: standard timer signals coalesce, the handler counts what
 * arrived) and disarm it. Called with timer_lock held. */
static void timer_settle(struct chaos *c, struct prseq_slot *slot)
{
    struct itimerspec its;

    if (timer_gettime(*(timer_t *)slot->timer, &its) == 0) {
        uint64_t period = (uint64_t)its.it_interval.tv_sec * 1000000000ull +
                          (uint64_t)its.it_interval.tv_nsec;
        uint64_t fired = period ? (prseq_now_ns() - slot->timer_born) / period : 0;
        __atomic_fetch_add(&c->timer_signals, fired, __ATOMIC_RELAXED);
    }
    memset(&its, 0, sizeof(its));
    timer_settime(*(timer_t *)slot->timer, 0, &its, NULL);
}

/* Disarm every live timer: a storm faster than a worker can take signals
 * would otherwise keep it from ever reaching its stop check. */
static void timers_disarm(struct chaos *c)
{
    pthread_mutex_lock(&c->timer_lock);
    for (uint32_t i = 0; i < c->run->nr_slots; i++) {
        struct prseq_slot *slot = &c->run->slots[i];
        if (slot->timer && slot->timer_born) {
            timer_settle(c, slot);
            slot->timer_born = 0; /* counted */
        }
    }
    pthread_mutex_unlock(&c->timer_lock);
}

static void timer_leave(struct chaos *c, struct prseq_slot *slot)
{
    timer_t *timer;

    pthread_mutex_lock(&c->timer_lock);
    timer = slot->timer;
    if (timer && slot->timer_born)
        timer_settle(c, slot);
    slot->timer = NULL;
    pthread_mutex_unlock(&c->timer_lock);
    if (!timer)
        return;
    timer_delete(*timer);
    free(timer);
}

/* ---- the hooks the harness calls -------------------------------------- */

static int fail(struct prseq_run *run, int err, const char *what)
{
    prseq_run_fail(run, err, "%s: %s", what, strerror(err));
    return -err;
}

int prseq_chaos_start(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;
    struct chaos *c;
    sigset_t blocked, old;
    int rc;

    c = calloc(1, sizeof(*c));
    if (!c)
        return fail(run, ENOMEM, "chaos state");
    c->run = run;
    pthread_mutex_init(&c->timer_lock, NULL);
    c->cpus_fd = -1;
    c->offline_cpu = -1;
    run->chaos = c;
    __atomic_store_n(&signals_delivered, 0, __ATOMIC_RELAXED);
    c->allowed = prseq_mask_alloc(run->nr_cpus, &c->mask_size);
    if (!c->allowed)
        return fail(run, ENOMEM, "chaos CPU mask");
    if (sched_getaffinity(0, c->mask_size, c->allowed) != 0)
        return fail(run, errno, "sched_getaffinity");

    if (cfg->signals_hz > 0 || cfg->timer_hz > 0) {
        rc = signals_setup(c);
        if (rc < 0)
            return fail(run, -rc, "installing the signal-storm handler");
    }
    if (cfg->affinity_hz > 0 && (rc = chaos_affinity_setup(c)) < 0)
        return fail(run, -rc, "affinity churn setup");
    if (cfg->membarrier_hz > 0 && (rc = chaos_membarrier_setup()) < 0)
        return fail(run, -rc, "membarrier(REGISTER_PRIVATE_EXPEDITED_RSEQ)");
    if (cfg->cpuset_hz > 0 && (rc = chaos_cpuset_setup(c)) < 0)
        return fail(run, -rc, "cpuset injector setup");
    if (cfg->hotplug_hz > 0 && (rc = chaos_hotplug_setup(c)) < 0)
        return fail(run, -rc, "hotplug injector setup");

    chaos_add(c, "signals", cfg->signals_hz, signals_fire);
    chaos_add(c, "affinity", cfg->affinity_hz, chaos_affinity_fire);
    chaos_add(c, "cpuset", cfg->cpuset_hz, chaos_cpuset_fire);
    chaos_add(c, "fork", cfg->fork_hz, chaos_fork_fire);
    chaos_add(c, "membarrier", cfg->membarrier_hz, chaos_membarrier_fire);
    chaos_add(c, "hotplug", cfg->hotplug_hz, chaos_hotplug_fire);

    /* Injector threads never take the storm's signal. */
    sigemptyset(&blocked);
    if (c->handler_installed)
        sigaddset(&blocked, c->signo);
    pthread_sigmask(SIG_BLOCK, &blocked, &old);
    for (int i = 0; i < c->nr_inj; i++) {
        rc = pthread_create(&c->inj[i].thread, NULL, injector_main, &c->inj[i]);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return fail(run, rc, "starting an injector thread");
        }
        c->inj[i].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void prseq_chaos_stop(struct prseq_run *run)
{
    struct chaos *c = run->chaos;

    if (!c)
        return;
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    timers_disarm(c);
    for (int i = 0; i < c->nr_inj; i++)
        if (c->inj[i].started) {
            pthread_join(c->inj[i].thread, NULL);
            c->inj[i].started = 0;
        }
    chaos_hotplug_teardown(c);
    chaos_cpuset_restore(c);
    if (run->cfg->affinity_hz > 0)
        chaos_affinity_restore(c);
}

void prseq_chaos_finish(struct prseq_run *run)
{
    struct chaos *c = run->chaos;
    struct prseq_result *res = run->res;

    if (!c)
        return;
    prseq_chaos_stop(run);
    chaos_cpuset_teardown(c);
    if (c->handler_installed) {
        /* Workers are joined: their timers are deleted and pending signals
         * went with them, so nothing can reach the default action. */
        sigaction(c->signo, &c->old_action, NULL);
        c->handler_installed = 0;
    }
    res->signals_sent = c->signals_sent + c->timer_signals;
    res->timer_signals = c->timer_signals;
    res->signals_delivered = __atomic_load_n(&signals_delivered, __ATOMIC_RELAXED);
    res->affinity_changes = c->affinity_changes;
    res->affinity_swaps = c->affinity_swaps;
    res->cpuset_shifts = c->cpuset_shifts;
    res->cpuset_errors = c->cpuset_errors;
    res->cpuset_errno = c->cpuset_errno;
    if (c->last_choice >= 0 && c->last_choice < c->nr_choices)
        snprintf(res->cpuset_last, sizeof(res->cpuset_last), "%s", c->choices[c->last_choice]);
    res->forks = c->forks;
    res->fork_errors = c->fork_errors;
    res->membarriers = c->membarriers;
    res->hotplug_events = c->hotplug_events;
    free(c->choices_buf);
    chaos_affinity_free(c);
    pthread_mutex_destroy(&c->timer_lock);
    free(c);
    run->chaos = NULL;
}

void prseq_chaos_worker_enter(struct prseq_run *run, struct prseq_slot *slot)
{
    struct chaos *c = run->chaos;

    if (!c) /* workers started before the injectors: nothing to join yet */
        return;
    if (run->cfg->cpuset_tasks && run->cfg->cpuset_tasks[0])
        chaos_cpuset_enter(c, slot);
    timer_enter(c, slot);
}

void prseq_chaos_worker_leave(struct prseq_run *run, struct prseq_slot *slot)
{
    struct chaos *c = run->chaos;

    if (c)
        timer_leave(c, slot);
}
