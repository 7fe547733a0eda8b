/* setup.c - everything a run needs before its first thread starts: the
 * request checked, the path and area owner chosen, the topology read (NUMA
 * nodes, allowed CPUs, the mm_cid bound), the workload's state and the
 * slots allocated; and their release at the end (prseq_run_teardown). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "aim.h"
#include "harness.h"
#include "util.h"
#include "workloads.h"

/* Mark the CPUs of a cpulist ("0-3,8,10-11") as on `node`. */
static void mark_cpulist(int16_t *map, uint32_t nr_cpus, const char *list, int node)
{
    const char *p = list;

    while (*p >= '0' && *p <= '9') {
        char *end;
        unsigned long lo = strtoul(p, &end, 10), hi = lo;
        if (*end == '-')
            hi = strtoul(end + 1, &end, 10);
        for (unsigned long cpu = lo; cpu <= hi && cpu < nr_cpus; cpu++)
            map[cpu] = (int16_t)node;
        p = *end == ',' ? end + 1 : end;
    }
}

/* NUMA node of every possible CPU, from <root>/nodeN/cpulist: one pass over
 * the node directories (root NULL = /sys/devices/system/node). A missing
 * tree leaves every CPU unknown (-1) at once, with no per-CPU probing. */
static int16_t *read_cpu_nodes(uint32_t nr_cpus, const char *root)
{
    int16_t *map = malloc(sizeof(*map) * nr_cpus);
    char path[4096], list[4096];
    struct dirent *e;
    DIR *d;

    if (!map)
        return NULL;
    for (uint32_t cpu = 0; cpu < nr_cpus; cpu++)
        map[cpu] = -1;
    if (!root || !root[0])
        root = "/sys/devices/system/node";
    d = opendir(root);
    if (!d)
        return map;
    while ((e = readdir(d))) {
        char *end;
        long node;
        FILE *f;
        size_t n;
        if (strncmp(e->d_name, "node", 4) != 0)
            continue;
        node = strtol(e->d_name + 4, &end, 10);
        if (end == e->d_name + 4 || *end || node < 0 || node > INT16_MAX)
            continue;
        snprintf(path, sizeof(path), "%s/%s/cpulist", root, e->d_name);
        f = fopen(path, "re");
        if (!f)
            continue;
        n = fread(list, 1, sizeof(list) - 1, f);
        fclose(f);
        list[n] = '\0';
        mark_cpulist(map, nr_cpus, list, (int)node);
    }
    closedir(d);
    return map;
}

/* CPUs in the calling thread's mask (the evidence rules waive migrations
 * on one CPU); all possible CPUs when the mask cannot be read. */
static uint32_t allowed_cpus(uint32_t nr_cpus)
{
    size_t size;
    cpu_set_t *mask = prseq_mask_alloc(nr_cpus, &size);
    uint32_t n = nr_cpus;

    if (mask && sched_getaffinity(0, size, mask) == 0)
        n = (uint32_t)CPU_COUNT_S(size, mask);
    CPU_FREE(mask);
    return n;
}

/* Threads this process has now (/proc/self/task entries). */
static uint32_t count_threads(void)
{
    uint32_t n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;

    if (!d)
        return 64;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The kernel keeps mm_cid below min(threads of the process, the process's
 * nr_cpus_allowed), and nr_cpus_allowed is the union of every mask any of
 * its threads ever had, not the caller's mask now (a thread pinned to CPU 0
 * while another runs on CPU 1 still sees cids 0 and 1). A bound never below
 * the kernel's: the possible CPU ids, and the threads (the workers, those
 * there now, the injector threads, a margin). */
static uint32_t mm_cid_bound(const struct prseq_config *cfg, uint32_t nr_cpus)
{
    uint32_t threads = cfg->threads + count_threads() + 8;

    return threads < nr_cpus ? threads : nr_cpus;
}

/* Which path and whose area the workers will use. */
static int choose_path(const struct prseq_config *cfg, struct prseq_result *res)
{
    int owner;

    res->path = PRSEQ_PATH_FALLBACK;
    res->owner = PRSEQ_OWNER_NONE;
    if (cfg->path != PRSEQ_PATH_RSEQ)
        return 0;
    if (cfg->own_registration && cfg->workload_registers) {
        /* The workload registers its own area in thread_init (librseq style). */
        struct prseq_abi_info abi;
        prseq_abi_probe(&abi);
        if (abi.available) {
            res->path = PRSEQ_PATH_RSEQ;
            res->owner = PRSEQ_OWNER_WORKLOAD;
        }
        return 0;
    }
    if (cfg->own_registration) {
        int rc = prseq_own_register();
        if (rc == -ENOSYS || rc == -EPERM)
            return 0;
        if (rc < 0) {
            res->error = -rc;
            snprintf(res->errmsg, sizeof(res->errmsg),
                     "registering pytest-rseq's own area failed: %s (is glibc's registration "
                     "still on?)",
                     strerror(-rc));
            return rc;
        }
        prseq_own_unregister();
        res->path = PRSEQ_PATH_RSEQ;
        res->owner = PRSEQ_OWNER_OWN;
        return 0;
    }
    if (prseq_current_area(&owner)) {
        res->path = PRSEQ_PATH_RSEQ;
        res->owner = owner;
    }
    return 0;
}

