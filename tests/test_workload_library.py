"""Workload.from_library: bad libraries give clear errors naming the library and the
callback; failures inside a workload come back as results, with the name; a library
with initial-exec TLS that dlopen cannot place is preloaded."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import pytest_rseq
from pytest_rseq import Workload, WorkloadError

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")

# A minimal workload (a shared atomic counter: correct on both paths). The
# macros turn it into each kind of broken library.
SOURCE = r"""
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include "pytest_rseq.h"

#ifndef ABI
#define ABI PRSEQ_ABI_VERSION
#endif
#ifndef OP_RESULT
#define OP_RESULT 0
#endif

static unsigned long long count;
#ifdef BIG_TLS
static __thread __attribute__((tls_model("initial-exec"), aligned(1024))) char big_tls[32];
#endif

static void *create(uint32_t n) {
    (void)n;
#ifdef CREATE_FAILS
    return NULL;
#endif
    count = 0;
    return &count;
}
#ifdef FORKS_SLEEPER
#include <unistd.h>
static int forked;
#endif
static int op(void *s, struct prseq_thread *t) {
    (void)t;
#ifdef FORKS_SLEEPER
    /* Once: start a process that outlives the op and the run, holding the
     * child's stdout and stderr. */
    if (!__atomic_exchange_n(&forked, 1, __ATOMIC_ACQ_REL) && fork() == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
#endif
#ifdef OP_CRASHES
    if (__atomic_load_n((unsigned long long *)s, __ATOMIC_RELAXED) > 1000) raise(SIGSEGV);
#endif
#ifdef BIG_TLS
    big_tls[0]++;
#endif
    __atomic_fetch_add((unsigned long long *)s, 1, __ATOMIC_RELAXED);
    return OP_RESULT;
}
static uint64_t total(void *s) { return *(unsigned long long *)s; }
static void destroy(void *s) { (void)s; }

#ifdef SELF_REGISTER
/* librseq style: use glibc's area if it registered one, else register our own. */
#include <sys/syscall.h>
#include <unistd.h>
static __thread struct prseq_rseq_area own_area __attribute__((aligned(32)));
static __thread int registered;

static int self_init(void *s, struct prseq_thread *t) {
    (void)s;
    t->local = prseq_glibc_rseq_area();
    if (t->local)
        return 0;
    own_area.cpu_id = (uint32_t)-1;
    if (syscall(__NR_rseq, &own_area, 32, 0, PRSEQ_RSEQ_SIG) != 0)
        return errno == ENOSYS || errno == EPERM ? 0 : -errno;
    registered = 1;
    t->local = &own_area;
    return 0;
}
static void self_exit(void *s, struct prseq_thread *t) {
    (void)s; (void)t;
    if (registered)
        syscall(__NR_rseq, &own_area, 32, 1, PRSEQ_RSEQ_SIG);
    registered = 0;
}
/* The kernel keeps cpu_id of a registered area current: proof of a live area. */
static int self_op(void *s, struct prseq_thread *t) {
    struct prseq_rseq_area *a = t->local;
    if (!a)
        return -ENOSYS;
    if ((int32_t)__atomic_load_n(&a->cpu_id, __ATOMIC_RELAXED) < 0)
        return -ENODEV;
    __atomic_fetch_add((unsigned long long *)s, 1, __ATOMIC_RELAXED);
    return 0;
}
#define INIT self_init
#define EXIT self_exit
#define OP self_op
#else
#define INIT NULL
#define EXIT NULL
#define OP op
#endif

static struct prseq_workload w = {
    .abi_version = ABI, .name = "tiny", .create = create, .thread_init = INIT, .op = OP,
    .fallback_op = op, .thread_exit = EXIT, .total = total, .destroy = destroy,
};

const struct prseq_workload *tiny_workload(void) {
#ifdef NULL_FIELD
    w.NULL_FIELD = NULL;
#endif
#ifdef RETURNS_NULL
    return NULL;
#endif
    return &w;
}
"""


def build(tmp_path: Path, name: str, *defines: str) -> Path:
    src = tmp_path / "tiny.c"
    src.write_text(SOURCE)
    out = tmp_path / f"lib{name}.so"
    cmd = [
        CC,
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
        f"-I{pytest_rseq.get_include()}",
        *[f"-D{d}" for d in defines],
        str(src),
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    return out


def run(lib: Path, symbol: str = "tiny_workload", **kwargs: object) -> pytest_rseq.StressResult:
    options = {"threads": 2, "duration": 0.2, "evidence_cap": 1, **kwargs}
    return pytest_rseq.run(Workload.from_library(lib, symbol), **options)  # type: ignore[arg-type]


def assert_ran_clean(result: pytest_rseq.StressResult) -> None:
    """The library loaded and ran with nothing wrong. The tiny op has no rseq
    section, so on the rseq path nothing can abort: that run is no evidence."""
    assert result.ops > 0 and result.lost == 0 and result.error is None, result.describe()
    assert result.verdict in ("ok", "no-evidence"), result.describe()
    if result.path == "rseq":
        assert result.verdict == "no-evidence", result.describe()
        assert "aborts" in result.details["evidence_missing"]


def test_a_good_library_runs(tmp_path: Path) -> None:
    result = run(build(tmp_path, "good"))
    assert_ran_clean(result)
    assert result.ops > 0 and result.workload == "libgood.so:tiny_workload"


def test_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.so.*does not exist"):
        Workload.from_library(tmp_path / "missing.so")


def test_a_file_that_is_no_library_is_a_workload_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.so"
    junk.write_text("not a library\n")
    with pytest.raises(WorkloadError, match=r"cannot load .*junk\.so"):
        run(junk)


def test_missing_symbol_is_a_workload_error(tmp_path: Path) -> None:
    lib = build(tmp_path, "good")
    with pytest.raises(WorkloadError, match=r"libgood\.so has no symbol no_such_symbol"):
        run(lib, "no_such_symbol")


def test_wrong_abi_version_is_a_workload_error(tmp_path: Path) -> None:
    lib = build(tmp_path, "abi7", "ABI=7")
    with pytest.raises(WorkloadError, match=r"libabi7\.so: tiny_workload\(\).* abi_version 7"):
        run(lib)


@pytest.mark.parametrize("field", ["name", "create", "op", "fallback_op", "total", "destroy"])
def test_null_required_field_is_a_workload_error(tmp_path: Path, field: str) -> None:
    lib = build(tmp_path, f"null_{field}", f"NULL_FIELD={field}")
    with pytest.raises(
        WorkloadError, match=rf"libnull_{field}\.so: .*required field {field} is NULL"
    ):
        run(lib)


def test_symbol_returning_null_is_a_workload_error(tmp_path: Path) -> None:
    lib = build(tmp_path, "retnull", "RETURNS_NULL")
    with pytest.raises(WorkloadError, match=r"libretnull\.so: tiny_workload\(\) returned NULL"):
        run(lib)


def test_bad_symbol_name_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a C identifier"):
        Workload.from_library(build(tmp_path, "good"), "no-such symbol")


def test_op_error_is_reported_with_the_name(tmp_path: Path) -> None:
    result = run(build(tmp_path, "einval", "OP_RESULT=-EINVAL"))
    assert not result.ok
    assert result.error and "tiny: op returned -22" in result.error


def test_create_failure_is_reported_with_the_name(tmp_path: Path) -> None:
    result = run(build(tmp_path, "nocreate", "CREATE_FAILS"))
    assert not result.ok
    assert result.error and "tiny: create(2) returned NULL" in result.error


def test_a_crashing_workload_is_reported_with_the_name(tmp_path: Path) -> None:
    result = run(build(tmp_path, "crash", "OP_CRASHES"))
    assert not result.ok and result.crash == "SIGSEGV"
    assert result.workload == "libcrash.so:tiny_workload"
    assert "libcrash.so" in result.describe() and "SIGSEGV" in result.describe()


def test_big_aligned_tls_is_preloaded_automatically(tmp_path: Path) -> None:
    result = run(build(tmp_path, "bigtls", "BIG_TLS"))
    assert_ran_clean(result)
    assert result.ops > 0


def test_big_aligned_tls_without_preload_says_how_to_fix_it(tmp_path: Path) -> None:
    lib = build(tmp_path, "bigtls", "BIG_TLS")
    with pytest.raises(WorkloadError, match=r"static TLS block.*preload=True"):
        pytest_rseq.run(Workload.from_library(lib, "tiny_workload", preload=False), duration=0.2)
    assert_ran_clean(
        pytest_rseq.run(
            Workload.from_library(lib, "tiny_workload", preload=True),
            threads=2,
            duration=0.2,
            evidence_cap=1,
        )
    )


def test_big_aligned_tls_in_process_says_to_isolate(tmp_path: Path) -> None:
    lib = build(tmp_path, "bigtls", "BIG_TLS")
    with pytest.raises(WorkloadError, match=r"static TLS block.*isolate=True"):
        pytest_rseq.run(Workload.from_library(lib, "tiny_workload"), duration=0.2, isolate=False)


def test_preload_must_be_a_bool_or_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preload must be"):
        Workload.from_library(build(tmp_path, "good"), preload="yes")  # type: ignore[arg-type]


def test_a_bad_library_fails_only_its_test_under_pytest(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    lib = build(tmp_path, "abi7", "ABI=7")
    pytester.makepyfile(
        f"""
        from pytest_rseq import Workload

        def test_bad(rseq_stress):
            rseq_stress(Workload.from_library({str(lib)!r}, "tiny_workload"), duration=0.2)

        def test_after():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*WorkloadError*libabi7.so*abi_version 7*"])


def test_a_self_registering_library_runs_in_own_mode(tmp_path: Path) -> None:
    """registers_itself=True: pytest-rseq leaves the registration to the library."""
    lib = build(tmp_path, "selfreg", "SELF_REGISTER")
    wl = Workload.from_library(lib, "tiny_workload", registers_itself=True)
    result = pytest_rseq.run(wl, registration="own", threads=2, duration=0.2, evidence_cap=1)
    assert_ran_clean(result)
    assert result.path == "rseq" and result.details["owner"] == "workload"
    with_glibc = pytest_rseq.run(wl, threads=2, duration=0.2, evidence_cap=1)
    assert_ran_clean(with_glibc)


def test_a_self_registering_library_without_the_flag_is_refused(tmp_path: Path) -> None:
    """Two registrants for one thread: the harness's area, then the library's."""
    lib = build(tmp_path, "selfreg", "SELF_REGISTER")
    result = pytest_rseq.run(
        Workload.from_library(lib, "tiny_workload"), registration="own", threads=2, duration=0.2
    )
    assert not result.ok
    assert result.error and "tiny: thread_init failed" in result.error
    # The kernel refuses a second, different area for the thread with EINVAL.
    assert "invalid argument" in result.error.lower()


def test_registers_itself_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registers_itself must be"):
        Workload.from_library(build(tmp_path, "good"), registers_itself=1)  # type: ignore[arg-type]


def test_a_workload_that_never_completes_an_op_is_not_ok(tmp_path: Path) -> None:
    """op returning 1 ("not done, retry") forever: zero ops prove nothing."""
    result = run(build(tmp_path, "retry", "OP_RESULT=1"))
    assert result.ops == 0
    assert not result.ok
    assert any("no op completed" in r for r in result.reasons)


def test_a_process_the_op_leaves_running_does_not_hang_the_run(
    tmp_path: Path, process_tag: Callable[..., list[int]]
) -> None:
    """The result comes when the child exits, not when every holder of its output is gone:
    a ``sleep 60`` forked by the op keeps the child's stdout/stderr open past the run."""
    result = run(build(tmp_path, "sleeper", "FORKS_SLEEPER"), duration=0.3)
    assert result.crash is None, result.details
    assert_ran_clean(result)
    # The sleeper sat in the child's process group, which is SIGKILLed after the
    # run; it may take a moment to go.
    assert process_tag(within_s=5.0) == []
