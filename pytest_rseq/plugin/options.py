"""The ``rseq`` option group: flags ``--rseq-...``, ini keys ``rseq_...``, one settings record.

Every value is validated when pytest starts; a bad one is a usage error that
names the option (or ini key) and the value. A command-line flag wins over
the ini key of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import pytest

from ..engine.chaos import Chaos
from ..engine.spec import (
    DEFAULT_EVIDENCE_CAP,
    MIN_EVIDENCE_WAIT_S,
    PATHS,
    REGISTRATIONS,
    check_duration,
    check_evidence_cap,
    check_seed,
    check_threads,
)

T = TypeVar("T")
GROUP = "rseq"
SMOKE_DURATION_S = 0.1
"""Deadline of every stress run under ``--rseq-smoke``."""
CHAOS_PRESETS = ("none", "default")

HELP_SEED = "seed of every stress run: N, or 'last' to repeat the previous run's seed"
HELP_DURATION = "default duration of a stress run in seconds (run() default: 1.0)"
HELP_THREADS = "default worker threads of a stress run (default: oversubscribe x CPUs)"
HELP_CHAOS = (
    "default chaos: a preset (none, default) and/or NAME=RATE overrides, comma separated, "
    "e.g. 'default,signals_hz=5000' (names: fields of pytest_rseq.Chaos; run() default: default)"
)
HELP_EVIDENCE_CAP = (
    "while a run's evidence (aborts, each requested cause, migrations) is missing it goes on, "
    f"up to this multiple of its duration (default {DEFAULT_EVIDENCE_CAP:g} and at least "
    f"{MIN_EVIDENCE_WAIT_S:g} s in all; 1 = never extend)"
)
HELP_PATH = f"default path of a stress run ({', '.join(PATHS)})"
HELP_REGISTRATION = f"default registration of a stress run ({', '.join(REGISTRATIONS)})"
HELP_JSON = "write every stress run's metrics and each host's fingerprint to PATH as JSON"
HELP_ALLOW_HOTPLUG = "permit Chaos.hotplug_hz > 0 (takes CPUs offline; root only)"
HELP_LINT = "lint every workload library's rseq sections (pytest_rseq.lint) before running it"
HELP_PERF = (
    "cross-check each run's aborts against the kernel's rseq:rseq_ip_fixup count with "
    "perf stat (needs perf and a readable tracefs, i.e. root; same as PYTEST_RSEQ_PERF=1)"
)
HELP_MUTATE = (
    "also run each library workload's stress call on mutants of its library "
    "(pytest_rseq.mutants); the test fails unless every mutant is killed"
)
HELP_SMOKE = f"run every stress as one short smoke iteration (at most {SMOKE_DURATION_S:g} s)"


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its ini key, its help text and its kind."""

    name: str
    help: str
    kind: str = "string"  # "string" or "bool"
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """The command-line flag, ``--rseq-NAME``."""
        return "--rseq-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        """The ini key, ``rseq_NAME``."""
        return "rseq_" + self.name


OPTIONS = (
    Option("seed", HELP_SEED, metavar="N|last"),
    Option("duration", HELP_DURATION, metavar="SECONDS"),
    Option("threads", HELP_THREADS, metavar="N"),
    Option("chaos", HELP_CHAOS, metavar="SPEC"),
    Option("evidence_cap", HELP_EVIDENCE_CAP, metavar="N"),
    Option("path", HELP_PATH, metavar="PATH"),
    Option("registration", HELP_REGISTRATION, metavar="MODE"),
    Option("json", HELP_JSON, metavar="PATH"),
    Option("allow_hotplug", HELP_ALLOW_HOTPLUG, kind="bool"),
    Option("smoke", HELP_SMOKE, kind="bool"),
    Option("lint", HELP_LINT, kind="bool"),
    Option("perf", HELP_PERF, kind="bool"),
    Option("mutate", HELP_MUTATE, kind="bool"),
)


@dataclass(frozen=True)
class Settings:
    """The validated ``rseq`` settings of one pytest run (None: not set)."""

    seed: int | None = None
    seed_last: bool = False
    duration: float | None = None
    threads: int | None = None
    chaos: Chaos | None = None
    evidence_cap: float | None = None
    path: str | None = None
    registration: str | None = None
    json: str | None = None
    allow_hotplug: bool = False
    smoke: bool = False
    lint: bool = False
    perf: bool = False
    mutate: bool = False

    def run_defaults(self) -> dict[str, Any]:
        """The ``run()`` keyword defaults these settings give (unset ones left out)."""
        names = ("duration", "threads", "chaos", "path", "registration", "evidence_cap")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def add_options(parser: pytest.Parser) -> None:
    """Add the ``rseq`` group's flags and ini keys to ``parser``."""
    group = parser.getgroup(GROUP, "rseq stress testing (pytest-rseq)")
    for opt in OPTIONS:
        if opt.kind == "bool":
            group.addoption(opt.flag, action="store_true", default=None, help=opt.help)
            parser.addini(opt.ini, opt.help, type="bool", default=False)
        else:
            group.addoption(opt.flag, default=None, metavar=opt.metavar, help=opt.help)
            parser.addini(opt.ini, opt.help, default="")


