"""Section 2: what each injector achieves at a few set rates, and the aborts it causes.

Each run is the built-in ``counter`` (correct rseq code) in an isolated child
with one injector on, through the public ``run()``; the achieved rate is the
injector's own count from ``StressResult`` divided by the run's duration.
A run that ends in an error (an injector missing or refused) is reported
with its message, never as a rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .common import fmt, median, table

if TYPE_CHECKING:
    from pytest_rseq.engine.injectors import Injector

DURATION_S = 0.5
QUICK_DURATION_S = 0.05
# Workers per allowed CPU: 1 (every CPU busy with a worker) and 2 (as Chaos.default()).
OVERSUBSCRIBE = (1.0, 2.0)


@dataclass(frozen=True)
class Rates:
    """The rates one injector is measured at, and the rate asked of this machine (0: none)."""

    rates: tuple[float, ...]
    target: float


RATES = {
    "signals": Rates((10_000, 100_000, 150_000, 200_000, 300_000, 500_000, 1_000_000), 100_000),
    "affinity": Rates((1_000, 5_000, 10_000, 100_000), 5_000),
    "cpuset": Rates((1_000, 2_000, 20_000), 1_000),
    "churn": Rates((1_000, 10_000, 20_000, 100_000), 10_000),
    "fork": Rates((100, 1_000, 10_000), 0),
    "membarrier": Rates((10_000, 100_000, 1_000_000), 0),
}
"""Measured injectors by registry name (hotplug is left out: it takes CPUs offline)."""


def _registry() -> list[tuple[Injector, Rates]]:
    from pytest_rseq.engine.injectors import INJECTORS

    return [(inj, RATES[inj.name]) for inj in INJECTORS if inj.name in RATES]


def _one(
    inj: Injector, rate: float, oversubscribe: float, duration: float, seed: int
) -> dict[str, Any]:
    import pytest_rseq

    chaos = pytest_rseq.Chaos(**{inj.field: rate}, oversubscribe=oversubscribe)  # type: ignore[arg-type]
    try:
        res = pytest_rseq.run("counter", duration=duration, chaos=chaos, seed=seed)
    except Exception as exc:  # reported, not raised: one injector must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}"}
    count = inj.effect(res.counters, res.threads)
    dur = res.duration_s if res.duration_s > 0 else duration
    sent = res.details.get("signals_sent") if inj.field == "signals_hz" else None
    return {
        "ok": res.ok,
        "error": res.error or (res.crash and f"crashed: {res.crash}"),
        "reasons": res.reasons,
        "threads": res.threads,
        "duration_s": res.duration_s,
        "count": count,
        # Signals: also what the storm sent (tgkill + timer expirations).
        "sent_hz": sent / dur if isinstance(sent, int) else None,
        "achieved_hz": count / dur,
        "aborts_hz": res.aborts / dur,
        "ops_per_s": res.ops_per_s,
    }


def measure(repeats: int, quick: bool) -> dict[str, Any]:
    """Run every injector at its rates ``repeats`` times; return the JSON section."""
    duration = QUICK_DURATION_S if quick else DURATION_S
    rows: list[dict[str, Any]] = []
    measured = _registry()
    for (inj, plan), over in [
        (i, o) for o in OVERSUBSCRIBE[: 1 if quick else None] for i in measured
    ]:
        rates = plan.rates[:1] if quick else plan.rates
        for rate in rates:
            runs = [_one(inj, rate, over, duration, seed=1000 + i) for i in range(repeats)]
            good = [r for r in runs if not r.get("error")]
            errors = sorted({str(r["error"]) for r in runs if r.get("error")})
            rows.append(
                {
                    "injector": inj.field,
                    "counted_by": inj.counter,
                    "what": inj.help,
                    "set_hz": rate,
                    "oversubscribe": over,
                    "threads": runs[0].get("threads"),
                    "target_hz": plan.target or None,
                    "runs": len(runs),
                    "runs_ok": sum(1 for r in good if r["ok"]),
                    "achieved_hz": median(r["achieved_hz"] for r in good),
                    "achieved_hz_max": max((r["achieved_hz"] for r in good), default=None),
                    "aborts_hz": median(r["aborts_hz"] for r in good),
                    "sent_hz": median(r["sent_hz"] for r in good if r["sent_hz"] is not None),
                    "ops_per_s": median(r["ops_per_s"] for r in good),
                    "errors": errors,
                    "samples": runs,
                }
            )
    ceilings = {}
    for inj, plan in measured:
        mine = [r for r in rows if r["injector"] == inj.field and r["achieved_hz"] is not None]
        best_row = max(mine, key=lambda r: r["achieved_hz"], default=None)
        best = best_row["achieved_hz"] if best_row else None
        ceilings[inj.field] = {
            "best_achieved_hz": best,
            "best_at": None
            if best_row is None
            else {"set_hz": best_row["set_hz"], "threads": best_row["threads"]},
            "target_hz": plan.target or None,
            "meets_target": None if best is None or not plan.target else best >= plan.target,
        }
    return {"duration_s": duration, "repeats": repeats, "rows": rows, "ceilings": ceilings}


def render(section: dict[str, Any]) -> str:
    """The section's table as text."""
    out = [
        f"## 2. Injectors: achieved rates on `counter` ({section['duration_s']} s runs, "
        f"median of {section['repeats']})",
        "",
    ]
    rows = []
    for r in section["rows"]:
        rows.append(
            [
                r["injector"],
                str(r["threads"]),
                fmt(r["set_hz"], 0),
                fmt(r["achieved_hz"], 0),
                fmt(r["sent_hz"], 0),
                fmt(r["aborts_hz"], 0),
                fmt(r["ops_per_s"], 0),
                f"{r['runs_ok']}/{r['runs']}",
                "; ".join(r["errors"])[:80] or "",
            ]
        )
    out.append(
        table(
            [
                "injector",
                "threads",
                "set /s",
                "achieved /s",
                "sent /s",
                "aborts /s",
                "ops /s",
                "ok runs",
                "error",
            ],
            rows,
        )
    )
    out += ["", "Best achieved rate against the rate asked of this machine:", ""]
    rows = [
        [
            name,
            fmt(c["best_achieved_hz"], 0),
            "-"
            if not c["best_at"]
            else f"{fmt(c['best_at']['set_hz'], 0)} / {c['best_at']['threads']}",
            fmt(c["target_hz"], 0),
            {True: "yes", False: "NO", None: "-"}[c["meets_target"]],
        ]
        for name, c in section["ceilings"].items()
    ]
    out.append(table(["injector", "best /s", "at set /s, threads", "asked /s", "reached"], rows))
    return "\n".join(out)
