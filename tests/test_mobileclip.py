"""MobileCLIP2: the FastViT MCi converter, the non-causal text tower and the preprocessing, against
open_clip and timm on the same random weights.

- Folding: our numpy reparameterisation gives the weights of timm's ``reparameterize_model``,
  from a checkpoint with training branches and from one already folded; anything else is refused
  with the key named.
- Parity: a model saved as a checkpoint (in a folder laid out as its hub repository, or as a
  file), installed with our own ``model install NAME --from`` and loaded with
  ``load_model`` gives, on the gallery photos and many texts, cosine >= 0.9999 to open_clip per
  photo and per text, the same top-1 photo for every text, and the same token ids. The random
  weights are first made discriminative (BatchNorm scales, shifts and statistics of their own,
  measured on the photos; layer scales far from 1e-5), and that is asserted, so that a converter
  that drops a branch fails (checked by sabotaging the folding).

The full-size MobileCLIP2-S0 runs in every test run; MobileCLIP2-S2 is marked ``slow``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from timm.utils.model import reparameterize_model

from cli.main import main as cli_main
from core import fastvit
from core.convert import infer_architecture, spec_for_checkpoint
from core.encoder import load_model
from core.errors import CheckpointError
from core.preprocess import load_image, preprocess
from core.registry import ModelSpec, Preprocess, checkpoint_parameters, get_spec
from core.tokenizer import tokenize
from tests.reference import reference_state_dict, save_checkpoint
from tests.reference_mobileclip import (
    TINY_FASTVIT,
    batchnorms_are_nontrivial,
    fastvit_trunk,
    make_discriminative,
    make_reference,
    photos,
    randomize_norms,
    spec_pixels,
)
from tests.test_parity import TEXTS, _assert_same_top5, assert_close_to_reference

MODELS = ["MobileCLIP2-S0", pytest.param("MobileCLIP2-S2", marks=pytest.mark.slow)]
TINY_SPEC = ModelSpec(
    "tiny-mobileclip",
    TINY_FASTVIT,
    Preprocess(128, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "shortest", "bilinear"),
)


def _folded_reference(model) -> dict[str, np.ndarray]:
    trunk = reparameterize_model(model.visual.trunk)
    return {
        k: v.detach().numpy()
        for k, v in trunk.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def _folded_checkpoint(model) -> dict[str, np.ndarray]:
    """The state dict of ``model`` with its image tower in timm's folded layout."""
    state = {k: v for k, v in reference_state_dict(model).items() if not k.startswith("visual.")}
    for key, value in _folded_reference(model).items():
        state[fastvit.TRUNK_PREFIX + key] = value
    return state


@pytest.fixture(scope="module")
def openclip_model():
    """``openclip_model(name)``: open_clip's own model of a registry name, random weights, built
    once per test module (copy it before changing it)."""
    built = {}

    def get(name: str):
        if name not in built:
            spec = get_spec(name)
            built[name] = make_reference(spec.architecture, 0, spec.openclip_name)
        return built[name]

    yield get
    built.clear()


# -- folding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MobileCLIP2-S0", "MobileCLIP2-S2"])
def test_registry_architecture_is_open_clips(name, openclip_model):
    """The registry's description of the tower builds exactly open_clip's trunk."""
    spec = get_spec(name)
    model = openclip_model(name)
    ours = fastvit_trunk(spec.architecture).state_dict()
    theirs = model.visual.trunk.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()
    }
    assert model.visual.image_size == (spec.preprocess.size,) * 2
    saved = sum(v.numel() for v in model.state_dict().values())
    assert checkpoint_parameters(spec.architecture) == saved
    assert model.text.attn_mask is None and spec.architecture.text["causal"] is False


@pytest.mark.parametrize("name", ["MobileCLIP2-S0", "MobileCLIP2-S2"])
def test_folding_matches_timm(name, openclip_model):
    arch = get_spec(name).architecture
    model = copy.deepcopy(openclip_model(name))
    randomize_norms(model, seed=5, statistics=True)
    expected = _folded_reference(model)

    ours = fastvit.reparameterize(reference_state_dict(model), arch.vision, arch.embed_dim)
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    # the folding is not a no-op: every MobileOne, RepMixer and positional encoding changed
    assert sum(k.endswith("reparam_conv.weight") for k in ours) == sum(
        k.endswith("reparam_conv.weight") for k in expected
    )

    # a checkpoint already folded reads back unchanged
    again = fastvit.reparameterize(_folded_checkpoint(model), arch.vision, arch.embed_dim)
    assert again.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


