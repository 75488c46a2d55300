"""core.preprocess against open_clip's own image transform, on real photos and synthetic files.

The real photos are the full-size originals in ``../shared/photos/exif-samples`` when a checkout
has them, else the copies kept in ``tests/photos`` (the large JPEGs among them scaled up again to
their original size, so that draft decoding is exercised). They are never written; synthetic files
go to pytest's ``tmp_path``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from core import preprocess as pp
from core.errors import ClipsearchError
from core.preprocess import ImageDecodeError, load_image, preprocess
from core.registry import Preprocess
from tests.samples import SAMPLES, SHARED_SAMPLES, needs_shared

ORIGINAL_SIZES = {
    "jpg/mobile/HMD_Nokia_8.3_5G.jpg": (4608, 1976),
    "jpg/tests/42_IndexError.jpg": (4032, 3024),
    "jpg/tests/30-type_error.jpg": (3872, 2403),
    "jpg/hdr/canon_hdr_NO.jpg": (2048, 1536),
}
"""Photos whose repository copy is scaled down, with the original (stored, unrotated) size."""
SIZES = (224, 256)

# Sizes from 49x500 to 4608x1976, EXIF orientations 3, 5 and 6, RGBA and RGB TIFFs, one HEIF.
PARITY_PHOTOS = (
    "jpg/Fujifilm_FinePix_E500.jpg",  # 59x100
    "jpg/Konica_Minolta_DiMAGE_Z3.jpg",  # 70x100
    "jpg/Nikon_D70.jpg",  # 100x66
    "jpg/invalid/image01713.jpg",  # 49x500
    "jpg/invalid/image01980.jpg",  # 284x25
    "jpg/invalid/image02206.jpg",  # 65x65
    "jpg/tests/32-lens_data.jpeg",  # 200x133
    "jpg/xmp/no_exif.jpg",  # 322x466
    "jpg/gps/DSCN0010.jpg",  # 640x480
    "jpg/exif-org/ricoh-rdc5300.jpg",  # 896x600
    "jpg/orientation/landscape_6.jpg",  # 450x600 stored, orientation 6
    "jpg/orientation/portrait_5.jpg",  # 600x450 stored, orientation 5
    "jpg/orientation/portrait_3.jpg",  # orientation 3
    "jpg/hdr/canon_hdr_NO.jpg",  # 2048x1536, orientation 6
    "jpg/tests/30-type_error.jpg",  # 3872x2403
    "jpg/mobile/HMD_Nokia_8.3_5G.jpg",  # 4608x1976
    "jpg/tests/42_IndexError.jpg",  # 4032x3024
    "tiff/Arbitro.tiff",  # RGBA, 174x38
    "tiff/DudleyLeavittUtah.tiff",  # RGBA, 196x257
    "tiff/Picoawards.tiff",  # RGB
    "heic/samplefilehub.heif",  # HEIF, 640x426
)

# Measured on PARITY_PHOTOS with Pillow 13.0 / libjpeg-turbo, in normalised units: largest
# |draft - open_clip| 0.204 (S=224) and 0.234 (S=256), both on 30-type_error.jpg; largest mean
# over one photo 0.0067. Over every JPEG in the folder: 0.234 and 0.0090.
DRAFT_MAX_ABS = 0.35
DRAFT_MEAN_ABS = 0.015


@pytest.fixture(scope="module", autouse=True)
def _large_photo_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _LARGE_DIR
    _LARGE_DIR = tmp_path_factory.mktemp("large-photos")


_LARGE_DIR: Path | None = None


def photo(relative: str) -> Path:
    """The photo at ``relative`` under the collection: the original when present, else our copy."""
    original = SHARED_SAMPLES / relative
    if original.is_file():
        return original
    path = SAMPLES / relative
    if relative not in ORIGINAL_SIZES:
        return path
    assert _LARGE_DIR is not None
    large = _LARGE_DIR / relative
    if not large.is_file():
        large.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            exif = image.info.get("exif", b"")
            scaled = image.resize(ORIGINAL_SIZES[relative], Image.Resampling.BICUBIC)
            scaled.save(large, quality=90, exif=exif)
    return large


def needs_heif(path: Path) -> None:
    """Skip without pillow_heif; with it, let a bare ``Image.open`` read HEIF too."""
    if path.suffix.lower() in {".heic", ".heif"}:
        pytest.importorskip("pillow_heif").register_heif_opener()


def spec_for(size: int) -> Preprocess:
    return Preprocess(size=size)


@pytest.fixture(scope="module")
def open_clip_transform() -> Callable[[Image.Image, int], np.ndarray]:
    """open_clip's evaluation transform for input size S, returning numpy."""
    open_clip = pytest.importorskip("open_clip")
    transforms = {}

    def apply(image: Image.Image, size: int) -> np.ndarray:
        if size not in transforms:
            spec = spec_for(size)
            transforms[size] = open_clip.image_transform(
                size,
                is_train=False,
                mean=spec.mean,
                std=spec.std,
                resize_mode="shortest",
                interpolation="bicubic",
            )
        return transforms[size](image).numpy()

    return apply


