/* percpu_aarch64.h - the rseq critical sections of the example, aarch64.
 * Same contract as percpu_x86_64.h; the signature word (PRSEQ_RSEQ_SIG, which
 * decodes as "brk #0x45e0") sits right before each abort handler in __rseq_failure. */
#ifndef PERCPU_AARCH64_H
#define PERCPU_AARCH64_H

#include <stdint.h>

#include "pytest_rseq.h"

/* The signature word PERCPU_ABORT emits, as an asm input operand: the value
 * is pytest_rseq.h's PRSEQ_RSEQ_SIG, never written out here. */
#define PERCPU_SIG(value) [sig] "i"((uint64_t)(value))

#define PERCPU_DESCRIPTOR                                                    \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                     \
    ".balign 32\n\t"                                                         \
    "3:\n\t"                                                                 \
    ".long 0x0, 0x0\n\t"                                                     \
    ".quad 1f, (2f - 1f), 4f\n\t"                                            \
    ".popsection\n\t"                                                        \
    ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                           \
    ".quad 3b\n\t"                                                           \
    ".popsection\n\t"                                                        \
    "adrp x16, 3b\n\t"                                                       \
    "add x16, x16, :lo12:3b\n\t"                                             \
    "str x16, %[rseq_cs]\n\t"

#define PERCPU_ABORT                                                         \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".inst %c[sig]\n\t"                                                      \
    "4:\n\t"                                                                 \
    "b %l[aborted]\n\t"                                                      \
    ".popsection\n\t"

#define PERCPU_CPU_CHECK                                                     \
    "1:\n\t"                                                                 \
    "ldr w17, %[cpu_id]\n\t"                                                 \
    "cmp w17, %w[cpu]\n\t"                                                   \
    "b.ne %l[mismatch]\n\t"

#define PERCPU_ADD(SIG)                                                      \
    __asm__ goto(PERCPU_DESCRIPTOR PERCPU_CPU_CHECK                          \
                 "mov x17, %[delay]\n\t"                                     \
                 "cbz x17, 6f\n\t"                                           \
                 "5:\n\t"                                                    \
                 "subs x17, x17, #1\n\t"                                     \
                 "b.ne 5b\n\t"                                               \
                 "6:\n\t"                                                    \
                 "ldr x17, %[v]\n\t"                                         \
                 "add x17, x17, #1\n\t"                                      \
                 "str x17, %[v]\n\t"                                         \
                 "2:\n\t" PERCPU_ABORT                                       \
                 :                                                           \
                 : [rseq_cs] "Q"(rs->rseq_cs), [cpu_id] "Q"(rs->cpu_id),     \
                   [cpu] "r"(cpu), [v] "Q"(*v), [delay] "r"(delay),          \
                   PERCPU_SIG(SIG)                                           \
                 : "memory", "cc", "x16", "x17"                              \
                 : mismatch, aborted)

static inline int percpu_add(struct prseq_rseq_area *rs, uint32_t cpu, uint64_t *v,
                             uint64_t delay)
{
    PERCPU_ADD(PRSEQ_RSEQ_SIG);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int percpu_add_bad_signature(struct prseq_rseq_area *rs, uint32_t cpu,
                                           uint64_t *v, uint64_t delay)
{
    PERCPU_ADD(PRSEQ_RSEQ_SIG + 1);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int percpu_pop(struct prseq_rseq_area *rs, uint32_t cpu, void **head, void **out)
{
    __asm__ goto(PERCPU_DESCRIPTOR PERCPU_CPU_CHECK
                 "ldr x16, %[head]\n\t"
                 "cbz x16, %l[mismatch]\n\t"
                 "ldr x17, [x16]\n\t"
                 "str x16, %[out]\n\t"
                 "str x17, %[head]\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "Q"(rs->rseq_cs), [cpu_id] "Q"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "Q"(*head), [out] "Q"(*out),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "x16", "x17"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int percpu_push(struct prseq_rseq_area *rs, uint32_t cpu, void **head, void *node)
{
    __asm__ goto(PERCPU_DESCRIPTOR PERCPU_CPU_CHECK
                 "ldr x17, %[head]\n\t"
                 "str x17, [%[node]]\n\t"
                 "str %[node], %[head]\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "Q"(rs->rseq_cs), [cpu_id] "Q"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "Q"(*head), [node] "r"(node),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "x16", "x17"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

/* Broken on purpose: head = node is stored before node->next (see the x86_64 file). */
static inline int percpu_push_commit_early(struct prseq_rseq_area *rs, uint32_t cpu,
                                           void **head, void *node, uint64_t delay)
{
    __asm__ goto(PERCPU_DESCRIPTOR PERCPU_CPU_CHECK
                 "ldr x17, %[head]\n\t"
                 "str %[node], %[head]\n\t"
                 "mov x16, %[delay]\n\t"
                 "cbz x16, 6f\n\t"
                 "5:\n\t"
                 "subs x16, x16, #1\n\t"
                 "b.ne 5b\n\t"
                 "6:\n\t"
                 "str x17, [%[node]]\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "Q"(rs->rseq_cs), [cpu_id] "Q"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "Q"(*head), [node] "r"(node), [delay] "r"(delay),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "x16", "x17"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

#endif /* PERCPU_AARCH64_H */
