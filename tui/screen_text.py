"""The screen as plain text, read through Textual's public screenshot.

Textual (8.2) has no public call that returns the screen's text. What it does offer is
:meth:`textual.app.App.export_screenshot`: an SVG that Rich's ``Console.export_svg`` writes from
the same compositor output the terminal gets. Rich places each run of characters of one style in
a ``<text>`` element at ``x = column x char_width``, counting columns in terminal cells (a wide
character such as 漢 takes two), names the row in the element's ``clip-path``
(``url(#terminal-…-line-ROW)``), writes spaces as ``&#160;``, leaves out runs that are only
spaces and writes each row's line break as one more run past the last column.
:func:`svg_screen_text` reads those back: each run goes at its cell column, gaps are spaces, line
breaks are dropped, each row is padded to the screen's width in cells. So a wide character is one
character of the text, as on screen, and what follows it keeps its place.

Reading the screen this way costs an SVG export per call: about 16 ms for a full 120 x 40 screen
on a shared 2-core machine, against 5 ms for the compositor's strips. Like every full render it
also leaves no region of the screen marked as needing a redraw, so it is for tests and snapshots,
not for a running app's own use.

This depends on Rich's SVG layout, which is not a documented contract either; a test compares it
with the compositor's own strips (wide characters, blank rows, markup-like names) so that a Rich
or Textual upgrade that changes the layout is caught.
"""

from __future__ import annotations

import html
import re
from typing import Any

from rich.cells import cell_len
from textual.app import App

_TEXT = re.compile(r"<text ([^>]*)>([^<]*)</text>")
_ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')
_ROW = re.compile(r"-line-(\d+)\)$")
_LINE_CLIP = re.compile(r'<clipPath id="[^"]*-line-0">\s*<rect ([^>]*)/>')
_TERMINAL_CLIP = re.compile(r'<clipPath id="[^"]*-clip-terminal">\s*<rect ([^>]*)/>')


def screen_text(app: App[Any]) -> str:
    """The screen of the running ``app`` as the user sees it: one line per terminal row, each
    as many cells wide as the screen; empty before the screen is first laid out."""
    width, height = app.size
    return svg_screen_text(app.export_screenshot(), width, height)


def svg_screen_text(svg: str, width: int, height: int) -> str:
    """The text of a screenshot SVG written by Rich's ``Console.export_svg`` for a terminal of
    ``width`` x ``height`` cells (empty when it holds no row at all); see the module docstring
    for how it is read."""
    runs: list[tuple[int, float, str]] = []
    for attributes_text, content in _TEXT.findall(svg):
        attributes = dict(_ATTRIBUTE.findall(attributes_text))
        row = _ROW.search(attributes.get("clip-path", ""))
        if row is None:  # the window title, not a row of the terminal
            continue
        # Rich ends each full-width line with its line break, drawn as text past the last column
        text = html.unescape(content.replace("&#160;", " ")).replace("\n", "")
        runs.append((int(row.group(1)), float(attributes["x"]), text))
    if not runs:
        return ""
    rows: list[list[tuple[int, str]]] = [[] for _ in range(height)]
    char_width = _char_width(svg, width)
    for row_number, x, text in runs:
        if text:
            rows[row_number].append((round(x / char_width), text))
    lines = []
    for row_runs in rows:
        line = ""
        for column, text in sorted(row_runs, key=lambda run: run[0]):
            line += " " * (column - cell_len(line)) + text
        lines.append(line + " " * (width - cell_len(line)))
    return "\n".join(lines)


def _char_width(svg: str, width: int) -> float:
    """The width of one cell in the SVG's units: a row's clip path spans the ``width`` cells
    (Rich writes none for the last row, so a one-row screen has only the terminal's, one unit
    narrower)."""
    line = _LINE_CLIP.search(svg)
    if line is not None:
        return float(dict(_ATTRIBUTE.findall(line.group(1)))["width"]) / width
    terminal = _TERMINAL_CLIP.search(svg)
    if terminal is not None:
        return (float(dict(_ATTRIBUTE.findall(terminal.group(1)))["width"]) + 1) / width
    raise ValueError("not a Rich terminal SVG: no clip path gives the width of a cell")
