"""The gate's scenarios that are not one stress run: the seccomp probe and the perf cross-check.

Each returns a check: a function of the host fingerprint giving (verdict, detail).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.chaos import Chaos
from ..host import perf
from .outcome import FAIL, NOT_TESTED, PASS, SKIP


def seccomp_after_start_check(errno_name: str, registration: str) -> Callable[..., Any]:
    """A check: a seccomp filter blocking rseq installed after start, then a new thread.

    With glibc owning the area (``registration="auto"``), glibc must abort the
    new thread's start ("rseq registration failed", SIGABRT): the field failure
    the gate shows and must detect. A glibc that starts the thread without rseq
    instead is reported as such. With glibc's registration off (``"own"``) the
    thread must start. Anything else fails.
    """

    def check(fp: dict[str, Any]) -> tuple[str, str]:
        from .seccomp import seccomp_after_start

        if registration == "auto" and fp.get("owner") != "glibc":
            return SKIP, f"glibc does not register rseq here (owner {fp.get('owner')})"
        if not fp.get("rseq_available"):
            return SKIP, "rseq unavailable: there is no registration to break"
        got = seccomp_after_start(errno_name, registration)
        if got.outcome == "abort" and registration == "auto":
            if got.signal == "SIGABRT" and got.glibc_message:
                return PASS, "the new thread's start aborted (SIGABRT: rseq registration failed)"
            return FAIL, f"died with {got.signal}, not glibc's SIGABRT: {got.stderr[-200:]!r}"
        if got.outcome == "survived":
            if registration == "own":
                return PASS, "glibc's registration off: the new thread started without rseq"
            return PASS, "glibc started the new thread without rseq (no abort)"
        return FAIL, f"unexpected outcome {got.outcome} ({got.signal}): {got.stderr[-200:]!r}"

    return check


def perf_ip_fixup_check(threads: int, duration: float, seed: int | None) -> Callable[..., Any]:
    """A check: the kernel's ``rseq:rseq_ip_fixup`` count equals the aborts the handlers saw.

    Runs a signal storm with widened sections under ``perf stat``; needs perf and a
    readable tracefs (root), else ``NOT TESTED`` with the reason.
    """

    def check(fp: dict[str, Any]) -> tuple[str, str]:
        from ..engine.runner import run

        if not fp.get("rseq_available"):
            return SKIP, "rseq unavailable: no aborts to count"
        with perf.requested():
            status = perf.perf_status()
            if not status["available"]:
                return NOT_TESTED, f"perf cross-check not available: {status['reason']}"
            chaos = Chaos(signals_hz=5000, cs_delay=64)
            result = run("counter", threads=threads, duration=duration, chaos=chaos, seed=seed)
        got = result.details.get("perf") or {}
        if not result.ok:
            return FAIL, (result.reasons or ["the oracle disagreed"])[0]
        if not got.get("available"):
            return FAIL, f"perf ran but counted nothing: {got.get('reason')}"
        if got["fixups"] != result.aborts:
            return FAIL, f"kernel fixups {got['fixups']:,} != handler aborts {result.aborts:,}"
        if result.aborts <= 0:
            return FAIL, "no evidence: no aborts under the signal storm"
        return PASS, f"kernel fixups {got['fixups']:,} == handler aborts {result.aborts:,}"

    return check
