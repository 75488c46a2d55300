"""Run one bench script at two git revisions, alternately on this machine, and print the ratio
of each figure it prints.

For showing that a change left the figures within noise: both revisions run the same script
with the same arguments, in rounds that alternate the order (A B, then B A, ...), so that a
machine that gets busier or quieter during the run weighs on both alike.

::

    python bench/compare_revisions.py OLD NEW bench/search.py -- --sizes 10000 --queries 5
    python bench/compare_revisions.py 87e84e1^ main bench/rescan.py --rounds 5 -- --files 2000

Each revision is checked out with ``git worktree add --detach`` into one temporary folder
(removed afterwards), and the script runs there, from that folder, with ``PYTHONPATH`` set to
it alone, so that each side imports its own code. ``--no-write`` is added where the script has
it at that revision, so that neither run rewrites a ``RESULTS.md`` (which lives in the
temporary worktree anyway). A ``shared`` folder beside this checkout (the shared photos that
``bench/rescan.py`` and ``bench/indexing.py`` read by default) is linked beside the temporary
worktrees, so both revisions read the same files.

An option that the script lacks at one revision is refused before anything runs, naming it;
``--args-a`` and ``--args-b`` add arguments for one side only.

What counts as a figure: every number in the script's standard output, labelled by its line with
that number marked ``<#>`` and the others blanked to ``#`` (``| # | file | <#> ms | ...``), and
every number of a JSON object printed at the end of a line, labelled by the text before it and
its key; lines with the same label are told apart by their order. Figures equal in every run at both
revisions (counts, sizes, the Python version) are summed up in one line; for the others the
table shows each revision's median and range (min-max over its runs: the noise) and the ratio
B / A of the medians. For a time, a ratio above 1 means B is slower; for a rate, faster. The whole
run's wall time is one more figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a number, with thousands separators, decimals or an exponent, that is not part of a name
# (x86_64) or of a version (3.11.9); "1.09x" and "12 ms" count
NUMBER = re.compile(
    r"(?<![\w.])-?(?>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\d.]\d)"
)
WALL = "(whole run, wall s)"
MARK = "<#>"
"""Stands for the number a figure is, in its line; the line's other numbers are ``#``."""

Figures = dict[tuple[str, int], float]


def figures(output: str) -> Figures:
    """The numbers of ``output``, keyed by (label, occurrence): the label is the line with the
    figure's number marked ``<#>`` and the others blanked to ``#``, or for a JSON object on the
    line, the text before it and the key; the occurrence counts lines of the same label."""
    found: Figures = {}
    seen: dict[str, int] = {}

    def add(label: str, value: float) -> None:
        occurrence = seen.get(label, 0)
        seen[label] = occurrence + 1
        found[(label, occurrence)] = value

    for line in output.splitlines():
        line, values = _json_values(line)
        prefix = NUMBER.sub("#", line).strip()
        for key, value in values:
            add(f"{prefix} {key}", value)
        for number in NUMBER.finditer(line):
            before = NUMBER.sub("#", line[: number.start()])
            label = (before + MARK + NUMBER.sub("#", line[number.end() :])).strip()
            add(label, float(number.group().replace(",", "")))
    return found


