"""Turn a photo file into the tensor a CLIP image encoder expects.

Two steps, kept apart so that thumbnails and the encoder share the decoding:

:func:`load_image` opens a file and returns an 8-bit RGB :class:`PIL.Image.Image`, the right way up.

1. The file is opened with Pillow. HEIC/HEIF files are recognised by their ``ftyp`` brands; the
   ``pillow_heif`` opener is registered the first time one is met (the ``clipsearch-tui[heif]``
   extra). AVIF is read by Pillow itself where it was built with AVIF support.
2. With ``min_side`` given, a JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps
   its short side at least ``min_side`` pixels (:meth:`PIL.Image.Image.draft`). Other formats are
   decoded at full size.
3. The pixels are decoded in full, so that a broken file fails here and not later. An image that
   would decode to more than :data:`MAX_DECODE_PIXELS` pixels (after the DCT scale) is refused
   before any pixel is decoded, whatever Pillow's own decompression-bomb limit says.
4. The colour mode becomes RGB by these rules:

   - ``RGB``: unchanged.
   - Alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, and ``P``/``L``/``RGB`` with a
     ``transparency`` key): composited over white, ``round(c * a / 255 + 255 - a)``. A fully
     opaque image is unchanged, so it gives exactly what open_clip gives (open_clip drops alpha
     with ``convert("RGB")``). For transparent pixels, dropping alpha would show whatever colour
     the encoder left under them (often black, sometimes noise); white is what a viewer shows and
     is how img2dataset, which built the LAION and DataComp training sets, flattened alpha.
   - Palette ``P`` and bilevel ``1``: expanded to RGB through the palette. This happens before the
     resize, so the resize is bicubic; open_clip resizes a ``P`` image itself, which Pillow
     silently does with nearest-neighbour sampling.
   - Greyscale ``L``: the grey level is copied to R, G and B.
   - 16-bit ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` and 32-bit ``I``: read as 16-bit intensities
     (``I`` is clipped to 0-65535), scaled to 8 bits with ``round(v / 257)`` (65535 -> 255), then
     copied to R, G and B. Pillow's own ``convert`` clips every value above 255 to white.
   - Float ``F``: read as intensities in [0, 1], the convention of floating-point image files;
     values outside are clipped, NaN becomes 0, then scaled by 255 and rounded.
   - ``CMYK``, ``YCbCr``, ``HSV`` and any other mode Pillow can convert: ``convert("RGB")`` (for
     CMYK that is Pillow's plain formula, without the ICC profile).

5. The EXIF Orientation tag (1-8) is applied. An unreadable EXIF block or an invalid value counts
   as orientation 1 (no rotation); a bad EXIF never makes a photo fail.

:func:`preprocess` gives the same numbers as open_clip's evaluation transform,
``open_clip.image_transform(S, is_train=False, resize_mode="shortest", interpolation="bicubic")``,
for ``Preprocess(size=S, resize="shortest")``:

1. Resize, as torchvision's ``Resize(S)`` does for a PIL image: the short side becomes ``S`` and the
   long side ``int(S * long / short)`` (truncated); Pillow bicubic (antialiased). An image already
   at that size is not resampled.
2. Centre crop to ``S x S``, as torchvision's ``CenterCrop(S)``: an image smaller than the crop is
   first padded with black, ``(S - w) // 2`` on the left and the rest on the right (likewise top and
   bottom); the crop starts at ``round((h - S) / 2)`` and ``round((w - S) / 2)``, with
   Python's round-half-to-even.

   The pixels a resize *produces* are bounded too: when the long side would come out longer than
   :data:`MAX_ASPECT` times ``S`` (a 1x40000 strip would become 256 x 10 million pixels), only a
   central window of ``MAX_ASPECT * S`` pixels of it is computed, with the same scale and sample
   positions (``Image.resize`` with a source ``box``) and placed so that step 2 takes the same
   crop. The model sees the same centre, up to one level in a few pixels where a filter weight
   rounds the other way; nothing outside the window could have reached the crop anyway.
3. ``x / 255`` in float32, then ``(x - mean) / std`` per channel in float32.
4. Laid out channel first: ``[3, S, S] float32``, C-contiguous, channels in R, G, B order.

For ``Preprocess(size=S, resize="squash")`` (SigLIP), step 1 is torchvision's ``Resize((S, S))``:
both sides become ``S`` whatever the aspect ratio (Pillow bicubic, antialiased; an image already
``S x S`` is not resampled), and step 2 has nothing to crop. This equals open_clip's
``image_transform(S, is_train=False, resize_mode="squash")``.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from collections.abc import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ClipsearchError
from core.heif import heif_available
from core.registry import Preprocess

__all__ = ["ImageDecodeError", "load_image", "preprocess", "resize_for"]

#: Pillow filters for the ``interpolation`` names of :class:`core.registry.Preprocess`.
RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
#: The default ``resize`` mode: short side to ``size``, then a centre crop.
RESIZE_MODE = "shortest"
#: Every ``resize`` mode implemented; ``"squash"`` scales both sides to ``size`` (SigLIP).
RESIZE_MODES = ("shortest", "squash")
#: Largest number of pixels a photo may decode to (after JPEG draft scaling); larger ones are
#: refused before decoding. 120 megapixels is more than any camera's JPEG or a 100 MP TIFF.
MAX_DECODE_PIXELS = 120_000_000
#: The resized long side is at most this many times the model's input size; beyond it only the
#: central window that the centre crop can reach is computed. Photos up to 16:1 (panoramas
#: included) are resized whole, exactly as open_clip does.
MAX_ASPECT = 16
#: Half-width, in source pixels at scale 1, of the widest filter in RESAMPLE_FILTERS (bicubic).
RESAMPLE_SUPPORT = 2.0
#: Colour conversions that need wider temporaries (alpha, 16-bit, float) run over strips of at
#: most this many pixels, so their extra memory does not grow with the photo.
STRIP_PIXELS = 1 << 20
#: 8-bit value that transparent pixels are composited over (white).
ALPHA_BACKGROUND = 255.0
#: 16-bit value ``v`` becomes ``round(v / SIXTEEN_BIT_DIVISOR)``; 65535 / 257 = 255.
SIXTEEN_BIT_DIVISOR = 257.0
#: Largest 16-bit value; 32-bit ``I`` images are clipped to it.
SIXTEEN_BIT_MAX = 65535
#: Value the centre crop pads with when the image is smaller than the crop (black, as torchvision).
PAD_VALUE = 0
#: EXIF tag number of Orientation.
EXIF_ORIENTATION = 0x0112
#: EXIF Orientation value -> the transpose that shows the photo the right way up.
ORIENTATION_TRANSPOSES: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: ISO base media ``ftyp`` brands of HEIF and AVIF still images.
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2"}
    | {b"msf1", b"avif", b"avis"}
)
#: The optional extra that brings HEIC/HEIF support.
HEIF_EXTRA = "clipsearch-tui[heif]"

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_COLOUR_KEY_MODES = frozenset({"P", "L", "RGB"})


class ImageDecodeError(ClipsearchError):
    """A photo file could not be opened or decoded; the message names the file and the reason."""


def load_image(path: str | os.PathLike[str], *, min_side: int | None = None) -> Image.Image:
    """Open a photo file as an 8-bit RGB image, the right way up.

    Parameters
    ----------
    path
        The file to read. It is only read, never written.
    min_side
        When given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, chosen so that its short side
        stays at least ``min_side`` pixels (twice the model's input size keeps the resize a true
        downscale). ``None`` decodes at full size.

    Returns
    -------
    PIL.Image.Image
        A fully decoded image in mode ``RGB`` with the EXIF orientation applied. The colour rules
        (alpha, palette, 16-bit, float, CMYK) are in the module docstring.

    Raises
    ------
    ImageDecodeError
        The file is missing, unreadable, not an image, truncated or otherwise broken, larger than
        :data:`MAX_DECODE_PIXELS` or Pillow's decompression-bomb limit, or a HEIC/HEIF file when
        ``pillow_heif`` is not installed.
    ValueError
        ``min_side`` is not a positive integer.
    """
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be a positive number of pixels, got {min_side}")
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            heif = _is_heif(handle.read(64))
            handle.seek(0)
            heif_ready = heif and heif_available()
            try:
                image: Image.Image = Image.open(handle)
            except UnidentifiedImageError:
                if heif and not heif_ready:
                    raise ImageDecodeError(
                        f"cannot read {shown}: HEIC/HEIF/AVIF photos need the optional extra "
                        f"{HEIF_EXTRA} (pip install '{HEIF_EXTRA}')"
                    ) from None
                raise
            if min_side is not None:
                image.draft(None, (min_side, min_side))
            if image.width * image.height > MAX_DECODE_PIXELS:
                raise ImageDecodeError(
                    f"cannot read {shown}: too large to decode ({image.width}x{image.height}, "
                    f"{image.width * image.height / 1e6:.0f} megapixels; the limit is "
                    f"{MAX_DECODE_PIXELS / 1e6:.0f})"
                )
            image.load()
        if image.width < 1 or image.height < 1:
            raise ValueError(f"the image has no pixels ({image.width}x{image.height})")
        orientation = _orientation(image)
        image = _to_rgb(image)
        if orientation in ORIENTATION_TRANSPOSES:
            image = image.transpose(ORIENTATION_TRANSPOSES[orientation])
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow's decoders raise many types on malformed input.
        raise ImageDecodeError(f"cannot read {shown}: {_reason(exc)}") from exc
    return image


def preprocess(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """The model input for one image, equal to open_clip's evaluation transform.

    Parameters
    ----------
    image
        Any Pillow image, normally from :func:`load_image`. A mode other than ``RGB`` is converted
        by the rules in the module docstring first. Orientation is taken as it is.
    spec
        The model's preprocessing: ``size`` S, ``mean``, ``std``, ``resize`` (``"shortest"``) and
        ``interpolation`` (``"bicubic"`` or ``"bilinear"``).

    Returns
    -------
    numpy.ndarray
        ``[3, S, S] float32``, C-contiguous, RGB; the pipeline is in the module docstring.

    Raises
    ------
    ValueError
        ``spec`` asks for a resize mode or interpolation that is not implemented, or the image is
        empty or in a mode that cannot become RGB.
    """
    out = np.empty((3, spec.size, spec.size), dtype=np.float32)
    _preprocess_into(image, spec, out)
    return out


def resize_for(image: Image.Image, spec: Preprocess) -> Image.Image:
    """The first step of :func:`preprocess` alone: ``image`` in RGB, short side scaled to the
    input size (both sides, for ``resize="squash"``).

    ``preprocess(resize_for(image, spec), spec)`` equals ``preprocess(image, spec)`` exactly
    (the resize is then a no-op), so a caller can keep the resized image for other uses, such as
    a thumbnail, without resizing the original twice.
    """
    if spec.resize not in RESIZE_MODES:
        raise ValueError(
            f"resize mode {spec.resize!r} is not implemented; only {', '.join(RESIZE_MODES)}"
        )
    if spec.interpolation not in RESAMPLE_FILTERS:
        known = ", ".join(sorted(RESAMPLE_FILTERS))
        raise ValueError(f"interpolation {spec.interpolation!r} is not one of: {known}")
    if spec.size < 1:
        raise ValueError(f"input size must be positive, got {spec.size}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"the image has no pixels ({image.width}x{image.height})")
    resample = RESAMPLE_FILTERS[spec.interpolation]
    if spec.resize == "squash":
        rgb = _to_rgb(image)
        square = (spec.size, spec.size)
        return rgb if rgb.size == square else rgb.resize(square, resample)
    return _resize_short_side(_to_rgb(image), spec.size, resample)


def _preprocess_into(image: Image.Image, spec: Preprocess, out: np.ndarray) -> None:
    """Write the ``[3, S, S]`` model input for ``image`` into ``out``."""
    resized = resize_for(image, spec)
    pixels = _centre_crop(np.asarray(resized), spec.size)
    table = _normalisation_table(spec.mean, spec.std)
    for channel in range(3):
        np.take(table[channel], pixels[..., channel], out=out[channel])


def _resize_short_side(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Scale ``image`` so its short side is ``size``, sizing the long side as torchvision does.

    A long side beyond ``MAX_ASPECT * size`` is computed only over its central window (see the
    module docstring), so the result never holds more than ``MAX_ASPECT * size * size`` pixels.
    """
    width, height = image.size
    tall = width <= height
    short, long = (width, height) if tall else (height, width)
    out_long = int(size * long / short)
    window = MAX_ASPECT * size
    if out_long <= window:
        new_size = (size, out_long) if tall else (out_long, size)
        if new_size == image.size:
            return image
        return image.resize(new_size, resample)
    # The crop of the full resize would start at ``crop``; _centre_crop of the window must start
    # there too, so the window starts ``round((window - size) / 2)`` before it.
    crop = round((out_long - size) / 2.0)
    start = crop - round((window - size) / 2.0)
    scale = long / out_long
    first, last = start * scale, (start + window) * scale
    # Only the source lines within reach of the filter go into the resize, cropped first (a box
    # over the whole image gives other numbers in Pillow's two-pass resize).
    reach = RESAMPLE_SUPPORT * max(scale, 1.0) + 1
    low, high = max(0, math.floor(first - reach)), min(long, math.ceil(last + reach))
    box: tuple[float, float, float, float]
    if tall:
        part, box = image.crop((0, low, width, high)), (0.0, first - low, width, last - low)
    else:
        part, box = image.crop((low, 0, high, height)), (first - low, 0.0, last - low, height)
    return part.resize((size, window) if tall else (window, size), resample, box=box)


