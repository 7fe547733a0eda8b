"""What a run exercises: a built-in workload or a downstream library (C ABI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_WORKLOADS: tuple[str, ...] = (
    "counter",
    "counter_mm_cid",
    "canary_racy",
    "canary_bad_signature",
    "canary_clobber_cpu_id_start",
    "canary_clobber_cpu_range",
    "canary_clobber_not_allowed",
    "canary_clobber_stale_cpu",
    "canary_clobber_node_id",
    "canary_clobber_mm_cid",
)
"""Built-in workload names; those starting with ``canary_`` are broken on purpose."""

DEFAULT_SYMBOL = "prseq_workload"


@dataclass(frozen=True)
class Workload:
    """A workload: a built-in name, or a shared library exporting the prseq C ABI.

    Use :meth:`builtin` or :meth:`from_library` rather than the constructor.
    """

    name: str
    library: str | None = None
    symbol: str = DEFAULT_SYMBOL

    @classmethod
    def builtin(cls, name: str) -> Workload:
        """Return the built-in workload ``name``.

        Raises:
            ValueError: ``name`` is not a built-in workload.
        """
        if name not in BUILTIN_WORKLOADS:
            raise ValueError(
                f"unknown workload {name!r}; built-in workloads: {', '.join(BUILTIN_WORKLOADS)}"
            )
        return cls(name=name)

    @classmethod
    def from_library(cls, path: str | Path, symbol: str = DEFAULT_SYMBOL) -> Workload:
        """Return a workload loaded (in the child process) from the library at ``path``.

        ``symbol`` names the exported function returning the
        ``const struct prseq_workload *``.

        Raises:
            ValueError: ``path`` does not exist or ``symbol`` is not an identifier.
        """
        lib = Path(path)
        if not lib.is_file():
            raise ValueError(f"workload library {str(path)!r} does not exist")
        if not symbol.isidentifier():
            raise ValueError(f"symbol {symbol!r} is not a C identifier")
        return cls(name=f"{lib.name}:{symbol}", library=str(lib.resolve()), symbol=symbol)

    @property
    def is_canary(self) -> bool:
        """True for the built-in workloads that are broken on purpose."""
        return self.library is None and self.name.startswith("canary_")

    def to_spec(self) -> dict[str, Any]:
        """Return the JSON-safe description the child process loads."""
        return {"name": self.name, "library": self.library, "symbol": self.symbol}


WorkloadLike = str | Workload


def as_workload(workload: WorkloadLike) -> Workload:
    """Return ``workload`` as a :class:`Workload` (a string names a built-in one).

    Raises:
        ValueError: an unknown name or a value of another type.
    """
    if isinstance(workload, Workload):
        return workload
    if isinstance(workload, str):
        return Workload.builtin(workload)
    raise ValueError(f"workload must be a name or a Workload, got {workload!r}")
