"""Non-root paths: every probe of a privileged path says "not available, because ...".

These simulate what a plain user sees (EACCES on tracefs and cgroup files, a
non-zero uid) with monkeypatch, so they run the same as root and as a user;
CI also runs the whole suite and the gate as a freshly created user.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_rseq import gate
from pytest_rseq.errors import CapabilityMissing
from pytest_rseq.gate import report
from pytest_rseq.host import cpuset, perf
from pytest_rseq.host.capabilities import capabilities, cgroup_info, perf_tracepoints

UID = 1234


def _tracefs(tmp_path: Path) -> str:
    """A mount table with one tracefs, and that tracefs holding the rseq tracepoint."""
    root = tmp_path / "tracing"
    (root / "events" / "rseq" / "rseq_ip_fixup").mkdir(parents=True)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"nodev {root} tracefs rw,relatime 0 0\n")
    return str(mounts)


def _deny_under(monkeypatch: pytest.MonkeyPatch, prefix: str) -> list[str]:
    """Make os.stat fail with EACCES below ``prefix`` (root is never denied by chmod)."""
    denied: list[str] = []
    real = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).startswith(prefix):
            denied.append(str(path))
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    return denied


def test_tracepoint_found_through_the_mount_table(tmp_path: Path) -> None:
    assert perf.find_tracepoint(mounts=_tracefs(tmp_path)) == (True, None)


def test_unreadable_tracefs_is_not_available_with_the_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _tracefs(tmp_path)
    denied = _deny_under(monkeypatch, str(tmp_path / "tracing"))
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    found, reason = perf.find_tracepoint(mount=True, mounts=mounts)
    assert denied and not found
    assert reason == f"{tmp_path / 'tracing'} is not readable by uid {UID}"


def test_unmounted_tracefs_is_mounted_only_by_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "mounts"
    empty.write_text("proc /proc proc rw 0 0\n")
    calls: list[Path] = []

    def fake_mount(target: Path = perf.TRACEFS_MOUNT_POINT) -> str | None:
        calls.append(target)
        _tracefs(tmp_path)  # rewrites the mount table (the same file) with a tracefs
        return None

    monkeypatch.setattr(perf, "mount_tracefs", fake_mount)
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    found, reason = perf.find_tracepoint(mount=True, mounts=str(empty))
    assert (found, calls) == (False, [])
    assert reason == f"tracefs is not mounted (mounting it needs root; uid {UID})"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert perf.find_tracepoint(mount=False, mounts=str(empty))[0] is False and calls == []
    assert perf.find_tracepoint(mount=True, mounts=str(empty)) == (True, None)
    assert calls == [perf.TRACEFS_MOUNT_POINT]


def test_a_failed_mount_is_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "mounts"
    empty.write_text("")
    monkeypatch.setattr(perf, "mount_tracefs", lambda: "mounting tracefs at X failed: EPERM")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert perf.find_tracepoint(mount=True, mounts=str(empty)) == (
        False,
        "mounting tracefs at X failed: EPERM",
    )


def test_perf_status_looks_at_nothing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**kwargs: Any) -> tuple[bool, str | None]:
        raise AssertionError("tracefs probed although the cross-check was not asked for")

    monkeypatch.setattr(perf, "find_tracepoint", boom)
    monkeypatch.delenv(perf.PERF_ENV, raising=False)
    status = perf.perf_status()
    assert status["available"] is False and "not requested" in status["reason"]
    assert perf.perf_wrapper("/nonexistent") == ([], None)


def test_perf_requested_by_option_env_or_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(perf.PERF_ENV, raising=False)
    assert not perf.perf_requested()
    with perf.requested():
        assert perf.perf_requested()
        with perf.requested(False):
            assert not perf.perf_requested()
        assert perf.perf_requested()
    assert not perf.perf_requested()
    monkeypatch.setenv(perf.PERF_ENV, "1")
    assert perf.perf_requested()


def test_perf_status_says_why_when_tracefs_is_unreadable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(perf.shutil, "which", lambda name: f"/usr/bin/{name}")
    why = f"/sys/kernel/tracing is not readable by uid {UID}"
    monkeypatch.setattr(perf, "find_tracepoint", lambda **kw: (False, why))
    with perf.requested():
        status = perf.perf_status()
    assert status == {"available": False, "reason": why}


def test_capabilities_survive_eacces_on_tracefs_and_cgroups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deny_under(monkeypatch, "/sys/kernel")
    real_read = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self).startswith("/sys/fs/cgroup"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    caps = capabilities()
    assert caps["perf_tracepoints"] is False
    assert caps["cpuset_writable"] is False and caps["cpuset_reason"]
    assert perf_tracepoints() is False


def test_unwritable_cgroup_names_the_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    info = cgroup_info()
    assert info["cpuset_writable"] is False
    if info["cgroup_version"] is not None:  # a host without cgroups has nothing to deny
        assert f"uid {UID}" in info["cpuset_reason"] or "cpuset" in info["cpuset_reason"]
    with pytest.raises(CapabilityMissing, match="cpuset"):
        cpuset.create_group(sorted(os.sched_getaffinity(0)))


def test_a_probe_error_is_not_a_missing_native_core(monkeypatch: pytest.MonkeyPatch) -> None:
    caps_module = sys.modules["pytest_rseq.host.capabilities"]  # the name is also the function

    def denied() -> dict[str, Any]:
        raise PermissionError(errno.EACCES, "Permission denied", "/sys/kernel/tracing/x")

    monkeypatch.setattr(caps_module, "capabilities", denied)
    report.host_fingerprint.cache_clear()
    try:
        fp = report.host_fingerprint()
    finally:
        report.host_fingerprint.cache_clear()
    assert "native_error" not in fp and "PermissionError" in fp["probe_error"]
    assert "native core" not in report.fingerprint_lines(fp)[0]


def test_root_only_extras_are_not_tested_and_do_not_fail_the_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a plain user: cpuset and perf are NOT TESTED with the reason; exit 0 unless required."""

    def no_cpuset(*args: Any, **kwargs: Any) -> Any:
        raise CapabilityMissing(f"cpuset shifts: /sys/fs/cgroup/cpuset is not writable (uid {UID})")

    monkeypatch.setattr(cpuset, "find_host", no_cpuset)
    monkeypatch.setattr(perf, "find_tracepoint", lambda **kw: (False, "not readable by uid 1234"))
    monkeypatch.setattr(perf.shutil, "which", lambda name: f"/usr/bin/{name}")
    fp = report.host_fingerprint()
    outcomes = gate.run_gate(
        quick=True, only=["injector/cpuset", "perf/", "registration/auto"], fingerprint=fp
    )
    verdicts = {o.name: o for o in outcomes}
    assert verdicts["injector/cpuset"].verdict == gate.NOT_TESTED
    assert f"uid {UID}" in verdicts["injector/cpuset"].detail
    assert verdicts["perf/ip-fixup"].verdict == gate.NOT_TESTED
    assert "not readable by uid" in verdicts["perf/ip-fixup"].detail
    assert verdicts["registration/auto"].verdict == gate.PASS
    code, text = gate.overall(outcomes)
    assert code == gate.EXIT_PASS
    assert "2 not tested (injector/cpuset, perf/ip-fixup)" in text
    required = gate.resolve_required(["cpuset"], 2)
    code, text = gate.overall(outcomes, required=required)
    assert code == gate.EXIT_COULD_NOT_TEST
    assert "--require asks for: injector/cpuset (NOT TESTED)" in text


def test_require_names_scenarios_groups_and_short_names() -> None:
    assert gate.resolve_required(["cpuset", "perf", "injector/hotplug"], 2) == [
        "injector/cpuset",
        "perf/ip-fixup",
        "injector/hotplug",
    ]
    with pytest.raises(ValueError, match="no scenario named 'cpusets'"):
        gate.resolve_required(["cpusets"], 2)


def test_rseq_perf_option_and_ini_key_ask_for_the_cross_check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--rseq-perf`` and ``rseq_perf`` turn it on for the session only; off by default."""
    monkeypatch.delenv(perf.PERF_ENV, raising=False)
    pytester.makepyfile(
        """
        from pytest_rseq.host import perf

        def test_asked():
            assert perf.perf_requested()
        """
    )
    pytester.runpytest_inprocess("-p", "no:xdist", "--rseq-perf").assert_outcomes(passed=1)
    assert not perf.perf_requested()
    pytester.runpytest_inprocess("-p", "no:xdist").assert_outcomes(failed=1)
    pytester.makeini("[pytest]\nrseq_perf = true\n")
    pytester.runpytest_inprocess("-p", "no:xdist").assert_outcomes(passed=1)
    assert not perf.perf_requested()
