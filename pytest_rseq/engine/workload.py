"""What a run exercises: a built-in workload or a downstream library (C ABI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import hide_for_caller_errors

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
    "canary_stale_cpu",
    "canary_exit_loss",
)
"""Built-in workload names; those starting with ``canary_`` are broken on purpose."""

DEFAULT_SYMBOL = "prseq_workload"

STATIC_TLS_ERROR = "static TLS block"
"""What glibc's dlopen says when a library's initial-exec TLS does not fit."""


@dataclass(frozen=True)
class Workload:
    """A workload: a built-in name, or a shared library exporting the prseq C ABI.

    Use :meth:`builtin` or :meth:`from_library` rather than the constructor.
    """

    name: str
    library: str | None = None
    symbol: str = DEFAULT_SYMBOL
    preload: bool | None = None
    registers_itself: bool = False

    @classmethod
    def builtin(cls, name: str) -> Workload:
        """Return the built-in workload ``name``.

        Raises:
            ValueError: ``name`` is not a built-in workload.
        """
        __tracebackhide__ = hide_for_caller_errors
        if name not in BUILTIN_WORKLOADS:
            raise ValueError(
                f"unknown workload {name!r}; built-in workloads: {', '.join(BUILTIN_WORKLOADS)}"
            )
        return cls(name=name)

    @classmethod
    def from_library(
        cls,
        path: str | Path,
        symbol: str = DEFAULT_SYMBOL,
        *,
        preload: bool | None = None,
        registers_itself: bool = False,
    ) -> Workload:
        """Return a workload loaded (in the child process) from the library at ``path``.

        Args:
            path: the shared library exporting the prseq C ABI (``pytest_rseq.h``).
            symbol: the exported function returning the ``const struct prseq_workload *``.
            preload: start the child with the library in ``LD_PRELOAD`` instead of
                loading it with ``dlopen``. ``None`` (default) preloads only when
                ``dlopen`` fails with "cannot allocate memory in static TLS block"
                (initial-exec TLS with a large alignment, as librseq has); ``False``
                never preloads.
            registers_itself: the library registers its own rseq area in
                ``thread_init`` when glibc has not (as librseq does). Under
                ``registration="own"`` pytest-rseq then registers none (a second
                area for the thread would be refused with EINVAL) and runs the rseq path on the
                library's area; the result's owner is ``"workload"``.

        Raises:
            ValueError: ``path`` does not exist or ``symbol`` is not an identifier.
        """
        __tracebackhide__ = hide_for_caller_errors
        lib = Path(path)
        if not lib.is_file():
            raise ValueError(f"workload library {str(path)!r} does not exist")
        if not isinstance(symbol, str) or not symbol.isidentifier():
            raise ValueError(f"symbol {symbol!r} is not a C identifier")
        if preload is not None and not isinstance(preload, bool):
            raise ValueError(f"preload must be None, True or False, got {preload!r}")
        if not isinstance(registers_itself, bool):
            raise ValueError(f"registers_itself must be True or False, got {registers_itself!r}")
        return cls(
            name=f"{lib.name}:{symbol}",
            library=str(lib.resolve()),
            symbol=symbol,
            preload=preload,
            registers_itself=bool(registers_itself),
        )

    @property
    def is_canary(self) -> bool:
        """True for the built-in workloads that are broken on purpose."""
        return self.library is None and self.name.startswith("canary_")

    def to_spec(self) -> dict[str, Any]:
        """Return the JSON-safe description the child process loads."""
        return {
            "name": self.name,
            "library": self.library,
            "symbol": self.symbol,
            "preload": self.preload,
            "registers_itself": self.registers_itself,
        }


WorkloadLike = str | Workload


def as_workload(workload: WorkloadLike) -> Workload:
    """Return ``workload`` as a :class:`Workload` (a string names a built-in one).

    Raises:
        ValueError: an unknown name or a value of another type.
    """
    __tracebackhide__ = hide_for_caller_errors
    if isinstance(workload, Workload):
        return workload
    if isinstance(workload, str):
        return Workload.builtin(workload)
    raise ValueError(f"workload must be a name or a Workload, got {workload!r}")


def preload_env(env: dict[str, str], workload: Workload) -> dict[str, str]:
    """Return ``env`` with the workload's library in ``LD_PRELOAD`` when it asks for it."""
    if not (workload.library and workload.preload):
        return env
    preloads = [p for p in env.get("LD_PRELOAD", "").split() if p]
    return {**env, "LD_PRELOAD": " ".join([workload.library, *preloads])}


def wants_preload_retry(workload: Workload, raw: dict[str, Any]) -> bool:
    """True when the library failed to ``dlopen`` for lack of static TLS and may be preloaded."""
    return (
        workload.library is not None
        and workload.preload is None
        and STATIC_TLS_ERROR in str(raw.get("workload_error") or "")
    )


def static_tls_hint(workload: Workload, message: str) -> str:
    """Add the fix to a load error caused by initial-exec TLS that ``dlopen`` cannot place."""
    if STATIC_TLS_ERROR not in message:
        return message
    if workload.preload:
        return f"{message} (even with the library in LD_PRELOAD)"
    return (
        f"{message}: the library has initial-exec TLS that dlopen cannot place; "
        f"use Workload.from_library({workload.library!r}, preload=True) (or preload=None, the "
        f"default, with isolate=True) to start the child with it in LD_PRELOAD"
    )
