/* loader.c - loads a downstream workload library (the C ABI in pytest_rseq.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#include "prseq_core.h"

const struct prseq_workload *prseq_load_library(const char *path, const char *symbol,
                                                char *err, size_t errlen)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    prseq_workload_fn fn;
    const struct prseq_workload *w;

    if (!handle) {
        snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    *(void **)&fn = dlsym(handle, symbol);
    if (!fn) {
        snprintf(err, errlen, "%s has no symbol %s", path, symbol);
        return NULL;
    }
    w = fn();
    if (!w)
        snprintf(err, errlen, "%s: %s() returned NULL", path, symbol);
    /* The handle stays open: the workload's code runs until the process exits. */
    return w;
}
