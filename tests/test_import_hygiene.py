"""``core`` is the headless engine: no module of it may pull in the UI toolkit or PyTorch, and
its small modules load without the heavy ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
MODULES = sorted(f"core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__")
FORBIDDEN = ("textual", "rich", "tui", "cli", "torch", "torchvision", "open_clip", "onnxruntime")


def modules_after(statement: str) -> set[str]:
    """Every module in ``sys.modules`` after ``statement``, in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def imported_by(statement: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after ``statement``, in a fresh interpreter."""
    return {module.split(".")[0] for module in modules_after(statement)}


@pytest.mark.parametrize("module", ["core", *MODULES])
def test_core_module_imports_no_ui_and_no_torch(module):
    bad = sorted(imported_by(f"import {module}\nfrom core import *") & set(FORBIDDEN))
    assert bad == [], f"{module} imports {' '.join(bad)}"


def test_the_check_can_fail():
    assert "textual" in imported_by("import textual")


def test_the_package_surface_loads_its_modules_on_first_use():
    import core
    from core.encoder import ClipModel, load_model
    from core.registry import available_models
    from core.tokenizer import tokenize

    assert (core.ClipModel, core.load_model) == (ClipModel, load_model)
    assert (core.available_models, core.tokenize) == (available_models, tokenize)
    assert set(core.__all__) <= set(dir(core))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        core.nope  # noqa: B018


def test_a_small_core_module_starts_without_numpy_pillow_or_the_tokenizer():
    heavy = {"numpy", "PIL", "ftfy", "regex", "ncnn"}
    assert not heavy & imported_by("import core.errors")
    assert heavy - {"ncnn", "ftfy"} <= imported_by("from core import tokenize, ClipModel")


def test_a_plain_query_is_tokenized_without_loading_ftfy():
    """ftfy is loaded only for a text it might change (see core.text_repair)."""
    for tokenizer in ("core.tokenizer import tokenize", "core.hf_tokenizer import canonicalize"):
        plain = imported_by(f"from {tokenizer} as t\nt('A red bicycle, in the snow!')")
        assert "ftfy" not in plain, tokenizer
        for text in ("café", "fish &amp; chips", "two\nlines"):
            assert "ftfy" in imported_by(f"from {tokenizer} as t\nt({text!r})"), (tokenizer, text)


def test_the_command_line_reads_its_version_only_for_version():
    """Reading the installed package's metadata (``importlib.metadata``) costs every command
    tens of milliseconds; only ``--version`` needs it."""
    assert "importlib.metadata" not in modules_after("import cli.main\ncli.main.build_parser()")
