/* arch.h - picks the critical sections for the target architecture.
 *
 * Each architecture file defines PRSEQ_SIG and two sections with the same
 * contract:
 *   int prseq_arch_inc(area, cmp, expect, v, delay)
 *       Inside one rseq critical section: compare *cmp (cpu_id or mm_cid of
 *       the thread's area) with `expect`, load *v, spin `delay` iterations,
 *       then store the loaded value + 1 with a single commit store (a
 *       section that writes another CPU's slot loses counts in that window). Returns 0 when committed,
 *       1 when *cmp did not match (retry), -1 when the kernel aborted it.
 *   int prseq_arch_inc_bad_sig(...)
 *       The same section whose abort handler is preceded by a wrong
 *       signature: the first abort makes the kernel kill the thread (SIGSEGV).
 */
#ifndef PRSEQ_ARCH_H
#define PRSEQ_ARCH_H

#if defined(__x86_64__)
#include "x86_64.h"
#elif defined(__aarch64__)
#include "aarch64.h"
#else
#error "pytest-rseq has critical sections for x86_64 and aarch64 only"
#endif

#endif /* PRSEQ_ARCH_H */