def _centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` window of ``[H, W, C]`` pixels, padding as torchvision does."""
    height, width = pixels.shape[:2]
    if size > height or size > width:
        top = (size - height) // 2 if size > height else 0
        bottom = (size - height + 1) // 2 if size > height else 0
        left = (size - width) // 2 if size > width else 0
        right = (size - width + 1) // 2 if size > width else 0
        pixels = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), constant_values=PAD_VALUE)
        height, width = pixels.shape[:2]
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return pixels[top : top + size, left : left + size]


@functools.lru_cache(maxsize=8)
def _normalisation_table(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """``[3, 256] float32``: ``(v / 255 - mean) / std`` for every 8-bit value ``v``, per channel.

    Each entry is computed with the same float32 operations, in the same order, as torchvision's
    ``ToTensor`` and ``Normalize``, so looking values up gives identical results.
    """
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    table = (levels[None, :] - mean32) / std32
    table.setflags(write=False)
    return table


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, by the rules in the module docstring."""
    mode = image.mode
    if mode in _COLOUR_KEY_MODES and "transparency" in image.info:
        return _flatten_alpha(image.convert("RGBA"))
    if mode == "RGB":
        return image
    if mode == "La":
        image, mode = image.convert("LA"), "LA"
    if mode in _ALPHA_MODES:
        return _flatten_alpha(image if mode == "RGBA" else image.convert("RGBA"))
    if mode in _SIXTEEN_BIT_MODES:
        return _by_strips(image, 1, _sixteen_bit_to_grey).convert("RGB")
    if mode == "F":
        return _by_strips(image, 1, _float_to_grey).convert("RGB")
    return image.convert("RGB")


def _sixteen_bit_to_grey(values: np.ndarray) -> np.ndarray:
    values = np.clip(values.astype(np.int64), 0, SIXTEEN_BIT_MAX)
    return np.rint(values / SIXTEEN_BIT_DIVISOR).astype(np.uint8)


def _float_to_grey(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    grey: np.ndarray = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    return grey


def _by_strips(
    image: Image.Image, channels: int, convert: Callable[[np.ndarray], np.ndarray]
) -> Image.Image:
    """An 8-bit ``L`` (1 channel) or ``RGB`` (3) image made by ``convert`` on strips of rows.

    ``convert`` gets the pixels of at most :data:`STRIP_PIXELS` (and at least one row) and returns
    them as ``uint8``; its temporaries never grow with the whole photo.
    """
    width, height = image.size
    out = np.empty((height, width, channels) if channels > 1 else (height, width), np.uint8)
    rows = max(1, STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = convert(np.asarray(image.crop((0, top, width, bottom))))
    return Image.fromarray(out, mode="RGB" if channels > 1 else "L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """An ``RGBA`` image composited over white; fully opaque images only lose the alpha band."""
    if image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")
    return _by_strips(image, 3, _over_white)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32)
    colour = rgba[..., :3] * (alpha / 255.0) + (ALPHA_BACKGROUND - alpha)
    flat: np.ndarray = np.rint(np.clip(colour, 0.0, 255.0)).astype(np.uint8)
    return flat


def _orientation(image: Image.Image) -> int:
    """The EXIF Orientation value of ``image``; 1 when it is missing, invalid or unreadable."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
        return value if isinstance(value, int) and value in ORIENTATION_TRANSPOSES else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the photo fail.
        return 1


def _is_heif(head: bytes) -> bool:
    """Whether the first bytes of a file are an ISO ``ftyp`` box naming a HEIF or AVIF brand."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    (box_size,) = struct.unpack(">I", head[:4])
    end = min(len(head), box_size) if box_size >= 16 else 12
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    return any(brand in HEIF_BRANDS for brand in brands)


@functools.cache
def _reason(exc: BaseException) -> str:
    """A one-line description of why reading failed."""
    if isinstance(exc, UnidentifiedImageError):
        text = "not an image, or a format Pillow cannot read"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
