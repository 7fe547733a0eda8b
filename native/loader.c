/* loader.c - loads a downstream workload library (the C ABI in pytest_rseq.h),
 * checks it before the harness touches it, and exports the harness's rseq
 * area to it (prseq_harness_rseq_area, found by prseq_rseq_area()). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "abi.h"
#include "prseq_core.h"
#include "util.h"

/* Exported with default visibility: a workload finds it with
 * dlsym(RTLD_DEFAULT, ...) once this module is in the global scope. */
__attribute__((visibility("default"))) struct prseq_rseq_area *prseq_harness_rseq_area(void)
{
    int owner;
    struct prseq_rseq_area *area = prseq_current_area(&owner);
    return owner == PRSEQ_OWNER_OWN ? area : NULL;
}

/* Python loads extension modules RTLD_LOCAL; re-open ourselves RTLD_GLOBAL
 * so prseq_harness_rseq_area is visible to the workload's dlsym. */
static void promote_self_to_global(void)
{
    Dl_info info;

    if (dladdr((void *)prseq_harness_rseq_area, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}

const struct prseq_workload *prseq_load_library(const char *path, const char *symbol,
                                                char *err, size_t errlen)
{
    void *handle;
    prseq_workload_fn fn;
    const struct prseq_workload *w;
    const char *missing;

    promote_self_to_global();
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load %s: %s", path, why ? why : "unknown dlopen error");
        return NULL;
    }
    dlerror();
    *(void **)&fn = dlsym(handle, symbol);
    if (!fn) {
        snprintf(err, errlen, "%s has no symbol %s (export `const struct prseq_workload *%s(void)`)",
                 path, symbol, symbol);
        dlclose(handle);
        return NULL;
    }
    w = fn();
    if (!w) {
        snprintf(err, errlen, "%s: %s() returned NULL", path, symbol);
        dlclose(handle);
        return NULL;
    }
    if (w->abi_version < 1 || w->abi_version > PRSEQ_ABI_VERSION) {
        snprintf(err, errlen,
                 "%s: %s() returned a workload with abi_version %u; this pytest-rseq "
                 "speaks versions 1 to %u (rebuild against its pytest_rseq.h)",
                 path, symbol, w->abi_version, PRSEQ_ABI_VERSION);
        dlclose(handle);
        return NULL;
    }
    missing = prseq_workload_problem(w);
    if (missing) {
        snprintf(err, errlen, "%s: workload %s from %s(): required field %s is NULL", path,
                 w->name ? w->name : "(unnamed)", symbol, missing);
        dlclose(handle);
        return NULL;
    }
    /* The handle stays open: the workload's code runs until the process exits,
     * and the kernel may still hold a pointer to one of its descriptors. */
    return w;
}
