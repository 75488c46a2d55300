"""The dial users choose a model by: speed class, speed, published accuracy, size, licence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli import main as cli
from core import registry
from core.catalog import dial_models
from core.registry import DialFacts, dial_facts, short_licence

MEASURED: dict[str, Any] = {
    "bf16": {"models": {}},
    "speed": {
        "measured_on": "Test CPU, 2 cores",
        "models": {
            "MobileCLIP2-S0": {"images_per_s": 12.5},
            "ViT-B-32-256-datacomp": {"images_per_s": 4.0},
        },
    },
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_dial_runs_from_the_fastest_to_the_best(home: Path) -> None:
    rows = dial_models()
    assert [(row["speed_class"], row["name"]) for row in rows] == [
        ("fastest", "MobileCLIP2-S0"),
        ("balanced", "ViT-B-32-256-datacomp"),
        ("best", "MobileCLIP2-S2"),
    ]
    for row in rows:
        assert row["imagenet_top1"] and row["download_size"] and row["license"]
    accuracy = [row["imagenet_top1"] for row in rows]
    assert accuracy == [71.5, 72.8, 77.2]
    assert registry.default_model_name() == "ViT-B-32-256-datacomp"  # not an Apple-licensed one


def test_measured_speed_is_read_with_the_cpu_it_was_measured_on(monkeypatch) -> None:
    monkeypatch.setattr(registry, "measurements", lambda: MEASURED)
    assert dial_facts("MobileCLIP2-S0").images_per_s == 12.5
    assert dial_facts("MobileCLIP2-S0").measured_on == "Test CPU, 2 cores"
    unmeasured = dial_facts("MobileCLIP2-S2")
    assert unmeasured.images_per_s is None and unmeasured.measured_on is None
    assert unmeasured.speed_class == "best" and unmeasured.imagenet_top1 == 77.2
    assert dial_facts("no-such-model") == DialFacts()


def test_every_measured_speed_names_a_registry_model() -> None:
    speed = registry.measurements().get("speed") or {}
    for name, entry in (speed.get("models") or {}).items():
        registry.get_spec(name)
        assert entry["images_per_s"] > 0
    if speed.get("models"):
        assert speed["measured_on"]


@pytest.mark.parametrize(
    ("licence", "short"),
    [
        ("MIT (OpenAI CLIP)", "MIT"),
        ("Apache-2.0 (SigLIP 2 weights, Google)", "Apache-2.0"),
        (
            "Apple Machine Learning Research Model Terms of Use (apple-amlr), https://example.org",
            "apple-amlr",
        ),
        ("unknown", "-"),
        (None, "-"),
    ],
)
def test_short_licence(licence: str | None, short: str) -> None:
    assert short_licence(licence) == short


def test_model_list_shows_the_dial(home: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(registry, "measurements", lambda: MEASURED)
    assert cli.main(["model", "list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:7] == ["NAME", "INSTALLED", "SIZE", "CLASS", "IMAGES/S", "IMAGENET", "LICENCE"]
    fastest = next(line for line in out.splitlines() if line.split()[:1] == ["MobileCLIP2-S0"])
    assert "fastest" in fastest and "12.5" in fastest and "71.5%" in fastest
    assert "apple-amlr" in fastest
    best = next(line for line in out.splitlines() if line.split()[:1] == ["MobileCLIP2-S2"])
    assert "best" in best and "77.2%" in best and "12.5" not in best
    assert "photos indexed per second, measured on Test CPU, 2 cores" in out

    assert cli.main(["model", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["ViT-B-32-256-datacomp"]["speed_class"] == "balanced"
    assert rows["ViT-B-32-256-datacomp"]["images_per_s"] == 4.0
    assert rows["RN50-openai"]["speed_class"] is None
