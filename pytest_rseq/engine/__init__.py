"""The run engine: one stress run from its spec to its verdict.

``spec`` (the validated, frozen request) -> ``runner`` (host preparation, the
child process or the in-process driver) -> ``driver`` (the native ``prseq_run``
calls) -> ``oracle`` (raw numbers to a :class:`StressResult` and a verdict).
``chaos``, ``injectors`` and ``counters`` hold the perturbations, their one
registry and the result counters read from the C result struct.

Calls go down: the engine uses ``host`` (cpusets, hotplug, perf, stale state)
and the native core; it never imports ``plugin``, ``gate`` or ``elf``.
"""
