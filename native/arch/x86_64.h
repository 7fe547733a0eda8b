/* x86_64.h - the instruction blocks of the rseq critical sections on x86_64.
 *
 * arch.h builds the sections from these blocks and the shared ones of
 * rseq_cs.h. Operands the blocks name: rseq_cs (the area's field), cmp and
 * expect (the CPU check), v (the value), delay (spin iterations), sig.
 */
#ifndef PRSEQ_ARCH_X86_64_H
#define PRSEQ_ARCH_X86_64_H

/* Registers the blocks use as scratch (the asm statement's clobbers). */
#define PRSEQ_ASM_SCRATCH "rax", "rcx"

/* area->rseq_cs = the descriptor at label `cs` (position independent). */
#define PRSEQ_ASM_STORE_CS(cs)                                               \
    "leaq " #cs "b(%%rip), %%rax\n\t"                                        \
    "movq %%rax, %[rseq_cs]\n\t"

/* Leave for `target` unless *cmp == expect. */
#define PRSEQ_ASM_CMP_CPU(target)                                            \
    "cmpl %[expect], %[cmp]\n\t"                                             \
    "jnz %l[" #target "]\n\t"

/* Scratch = *v. */
#define PRSEQ_ASM_LOAD_V "movq %[v], %%rax\n\t"

/* Spin `delay` iterations (labels `loop` and `done`, none when delay is 0). */
#define PRSEQ_ASM_SPIN(loop, done)                                           \
    "movq %[delay], %%rcx\n\t"                                               \
    "testq %%rcx, %%rcx\n\t"                                                 \
    "jz " #done "f\n\t"                                                      \
    #loop ":\n\t"                                                            \
    "decq %%rcx\n\t"                                                         \
    "jnz " #loop "b\n\t"                                                     \
    #done ":\n\t"

/* The commit: *v = scratch + 1, one store. */
#define PRSEQ_ASM_COMMIT_V_PLUS_1                                            \
    "addq $1, %%rax\n\t"                                                     \
    "movq %%rax, %[v]\n\t"

/* The abort handler at label `abort`, in __rseq_failure, jumping to
 * `target`. The signature is the operand of "ud1 <sig>(%rip), %edi", so the
 * four bytes before the abort address are the signature and are never run. */
#define PRSEQ_ASM_DEFINE_ABORT(abort, target)                                \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                             \
    ".long %c[sig]\n\t"                                                      \
    #abort ":\n\t"                                                           \
    "jmp %l[" #target "]\n\t"                                                \
    ".popsection\n\t"

#endif /* PRSEQ_ARCH_X86_64_H */