@pytest.fixture(scope="module")
def reference(open_clip_transform) -> Callable[[Path, int], np.ndarray]:
    """open_clip's tensor for a photo file, opened by Pillow and turned upright first."""
    cache: dict[tuple[Path, int], np.ndarray] = {}

    def compute(path: Path, size: int) -> np.ndarray:
        if (path, size) not in cache:
            needs_heif(path)
            with Image.open(path) as image:
                cache[path, size] = open_clip_transform(ImageOps.exif_transpose(image), size)
        return cache[path, size]

    return compute


# -- Parity with open_clip on real photos ----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_matches_open_clip_without_draft(size: int, reference) -> None:
    assert len(PARITY_PHOTOS) >= 16
    worst = 0.0
    for relative in PARITY_PHOTOS:
        path = photo(relative)
        needs_heif(path)
        ours = preprocess(load_image(path), spec_for(size))
        theirs = reference(path, size)
        assert ours.shape == theirs.shape == (3, size, size), relative
        assert ours.dtype == np.float32 and ours.flags.c_contiguous
        difference = float(np.abs(ours - theirs).max())
        assert difference <= 1e-5, f"{relative}: max abs difference {difference}"
        worst = max(worst, difference)
    print(f"S={size}: largest |ours - open_clip| without draft = {worst:.3g}")


@pytest.mark.parametrize("size", SIZES)
def test_resize_for_then_preprocess_is_preprocess(size: int) -> None:
    """Keeping the resized image (for thumbnails) changes nothing the model sees."""
    spec = spec_for(size)
    for relative in PARITY_PHOTOS:
        path = photo(relative)
        needs_heif(path)
        image = load_image(path)
        resized = pp.resize_for(image, spec)
        assert min(resized.size) == size and resized.mode == "RGB", relative
        np.testing.assert_array_equal(preprocess(resized, spec), preprocess(image, spec))


@pytest.mark.parametrize("size", SIZES)
def test_draft_stays_close_to_open_clip(size: int, reference) -> None:
    worst_max, worst_mean = 0.0, 0.0
    for relative in PARITY_PHOTOS:
        path = photo(relative)
        needs_heif(path)
        ours = preprocess(load_image(path, min_side=2 * size), spec_for(size))
        difference = np.abs(ours - reference(path, size))
        worst_max = max(worst_max, float(difference.max()))
        worst_mean = max(worst_mean, float(difference.mean()))
    print(
        f"S={size}: with draft, largest max abs {worst_max:.4f}, largest mean abs {worst_mean:.5f}"
    )
    assert worst_max <= DRAFT_MAX_ABS
    assert worst_mean <= DRAFT_MEAN_ABS
    # Draft decoding did change something, or this test would prove nothing about it.
    assert worst_max > 1e-3


