"""Rebuild ``tests/photos`` from a copy of the exif-samples collection.

Usage::

    python tests/tools/make_test_photos.py PATH/TO/exif-samples

Files listed in :data:`PHOTOS` keep their path under the collection. Small files are copied
byte for byte; larger ones are scaled down (the long side to :data:`LONG_SIDE`, or
:data:`LARGE_LONG_SIDE` for the few kept large enough to be decoded in draft mode) and saved
again with their original EXIF block (capture times, orientation, odd tags) and ICC profile,
so that the folder stays small while every case the tests need survives. The result is
deterministic for a given Pillow version.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "photos"
COPY_BELOW = 40_000
"""Files smaller than this many bytes are copied unchanged."""
LONG_SIDE = 320
LARGE_LONG_SIDE = 1200
LARGE = {"jpg/tests/30-type_error.jpg", "jpg/mobile/HMD_Nokia_8.3_5G.jpg"}
"""Kept large enough that preprocessing for 224 and 256 pixels decodes them in draft mode."""

PHOTOS = (
    "heic/mobile/iphone_13_pro_max.HEIC",
    "heic/samplefilehub.heif",
    "jpg/Canon_40D.jpg",
    "jpg/Canon_40D_photoshop_import.jpg",
    "jpg/Canon_DIGITAL_IXUS_400.jpg",
    "jpg/Canon_PowerShot_S40.jpg",
    "jpg/Fujifilm_FinePix_E500.jpg",
    "jpg/Kodak_CX7530.jpg",
    "jpg/Konica_Minolta_DiMAGE_Z3.jpg",
    "jpg/Nikon_COOLPIX_P1.jpg",
    "jpg/Nikon_D70.jpg",
    "jpg/Olympus_C8080WZ.jpg",
    "jpg/PaintTool_sample.jpg",
    "jpg/Reconyx_HC500_Hyperfire.jpg",
    "jpg/Pentax_K10D.jpg",
    "jpg/Sony_HDR-HC3.jpg",
    "jpg/corrupted.jpg",
    "jpg/exif-org/canon-ixus.jpg",
    "jpg/exif-org/fujifilm-dx10.jpg",
    "jpg/exif-org/kodak-dc240.jpg",
    "jpg/exif-org/nikon-e950.jpg",
    "jpg/exif-org/olympus-c960.jpg",
    "jpg/exif-org/ricoh-rdc5300.jpg",
    "jpg/exif-org/sanyo-vpcsx550.jpg",
    "jpg/exif-org/sony-d700.jpg",
    "jpg/gps/DSCN0010.jpg",
    "jpg/gps/DSCN0012.jpg",
    "jpg/gps/DSCN0021.jpg",
    "jpg/gps/DSCN0027.jpg",
    "jpg/gps/DSCN0029.jpg",
    "jpg/hdr/canon_hdr_NO.jpg",
    "jpg/hdr/iphone_hdr_YES.jpg",
    "jpg/invalid/image01137.jpg",
    "jpg/invalid/image01713.jpg",
    "jpg/invalid/image01980.jpg",
    "jpg/invalid/image02206.jpg",
    "jpg/mobile/HMD_Nokia_8.3_5G.jpg",
    "jpg/mobile/jolla.jpg",
    "jpg/orientation/landscape_1.jpg",
    "jpg/orientation/landscape_2.jpg",
    "jpg/orientation/landscape_3.jpg",
    "jpg/orientation/landscape_4.jpg",
    "jpg/orientation/landscape_5.jpg",
    "jpg/orientation/landscape_6.jpg",
    "jpg/orientation/landscape_7.jpg",
    "jpg/orientation/landscape_8.jpg",
    "jpg/orientation/portrait_1.jpg",
    "jpg/orientation/portrait_2.jpg",
    "jpg/orientation/portrait_3.jpg",
    "jpg/orientation/portrait_4.jpg",
    "jpg/orientation/portrait_5.jpg",
    "jpg/orientation/portrait_6.jpg",
    "jpg/orientation/portrait_7.jpg",
    "jpg/orientation/portrait_8.jpg",
    "jpg/tests/22-canon_tags.jpg",
    "jpg/tests/30-type_error.jpg",
    "jpg/tests/32-lens_data.jpeg",
    "jpg/tests/42_IndexError.jpg",
    "jpg/tests/67-0_length_string.jpg",
    "jpg/xmp/no_exif.jpg",
    "tiff/Arbitro.tiff",
    "tiff/BSG1.tiff",
    "tiff/Crémieux11.tiff",
    "tiff/DudleyLeavittUtah.tiff",
    "tiff/Picoawards.tiff",
    "tiff/Rudless.tiff",
)


def _scaled(image: Image.Image, long_side: int) -> Image.Image:
    factor = long_side / max(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def rebuild(source: Path) -> None:
    """Write every photo of :data:`PHOTOS` under :data:`OUT` from the collection at ``source``."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    for relative in PHOTOS:
        original, target = source / relative, OUT / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = original.suffix.lower()
        long_side = LARGE_LONG_SIDE if relative in LARGE else LONG_SIDE
        with Image.open(original) as image:
            small_enough = max(image.size) <= long_side and suffix in {".tif", ".tiff"}
        if original.stat().st_size < COPY_BELOW or small_enough:
            shutil.copyfile(original, target)
            continue
        with Image.open(original) as image:
            extra = {k: image.info[k] for k in ("exif", "icc_profile") if image.info.get(k)}
            small = _scaled(image, long_side) if max(image.size) > long_side else image.copy()
            if suffix in {".tif", ".tiff"}:
                small.save(target, compression="tiff_adobe_deflate")
                continue
            if suffix in {".heic", ".heif"}:
                small.save(target, format="HEIF", quality=50, **extra)
            else:
                small.save(target, format="JPEG", quality=80, **extra)


if __name__ == "__main__":
    rebuild(Path(sys.argv[1]))
