/* abi.c - rseq registration discovery, pytest-rseq's own registration, and
 * the seccomp filter that blocks the rseq syscall for the blocked modes. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abi.h"
#include "arch/arch.h"

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif
#ifndef AT_RSEQ_ALIGN
#define AT_RSEQ_ALIGN 28
#endif
#ifndef __NR_rseq
#error "the kernel headers do not define __NR_rseq"
#endif

#define RSEQ_ORIG_SIZE 32u
#define RSEQ_FLAG_UNREGISTER 1

/* glibc >= 2.35 exports these; weak so an older glibc still loads us. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
extern const unsigned int __rseq_flags __attribute__((weak));

static __thread struct prseq_rseq_area *own_area;
static __thread uint32_t own_len;

static int have_glibc_symbols(void)
{
    return &__rseq_offset != NULL && &__rseq_size != NULL;
}

static uint32_t area_align(void)
{
    uint32_t align = (uint32_t)getauxval(AT_RSEQ_ALIGN);
    return align > RSEQ_ORIG_SIZE ? align : RSEQ_ORIG_SIZE;
}

/* The length handed to the kernel: the feature size it announces, at least
 * the original 32 bytes, rounded up to the alignment it asks for. */
static uint32_t area_size(void)
{
    uint32_t feature = (uint32_t)getauxval(AT_RSEQ_FEATURE_SIZE);
    uint32_t align = area_align();
    uint32_t size = feature > RSEQ_ORIG_SIZE ? feature : RSEQ_ORIG_SIZE;
    return (size + align - 1) / align * align;
}

struct prseq_rseq_area *prseq_glibc_area(void)
{
    if (!have_glibc_symbols() || __rseq_size == 0)
        return NULL;
    return (struct prseq_rseq_area *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

int prseq_own_register(void)
{
    uint32_t align = area_align(), size = area_size();
    struct prseq_rseq_area *area;

    if (own_area)
        return 0;
    area = aligned_alloc(align, size);
    if (!area)
        return -ENOMEM;
    memset(area, 0, size);
    area->cpu_id = PRSEQ_CPU_ID_UNINITIALIZED;
    if (syscall(__NR_rseq, area, size, 0, PRSEQ_RSEQ_SIG) != 0) {
        int err = errno;
        free(area);
        return -err;
    }
    own_area = area;
    own_len = size;
    return 0;
}

void prseq_own_unregister(void)
{
    if (!own_area)
        return;
    /* If the kernel refuses, it still writes into the area at every
     * preemption: leak it rather than hand the memory back to malloc. */
    if (syscall(__NR_rseq, own_area, own_len, RSEQ_FLAG_UNREGISTER, PRSEQ_RSEQ_SIG) == 0)
        free(own_area);
    own_area = NULL;
    own_len = 0;
}

struct prseq_rseq_area *prseq_current_area(int *owner)
{
    struct prseq_rseq_area *glibc;

    if (own_area) {
        *owner = PRSEQ_OWNER_OWN;
        return own_area;
    }
    glibc = prseq_glibc_area();
    if (glibc && (int32_t)__atomic_load_n(&glibc->cpu_id, __ATOMIC_RELAXED) >= 0) {
        *owner = PRSEQ_OWNER_GLIBC;
        return glibc;
    }
    *owner = PRSEQ_OWNER_NONE;
    return NULL;
}

/* rseq(NULL, 0, 0, 0) never registers anything: EINVAL means the syscall is
 * there, ENOSYS or EPERM that the kernel or a seccomp filter refuses it. */
static int probe_syscall(void)
{
    if (syscall(__NR_rseq, NULL, 0, 0, 0) == 0)
        return 0;
    return errno;
}

int prseq_abi_probe(struct prseq_abi_info *out)
{
    memset(out, 0, sizeof(*out));
    out->glibc_symbols = have_glibc_symbols();
    out->feature_size = (uint32_t)getauxval(AT_RSEQ_FEATURE_SIZE);
    out->align = (uint32_t)getauxval(AT_RSEQ_ALIGN);
    out->own_size = area_size();
    out->own_align = area_align();
    out->glibc_cpu_id = -1;
    if (out->glibc_symbols) {
        out->rseq_offset = __rseq_offset;
        out->glibc_size = __rseq_size;
        out->glibc_flags = &__rseq_flags != NULL ? __rseq_flags : 0;
        if (__rseq_offset != 0) {
            struct prseq_rseq_area *slot =
                (struct prseq_rseq_area *)((char *)__builtin_thread_pointer() + __rseq_offset);
            out->glibc_cpu_id = (int32_t)__atomic_load_n(&slot->cpu_id, __ATOMIC_RELAXED);
        }
    }
    /* librseq's rule: glibc sizes 20 and 32 both mean "the original area",
     * whose usable part is min(32, feature size); other sizes are taken as is. */
    if (out->glibc_size == 20 || out->glibc_size == 32) {
        uint32_t feature = out->feature_size ? out->feature_size : 20;
        out->usable_size = feature < RSEQ_ORIG_SIZE ? feature : RSEQ_ORIG_SIZE;
    } else {
        out->usable_size = out->glibc_size;
    }
    out->syscall_errno = probe_syscall();
    out->available = out->syscall_errno == EINVAL;
    prseq_current_area(&out->owner);
    {
        uint32_t usable = out->owner == PRSEQ_OWNER_OWN ? out->feature_size : out->usable_size;
        if (out->owner == PRSEQ_OWNER_NONE)
            usable = out->available ? out->feature_size : 0;
        out->node_id_usable = usable >= offsetof(struct prseq_rseq_area, node_id) + 4;
        out->mm_cid_usable = usable >= offsetof(struct prseq_rseq_area, mm_cid) + 4;
    }
    return 0;
}

/* Install a seccomp filter that makes rseq fail with `err` (ENOSYS or EPERM)
 * in this process and everything it execs. Returns 0 or a negative errno. */
int prseq_block_rseq(int err)
{
#if defined(__x86_64__)
    const unsigned int arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned int arch = AUDIT_ARCH_AARCH64;
#endif
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned int)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {
        .len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
        .filter = filter,
    };

    if (err != ENOSYS && err != EPERM)
        return -EINVAL;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -errno;
    return 0;
}

int prseq_node_id_usable(int owner)
{
    uint32_t feature = (uint32_t)getauxval(AT_RSEQ_FEATURE_SIZE);
    uint32_t need = offsetof(struct prseq_rseq_area, node_id) + 4;

    if (owner == PRSEQ_OWNER_OWN)
        return feature >= need;
    if (owner == PRSEQ_OWNER_GLIBC) {
        uint32_t size = have_glibc_symbols() ? __rseq_size : 0;
        if (size == 20 || size == 32)
            size = feature < RSEQ_ORIG_SIZE ? feature : RSEQ_ORIG_SIZE;
        return size >= need;
    }
    return 0;
}

/* MEMBARRIER_CMD_QUERY: the commands this kernel supports (a bit mask), or
 * a negative errno. Side-effect free: nothing is registered. */
int prseq_membarrier_query(void)
{
    long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return rc < 0 ? -errno : (int)rc;
}
