"""Host preparation: the machine changes one run needs, as one value, made and undone here.

:func:`prepare` creates the cpuset group and the hotplug guard a run asks for
and yields a :class:`HostPrep` naming them; the child process reads it (the
native injectors write there, ``parent_watch`` undoes it when the owner dies).
``hotplug_root`` and ``node_root`` point the native core at another sysfs
tree (the tests' fake ones); None means the real one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import cpuset, hotplug, stale


@dataclass(frozen=True)
class HostPrep:
    """The machine changes made for one run (all empty: none).

    ``cpuset`` is the group's paths (``CpusetGroup.to_spec()``);
    ``hotplug_cpus`` the CPUs the hotplug injector may take offline and
    ``hotplug_state`` the file that records how to bring them back.
    """

    cpuset: Mapping[str, Any] | None = None
    hotplug_cpus: tuple[int, ...] = ()
    hotplug_state: str | None = None
    hotplug_root: str | None = None
    node_root: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe form (read back with :meth:`from_json`)."""
        data = asdict(self)
        data["cpuset"] = dict(self.cpuset) if self.cpuset else None
        data["hotplug_cpus"] = list(self.hotplug_cpus)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostPrep:
        """The value :meth:`to_json` wrote."""
        return cls(**{**data, "hotplug_cpus": tuple(data.get("hotplug_cpus") or ())})


@contextlib.contextmanager
def prepare(*, cpusets: bool, hotplug_cpus: bool) -> Iterator[tuple[HostPrep, list[str]]]:
    """Make the cpuset group and hotplug guard a run asks for; undo them afterwards.

    Yields the :class:`HostPrep` and a list that holds, after the block, what
    could not be undone (empty when all went well).

    Raises:
        CapabilityMissing: cpusets or hotplug were asked for and are not usable.
    """
    problems: list[str] = []
    # Before the checks: a killed run may have left CPU 1 offline.
    if cpusets or hotplug_cpus:
        stale.restore()
    else:
        stale.restore_once()
    prep = HostPrep()
    with contextlib.ExitStack() as stack:
        if cpusets:
            group = cpuset.create_group(sorted(os.sched_getaffinity(0)))
            prep = HostPrep(cpuset=group.to_spec())

            def remove() -> None:
                if not cpuset.remove_group(group.path):
                    problems.append(f"cpuset group {group.path} could not be removed")

            stack.callback(remove)
        if hotplug_cpus:
            cpus = hotplug.check(set(os.sched_getaffinity(0)))
            guarded = stack.enter_context(hotplug.guard(cpus))
            prep = HostPrep(
                cpuset=prep.cpuset,
                hotplug_cpus=tuple(guarded),
                hotplug_state=str(hotplug.state_path()),
            )
        yield prep, problems
