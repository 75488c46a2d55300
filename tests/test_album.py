"""Tests for core.scan, core.capture_time and core.timeline.

Scanning the album, capture times, the timeline.
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageFile, TiffImagePlugin, features

from core import scan as scan_module
from core.capture_time import CaptureTime, read_capture_time, wall_time
from core.database import is_under
from core.errors import AlbumNotFoundError, BadDateError, ClipsearchError, PhotoMissingError
from core.heif import heif_available
from core.paths import own_folders
from core.scan import (
    AVIF_MISSING_REASON,
    AVIF_SUFFIXES,
    DEFAULT_EXCLUDES,
    HEIF_MISSING_REASON,
    HEIF_SUFFIXES,
    RAW_REASON,
    SUPPORTED_SUFFIXES,
    ScanOptions,
    ScanResult,
    Skipped,
    scan,
)
from core.timeline import bucket_range, build_timeline, parse_date
from tests.samples import SAMPLES

SMALL_JPEG = SAMPLES / "jpg" / "Fujifilm_FinePix_E500.jpg"
IMAGE_SUFFIXES = SUPPORTED_SUFFIXES | HEIF_SUFFIXES | AVIF_SUFFIXES
BASE = ExifTags.Base


def _write_jpeg(path: Path, ifd0: dict[int, Any], exif_ifd: dict[int, Any]) -> Path:
    """Write a 16x8 JPEG whose EXIF holds the given IFD0 and Exif IFD tags."""
    exif = Image.Exif()
    for tag, value in ifd0.items():
        exif[tag] = value
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    for tag, value in exif_ifd.items():
        sub[tag] = value
    Image.new("RGB", (16, 8), "gray").save(path, exif=exif)
    return path


def _relative(result: ScanResult, root: Path) -> list[str]:
    return [entry.path.relative_to(root).as_posix() for entry in result.files]


# --------------------------------------------------------------------------------------------
# scan


@pytest.mark.parametrize("heif", [False, True])
def test_scan_real_album_accounts_for_every_image(
    monkeypatch: pytest.MonkeyPatch, heif: bool
) -> None:
    if heif:
        pytest.importorskip("pillow_heif")
    monkeypatch.setattr(scan_module, "heif_available", lambda: heif)
    result = scan([SAMPLES])

    on_disk = {p for p in SAMPLES.rglob("*") if p.is_file()}
    images = {p for p in on_disk if p.suffix.lower() in IMAGE_SUFFIXES}
    heics = {p for p in images if p.suffix.lower() in HEIF_SUFFIXES}
    listed = [entry.path for entry in result.files]
    assert len(listed) == len(set(listed))
    assert heics and len(images) >= 50
    assert result.errors == []
    assert result.ignored == len(on_disk - images)
    assert not result.cancelled
    assert listed == sorted(listed, key=str)
    if heif:
        assert set(listed) == images
        assert result.skipped == []
    else:
        assert set(listed) == images - heics
        assert {s.path for s in result.skipped} == heics
        assert {s.reason for s in result.skipped} == {HEIF_MISSING_REASON}
    for entry in result.files:
        st = entry.path.stat()
        assert entry.path.is_absolute()
        assert (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
def test_avif_follows_pillow_support(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.avif")
    assert _relative(scan([tmp_path]), tmp_path) == ["a.avif"]
    assert read_capture_time(tmp_path / "a.avif").width == 8
    monkeypatch.setattr(scan_module, "_avif_available", lambda: False)
    result = scan([tmp_path])
    assert result.files == []
    assert result.skipped == [Skipped(tmp_path / "a.avif", AVIF_MISSING_REASON)]


def test_symlink_loops_end_and_photos_are_listed_once(tmp_path: Path) -> None:
    root = tmp_path / "album"
    (root / "a").mkdir(parents=True)
    shutil.copyfile(SMALL_JPEG, root / "a" / "photo.jpg")
    try:
        (root / "a" / "loop").symlink_to(root, target_is_directory=True)
        (root / "aa").symlink_to(root / "a", target_is_directory=True)
        (root / "also.jpg").symlink_to(root / "a" / "photo.jpg")
        (root / "broken.jpg").symlink_to(root / "gone.jpg")
    except OSError:
        pytest.skip("symbolic links not available")

    result = scan([root])
    assert _relative(result, root) == ["a/photo.jpg"]
    assert result.errors == [Skipped(root / "broken.jpg", "broken symbolic link")]

    # a nested root lists what it reaches on its own, whatever the root above it holds: its
    # loop back up leads it to the broken link under its own path too
    result = scan([root, root / "a"])
    assert _relative(result, root) == ["a/photo.jpg"]
    assert result.errors == [
        Skipped(root / "a" / "loop" / "broken.jpg", "broken symbolic link"),
        Skipped(root / "broken.jpg", "broken symbolic link"),
    ]
    assert scan([root / "a"]).errors == result.errors[:1]

    result = scan([root], ScanOptions(follow_symlinks=False))
    assert _relative(result, root) == ["a/photo.jpg"]
    assert result.errors == []


def test_photos_outside_reached_through_a_link_keep_the_link_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(SMALL_JPEG, elsewhere / "x.jpg")
    root = tmp_path / "album"
    root.mkdir()
    try:
        (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not available")
    assert _relative(scan([root]), root) == ["linked/x.jpg"]


def test_a_root_linked_to_a_folder_of_another_root_lists_its_photos(tmp_path: Path) -> None:
    nu = tmp_path / "nu"
    (nu / "phötos").mkdir(parents=True)
    shutil.copyfile(SMALL_JPEG, nu / "phötos" / "cat.jpg")
    try:
        (nu / "link").symlink_to(nu / "phötos", target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not available")

    # each root lists what it holds, so the link root's photos do not depend on whether its
    # parent is scanned with it
    assert _relative(scan([nu]), nu) == ["phötos/cat.jpg"]
    assert _relative(scan([nu / "link"]), nu) == ["link/cat.jpg"]
    assert _relative(scan([nu, nu / "link"]), nu) == ["link/cat.jpg", "phötos/cat.jpg"]
    assert _relative(scan([nu / "link", nu]), nu) == ["link/cat.jpg", "phötos/cat.jpg"]


def test_the_programs_own_folders_are_never_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    album = tmp_path / "album"
    (album / "trip").mkdir(parents=True)
    shutil.copyfile(SMALL_JPEG, album / "trip" / "cat.jpg")
    home = album / "cliphome"
    for folder in ("data/models/tiny", "cache/thumbnails", "config"):
        (home / folder).mkdir(parents=True)
        shutil.copyfile(SMALL_JPEG, home / folder / "thumb.jpg")
    thumbnails = tmp_path / "thumbnails"
    thumbnails.mkdir()
    shutil.copyfile(SMALL_JPEG, thumbnails / "thumb.jpg")
    try:
        (album / "thumbs").symlink_to(home / "cache", target_is_directory=True)
        (album / "more").symlink_to(thumbnails, target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not available")
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))

    options = ScanOptions(skip_folders=(thumbnails,))
    assert _relative(scan([album], options), album) == ["trip/cat.jpg"]
    assert scan([home / "cache"]).files == []
    assert _relative(scan([album]), album) == ["more/thumb.jpg", "trip/cat.jpg"]

    # the platform's folders, when no CLIPSEARCH_HOME is set (XDG on Linux): a user who
    # indexes the home folder
    shutil.rmtree(home)
    monkeypatch.delenv("CLIPSEARCH_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(album / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(album / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(album / "config"))
    if not all(is_under(str(f), [str(album)]) for f in own_folders()):
        pytest.skip("the platform's folders do not follow XDG here")
    for folder in own_folders():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SMALL_JPEG, folder / "thumb.jpg")
    assert _relative(scan([album], options), album) == ["trip/cat.jpg"]


def test_hidden_excluded_and_unsupported_files(tmp_path: Path) -> None:
    for name in [
        "keep/x.jpg",
        "Keep/deeper/Y.JPEG",
        ".hidden/x.jpg",
        "@eaDir/x.jpg",
        "node_modules/pkg/x.png",
        ".y.jpg",
        "._z.jpg",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SMALL_JPEG, tmp_path / name)
    (tmp_path / "raw.CR2").write_bytes(b"raw")
    (tmp_path / "art.psd").write_bytes(b"psd")
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "notes.txt").write_text("not a photo")

    result = scan([tmp_path])
    assert _relative(result, tmp_path) == ["Keep/deeper/Y.JPEG", "keep/x.jpg"]
    assert [(s.path.name, s.reason) for s in result.skipped] == [
        ("art.psd", "PSD files are not supported"),
        ("empty.jpg", "empty file"),
        ("raw.CR2", RAW_REASON),
    ]
    assert result.ignored == 1

    everything = scan([tmp_path], ScanOptions(excludes=(), skip_hidden=False))
    assert len(everything.files) == 7

    custom = scan([tmp_path], ScanOptions(excludes=("KEEP", "*.png")))
    assert _relative(custom, tmp_path) == ["@eaDir/x.jpg"]  # the defaults were replaced
    extended = (*DEFAULT_EXCLUDES, "KEEP")
    assert scan([tmp_path], ScanOptions(excludes=extended)).files == []


def test_missing_root_raises_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(AlbumNotFoundError) as caught:
        scan([tmp_path, missing])
    assert str(caught.value) == f"photo folder not found: {missing}"
    assert isinstance(caught.value, ClipsearchError)

    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(AlbumNotFoundError, match="not a folder"):
        scan([tmp_path / "file.jpg"])


def test_unreadable_folder_is_an_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "locked").mkdir()
    shutil.copyfile(SMALL_JPEG, tmp_path / "ok.jpg")
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if path.endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    result = scan([tmp_path])
    assert _relative(result, tmp_path) == ["ok.jpg"]
    assert result.errors == [Skipped(tmp_path / "locked", "Permission denied")]


def test_cancel_and_progress(tmp_path: Path) -> None:
    shutil.copyfile(SMALL_JPEG, tmp_path / "a.jpg")
    reports: list[int] = []
    result = scan([tmp_path], progress=reports.append)
    assert reports[-1] == 1 and not result.cancelled

    cancel = threading.Event()
    cancel.set()
    result = scan([tmp_path], cancel=cancel)
    assert result.cancelled and result.files == []


# --------------------------------------------------------------------------------------------
# read_capture_time


def test_capture_times_of_real_camera_photos() -> None:
    canon = SAMPLES / "jpg" / "Canon_40D.jpg"
    assert b"2008:05:30 15:56:01" in canon.read_bytes()  # DateTimeOriginal, read independently
    capture = read_capture_time(canon)
    assert capture == CaptureTime(datetime(2008, 5, 30, 15, 56, 1), "DateTimeOriginal", 100, 68)

    # No DateTimeOriginal: the DateTime tag (the only date in the file) is used.
    photoshop = SAMPLES / "jpg" / "Canon_40D_photoshop_import.jpg"
    assert photoshop.read_bytes().count(b"2008:07:31 10:05:49") >= 1
    capture = read_capture_time(photoshop)
    assert (capture.taken_at, capture.source) == (datetime(2008, 7, 31, 10, 5, 49), "DateTime")

    # A phone that records its UTC offset.
    nokia = SAMPLES / "jpg" / "mobile" / "HMD_Nokia_8.3_5G.jpg"
    assert b"+03:00" in nokia.read_bytes()
    capture = read_capture_time(nokia)
    expected = datetime(2022, 8, 14, 14, 12, 31, tzinfo=timezone(timedelta(hours=3)))
    assert capture.taken_at == expected and capture.taken_at.utcoffset() == timedelta(hours=3)

    # No date at all: the file's modification time, as an aware local time.
    paint = SAMPLES / "jpg" / "PaintTool_sample.jpg"
    capture = read_capture_time(paint)
    assert capture.source == "mtime" and capture.taken_at.tzinfo is not None
    assert capture.taken_at.timestamp() == pytest.approx(paint.stat().st_mtime, abs=1e-3)


def test_heic_capture_time_with_offset_and_subseconds() -> None:
    pytest.importorskip("pillow_heif")
    assert heif_available()
    capture = read_capture_time(SAMPLES / "heic" / "mobile" / "iphone_13_pro_max.HEIC")
    tz = timezone(timedelta(hours=1))
    assert capture.taken_at == datetime(2022, 2, 16, 12, 55, 41, 762000, tzinfo=tz)
    with Image.open(SAMPLES / "heic" / "mobile" / "iphone_13_pro_max.HEIC") as image:
        size = image.size  # a portrait photo, stored upright
    assert capture.source == "DateTimeOriginal" and size[0] < size[1]
    assert (capture.width, capture.height) == size


def test_broken_files_never_raise(tmp_path: Path) -> None:
    broken = [
        *(SAMPLES / "jpg" / "invalid").glob("*.jp*g"),
        *(SAMPLES / "jpg" / "tests").glob("*.jp*g"),
        SAMPLES / "jpg" / "corrupted.jpg",
    ]
    assert len(broken) >= 10
    for path in broken:
        capture = read_capture_time(path)
        assert capture.source in {"DateTimeOriginal", "DateTimeDigitized", "DateTime", "mtime"}
        assert capture.width and capture.height and capture.error is None

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe1 this is not a JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((SAMPLES / "jpg" / "Canon_40D.jpg").read_bytes()[:300])
    for path in (garbage, truncated):
        capture = read_capture_time(path)
        assert capture.source == "mtime" and capture.width is None and capture.error

    with pytest.raises(PhotoMissingError, match="gone.jpg"):
        read_capture_time(tmp_path / "gone.jpg")
    capture = read_capture_time(tmp_path / "gone.jpg", mtime_ns=0)
    assert capture.taken_at.timestamp() == 0 and capture.error


@pytest.mark.parametrize(
    ("ifd0", "exif_ifd", "expected", "source"),
    [
        pytest.param(
            {BASE.DateTime: "2010:01:02 03:04:05\x00\x00"},
            {BASE.DateTimeOriginal: "0000:00:00 00:00:00", BASE.DateTimeDigitized: "    :  :  "},
            datetime(2010, 1, 2, 3, 4, 5),
            "DateTime",
            id="zeros-blanks-nul-padding",
        ),
        pytest.param(
            {},
            {BASE.DateTimeOriginal: b"2011:02:03 04:05:06", BASE.DateTimeDigitized: 5},
            datetime(2011, 2, 3, 4, 5, 6),
            "DateTimeOriginal",
            id="bytes",
        ),
        pytest.param(
            {BASE.DateTime: "2012:13:01 00:00:00"},
            {BASE.DateTimeOriginal: "9999:01:01 00:00:00", BASE.DateTimeDigitized: ""},
            None,
            "mtime",
            id="impossible-dates",
        ),
        pytest.param(
            {},
            {
                BASE.DateTimeOriginal: "2020:06:01 23:30:00",
                BASE.OffsetTimeOriginal: "+09:00",
                BASE.SubsecTimeOriginal: "25",
            },
            datetime(2020, 6, 1, 23, 30, 0, 250000, tzinfo=timezone(timedelta(hours=9))),
            "DateTimeOriginal",
            id="offset-and-subseconds",
        ),
        pytest.param(
            {BASE.DateTime: "2021:01:01 10:00:00"},
            {BASE.OffsetTime: "-05:30", BASE.OffsetTimeOriginal: "+01:00"},
            datetime(2021, 1, 1, 10, 0, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "DateTime",
            id="offset-paired-with-its-own-date",
        ),
        pytest.param(
            {},
            {BASE.DateTimeDigitized: "2019:05:14 08:00:00", BASE.OffsetTimeDigitized: "   :  "},
            datetime(2019, 5, 14, 8, 0),
            "DateTimeDigitized",
            id="blank-offset-is-naive",
        ),
    ],
)
def test_exif_dates_fall_back_on_garbage(
    tmp_path: Path,
    ifd0: dict[int, Any],
    exif_ifd: dict[int, Any],
    expected: datetime | None,
    source: str,
) -> None:
    path = _write_jpeg(tmp_path / "photo.jpg", ifd0, exif_ifd)
    os.utime(path, ns=(0, 1_500_000_000 * 10**9))
    capture = read_capture_time(path)
    assert capture.source == source
    if expected is None:
        assert capture.taken_at.timestamp() == 1_500_000_000
    else:
        assert capture.taken_at == expected
        assert capture.taken_at.utcoffset() == expected.utcoffset()


def test_orientation_swaps_width_and_height() -> None:
    folder = SAMPLES / "jpg" / "orientation"
    photos = sorted(folder.glob("*.jpg"))
    assert len(photos) >= 8
    for path in photos:
        with Image.open(path) as image:
            long, short = max(image.size), min(image.size)
        capture = read_capture_time(path)
        expected = (long, short) if path.stem.startswith("landscape") else (short, long)
        assert (capture.width, capture.height) == expected, path.name


def test_reading_capture_time_decodes_no_pixels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    png = tmp_path / "with-exif.png"
    exif = Image.Exif()
    exif[BASE.DateTime] = "2015:03:04 05:06:07"
    Image.new("RGB", (12, 10)).save(png, exif=exif)
    plain_png = tmp_path / "plain.png"  # PngImageFile.getexif() would decode this one
    Image.new("RGB", (12, 10)).save(plain_png)
    loads: list[str] = []
    for cls in (ImageFile.ImageFile, TiffImagePlugin.TiffImageFile):
        monkeypatch.setattr(cls, "load", lambda image: loads.append(image.format))
    jpeg = SAMPLES / "jpg" / "hdr" / "iphone_hdr_YES.jpg"
    assert read_capture_time(jpeg).source == "DateTimeOriginal"
    assert read_capture_time(png).source == "DateTime"
    assert read_capture_time(plain_png).width == 12
    for tiff in SAMPLES.glob("tiff/*.tiff"):
        assert read_capture_time(tiff).width
    assert loads == []


# --------------------------------------------------------------------------------------------
# timeline


NOW = datetime(2024, 5, 14, 18, 30)


def test_relative_buckets_with_a_fixed_now() -> None:
    items = [
        (datetime(2024, 5, 14, 23, 59), True),  # today, later than now
        (datetime(2024, 5, 8, 0, 0), False),  # 6 days ago: last 7 days
        (datetime(2024, 5, 7, 23, 59), True),  # 7 days ago: last 30 days only
        (datetime(2024, 4, 15, 0, 0), True),  # 29 days ago: last 30 days
        (datetime(2024, 4, 14, 12, 0), False),  # 30 days ago: last 12 months only
        (datetime(2023, 6, 1, 0, 0), False),  # 11 months back: last 12 months
        (datetime(2023, 5, 31, 23, 59), True),  # 12 months back: all only
        (datetime(2024, 5, 15, 0, 0), True),  # tomorrow (a camera clock ahead): all only
    ]
    timeline = build_timeline(items, now=NOW)
    counts = {b.key: (b.count, b.indexed) for b in timeline.relative}
    assert counts == {
        "last-7-days": (2, 1),
        "last-30-days": (4, 3),
        "last-12-months": (6, 3),
        "all": (8, 5),
    }
    assert [b.label for b in timeline.relative] == [
        "Last 7 days",
        "Last 30 days",
        "Last 12 months",
        "All photos",
    ]


def test_timeline_of_the_real_album_adds_up() -> None:
    captures = [
        read_capture_time(entry.path, entry.mtime_ns) for entry in scan([SAMPLES / "jpg"]).files
    ]
    items = [(capture.taken_at, i % 3 == 0) for i, capture in enumerate(captures)]
    timeline = build_timeline(items, now=NOW)

    everything = timeline.find("all")
    assert everything is not None and everything.count == len(items)
    assert sum(year.count for year in timeline.years) == everything.count
    assert sum(year.indexed for year in timeline.years) == everything.indexed
    starts = [year.start for year in timeline.years]
    assert starts == sorted(starts, reverse=True)
    for year in timeline.years:
        assert year.kind == "year" and sum(m.count for m in year.children) == year.count
        for month in year.children:
            assert month.kind == "month" and sum(d.count for d in month.children) == month.count
            assert sum(d.indexed for d in month.children) == month.indexed

    gps_day = timeline.find("2008-10-22")
    gps_photos = len(list((SAMPLES / "jpg" / "gps").glob("*.jpg")))  # all taken that afternoon
    assert gps_day is not None and gps_day.label == "Wed 22 October 2008"
    assert gps_day.count == gps_photos >= 5
    may_2008 = timeline.find("2008-05")  # Canon_40D.jpg and Pentax_K10D.jpg
    assert may_2008 is not None and may_2008.label == "May 2008"
    assert [d.key for d in may_2008.children] == ["2008-05-30", "2008-05-04"]
    assert timeline.find("1990") is None


def test_offsets_are_dropped_not_converted() -> None:
    late_in_tokyo = datetime(2020, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=9)))
    early_in_lima = datetime(2019, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    timeline = build_timeline([(late_in_tokyo, True), (early_in_lima, False)], now=NOW)
    assert [year.key for year in timeline.years] == ["2020", "2019"]
    assert wall_time(late_in_tokyo) == datetime(2020, 1, 1, 0, 30)


def test_bucket_range_round_trips_every_key() -> None:
    items = [(NOW - timedelta(days=d * 37), True) for d in range(40)]
    timeline = build_timeline(items, now=NOW)
    buckets = [*timeline.relative]
    for year in timeline.years:
        buckets += [year, *year.children, *(d for m in year.children for d in m.children)]
    assert len(buckets) > 80
    for bucket in buckets:
        assert bucket_range(bucket.key, now=NOW) == (bucket.start, bucket.end)
        assert timeline.find(bucket.key) is bucket

    assert bucket_range("2019-12") == (datetime(2019, 12, 1), datetime(2020, 1, 1))
    assert bucket_range("2020-02-29") == (datetime(2020, 2, 29), datetime(2020, 3, 1))
    assert bucket_range("last-12-months", now=NOW) == (
        datetime(2023, 6, 1),
        datetime(2024, 5, 15),
    )
    assert bucket_range("all") == (datetime.min, datetime.max)
    for bad in ("2019-13", "2019-02-30", "0000", "last-week", "19", "2019-5"):
        with pytest.raises(BadDateError, match="bad timeline key"):
            bucket_range(bad)


def test_parse_date() -> None:
    assert parse_date("2019") == datetime(2019, 1, 1)
    assert parse_date("2019", end=True) == datetime(2020, 1, 1)
    assert parse_date(" 2019-05 ", end=True) == datetime(2019, 6, 1)
    assert parse_date("2019-12-31", end=True) == datetime(2020, 1, 1)
    assert parse_date("2019-05-14") == datetime(2019, 5, 14)
    assert parse_date("2019-05-14T09:30") == datetime(2019, 5, 14, 9, 30)
    assert parse_date("2019-05-14 09:30+02:00", end=True) == datetime(
        2019, 5, 14, 9, 30, tzinfo=timezone(timedelta(hours=2))
    )
    with pytest.raises(BadDateError) as caught:
        parse_date("2019-5")
    assert str(caught.value) == (
        'bad date "2019-5": expected YYYY, YYYY-MM, YYYY-MM-DD, today, yesterday, '
        "a timeline key such as last-7-days, or a time ago such as 7d, 2w, 3m or 1y"
    )
    for impossible in ("2019-13", "2019-02-30", "2019-02-29", "0000"):  # the form is right
        with pytest.raises(BadDateError, match=f'bad date "{impossible}": no such date'):
            parse_date(impossible)
    assert parse_date("2020-02-29") == datetime(2020, 2, 29)
    for bad in ("", "tomorrow", "2019-5", "14/05/2019", "7x", "-3d"):
        with pytest.raises(BadDateError, match="expected YYYY, YYYY-MM, YYYY-MM-DD, today"):
            parse_date(bad)
