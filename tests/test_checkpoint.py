"""core.checkpoint: torch-free reading of safetensors, torch zip, legacy and TorchScript files."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import load_state_dict
from core.errors import CheckpointError


def _torch() -> Any:
    return pytest.importorskip("torch")


def _as_numpy(tensor: Any) -> np.ndarray:
    torch = _torch()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.detach().numpy()


def _assert_same(ours: dict[str, np.ndarray], theirs: dict[str, Any], ordered: bool = True) -> None:
    if ordered:
        assert list(ours) == list(theirs)
    else:
        assert sorted(ours) == sorted(theirs)
    for key, tensor in theirs.items():
        expected = _as_numpy(tensor)
        assert ours[key].dtype == expected.dtype, key
        assert ours[key].shape == expected.shape, key
        assert ours[key].flags.c_contiguous and ours[key].flags.writeable, key
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)


def _tricky_state() -> dict[str, Any]:
    """Tensors that exercise offsets, strides, shared storages and every common dtype."""
    torch = _torch()
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=generator)
    return {
        "base": base,
        "transposed": base.t(),
        "slice": base[1:, 2:5],
        "row": base[3],
        "half": torch.randn(3, 5, generator=generator).half(),
        "half_transposed": torch.randn(5, 3, generator=generator).half().t(),
        "bf16": torch.randn(7, 2, generator=generator).bfloat16(),
        "bf16_slice": torch.randn(6, 4, generator=generator).bfloat16()[2:, 1:3],
        "float64": torch.randn(2, 2, generator=generator, dtype=torch.float64),
        "scalar": torch.tensor(3.25),
        "int64": torch.arange(5),
        "int32": torch.arange(4, dtype=torch.int32).reshape(2, 2),
        "uint8": torch.arange(6, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 3),
        "param": torch.nn.Parameter(torch.ones(2, 3)),
    }


def test_torch_zip_round_trip(tmp_path: Path) -> None:
    torch = _torch()
    state = _tricky_state()
    path = tmp_path / "weights.bin"
    torch.save(state, path)
    _assert_same(load_state_dict(path), state)


def test_torch_legacy_round_trip(tmp_path: Path) -> None:
    torch = _torch()
    state = _tricky_state()
    path = tmp_path / "weights.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    _assert_same(load_state_dict(path), state)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    save_file = pytest.importorskip("safetensors.torch").save_file
    state = {k: v.detach().contiguous() for k, v in _tricky_state().items()}
    state = {k: v for k, v in state.items() if k not in ("transposed", "slice", "row")}
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    _assert_same(load_state_dict(path), state, ordered=False)


def test_format_is_told_from_content_not_suffix(tmp_path: Path) -> None:
    torch = _torch()
    save_file = pytest.importorskip("safetensors.torch").save_file
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    torch.save(state, tmp_path / "really_torch.safetensors")
    save_file(state, str(tmp_path / "really_safetensors.bin"))
    _assert_same(load_state_dict(tmp_path / "really_torch.safetensors"), state)
    _assert_same(load_state_dict(str(tmp_path / "really_safetensors.bin")), state, ordered=False)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd},
        lambda sd: {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["state_dict", "model", "training-checkpoint", "data-parallel"],
)
def test_wrappers_are_unwrapped(tmp_path: Path, wrap: Any) -> None:
    torch = _torch()
    state = {"visual.proj": torch.ones(2, 2), "logit_scale": torch.tensor(4.6)}
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(state), path)
    _assert_same(load_state_dict(path), state)


def test_negative_view_is_applied(tmp_path: Path) -> None:
    torch = _torch()
    state = {"w": torch._neg_view(torch.arange(4, dtype=torch.float32))}
    torch.save(state, tmp_path / "neg.pt")
    np.testing.assert_array_equal(load_state_dict(tmp_path / "neg.pt")["w"], [0, -1, -2, -3])


def test_big_endian_zip(tmp_path: Path) -> None:
    """A checkpoint written on a big-endian machine says so in its ``byteorder`` record."""
    torch = _torch()
    state = {
        "f32": torch.randn(3, 4).t(),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.arange(-3, 3),
    }
    little = tmp_path / "little.pt"
    torch.save(state, little)
    widths = {str(i): tensor.element_size() for i, tensor in enumerate(state.values())}
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as source, zipfile.ZipFile(big, "w") as target:
        for info in source.infolist():
            folder, _, leaf = info.filename.rpartition("/")
            data = source.read(info)
            if leaf == "byteorder":
                data = b"big"
            elif folder.endswith("/data"):
                data = np.frombuffer(data, f"<u{widths[leaf]}").byteswap().tobytes()
            target.writestr(info, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.load(big)["i64"].tolist() == [-3, -2, -1, 0, 1, 2]
    _assert_same(load_state_dict(big), state)


def test_module_prefix_kept_when_not_on_every_key(tmp_path: Path) -> None:
    torch = _torch()
    state = {"module.a": torch.ones(1), "b": torch.zeros(1)}
    torch.save(state, tmp_path / "mixed.pt")
    assert list(load_state_dict(tmp_path / "mixed.pt")) == ["module.a", "b"]


@pytest.fixture(scope="module")
def open_clip_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path]]:
    """A tiny open_clip model and the checkpoints the hub would serve for it."""
    _torch()
    pytest.importorskip("open_clip")
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    folder = tmp_path_factory.mktemp("open_clip")
    model = make_reference(TINY_VIT, seed=1)
    files = {
        "safetensors": save_checkpoint(model, folder / "open_clip_model.safetensors"),
        "bin": save_checkpoint(model, folder / "open_clip_pytorch_model.bin"),
    }
    return model, files


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_open_clip_checkpoint(open_clip_files: tuple[Any, dict[str, Path]], kind: str) -> None:
    from tests.reference import reference_state_dict

    model, files = open_clip_files
    expected = reference_state_dict(model)
    ours = load_state_dict(files[kind])
    assert sorted(ours) == sorted(expected)
    if kind == "bin":
        assert list(ours) == list(expected)
    for key, value in expected.items():
        assert ours[key].dtype == value.dtype, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_torchscript_scripted_module(tmp_path: Path) -> None:
    torch = _torch()

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.no_bias = torch.nn.Linear(3, 3, bias=False)
            self.norm = torch.nn.LayerNorm(3)
            self.register_buffer("counts", torch.arange(3))
            self.plain_attribute = torch.ones(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.no_bias(self.fc(x))) + self.plain_attribute.sum()

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0))
            self.blocks = torch.nn.ModuleList([Block(), Block()])
            self.head = torch.nn.Linear(3, 2).half()
            self.sizes = [3, 4]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return self.head(x.half()).float() * self.scale

    torch.manual_seed(0)
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(Net()), str(path))
    expected = torch.jit.load(str(path)).state_dict()
    assert "blocks.0.plain_attribute" not in expected
    _assert_same(load_state_dict(path), expected)


def test_torchscript_traced_open_clip(tmp_path: Path) -> None:
    """OpenAI's CLIP ``.pt`` files are traced TorchScript archives of the whole model."""
    torch = _torch()
    pytest.importorskip("open_clip")
    from tests.reference import TINY_VIT, make_reference

    model = make_reference(TINY_VIT, seed=2)
    image = torch.zeros(1, 3, 64, 64)
    text = torch.zeros(1, 77, dtype=torch.long)
    path = tmp_path / "ViT-tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, (image, text), check_trace=False), str(path))
    expected = torch.jit.load(str(path)).state_dict()
    ours = load_state_dict(path)
    _assert_same(ours, expected)
    # TorchScript keeps non-persistent buffers such as open_clip's attention mask.
    assert set(ours) - set(model.state_dict()) == {"attn_mask"}


