"""Seeds, as pytest-randomly does them.

One session seed is chosen on the controller (``--rseq-seed=N``, the
previous run's with ``--rseq-seed=last``, or a random one), stored in
pytest's cache, and sent to xdist workers through ``workerinput``. Each
stress run gets its own seed derived from the session seed, the test's node
id and the run's index inside the test, so a test repeated alone, or on
another worker, gets exactly the same seeds.
"""

from __future__ import annotations

import hashlib

import pytest

from .spec import random_seed

CACHE_KEY = "rseq/seed"
WORKERINPUT_KEY = "rseq_seed"


def session_seed(config: pytest.Config, given: int | None, last: bool) -> int:
    """The session seed on the controller (or a run without xdist); stored in the cache.

    Raises:
        pytest.UsageError: ``--rseq-seed=last`` without a previous seed in the cache.
    """
    cache = getattr(config, "cache", None)
    if last:
        seed = cache.get(CACHE_KEY, None) if cache is not None else None
        if not isinstance(seed, int):
            raise pytest.UsageError(
                "--rseq-seed: invalid value 'last': no previous seed in pytest's cache "
                "(run once without it, and keep the cache provider enabled)"
            )
    else:
        seed = given if given is not None else random_seed()
    if cache is not None:
        cache.set(CACHE_KEY, seed)
    return seed


def derive(seed: int, nodeid: str, index: int) -> int:
    """The seed of run number ``index`` of the test ``nodeid`` under session ``seed``."""
    digest = hashlib.sha256(f"{seed}\0{nodeid}\0{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
