/* aarch64.h - the instruction blocks of the rseq critical sections on aarch64.
 *
 * arch.h builds the sections from these blocks and the shared ones of
 * rseq_cs.h. Operands the blocks name: rseq_cs (the area's field), cmp and
 * expect (the CPU check), v (the value), delay (spin iterations), sig.
 */
#ifndef PRSEQ_ARCH_AARCH64_H
#define PRSEQ_ARCH_AARCH64_H

/* Registers the blocks use as scratch (the asm statement's clobbers). */
#define PRSEQ_ASM_SCRATCH "x16", "x17"

/* area->rseq_cs = the descriptor at label `cs` (position independent). */
#define PRSEQ_ASM_STORE_CS(cs)                                               \
    "adrp x16, " #cs "b\n\t"                                                 \
    "add x16, x16, :lo12:" #cs "b\n\t"                                       \
    "str x16, %[rseq_cs]\n\t"

/* Leave for `target` unless *cmp == expect. */
#define PRSEQ_ASM_CMP_CPU(target)                                            \
    "ldr w17, %[cmp]\n\t"                                                    \
    "cmp w17, %w[expect]\n\t"                                                \
    "b.ne %l[" #target "]\n\t"

/* Scratch = *v. */
#define PRSEQ_ASM_LOAD_V "ldr x16, %[v]\n\t"

/* Spin `delay` iterations (labels `loop` and `done`, none when delay is 0). */
#define PRSEQ_ASM_SPIN(loop, done)                                           \
    "mov x17, %[delay]\n\t"                                                  \
    "cbz x17, " #done "f\n\t"                                                \
    #loop ":\n\t"                                                            \
    "subs x17, x17, #1\n\t"                                                  \
    "b.ne " #loop "b\n\t"                                                    \
    #done ":\n\t"

/* The commit: *v = scratch + 1, one store. */
#define PRSEQ_ASM_COMMIT_V_PLUS_1                                            \
    "add x16, x16, #1\n\t"                                                   \
    "str x16, %[v]\n\t"

/* The abort handler at label `abort`, in __rseq_failure, branching to
 * `target`, right behind the signature word (with the signature of
 * pytest_rseq.h it decodes as "brk #0x45e0": it traps if ever executed). */
#define PRSEQ_ASM_DEFINE_ABORT(abort, target)                                \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".inst %c[sig]\n\t"                                                      \
    #abort ":\n\t"                                                           \
    "b %l[" #target "]\n\t"                                                  \
    ".popsection\n\t"

#endif /* PRSEQ_ARCH_AARCH64_H */
