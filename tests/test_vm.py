"""The VM runner's parts that need no VM: targets, the matrix, the gate and pytest options.

Kernel values and the x86_64 guest are in ``test_vm_guests.py``; the one test that boots a
real kernel is in ``test_vm_boot.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from vm_fakes import fake_vng

from pytest_rseq import gate
from pytest_rseq.vm import matrix, targets, x86, xdist_kernels
from pytest_rseq.vm.guest import GuestResult, GuestUnavailable

# --- targets.py -------------------------------------------------------------------------------


def test_split_values() -> None:
    assert targets.split_values(["a,b", " c ", "a", ","]) == ["a", "b", "c"]


def test_targets_order_and_labels() -> None:
    got = targets.targets(["/k/vmlinuz-6.1.0-57-amd64,6.12.117+deb12-amd64"], [])
    assert [t.label for t in got] == ["6.1.0-57-amd64", "6.12.117+deb12-amd64"]
    v2 = targets.targets(["6.1.0-57-amd64"], cgroup_v2_only=True)
    assert [t.label for t in v2] == ["6.1.0-57-amd64 v2only"]
    with pytest.raises(ValueError, match="unknown architecture 'sparc'"):
        targets.targets([], ["sparc"])


def test_arm64_absent_says_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(targets.importlib, "import_module", missing)
    (target,) = targets.targets([], ["aarch64"])
    with pytest.raises(GuestUnavailable, match=r"^arm64 guest not built in this version$"):
        target.make()


def test_arm64_guest_wired_lazily(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made: list[dict[str, Any]] = []

    class Arm64Guest:
        arch, label, python = "aarch64", "aarch64 6.1.0-57", "/usr/bin/python3"

        def __init__(self, kernel: str | None = None, cache_dir: Path | None = None) -> None:
            made.append({"kernel": kernel, "cache_dir": cache_dir})

    module = types.ModuleType(targets.ARM64_MODULE)
    module.Arm64Guest = Arm64Guest  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, targets.ARM64_MODULE, module)
    plain, pinned = targets.targets(["6.1.0-57-cloud-arm64"], []), targets.targets([], ["aarch64"])
    assert [t.label for t in plain] == ["aarch64 6.1.0-57-cloud-arm64"]
    assert [t.label for t in pinned] == ["aarch64"]
    assert made == []  # nothing built before make()
    assert isinstance(plain[0].make(), Arm64Guest) and isinstance(pinned[0].make(), Arm64Guest)
    assert made == [
        {"kernel": "6.1.0-57-cloud-arm64", "cache_dir": None},
        {"kernel": None, "cache_dir": None},
    ]


# --- matrix.py --------------------------------------------------------------------------------


def _scenarios(**verdicts: str) -> list[dict[str, Any]]:
    return [
        {"name": n.replace("__", "/"), "verdict": v, "detail": f"why {v}"}
        for n, v in verdicts.items()
    ]


def _host() -> matrix.Column:
    fp = {"kernel": "6.18.0", "machine": "x86_64", "glibc": "glibc 2.36", "feature_size": 28,
          "cgroup_version": 1, "cpuset_writable": True}  # fmt: skip
    scen = _scenarios(registration__auto="PASS", path__both_mm_cid="PASS")
    outcomes = [gate.Outcome(s["name"], "x", s["verdict"], s["detail"]) for s in scen]
    return matrix.host_column(fp, outcomes, 0, "PASS", 20.0)


class FakeGuest:
    """A guest whose ``run`` writes a gate report instead of booting anything."""

    arch, python = "x86_64", "/venv/bin/python"

    def __init__(self, label: str, doc: dict[str, Any] | None, returncode: int = 0) -> None:
        self.label, self.doc, self.returncode = label, doc, returncode
        self.commands: list[str] = []

    def check(self) -> None:
        pass

    def run(self, command: str, *, timeout_s: float) -> GuestResult:
        self.commands.append(command)
        out = Path(x86.X86Guest.prepare_out())
        if self.doc is not None:
            (out / matrix.REPORT_NAME).write_text(json.dumps(self.doc))
        return GuestResult(self.returncode, "booted\nTraceback: boom\n", out, 31.0)


def _doc(code: int, **verdicts: str) -> dict[str, Any]:
    fp = {"kernel": "6.1.0-57-amd64", "glibc": "glibc 2.36", "feature_size": 0,
          "cgroup_version": 2, "cpuset_writable": True}  # fmt: skip
    return {"exit_code": code, "verdict": "PASS", "fingerprint": fp,
            "scenarios": _scenarios(**verdicts)}  # fmt: skip


def test_matrix_columns_table_and_exit() -> None:
    ok = FakeGuest("6.1.0-57-amd64", _doc(0, registration__auto="PASS", path__both_mm_cid="N/A"))
    broken = FakeGuest("6.12-x", None, returncode=1)

    def unavailable() -> Any:
        raise GuestUnavailable("qemu-system-x86_64 not found: install QEMU")

    chosen = [
        targets.Target("6.1.0-57-amd64", lambda: ok),
        targets.Target("6.12-x", lambda: broken),
        targets.Target("/no/vmlinuz", unavailable),
    ]
    columns = matrix.run_matrix(chosen, ["--quick", "--only", "a b"], _host())
    assert ok.commands == [
        "/venv/bin/python -m pytest_rseq --quick --only 'a b' --json \"$PRSEQ_GUEST_OUT/gate.json\""
    ]
    assert [c.exit_code for c in columns] == [0, 0, 2, 2]
    assert "no report" in columns[2].verdict and "Traceback: boom" in columns[2].verdict
    assert columns[3].unavailable == "qemu-system-x86_64 not found: install QEMU"
    assert matrix.combined_exit(columns) == 2
    assert matrix.combined_exit(columns[:2]) == 0
    lines = matrix.matrix_table(columns)
    assert lines[0].split() == [
        "scenario",
        "host",
        "6.18.0",
        "6.1.0-57-amd64",
        "6.12-x",
        "/no/vmlinuz",
    ]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    assert rows["registration/auto"] == ["PASS", "PASS", "-", "-"]
    assert rows["path/both_mm_cid"] == ["PASS", "N/A", "-", "-"]
    assert rows["cgroup"] == ["v1", "v2", "-", "-"]
    assert rows["exit"] == ["0", "0", "2", "2"]
    text = "\n".join(matrix.notes(columns))
    assert "/no/vmlinuz: COULD NOT START: qemu-system-x86_64 not found" in text
    assert "6.1.0-57-amd64: n/a: path/both_mm_cid: why N/A" in text
    data = columns[1].to_dict()
    assert data["kernel"] == "6.1.0-57-amd64" and data["cgroup_version"] == 2
    assert data["scenarios"][1]["verdict"] == "N/A"
    json.dumps([c.to_dict() for c in columns])


def test_a_failing_guest_fails_the_matrix() -> None:
    bad = FakeGuest("k", _doc(1, canary__racy="FAIL"), returncode=1)
    columns = matrix.run_matrix([targets.Target("k", lambda: bad)], [], _host())
    assert [c.exit_code for c in columns] == [0, 1] and matrix.combined_exit(columns) == 1


def test_guest_exit_disagreeing_with_report_is_not_a_pass() -> None:
    odd = FakeGuest("k", _doc(0, registration__auto="PASS"), returncode=139)
    columns = matrix.run_matrix([targets.Target("k", lambda: odd)], [], _host())
    assert columns[1].exit_code == 2
    crashed_fail = FakeGuest("k", _doc(1, canary__racy="FAIL"), returncode=139)
    columns = matrix.run_matrix([targets.Target("k", lambda: crashed_fail)], [], _host())
    assert columns[1].exit_code == 1  # a failure stays a failure


# --- gate: not applicable is a result ---------------------------------------------------------


def test_mm_cid_scenarios_are_not_applicable_without_mm_cid() -> None:
    mm = next(s for s in gate.scenarios(2) if s.name == "invariants/mm_cid")
    fp = {"rseq_available": True, "mm_cid_usable": False, "feature_size": 0}
    outcome = gate.run_scenario(mm, fp, duration=0.1, seed=1)
    assert outcome.verdict == gate.NA and outcome.result is None
    assert outcome.detail == "kernel feature size 20 (no AT_RSEQ_FEATURE_SIZE): no mm_cid"
    code, text = gate.overall([gate.Outcome("a/b", "x", gate.PASS, ""), outcome])
    assert code == gate.EXIT_PASS and "1 n/a on this kernel" in text
    # A required scenario that does not apply was not tested.
    assert gate.overall([outcome], required=["invariants/mm_cid"])[0] == gate.EXIT_COULD_NOT_TEST


# --- the gate's command line ------------------------------------------------------------------


def _gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_rseq", *args], capture_output=True, text=True, check=False,
        timeout=600,
    )  # fmt: skip


def test_gate_unstartable_targets_exit_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "r.json"
    missing = tmp_path / "vmlinuz-6.1.0-57-amd64"
    got = _gate("--quick", "--only", "registration/auto", "--kernel", str(missing),
                "--json", str(report))  # fmt: skip
    assert got.returncode == 2, got.stdout + got.stderr
    assert f"6.1.0-57-amd64: COULD NOT START: kernel '{missing}': no such file" in got.stdout
    assert "matrix: exit 2" in got.stdout
    doc = json.loads(report.read_text())
    assert [t["label"] for t in doc["targets"]][1:] == ["6.1.0-57-amd64"]
    assert [t["exit_code"] for t in doc["targets"]] == [0, 2]
    assert doc["targets"][0]["label"].startswith("host ") and doc["exit_code"] == 2


def test_gate_rejects_an_unknown_arch() -> None:
    got = _gate("--arch", "sparc")
    assert got.returncode == 64 and "invalid choice: 'sparc'" in got.stderr


def test_gate_args_a_guest_repeats() -> None:
    from pytest_rseq.__main__ import parse_args
    from pytest_rseq.vm import cli

    args = parse_args(["--quick", "--seed", "7", "--only", "canary", "--kernel", "a,b",
                       "--json", "x.json", "--vm-cgroup-v2-only"])  # fmt: skip
    assert cli.guest_gate_args(args) == ["--quick", "--seed", "7", "--only", "canary"]
    assert cli.target_argv(args) == ["--kernel=a,b", "--vm-cgroup-v2-only"]


# --- pytest: --rseq-kernel --------------------------------------------------------------------


def test_gateway_specs() -> None:
    specs = xdist_kernels.gateway_specs(["/k/vmlinuz-6.1.0-57-amd64"], cgroup_v2_only=True)
    assert specs[0] == "popen//id=host"
    assert specs[1] == (
        f"popen//id=6.1.0-57-amd64//python={sys.executable} -m pytest_rseq.vm.gateway "
        "--cgroup-v2-only /k/vmlinuz-6.1.0-57-amd64"
    )
    with pytest.raises(pytest.UsageError, match="'//' in a path"):
        xdist_kernels.gateway_specs(["/a//vmlinuz"])


def test_rseq_kernel_needs_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    got = pytester.runpytest("-p", "no:xdist", "--rseq-kernel=6.1.0-57-amd64")
    assert got.ret == pytest.ExitCode.USAGE_ERROR
    got.stderr.fnmatch_lines(["*--rseq-kernel needs pytest-xdist active*"])


def test_rseq_arch_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    got = pytester.runpytest("--rseq-arch=sparc")
    assert got.ret == pytest.ExitCode.USAGE_ERROR
    got.stderr.fnmatch_lines(["*--rseq-arch: invalid value 'sparc'*"])


def test_rseq_kernel_sets_up_workers(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        @pytest.hookimpl(trylast=True)
        def pytest_configure(config):
            print("TX", config.option.tx, "DIST", config.option.dist)
            pytest.exit("configured", returncode=0)
        """
    )
    got = pytester.runpytest_subprocess("--rseq-kernel=/k/vmlinuz-6.1.0-57-amd64", "-s")
    got.stdout.fnmatch_lines(["*TX*popen//id=host*popen//id=6.1.0-57-amd64//python=*DIST each*"])


