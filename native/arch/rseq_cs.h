/* rseq_cs.h - the parts of a critical section every architecture shares.
 *
 * A section is assembled from small string blocks (see arch.h). The blocks
 * here are the same on every 64-bit architecture: the descriptor the kernel
 * reads (struct rseq_cs) and its entry in the table of descriptors. The
 * architecture files supply the instruction blocks.
 */
#ifndef PRSEQ_ARCH_RSEQ_CS_H
#define PRSEQ_ARCH_RSEQ_CS_H

/*
 * The descriptor of the section [start, commit) whose abort handler is at
 * `abort` (all three numeric local labels defined after this block), in
 * __rseq_cs at label `cs`: version 0, flags 0, start_ip, post_commit_offset,
 * abort_ip, 32-byte aligned; and the descriptor's address appended to
 * __rseq_cs_ptr_array, where debuggers and pytest_rseq.lint find it.
 */
#define PRSEQ_ASM_DEFINE_CS(cs, start, commit, abort)                        \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                     \
    ".balign 32\n\t"                                                         \
    #cs ":\n\t"                                                              \
    ".long 0x0, 0x0\n\t"                                                     \
    ".quad " #start "f, (" #commit "f - " #start "f), " #abort "f\n\t"       \
    ".popsection\n\t"                                                        \
    ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                           \
    ".quad " #cs "b\n\t"                                                     \
    ".popsection\n\t"

/* A numeric local label, placed. */
#define PRSEQ_ASM_LABEL(n) #n ":\n\t"

/* Input operand of the signature word the abort blocks emit (%c[sig]): a
 * 64-bit constant, so the assembler sees it as written, never sign-extended. */
#define PRSEQ_ASM_SIG_OPERAND(value) [sig] "i"((uint64_t)(value))

#endif /* PRSEQ_ARCH_RSEQ_CS_H */
