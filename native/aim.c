/* aim.c - hardware breakpoints on a mutant's bug window, and the
 * perturbation a SIGTRAP there brings (see aim.h for the why).
 *
 * Why the handler may make syscalls: the kernel runs its rseq fixup before
 * it sets up any signal frame. A SIGTRAP whose IP lies inside the current
 * section moves the IP to abort_ip; one outside it clears rseq_cs. Either
 * way the handler runs outside every critical section, and it checks that
 * (rseq_cs must read 0) before it perturbs anything. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "aim.h"
#include "util.h"

/* Breakpoints per thread: x86_64 has 4 debug address registers. */
#define AIM_MAX 4
/* A thread's breakpoints stay disarmed this long after a hit: one hit costs
 * tens of microseconds (debug registers, a signal, the move itself). */
#define AIM_GAP_NS 1000000ull
/* After moving or yielding, the thread sleeps this long before it goes on
 * from the window: the workers left on its old CPU run meanwhile. */
#define AIM_PAUSE_NS 50000L
/* sig_data of our events is this plus the breakpoint's index: a SIGTRAP
 * without it is not ours. */
#define AIM_COOKIE 0x7072736571616d00ull
#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif
#ifndef PERF_FLAG_FD_CLOEXEC
#define PERF_FLAG_FD_CLOEXEC (1UL << 3)
#endif
#if defined(__aarch64__)
#define AIM_BP_LEN 4
#else
#define AIM_BP_LEN sizeof(long)
#endif
/* PERF_ATTR_SIZE_VER7 (Linux 5.13) brought sigtrap and sig_data. */
#ifdef PERF_ATTR_SIZE_VER7
#define AIM_HAVE_SIGTRAP 1
#else
#define AIM_HAVE_SIGTRAP 0
#endif

struct aim {
    struct prseq_run *run;
    uint64_t addrs[AIM_MAX];  /* absolute addresses in this process */
    uint32_t nr;
    int move;                 /* the chaos migrates threads: move to another CPU */
    int yield;                /* threads share CPUs: yield the CPU */
    int installed;
    struct sigaction old;
    int err;                  /* first errno that left a thread (or the run) unaimed */
    uint64_t hits, moves, yields, in_section, threads;
};

/* This thread's breakpoints; the handler reads it, nothing else does. */
struct aim_thread {
    struct aim *aim;          /* set last, cleared first: the handler's guard */
    struct prseq_slot *slot;
    struct prseq_rseq_area *area;
    int fds[AIM_MAX];
    uint32_t nr_fds;
    uint32_t armed;           /* bit i: fds[i] is enabled */
    uint64_t hit_ns;
    cpu_set_t *mine, *one;    /* allocated at enter: no malloc in the handler */
    size_t mask_size;
};

static __thread struct aim_thread me;
__thread int prseq_aim_disarmed;

static void count(uint64_t *p)
{
    __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
}

static void note_error(struct aim *a, int err)
{
    int none = 0;
    __atomic_compare_exchange_n(&a->err, &none, err, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* The perf fields of a SIGTRAP's siginfo (si_perf_data follows si_addr;
 * glibc 2.36 does not name them). */
static uint64_t perf_data(const siginfo_t *si)
{
    uint64_t v;
    memcpy(&v, (const char *)si + offsetof(siginfo_t, si_addr) + sizeof(void *), sizeof(v));
    return v;
}

/* The SIGTRAP disposition before the run's, for a trap that is not ours. */
static struct sigaction trap_before;

/* Move this thread to the next CPU of its mask, then give the mask back
 * (the thread stays where it went). 1 when it moved. */
static int move_away(struct aim_thread *t, struct prseq_run *run)
{
    unsigned int cpu = 0, node = 0;
    size_t size = t->mask_size;
    int moved = 0;

    if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0 ||
        sched_getaffinity(0, size, t->mine) != 0)
        return 0;
    for (uint32_t k = 1; k < run->nr_cpus; k++) {
        uint32_t target = (cpu + k) % run->nr_cpus;
        if (!CPU_ISSET_S(target, size, t->mine))
            continue;
        CPU_ZERO_S(size, t->one);
        CPU_SET_S(target, size, t->one);
        prseq_mask_change_begin(run);
        moved = sched_setaffinity(0, size, t->one) == 0;
        if (moved)
            sched_setaffinity(0, size, t->mine);
        prseq_mask_change_end(run);
        break;
    }
    return moved;
}

