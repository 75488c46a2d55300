"""Where the tests find real photos.

:data:`SAMPLES` is a small copy, inside the repository, of the files the tests use from the
public exif-samples collection (same layout; see ``tests/photos/README.md``), so the suite runs on
a fresh clone anywhere. :data:`SHARED_SAMPLES` is the whole collection when a checkout has it
beside the repository (``../shared/photos/exif-samples``); tests that read it only add coverage
and are skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "photos"
"""The photos kept in the repository (large ones scaled down, EXIF kept)."""
SHARED_PHOTOS = REPO.parent / "shared" / "photos"
SHARED_SAMPLES = SHARED_PHOTOS / "exif-samples"

needs_shared = pytest.mark.skipif(
    not SHARED_SAMPLES.is_dir(), reason="the full photo collection (../shared/photos) is absent"
)
"""Marks a test that reads the whole collection, beyond the photos kept in the repository."""
