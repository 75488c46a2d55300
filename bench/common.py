"""What every benchmark script shares: the CPU's name and its section of bench/RESULTS.md."""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector-instruction flags of note (AVX-512, AMX, AVX-VNNI), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")))
    except OSError:
        pass
    return []


def write_section(heading: str, lines: list[str]) -> None:
    """Replace the section ``heading`` (e.g. ``"## Search"``) of RESULTS.md, or append it.

    ``lines`` is the body without the heading; other sections are left as they are.
    """
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    section = "\n".join([heading, "", *lines]).rstrip("\n") + "\n"
    start = text.find(f"\n{heading}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        rest = "\n" + text[end:].lstrip("\n") if end >= 0 else ""
        text = text[:start].rstrip("\n") + "\n\n" + section + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")