def _usage(source: str, value: Any, why: str) -> pytest.UsageError:
    return pytest.UsageError(f"{source}: invalid value {value!r}: {why}")


def parse_chaos(text: str, source: str = "--rseq-chaos") -> Chaos:
    """Parse a chaos spec such as ``"default,signals_hz=5000"`` into a :class:`Chaos`.

    Raises:
        pytest.UsageError: an unknown preset or field, or a bad rate.
    """
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Chaos)}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            if part not in CHAOS_PRESETS:
                raise _usage(source, text, f"unknown preset {part!r} ({', '.join(CHAOS_PRESETS)})")
            values.update(getattr(Chaos, part)().to_dict())
            continue
        key, _, raw = (s.strip() for s in part.partition("="))
        if key not in names:
            raise _usage(source, text, f"unknown chaos field {key!r} ({', '.join(sorted(names))})")
        try:
            number = float(raw)
        except ValueError:
            raise _usage(source, text, f"{key} needs a number, got {raw!r}") from None
        values[key] = int(number) if key == "cs_delay" and number.is_integer() else number
    try:
        return Chaos(**values)
    except ValueError as exc:
        raise _usage(source, text, str(exc)) from None


def _checked(
    text: str, source: str, convert: Callable[[str], Any], expected: str, check: Callable[[Any], T]
) -> T:
    """``check(convert(text))``, every failure a usage error naming ``source`` and ``text``."""
    try:
        value = convert(text)
    except ValueError:
        raise _usage(source, text, f"expected {expected}") from None
    try:
        return check(value)
    except ValueError as exc:
        raise _usage(source, text, str(exc)) from None


def _parse_seed(text: str, source: str) -> tuple[int | None, bool]:
    if text == "last":
        return None, True
    return _checked(text, source, lambda s: int(s, 0), "an integer or 'last'", check_seed), False


def _parse_duration(text: str, source: str) -> float:
    return _checked(text, source, float, "a number of seconds", check_duration)


def _parse_threads(text: str, source: str) -> int:
    return _checked(text, source, int, "a whole number", check_threads)


def _parse_evidence_cap(text: str, source: str) -> float:
    return _checked(text, source, float, "a number", check_evidence_cap)


def _parse_choice(choices: tuple[str, ...]) -> Any:
    def parse(text: str, source: str) -> str:
        if text not in choices:
            raise _usage(source, text, f"expected one of {', '.join(choices)}")
        return text

    return parse


PARSERS: dict[str, Any] = {
    "duration": _parse_duration,
    "threads": _parse_threads,
    "chaos": parse_chaos,
    "evidence_cap": _parse_evidence_cap,
    "path": _parse_choice(PATHS),
    "registration": _parse_choice(REGISTRATIONS),
}


def _raw(config: pytest.Config, opt: Option) -> tuple[Any, str]:
    """The value of ``opt`` and where it came from (flag first, then ini)."""
    value = config.getoption(opt.flag)
    if value is not None:
        return value, opt.flag
    return config.getini(opt.ini), f"ini {opt.ini}"


def read_settings(config: pytest.Config) -> Settings:
    """Return the validated settings of this run.

    Raises:
        pytest.UsageError: a value is invalid; the message names the option and the value.
    """
    settings = Settings()
    for opt in OPTIONS:
        value, source = _raw(config, opt)
        if opt.kind == "bool":
            flag: dict[str, Any] = {opt.name: bool(value)}
            settings = replace(settings, **flag)
            continue
        text = str(value).strip()
        if not text:
            continue
        if opt.name == "seed":
            seed, last = _parse_seed(text, source)
            settings = replace(settings, seed=seed, seed_last=last)
        elif opt.name == "json":
            settings = replace(settings, json=text)
        else:
            settings = replace(settings, **{opt.name: PARSERS[opt.name](text, source)})
    if settings.chaos and settings.chaos.hotplug_hz > 0 and not settings.allow_hotplug:
        value, source = _raw(config, next(o for o in OPTIONS if o.name == "chaos"))
        raise _usage(source, value, "hotplug_hz > 0 needs --rseq-allow-hotplug")
    return settings


def as_flags(settings: Settings, seed: int) -> list[str]:
    """The command-line flags that repeat ``settings`` with ``seed`` (``--rseq-json`` left out)."""
    flags = [f"--rseq-seed={seed}"]
    if settings.duration is not None:
        flags.append(f"--rseq-duration={settings.duration!r}")
    if settings.threads is not None:
        flags.append(f"--rseq-threads={settings.threads}")
    if settings.chaos is not None:
        base = Chaos().to_dict()
        spec = [f"{k}={v!r}" for k, v in settings.chaos.to_dict().items() if v != base[k]]
        flags.append("--rseq-chaos=" + (",".join(spec) or "none"))
    if settings.evidence_cap is not None:
        flags.append(f"--rseq-evidence-cap={settings.evidence_cap!r}")
    for name in ("path", "registration"):
        if getattr(settings, name) is not None:
            flags.append(f"--rseq-{name}={getattr(settings, name)}")
    if settings.allow_hotplug:
        flags.append("--rseq-allow-hotplug")
    if settings.smoke:
        flags.append("--rseq-smoke")
    if settings.lint:
        flags.append("--rseq-lint")
    if settings.mutate:
        flags.append("--rseq-mutate")
    return flags
