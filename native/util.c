/* util.c - helpers every part of a run uses: the clock, the seeded
 * generator, the possible CPU ids, CPU masks, the run's first error, mask-change markers and the
 * workload structure's accessors. It calls nothing else of the core, so
 * the harness, the injectors and the evidence code all depend on it and
 * not on each other. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "util.h"

uint64_t prseq_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec prseq_ns_to_timespec(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    return ts;
}

uint64_t prseq_rand(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

cpu_set_t *prseq_mask_alloc(uint32_t nr_cpus, size_t *size)
{
    cpu_set_t *mask = CPU_ALLOC(nr_cpus ? nr_cpus : 1);

    *size = CPU_ALLOC_SIZE(nr_cpus ? nr_cpus : 1);
    if (mask)
        CPU_ZERO_S(*size, mask);
    return mask;
}

void prseq_run_fail(struct prseq_run *run, int err, const char *fmt, ...)
{
    int expected = 0;

    if (__atomic_compare_exchange_n(&run->error, &expected, err, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(run->res->errmsg, sizeof(run->res->errmsg), fmt, ap);
        va_end(ap);
    }
    __atomic_store_n(&run->stop, 1, __ATOMIC_RELEASE);
}

/* Several injectors (and workers joining a cpuset) change masks at once,
 * so parity of one counter is not enough: mask_busy counts changes in
 * flight and mask_gen moves at both ends of each. */
void prseq_mask_change_begin(struct prseq_run *run)
{
    __atomic_fetch_add(&run->mask_busy, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&run->mask_gen, 1, __ATOMIC_SEQ_CST);
}

void prseq_mask_change_end(struct prseq_run *run)
{
    __atomic_fetch_add(&run->mask_gen, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_sub(&run->mask_busy, 1, __ATOMIC_SEQ_CST);
}

const char *prseq_workload_problem(const struct prseq_workload *w)
{
    if (!w)
        return "no workload";
    if (w->abi_version < 1 || w->abi_version > PRSEQ_ABI_VERSION)
        return "abi_version";
    if (!w->name)
        return "name";
    if (!w->create)
        return "create";
    if (!w->op)
        return "op";
    if (!w->fallback_op)
        return "fallback_op";
    if (!w->total)
        return "total";
    if (!w->destroy)
        return "destroy";
    return NULL;
}

uint32_t prseq_workload_flags(const struct prseq_workload *w)
{
    /* A version 1 structure ends before `flags`: never read past it. */
    return w->abi_version >= 2 ? w->flags : 0;
}

/* Highest possible CPU id + 1, from /sys/devices/system/cpu/possible
 * ("0-3", "0,2-5"): shard arrays are indexed by CPU id, and ids need not be
 * contiguous, so the count of CPUs is not enough. */
uint32_t prseq_possible_cpus(void)
{
    char buf[4096];
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    unsigned long max = 0;
    size_t n;
    char *p;

    if (!f)
        return CPU_SETSIZE;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (p = buf; *p;) {
        char *end;
        unsigned long v;
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        v = strtoul(p, &end, 10);
        if (v > max)
            max = v;
        p = end;
    }
    return (uint32_t)max + 1;
}