/* Off the CPU for a moment (nanosleep is async-signal-safe): a worker
 * that shares the CPU runs in the window, whatever the scheduler's order. */
static void pause_here(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = AIM_PAUSE_NS};
    nanosleep(&ts, NULL);
}

static void on_trap(int sig, siginfo_t *si, void *uctx)
{
    struct aim_thread *t;
    struct aim *a;
    uint64_t index;
    int saved = errno;

    (void)sig;
    (void)uctx;
    if (si->si_code != TRAP_PERF || (index = perf_data(si) - AIM_COOKIE) >= AIM_MAX) {
        /* Not a breakpoint of ours (an int3, a debugger, raise()): what it
         * would have done without us, the process's end by default. Decided
         * before touching this thread's TLS, which a thread that never ran
         * a worker has not allocated. */
        sigaction(SIGTRAP, &trap_before, NULL);
        raise(SIGTRAP);
        return;
    }
    t = &me;
    a = __atomic_load_n(&t->aim, __ATOMIC_RELAXED);
    if (!a || index >= t->nr_fds)
        return;
    /* Only this breakpoint: a later one of the same op (late-start's commit
     * after its CPU check) still fires, once the first left the op stale. */
    ioctl(t->fds[index], PERF_EVENT_IOC_DISABLE, 0);
    t->armed &= ~(1u << index);
    prseq_aim_disarmed = t->armed == 0;
    t->hit_ns = prseq_now_ns();
    count(&a->hits);
    /* A signal: the abort it may have caused is a signal abort. */
    count(&t->slot->signals_handled);
    if (__atomic_load_n(&t->area->rseq_cs, __ATOMIC_RELAXED) != 0) {
        count(&a->in_section); /* never perturb inside a section */
    } else if (a->move && move_away(t, a->run)) {
        count(&a->moves);
        pause_here();
    } else if (a->yield) {
        pause_here();
        count(&a->yields);
    }
    errno = saved;
}

static int open_breakpoint(uint64_t addr, uint32_t index)
{
#if AIM_HAVE_SIGTRAP
    struct perf_event_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.bp_type = HW_BREAKPOINT_X;
    attr.bp_addr = addr;
    attr.bp_len = AIM_BP_LEN;
    attr.sample_period = 1;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.sigtrap = 1;
    attr.remove_on_exec = 1;
    attr.sig_data = AIM_COOKIE + index;
    return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
#else
    (void)addr;
    (void)index;
    errno = ENOSYS;
    return -1;
#endif
}

/* The load bias of the library holding the workload's op function. */
static int library_base(const struct prseq_workload *w, uint64_t *base)
{
    Dl_info info;
    struct link_map *map = NULL;

    if (!dladdr1(*(void **)&w->op, &info, (void **)&map, RTLD_DL_LINKMAP) || !map)
        return -ENOENT;
    *base = (uint64_t)map->l_addr;
    return 0;
}

