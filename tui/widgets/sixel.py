"""textual-image's Sixel widget, with the last line of its picture written in full.

textual-image (0.12) sends a Sixel picture from the last line of its region: it moves the cursor
to the region's top-left corner, sends the picture, and moves the cursor to the region's
bottom-right corner. Two things go wrong on that line when Textual redraws the whole screen (after
a resize, or when a screen is pushed or popped), since Textual then writes each line from its start
and relies on the cursor advancing with the text:

- the cursor is left one row too low (``Region.bottom`` is the row below the region), so the rest
  of the line, to the right of the picture, is written over the row below and is never written in
  its own row. Whatever the terminal last had there stays: borders of the layout before the resize,
  or the blank cells an enlarged xterm adds in its own default colours (a white bar);
- the cells of the picture on that line are never written, so where the picture does not cover them
  exactly they keep old text (Textual writes blank cells for the other lines of the region).

:class:`PaintedSixelImage` writes that line's cells blank in the background colour, then the
picture, and leaves the cursor just right of the picture on the same row.

Imported only by :func:`tui.widgets.images.image_class`, after textual-image has asked the
terminal what it supports.
"""

from __future__ import annotations

from rich.control import Control
from rich.segment import ControlType, Segment
from rich.style import Style
from textual.app import ComposeResult
from textual_image.widget.sixel import Image as SixelImage
from textual_image.widget.sixel import _ImageSixelImpl

_NO_STYLE = Style()


class _PaintedSixels(_ImageSixelImpl):
    """The part of textual-image's widget that sends the Sixel data, fixed as described above."""

    def _get_sixel_segments(self, sixel_data: str) -> list[Segment]:
        region = self.screen.find_widget(self).visible_region
        _, background = self.background_colors
        blank = Style(bgcolor=background.rich_color) if background.a else _NO_STYLE
        return [
            Segment(" " * region.width, blank),
            Segment(Control.move_to(region.x, region.y).segment.text, _NO_STYLE),
            # zero cells wide for Textual: the picture goes over cells already counted
            Segment(sixel_data, _NO_STYLE, control=((ControlType.CURSOR_FORWARD, 0),)),
            Segment(Control.move_to(region.right, region.bottom - 1).segment.text, _NO_STYLE),
        ]


class PaintedSixelImage(SixelImage, Renderable=SixelImage._Renderable):
    """A Sixel picture whose region is redrawn whole after a resize (see the module notes)."""

    def compose(self) -> ComposeResult:
        yield _PaintedSixels(self.image, self._sixel_options)
