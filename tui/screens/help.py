"""The help screen: every key, and the query syntax."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

QUERY_HELP = """\
Type what you are looking for and press Enter: a red bicycle in the snow
In the empty box, i and I index (as the footer shows): press / first to type a query
that begins with i, such as ice on the lake.
Combine terms with + and -, weight them with N: and quote them:
  beach + sunset - people      2:cat + 0.5:"red car"
An image path is a term too: ./holiday/IMG_0042.jpg + night, img:"my photo.jpg"
Probabilities: CLIP models share 100% among every candidate photo (a softmax);
SigLIP models give each photo its own chance of matching (a sigmoid). cos is the cosine score."""


def binding_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """``(keys, description)`` for each binding that has a description."""
    rows = []
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        keys = binding.key_display or ", ".join(
            key.replace("question_mark", "?").replace("ctrl+", "^")
            for key in binding.key.split(",")
        )
        rows.append((keys, binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    """Key bindings grouped by where they apply, then how to write a query."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close")
    ]

    def __init__(self, sections: Sequence[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog-screen")
        self._sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide") as dialog:
            dialog.border_title = "Help"
            dialog.border_subtitle = "Esc closes"
            with VerticalScroll():
                for title, rows in self._sections:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold cyan", no_wrap=True)
                    table.add_column()
                    for keys, description in rows:
                        table.add_row(Text(keys), Text(description))
                    yield Static(Text(title, style="bold underline"), classes="help-title")
                    yield Static(table)
                yield Static(Text("Queries", style="bold underline"), classes="help-title")
                yield Static(Text(QUERY_HELP))
        yield Footer(compact=True)  # this dialog's keys, over the main screen's footer
