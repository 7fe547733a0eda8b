"""Registration modes: glibc, own, blocked before exec, and the after-start seccomp abort."""

from __future__ import annotations

import pytest

from pytest_rseq import CapabilityMissing, Chaos, capabilities, run
from pytest_rseq.gate.seccomp import seccomp_after_start

GLIBC_OWNS = capabilities()["owner"] == "glibc"
needs_glibc = pytest.mark.skipif(
    not GLIBC_OWNS, reason="glibc does not register rseq in this process (glibc < 2.35?)"
)


@pytest.mark.parametrize("mode", ["blocked-enosys", "blocked-eperm"])
def test_blocked_runs_on_the_fallback_path(mode: str) -> None:
    result = run("counter", threads=2, duration=0.3, registration=mode)
    result.assert_consistent()
    assert result.path == "fallback"
    assert result.registration == mode
    abi = result.details["abi"]
    assert abi["available"] == 0
    assert abi["syscall_errno"] == (38 if mode.endswith("enosys") else 1)
    assert abi["glibc_size"] == 0


@pytest.mark.parametrize("mode", ["blocked-enosys", "blocked-eperm"])
def test_blocked_under_chaos_still_falls_back(mode: str) -> None:
    result = run(
        "counter", threads=2, duration=0.3, registration=mode, chaos=Chaos(signals_hz=2000)
    )
    result.assert_consistent()
    assert result.path == "fallback" and result.signals_delivered > 0


def test_own_registration_uses_the_plugins_area() -> None:
    result = run("counter", threads=2, duration=0.3, registration="own", chaos=Chaos(churn_hz=100))
    result.assert_consistent()
    assert result.path == "rseq"
    assert result.details["owner"] == "own"
    assert result.details["abi"]["glibc_size"] == 0  # glibc's registration is off
    assert result.threads_started > result.threads  # churned threads registered again


def test_own_registration_with_fork_and_signals() -> None:
    chaos = Chaos(fork_hz=50, signals_hz=2000, cs_delay=100)
    result = run("counter", threads=2, duration=0.5, registration="own", chaos=chaos)
    result.assert_consistent()
    assert result.forks > 0 and result.aborts > 0


@needs_glibc
def test_glibc_registration_reported() -> None:
    result = run("counter", threads=2, duration=0.2, registration="glibc")
    result.assert_consistent()
    assert result.details["owner"] == "glibc"
    assert result.details["abi"]["glibc_size"] > 0


@needs_glibc
@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_seccomp_after_start_is_a_reported_abort(err: str) -> None:
    outcome = seccomp_after_start(err)
    assert outcome.outcome == "abort", outcome
    assert outcome.signal == "SIGABRT"
    assert outcome.glibc_message
    assert outcome.to_dict()["errno"] == err


def test_seccomp_after_start_without_glibc_registration_survives() -> None:
    outcome = seccomp_after_start("ENOSYS", registration="own")
    assert outcome.outcome == "survived", outcome
    assert outcome.signal is None


def test_seccomp_after_start_bad_input() -> None:
    with pytest.raises(ValueError, match="EINVAL"):
        seccomp_after_start("EINVAL")
    with pytest.raises(ValueError, match="blocked-enosys"):
        seccomp_after_start("ENOSYS", registration="blocked-enosys")


def test_rseq_asked_but_unavailable_is_a_capability_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's registration off and nobody registering: rseq never runs, so a
    pass would be a lie; run() says the capability is missing instead."""
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
    for path in ("rseq", "both"):
        with pytest.raises(CapabilityMissing, match="only the fallback path could run"):
            run("counter", threads=2, duration=0.1, path=path)
    assert run("counter", threads=2, duration=0.1, path="fallback").ok


@pytest.mark.parametrize("mode", ["blocked-enosys", "blocked-eperm"])
def test_blocked_modes_say_fallback_even_when_both_paths_were_asked(mode: str) -> None:
    result = run("counter", threads=2, duration=0.1, path="both", registration=mode)
    assert result.ok, result.describe()
    assert result.path == "fallback"
