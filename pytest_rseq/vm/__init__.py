"""Virtual machines that run pytest-rseq on other kernels and architectures.

``guest`` defines what every guest offers (``Guest``, ``GuestResult``,
``GuestUnavailable``); each guest kind lives in its own module and is picked
by the gate's ``--kernel``/``--arch`` and the plugin's ``--rseq-kernel``/``--rseq-arch``.
"""
