/* chaos_sys.c - injectors that change the machine around the workers:
 * cgroup cpuset shifts and CPU hotplug (fork churn: chaos_fork.c).
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
