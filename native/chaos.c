/* chaos.c - native injectors that perturb the workers while they run.
 *
 * Every injector is one thread started by prseq_chaos_start() that fires
 * at its configured rate on a schedule drawn from cfg->seed, and counts
 * what it actually did (a signal queued, a mask changed, a fence issued).
 * This file holds the framework, the signal storm (tgkill + per-thread
 * POSIX timers), affinity churn and membarrier fences; chaos_sys.c holds
 * cgroup cpusets, CPU hotplug and fork churn. Everything changed is undone
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

/* A live worker TID picked by the schedule, or 0. With lock set, returns
 * with that slot's tid_lock held (release it with pick_release) so the TID
 * stays the worker's own until the caller is done with it. */
static pid_t pick_worker(struct chaos *c, uint64_t *rng, struct prseq_slot **slot, int lock)
{
    struct prseq_run *run = c->run;
    uint32_t first = (uint32_t)(prseq_rand(rng) % run->nr_slots);

    for (uint32_t k = 0; k < run->nr_slots; k++) {
        struct prseq_slot *s = &run->slots[(first + k) % run->nr_slots];
        pid_t tid;
        if (lock)
            pthread_mutex_lock(&s->tid_lock);
        tid = __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
        if (tid > 0) {
            *slot = s;
            return tid;
        }
        if (lock)
            pthread_mutex_unlock(&s->tid_lock);
    }
    return 0;
}

static void pick_release(struct prseq_slot *slot)
{
    pthread_mutex_unlock(&slot->tid_lock);
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
    pid_t tid = pick_worker(c, rng, &slot, 0);

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

/* ---- affinity churn --------------------------------------------------- */

/* The masks affinity churn moves workers between: each allowed CPU alone
 * (two workers on one CPU preempt each other; a move is a migration),
 * sparse pairs where there are gaps, and the whole allowed set. */
static cpu_set_t *affinity_add_mask(struct chaos *c)
{
    cpu_set_t *mask = prseq_mask_alloc(c->run->nr_cpus, &c->mask_size);

    if (mask)
        c->masks[c->nr_masks++] = mask;
    return mask;
}

static int affinity_setup(struct chaos *c)
{
    uint32_t nr = c->run->nr_cpus, n = 0;
    uint32_t *cpus = malloc(sizeof(*cpus) * nr);
    cpu_set_t *mask;
    int rc = 0;

    if (!cpus)
        return -ENOMEM;
    for (uint32_t i = 0; i < nr; i++)
        if (CPU_ISSET_S(i, c->mask_size, c->allowed))
            cpus[n++] = i;
    for (uint32_t i = 0; i < n && c->nr_masks < CHAOS_MAX_CHOICES - 2 && rc == 0; i++) {
        if ((mask = affinity_add_mask(c))) {
            CPU_SET_S(cpus[i], c->mask_size, mask);
            c->single_cpu[c->nr_single++] = cpus[i];
        } else
            rc = -ENOMEM;
    }
    if (n >= 3 && rc == 0) {
        if ((mask = affinity_add_mask(c)))
            for (uint32_t i = 0; i < n; i += 2)
                CPU_SET_S(cpus[i], c->mask_size, mask);
        else
            rc = -ENOMEM;
    }
    free(cpus);
    if (rc == 0 && n == 0)
        rc = -EINVAL;
    if (rc == 0)
        c->masks[c->nr_masks++] = c->allowed; /* owned by c->allowed: not freed twice */
    return rc;
}

/* The mask index of the next affinity event for a worker now on `cpu`:
 * three times in four a flip, the single CPU of a different allowed CPU, so
 * the event is a migration at whatever point the worker was (a random mask
 * often keeps it where it is); otherwise any of the masks. */
static int affinity_pick(struct chaos *c, uint64_t *rng, uint32_t cpu)
{
    uint64_t r = prseq_rand(rng);

    if ((r & 3) != 0 && c->nr_single >= 2) {
        int k = (int)((r >> 2) % (uint64_t)c->nr_single);
        if (c->single_cpu[k] == cpu)
            k = (k + 1 + (int)((r >> 32) % (uint64_t)(c->nr_single - 1))) % c->nr_single;
        return k;
    }
    return (int)((r >> 2) % (uint64_t)c->nr_masks);
}

/* The index of the single-CPU mask of `cpu`, or -1. */
static int single_mask(const struct chaos *c, uint32_t cpu)
{
    for (int k = 0; k < c->nr_single; k++)
        if (c->single_cpu[k] == cpu)
            return k;
    return -1;
}

/* A live worker other than `self` last seen on `cpu`, returned with its
 * tid_lock held, or NULL. Only this injector holds two slot locks at once;
 * a worker takes only its own. */
static struct prseq_slot *worker_on(struct chaos *c, const struct prseq_slot *self, uint32_t cpu)
{
    struct prseq_run *run = c->run;

    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        if (s == self || __atomic_load_n(&s->cpu, __ATOMIC_RELAXED) != cpu)
            continue;
        pthread_mutex_lock(&s->tid_lock);
        if (s->tid > 0 && __atomic_load_n(&s->cpu, __ATOMIC_RELAXED) == cpu)
            return s;
        pthread_mutex_unlock(&s->tid_lock);
    }
    return NULL;
}