@pytest.mark.parametrize("name", ["MobileCLIP2-S0", "MobileCLIP2-S2"])
def test_architecture_is_read_off_a_checkpoint(name, openclip_model):
    """``--from FILE --as NEWNAME`` reads the registry's architecture back from either layout."""
    spec = get_spec(name)
    model = openclip_model(name)
    assert infer_architecture(reference_state_dict(model)) == spec.architecture
    assert infer_architecture(_folded_checkpoint(model)) == spec.architecture
    inferred = spec_for_checkpoint("mine", reference_state_dict(model))
    assert inferred.preprocess == spec.preprocess


def test_install_as_a_new_name(tmp_path, monkeypatch, tiny_reference):
    checkpoint = save_checkpoint(tiny_reference, tmp_path / "tiny.safetensors")
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    assert cli_main(["model", "install", "--from", str(checkpoint), "--as", "mine"]) == 0
    ours = load_model("mine", threads=2, draft=False, precision="fp32")
    expected = {**TINY_FASTVIT.vision, "image_size": 256}  # the size is not in the checkpoint
    assert ours.spec.architecture.vision == expected
    print(_check_parity(tiny_reference, ours, ours.spec, photos()))
    ours.close()


def _tiny_state() -> dict[str, np.ndarray]:
    model = make_reference(TINY_FASTVIT, seed=2)
    return reference_state_dict(model)


def _reparameterize(state):
    return fastvit.reparameterize(state, TINY_FASTVIT.vision, TINY_FASTVIT.embed_dim)


def test_block_stored_both_ways_is_refused():
    state = _tiny_state()
    key = "visual.trunk.stages.1.blocks.0.token_mixer.reparam_conv.weight"
    state[key] = np.zeros((32, 1, 3, 3), np.float32)
    state[key.replace("weight", "bias")] = np.zeros(32, np.float32)
    with pytest.raises(CheckpointError, match=r"stages\.1\.blocks\.0\.token_mixer\.(mixer|norm)"):
        _reparameterize(state)


def test_missing_branch_is_named():
    state = _tiny_state()
    del state["visual.trunk.stem.0.conv_scale.bn.running_var"]
    with pytest.raises(
        CheckpointError, match=r"'visual\.trunk\.stem\.0\.conv_scale\.bn\.running_var'"
    ):
        _reparameterize(state)


def test_unknown_key_is_named():
    state = _tiny_state()
    state["visual.trunk.stem.0.conv_kxk.1.conv.weight"] = np.zeros((16, 3, 3, 3), np.float32)
    with pytest.raises(
        CheckpointError, match=r"'visual\.trunk\.stem\.0\.conv_kxk\.1\.conv\.weight'"
    ):
        _reparameterize(state)


def test_wrong_shape_is_named():
    state = _tiny_state()
    state["visual.trunk.final_conv.se.fc1.weight"] = np.zeros((3, 128, 1, 1), np.float32)
    with pytest.raises(
        CheckpointError, match=r"'visual\.trunk\.final_conv\.se\.fc1\.weight'.*\(8, 128, 1, 1\)"
    ):
        _reparameterize(state)


def test_other_layouts_are_refused_with_the_key():
    """Apple's own MobileCLIP (v1) naming is not an open_clip checkpoint: the first key the
    converter needs is named."""
    state = {
        "image_encoder.model.patch_embed.0.rbr_conv.0.conv.weight": np.zeros((16, 3, 3, 3)),
        **{k: v for k, v in _tiny_state().items() if not k.startswith("visual.")},
    }
    with pytest.raises(CheckpointError, match=r"visual\.trunk\.stem\.0\.reparam_conv\.weight"):
        _reparameterize(state)


def test_int8_install_is_refused_before_any_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(["model", "install", "MobileCLIP2-S0", "--precision", "int8"]) != 0
    assert "MobileCLIP2-S0 has no int8 version" in capsys.readouterr().err


# -- preprocessing -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MobileCLIP2-S0", "MobileCLIP2-S2"])
def test_preprocessing_is_open_clips(name):
    spec = get_spec(name)
    cfg = open_clip.get_pretrained_cfg(spec.openclip_name, spec.openclip_pretrained)
    pre = spec.preprocess
    assert cfg["hf_hub"].rstrip("/") == spec.hub_repo
    assert (pre.mean, pre.std) == (tuple(cfg["mean"]), tuple(cfg["std"]))
    assert (pre.interpolation, pre.resize) == (cfg["interpolation"], cfg["resize_mode"])
    paths = photos(more=True)
    expected = spec_pixels(paths, spec).numpy()
    ours = np.stack([preprocess(load_image(p), pre) for p in paths])
    np.testing.assert_array_equal(ours, expected)


# -- parity ------------------------------------------------------------------------------------