@pytest.mark.parametrize(
    ("relative", "size", "expected"),
    [
        ("jpg/mobile/HMD_Nokia_8.3_5G.jpg", 224, (1152, 494)),  # 1/4 scale
        ("jpg/mobile/HMD_Nokia_8.3_5G.jpg", 256, (2304, 988)),  # 1/2: 1/4 would give 494 < 512
        ("jpg/tests/42_IndexError.jpg", 224, (1008, 756)),  # 1/4
        ("jpg/tests/42_IndexError.jpg", 256, (1008, 756)),  # 1/4
    ],
)
def test_draft_reduces_decode_size(relative: str, size: int, expected: tuple[int, int]) -> None:
    path = photo(relative)
    full = load_image(path)
    drafted = load_image(path, min_side=2 * size)
    assert drafted.size == expected
    assert min(drafted.size) >= 2 * size
    assert drafted.width * drafted.height < full.width * full.height


def test_draft_never_goes_below_min_side() -> None:
    for relative in (
        "jpg/tests/30-type_error.jpg",
        "jpg/hdr/canon_hdr_NO.jpg",
        "jpg/Nikon_D70.jpg",
    ):
        path = photo(relative)
        full_short = min(load_image(path).size)
        for min_side in (10, 33, 100, 190, 301, 448, 512, 769, 1000, 5000):
            short = min(load_image(path, min_side=min_side).size)
            assert short >= min(min_side, full_short), (relative, min_side, short)
            assert short <= full_short


def test_draft_on_odd_sizes(tmp_path: Path) -> None:
    path = tmp_path / "odd.jpg"
    Image.effect_noise((1001, 803), 40).convert("RGB").save(path, quality=90)
    assert load_image(path, min_side=100).size == (126, 101)  # 1/8, rounded up
    assert load_image(path, min_side=201).size == (501, 402)  # 803 // 201 = 3 -> 1/2
    assert load_image(path, min_side=802).size == (1001, 803)
    assert load_image(path, min_side=804).size == (1001, 803)
    with pytest.raises(ValueError):
        load_image(path, min_side=0)


# -- Orientation -----------------------------------------------------------------------------------


def _thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((32, 32), Image.Resampling.BOX), dtype=np.float32)


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
def test_orientations_come_out_upright(kind: str) -> None:
    # The eight files show the same scene with a different digit drawn on it, separately
    # compressed: about 16 grey levels apart when upright, at least 29 when turned or mirrored.
    upright = load_image(photo(f"jpg/orientation/{kind}_1.jpg"))
    assert (upright.width > upright.height) == (kind == "landscape")
    target = _thumbnail(upright)
    for orientation in range(1, 9):
        image = load_image(photo(f"jpg/orientation/{kind}_{orientation}.jpg"))
        assert image.size == upright.size, orientation
        distance = float(np.abs(_thumbnail(image) - target).mean())
        wrong = min(
            float(np.abs(_thumbnail(image.transpose(method)) - target).mean())
            for method in Image.Transpose
        )
        assert distance <= 20.0, (orientation, distance)
        assert distance < 0.6 * wrong, (orientation, distance, wrong)


