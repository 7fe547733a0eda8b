"""Every command in the docs runs (the conventions are in ``docs/index.md``).

* ```` ```console ````: each ``$ `` line is a command (the rest is output).
* ```` ```sh ````, ```` ```bash ````, ```` ```shell ````: every line is a command.
* ```` ```yaml ```` with ``steps:``: every ``run:`` step is a command.
* A block right after ``<!-- file: NAME -->`` is written to ``NAME`` first.
* A command must exit 0, or ``N`` when it ends with ``# exit N``.
* A block right after ``<!-- not-run: REASON -->`` is not run; the reason is
  required and stays visible in the page's source.

The commands of one page run in order, in a fresh folder, with this Python
environment first on ``PATH``. The README's quick start (a fresh checkout:
a new venv and a build) is checked for running the gate as its main job;
the gate itself runs in ``tests/test_gate.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SKIPPED_SECTIONS = {"README.md": {"Quick start"}}
COMMAND_TIMEOUT_S = 300
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
FILE = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->\s*$")
SHELLS = {"sh", "bash", "shell"}
# No package index is reachable from the tests: an install is checked as "it is installed".
SUBSTITUTES = {
    "pip install pytest-rseq": "python -m pip show pytest-rseq",
    'pip install "pytest-rseq @ git+https://<your-fork-url>"': "python -m pip show pytest-rseq",
}


@dataclass(frozen=True)
class Step:
    """Write a file (``name`` set) or run a command, found at ``line`` of a page."""

    line: int
    text: str
    name: str | None = None
    exit_code: int = 0


def _commands(lines: list[str]) -> list[str]:
    """Join backslash continuations; drop blanks and comment lines."""
    out: list[str] = []
    current = ""
    for raw in lines:
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current} {line.strip()}" if current else line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        out.append(current)
        current = ""
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _yaml_runs(lines: list[str]) -> list[str]:
    runs: list[str] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)(?:-\s+)?run:\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        if match.group(2) not in ("|", ">"):
            runs.append(match.group(2))
            continue
        indent = len(match.group(1))
        block = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i].strip())
            i += 1
        runs.extend(_commands(block))
    return runs


def _block_steps(lang: str, body: list[str], first_line: int) -> list[str]:
    if lang == "console":
        picked = []
        for idx, line in enumerate(body):
            if line.startswith("$ "):
                picked.append(line[2:])
            elif picked and picked[-1].endswith("\\") and idx:
                picked[-1] = picked[-1][:-1] + line.strip()
        return picked
    if lang in SHELLS:
        return _commands(body)
    if lang in ("yaml", "yml") and any("steps:" in line for line in body):
        return _yaml_runs(body)
    return []


def steps_of(page: Path) -> list[Step]:
    """The files and commands of ``page``, in order."""
    lines = page.read_text().splitlines()
    skipped = SKIPPED_SECTIONS.get(page.name, set())
    section = ""
    pending: str | None = None
    not_run: str | None = None
    found: list[Step] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        file_match = FILE.match(line)
        if file_match:
            pending = file_match.group(1)
        not_run_match = NOT_RUN.match(line)
        if not_run_match:
            not_run = not_run_match.group(1)
            assert not_run, f"{page.name}:{i + 1}: not-run needs a reason"
        fence = re.match(r"^```(\w*)\s*$", line)
        if not fence:
            i += 1
            continue
        lang, start = fence.group(1), i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        body = lines[start:end]
        if section not in skipped and not_run is None:
            if pending:
                found.append(Step(start, "\n".join(body) + "\n", name=pending))
            for cmd in _block_steps(lang, body, start):
                code = EXIT.search(cmd)
                cmd = EXIT.sub("", cmd) if code else cmd
                found.append(Step(start, cmd, exit_code=int(code.group(1)) if code else 0))
        pending = not_run = None
        i = end + 1
    return found


PAGES_WITH_STEPS = [p for p in PAGES if p.is_file() and any(not s.name for s in steps_of(p))]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.parametrize("page", PAGES_WITH_STEPS, ids=lambda p: p.name)
def test_every_command_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    env = _env()
    for step in steps_of(page):
        if step.name:
            target = tmp_path / step.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.text)
            continue
        cmd = SUBSTITUTES.get(step.text.strip(), step.text)
        proc = subprocess.run(
            ["bash", "-c", cmd],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert proc.returncode == step.exit_code, (
            f"{page.name}:{step.line}: `{step.text}` exited {proc.returncode}, "
            f"expected {step.exit_code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


def test_my_pages_have_commands() -> None:
    names = {p.name for p in PAGES_WITH_STEPS}
    assert {"guide.md", "gate.md", "ci.md"} <= names


def test_readme_quick_start_runs_the_gate_as_the_main_job() -> None:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = quick.split("```", 2)[1]
    first_command = _commands(first_block.splitlines()[1:])[0]
    assert re.search(r"python -m pytest_rseq --quick\b", first_command), first_command


def test_the_extractor_finds_every_kind_of_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n<!-- file: a.txt -->\n```text\nhello\n```\n"
        "```console\n$ echo one\noutput\n$ false  # exit 1\n```\n"
        "```sh\necho two \\\n  three\n# comment\n```\n"
        "```yaml\nsteps:\n  - run: echo four\n  - run: |\n      echo five\n      echo six\n```\n"
        "```python\nprint('not a command')\n```\n"
        "<!-- not-run: needs your own source -->\n```sh\ncc mine.c\n```\n"
    )
    got = [(s.name, s.text, s.exit_code) for s in steps_of(page)]
    assert got == [
        ("a.txt", "hello\n", 0),
        (None, "echo one", 0),
        (None, "false", 1),
        (None, "echo two three", 0),
        (None, "echo four", 0),
        (None, "echo five", 0),
        (None, "echo six", 0),
    ]


def test_every_builtin_workload_has_a_row_in_the_guide() -> None:
    from pytest_rseq import BUILTIN_WORKLOADS

    guide = (ROOT / "docs" / "guide.md").read_text()
    table = guide.split("## Built-in workloads", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert rows == set(BUILTIN_WORKLOADS)