def _install(tmp_path: Path, monkeypatch, checkpoint: Path, name: str, spec: ModelSpec | None):
    home = tmp_path / "home"
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    if spec is not None:
        (home / "config").mkdir(parents=True, exist_ok=True)
        registry = {"models": {name: spec.to_dict()}}
        (home / "config" / "registry.json").write_text(json.dumps(registry), encoding="utf-8")
    assert cli_main(["model", "install", name, "--from", str(checkpoint)]) == 0
    return load_model(name, threads=2, draft=False, precision="fp32")


def _normalized(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).detach().numpy().astype(np.float64)


def _check_parity(reference, ours, spec: ModelSpec, paths: list[Path]) -> dict:
    tokenizer = open_clip.get_tokenizer(spec.openclip_name or "MobileCLIP2-S0")
    tokens = tokenizer(TEXTS)
    np.testing.assert_array_equal(tokenize(TEXTS, context_length=77), tokens.numpy())
    with torch.no_grad():
        ref_img = _normalized(reference.encode_image(spec_pixels(paths, spec)))
        ref_txt = _normalized(reference.encode_text(tokens))
    our_img, our_txt, cosines = assert_close_to_reference(ours, paths, TEXTS, ref_img, ref_txt)
    ref_sim, our_sim = ref_txt @ ref_img.T, our_txt @ our_img.T
    assert (ref_sim.argmax(axis=1) == our_sim.argmax(axis=1)).all()
    ties = _assert_same_top5(ref_sim, our_sim)
    assert abs(ours.logit_scale - float(reference.logit_scale.detach().exp())) < 1e-4
    return {
        **cosines,
        "top5_ties": ties,
    }


@pytest.fixture(scope="module")
def tiny_reference():
    model = make_reference(TINY_FASTVIT, seed=1)
    make_discriminative(model, spec_pixels(photos(), TINY_SPEC), seed=2, text_attention_factor=8)
    assert batchnorms_are_nontrivial(model)
    return model


@pytest.mark.parametrize("layout", ["branches", "folded"])
def test_tiny_parity(tmp_path, monkeypatch, tiny_reference, layout):
    if layout == "branches":  # a folder laid out as the hub repository
        (tmp_path / "hub").mkdir()
        save_checkpoint(tiny_reference, tmp_path / "hub" / "open_clip_model.safetensors")
        checkpoint = tmp_path / "hub"
    else:
        from safetensors.numpy import save_file

        checkpoint = tmp_path / "tiny-folded.safetensors"
        save_file(_folded_checkpoint(tiny_reference), str(checkpoint))
    ours = _install(tmp_path, monkeypatch, checkpoint, TINY_SPEC.name, TINY_SPEC)
    print(layout, _check_parity(tiny_reference, ours, TINY_SPEC, photos()))
    ours.close()


def _no_identity(channels: int, groups: int, kernel: int) -> np.ndarray:
    return np.zeros((channels, channels // groups, kernel, kernel))


def _no_padded_branch(kernel: np.ndarray, size: int) -> np.ndarray:
    return np.zeros(kernel.shape[:2] + (size, size))


@pytest.mark.parametrize(
    "target,broken",
    [("_identity_kernel", _no_identity), ("_pad_to", _no_padded_branch)],
    ids=["no-identity-branches", "no-padded-branches"],
)
def test_parity_fails_when_a_branch_is_dropped(
    tmp_path, monkeypatch, tiny_reference, target, broken
):
    """With these weights every kind of branch matters: a folding that forgets the identity
    branches, or the 1x1 and 3x3 branches padded into larger kernels, fails the parity check."""
    monkeypatch.setattr(fastvit, target, broken)
    checkpoint = save_checkpoint(tiny_reference, tmp_path / "tiny.safetensors")
    ours = _install(tmp_path, monkeypatch, checkpoint, TINY_SPEC.name, TINY_SPEC)
    with pytest.raises(AssertionError):
        _check_parity(tiny_reference, ours, TINY_SPEC, photos())
    ours.close()


@pytest.mark.parametrize("name", MODELS)
def test_full_size_parity(tmp_path, monkeypatch, name, openclip_model):
    spec = get_spec(name)
    paths = photos(more=True)
    reference = copy.deepcopy(openclip_model(name))
    make_discriminative(reference, spec_pixels(paths, spec), seed=1)
    assert batchnorms_are_nontrivial(reference)
    folder = tmp_path / f"{name}-OpenCLIP"  # as the hub repository's files are downloaded
    folder.mkdir()
    save_checkpoint(reference, folder / "open_clip_model.safetensors")
    ours = _install(tmp_path, monkeypatch, folder, name, None)
    print(name, _check_parity(reference, ours, spec, paths))
    ours.close()