def _marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned_marker"


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return subprocess.Popen, (["touch", str(self.marker)],)


PAYLOADS = {"os.system": _System, "builtins.eval": _Eval, "subprocess.Popen": _Popen}


def _payload(name: str, marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({"weight": PAYLOADS[name](marker)}, protocol=protocol)


def _torch_zip(path: Path, data_pkl: bytes, scripted: bool = False) -> Path:
    """A zip laid out as ``torch.save`` (or ``torch.jit.save``) writes it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        if scripted:
            archive.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
            archive.writestr("archive/code/__torch__/model.py", "class M(Module):\n")
    return path


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("scripted", [False, True], ids=["torch-zip", "torchscript"])
def test_malicious_zip_pickle_is_refused(
    tmp_path: Path, payload: str, protocol: int, scripted: bool
) -> None:
    marker = _marker(tmp_path)
    path = _torch_zip(tmp_path / "evil.bin", _payload(payload, marker, protocol), scripted)
    with pytest.raises(CheckpointError, match="not allowed") as caught:
        load_state_dict(path)
    name = payload.split(".")[1]
    assert name in str(caught.value) and str(path) in str(caught.value)
    assert not marker.exists()


def test_malicious_pickle_after_real_tensors_is_refused(tmp_path: Path) -> None:
    """The payload sits behind genuine tensors: nothing is read or run before the refusal."""
    torch = _torch()
    marker = _marker(tmp_path)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(evil, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data.pkl"):
                data = data[:-1] + pickle.dumps(_System(marker), protocol=2)[2:-1] + b"0."
            target.writestr(info, data)
    with pytest.raises(CheckpointError, match='asks for "posix.system"|asks for "os.system"'):
        load_state_dict(evil)
    assert not marker.exists()


def test_script_class_cannot_be_called(tmp_path: Path) -> None:
    """``__torch__`` names in a TorchScript archive become inert containers, never callables."""
    marker = _marker(tmp_path)
    command = f"touch {marker}".encode()
    argument = b"X" + len(command).to_bytes(4, "little") + command
    data = b"\x80\x02c__torch__.evil\nRun\n" + argument + b"\x85R."
    path = _torch_zip(tmp_path / "script.pt", data, scripted=True)
    with pytest.raises(CheckpointError):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_plain_pickle_is_refused(tmp_path: Path, payload: str, protocol: int) -> None:
    marker = _marker(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(_payload(payload, marker, protocol))
    with pytest.raises(CheckpointError):
        load_state_dict(path)
    assert not marker.exists()


def test_malicious_legacy_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = _marker(tmp_path)
    path = tmp_path / "evil.pth"
    header = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}]
    path.write_bytes(
        b"".join(pickle.dumps(x, protocol=2) for x in header) + _payload("os.system", marker)
    )
    with pytest.raises(CheckpointError, match="not allowed"):
        load_state_dict(path)
    assert not marker.exists()


def test_whole_model_pickle_is_refused(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match=r'"torch\.nn\.modules\.linear\.Linear"'):
        load_state_dict(path)


def test_plain_pickle_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    with pytest.raises(CheckpointError, match="plain pickle"):
        load_state_dict(path)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bytes of real checkpoints in every supported format, to be damaged by the tests."""
    torch = _torch()
    save_file = pytest.importorskip("safetensors.torch").save_file
    folder = tmp_path_factory.mktemp("real")
    state = {
        k: v.detach().clone(memory_format=torch.contiguous_format)
        for k, v in _tricky_state().items()
    }
    state["big"] = torch.randn(64, 64)
    torch.save(state, folder / "zip.bin")
    torch.save(state, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(state, str(folder / "st.safetensors"))
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()))
    torch.jit.save(module, str(folder / "script.pt"))
    names = ("zip.bin", "legacy.pth", "st.safetensors", "script.pt")
    return {name: (folder / name).read_bytes() for name in names}


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
@pytest.mark.parametrize("name", ["zip.bin", "legacy.pth", "st.safetensors", "script.pt"])
def test_truncated_file(
    tmp_path: Path, real_files: dict[str, bytes], name: str, fraction: float
) -> None:
    data = real_files[name]
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated|damaged") as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["zip.bin", "legacy.pth", "st.safetensors", "script.pt"])
def test_damaged_bytes_never_escape_as_other_errors(
    tmp_path: Path, real_files: dict[str, bytes], name: str
) -> None:
    """Random damage to headers, pickles and zip directories loads or raises CheckpointError."""
    rng = np.random.default_rng(7)
    path = tmp_path / name
    size = len(real_files[name])
    regions = [(0, min(size, 4096)), (max(0, size - 1024), size)]
    for trial in range(60):
        data = bytearray(real_files[name])
        low, high = regions[trial % 2]
        for position in rng.integers(low, high, size=rng.integers(1, 4)):
            data[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            load_state_dict(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("cut", [1, 8, 12, 100])
def test_safetensors_cut_inside_header(
    tmp_path: Path, real_files: dict[str, bytes], cut: int
) -> None:
    path = tmp_path / "st.safetensors"
    path.write_bytes(real_files["st.safetensors"][:cut])
    with pytest.raises(CheckpointError):
        load_state_dict(path)


def test_corrupted_storage_is_caught(tmp_path: Path, real_files: dict[str, bytes]) -> None:
    data = bytearray(real_files["zip.bin"])
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    path = tmp_path / "flipped.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_state_dict(path)


def test_safetensors_unknown_dtype(tmp_path: Path) -> None:
    header = b'{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}'
    path = tmp_path / "fp8.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00\x01")
    with pytest.raises(CheckpointError, match="unsupported dtype 'F8_E4M3'"):
        load_state_dict(path)


def test_torch_unknown_dtype(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "complex.pt"
    torch.save({"w": torch.ones(2, dtype=torch.complex64)}, path)
    with pytest.raises(CheckpointError, match="unsupported dtype"):
        load_state_dict(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(200), "JPEG"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "web page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "LFS"),
        (np.random.default_rng(0).bytes(4096), "not a checkpoint"),
        (b"PK\x05\x06" + bytes(18), "not a checkpoint"),
    ],
    ids=["jpeg", "html", "lfs", "random", "empty-zip"],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_state_dict(path)


def test_empty_missing_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "missing.bin")
    with pytest.raises(CheckpointError, match="not a file"):
        load_state_dict(tmp_path)


def test_checkpoint_module_does_not_import_torch() -> None:
    code = "import sys, core.checkpoint; sys.exit('torch' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_zip_of_other_things_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "photos.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="without data.pkl"):
        load_state_dict(path)


