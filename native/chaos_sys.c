/* chaos_sys.c - injectors that change the machine around the workers:
 * cgroup cpuset shifts, CPU hotplug, and fork churn.
 *
 * The cgroups themselves are created and removed by the Python parent
 * (pytest_rseq/cpuset.py), named with its pid, so they go away even when
 * this process is killed; here we only rewrite the group's cpuset.cpus and
 * move worker TIDs into it. Hotplug state is recorded by the parent
 * (pytest_rseq/hotplug.py) before the run and restored after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "chaos.h"

/* Ops each fork child does on its copy of the workload state. */
#define FORK_OPS 256
/* A fork child still running this long is hung (killed, reported as the
 * workload's); a child cut short by the end of the run before that is only
 * not counted. */
#define FORK_TIMEOUT_NS 2000000000ull
#define FORK_HUNG_NS 250000000ull

static int write_text(int fd, const char *text)
{
    size_t len = strlen(text);
    ssize_t n = pwrite(fd, text, len, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -errno;
    rc = write_text(fd, text);
    close(fd);
    return rc;
}

/* ---- cpuset shifts ------------------------------------------------------ */

int chaos_cpuset_setup(struct chaos *c)
{
    const struct prseq_config *cfg = c->run->cfg;
    char path[4096];
    char *save = NULL, *tok;

    if (!cfg->cpuset_dir || !cfg->cpuset_dir[0] || !cfg->cpuset_choices)
        return -EINVAL;
    c->choices_buf = strdup(cfg->cpuset_choices);
    if (!c->choices_buf)
        return -ENOMEM;
    for (tok = strtok_r(c->choices_buf, ";", &save); tok && c->nr_choices < CHAOS_MAX_CHOICES;
         tok = strtok_r(NULL, ";", &save))
        if (*tok)
            c->choices[c->nr_choices++] = tok;
    if (c->nr_choices < 2)
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/cpuset.cpus", cfg->cpuset_dir);
    c->cpus_fd = open(path, O_WRONLY | O_CLOEXEC);
    if (c->cpus_fd < 0)
        return -errno;
    c->last_choice = -1;
    return 0;
}

void chaos_cpuset_fire(struct chaos *c, uint64_t *rng)
{
    int pick = (int)(prseq_rand(rng) % (uint64_t)c->nr_choices);
    int rc;

    if (pick == c->last_choice)
        pick = (pick + 1) % c->nr_choices;
    prseq_mask_change_begin(c->run);
    rc = write_text(c->cpus_fd, c->choices[pick]);
    prseq_mask_change_end(c->run);
    if (rc == 0) {
        c->last_choice = pick;
        __atomic_fetch_add(&c->cpuset_shifts, 1, __ATOMIC_RELAXED);
    } else {
        /* Counted and reported; the next event picks again, so one list
         * the kernel refuses cannot starve the others. */
        c->cpuset_errors++;
        c->cpuset_errno = -rc;
    }
}

/* Called by each worker thread: move itself into the group. */
int chaos_cpuset_enter(struct chaos *c, struct prseq_slot *slot)
{
    char tid[32];
    int rc;

    snprintf(tid, sizeof(tid), "%d\n", (int)gettid());
    prseq_mask_change_begin(c->run);
    rc = write_file(c->run->cfg->cpuset_tasks, tid);
    prseq_mask_change_end(c->run);
    if (rc < 0)
        prseq_run_fail(c->run, -rc, "slot %u: moving the worker into %s failed: %s",
                       slot->t.index, c->run->cfg->cpuset_tasks, strerror(-rc));
    return rc;
}

void chaos_cpuset_teardown(struct chaos *c)
{
    if (c->cpus_fd >= 0)
        close(c->cpus_fd);
    c->cpus_fd = -1;
}

/* ---- CPU hotplug -------------------------------------------------------- */

static int set_online(struct chaos *c, int cpu, int online)
{
    const char *root = c->run->cfg->hotplug_root;
    char path[4096];

    if (!root || !root[0])
        root = "/sys/devices/system/cpu";
    snprintf(path, sizeof(path), "%s/cpu%d/online", root, cpu);
    return write_file(path, online ? "1" : "0");
}

int chaos_hotplug_setup(struct chaos *c)
{
    const char *p = c->run->cfg->hotplug_cpus;

    while (p && *p && c->nr_hotplug < CHAOS_MAX_HOTPLUG) {
        char *end;
        long cpu = strtol(p, &end, 10);
        if (end == p)
            return -EINVAL;
        if (cpu <= 0) /* CPU 0 is never taken offline */
            return -EINVAL;
        c->hotplug_cpus[c->nr_hotplug++] = (int)cpu;
        p = *end == ',' ? end + 1 : end;
    }
    return c->nr_hotplug ? 0 : -EINVAL;
}

/* Events alternate: take one CPU offline, bring it back. */
void chaos_hotplug_fire(struct chaos *c, uint64_t *rng)
{
    int cpu, rc;

    prseq_mask_change_begin(c->run);
    if (c->offline_cpu >= 0) {
        rc = set_online(c, c->offline_cpu, 1);
        if (rc == 0)
            c->offline_cpu = -1;
    } else {
        cpu = c->hotplug_cpus[prseq_rand(rng) % (uint64_t)c->nr_hotplug];
        rc = set_online(c, cpu, 0);
        if (rc == 0)
            c->offline_cpu = cpu;
    }
    prseq_mask_change_end(c->run);
    if (rc == 0)
        __atomic_fetch_add(&c->hotplug_events, 1, __ATOMIC_RELAXED);
}

void chaos_hotplug_teardown(struct chaos *c)
{
    if (c->offline_cpu >= 0 && set_online(c, c->offline_cpu, 1) == 0) {
        c->offline_cpu = -1;
        c->hotplug_events++;
    }
}

/* ---- fork churn --------------------------------------------------------- */

/* In the child of a fork taken while the workers ran: only this thread
 * exists, and any lock another thread held at the fork stays held. A
 * workload that declares itself fork-safe does FORK_OPS ops on its copy of
 * the state (exit 0 when the total grew by exactly that much); any other
 * workload's code is never called here: the child reads its inherited rseq
 * area (the kernel's fork path for a registered thread) and exits. */
static void fork_child(struct prseq_run *run)
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
    before = w->total(run->state);
    while (done < FORK_OPS) {
        int rc = op(run->state, &t);
        if (rc < 0)
            _exit(4);
        done += rc == 0;
    }
    after = w->total(run->state);
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

/* Kill and reap a child that did not finish. One that ran FORK_HUNG_NS or
 * more is hung in the workload's callbacks (only a fork-safe workload's
 * code runs there): the run fails with the workload named, not as lost
 * counts. One cut short by the end of the run is not counted at all. */
static void fork_kill(struct chaos *c, pid_t pid, uint64_t ran_ns)
{
    int status;

    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (ran_ns < FORK_HUNG_NS)
        return;
    prseq_run_fail(c->run, ETIMEDOUT,
                   "%s: a forked child hung for %.2f s in the workload's callbacks and was "
                   "killed; the workload declares itself fork-safe (PRSEQ_WORKLOAD_FORK_SAFE) "
                   "but is not (a lock held by another thread at the fork?)",
                   c->run->w->name, (double)ran_ns / 1e9);
}

void chaos_fork_fire(struct chaos *c, uint64_t *rng)
{
    uint64_t start, deadline;
    int status = 0;
    pid_t pid, got;

    (void)rng;
    pid = fork();
    if (pid < 0) {
        __atomic_fetch_add(&c->fork_errors, 1, __ATOMIC_RELAXED);
        return;
    }
    if (pid == 0)
        fork_child(c->run);
    start = prseq_now_ns();
    deadline = start + FORK_TIMEOUT_NS;
    /* The wait honours the run's stop: a hung child never holds the run
     * past its deadline. */
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && prseq_now_ns() < deadline &&
           !fork_stopping(c)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        fork_kill(c, pid, prseq_now_ns() - start);
        return;
    }
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