/* sched_setaffinity reaches any process: the TID is used only while the
 * slot's tid_lock is held, and the worker clears it under that lock.
 * A flip of a worker from CPU X to CPU Y is a swap when a worker runs on Y:
 * that one goes to X at the same event, so every CPU keeps a writer (a
 * move that empties X leaves a stale write to X's data nobody to meet). */
static void affinity_fire(struct chaos *c, uint64_t *rng)
{
    struct prseq_slot *slot, *partner = NULL;
    pid_t tid = pick_worker(c, rng, &slot, 1);
    uint32_t cpu;
    int k, back = -1, rc;

    if (tid <= 0)
        return;
    cpu = __atomic_load_n(&slot->cpu, __ATOMIC_RELAXED);
    k = affinity_pick(c, rng, cpu);
    if (k < c->nr_single && (back = single_mask(c, cpu)) >= 0)
        partner = worker_on(c, slot, c->single_cpu[k]);
    prseq_mask_change_begin(c->run);
    rc = sched_setaffinity(tid, c->mask_size, c->masks[k]);
    if (partner && rc == 0 &&
        sched_setaffinity(partner->tid, c->mask_size, c->masks[back]) == 0) {
        __atomic_fetch_add(&c->affinity_changes, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->affinity_swaps, 1, __ATOMIC_RELAXED);
    }
    prseq_mask_change_end(c->run);
    if (partner)
        pick_release(partner);
    pick_release(slot);
    if (rc == 0)
        __atomic_fetch_add(&c->affinity_changes, 1, __ATOMIC_RELAXED);
}

/* Give every live worker the mask it started with. */
static void affinity_restore(struct chaos *c)
{
    struct prseq_run *run = c->run;

    prseq_mask_change_begin(run);
    for (uint32_t i = 0; i < run->nr_slots; i++) {
        struct prseq_slot *s = &run->slots[i];
        pthread_mutex_lock(&s->tid_lock);
        if (s->tid > 0)
            sched_setaffinity(s->tid, c->mask_size, c->allowed);
        pthread_mutex_unlock(&s->tid_lock);
    }
    prseq_mask_change_end(run);
}

static void affinity_free(struct chaos *c)
{
    for (int i = 0; i < c->nr_masks; i++)
        if (c->masks[i] != c->allowed)
            CPU_FREE(c->masks[i]);
    if (c->allowed)
        CPU_FREE(c->allowed);
    c->nr_masks = 0;
    c->allowed = NULL;
}

/* ---- membarrier ------------------------------------------------------- */

static int membarrier_setup(void)
{
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
        return -errno;
    return 0;
}

/* fence_gen is odd while a fence is in flight, so a worker can tell which
 * fences overlapped its op (evidence.c). */
static void membarrier_fire(struct chaos *c, uint64_t *rng)
{
    long rc;

    (void)rng;
    __atomic_fetch_add(&c->run->fence_gen, 1, __ATOMIC_SEQ_CST);
    rc = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    __atomic_fetch_add(&c->run->fence_gen, 1, __ATOMIC_SEQ_CST);
    if (rc == 0)
        __atomic_fetch_add(&c->membarriers, 1, __ATOMIC_RELAXED);
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
    if (cfg->affinity_hz > 0 && (rc = affinity_setup(c)) < 0)
        return fail(run, -rc, "affinity churn setup");
    if (cfg->membarrier_hz > 0 && (rc = membarrier_setup()) < 0)
        return fail(run, -rc, "membarrier(REGISTER_PRIVATE_EXPEDITED_RSEQ)");
    if (cfg->cpuset_hz > 0 && (rc = chaos_cpuset_setup(c)) < 0)
        return fail(run, -rc, "cpuset injector setup");
    if (cfg->hotplug_hz > 0 && (rc = chaos_hotplug_setup(c)) < 0)
        return fail(run, -rc, "hotplug injector setup");

    chaos_add(c, "signals", cfg->signals_hz, signals_fire);
    chaos_add(c, "affinity", cfg->affinity_hz, affinity_fire);
    chaos_add(c, "cpuset", cfg->cpuset_hz, chaos_cpuset_fire);
    chaos_add(c, "fork", cfg->fork_hz, chaos_fork_fire);
    chaos_add(c, "membarrier", cfg->membarrier_hz, membarrier_fire);
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
        affinity_restore(c);
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
    affinity_free(c);
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