# -- hostile files: every one is refused in one line, within bounded memory -----------------------

# The peak is this process's own (VmHWM): ru_maxrss would keep the test runner's, across exec.
PEAK_PROBE = """
import re, sys
from core.checkpoint import load_state_dict
from core.errors import CheckpointError
try:
    load_state_dict(sys.argv[1])
except CheckpointError as exc:
    print(exc)
with open("/proc/self/status") as status:
    print(int(re.search(r"VmHWM:\\s*(\\d+) kB", status.read())[1]) // 1024)
"""
PEAK_BOUND_MB = 400  # the limits let a pickle build about 200 MB; the old reader took gigabytes


def _repeat_calls(global_opcode: bytes, argument: bytes, calls: int) -> bytes:
    """A protocol 2 pickle of a list that holds ``calls`` results of one stand-in, each called
    with the same argument: ``argument`` (opcodes that push it) is memoised once, then reused."""
    head = b"\x80\x02]q\x00" + global_opcode + b"q\x01" + argument + b"q\x02" + b"("
    call = b"h\x01h\x02\x85R"  # BINGET stand-in, BINGET argument, TUPLE1, REDUCE
    return head + call * calls + b"e."


def _int_list(count: int) -> bytes:
    return b"](" + b"K\x07" * count + b"e"


