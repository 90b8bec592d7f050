#!/usr/bin/env python3
"""Run upstream test files without and with hf-eco2ai instrumentation; compare per test.

Usage (from the repository root; the upstream files are NOT in this repository, see
``docs/compatibility.md`` for where they come from)::

    python tools/peer_suites/run.py --preset transformers --upstream /tmp/upstream/transformers
    python tools/peer_suites/run.py --preset lightning --upstream /tmp/upstream/lightning
    python tools/peer_suites/run.py --cwd DIR FILE [FILE ...]      # any other test files

Each suite runs twice, one after the other, with ``PYTHONPATH`` starting with this checkout's
``src``: once plainly (hf-eco2ai installed, not instrumented) and once with
``-p hf_eco2ai_session`` (instrumented for the whole session, see ``hf_eco2ai_session.py``).
Both runs use ``-q -p no:cacheprovider --color=no`` and a JUnit XML file, from which the outcome
of every test (passed / failed / error / skipped; an error in a fixture's teardown counts as
error) is read. Printed: the counts side by side, every test whose outcome differs, how many
tests failed with Lightning's "Test left zombie thread" or "Test left artifacts behind" check,
the files that appeared under the working directory,
pytest's own summary lines, and the instrumented run's measurement summary. Exit status 0 when
every outcome is the same and the instrumented run has no more such reports than the plain
one, 1 otherwise, 2 when a run did not finish.

Example (the outcome of one JUnit ``testcase`` element):
    >>> import xml.etree.ElementTree as ET
    >>> outcome_of(ET.fromstring('<testcase name="t"><skipped message="no GPU"/></testcase>'))
    ('skipped', 'no GPU')
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent

PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (working directory relative to --upstream, test files relative to it)
    "transformers": (".", ("tests/trainer/test_trainer_callback.py",)),
    "lightning": (
        "tests/tests_pytorch",
        (
            "trainer/connectors/test_signal_connector.py",
            "callbacks/test_early_stopping.py",
            "callbacks/test_timer.py",
            "trainer/connectors/test_checkpoint_connector.py",
            "callbacks/test_callbacks.py",
            "models/test_hooks.py",
        ),
    ),
}
REPORT_PATTERNS = {
    "zombie thread": "Test left zombie thread",
    "artifacts left behind": "Test left artifacts behind",
}
OUTCOMES = ("passed", "failed", "error", "skipped")
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass
class RunResult:
    """One pytest run: per-test outcomes, report counts, and what pytest printed."""

    label: str
    returncode: int
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    reports: Counter[str] = field(default_factory=Counter)
    summary: str = ""
    plugin_section: list[str] = field(default_factory=list)
    log: Path | None = None
    new_files: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(outcome for outcome, _ in self.outcomes.values())


def outcome_of(case: ET.Element) -> tuple[str, str]:
    """(outcome, first line of the message) of a JUnit testcase; error wins over failure."""
    for tag in ("error", "failure", "skipped"):
        child = case.find(tag)
        if child is not None:
            message = (child.get("message") or child.text or "").strip().splitlines()
            name = {"failure": "failed", "skipped": "skipped"}.get(tag, "error")
            return name, message[0][:200] if message else ""
    return "passed", ""


def read_junit(path: Path) -> dict[str, tuple[str, str]]:
    """Outcome of every test in a JUnit XML file, keyed ``classname::name``."""
    outcomes: dict[str, tuple[str, str]] = {}
    # The file is the one our own pytest run just wrote, not outside input.
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
        key = f"{case.get('classname')}::{case.get('name')}"
        new = outcome_of(case)
        old = outcomes.get(key)
        # pytest may write a second element for a teardown error: keep the worse outcome.
        if old is None or _SEVERITY[new[0]] > _SEVERITY[old[0]]:
            outcomes[key] = new
    return outcomes


def tests_reporting(path: Path, pattern: str) -> int:
    """How many tests in a JUnit XML file have ``pattern`` in a failure or error of theirs."""
    found = set()
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 (our own run's file)
        for child in case:
            text = (child.get("message") or "") + (child.text or "")
            if child.tag in ("failure", "error") and pattern in text:
                found.add(f"{case.get('classname')}::{case.get('name')}")
    return len(found)


def _files_under(root: Path) -> set[Path]:
    """Every path under ``root`` except ``__pycache__`` contents (to see what a run left)."""
    return {p for p in root.rglob("*") if "__pycache__" not in p.parts}


def run_pytest(
    label: str, cwd: Path, files: list[str], instrumented: bool, workdir: Path, timeout: float
) -> RunResult:
    """Run pytest once on ``files`` in ``cwd``; instrumented with the session plugin or not."""
    junit = workdir / f"{label}.xml"
    log = workdir / f"{label}.log"
    paths = [str(REPO / "src")] + ([str(PLUGIN_DIR)] if instrumented else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"]
    cmd += ["--color=no", "-rfE", f"--junitxml={junit}"]
    if instrumented:
        cmd += ["-p", "hf_eco2ai_session"]
    before = _files_under(cwd)
    print(f"[{label}] cd {cwd} && PYTHONPATH={env['PYTHONPATH']} {' '.join(cmd)}", flush=True)
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        log.write_text(out)
        return RunResult(label, returncode=-1, summary=f"timed out after {timeout:.0f} s", log=log)
    output = proc.stdout + proc.stderr
    log.write_text(output)
    result = RunResult(label, proc.returncode, log=log)
    result.new_files = sorted(str(p.relative_to(cwd)) for p in _files_under(cwd) - before)
    if junit.exists():
        result.outcomes = read_junit(junit)
    if junit.exists():
        for name, pattern in REPORT_PATTERNS.items():
            result.reports[name] = tests_reporting(junit, pattern)
    lines = output.splitlines()
    summaries = [ln for ln in lines if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    result.summary = summaries[-1].strip("= ") if summaries else "(no pytest summary line)"
    if "hf-eco2ai instrumentation (whole session)" in output:
        start = next(i for i, ln in enumerate(lines) if "hf-eco2ai instrumentation" in ln)
        result.plugin_section = [ln for ln in lines[start + 1 : start + 5] if ln.strip()]
    return result


def compare(plain: RunResult, instrumented: RunResult) -> int:
    """Print both runs side by side; return the exit status."""
    width = 38
    print(f"\n{'':{width}} {'without':>10} {'with':>10}")
    c_plain, c_instr = plain.counts(), instrumented.counts()
    for outcome in OUTCOMES:
        print(f"{outcome:{width}} {c_plain[outcome]:>10} {c_instr[outcome]:>10}")
    for name in REPORT_PATTERNS:
        label = f"tests with {name!r} report"
        print(f"{label:{width}} {plain.reports[name]:>10} {instrumented.reports[name]:>10}")
    print(
        f"{'new files under the cwd':{width}} {len(plain.new_files):>10}"
        f" {len(instrumented.new_files):>10}"
    )
    print(f"{'pytest exit status':{width}} {plain.returncode:>10} {instrumented.returncode:>10}")
    print(f"\nwithout: {plain.summary}\nwith:    {instrumented.summary}")
    for line in instrumented.plugin_section:
        print(f"  {line}")
    differences = []
    for key in sorted(set(plain.outcomes) | set(instrumented.outcomes)):
        before = plain.outcomes.get(key, ("absent", ""))
        after = instrumented.outcomes.get(key, ("absent", ""))
        if before[0] != after[0]:
            differences.append((key, before, after))
    print(f"\ntests whose outcome differs: {len(differences)}")
    for key, before, after in differences:
        print(f"  {key}: {before[0]} -> {after[0]}  {after[1] or before[1]}")
    failing = [k for k, (o, _) in instrumented.outcomes.items() if o in ("failed", "error")]
    for key in sorted(failing):
        print(f"  (with) {instrumented.outcomes[key][0]}: {key}  {instrumented.outcomes[key][1]}")
    for run in (plain, instrumented):
        for path in run.new_files[:20]:
            print(f"  ({run.label}) left: {path}")
    print(f"\nlogs: {plain.log}  {instrumented.log}")
    if plain.returncode < 0 or instrumented.returncode < 0:
        return 2
    more_reports = any(instrumented.reports[n] > plain.reports[n] for n in REPORT_PATTERNS)
    more_reports = more_reports or len(instrumented.new_files) > len(plain.new_files)
    return 1 if differences or more_reports else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a known upstream suite")
    parser.add_argument("--upstream", type=Path, help="the upstream checkout (with --preset)")
    parser.add_argument("--cwd", type=Path, help="where to run pytest (without --preset)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--workdir", type=Path, help="JUnit files and logs (default: a temp dir)")
    parser.add_argument("files", nargs="*", help="test files, relative to the working directory")
    args = parser.parse_args(argv)
    if args.preset:
        if args.upstream is None:
            parser.error("--preset needs --upstream DIR")
        subdir, preset_files = PRESETS[args.preset]
        cwd, files = (args.upstream / subdir).resolve(), list(args.files or preset_files)
    elif args.cwd is not None and args.files:
        cwd, files = args.cwd.resolve(), list(args.files)
    else:
        parser.error("give --preset NAME --upstream DIR, or --cwd DIR FILE [FILE ...]")
    missing = [f for f in files if not (cwd / f).is_file()]
    if missing:
        parser.error(f"not found under {cwd}: {', '.join(missing)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hf-eco2ai-peer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plain = run_pytest("without", cwd, files, False, workdir, args.timeout)
    instrumented = run_pytest("with", cwd, files, True, workdir, args.timeout)
    return compare(plain, instrumented)


if __name__ == "__main__":
    sys.exit(main())
