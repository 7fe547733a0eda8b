/* arch.h - the rseq critical sections of pytest-rseq, for the target architecture.
 *
 * Both sections are built here, once, from blocks: the descriptor and its
 * table entry (rseq_cs.h, the same everywhere) and the instruction blocks of
 * the architecture file (x86_64.h, aarch64.h). Their contract:
 *   int prseq_arch_inc(area, cmp, expect, v, delay)
 *       Inside one rseq critical section: compare *cmp (cpu_id or mm_cid of
 *       the thread's area) with `expect`, load *v, spin `delay` iterations,
 *       then store the loaded value + 1 with a single commit store (a
 *       section that writes another CPU's slot loses counts in that window).
 *       Returns 0 when committed, 1 when *cmp did not match (retry), -1 when
 *       the kernel aborted it.
 *   int prseq_arch_inc_bad_sig(...)
 *       The same section whose abort handler is preceded by a wrong
 *       signature: the first abort makes the kernel kill the thread (SIGSEGV).
 * The signature is PRSEQ_RSEQ_SIG of pytest_rseq.h, the one place it is written.
 */
#ifndef PRSEQ_ARCH_H
#define PRSEQ_ARCH_H

#include <stdint.h>

#include "pytest_rseq.h"
#include "rseq_cs.h"

#if defined(__x86_64__)
#include "x86_64.h"
#elif defined(__aarch64__)
#include "aarch64.h"
#else
#error "pytest-rseq has critical sections for x86_64 and aarch64 only"
#endif

/* Labels: 3 descriptor, 1 start, 2 commit (end), 4 abort handler, 5/6 spin. */
#define PRSEQ_ASM_INC(SIG)                                                   \
    __asm__ goto(PRSEQ_ASM_DEFINE_CS(3, 1, 2, 4)                             \
                 PRSEQ_ASM_STORE_CS(3)                                       \
                 PRSEQ_ASM_LABEL(1)                                          \
                 PRSEQ_ASM_CMP_CPU(mismatch)                                 \
                 PRSEQ_ASM_LOAD_V                                            \
                 PRSEQ_ASM_SPIN(5, 6)                                        \
                 PRSEQ_ASM_COMMIT_V_PLUS_1                                   \
                 PRSEQ_ASM_LABEL(2)                                          \
                 PRSEQ_ASM_DEFINE_ABORT(4, aborted)                          \
                 :                                                           \
                 : [rseq_cs] "m"(area->rseq_cs), [cmp] "m"(*cmp),            \
                   [expect] "r"(expect), [v] "m"(*v), [delay] "r"(delay),    \
                   PRSEQ_ASM_SIG_OPERAND(SIG)                                \
                 : "memory", "cc", PRSEQ_ASM_SCRATCH                         \
                 : mismatch, aborted)

static inline int prseq_arch_inc(struct prseq_rseq_area *area, const uint32_t *cmp,
                                 uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_ASM_INC(PRSEQ_RSEQ_SIG);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int prseq_arch_inc_bad_sig(struct prseq_rseq_area *area, const uint32_t *cmp,
                                         uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_ASM_INC(PRSEQ_RSEQ_SIG + 1);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

#endif /* PRSEQ_ARCH_H */
