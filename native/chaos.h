/* chaos.h - internals shared by the injector files (chaos.c, chaos_sys.c). */
#ifndef PRSEQ_CHAOS_H
#define PRSEQ_CHAOS_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>

#include "harness.h"
#include "util.h"

#define CHAOS_MAX_INJECTORS 8
#define CHAOS_MAX_CHOICES 64
#define CHAOS_MAX_HOTPLUG 64

struct chaos;

/* One injector thread: fires `fire` at `hz` events per second. */
struct injector {
    const char *name;
    double hz;
    void (*fire)(struct chaos *c, uint64_t *rng);
    pthread_t thread;
    int started;
    struct chaos *c;
};

struct chaos {
    struct prseq_run *run;
    int stop;
    struct injector inj[CHAOS_MAX_INJECTORS];
    int nr_inj;
    /* signals */
    int signo;
    int handler_installed;
    struct sigaction old_action;
    /* per-thread timers: slot->timer is set and cleared under this lock, so
     * prseq_chaos_stop can disarm every live timer while workers leave */
    pthread_mutex_t timer_lock;
    /* affinity */
    cpu_set_t *allowed;        /* CPU_ALLOC'd for the possible CPUs */
    cpu_set_t *masks[CHAOS_MAX_CHOICES];
    size_t mask_size;          /* bytes of each of these masks */
    int nr_masks;
    uint32_t single_cpu[CHAOS_MAX_CHOICES]; /* masks[i], i < nr_single: CPU single_cpu[i] alone */
    int nr_single;
    /* cpuset */
    int cpus_fd;
    char *choices[CHAOS_MAX_CHOICES];
    int nr_choices;
    int last_choice;
    char *choices_buf;
    char *cpus_initial;        /* cpuset.cpus before the first shift: restored at stop */
    int cpus_changed;          /* a shift landed since the last restore */
    /* hotplug */
    int hotplug_cpus[CHAOS_MAX_HOTPLUG];
    int nr_hotplug;
    int offline_cpu;   /* CPU this run took offline and must bring back, or -1 */
    /* counters */
    uint64_t signals_sent;
    uint64_t timer_signals;
    uint64_t affinity_changes;
    uint64_t affinity_swaps;
    uint64_t cpuset_shifts;
    uint64_t cpuset_errors;
    int cpuset_errno;
    uint64_t forks;
    uint64_t fork_errors;
    uint64_t membarriers;
    uint64_t hotplug_events;
};

int chaos_add(struct chaos *c, const char *name, double hz,
              void (*fire)(struct chaos *, uint64_t *));

/* chaos_cpu.c: the pick of a live worker, affinity churn, membarrier fences. */
void chaos_affinity_fire(struct chaos *c, uint64_t *rng);
void chaos_affinity_free(struct chaos *c);
void chaos_affinity_restore(struct chaos *c);
int chaos_affinity_setup(struct chaos *c);
void chaos_membarrier_fire(struct chaos *c, uint64_t *rng);
int chaos_membarrier_setup(void);
pid_t chaos_pick_worker(struct chaos *c, uint64_t *rng, struct prseq_slot **slot, int lock);

/* chaos_sys.c: cgroup cpusets and CPU hotplug; chaos_fork.c: fork churn. */
int chaos_cpuset_setup(struct chaos *c);
void chaos_cpuset_fire(struct chaos *c, uint64_t *rng);
int chaos_cpuset_enter(struct chaos *c, struct prseq_slot *slot);
void chaos_cpuset_restore(struct chaos *c);
int chaos_cpuset_widen(struct chaos *c);
void chaos_cpuset_teardown(struct chaos *c);
int chaos_hotplug_setup(struct chaos *c);
void chaos_hotplug_fire(struct chaos *c, uint64_t *rng);
void chaos_hotplug_teardown(struct chaos *c);
void chaos_fork_fire(struct chaos *c, uint64_t *rng);

#endif /* PRSEQ_CHAOS_H */
