"""Killed runs leave nothing behind.

The matrix: ``kill -9`` of the stress child, of its owner (a Python process
calling ``run()``), of both, an orphan (owner killed, child frozen) still
holding our cgroup, and SIGTERM of a pytest process; each with no chaos,
cpuset chaos (root) and hotplug chaos (root, and only where real hotplug
tests are allowed). After the kill, or after the next start where nobody was
left to clean up, within ``BOUND_S`` (a bound for a loaded machine, not a
speed check): no process the test started is alive, no cpuset group of the
owner exists, no hotplug state file of the owner is left, and the CPUs
offline, this process's affinity and the cpuset folder's CPUs are as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from pytest_rseq.engine.child_process import child_env
from pytest_rseq.engine.spec import ChildOrder, RunSpec
from pytest_rseq.errors import CapabilityMissing
from pytest_rseq.host import cpuset, hotplug, stale
from pytest_rseq.host.capabilities import cgroup_info
from pytest_rseq.host.parent_watch import EXIT_OWNER_GONE
from pytest_rseq.host.prep import HostPrep

BOUND_S = 5.0
START_LIMIT_S = 60.0
Tagged = Callable[[], list[int]]

CHAOS = {
    "plain": "Chaos()",
    "cpuset": "Chaos(cpuset_hz=200)",
    "hotplug": "Chaos(hotplug_hz=10)",
}
NEXT_CHAOS = {
    "plain": "Chaos()",
    "cpuset": "Chaos(cpuset_hz=200)",
    "hotplug": "Chaos(hotplug_hz=4)",
}

OWNER = """
from pytest_rseq import Chaos, run
result = run("counter", threads=2, duration=60, chaos={chaos})
print("done", result.crash, flush=True)
"""

NEXT_START = """
from pytest_rseq import Chaos, run
run("counter", threads=2, duration=0.3, chaos={chaos}).assert_consistent()
print("next start ok", flush=True)
"""

PYTEST_OWNER = """
from pytest_rseq import Chaos

def test_long(rseq_stress):
    rseq_stress("counter", threads=2, duration=60, chaos={chaos})
"""


@pytest.fixture(params=sorted(CHAOS))
def kind(request: pytest.FixtureRequest) -> str:
    """The chaos of the killed run; skipped where this user or machine cannot apply it."""
    if request.param == "cpuset" and not cgroup_info()["cpuset_writable"]:
        pytest.skip(str(cgroup_info()["cpuset_reason"]))
    if request.param == "hotplug":
        request.getfixturevalue("real_hotplug")
    return str(request.param)


@dataclass(frozen=True)
class Machine:
    """What a killed run could leave changed on the machine."""

    offline: str
    affinity: frozenset[int]
    cpuset_cpus: str


def _offline() -> str:
    path = Path("/sys/devices/system/cpu/offline")
    return path.read_text().strip() if path.exists() else ""


def machine() -> Machine:
    """The CPUs offline, this process's affinity and the CPUs of the cpuset folder."""
    try:
        cpus = cpuset.find_host().base / "cpuset.cpus"
        cpus_text = cpus.read_text().strip() if cpus.exists() else ""
    except CapabilityMissing:  # no cpusets here: nothing to compare
        cpus_text = ""
    return Machine(_offline(), frozenset(os.sched_getaffinity(0)), cpus_text)


def _groups_of(owner: int) -> list[Path]:
    return [g for g in cpuset.our_groups() if g.name.startswith(f"{cpuset.PREFIX}{owner}-")]


def leftovers(owner: int, tagged: Tagged, before: Machine) -> list[str]:
    """What the killed run left behind (empty: nothing)."""
    problems = []
    alive = tagged()
    if alive:
        names = []
        for pid in alive:
            try:
                names.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}")
            except psutil.Error:
                names.append(str(pid))
        problems.append(f"processes alive: {names}")
    if _groups_of(owner):
        problems.append(f"cpuset groups left: {_groups_of(owner)}")
    state = hotplug.STATE_DIR / f"hotplug-{owner}.json"
    if state.exists():
        problems.append(f"hotplug state file left: {state}")
    now = machine()
    if now != before:
        problems.append(f"machine changed: {before} -> {now}")
    return problems


