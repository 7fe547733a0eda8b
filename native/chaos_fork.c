/* chaos_fork.c - fork churn: fork the process while the workers run, let
 * the child run a fork-safe workload's ops on its copy (or only touch its
 * inherited rseq area), and tell a hung child from a slow one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "chaos.h"

/* Ops each fork child does on its copy of the workload state. */
#define FORK_OPS 256
/* A fork child still running this long is killed and not counted. */
#define FORK_TIMEOUT_NS 2000000000ull
/* A child left running at the end is hung only when it stays asleep in the
 * kernel, uses no CPU time and makes no progress over this many looks this
 * far apart; a child that is merely slow (runnable on a loaded machine, or
 * still doing ops) is cut short and not counted. */
#define STUCK_LOOKS 5
#define STUCK_GAP_NS 10000000ull

/* In the child of a fork taken while the workers ran: only this thread
 * exists, and any lock another thread held at the fork stays held. A
 * workload that declares itself fork-safe does FORK_OPS ops on its copy of
 * the state (exit 0 when the total grew by exactly that much); any other
 * workload's code is never called here: the child reads its inherited rseq
 * area (the kernel's fork path for a registered thread) and exits. */
static void fork_child(struct prseq_run *run, uint64_t *progress)
{
    const struct prseq_workload *w = run->w;
    struct prseq_thread t = {.index = 0, .aborts = 0, .local = NULL};
    int use_rseq = run->res->path == PRSEQ_PATH_RSEQ;
    int (*op)(void *, struct prseq_thread *) = use_rseq ? w->op : w->fallback_op;
    uint64_t before, after, done = 0;
    int owner;

    if (!(prseq_workload_flags(w) & PRSEQ_WORKLOAD_FORK_SAFE)) {
        struct prseq_rseq_area *area = prseq_current_area(&owner);
        /* Registered areas are inherited: cpu_id must be a CPU id here. */
        if (area && (int32_t)__atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED) < 0)
            _exit(5);
        _exit(0);
    }
    if (w->thread_init && w->thread_init(run->state, &t) != 0)
        _exit(3);
    __atomic_store_n(progress, 1, __ATOMIC_RELAXED);
    before = w->total(run->state);
    while (done < FORK_OPS) {
        int rc = op(run->state, &t);
        if (rc < 0)
            _exit(4);
        done += rc == 0;
        /* Every call, done or retried: the parent tells stuck from slow by it. */
        __atomic_fetch_add(progress, 1, __ATOMIC_RELAXED);
    }
    after = w->total(run->state);
    __atomic_fetch_add(progress, 1, __ATOMIC_RELAXED);
    if (w->thread_exit)
        w->thread_exit(run->state, &t);
    if (w->expected)
        _exit(0); /* the workload's own accounting: only crashes count here */
    _exit(after - before == FORK_OPS ? 0 : 1);
}

static int fork_stopping(struct chaos *c)
{
    return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&c->run->stop, __ATOMIC_ACQUIRE);
}

/* The child's state letter and CPU time (clock ticks) from /proc/<pid>/stat. */
static int child_stat(pid_t pid, char *state, unsigned long long *cpu)
{
    char path[64], buf[1024];
    unsigned long long utime, stime;
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", state,
                     &utime, &stime) != 3)
        return -1;
    *cpu = utime + stime;
    return 0;
}

static int asleep(char state)
{
    return state == 'S' || state == 'D';
}

/* A child is stuck when, over STUCK_LOOKS looks STUCK_GAP_NS apart, it stays
 * asleep in the kernel (a lock another thread held at the fork), uses no CPU
 * time and its progress counter does not move. A child that is runnable but
 * not scheduled, or still doing ops, is slow, not stuck. */
static int fork_child_stuck(pid_t pid, const uint64_t *progress)
{
    struct timespec gap = {.tv_sec = 0, .tv_nsec = (long)STUCK_GAP_NS};
    uint64_t seen = __atomic_load_n(progress, __ATOMIC_RELAXED);
    unsigned long long cpu0, cpu;
    char state;

    if (child_stat(pid, &state, &cpu0) != 0 || !asleep(state))
        return 0;
    for (int i = 0; i < STUCK_LOOKS; i++) {
        nanosleep(&gap, NULL);
        if (child_stat(pid, &state, &cpu) != 0 || !asleep(state) || cpu != cpu0 ||
            __atomic_load_n(progress, __ATOMIC_RELAXED) != seen)
            return 0;
    }
    return 1;
}

/* Kill and reap a child that did not finish. One stuck in the workload's
 * callbacks (only a fork-safe workload's code runs there) fails the run with
 * the workload named, not as lost counts; one that was only slow when the
 * run ended is not counted at all. */
static void fork_kill(struct chaos *c, pid_t pid, const uint64_t *progress, uint64_t ran_ns)
{
    int fork_safe = prseq_workload_flags(c->run->w) & PRSEQ_WORKLOAD_FORK_SAFE;
    int stuck = fork_safe && fork_child_stuck(pid, progress);
    int status;

    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!stuck)
        return;
    prseq_run_fail(c->run, ETIMEDOUT,
                   "%s: a forked child hung (asleep, no CPU time and no progress after %llu of its "
                   "ops, %.2f s after the fork) in the workload's callbacks and was killed; the "
                   "workload declares itself fork-safe (PRSEQ_WORKLOAD_FORK_SAFE) but is not (a "
                   "lock held by another thread at the fork?)",
                   c->run->w->name,
                   (unsigned long long)__atomic_load_n(progress, __ATOMIC_RELAXED),
                   (double)ran_ns / 1e9);
}

void chaos_fork_fire(struct chaos *c, uint64_t *rng)
{
    uint64_t start, deadline, *progress;
    int status = 0;
    pid_t pid, got;

    (void)rng;
    /* Shared with the child: its op count, read to tell stuck from slow. */
    progress = mmap(NULL, sizeof(*progress), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    if (progress == MAP_FAILED) {
        __atomic_fetch_add(&c->fork_errors, 1, __ATOMIC_RELAXED);
        return;
    }
    pid = fork();
    if (pid < 0) {
        munmap(progress, sizeof(*progress));
        __atomic_fetch_add(&c->fork_errors, 1, __ATOMIC_RELAXED);
        return;
    }
    if (pid == 0)
        fork_child(c->run, progress);
    start = prseq_now_ns();
    deadline = start + FORK_TIMEOUT_NS;
    /* The wait honours the run's stop: a hung child never holds the run
     * past its deadline. */
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && prseq_now_ns() < deadline &&
           !fork_stopping(c)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
        nanosleep(&ts, NULL);
    }
    if (got == 0)
        fork_kill(c, pid, progress, prseq_now_ns() - start);
    munmap(progress, sizeof(*progress));
    if (got == 0)
        return;
    if (got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        __atomic_fetch_add(&c->forks, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&c->fork_errors, 1, __ATOMIC_RELAXED);
    if (got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 1)
        prseq_run_fail(c->run, EPROTO, "a forked child lost counts on its copy of the state");
    else if (got == pid && WIFSIGNALED(status))
        prseq_run_fail(c->run, EPROTO, "a forked child died with signal %d", WTERMSIG(status));
}
