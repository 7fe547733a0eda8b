/* x86_64.h - rseq critical sections for x86_64 (see arch.h for the contract). */
#ifndef PRSEQ_ARCH_X86_64_H
#define PRSEQ_ARCH_X86_64_H

#include <stdint.h>

#include "../abi.h"

#define PRSEQ_SIG 0x53053053
#define PRSEQ_STR_(x) #x
#define PRSEQ_STR(x) PRSEQ_STR_(x)

/*
 * Descriptor in __rseq_cs (32-byte aligned: version, flags, start_ip,
 * post_commit_offset, abort_ip), its address in __rseq_cs_ptr_array, the
 * section [1, 2) that loads *v, spins, and ends in one `movq` of *v + 1 to
 * memory (the commit), and the abort
 * handler in __rseq_failure behind "ud1 <sig>(%rip), %edi" so the four bytes
 * before the abort address are the signature.
 */
#define PRSEQ_X86_INC(SIG)                                                   \
    __asm__ goto(                                                            \
        ".pushsection __rseq_cs, \"aw\"\n\t"                                 \
        ".balign 32\n\t"                                                     \
        "3:\n\t"                                                             \
        ".long 0x0, 0x0\n\t"                                                 \
        ".quad 1f, (2f - 1f), 4f\n\t"                                        \
        ".popsection\n\t"                                                    \
        ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                       \
        ".quad 3b\n\t"                                                       \
        ".popsection\n\t"                                                    \
        "leaq 3b(%%rip), %%rax\n\t"                                          \
        "movq %%rax, %[rseq_cs]\n\t"                                         \
        "1:\n\t"                                                             \
        "cmpl %[expect], %[cmp]\n\t"                                         \
        "jnz %l[mismatch]\n\t"                                               \
        "movq %[v], %%rax\n\t"                                               \
        "movq %[delay], %%rcx\n\t"                                           \
        "testq %%rcx, %%rcx\n\t"                                             \
        "jz 6f\n\t"                                                          \
        "5:\n\t"                                                             \
        "decq %%rcx\n\t"                                                     \
        "jnz 5b\n\t"                                                         \
        "6:\n\t"                                                             \
        "addq $1, %%rax\n\t"                                                 \
        "movq %%rax, %[v]\n\t"                                               \
        "2:\n\t"                                                             \
        ".pushsection __rseq_failure, \"ax\"\n\t"                            \
        ".byte 0x0f, 0xb9, 0x3d\n\t"                                         \
        ".long " PRSEQ_STR(SIG) "\n\t"                                       \
        "4:\n\t"                                                             \
        "jmp %l[aborted]\n\t"                                                \
        ".popsection\n\t"                                                    \
        :                                                                    \
        : [rseq_cs] "m"(area->rseq_cs), [cmp] "m"(*cmp),                     \
          [expect] "r"(expect), [v] "m"(*v), [delay] "r"(delay)              \
        : "memory", "cc", "rax", "rcx"                                       \
        : mismatch, aborted)

static inline int prseq_arch_inc(struct prseq_area *area, const uint32_t *cmp,
                                 uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_X86_INC(0x53053053);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int prseq_arch_inc_bad_sig(struct prseq_area *area, const uint32_t *cmp,
                                         uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_X86_INC(0x53053054);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

#endif /* PRSEQ_ARCH_X86_64_H */
