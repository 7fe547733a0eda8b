/* aarch64.h - rseq critical sections for aarch64 (see arch.h for the contract). */
#ifndef PRSEQ_ARCH_AARCH64_H
#define PRSEQ_ARCH_AARCH64_H

#include <stdint.h>

#include "../abi.h"

/* "brk #0x45e0": an instruction that traps if ever executed, so the
 * signature word before the abort handler is never run by mistake. */
#define PRSEQ_SIG 0xd428bc00
#define PRSEQ_STR_(x) #x
#define PRSEQ_STR(x) PRSEQ_STR_(x)

/*
 * Descriptor in __rseq_cs, its address in __rseq_cs_ptr_array, the section
 * [1, 2) whose last instruction is the commit `str`, and the abort handler in
 * __rseq_failure right behind the signature word.
 */
#define PRSEQ_A64_INC(SIG)                                                   \
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
        "adrp x16, 3b\n\t"                                                   \
        "add x16, x16, :lo12:3b\n\t"                                         \
        "str x16, %[rseq_cs]\n\t"                                            \
        "1:\n\t"                                                             \
        "ldr w17, %[cmp]\n\t"                                                \
        "cmp w17, %w[expect]\n\t"                                            \
        "b.ne %l[mismatch]\n\t"                                              \
        "ldr x16, %[v]\n\t"                                                  \
        "mov x17, %[delay]\n\t"                                              \
        "cbz x17, 6f\n\t"                                                    \
        "5:\n\t"                                                             \
        "subs x17, x17, #1\n\t"                                              \
        "b.ne 5b\n\t"                                                        \
        "6:\n\t"                                                             \
        "add x16, x16, #1\n\t"                                               \
        "str x16, %[v]\n\t"                                                  \
        "2:\n\t"                                                             \
        ".pushsection __rseq_failure, \"ax\"\n\t"                            \
        ".inst " PRSEQ_STR(SIG) "\n\t"                                       \
        "4:\n\t"                                                             \
        "b %l[aborted]\n\t"                                                  \
        ".popsection\n\t"                                                    \
        :                                                                    \
        : [rseq_cs] "m"(area->rseq_cs), [cmp] "m"(*cmp),                     \
          [expect] "r"(expect), [v] "m"(*v), [delay] "r"(delay)              \
        : "memory", "cc", "x16", "x17"                                       \
        : mismatch, aborted)

static inline int prseq_arch_inc(struct prseq_area *area, const uint32_t *cmp,
                                 uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_A64_INC(0xd428bc00);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

static inline int prseq_arch_inc_bad_sig(struct prseq_area *area, const uint32_t *cmp,
                                         uint32_t expect, uint64_t *v, uint64_t delay)
{
    PRSEQ_A64_INC(0xd428bc01);
    return 0;
mismatch:
    return 1;
aborted:
    return -1;
}

#endif /* PRSEQ_ARCH_AARCH64_H */