def test_orientation_direction(tmp_path: Path) -> None:
    # Stored 40x20 with a red top-left corner; orientation 6 means "rotate 90 degrees clockwise".
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[pp.EXIF_ORIENTATION] = 6
    path = tmp_path / "six.png"
    stored.save(path, exif=exif)
    image = load_image(path)
    assert image.size == (20, 40)
    assert image.getpixel((19, 0)) == (255, 0, 0)
    assert image.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize(
    "exif_blob",
    [
        b"Exif\x00\x00" + b"\xff" * 40,  # not a TIFF header
        b"Exif\x00\x00MM\x00*\xff\xff\xff\x7f" + bytes(20),  # IFD offset past the end
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x02\x00\x04\x00\x00\x00six\x00",
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09"
        + bytes(6),
    ],
    ids=["garbage", "bad-offset", "ascii-orientation", "orientation-9"],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_means_no_rotation(tmp_path: Path, exif_blob: bytes) -> None:
    path = tmp_path / "broken-exif.jpg"
    Image.new("RGB", (40, 20), (10, 120, 200)).save(path, exif=exif_blob)
    image = load_image(path)
    assert image.size == (40, 20)
    assert image.mode == "RGB"


def test_exif_that_raises_means_no_rotation(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "six.jpg"
    exif = Image.Exif()
    exif[pp.EXIF_ORIENTATION] = 6
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)

    def broken(self: Image.Image) -> Image.Exif:
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert load_image(path).size == (40, 20)


# -- Every real file, broken files, HEIF ---------------------------------------------------------


@pytest.mark.parametrize("folder", [SAMPLES, pytest.param(SHARED_SAMPLES, marks=needs_shared)])
def test_every_sample_loads_or_raises_decode_error(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) > 50
    loaded, failed = 0, 0
    for path in files:
        try:
            image = load_image(path, min_side=448)
        except ImageDecodeError as error:
            failed += 1
            message = str(error)
            assert path.name in message and "\n" not in message
        else:
            loaded += 1
            assert image.mode == "RGB" and min(image.size) >= 1
    # The README files are the only non-images; every photo, broken EXIF included, decodes
    # (HEIC/HEIF ones only with pillow_heif, which the test extra installs).
    unreadable = {"README", "README.md"} | (set() if _has_pillow_heif() else {".heic", ".heif"})
    assert failed == sum(1 for p in files if {p.name, p.suffix.lower()} & unreadable)
    assert loaded == len(files) - failed


def _has_pillow_heif() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def test_heif_loads_with_pillow_heif() -> None:
    pytest.importorskip("pillow_heif")
    image = load_image(photo("heic/samplefilehub.heif"), min_side=200)
    assert image.mode == "RGB"
    assert image.size == (640, 426)


def test_heif_without_pillow_heif_names_the_extra() -> None:
    path = photo("heic/samplefilehub.heif")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pillow_heif"] = None  # makes "import pillow_heif" fail
        from core.preprocess import ImageDecodeError, load_image
        try:
            load_image({str(path)!r})
        except ImageDecodeError as error:
            print(error)
        else:
            print("loaded")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    message = result.stdout.strip()
    assert "clipsearch-tui[heif]" in message and path.name in message


def test_tiff_with_opaque_alpha_is_plain_rgb() -> None:
    path = photo("tiff/Rudless.tiff")
    with Image.open(path) as raw:
        assert raw.mode == "RGBA"
        expected = np.asarray(raw.convert("RGB"))
    image = load_image(path)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), expected)


def _truncated_jpeg(tmp_path: Path) -> Path:
    source = photo("jpg/gps/DSCN0010.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(source[: len(source) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.jpg", "No such file"),
        (lambda d: d, "directory"),
        (lambda d: _write(d / "empty.jpg", b""), "not an image"),
        (lambda d: _write(d / "text.jpg", b"hello, not a photo\n" * 20), "not an image"),
        (lambda d: _write(d / "noise.png", bytes(range(256)) * 8), "not an image"),
        (lambda d: _write(d / "header.jpg", b"\xff\xd8\xff\xe0" + bytes(40)), "not an image"),
        (_truncated_jpeg, "truncated"),
        (
            lambda d: _write(d / "movie.mp4", b"\x00\x00\x00\x18ftypisom" + bytes(64)),
            "not an image",
        ),
    ],
    ids=["missing", "directory", "empty", "text", "noise", "bad-header", "truncated", "mp4"],
)
def test_unreadable_files_raise_decode_error(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageDecodeError) as caught:
        load_image(path, min_side=100)
    message = str(caught.value)
    assert isinstance(caught.value, ClipsearchError)
    assert message.startswith(f"cannot read {path}: ")
    assert reason in message and "\n" not in message


def test_decompression_bomb_is_a_decode_error(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="big.png"):
        load_image(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- Colour modes ---------------------------------------------------------------------------------


def test_palette_png_becomes_rgb_before_resizing(tmp_path: Path, open_clip_transform) -> None:
    rgb = Image.effect_noise((90, 60), 60).convert("RGB")
    paletted = rgb.quantize(colors=32)
    path = tmp_path / "palette.png"
    paletted.save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    expected_rgb = paletted.convert("RGB")
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected_rgb))
    # The resize is bicubic on the RGB pixels, which open_clip gives when handed RGB. Handed the
    # palette image, open_clip lets Pillow resize it with nearest-neighbour sampling instead.
    ours = preprocess(image, spec_for(224))
    np.testing.assert_array_equal(ours, open_clip_transform(expected_rgb, 224))
    assert np.abs(ours - open_clip_transform(paletted, 224)).max() > 0.1