def _int_dict(count: int) -> bytes:
    return b"}(" + b"".join(b"J" + i.to_bytes(4, "little") + b"K\x00" for i in range(count)) + b"u"


def _hostile(name: str) -> tuple[bytes, bool]:
    """The bytes of a hostile file, and whether they go into a torch zip as its data.pkl."""
    if name == "many-objects":  # 20 million EMPTY_LIST opcodes, 20 kB once deflated
        return b"\x80\x02" + b"]" * 20_000_000 + b".", True
    if name == "memo-index":  # 9 bytes: one LONG_BINPUT at index 50 million
        return b"\x80\x02]r" + (50_000_000).to_bytes(4, "little") + b".", False
    if name == "zip-bomb":  # a 40 MB string, 40 kB once deflated
        return b"\x80\x02X" + (40 << 20).to_bytes(4, "little") + bytes(40 << 20) + b".", True
    if name == "copying-calls":  # torch.Size of one 200,000-item list, 400 times
        return _repeat_calls(b"ctorch\nSize\n", _int_list(200_000), 400), True
    assert name == "copying-state"  # 120 OrderedDicts given one 100,000-entry dict as state
    ordered = b"ccollections\nOrderedDict\nq\x01)R"
    state = _int_dict(100_000) + b"q\x02"
    one = b"h\x01)Rh\x02b"  # BINGET OrderedDict, EMPTY_TUPLE, REDUCE, BINGET state, BUILD
    body = b"\x80\x02]q\x00" + ordered + state + b"0(" + one * 120 + b"e."
    return body, True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("many-objects", "more than 2,000,000 steps"),
        ("memo-index", "plain pickle"),
        ("zip-bomb", "unpacks to 41,943,048 bytes, more than the 33,554,432"),
        ("copying-calls", "more than 2,000,000 steps"),
        ("copying-state", "more than 2,000,000 steps"),
    ],
)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc")
def test_hostile_pickle_is_refused_within_bounded_memory(
    tmp_path: Path, name: str, expected: str
) -> None:
    data, zipped = _hostile(name)
    path = tmp_path / f"{name}.bin"
    if zipped:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("archive/data.pkl", data)
            archive.writestr("archive/byteorder", "little")
    else:
        path.write_bytes(data)
    assert path.stat().st_size < 200_000
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    message, peak_mb = result.stdout.splitlines()
    assert message.startswith("not a checkpoint:") or message.startswith("damaged checkpoint")
    assert expected in message and str(path) in message
    assert int(peak_mb) < PEAK_BOUND_MB, f"{name} took {peak_mb} MB"


