"""The list of photos that could not be indexed, and files that were skipped."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.text import inert


class ErrorsScreen(ModalScreen[None]):
    """A table of ``path, reason``: failures first (red), then skipped files (dim)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,e", "dismiss", "Close")]

    def __init__(self, failures: list[tuple[str, str]], skipped: list[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.failures = failures
        self.skipped = skipped

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide") as dialog:
            dialog.border_title = "Indexing errors"
            dialog.border_subtitle = "Esc closes"
            summary = Text(
                f"{len(self.failures)} photos could not be indexed; "
                f"{len(self.skipped)} files were skipped."
            )
            yield Static(summary, classes="dialog-text")
            yield DataTable(id="error-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Problem", key="kind")
        table.add_column("File", key="path")
        table.add_column("Why", key="reason")
        for path, reason in self.failures:
            table.add_row(Text("failed", style="red"), Text(inert(path)), Text(inert(reason)))
        for path, reason in self.skipped:
            table.add_row(Text("skipped", style="dim"), Text(inert(path)), Text(inert(reason)))
        table.focus()
