"""Which textual-image widget draws thumbnails: Kitty, Sixel, half-cell blocks, or none.

textual-image asks the terminal what it supports (and its cell size in pixels) when its modules
are first imported, which must happen before Textual takes over the terminal: :func:`image_class`
is therefore called by :func:`tui.app.make_app`, before the app runs. The widgets it returns are
given small PIL images decoded in thread workers, never files to decode on the UI thread.
"""

from __future__ import annotations

import os

from PIL import Image as PILImage
from textual.widget import Widget

from tui.config import IMAGE_MODES, ImageMode

ImageWidget = type[Widget]


def _inside_multiplexer() -> bool:
    return bool(os.environ.get("TMUX")) or os.environ.get("TERM", "").startswith("screen")


def image_class(mode: ImageMode) -> ImageWidget | None:
    """The image widget class for ``mode``; None for ``"none"``.

    ``auto`` takes textual-image's detection (Sixel, then the Kitty graphics protocol, then
    half-cell blocks on a terminal) except inside tmux or screen, where graphics protocols are
    not passed through by default and half-cell blocks are used.
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, not {mode!r}")
    if mode == "none":
        return None
    from textual_image import renderable, widget

    if mode == "kitty":
        return widget.TGPImage
    if mode == "sixel":
        return widget.SixelImage
    if mode == "halfcell" or _inside_multiplexer():
        return widget.HalfcellImage
    detected = renderable.Image
    if detected is renderable.SixelImage:
        return widget.SixelImage
    if detected is renderable.TGPImage:
        return widget.TGPImage
    # Half-cell blocks on a terminal without graphics; also when output is not a terminal.
    return widget.HalfcellImage


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
    from textual_image.widget import get_cell_size

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
