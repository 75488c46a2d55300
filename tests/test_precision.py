"""The precision each tower runs in: the CPU check, the choice, and the ``--precision`` option."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cli import main as cli
from core.encoder import ClipModel
from core.precision import Precision, PrecisionError, choose, cpu_flags, native_bf16

REPO = Path(__file__).resolve().parents[1]
GALLERY = REPO / "gallery"

# /proc/cpuinfo excerpts: the processor's model line and its flags, trimmed.
EPYC_AVX2 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
    "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni\n"
)
ZEN4 = EPYC_AVX2.replace("sha_ni", "sha_ni avx512f avx512bw avx512_vnni avx512_bf16")
SAPPHIRE_RAPIDS = EPYC_AVX2.replace("sha_ni", "avx512f avx512_vnni amx_tile amx_bf16 amx_int8")
ICE_LAKE = EPYC_AVX2.replace("sha_ni", "avx512f avx512bw avx512_vnni avx512_bf16x")
ARM_V86 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp sve bf16 i8mm\n"
ARM_V82 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (EPYC_AVX2, False),
        (ZEN4, True),
        (SAPPHIRE_RAPIDS, True),
        (ICE_LAKE, False),  # a flag that only starts with avx512_bf16 is not it
        (ARM_V86, True),
        (ARM_V82, False),
        ("", False),
    ],
    ids=["epyc-avx2", "zen4", "sapphire-rapids", "lookalike", "arm-v8.6", "arm-v8.2", "none"],
)
def test_native_bf16_reads_the_cpu_flags(cpuinfo: str, expected: bool) -> None:
    assert native_bf16(cpuinfo) is expected


def test_cpu_flags_reads_the_first_processor_only() -> None:
    two = EPYC_AVX2 + "\n" + ZEN4
    assert "avx512_bf16" not in cpu_flags(two)
    assert {"avx2", "fma"} <= cpu_flags(two)


def _pretend_cpu(monkeypatch: pytest.MonkeyPatch, cpuinfo: str) -> None:
    monkeypatch.setattr("core.precision._cpuinfo_text", lambda: cpuinfo)


def _measured(monkeypatch: pytest.MonkeyPatch, towers: set[str]) -> None:
    """Pretend bench/precision.py found bf16 accurate enough for ``towers`` of every model."""
    monkeypatch.setattr("core.encoder.bf16_towers", lambda name: frozenset(towers))


def test_auto_without_native_bf16_is_float32(tiny_model: ClipModel, monkeypatch) -> None:
    _measured(monkeypatch, {"image", "text"})
    _pretend_cpu(monkeypatch, EPYC_AVX2)
    with ClipModel(tiny_model.model_dir, threads=1) as model:
        assert model.precision == Precision("fp32", "fp32")
        assert str(model.precision) == "fp32"
    _pretend_cpu(monkeypatch, ZEN4)
    with ClipModel(tiny_model.model_dir, threads=1) as model:
        assert model.precision == Precision("bf16", "bf16")


def test_auto_uses_bf16_only_for_towers_that_met_the_target(tiny_model, monkeypatch) -> None:
    _pretend_cpu(monkeypatch, ZEN4)
    _measured(monkeypatch, {"image"})
    with ClipModel(tiny_model.model_dir, threads=1) as model:
        assert model.precision == Precision("bf16", "fp32")
        assert str(model.precision) == "image bf16, text fp32"
    _measured(monkeypatch, set())
    with ClipModel(tiny_model.model_dir, threads=1) as model:
        assert model.precision == Precision("fp32", "fp32")


def test_explicit_bf16_without_native_bf16_runs_with_a_note(tiny_model, monkeypatch) -> None:
    _pretend_cpu(monkeypatch, EPYC_AVX2)
    photos = sorted(GALLERY.glob("*.jpg"))[:4]
    with (
        ClipModel(tiny_model.model_dir, threads=1, precision="bf16") as bf16,
        ClipModel(tiny_model.model_dir, threads=1, precision="fp32") as fp32,
    ):
        assert bf16.precision.image == bf16.precision.text == "bf16"
        assert "no native bf16" in (bf16.precision.note or "")
        assert fp32.precision.note is None
        for encode in ("encode_images", "encode_texts"):
            items = photos if encode == "encode_images" else ["a dog", "a red car in the snow"]
            ours, exact = getattr(bf16, encode)(items), getattr(fp32, encode)(items)
            cosine = np.sum(ours * exact, axis=1)
            # bf16 storage really is on (the vectors move), and stays close to float32
            assert not np.array_equal(ours, exact), encode
            assert cosine.min() > 0.99, (encode, cosine)


def test_int8_without_an_int8_install_is_refused(tiny_model: ClipModel) -> None:
    with pytest.raises(PrecisionError, match="installed without int8.*--precision int8"):
        ClipModel(tiny_model.model_dir, threads=1, precision="int8")


def test_unknown_precision_is_refused(tiny_model: ClipModel) -> None:
    with pytest.raises(PrecisionError, match="unknown precision 'fp16'"):
        ClipModel(tiny_model.model_dir, threads=1, precision="fp16")


def test_an_int8_install_runs_its_image_tower_in_int8() -> None:
    ok = choose("auto", model="m", installed="int8", native=False)
    assert ok == Precision("int8", "fp32") and str(ok) == "image int8, text fp32"
    assert choose("int8", model="m", installed="int8") == Precision("int8", "fp32")
    assert choose(
        "auto", model="m", installed="int8", bf16_towers={"image", "text"}, native=True
    ) == Precision("int8", "bf16")
    for asked in ("fp32", "bf16"):
        with pytest.raises(PrecisionError, match="installed with an int8 image tower"):
            choose(asked, model="m", installed="int8")


def test_the_gpu_runs_float32() -> None:
    towers = {"image", "text"}
    assert choose(
        "auto", model="m", installed="fp32", bf16_towers=towers, native=True, gpu=True
    ) == Precision("fp32", "fp32")
    asked = choose("bf16", model="m", installed="fp32", native=True, gpu=True)
    assert asked.image == "fp32" and "GPU" in (asked.note or "")


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def gallery_album(tmp_path: Path) -> Path:
    album = tmp_path / "album"
    album.mkdir()
    for photo in sorted(GALLERY.glob("*.jpg"))[:3]:
        shutil.copy2(photo, album / photo.name)
    return album


@pytest.fixture
def home(tiny_home: Path) -> Path:
    """An empty user folder where the tiny model is installed."""
    return tiny_home


def test_index_prints_the_precision_once(home, gallery_album, capsys, monkeypatch) -> None:
    _pretend_cpu(monkeypatch, EPYC_AVX2)
    assert cli.main(["index", str(gallery_album), "--model", "tiny", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("encoding with tiny in fp32") == 1, err
    assert "bf16" not in err


def test_index_with_bf16_on_a_cpu_without_it_notes_it(home, gallery_album, capsys, monkeypatch):
    _pretend_cpu(monkeypatch, EPYC_AVX2)
    code = cli.main(["index", str(gallery_album), "--model", "tiny", "--precision", "bf16"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("encoding with tiny in bf16") == 1
    notes = [line for line in captured.err.splitlines() if "no native bf16" in line]
    assert len(notes) == 1, captured.err
    assert captured.out.startswith("indexed 3,")


def test_index_int8_without_an_int8_install_is_one_error_line(home, gallery_album, capsys):
    code = cli.main(["index", str(gallery_album), "--model", "tiny", "--precision", "int8"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "installed without int8" in errors[0], captured.err
    assert "Traceback" not in captured.err


def test_index_with_a_wrong_precision_is_a_usage_error(home, gallery_album, capsys) -> None:
    code = cli.main(["index", str(gallery_album), "--model", "tiny", "--precision", "fp16"])
    captured = capsys.readouterr()
    assert code == 2
    assert "invalid choice: 'fp16'" in captured.err
