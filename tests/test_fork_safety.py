"""Fork chaos never runs a workload's code in a forked child unless the workload says it
is fork-safe (ABI version 2 flag); a hung child is the workload's problem, named as such."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

import pytest_rseq
from pytest_rseq import Chaos, Workload

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
# Liveness bound, not a performance threshold: the runs ask for 1 s.
HANG_LIMIT_S = 60

# A correct workload whose op takes a pthread mutex: a child forked while another
# worker holds it hangs on its first op.
SOURCE = r"""
#include <pthread.h>
#include <stdlib.h>
#include "pytest_rseq.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long count;

static void *create(uint32_t n) { (void)n; count = 0; return &count; }
static int op(void *s, struct prseq_thread *t) {
    (void)s; (void)t;
    pthread_mutex_lock(&lock);
    for (volatile int i = 0; i < 200; i++)
        ;
    count++;
    pthread_mutex_unlock(&lock);
    return 0;
}
static uint64_t total(void *s) {
    uint64_t v;
    (void)s;
    pthread_mutex_lock(&lock);
    v = count;
    pthread_mutex_unlock(&lock);
    return v;
}
static void destroy(void *s) { (void)s; }

static struct prseq_workload w = {
    .abi_version = ABI, .name = "locked", .create = create, .op = op,
    .fallback_op = op, .total = total, .destroy = destroy, .flags = FLAGS,
};

const struct prseq_workload *prseq_workload(void) { return &w; }
"""


def build(tmp_path: Path, abi: int, flags: str) -> Path:
    src = tmp_path / "locked.c"
    src.write_text(SOURCE)
    out = tmp_path / f"liblocked-{abi}-{flags.replace('PRSEQ_WORKLOAD_', '').lower()}.so"
    subprocess.run(
        [
            str(CC), "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1", "-pthread",
            f"-I{pytest_rseq.get_include()}", f"-DABI={abi}", f"-DFLAGS={flags}",
            str(src), "-o", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def fork_run(lib: Path) -> pytest_rseq.StressResult:
    return pytest_rseq.run(
        Workload.from_library(lib),
        threads=4,
        duration=1.0,
        chaos=Chaos(fork_hz=200),
        path="fallback",
        seed=2,
    )


@pytest.mark.parametrize(
    ("abi", "flags"),
    [(2, "0"), (1, "PRSEQ_WORKLOAD_FORK_SAFE")],
    ids=["v2-not-fork-safe", "v1-flags-ignored"],
)
def test_a_workload_that_is_not_fork_safe_never_runs_in_a_fork_child(
    tmp_path: Path, abi: int, flags: str
) -> None:
    """Version 1 has no flags field: whatever follows `destroy` is never read as flags."""
    result = fork_run(build(tmp_path, abi, flags))
    result.assert_consistent()
    assert result.forks > 0 and result.details["fork_errors"] == 0


def test_a_fork_safe_claim_that_is_false_is_reported_as_the_workloads(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result = fork_run(build(tmp_path, 2, "PRSEQ_WORKLOAD_FORK_SAFE"))
    assert time.monotonic() - t0 < HANG_LIMIT_S
    assert not result.ok
    assert result.error and "locked: a forked child hung" in result.error
    assert "PRSEQ_WORKLOAD_FORK_SAFE" in result.error
    assert not any("lost" in r for r in result.reasons), result.reasons


# A fork-safe workload whose first fork child is slow (it computes and never sleeps, as a
# child on a loaded machine would): slow is not hung, so it is cut short and not counted.
SLOW_SOURCE = r"""
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "pytest_rseq.h"

struct state { uint64_t count; pid_t owner; int *claimed; };
static struct state st;

static void *create(uint32_t n) {
    (void)n;
    st.count = 0;
    st.owner = getpid();
    st.claimed = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (st.claimed == MAP_FAILED)
        return NULL;
    *st.claimed = 0;
    return &st;
}
static int op(void *s, struct prseq_thread *t) {
    struct state *p = s;
    (void)t;
    if (getpid() != p->owner && !__atomic_exchange_n(p->claimed, 1, __ATOMIC_RELAXED))
        for (volatile uint64_t i = 0;; i++)  /* busy until killed: runnable, never asleep */
            ;
    __atomic_fetch_add(&p->count, 1, __ATOMIC_RELAXED);
    return 0;
}
static uint64_t total(void *s) {
    return __atomic_load_n(&((struct state *)s)->count, __ATOMIC_RELAXED);
}
static void destroy(void *s) { munmap(((struct state *)s)->claimed, sizeof(int)); }

static struct prseq_workload w = {
    .abi_version = 2, .name = "slowchild", .create = create, .op = op,
    .fallback_op = op, .total = total, .destroy = destroy, .flags = PRSEQ_WORKLOAD_FORK_SAFE,
};

const struct prseq_workload *prseq_workload(void) { return &w; }
"""


def test_a_slow_fork_child_is_not_called_hung(tmp_path: Path) -> None:
    """The first child computes without end (runnable, using CPU time, never asleep): it is
    killed when its wait runs out and not counted; later children count and the run is ok."""
    src = tmp_path / "slowchild.c"
    src.write_text(SLOW_SOURCE)
    lib = tmp_path / "libslowchild.so"
    subprocess.run(
        [str(CC), "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1",
         f"-I{pytest_rseq.get_include()}", str(src), "-o", str(lib)],
        check=True,
    )  # fmt: skip
    t0 = time.monotonic()
    result = pytest_rseq.run(
        Workload.from_library(lib),
        threads=2,
        duration=0.3,
        chaos=Chaos(fork_hz=50),
        path="fallback",
        seed=4,
        evidence_cap=20,
    )
    assert time.monotonic() - t0 < HANG_LIMIT_S
    assert result.error is None or "hung" not in result.error, result.error
    result.assert_consistent()
    assert result.forks > 0
