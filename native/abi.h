/* abi.h - the rseq area, registration discovery and pytest-rseq's own registration. */
#ifndef PRSEQ_ABI_H
#define PRSEQ_ABI_H

#include <stdint.h>

#include "prseq_core.h"

#define PRSEQ_CPU_ID_UNINITIALIZED ((uint32_t)-1)
#define PRSEQ_CPU_ID_REGISTRATION_FAILED ((uint32_t)-2)

/* The rseq area is struct prseq_rseq_area of pytest_rseq.h (the kernel's
 * struct rseq up to mm_cid; the real size comes from AT_RSEQ_FEATURE_SIZE). */

/* The area glibc registered for the calling thread, or NULL. */
struct prseq_rseq_area *prseq_glibc_area(void);

/* Register / unregister pytest-rseq's own area for the calling thread.
 * Returns 0 or a negative errno. */
int prseq_own_register(void);
void prseq_own_unregister(void);

/* The area in use by the calling thread (own first, then glibc's), or NULL,
 * and who owns it (PRSEQ_OWNER_*). */
struct prseq_rseq_area *prseq_current_area(int *owner);

/* 1 when the kernel fills node_id in the area owned by `owner`
 * (PRSEQ_OWNER_*): the registered length must cover the field. */
int prseq_node_id_usable(int owner);

#endif /* PRSEQ_ABI_H */
