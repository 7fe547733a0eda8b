"""Bad Chaos input names the field; non-root and missing capabilities give clear reasons."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from pytest_rseq import CapabilityMissing, Chaos, run
from pytest_rseq.engine.chaos import LIMITS
from pytest_rseq.host import cpuset, hotplug

FIELDS = [f.name for f in fields(Chaos)]


def test_every_field_has_a_limit() -> None:
    assert set(FIELDS) == set(LIMITS)


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize(
    "bad", [-1, -0.5, math.nan, math.inf, -math.inf, "10", None, True, [1]], ids=repr
)
def test_bad_value_names_the_field(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"Chaos\.{name}"):
        Chaos(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FIELDS)
def test_absurd_value_names_the_field_and_limit(name: str) -> None:
    with pytest.raises(ValueError, match=rf"Chaos\.{name}=.*limit"):
        Chaos(**{name: LIMITS[name] * 10})


def test_oversubscribe_zero_and_fractional_cs_delay() -> None:
    with pytest.raises(ValueError, match=r"Chaos\.oversubscribe"):
        Chaos(oversubscribe=0)
    with pytest.raises(ValueError, match=r"Chaos\.cs_delay"):
        Chaos(cs_delay=1.5)


def test_limits_themselves_are_accepted() -> None:
    Chaos(**LIMITS)


def test_default_is_valid_and_needs_no_privilege() -> None:
    default = Chaos.default()
    assert default.hotplug_hz == 0  # hotplug is opt-in only
    assert default.cpuset_hz == 0  # cpusets need root: the default runs anywhere
    assert default.oversubscribe > 1 or default.affinity_hz > 0
    assert json.loads(json.dumps(default.to_dict())) == default.to_dict()


def test_chaos_must_be_a_chaos() -> None:
    with pytest.raises(ValueError, match="chaos must be a Chaos"):
        run("counter", chaos={"signals_hz": 10})  # type: ignore[arg-type]


@pytest.mark.parametrize("chaos", [Chaos(cpuset_hz=10), Chaos(hotplug_hz=1)])
def test_machine_wide_injectors_need_isolation(chaos: Chaos) -> None:
    with pytest.raises(ValueError, match="isolate=True"):
        run("counter", threads=1, duration=0.1, chaos=chaos, isolate=False)


# ---- non-root: clear skip reasons ------------------------------------------------

NOBODY = 65534


def _as_nobody(code: str) -> str:
    """Run ``code`` in a forked copy of this process that dropped root; return its output.

    A fork (not a new interpreter): the interpreter binary need not be
    readable by nobody, and everything is already imported.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the nobody user")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        status = 1
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(textwrap.dedent(code), {})
            os.write(write_fd, buf.getvalue().encode())
            status = 0
        except BaseException as exc:
            os.write(write_fd, f"error: {exc!r}".encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.strip()


def test_non_root_cpuset_is_a_capability_missing_with_reason() -> None:
    out = _as_nobody(
        """
        from pytest_rseq import CapabilityMissing, Chaos, run
        try:
            run("counter", threads=2, duration=0.2, chaos=Chaos(cpuset_hz=100))
        except CapabilityMissing as exc:
            print("missing:", exc)
        """
    )
    assert out.startswith("missing:"), out
    assert "cpuset" in out and ("root" in out or "not writable" in out)


def test_non_root_hotplug_is_a_capability_missing_with_reason() -> None:
    out = _as_nobody(
        """
        from pytest_rseq import CapabilityMissing, Chaos, run
        try:
            run("counter", threads=2, duration=0.2, chaos=Chaos(hotplug_hz=1))
        except CapabilityMissing as exc:
            print("missing:", exc)
        """
    )
    assert out == f"missing: CPU hotplug needs root (uid {NOBODY})"


def test_non_root_capabilities_report_cpusets_not_writable() -> None:
    out = _as_nobody(
        """
        import json
        from pytest_rseq import capabilities
        c = capabilities()
        print(json.dumps([c["cpuset_writable"], c["cpuset_reason"]]))
        """
    )
    writable, reason = json.loads(out)
    assert writable is False and "cpuset" in reason


def test_no_cpuset_controller_reason(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    v2 = tmp_path / "unified"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("memory pids\n")
    mounts.write_text(f"cgroup2 {v2} cgroup2 rw 0 0\n")
    self_cg = tmp_path / "cgroup"
    self_cg.write_text("0::/\n")
    with pytest.raises(CapabilityMissing, match="no cpuset controller"):
        cpuset.find_host(str(mounts), str(self_cg))
    mounts.write_text("")
    with pytest.raises(CapabilityMissing, match="no cgroup hierarchy"):
        cpuset.find_host(str(mounts), str(self_cg))


def test_v2_without_cpuset_in_parent_subtree_control(tmp_path: Path) -> None:
    v2 = tmp_path / "unified"
    (v2 / "ci").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpuset memory\n")
    (v2 / "ci" / "cgroup.subtree_control").write_text("memory\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {v2} cgroup2 rw 0 0\n")
    self_cg = tmp_path / "cgroup"
    self_cg.write_text("0::/ci\n")
    with pytest.raises(CapabilityMissing, match="subtree_control"):
        cpuset.find_host(str(mounts), str(self_cg))


def test_v2_group_layout_on_a_fake_tree(tmp_path: Path) -> None:
    """This machine has no v2 cpuset controller: check the v2 write sequence on a fake tree."""
    base = tmp_path / "ci"
    base.mkdir()
    (base / "cpuset.cpus.effective").write_text("0-3\n")
    host = cpuset.CpusetHost(2, base)
    group = cpuset.create_group([0, 1, 2, 3], host)
    assert group.version == 2
    assert group.path.name.startswith(f"{cpuset.PREFIX}{os.getpid()}-")
    assert (group.path / "cgroup.subtree_control").read_text() == "+cpuset"
    assert (group.cpus_dir / "cgroup.type").read_text() == "threaded"
    assert (group.cpus_dir / "cpuset.cpus").read_text() == "0,1,2,3"
    assert group.tasks == group.cpus_dir / "cgroup.threads"
    assert group.procs == group.path / "cgroup.procs"
    assert "0,2" in group.choices  # sparse list where CPUs allow


def _v2_without_cpuset() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] == "cgroup2":
            root = Path(parts[1])
            try:
                controllers = (root / "cgroup.controllers").read_text().split()
            except OSError:  # a mount hidden by another one mounted over it
                continue
            if "cpuset" not in controllers:
                return root
    return None


def test_v2_setup_failure_on_a_real_tree_leaves_no_group() -> None:
    """On a real v2 hierarchy without the cpuset controller, ``+cpuset`` is refused:
    the group made for the run must be gone and the reason clear."""
    root = _v2_without_cpuset()
    if root is None:
        pytest.skip("needs a cgroup v2 hierarchy without the cpuset controller")
    if not os.access(root, os.W_OK):
        pytest.skip(f"{root} is not writable by uid {os.geteuid()} (making a group needs root)")
    before = sorted(root.glob(f"{cpuset.PREFIX}*"))
    with pytest.raises(CapabilityMissing, match=r"setting up .* failed"):
        cpuset.create_group([0, 1], cpuset.CpusetHost(2, root))
    assert sorted(root.glob(f"{cpuset.PREFIX}*")) == before


def test_cpu_choices() -> None:
    assert cpuset.cpu_choices([0, 1]) == ("0", "1", "0,1")
    assert cpuset.cpu_choices([0, 2, 5]) == ("0", "2", "5", "0,5", "0,2,5")
    with pytest.raises(CapabilityMissing, match="at least 2"):
        cpuset.cpu_choices([3])
    assert cpuset.parse_cpu_list("0-2,5\n") == [0, 1, 2, 5]


# ---- hotplug bookkeeping on a fake sysfs ------------------------------------------


def _fake_sysfs(tmp_path: Path, states: dict[int, str]) -> Path:
    sysfs = tmp_path / "cpu"
    for cpu, state in states.items():
        (sysfs / f"cpu{cpu}").mkdir(parents=True)
        if cpu:
            (sysfs / f"cpu{cpu}" / "online").write_text(state + "\n")
    return sysfs


def test_hotplug_guard_restores_after_an_exception(tmp_path: Path) -> None:
    sysfs = _fake_sysfs(tmp_path, {0: "1", 1: "1", 2: "1"})
    state = tmp_path / "state"
    assert hotplug.hotpluggable({0, 1, 2}, sysfs) == [1, 2]
    with pytest.raises(RuntimeError), hotplug.guard([1, 2], sysfs, state) as online:
        assert online == [1, 2]
        assert len(list(state.glob("hotplug-*.json"))) == 1  # recorded before any change
        (sysfs / "cpu2" / "online").write_text("0")
        raise RuntimeError("the run crashed")
    assert (sysfs / "cpu2" / "online").read_text().strip() == "1"
    assert list(state.glob("hotplug-*.json")) == []


def test_hotplug_guard_skips_cpus_already_offline(tmp_path: Path) -> None:
    """A CPU another run holds offline is neither taken nor "restored" to offline."""
    sysfs = _fake_sysfs(tmp_path, {0: "1", 1: "0", 2: "1"})
    with hotplug.guard([1, 2], sysfs, tmp_path / "state") as online:
        assert online == [2]
    with (
        pytest.raises(CapabilityMissing, match="none of CPUs"),
        hotplug.guard([1], sysfs, tmp_path / "state"),
    ):
        pass


def test_hotplug_state_of_a_dead_owner_is_restored_at_next_start(tmp_path: Path) -> None:
    sysfs = _fake_sysfs(tmp_path, {0: "1", 1: "1"})
    state = tmp_path / "state"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = hotplug.record([1], sysfs, state)
    path.rename(state / f"hotplug-{int(dead.stdout)}.json")
    (sysfs / "cpu1" / "online").write_text("0")  # the owner died with CPU 1 offline
    assert hotplug.restore_stale(sysfs, state) == [1]
    assert (sysfs / "cpu1" / "online").read_text().strip() == "1"
    assert list(state.iterdir()) == []


@pytest.mark.usefixtures("real_hotplug")
def test_real_hotplug_run_restores_every_cpu() -> None:
    online = Path("/sys/devices/system/cpu/online").read_text()
    affinity = os.sched_getaffinity(0)
    result = run("counter", threads=2, duration=1.0, chaos=Chaos(hotplug_hz=4))
    result.assert_consistent()
    assert result.details["hotplug_events"] > 0
    assert Path("/sys/devices/system/cpu/online").read_text() == online
    assert os.sched_getaffinity(0) == affinity


def test_native_hotplug_injector_on_a_fake_tree(tmp_path: Path) -> None:
    """The native injector alternates offline/online and brings its CPU back at teardown.

    Runs against a fake ``cpuN/online`` tree, so the real CPUs stay untouched.
    """
    from pytest_rseq.engine.runner import run_in_process
    from pytest_rseq.engine.spec import RunSpec
    from pytest_rseq.host.prep import HostPrep

    sysfs = _fake_sysfs(tmp_path, {0: "1", 1: "1"})
    spec = RunSpec.build(
        "counter",
        threads=2,
        duration=0.3,
        chaos=Chaos(hotplug_hz=10),
        seed=3,
    )
    host = HostPrep(hotplug_cpus=(1,), hotplug_root=str(sysfs))
    raw = run_in_process(spec, host)["runs"]["rseq"]
    assert raw["error"] is None
    assert raw["hotplug_events"] >= 2  # at least one offline and the online after it
    assert raw["hotplug_events"] % 2 == 0  # every offline was undone
    assert (sysfs / "cpu1" / "online").read_text().strip() == "1"


def test_native_hotplug_refuses_cpu0(tmp_path: Path) -> None:
    from pytest_rseq.engine.runner import run_in_process
    from pytest_rseq.engine.spec import RunSpec
    from pytest_rseq.host.prep import HostPrep

    spec = RunSpec.build(
        "counter",
        threads=1,
        duration=0.1,
        chaos=Chaos(hotplug_hz=10),
        seed=3,
    )
    host = HostPrep(hotplug_cpus=(0,), hotplug_root=str(tmp_path))
    raw = run_in_process(spec, host)["runs"]["rseq"]
    assert "hotplug injector setup" in raw["error"]


def test_perf_status_and_crash_parsing() -> None:
    from pytest_rseq.host.perf import perf_crash, perf_status, read_perf

    status = perf_status()
    assert set(status) == {"available", "reason"}
    if not status["available"]:
        assert status["reason"]
        assert read_perf(None) == status
    # perf stat exits 0 when its workload dies; the crash is in its message.
    assert perf_crash("python3: Segmentation fault\n") == "SIGSEGV"
    assert perf_crash("python3: Aborted\n") == "SIGABRT"
    assert perf_crash("all fine\n") is None


def test_perf_csv_parsing(tmp_path: Path) -> None:
    from pytest_rseq.host.perf import read_perf

    out = tmp_path / "perf.csv"
    out.write_text("# started on today\n\n7700,,rseq:rseq_ip_fixup,1000,100.00,,\n")
    assert read_perf(str(out)) == {"available": True, "fixups": 7700}
    out.write_text("<not supported>,,rseq:rseq_ip_fixup,0,100.00,,\n")
    assert read_perf(str(out))["available"] is False


def test_perf_wrapper_end_to_end_with_a_stand_in_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracepoint is missing here: drive the same wrapper with ``context-switches``."""
    import shutil

    from pytest_rseq.host import perf

    if not shutil.which("perf"):
        pytest.skip("perf is not installed")
    monkeypatch.setattr(perf, "PERF_EVENT", "context-switches")
    monkeypatch.setattr(perf, "perf_status", lambda: {"available": True, "reason": None})
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", "context-switches", "--", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"perf stat cannot count here: {probe.stderr.decode()[-200:]}")
    if ",context-switches:u," in probe.stderr.decode():
        # perf_event_paranoid >= 2 without CAP_PERFMON: perf falls back to user-space only.
        pytest.skip(f"perf may count only user-space events for uid {os.geteuid()} (needs root)")
    ok = run("counter", threads=2, duration=0.3)
    ok.assert_consistent()
    assert ok.details["perf"]["available"] is True
    assert ok.details["perf"]["difference"] == ok.details["perf"]["fixups"] - ok.aborts
    crashed = run("canary_bad_signature", threads=2, duration=0.5, chaos=Chaos(signals_hz=2000))
    assert crashed.crash == "SIGSEGV"


def test_native_cpuset_injector_restores_the_groups_cpus(tmp_path: Path) -> None:
    """Every run ends with the group's ``cpuset.cpus`` as it found it, never on the one CPU
    its last shift left: the next run (the fallback half of ``path="both"``, its repeats)
    starts with every CPU. Runs against a fake group folder, so no real cpuset changes."""
    from pytest_rseq.engine.runner import run_in_process
    from pytest_rseq.engine.spec import RunSpec
    from pytest_rseq.host.prep import HostPrep

    group = tmp_path / "group"
    group.mkdir()
    initial = "every-cpu-of-the-group"
    (group / "cpuset.cpus").write_text(initial + "\n")
    (group / "tasks").write_text("")
    for seed in (1, 2, 3):
        spec = RunSpec.build(
            "counter",
            threads=2,
            duration=0.1,
            chaos=Chaos(cpuset_hz=500),
            path="rseq",
            registration="auto",
            seed=seed,
        )
        cpuset = {"dir": str(group), "tasks": str(group / "tasks"), "choices": "0;1"}
        raw = run_in_process(spec, HostPrep(cpuset=cpuset))["runs"]["rseq"]
        assert raw["error"] is None
        assert raw["cpuset_shifts"] > 0
        # The shifts wrote "0" or "1" over the start of the file; the restore wrote it all back.
        assert (group / "cpuset.cpus").read_text().strip() == initial