def test_palette_with_transparency_is_flattened_onto_white(tmp_path: Path) -> None:
    paletted = Image.new("P", (4, 2))
    paletted.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    paletted.putdata([0, 1, 1, 0, 1, 1, 1, 1])
    path = tmp_path / "transparent.gif"
    paletted.save(path, transparency=0)
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[0, 1]) == (200, 30, 40)


def test_la_is_flattened_onto_white(tmp_path: Path) -> None:
    grey = np.full((2, 3), 100, dtype=np.uint8)
    alpha = np.array([[255, 128, 0], [0, 0, 0]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    row = np.asarray(image)[0]
    # round(100 * a / 255 + 255 - a): 100, 177, 255
    np.testing.assert_array_equal(row, [[100] * 3, [177] * 3, [255] * 3])


def test_rgba_with_transparent_areas(tmp_path: Path, open_clip_transform) -> None:
    rgba = np.zeros((64, 96, 4), dtype=np.uint8)
    rgba[..., :3] = (20, 140, 220)
    rgba[..., 3] = 255
    rgba[:, :32] = (0, 0, 0, 0)  # fully transparent, black underneath
    rgba[:, 32:48, 3] = 64  # partly transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    pixels = np.asarray(load_image(path))
    np.testing.assert_array_equal(pixels[0, 0], [255, 255, 255])
    partly = np.rint(np.array([20, 140, 220]) * 64 / 255 + 191)
    np.testing.assert_array_equal(pixels[0, 40], partly)
    np.testing.assert_array_equal(pixels[0, 90], [20, 140, 220])
    # Fully opaque RGBA gives exactly what open_clip gives.
    opaque = Image.fromarray(rgba[:, 48:].copy(), mode="RGBA")
    np.testing.assert_array_equal(
        preprocess(opaque, spec_for(224)), open_clip_transform(opaque, 224)
    )


def test_rgb_colour_key_is_flattened_onto_white(tmp_path: Path) -> None:
    pixels = np.array([[[1, 2, 3], [1, 2, 4]]], dtype=np.uint8)
    path = tmp_path / "key.png"
    Image.fromarray(pixels, mode="RGB").save(path, transparency=(1, 2, 3))
    image = load_image(path)
    assert "transparency" not in image.info
    np.testing.assert_array_equal(np.asarray(image), [[[255, 255, 255], [1, 2, 4]]])
    with Image.open(path) as raw:
        flat = preprocess(raw, spec_for(8))
    np.testing.assert_array_equal(flat, preprocess(image, spec_for(8)))


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "PA", "LA", "La", "RGBA", "RGBa", "CMYK", "YCbCr", "HSV", "LAB", "RGBX"]
)
def test_every_common_mode_becomes_rgb(mode: str) -> None:
    image = Image.new(mode, (5, 3))
    out = preprocess(image, spec_for(4))
    assert out.shape == (3, 4, 4) and np.isfinite(out).all()


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 128, 129, 1000, 25700, 32896, 65534, 65535]], dtype=np.uint16)
    path = tmp_path / f"grey16{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    image = load_image(path)
    assert image.mode == "RGB"
    # round(v / 257): 65535 -> 255, 25700 -> 100 (Pillow's convert would give 255)
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 0, 1, 4, 100, 128, 255, 255])


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_modes_in_memory(mode: str) -> None:
    values = np.array([[-5, 0, 257, 51400, 65535, 70000]])
    if mode == "I":
        image = Image.fromarray(values.astype(np.int32))
    else:
        dtype = "<u2" if mode == "I;16" else ">u2"
        image = Image.fromarray(np.clip(values, 0, 65535).astype(dtype))
    assert image.mode == mode
    expected = Image.fromarray(np.array([[0, 0, 1, 200, 255, 255]], dtype=np.uint8)).convert("RGB")
    spec = spec_for(32)
    np.testing.assert_array_equal(preprocess(image, spec), preprocess(expected, spec))


