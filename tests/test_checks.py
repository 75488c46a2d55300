"""The static checks that ``.ci/checks`` runs fail when they should.

Each check is run on a small scratch copy, never on the tree itself: a lint error and an
unformatted file for ruff, an unannotated function in ``core/`` and a bare ``App`` in ``tui/`` for
mypy (strict there), and an import that breaks a contract for import-linter, with the same check
passing on the clean copy so that the failure is the planted error's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_ruff_fails_on_a_lint_error(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text('"""Module."""\n\nimport os\n')
    (tmp_path / "good.py").write_text('"""Module."""\n\nimport os\n\nprint(os.sep)\n')
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", PYPROJECT]
    bad = _run([*ruff, "bad.py"], tmp_path)
    assert bad.returncode != 0 and "F401" in bad.stdout
    assert _run([*ruff, "good.py"], tmp_path).returncode == 0


def test_ruff_format_check_fails_on_unformatted_code(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("x = ( 1,2 )\n")
    (tmp_path / "good.py").write_text("x = (1, 2)\n")
    ruff = [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "--config", PYPROJECT]
    assert _run([*ruff, "bad.py"], tmp_path).returncode != 0
    assert _run([*ruff, "good.py"], tmp_path).returncode == 0


def _mypy_on_scratch_module(
    tmp_path: Path, module: str, *, incremental: bool = True
) -> tuple[Path, list[str | Path]]:
    """A new, empty module ``module`` (``"core/doubling.py"``) in a scratch package under
    ``tmp_path``, and the mypy command that checks it with the project's configuration."""
    pytest.importorskip("mypy")
    path = tmp_path / module
    path.parent.mkdir()
    (path.parent / "__init__.py").write_text("")
    mypy: list[str | Path] = [sys.executable, "-m", "mypy", "--config-file", PYPROJECT]
    if not incremental:
        mypy.append("--no-incremental")
    return path, [*mypy, "--cache-dir", tmp_path / ".mypy_cache", module]


def test_mypy_is_strict_on_core(tmp_path: Path) -> None:
    # the three versions below are checked afresh, never from a cache
    module, mypy = _mypy_on_scratch_module(tmp_path, "core/doubling.py", incremental=False)
    module.write_text("def double(x):\n    return 2 * x\n")  # only strict mode objects
    loose = _run(mypy, tmp_path)
    assert loose.returncode != 0 and "no-untyped-def" in loose.stdout, loose.stdout
    module.write_text("def double(x: int) -> str:\n    return 2 * x\n")
    wrong = _run(mypy, tmp_path)
    assert wrong.returncode != 0 and "return-value" in wrong.stdout, wrong.stdout
    module.write_text("def double(x: int) -> int:\n    return 2 * x\n")
    typed = _run(mypy, tmp_path)
    assert typed.returncode == 0, typed.stdout


def test_mypy_is_strict_on_the_app(tmp_path: Path) -> None:
    """A new module of ``tui/`` is held to strict typing, Textual's generics included."""
    module, mypy = _mypy_on_scratch_module(tmp_path, "tui/hello.py")
    header = '"""Module."""\n\nfrom textual.app import App\n\n\n'
    module.write_text(header + "class Hello(App):\n    pass\n")  # App[ReturnType]
    loose = _run(mypy, tmp_path)
    assert loose.returncode != 0 and "type-arg" in loose.stdout, loose.stdout
    module.write_text(header + "class Hello(App[None]):\n    pass\n")
    typed = _run(mypy, tmp_path)
    assert typed.returncode == 0, typed.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three packages and pyproject.toml, copied, for the import contracts."""
    pytest.importorskip("importlinter")
    root = tmp_path_factory.mktemp("tree")
    for name in ("core", "cli", "tui"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, root / "pyproject.toml")
    return root


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return _run([sys.executable, "-c", code, "--no-cache"], root)


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("core/_planted.py", "import tui.app\n", "Front ends over the engine"),
        ("core/_planted.py", "import cli.output\n", "Front ends over the engine"),
        ("tui/_planted.py", "import cli.main\n", "Front ends over the engine"),
        ("core/_planted.py", "import textual\n", "The engine imports no UI toolkit"),
        ("core/scan.py", "import core.library\n", "The library and search"),
        ("core/registry.py", "import core.encoder\n", "Running and installing models"),
    ],
)
def test_import_contracts_fail_on_a_forbidden_import(
    tree_copy: Path, module: str, source: str, contract: str
) -> None:
    target = tree_copy / module
    original = target.read_text() if target.exists() else None
    target.write_text((original or "") + source)
    try:
        broken = _lint_imports(tree_copy)
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_text(original)
    assert broken.returncode != 0, broken.stdout
    assert f"{contract}" in broken.stdout and "BROKEN" in broken.stdout, broken.stdout


def test_import_contracts_hold_on_the_clean_copy(tree_copy: Path) -> None:
    kept = _lint_imports(tree_copy)
    assert kept.returncode == 0, kept.stdout
