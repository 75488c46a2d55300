"""The converter on its own: shapes it checks, architectures it reads, ncnn files it writes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from core.convert import convert_checkpoint, infer_architecture
from core.errors import CheckpointError
from core.registry import ModelSpec, Preprocess, get_spec
from tests.reference import (
    TINY_RESNET,
    TINY_VIT,
    TINY_VIT_NARROW_HEADS,
    make_reference,
    reference_state_dict,
)


def _spec(arch) -> ModelSpec:
    return ModelSpec("t", arch, Preprocess(arch.vision["image_size"]))


def _run_visual(folder, pixels: np.ndarray) -> np.ndarray:
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    assert net.load_param(str(folder / "visual.param")) == 0
    assert net.load_model(str(folder / "visual.bin")) == 0
    ex = net.create_extractor()
    ex.input("image", ncnn.Mat(pixels).clone())
    rc, out = ex.extract("embedding")
    assert rc == 0
    return np.array(out).reshape(-1)


@pytest.mark.parametrize("arch", [TINY_VIT_NARROW_HEADS, TINY_RESNET], ids=["vit16", "resnet"])
@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_visual_tower_matches_reference(tmp_path, arch, storage):
    model = make_reference(arch, seed=3)
    convert_checkpoint(reference_state_dict(model), _spec(arch), tmp_path, storage)
    size = arch.vision["image_size"]
    pixels = np.random.default_rng(0).standard_normal((3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = model.encode_image(torch.from_numpy(pixels)[None]).numpy()[0]
    ours = _run_visual(tmp_path, pixels)
    cosine = ours @ expected / np.linalg.norm(ours) / np.linalg.norm(expected)
    assert cosine > (0.99999 if storage == "fp32" else 0.999)


def test_fp16_weights_make_smaller_files(tmp_path):
    sd = reference_state_dict(make_reference(TINY_VIT, seed=0))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    convert_checkpoint(sd, _spec(TINY_VIT), tmp_path / "a", "fp32")
    convert_checkpoint(sd, _spec(TINY_VIT), tmp_path / "b", "fp16")
    full = (tmp_path / "a" / "visual.bin").stat().st_size
    half = (tmp_path / "b" / "visual.bin").stat().st_size
    assert half < 0.6 * full


def test_missing_key_is_named(tmp_path):
    sd = reference_state_dict(make_reference(TINY_VIT, seed=0))
    del sd["visual.ln_post.weight"]
    with pytest.raises(CheckpointError, match=r"missing key 'visual\.ln_post\.weight'"):
        convert_checkpoint(sd, _spec(TINY_VIT), tmp_path)


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    sd = reference_state_dict(make_reference(TINY_VIT, seed=0))
    sd["text_projection"] = np.zeros((128, 32), np.float32)
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(sd, _spec(TINY_VIT), tmp_path)
    message = str(info.value)
    assert "'text_projection'" in message and "(128, 32)" in message and "(128, 64)" in message


def test_full_size_checkpoint_does_not_fit_tiny_spec(tmp_path):
    sd = reference_state_dict(make_reference(TINY_RESNET, seed=0))
    with pytest.raises(CheckpointError, match="shape"):
        convert_checkpoint(sd, get_spec("RN50-openai"), tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    sd = reference_state_dict(make_reference(TINY_VIT, seed=0))
    sd["visual.proj"][0, 0] = np.nan
    with pytest.raises(CheckpointError, match="NaN"):
        convert_checkpoint(sd, _spec(TINY_VIT), tmp_path)


@pytest.mark.parametrize("arch", [TINY_VIT, TINY_RESNET], ids=["vit", "resnet"])
def test_infer_architecture_reads_shapes(arch):
    sd = reference_state_dict(make_reference(arch, seed=0))
    assert infer_architecture(sd, quick_gelu=arch.quick_gelu) == arch


def test_infer_architecture_of_full_size_configs():
    for name in ("RN50-openai", "ViT-B-32-openai", "ViT-B-32-256-datacomp"):
        arch = get_spec(name).architecture
        sd = reference_state_dict(make_reference(arch, seed=0))
        assert infer_architecture(sd, quick_gelu=arch.quick_gelu) == arch, name


def test_not_a_clip_checkpoint():
    with pytest.raises(CheckpointError, match="missing key"):
        infer_architecture({"weight": np.zeros(3, np.float32)})


def test_ncnn_extract_releases_the_gil(tmp_path):
    """A Python thread keeps running while ncnn computes: the UI stays responsive."""
    arch = get_spec("ViT-B-32-256-datacomp").architecture
    sd = reference_state_dict(make_reference(arch, seed=0))
    convert_checkpoint(sd, _spec(arch), tmp_path)
    pixels = np.zeros((3, 256, 256), np.float32)
    _run_visual(tmp_path, pixels)  # warm up

    ticks = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    thread = threading.Thread(target=ticker)
    thread.start()
    start = time.perf_counter()
    for _ in range(3):
        _run_visual(tmp_path, pixels)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    during = [t for t in ticks if start <= t <= start + elapsed]
    gaps = np.diff(during) if len(during) > 1 else np.array([elapsed])
    # with the GIL held for a whole forward pass the ticker would stall for its full length
    assert len(during) > 10
    assert gaps.max() < elapsed / 3


def test_no_vulkan_messages_reach_the_terminal(tmp_path):
    """ncnn's complaints about a missing Vulkan driver never reach a user's stderr."""
    code = (
        "from core.encoder import gpu_count\n"
        "import ncnn\n"
        "n = gpu_count()\n"
        "net = ncnn.Net()\n"
        "print('gpus', n)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "gpus" in result.stdout
    assert "vulkan" not in (result.stderr + result.stdout).lower()


def test_int8_image_tower_is_close_and_smaller(tmp_path):
    """int8 matrix products: embeddings stay close to the reference, weights shrink."""
    arch = TINY_VIT
    model = make_reference(arch, seed=3)
    sd = reference_state_dict(model)
    (tmp_path / "fp32").mkdir()
    (tmp_path / "int8").mkdir()
    convert_checkpoint(sd, _spec(arch), tmp_path / "fp32")
    convert_checkpoint(sd, _spec(arch), tmp_path / "int8", image_precision="int8")
    assert "18=8" in (tmp_path / "int8" / "visual.param").read_text()
    assert "18=8" not in (tmp_path / "int8" / "text.param").read_text()
    size = (tmp_path / "int8" / "visual.bin").stat().st_size
    assert size < 0.7 * (tmp_path / "fp32" / "visual.bin").stat().st_size
    pixels = np.random.default_rng(1).standard_normal((3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model.encode_image(torch.from_numpy(pixels)[None]).numpy()[0]
    ours = _run_visual(tmp_path / "int8", pixels)
    cosine = ours @ expected / np.linalg.norm(ours) / np.linalg.norm(expected)
    assert 0.99 < cosine < 0.999999


def test_a_text_query_does_not_wait_for_the_image_network_to_load(tiny_model, monkeypatch):
    """Indexing loads the image network on its first batch; a search meanwhile goes ahead."""
    from core.encoder import ClipModel

    model = ClipModel(tiny_model.model_dir, threads=2)
    real_net = model._net
    loading, release = threading.Event(), threading.Event()

    def slow_net(stem: str, threads: int, precision: str):
        if stem == "visual":
            loading.set()
            release.wait(30)
        return real_net(stem, threads, precision)

    monkeypatch.setattr(model, "_net", slow_net)
    size = model.spec.preprocess.size
    images = threading.Thread(
        target=model.encode_pixels, args=(np.zeros((2, 3, size, size), np.float32),)
    )
    images.start()
    try:
        assert loading.wait(10)
        started = time.monotonic()
        texts = model.encode_texts(["a cat on a sofa"])
        waited = time.monotonic() - started
        assert texts.shape == (1, model.embed_dim) and waited < 5.0
        assert images.is_alive()  # the image network is still loading
    finally:
        release.set()
        images.join(30)
        model.close()


def test_texts_do_not_queue_behind_a_batch_of_images(tiny_model, monkeypatch):
    """A query of several terms is encoded while an indexing batch keeps every image thread busy."""
    from core.encoder import ClipModel

    model = ClipModel(tiny_model.model_dir, threads=2)
    real_run = model._run_visual
    busy, release = threading.Semaphore(0), threading.Event()

    def slow_run(pixels):
        busy.release()
        release.wait(30)
        return real_run(pixels)

    monkeypatch.setattr(model, "_run_visual", slow_run)
    size = model.spec.preprocess.size
    images = threading.Thread(
        target=model.encode_pixels, args=(np.zeros((6, 3, size, size), np.float32),)
    )
    images.start()
    try:
        for _ in range(2):  # both image threads are taken
            assert busy.acquire(timeout=10)
        started = time.monotonic()
        texts = model.encode_texts(["beach", "sunset", "people"])
        assert texts.shape == (3, model.embed_dim) and time.monotonic() - started < 5.0
        assert images.is_alive()
    finally:
        release.set()
        images.join(30)
        model.close()


def test_a_query_runs_on_every_thread_and_images_side_by_side(tiny_model, monkeypatch):
    """The text tower loads with all the model's threads and runs its texts one after the other,
    so a query (one text) gets them all; the image tower loads single-threaded and runs one
    extractor per thread, which is what an indexing run's throughput needs. Several texts give
    the vectors of each text alone (to float rounding: numpy projects the rows together)."""
    from core.encoder import ClipModel

    loaded: dict[str, int] = {}
    with ClipModel(tiny_model.model_dir, threads=2) as model:
        real_net = model._net

        def recording_net(stem: str, threads: int, precision: str):
            loaded[stem] = threads
            return real_net(stem, threads, precision)

        monkeypatch.setattr(model, "_net", recording_net)
        texts = ["beach", "a red bicycle in the snow", "people"]
        together = model.encode_texts(texts)
        alone = np.concatenate([model.encode_texts([text]) for text in texts])
        size = model.spec.preprocess.size
        model.encode_pixels(np.zeros((2, 3, size, size), np.float32))
        assert loaded == {"text": 2, "visual": 1}
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
        assert "text" not in model._pools and "visual" in model._pools