def _json_values(line: str) -> tuple[str, list[tuple[str, float]]]:
    """A JSON object at the end of ``line``: the text before it and its numbers by key (nested
    keys joined with dots); else the line and no numbers."""
    start = line.find("{")
    if start < 0 or not line.rstrip().endswith("}"):
        return line, []
    try:
        data = json.loads(line[start:])
    except ValueError:
        return line, []
    if not isinstance(data, dict):
        return line, []
    values: list[tuple[str, float]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values.append((prefix, float(value)))

    walk("", data)
    return line[:start], values


def _shown(label: str, width: int = 78) -> str:
    """``label`` cut to ``width`` characters around its marked number."""
    if len(label) <= width:
        return label
    middle = max(label.find(MARK), 0)
    start = min(max(middle - width // 2, 0), len(label) - width)
    return ("…" if start else "") + label[start : start + width] + "…"


def script_options(worktree: Path, script: str, python: str) -> set[str]:
    """The ``--options`` that ``script --help`` lists at this worktree."""
    result = subprocess.run(
        [python, script, "--help"],
        cwd=worktree,
        env=_environment(worktree),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{script} --help failed at {worktree.name}:\n{result.stderr.strip()}")
    return set(re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", result.stdout))


def _environment(worktree: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(worktree)
    return environment


def _unknown(arguments: Sequence[str], options: set[str]) -> list[str]:
    given = [a.split("=", 1)[0] for a in arguments if a.startswith("--") and a != "--"]
    return [option for option in given if option not in options]


def run_once(worktree: Path, command: list[str], timeout: float) -> tuple[str, float]:
    """Run ``command`` in ``worktree``; its standard output and wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=worktree,
        env=_environment(worktree),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed at {worktree.name} (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-4000:]}"
        )
    return result.stdout, wall


def report(label_a: str, label_b: str, runs_a: list[Figures], runs_b: list[Figures]) -> list[str]:
    """The table of figures that vary: each revision's median and range, and the ratio B / A
    of the medians."""
    keys = [key for key in runs_a[0] if all(key in run for run in (*runs_a, *runs_b))]
    lines = [
        f"A = {label_a}, B = {label_b}; {len(runs_a)} runs each, alternating",
        f"{'median A':>11} {'median B':>11} {'B / A':>7} {'A min-max':>19} {'B min-max':>19}"
        "  figure",
    ]
    constant = 0
    for key in keys:
        values_a = [run[key] for run in runs_a]
        values_b = [run[key] for run in runs_b]
        if len({*values_a, *values_b}) == 1:
            constant += 1
            continue
        median_a = statistics.median(values_a)
        median_b = statistics.median(values_b)
        ratio = f"{median_b / median_a:7.3f}" if median_a else f"{'-':>7}"
        spread_a = f"{min(values_a):.4g}-{max(values_a):.4g}"
        spread_b = f"{min(values_b):.4g}-{max(values_b):.4g}"
        label, occurrence = key
        where = f" (line {occurrence + 1} of these)" if occurrence else ""
        lines.append(
            f"{median_a:11.4g} {median_b:11.4g} {ratio} {spread_a:>19} {spread_b:>19}  "
            f"{_shown(label)}{where}"
        )
    lines.append(f"{constant} figures equal in every run at both revisions (counts, sizes)")
    only = {key for run in (*runs_a, *runs_b) for key in run} - set(keys)
    if only:
        lines.append(
            f"{len(only)} figures printed at one revision or in some runs only: not compared"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passed = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description="Run a bench script at two git revisions alternately; print each figure's "
        "ratio B / A. Arguments after -- go to the script at both revisions."
    )
    parser.add_argument("a", metavar="A", help="the first revision (e.g. the one before a change)")
    parser.add_argument("b", metavar="B", help="the second revision (e.g. main)")
    parser.add_argument("script", help="the bench script, relative to the repository root")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision (default 3)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run at most")
    parser.add_argument("--args-a", default="", help="more arguments for A only (one string)")
    parser.add_argument("--args-b", default="", help="more arguments for B only (one string)")
    parser.add_argument("--python", default=sys.executable, help="the Python to run it with")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    commits = {}
    for side in ("a", "b"):
        revision = getattr(args, side)
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            parser.error(f"no such revision: {revision}")
        commits[side] = found.stdout.strip()

    with tempfile.TemporaryDirectory(prefix="compare-revisions-") as temporary:
        folder = Path(temporary)
        shared = ROOT.parent / "shared"
        if shared.is_dir():
            (folder / "shared").symlink_to(shared.resolve(), target_is_directory=True)
        worktrees: dict[str, Path] = {}
        try:
            for side, commit in commits.items():
                worktrees[side] = folder / f"{side}-{commit[:10]}"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet"]
                    + [str(worktrees[side]), commit],
                    check=True,
                )
            commands: dict[str, list[str]] = {}
            for side, worktree in worktrees.items():
                if not (worktree / args.script).is_file():
                    raise SystemExit(f"{args.script} does not exist at {getattr(args, side)}")
                options = script_options(worktree, args.script, args.python)
                extra = shlex.split(getattr(args, f"args_{side}"))
                arguments = [*passed, *extra]
                missing = _unknown(arguments, options)
                if missing:
                    raise SystemExit(
                        f"{args.script} at {getattr(args, side)} has no {', '.join(missing)}; "
                        f"give such options with --args-{'b' if side == 'a' else 'a'} only"
                    )
                if "--no-write" in options and "--no-write" not in arguments:
                    arguments.append("--no-write")
                commands[side] = [args.python, args.script, *arguments]
                print(
                    f"{side.upper()}: {getattr(args, side)} ({commits[side][:10]}): "
                    + shlex.join(commands[side][1:]),
                    flush=True,
                )
            runs: dict[str, list[Figures]] = {"a": [], "b": []}
            for round_number in range(args.rounds):
                order = ("a", "b") if round_number % 2 == 0 else ("b", "a")
                for side in order:
                    output, wall = run_once(worktrees[side], commands[side], args.timeout)
                    found = figures(output)
                    found[(WALL, 0)] = wall
                    runs[side].append(found)
                    print(f"round {round_number + 1}: {side.upper()} {wall:.1f} s", flush=True)
        finally:
            for worktree in worktrees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                    check=False,
                )
    print("\n".join(report(args.a, args.b, runs["a"], runs["b"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