/* The workload and the config can run; else res->error = EINVAL with why. */
static int check_request(const struct prseq_workload *w, const struct prseq_config *cfg,
                         struct prseq_result *res)
{
    const char *bad = prseq_workload_problem(w);

    if (bad) {
        res->error = EINVAL;
        snprintf(res->errmsg, sizeof(res->errmsg), "workload %s: missing or invalid %s",
                 w && w->name ? w->name : "?", bad);
        return -EINVAL;
    }
    if (cfg->threads == 0 || cfg->threads > PRSEQ_MAX_THREADS || !(cfg->duration_s > 0)) {
        res->error = EINVAL;
        snprintf(res->errmsg, sizeof(res->errmsg), "bad config: threads=%u duration=%g",
                 cfg->threads, cfg->duration_s);
        return -EINVAL;
    }
    return 0;
}

/* The machine as the run sees it: possible and allowed CPUs, NUMA nodes,
 * the mm_cid bound, whether node_id is filled. */
static void read_topology(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;

    run->nr_slots = cfg->threads;
    run->nr_cpus = prseq_possible_cpus();
    run->cpu_node = read_cpu_nodes(run->nr_cpus, cfg->node_root);
    run->cpus_seen = calloc((run->nr_cpus + 63) / 64, sizeof(uint64_t));
    run->cpu_ticks = aligned_alloc(64, sizeof(struct prseq_cpu_ticks) * run->nr_cpus);
    if (run->cpu_ticks)
        memset(run->cpu_ticks, 0, sizeof(struct prseq_cpu_ticks) * run->nr_cpus);
    run->node_id_usable = prseq_node_id_usable(run->res->owner);
    run->mm_cid_bound = mm_cid_bound(cfg, run->nr_cpus);
    run->nr_cpus_allowed = allowed_cpus(run->nr_cpus);
}

/* Every slot empty, numbered, with its op budget. */
static void init_slots(struct prseq_run *run)
{
    const struct prseq_config *cfg = run->cfg;

    memset(run->slots, 0, sizeof(struct prseq_slot) * cfg->threads);
    for (uint32_t i = 0; i < cfg->threads; i++) {
        struct prseq_slot *s = &run->slots[i];
        s->run = run;
        s->t.index = i;
        s->last_cpu = UINT32_MAX;
        pthread_mutex_init(&s->tid_lock, NULL);
        s->budget = cfg->slot_budgets ? cfg->slot_budgets[i]
                    : cfg->ops_per_thread ? cfg->ops_per_thread
                                          : UINT64_MAX;
    }
}

/* The workload's state and the slots; on failure everything read so far is freed. */
static int allocate(struct prseq_run *run)
{
    const struct prseq_workload *w = run->w;
    uint32_t threads = run->cfg->threads;
    struct prseq_result *res = run->res;

    run->state = w->create(threads);
    if (!run->state) {
        res->error = ENOMEM;
        snprintf(res->errmsg, sizeof(res->errmsg), "%s: create(%u) returned NULL", w->name,
                 threads);
        free(run->cpu_node);
        free(run->cpus_seen);
        free(run->cpu_ticks);
        return -ENOMEM;
    }
    run->slots = aligned_alloc(64, sizeof(struct prseq_slot) * threads);
    if (!run->slots || sem_init(&run->exited, 0, 0) != 0) {
        free(run->slots);
        free(run->cpu_node);
        free(run->cpus_seen);
        free(run->cpu_ticks);
        w->destroy(run->state);
        res->error = ENOMEM;
        snprintf(res->errmsg, sizeof(res->errmsg), "out of memory for %u slots", threads);
        return -ENOMEM;
    }
    init_slots(run);
    return 0;
}

int prseq_run_setup(struct prseq_run *run, const struct prseq_workload *w,
                    const struct prseq_config *cfg, struct prseq_result *res)
{
    memset(res, 0, sizeof(*res));
    if (check_request(w, cfg, res) < 0 || choose_path(cfg, res) < 0)
        return -res->error;
    run->w = w;
    run->cfg = cfg;
    run->res = res;
    read_topology(run);
    res->threads = cfg->threads;
    prseq_workloads_set_cs_delay(cfg->cs_delay);
    if (allocate(run) < 0)
        return -res->error;
    prseq_aim_setup(run);
    return 0;
}

void prseq_run_teardown(struct prseq_run *run)
{
    prseq_aim_teardown(run);
    run->w->destroy(run->state);
    sem_destroy(&run->exited);
    for (uint32_t i = 0; i < run->nr_slots; i++)
        pthread_mutex_destroy(&run->slots[i].tid_lock);
    free(run->slots);
    free(run->cpu_node);
    free(run->cpus_seen);
    free(run->cpu_ticks);
}
