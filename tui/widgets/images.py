"""Which textual-image widget draws thumbnails: Kitty, Sixel, half-cell blocks, or none.

textual-image asks the terminal what it supports (and its cell size in pixels) when its modules
are first imported, which must happen before Textual takes over the terminal: :func:`image_class`
is therefore called by :func:`tui.app.make_app`, before the app runs. The widgets it returns are
given small PIL images decoded in thread workers, never files to decode on the UI thread.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from PIL import Image as PILImage
from textual.widget import Widget

from tui.config import IMAGE_MODES, ImageMode

ImageWidget = Callable[[PILImage.Image], Widget]
"""A textual-image widget class (kitty, Sixel or half-cell): called with a PIL image, it makes
the widget that draws it."""


def _inside_multiplexer() -> bool:
    return bool(os.environ.get("TMUX")) or os.environ.get("TERM", "").startswith("screen")


KITTY_PLACEHOLDERS = (0, 28)
"""The first kitty version that draws Unicode placeholders, which textual-image draws through."""

_KITTY_VERSION = re.compile(r"\s*kitty[\s(]*(\d+)\.(\d+)", re.IGNORECASE)


def auto_mode(detected: ImageMode, version: str | None) -> ImageMode:
    """What ``auto`` draws with, given textual-image's detection and the terminal's version.

    ``version`` is the terminal's answer to the XTVERSION query (kitty answers
    ``kitty(0.26.5)``), or ``"kitty 0.26.5"`` from ``TERM_PROGRAM``/``TERM_PROGRAM_VERSION``;
    None when unknown. A kitty older than 0.28 answers the graphics query but cannot draw the
    placeholders, so every image would be empty boxes: half-cell blocks are used instead. Any
    other answer, or none, keeps the detection.
    """
    if detected == "kitty" and version is not None:
        match = _KITTY_VERSION.match(version)
        if match and (int(match[1]), int(match[2])) < KITTY_PLACEHOLDERS:
            return "halfcell"
    return detected


def terminal_version() -> str | None:
    """The terminal's name and version, or None when it does not say.

    ``TERM_PROGRAM`` and ``TERM_PROGRAM_VERSION`` first; then the XTVERSION query (``CSI > q``),
    answered within 0.1 s or not at all. Like textual-image's own queries, this must run before
    Textual reads the terminal.
    """
    program = os.environ.get("TERM_PROGRAM", "")
    program_version = os.environ.get("TERM_PROGRAM_VERSION", "")
    if program and program_version:
        return f"{program} {program_version}"
    stdout = sys.__stdout__
    if stdout is None or not stdout.isatty():
        return None
    from textual_image._terminal import capture_terminal_response

    try:
        with capture_terminal_response("\x1bP>|", "\x1b\\", 0.1) as response:
            stdout.write("\x1b[>q")
            stdout.flush()
    except Exception:  # noqa: BLE001 - no answer, or not one we understand: the version is unknown
        return None
    return response.sequence[len("\x1bP>|") : -len("\x1b\\")] or None


def image_class(mode: ImageMode) -> ImageWidget | None:
    """The image widget class for ``mode``; None for ``"none"``.

    ``auto`` takes textual-image's detection (Sixel, then the Kitty graphics protocol, then
    half-cell blocks on a terminal) except inside tmux or screen, where graphics protocols are
    not passed through by default and half-cell blocks are used, and on a kitty older than 0.28
    (see :func:`auto_mode`).
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, not {mode!r}")
    if mode == "none":
        return None
    from textual_image import renderable, widget

    if mode == "kitty":
        return widget.TGPImage
    if mode == "sixel":
        return _sixel_widget()
    if mode == "halfcell" or _inside_multiplexer():
        return widget.HalfcellImage
    detected = renderable.Image
    if detected is renderable.SixelImage:
        return _sixel_widget()
    if detected is renderable.TGPImage:
        if auto_mode("kitty", terminal_version()) == "halfcell":
            return widget.HalfcellImage
        return widget.TGPImage
    # Half-cell blocks on a terminal without graphics; also when output is not a terminal.
    return widget.HalfcellImage


def _sixel_widget() -> ImageWidget:
    """The Sixel widget: textual-image's, with the line that sends the picture written in full
    (see :mod:`tui.widgets.sixel`); textual-image's own if its internals have changed."""
    try:
        from tui.widgets.sixel import PaintedSixelImage
    except ImportError:
        from textual_image.widget import SixelImage

        return SixelImage
    return PaintedSixelImage


def renderable_class(widget_class: ImageWidget | None) -> type | None:
    """The Rich renderable that draws small thumbnails inline for ``widget_class``.

    Kitty images and half-cell blocks are renderables that any widget can draw. Sixel images
    can only be placed by textual-image's own widget, one widget per image, which is too costly
    for a list; in that mode list thumbnails are half-cell blocks and the detail view's preview
    is a Sixel image. None when images are off.
    """
    if widget_class is None:
        return None
    from textual_image import widget
    from textual_image.renderable import halfcell, tgp

    return tgp.Image if widget_class is widget.TGPImage else halfcell.Image


def cells_for(image: PILImage.Image, box: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(columns, rows)`` inside ``box`` that keeps the image's shape on screen."""
    # not in textual-image's __all__, but its only call that gives the cell size; its widget
    # module imports it and asks the terminal once, before Textual starts
    from textual_image.widget import get_cell_size  # type: ignore[attr-defined]

    cell = get_cell_size()
    columns, rows = box
    width, height = image.size
    if not (width and height and columns > 0 and rows > 0):
        return 0, 0
    scale = min(columns * cell.width / width, rows * cell.height / height)
    return (
        max(1, min(columns, round(width * scale / cell.width))),
        max(1, min(rows, round(height * scale / cell.height))),
    )
