/* percpu_x86_64.h - the rseq critical sections of the example, x86_64.
 *
 * Every section follows the same pattern (as librseq does):
 *   - a 32-byte descriptor in __rseq_cs: version 0, flags 0, start_ip,
 *     post_commit_offset, abort_ip; its address in __rseq_cs_ptr_array;
 *   - the thread's area->rseq_cs set to the descriptor before label 1;
 *   - [1, 2): compare cpu_id with the CPU whose data we touch, then the
 *     work, ending with exactly one store that commits;
 *   - the abort handler in __rseq_failure, preceded by the 4 signature bytes
 *     (the operand of a `ud1`, so it is never executed).
 * Each returns 0 when it committed, 1 on a CPU mismatch (or an empty list),
 * -1 when the kernel aborted it.
 */
#ifndef PERCPU_X86_64_H
#define PERCPU_X86_64_H

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
    "leaq 3b(%%rip), %%rax\n\t"                                              \
    "movq %%rax, %[rseq_cs]\n\t"

#define PERCPU_ABORT                                                         \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                             \
    ".long %c[sig]\n\t"                                                      \
    "4:\n\t"                                                                 \
    "jmp %l[aborted]\n\t"                                                    \
    ".popsection\n\t"

/* *v += 1 on `cpu`'s counter; `delay` spins inside the section. */
#define PERCPU_ADD(SIG)                                                      \
    __asm__ goto(PERCPU_DESCRIPTOR                                           \
                 "1:\n\t"                                                    \
                 "cmpl %[cpu], %[cpu_id]\n\t"                                \
                 "jnz %l[mismatch]\n\t"                                      \
                 "movq %[delay], %%rcx\n\t"                                  \
                 "testq %%rcx, %%rcx\n\t"                                    \
                 "jz 6f\n\t"                                                 \
                 "5:\n\t"                                                    \
                 "decq %%rcx\n\t"                                            \
                 "jnz 5b\n\t"                                                \
                 "6:\n\t"                                                    \
                 "addq $1, %[v]\n\t"                                         \
                 "2:\n\t" PERCPU_ABORT                                       \
                 :                                                           \
                 : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id),     \
                   [cpu] "r"(cpu), [v] "m"(*v), [delay] "r"(delay),          \
                   PERCPU_SIG(SIG)                                           \
                 : "memory", "cc", "rax", "rcx"                              \
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

/* Broken on purpose: the abort handler is preceded by a wrong signature. */
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

/* Pop the head of `cpu`'s list into *out: head = head->next is the commit.
 * Returns 1 when the list is empty or cpu does not match. */
static inline int percpu_pop(struct prseq_rseq_area *rs, uint32_t cpu, void **head, void **out)
{
    __asm__ goto(PERCPU_DESCRIPTOR
                 "1:\n\t"
                 "cmpl %[cpu], %[cpu_id]\n\t"
                 "jnz %l[mismatch]\n\t"
                 "movq %[head], %%rdx\n\t"
                 "testq %%rdx, %%rdx\n\t"
                 "jz %l[mismatch]\n\t"
                 "movq (%%rdx), %%rcx\n\t"
                 "movq %%rdx, %[out]\n\t"
                 "movq %%rcx, %[head]\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "m"(*head), [out] "m"(*out),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "rax", "rcx", "rdx"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

/* Push `node` on `cpu`'s list: node->next = head, then head = node (commit). */
static inline int percpu_push(struct prseq_rseq_area *rs, uint32_t cpu, void **head, void *node)
{
    __asm__ goto(PERCPU_DESCRIPTOR
                 "1:\n\t"
                 "cmpl %[cpu], %[cpu_id]\n\t"
                 "jnz %l[mismatch]\n\t"
                 "movq %[head], %%rdx\n\t"
                 "movq %%rdx, (%[node])\n\t"
                 "movq %[node], %[head]\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "m"(*head), [node] "r"(node),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "rax", "rdx"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

/* Broken on purpose: head = node is stored first ("commits" early), and
 * node->next is written after it, inside the section but past the point a
 * restart can undo. An abort in between leaves head -> node -> stale next. */
static inline int percpu_push_commit_early(struct prseq_rseq_area *rs, uint32_t cpu,
                                           void **head, void *node, uint64_t delay)
{
    __asm__ goto(PERCPU_DESCRIPTOR
                 "1:\n\t"
                 "cmpl %[cpu], %[cpu_id]\n\t"
                 "jnz %l[mismatch]\n\t"
                 "movq %[head], %%rdx\n\t"
                 "movq %[node], %[head]\n\t"
                 "movq %[delay], %%rcx\n\t"
                 "testq %%rcx, %%rcx\n\t"
                 "jz 6f\n\t"
                 "5:\n\t"
                 "decq %%rcx\n\t"
                 "jnz 5b\n\t"
                 "6:\n\t"
                 "movq %%rdx, (%[node])\n\t"
                 "2:\n\t" PERCPU_ABORT
                 :
                 : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [cpu] "r"(cpu),
                   [head] "m"(*head), [node] "r"(node), [delay] "r"(delay),
                   PERCPU_SIG(PRSEQ_RSEQ_SIG)
                 : "memory", "cc", "rax", "rcx", "rdx"
                 : mismatch, aborted);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

#endif /* PERCPU_X86_64_H */
