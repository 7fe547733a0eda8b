"""Host control and discovery: what this machine can do, and the changes a run makes to it.

``capabilities`` (the rseq fingerprint), ``cpuset`` and ``hotplug`` (the
machine changes, each undone by its owner), ``stale`` (undo what killed runs
left), ``parent_watch`` (a child that outlives its owner undoes and exits),
``perf`` (the kernel's own abort count), ``sigterm`` (SIGTERM as Ctrl-C).

Calls go down only: ``host`` imports nothing above it (the native core and
``errors`` at most); ``engine``, ``plugin`` and ``gate`` call into it.
"""
