"""The Vulkan (GPU) path of the encoders.

Without a Vulkan GPU, asking for one falls back to the CPU and gives the CPU's embeddings. With
one, the GPU's embeddings of real photos and of texts must match the CPU's (the same float32
graph) for both model families. The GPU tests skip on machines without a Vulkan driver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip")

from cli.main import main as cli_main
from core.encoder import gpu_count, load_model
from tests.reference import TINY_RESNET, TINY_VIT, make_reference, save_checkpoint

GALLERY = Path(__file__).resolve().parents[1] / "gallery"
TEXTS = ["a red bicycle in the snow", "sunset over the sea", "東京の夜景", "", "a cat " * 40]
COSINE_MIN = 0.9999

needs_gpu = pytest.mark.skipif(gpu_count() == 0, reason="no Vulkan GPU")


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch, quick: bool) -> str:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    checkpoint = save_checkpoint(make_reference(arch, seed=5), tmp_path / "tiny.safetensors")
    argv = ["model", "install", "--from", str(checkpoint), "--as", "tiny"]
    assert cli_main(argv + (["--quick-gelu"] if quick else [])) == 0
    return "tiny"


def _photos() -> list[Path]:
    photos = sorted(GALLERY.glob("*.jpg"))
    assert len(photos) >= 5
    return photos


def test_vulkan_request_without_gpu_falls_back_to_cpu(tmp_path, monkeypatch):
    name = _install(tmp_path, monkeypatch, TINY_VIT, quick=False)
    monkeypatch.setattr("core.encoder.gpu_count", lambda: 0)
    with (
        load_model(name, vulkan=True, threads=2) as asked,
        load_model(name, threads=2, precision="fp32") as cpu,
    ):
        assert asked.vulkan is False
        photos = _photos()[:3]
        np.testing.assert_array_equal(asked.encode_images(photos), cpu.encode_images(photos))


@needs_gpu
@pytest.mark.parametrize(
    "arch,quick", [(TINY_VIT, False), (TINY_RESNET, True)], ids=["vit", "resnet"]
)
def test_vulkan_matches_cpu(tmp_path, monkeypatch, arch, quick):
    name = _install(tmp_path, monkeypatch, arch, quick)
    with load_model(name, vulkan=True) as gpu, load_model(name, threads=2, precision="fp32") as cpu:
        assert gpu.vulkan is True
        photos = _photos()
        for ours, theirs in (
            (gpu.encode_images(photos), cpu.encode_images(photos)),
            (gpu.encode_texts(TEXTS), cpu.encode_texts(TEXTS)),
        ):
            assert np.isfinite(ours).all()
            cosine = np.sum(ours.astype(np.float64) * theirs, axis=1)
            assert cosine.min() >= COSINE_MIN, cosine
