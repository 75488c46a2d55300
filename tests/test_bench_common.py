"""The bench scripts' shared helpers that decide what stays on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _scratch_in_child(code: str) -> Path:
    """Run ``code`` (which prints a folder) in a fresh interpreter; the folder it printed."""
    program = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from bench.common import scratch_folder; {code}"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    return Path(done.stdout.strip().splitlines()[-1])


def test_a_temporary_work_folder_is_removed_when_the_script_exits() -> None:
    """The scripts install models of gigabytes into their work folder: a temporary one goes when
    the script ends, also when it ends with an error."""
    for ending in ("", "; raise SystemExit(3)", "; 1 / 0"):
        folder = _scratch_in_child(
            "f = scratch_folder('clipsearch-test-'); (f / 'big.bin').write_bytes(b'x' * 1000); "
            f"print(f, flush=True){ending}"
        )
        assert folder.name.startswith("clipsearch-test-")
        assert not folder.exists(), ending


def test_a_work_folder_given_is_made_and_kept(tmp_path: Path) -> None:
    given = tmp_path / "work" / "here"
    folder = _scratch_in_child(
        f"f = scratch_folder('clipsearch-test-', __import__('pathlib').Path({str(given)!r})); "
        "(f / 'kept.txt').write_text('x'); print(f)"
    )
    assert folder == given
    assert (given / "kept.txt").read_text() == "x"
