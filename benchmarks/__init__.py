"""Benchmarks of pytest-rseq: fast-path speed, harness cost, injector rates, detection power.

Run ``python -m benchmarks`` from the repository root (see ``docs/benchmarks.md``).
"""
