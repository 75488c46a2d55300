"""The list of photos that could not be indexed, and files that were skipped."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static

from tui.text import inert, plural


class ErrorsScreen(ModalScreen[bool]):
    """Failures first (red), then skipped files (dim): each as its path, and below it the
    reason, both wrapped to the dialog's width, so that a long reason is read whole at 80
    columns. Dismissed with True when the user asks to try the failed photos again (``r``),
    else False."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,e", "close", "Close"),
        Binding("r", "retry", "Try the failed again"),
    ]

    def __init__(self, failures: list[tuple[str, str]], skipped: list[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.failures = failures
        self.skipped = skipped

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide") as dialog:
            dialog.border_title = "Indexing errors"
            dialog.border_subtitle = "Esc closes"
            failed = plural(len(self.failures), "photo")
            skipped = plural(len(self.skipped), "file was", "files were")
            summary = Text(f"{failed} could not be indexed; {skipped} skipped.")
            yield Static(summary, classes="dialog-text")
            entries = [
                *(_entry("failed", "red", path, reason) for path, reason in self.failures),
                *(_entry("skipped", "dim", path, reason) for path, reason in self.skipped),
            ]
            yield OptionList(*entries, id="error-list")
        yield Footer(compact=True)  # this dialog's keys, over the main screen's footer

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return bool(self.failures) if action == "retry" else True

    def action_close(self) -> None:
        self.dismiss(False)

    def action_retry(self) -> None:
        """Close, and have the failed photos tried again although their files are unchanged."""
        self.dismiss(True)


def _entry(kind: str, style: str, path: str, reason: str) -> Text:
    """One problem: ``failed: PATH``, and the reason from the next line on, each wrapped."""
    text = Text()
    text.append(f"{kind}: ", style=style)
    text.append(inert(path), style="bold")
    text.append("\n")
    text.append(inert(" ".join(reason.split())), style="italic")
    return text