def test_safetensors_header_nested_too_deep(tmp_path: Path) -> None:
    header = b'{"a":' * 100_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="unreadable safetensors header") as caught:
        load_state_dict(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_safetensors_header_larger_than_a_checkpoints_is_refused_unread(tmp_path: Path) -> None:
    """A header of more than 16 MB (real ones take under 1 MB) is refused before it is read."""
    size = 16 * 1024 * 1024 + 1
    path = tmp_path / "large-header.safetensors"
    path.write_bytes(size.to_bytes(8, "little") + b"{" + b"[]," * 1000)
    with pytest.raises(CheckpointError, match=f"safetensors header of {size:,} bytes, more than"):
        load_state_dict(path)


def test_torchscript_modules_nested_deeper_than_the_recursion_limit_are_read() -> None:
    """A module's tensors come before its submodules', depth first, at any depth."""
    from core.checkpoint import _flatten_script, _ScriptObject, _StorageRef, _TensorRef

    tensor = _TensorRef(_StorageRef("0", "float32", 1), 0, (1,), (1,))

    def module(**state: object) -> _ScriptObject:
        made = _ScriptObject()
        made.__setstate__(state)
        return made

    shared = module(w=tensor)
    tree = module(a=module(b=shared, w=tensor), b=shared, w=tensor)
    assert list(_flatten_script(tree, {})) == ["w", "a.w", "a.b.w"]

    deep = module(w=tensor)
    for _ in range(sys.getrecursionlimit() * 3):
        deep = module(m=deep)
    (name,) = _flatten_script(deep, {})
    assert name == "m." * (sys.getrecursionlimit() * 3) + "w"
