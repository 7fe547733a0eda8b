"""A run's counters, read from the C result struct (``struct prseq_result``).

The names are the struct's integer fields, found through cffi
(``ffi.typeof("struct prseq_result").fields``): a counter added in C shows up
in the driver's raw result, on :attr:`StressResult.counters`, in the report
rows and in the JSON with no Python list to extend. Fields the driver decodes
on its own (:data:`DECODED`) and arrays, strings and doubles are not counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

RESULT_STRUCT = "struct prseq_result"
DECODED = frozenset({"error", "path", "owner", "nr_shards"})
"""Integer fields that are not counters: the error number, the path and owner
enums (decoded to names) and the length of ``shards``."""
INTEGER_TYPES = frozenset(
    {"int", "unsigned int", "long", "unsigned long", "int32_t", "uint32_t", "int64_t", "uint64_t"}
)


def struct_counters(ffi: Any) -> tuple[str, ...]:
    """The counter names of ``struct prseq_result`` in ``ffi``, in the struct's order."""
    return tuple(
        name
        for name, field in ffi.typeof(RESULT_STRUCT).fields
        if field.type.kind == "primitive"
        and field.type.cname in INTEGER_TYPES
        and name not in DECODED
    )


@lru_cache(maxsize=1)
def counter_names() -> tuple[str, ...]:
    """The counter names of the native core's result struct (loads the core)."""
    from .._native import load

    return struct_counters(load()[0])


class Counters(dict[str, int]):
    """A run's counters by name: a plain ``dict`` (JSON-safe) where ``counters.aborts``
    is ``counters["aborts"]``."""

    @classmethod
    def of_run(cls, run: Mapping[str, Any]) -> Counters:
        """The counters of one raw run (the driver's mapping); absent ones are 0."""
        return cls({name: int(run.get(name, 0)) for name in counter_names()})

    @classmethod
    def zeros(cls) -> Counters:
        """Every counter at 0 (a run that produced no result)."""
        return cls(dict.fromkeys(counter_names(), 0))

    def __getattr__(self, name: str) -> int:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no counter {name!r}") from None
