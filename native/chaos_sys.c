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

static int write_text(int fd, const char *text)
{
    size_t len = strlen(text);
    ssize_t n = pwrite(fd, text, len, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* The first line of a small text file (malloc'd), or NULL with errno set. */
static char *read_text(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        errno = n < 0 ? errno : EIO;
        return NULL;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (!buf[0]) {
        errno = EIO; /* an empty cpuset: nothing to restore to */
        return NULL;
    }
    return strdup(buf);
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
    c->cpus_initial = read_text(path);
    if (!c->cpus_initial)
        return errno ? -errno : -EIO;
    c->cpus_fd = open(path, O_WRONLY | O_CLOEXEC);
    if (c->cpus_fd < 0)
        return -errno;
    c->last_choice = -1;
    return 0;
}

/* Put back the CPUs the group had before the first shift. Each run (and each
 * half of path="both", and each repeat of a fallback half) then starts with
 * every CPU of the group, never confined to the one CPU the previous run's
 * last shift happened to leave: a short fallback half could otherwise end
 * before its first shift and never see two CPUs. */
void chaos_cpuset_restore(struct chaos *c)
{
    if (c->cpus_fd < 0 || !c->cpus_initial || !c->cpus_changed)
        return;
    prseq_mask_change_begin(c->run);
    if (write_text(c->cpus_fd, c->cpus_initial) == 0)
        c->cpus_changed = 0;
    prseq_mask_change_end(c->run);
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
        c->cpus_changed = 1;
        __atomic_fetch_add(&c->cpuset_shifts, 1, __ATOMIC_RELAXED);
    } else {
        /* Counted and reported; the next event picks again, so one list
         * the kernel refuses cannot starve the others. */
        c->cpuset_errors++;
        c->cpuset_errno = -rc;
    }
}

/* A worker asked to move for evidence while the cpuset holds it to one CPU:
 * give the group its CPUs back first (the injector shifts it again at its
 * next event). Returns 1 when the write landed. */
int chaos_cpuset_widen(struct chaos *c)
{
    int rc;

    if (!c || c->cpus_fd < 0 || !c->cpus_initial)
        return 0;
    prseq_mask_change_begin(c->run);
    rc = write_text(c->cpus_fd, c->cpus_initial);
    prseq_mask_change_end(c->run);
    return rc == 0;
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
    free(c->cpus_initial);
    c->cpus_initial = NULL;
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