void prseq_aim_setup(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;
    struct sigaction sa;
    struct aim *a;
    uint64_t base = 0;
    int rc;

    if (!cfg->nr_aim || !cfg->aim_addrs || run->res->path != PRSEQ_PATH_RSEQ)
        return;
    a = calloc(1, sizeof(*a));
    if (!a) {
        run->res->aim_errno = ENOMEM;
        return;
    }
    a->run = run;
    run->aim = a;
    if (cfg->nr_aim > AIM_MAX) {
        a->err = E2BIG;
        return;
    }
    a->move = (cfg->affinity_hz > 0 || cfg->cpuset_hz > 0 || cfg->hotplug_hz > 0) &&
              run->nr_cpus_allowed > 1;
    a->yield = cfg->threads > run->nr_cpus_allowed;
    /* One thread a CPU and no migrations: a signal alone at the window
     * cannot show a bug that needs a second party, and the run is the
     * test's own: nothing is armed. */
    if (!a->move && !a->yield)
        return;
    rc = library_base(run->w, &base);
    if (rc < 0) {
        a->err = -rc;
        return;
    }
    if (sigaction(SIGTRAP, NULL, &a->old) != 0 ||
        (a->old.sa_flags & SA_SIGINFO) || a->old.sa_handler != SIG_DFL) {
        a->err = EBUSY; /* someone else handles SIGTRAP here: leave it to them */
        return;
    }
    trap_before = a->old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTRAP, &sa, NULL) != 0) {
        a->err = errno;
        return;
    }
    a->installed = 1;
    for (uint32_t i = 0; i < cfg->nr_aim; i++)
        a->addrs[i] = base + cfg->aim_addrs[i];
    a->nr = cfg->nr_aim;
}

void prseq_aim_teardown(struct prseq_run *run)
{
    struct aim *a = run->aim;
    struct prseq_result *res = run->res;

    if (!a)
        return;
    if (a->installed)
        sigaction(SIGTRAP, &a->old, NULL);
    res->aim_errno = a->err;
    res->aim_threads = a->threads;
    res->aim_hits = a->hits;
    res->aim_moves = a->moves;
    res->aim_yields = a->yields;
    res->aim_in_section = a->in_section;
    free(a);
    run->aim = NULL;
}

static void drop_thread(struct aim_thread *t)
{
    for (uint32_t i = 0; i < t->nr_fds; i++)
        close(t->fds[i]);
    CPU_FREE(t->mine);
    CPU_FREE(t->one);
    memset(t, 0, sizeof(*t));
}

void prseq_aim_worker_enter(struct prseq_run *run, struct prseq_slot *s,
                            struct prseq_rseq_area *area)
{
    struct aim *a = run->aim;
    struct aim_thread *t = &me;

    if (!a || !a->nr || !area)
        return;
    memset(t, 0, sizeof(*t));
    t->slot = s;
    t->area = area;
    t->mine = prseq_mask_alloc(run->nr_cpus, &t->mask_size);
    t->one = prseq_mask_alloc(run->nr_cpus, &t->mask_size);
    if (!t->mine || !t->one) {
        note_error(a, ENOMEM);
        drop_thread(t);
        return;
    }
    for (uint32_t i = 0; i < a->nr; i++) {
        int fd = open_breakpoint(a->addrs[i], i);
        if (fd < 0) {
            note_error(a, errno);
            drop_thread(t);
            return;
        }
        t->fds[t->nr_fds++] = fd;
    }
    count(&a->threads);
    prseq_aim_disarmed = 1; /* armed at the first poll */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&t->aim, a, __ATOMIC_RELAXED);
}

void prseq_aim_rearm_slow(void)
{
    struct aim_thread *t = &me;

    if (!t->aim || (t->hit_ns && prseq_now_ns() - t->hit_ns < AIM_GAP_NS))
        return;
    prseq_aim_disarmed = 0;
    t->armed = (1u << t->nr_fds) - 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    for (uint32_t i = 0; i < t->nr_fds; i++)
        ioctl(t->fds[i], PERF_EVENT_IOC_ENABLE, 0);
}

void prseq_aim_worker_leave(void)
{
    struct aim_thread *t = &me;

    if (!t->aim)
        return;
    __atomic_store_n(&t->aim, NULL, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    prseq_aim_disarmed = 0;
    drop_thread(t);
}