def test_gateway_command_reports_a_missing_kernel(tmp_path: Path) -> None:
    missing = str(tmp_path / "vmlinuz-none")
    got = subprocess.run(
        [sys.executable, "-m", "pytest_rseq.vm.gateway", missing, "-u", "-c", "pass"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert got.returncode == 2 and got.stdout == ""
    assert f"cannot start the guest for '{missing}'" in got.stderr


def test_rseq_kernel_worker_runs_through_the_gateway(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole ``--rseq-kernel`` path with a ``vng`` that runs the guest command here:
    the spec, the gateway's quoting and the stdin/stdout execnet needs (the VM itself is
    covered by ``test_vm_boot.py``)."""
    if not any(Path(p).exists() for p in x86.UDEVD):
        pytest.skip("udev not installed here: X86Guest.check() refuses before the fake vng runs")
    fake = Path(fake_vng(tmp_path)).parent
    for tool in ("qemu-system-x86_64", "depmod"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    image = tmp_path / "vmlinuz-6.9.0-fake"
    image.write_bytes(b"x")
    pytester.makepyfile(
        "import os\n\ndef test_a():\n    assert os.environ.get('PRSEQ_GUEST_OUT')\n"
    )
    got = pytester.runpytest_subprocess("-v", f"--rseq-kernel={image}")
    got.stdout.fnmatch_lines_random(
        ["*[[]6.9.0-fake[]]*PASSED*test_a*", "*[[]host[]]*FAILED*test_a*"]
    )
    assert got.ret == pytest.ExitCode.TESTS_FAILED  # the host worker has no guest folder


FAKE_ARM64_CONFTEST = """
import os, subprocess, sys, tempfile, types
from pathlib import Path
from pytest_rseq.vm.guest import GuestResult

class Arm64Guest:
    arch, label, python = "aarch64", "aarch64-fake", sys.executable

    def __init__(self, kernel=None, cache_dir=None):
        pass

    def check(self):
        pass

    def run(self, command, *, timeout_s):
        out = Path(tempfile.mkdtemp())
        env = dict(os.environ, PRSEQ_GUEST_OUT=str(out), IN_FAKE_GUEST="1")
        got = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
        return GuestResult(got.returncode, got.stdout + got.stderr, out, 0.1)

module = types.ModuleType("pytest_rseq.vm.arm64")
module.Arm64Guest = Arm64Guest
sys.modules["pytest_rseq.vm.arm64"] = {module}
"""


def test_rseq_arch_merges_the_guest_reports(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_ARM64_CONFTEST.format(module="module"))
    pytester.makepyfile(
        "import os\n\ndef test_a():\n    pass\n\n"
        "def test_b():\n    assert not os.environ.get('IN_FAKE_GUEST'), 'fails in the guest'\n"
    )
    junit = pytester.path / "junit.xml"
    got = pytester.runpytest_subprocess("-v", "--rseq-arch=aarch64", f"--junitxml={junit}")
    got.stdout.fnmatch_lines_random(
        [
            "*::test_a PASSED*",
            "*::test_b PASSED*",
            "*::test_a[[]aarch64-fake[]] PASSED*",
            "*::test_b[[]aarch64-fake[]] FAILED*",
            "*fails in the guest*",
            "*1 failed, 3 passed*",
        ]
    )
    assert got.ret == pytest.ExitCode.TESTS_FAILED
    assert 'name="test_b[aarch64-fake]"' in junit.read_text()


def test_rseq_arch_without_the_guest_fails_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_ARM64_CONFTEST.format(module="None"))
    pytester.makepyfile("def test_a():\n    pass\n")
    got = pytester.runpytest_subprocess("--rseq-arch=aarch64")
    got.stdout.fnmatch_lines(
        [
            "*guest aarch64: could not start: arm64 guest not built in this version*",
            "*1 failed, 1 passed*",
        ]
    )


def test_the_real_vm_test_fails_instead_of_skipping_where_a_vm_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_vm_boot import REQUIRED_ENV, cannot_boot

    monkeypatch.delenv(REQUIRED_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no kernel image: x"):
        cannot_boot("no kernel image: x")
    monkeypatch.setenv(REQUIRED_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"no kernel image: x \(PYTEST_RSEQ_VM_REQ"):
        cannot_boot("no kernel image: x")


@pytest.mark.parametrize(
    ("fp", "cell"),
    [
        ({"feature_size": 0, "rseq_available": True}, "20 (no AT_RSEQ_FEATURE_SIZE)"),
        ({"feature_size": 28, "rseq_available": True}, "28"),
        ({"feature_size": 0, "rseq_available": False}, "0"),
        ({}, "-"),
    ],
)
def test_the_feature_size_row_shows_a_pre_6_3_kernels_20_bytes(
    fp: dict[str, Any], cell: str
) -> None:
    # A 6.1 guest's fingerprint has feature size 0 (no auxv entry); the row said "0".
    column = matrix.Column("6.1.0-57-amd64", "x86_64", 0, "PASS", fingerprint=fp)
    (row,) = [ln for ln in matrix.matrix_table([column]) if ln.startswith("feature size")]
    assert row.split(None, 2)[2].strip() == cell