def assert_nothing_left(owner: int, tagged: Tagged, before: Machine) -> None:
    """Poll up to BOUND_S for leftovers to go; fail naming what stayed."""
    deadline = time.monotonic() + BOUND_S
    while (problems := leftovers(owner, tagged, before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert problems == [], f"left behind {BOUND_S:g} s after the kill: {problems}"


def _group_has_tasks(owner: int) -> bool:
    for group in _groups_of(owner):
        for tasks in (group / "tasks", group / "workers" / "cgroup.threads"):
            if tasks.exists() and tasks.read_text().split():
                return True
    return False


def _stress_child(owner: psutil.Process) -> int | None:
    for proc in owner.children(recursive=True):
        try:
            if "pytest_rseq.engine.driver" in proc.cmdline():
                return proc.pid
        except psutil.Error:
            continue
    return None


def _chaos_active(kind: str, owner: int, child: int) -> bool:
    if kind == "cpuset":
        return _group_has_tasks(owner)
    if kind == "hotplug":
        return _offline() != ""
    # main thread, owner watch and the workers
    return psutil.Process(child).num_threads() >= 4


def wait_until_stressing(kind: str, owner: subprocess.Popen[str]) -> int:
    """Return the stress child's pid once its chaos has changed the machine."""
    deadline = time.monotonic() + START_LIMIT_S
    ps_owner = psutil.Process(owner.pid)
    while True:
        assert owner.poll() is None, f"the owner exited early: {owner.communicate()}"
        assert time.monotonic() < deadline, "the stress run never got going"
        child = _stress_child(ps_owner)
        try:
            if child is not None and _chaos_active(kind, owner.pid, child):
                return child
        except psutil.Error:
            pass
        time.sleep(0.005)


def freeze_with_changes(kind: str, child: int) -> None:
    """SIGSTOP the child at a moment its chaos has the machine changed (a CPU offline)."""
    deadline = time.monotonic() + START_LIMIT_S
    while True:
        os.kill(child, signal.SIGSTOP)
        while psutil.Process(child).status() != psutil.STATUS_STOPPED:
            time.sleep(0.001)
        if kind != "hotplug" or _offline():
            return
        assert time.monotonic() < deadline, "no CPU was ever offline while the child stopped"
        os.kill(child, signal.SIGCONT)
        time.sleep(0.005)


def start_owner(kind: str) -> subprocess.Popen[str]:
    """A Python process calling ``run()`` for 60 s with ``kind`` chaos."""
    return subprocess.Popen(
        [sys.executable, "-c", OWNER.format(chaos=CHAOS[kind])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def next_start(kind: str) -> None:
    """A new process's first run with the same chaos: it must restore, then run."""
    out = subprocess.run(
        [sys.executable, "-c", NEXT_START.format(chaos=NEXT_CHAOS[kind])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "next start ok" in out.stdout, out.stderr[-2000:]


@pytest.fixture
def before() -> Iterator[Machine]:
    """The machine before the test; CPUs brought back online whatever happens."""
    state = machine()
    yield state
    for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
        online = cpu / "online"
        if os.geteuid() == 0 and online.exists() and online.read_text().strip() == "0":
            online.write_text("1")


def test_sigkill_of_the_child_leaves_nothing(
    kind: str, before: Machine, process_tag: Tagged
) -> None:
    """The owner sees the crash and undoes the group and CPUs itself."""
    owner = start_owner(kind)
    child = wait_until_stressing(kind, owner)
    freeze_with_changes(kind, child)
    os.kill(child, signal.SIGKILL)
    out, err = owner.communicate(timeout=START_LIMIT_S)
    assert owner.returncode == 0, err[-2000:]
    assert "done SIGKILL" in out
    assert_nothing_left(owner.pid, process_tag, before)


def test_sigkill_of_the_owner_leaves_nothing(
    kind: str, before: Machine, process_tag: Tagged
) -> None:
    """The child sees its owner die, stops, undoes its changes and exits with its group."""
    owner = start_owner(kind)
    wait_until_stressing(kind, owner)
    owner.kill()
    owner.communicate()
    assert_nothing_left(owner.pid, process_tag, before)


def test_sigkill_of_both_is_undone_at_the_next_start(
    kind: str, before: Machine, process_tag: Tagged
) -> None:
    """Nobody is left to clean up: the next run restores the machine before its checks
    (with CPU 1 left offline, a hotplug run used to skip instead)."""
    owner = start_owner(kind)
    child = wait_until_stressing(kind, owner)
    freeze_with_changes(kind, child)
    os.kill(owner.pid, signal.SIGSTOP)
    os.kill(child, signal.SIGKILL)
    owner.kill()
    owner.communicate()
    if kind == "hotplug":
        assert _offline(), "the killed run should have left a CPU offline"
    next_start(kind)
    assert_nothing_left(owner.pid, process_tag, before)


def test_an_orphan_holding_our_group_is_killed_at_the_next_start(
    kind: str, before: Machine, process_tag: Tagged
) -> None:
    """A child that could not react to its owner's death (frozen here) is an orphan: the
    next start kills it (ours for certain: our tag, our command, a dead owner), then
    removes its group and brings its CPU back."""
    owner = start_owner(kind)
    child = wait_until_stressing(kind, owner)
    freeze_with_changes(kind, child)
    owner.kill()
    owner.communicate()
    assert child in stale.find_orphans()
    if kind == "cpuset":
        assert _group_has_tasks(owner.pid), "the orphan should still hold the group"
    next_start(kind)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert_nothing_left(owner.pid, process_tag, before)


def test_sigterm_of_pytest_interrupts_the_run_and_leaves_nothing(
    kind: str, before: Machine, process_tag: Tagged, tmp_path: Path
) -> None:
    """pytest treats SIGTERM as Ctrl-C: the child is stopped, the group and CPUs are
    restored, the session ends as interrupted (exit code 2)."""
    (tmp_path / "test_long.py").write_text(PYTEST_OWNER.format(chaos=CHAOS[kind]))
    owner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rseq-allow-hotplug"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until_stressing(kind, owner)
    owner.send_signal(signal.SIGTERM)
    out, _ = owner.communicate(timeout=START_LIMIT_S)
    assert owner.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "KeyboardInterrupt" in out and "SIGTERM" in out, out[-3000:]
    assert_nothing_left(owner.pid, process_tag, before)


def _sleeper(tag: str | None, argv_tail: list[str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop(stale.OWNER_ENV, None)
    if tag is not None:
        env[stale.OWNER_ENV] = tag
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *argv_tail], env=env
    )


def _wait_started(procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    for proc in procs:
        # The environment is readable once the interpreter has exec'd.
        while b"time.sleep" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_orphans_are_only_our_children_of_dead_owners() -> None:
    """Killed: our tag + the child's command + an owner gone (or its pid reused). Spared:
    a live owner, no tag, or another command."""
    started = stale.start_time(os.getpid())
    assert started is not None
    child_cmd = ["pytest_rseq.engine.driver"]
    orphan = _sleeper("999999999:1", child_cmd)
    reused = _sleeper(f"{os.getpid()}:{started + 1}", child_cmd)  # our pid, not our start
    live = _sleeper(stale.owner_tag(), child_cmd)
    untagged = _sleeper(None, child_cmd)
    other_cmd = _sleeper("999999999:1", [])
    procs = [orphan, reused, live, untagged, other_cmd]
    try:
        _wait_started(procs)
        mine = {p.pid for p in procs}
        assert set(stale.find_orphans()) & mine == {orphan.pid, reused.pid}
        killed = stale.kill_orphans()
        assert {orphan.pid, reused.pid} <= set(killed)
        assert orphan.wait(BOUND_S) == -signal.SIGKILL
        assert reused.wait(BOUND_S) == -signal.SIGKILL
        assert live.poll() is None and untagged.poll() is None and other_cmd.poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_child_whose_owner_is_already_dead_exits_at_once(tmp_path: Path) -> None:
    """The owner may die between starting the child and the child's watch: the child then
    exits without running (and without changing anything)."""
    spec = RunSpec.build(
        "counter",
        threads=1,
        duration=30,
        seed=1,
    )
    order = ChildOrder(spec, HostPrep(), result_path=str(tmp_path / "result.json"))
    env = {**child_env("auto"), stale.OWNER_ENV: "999999999:1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_rseq.engine.driver"],
        input=json.dumps(order.to_json()).encode(),
        env=env,
        capture_output=True,
        timeout=START_LIMIT_S,
    )
    assert done.returncode == EXIT_OWNER_GONE, done.stderr[-2000:]
    assert not (tmp_path / "result.json").exists()


def test_sigterm_handler_raises_keyboard_interrupt_and_is_put_back() -> None:
    from pytest_rseq.host import sigterm

    outer = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        previous = sigterm.install()
        assert previous == signal.SIG_DFL
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
        sigterm.uninstall(previous)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_sigterm_handler_leaves_a_handler_of_someone_else_alone() -> None:
    from pytest_rseq.host import sigterm

    def theirs(signum: int, frame: object) -> None:
        pass

    outer = signal.signal(signal.SIGTERM, theirs)
    try:
        assert sigterm.install() is None
        assert signal.getsignal(signal.SIGTERM) is theirs
        sigterm.uninstall(None)
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_pytest_session_puts_sigterm_back_at_the_end(tmp_path: Path) -> None:
    """During the session SIGTERM is handled; after pytest.main() it is the default again."""
    (tmp_path / "test_handled.py").write_text(
        "import signal\n"
        "def test_handled():\n"
        "    assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL\n"
    )
    code = (
        "import signal, sys, pytest\n"
        "rc = pytest.main(['-q', '-p', 'no:cacheprovider', 'test_handled.py'])\n"
        "print('default after:', signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "default after: True" in done.stdout
