"""Checks on a workload library's machine code: the section linter and its mutants.

``lint`` reads the ``__rseq_cs`` descriptors of an ELF library and checks
each section; ``mutants`` writes broken copies of a library (one mutation
each); ``mutation`` runs a stress call on every mutant (``--rseq-mutate``).

Calls go down: ``elf`` uses ``engine`` (workloads, results) to run mutants;
``plugin`` calls it. Nothing here imports ``plugin`` or ``gate``.
"""
