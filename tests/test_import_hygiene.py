"""``core`` is the headless engine: no module of it may pull in the UI toolkit or PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
MODULES = sorted(f"core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__")
FORBIDDEN = ("textual", "rich", "tui", "cli", "torch", "torchvision", "open_clip", "onnxruntime")


@pytest.mark.parametrize("module", ["core", *MODULES])
def test_core_module_imports_no_ui_and_no_torch(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"


def test_the_check_can_fail():
    code = "import textual, sys; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "True"