def test_float_image_is_read_as_zero_to_one() -> None:
    values = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]], dtype=np.float32)
    image = Image.fromarray(values, mode="F")
    expected = Image.fromarray(np.array([[0, 0, 128, 255, 255, 0]], dtype=np.uint8)).convert("RGB")
    spec = spec_for(32)
    np.testing.assert_array_equal(preprocess(image, spec), preprocess(expected, spec))


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (120, 80), (0, 200, 200, 30))
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
        expected = np.asarray(raw.convert("RGB"))
    for min_side in (None, 40):
        image = load_image(path, min_side=min_side)
        assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(load_image(path)), expected)
    assert load_image(path, min_side=40).size == (60, 40)


def test_greyscale_and_bilevel(tmp_path: Path) -> None:
    grey = Image.linear_gradient("L").resize((50, 40))
    grey.save(tmp_path / "grey.jpg")
    image = load_image(tmp_path / "grey.jpg", min_side=20)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    bilevel = grey.convert("1")
    bilevel.save(tmp_path / "bilevel.png")
    assert set(np.unique(np.asarray(load_image(tmp_path / "bilevel.png")))) <= {0, 255}


# -- Geometry: resize and centre crop ---------------------------------------------------------


@pytest.mark.parametrize(
    "size_wh",
    [
        (1, 1),
        (1, 50),
        (50, 1),
        (3, 7),
        (7, 3),
        (224, 224),
        (225, 224),
        (229, 224),
        (224, 229),
        (300, 301),
        (999, 1000),
        (333, 500),
        (500, 333),
        (640, 427),
    ],
)
def test_synthetic_sizes_match_open_clip(size_wh: tuple[int, int], open_clip_transform) -> None:
    rng = np.random.default_rng(sum(size_wh))
    pixels = rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    for size in SIZES:
        np.testing.assert_array_equal(
            preprocess(image, spec_for(size)), open_clip_transform(image, size)
        )


@pytest.mark.parametrize(
    ("size_wh", "crop"),
    [
        ((5, 7), 8),
        ((10, 3), 8),
        ((3, 10), 8),
        ((8, 8), 8),
        ((13, 12), 8),
        ((12, 11), 8),
        ((229, 224), 224),
        ((230, 227), 224),
        ((1, 1), 4),
    ],
)
def test_centre_crop_matches_torchvision(size_wh: tuple[int, int], crop: int) -> None:
    functional = pytest.importorskip("torchvision.transforms.functional")
    rng = np.random.default_rng(crop + size_wh[0])
    pixels = rng.integers(1, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)
    expected = np.asarray(functional.center_crop(Image.fromarray(pixels), [crop]))
    np.testing.assert_array_equal(pp._centre_crop(pixels, crop), expected)


# -- API shape ------------------------------------------------------------------------------------


def test_normalisation_values() -> None:
    spec = Preprocess(size=4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    out = preprocess(Image.new("RGB", (4, 4), (255, 0, 51)), spec)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, -1.0, 0.2], rtol=0, atol=1e-7)


def test_unsupported_spec_is_refused() -> None:
    image = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="resize"):
        preprocess(image, Preprocess(size=4, resize="longest"))
    with pytest.raises(ValueError, match="interpolation"):
        preprocess(image, Preprocess(size=4, interpolation="lanczos"))


def test_core_preprocess_imports_no_torch_or_ui() -> None:
    script = (
        "import sys, core.preprocess; "
        "print(sorted(m for m in ('torch', 'textual', 'rich', 'open_clip') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(640, 480), (300, 900), (256, 256), (40, 30)])
def test_squash_matches_open_clip(shape: tuple[int, int]) -> None:
    """SigLIP's ``squash`` resize: both sides to the input size, no crop, as open_clip does."""
    open_clip = pytest.importorskip("open_clip")
    rng = np.random.default_rng(sum(shape))
    image = Image.fromarray(rng.integers(0, 256, (*shape[::-1], 3), dtype=np.uint8))
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    transform = open_clip.image_transform(
        256, is_train=False, mean=mean, std=std, resize_mode="squash"
    )
    ours = preprocess(image, Preprocess(size=256, mean=mean, std=std, resize="squash"))
    np.testing.assert_array_equal(ours, transform(image).numpy())
