"""First run: offer to install the model (or the multilingual one), with progress and cancel, or
show the offline route."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, ProgressBar, Static
from textual.worker import get_current_worker

from core import catalog, install, registry
from core.errors import ClipsearchError, DownloadError, InstallCancelledError
from tui.messages import InstallFinished, InstallProgressed
from tui.text import file_size, inert

OFFLINE_ROUTE = "clipsearch-tui model install {name} --from FILE"

_STAGES = {
    "download": "Downloading",
    "hash": "Checking the checkpoint",
    "convert": "Converting to ncnn",
    "manifest": "Writing the manifest",
    "done": "Installed",
}


def _model_facts(name: str) -> str:
    """Name, description, licence and download size, as the command line shows them."""
    try:
        facts = catalog.describe_model(name)
    except ClipsearchError as error:
        return f"{name} ({error})"
    return facts if facts is not None else f"{name} (not in the model registry)"


def dial_text(rows: list[dict[str, Any]]) -> Text:
    """The dial, two lines per model: its class and name, then its measured speed, published
    accuracy, download size and licence; last, where the speed was measured."""
    text = Text()
    for row in rows:
        rate = row["images_per_s"]
        facts = [
            f"{rate:.1f} photos/s" if rate else "speed not measured",
            f"ImageNet {row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "",
            f"~{file_size(row['download_size'])}" if row["download_size"] else "",
            registry.short_licence(row["license"]),
        ]
        text.append(f"{row['speed_class']:<9}", style="bold")
        text.append(inert(row["name"]) + "\n")
        text.append(" " * 9 + inert(", ".join(fact for fact in facts if fact)) + "\n")
    measured = sorted({row["speed_measured_on"] for row in rows if row["speed_measured_on"]})
    for where in measured:
        text.append(inert(f"photos/s measured on {where}. "))
    text.append("ImageNet: published zero-shot top-1 accuracy.")
    return text


def _reads(name: str) -> str:
    """Which languages the model reads, in a few words."""
    try:
        spec = registry.get_spec(name)
    except ClipsearchError:
        return ""
    return "reads many languages" if spec.multilingual else "reads English only"


class InstallScreen(ModalScreen[str | None]):
    """Dismissed with the name of the model installed; None when the user quits instead.

    With ``multilingual`` (a registry model that reads more than English), the dialog offers it
    beside the default, each with its download size and languages. With ``dial``, it shows the
    models of the dial (fastest, balanced, best) with their measured speed, published accuracy,
    download size and licence, and offers the fastest and the best beside the default.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Quit"),
        Binding("c", "cancel_install", "Cancel install", show=False),
    ]

    def __init__(
        self, model_name: str, reason: str, multilingual: str | None = None, dial: bool = False
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.model_name = model_name
        self.reason = reason
        self.multilingual = multilingual if multilingual != model_name else None
        self.dial = catalog.dial_models() if dial else []
        # the other ends of the dial, offered beside the default: {button id: model name}
        self.dial_choices = {
            f"install-{row['speed_class']}": row["name"]
            for row in self.dial
            if row["name"] not in (model_name, self.multilingual)
        }
        self.installing = False
        self.chosen = model_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog install-dialog") as dialog:
            dialog.border_title = "No CLIP model installed"
            yield from self._body()
            # below the text, not scrolled with it: at 80x24 the text is taller than the screen
            with Grid(classes="dialog-buttons install-buttons"):
                yield Button("Install", variant="primary", id="install")
                if self.multilingual:
                    yield Button("Multilingual", id="install-multilingual")
                for button_id in self.dial_choices:
                    label = button_id.removeprefix("install-").capitalize()
                    yield Button(label, id=button_id, classes="install-dial")
                yield Button("Cancel", id="cancel", disabled=True)
                yield Button("Quit", id="quit")
        yield Footer(compact=True)  # this dialog's keys, over the main screen's footer

    def _body(self) -> ComposeResult:
        """The text of the offer, the install's stage and bar, and its error, in a part of the
        dialog that scrolls."""
        with VerticalScroll(id="install-body"):
            text = Text()
            text.append("Searching needs a CLIP model. Install the default model now?\n\n")
            text.append(inert(_model_facts(self.model_name)), style="bold")
            text.append(f"; {_reads(self.model_name)}")
            if self.multilingual:
                text.append("\n\nTo search in Chinese, Russian, Arabic and more:\n")
                text.append(inert(_model_facts(self.multilingual)), style="bold")
                text.append(f"; {_reads(self.multilingual)}")
            if self.dial:
                text.append("\n\nThe dial, from the fastest model to the most accurate:\n")
                text.append_text(dial_text(self.dial))
            text.append(
                "\n\nIt is downloaded from the model hub (HF_ENDPOINT applies) and converted "
                "for ncnn; this takes a few minutes."
            )
            offers = ["Install: the default model"]
            if self.multilingual:
                offers.append("Multilingual: the one that reads many languages")
            offers.extend(
                f"{button_id.removeprefix('install-').capitalize()}: {name}"
                for button_id, name in self.dial_choices.items()
            )
            if len(offers) > 1:
                text.append("\n\n" + inert("; ".join(offers)) + ".")
            yield Static(text, id="install-text", classes="dialog-text")
            yield Static("", id="install-stage")
            yield ProgressBar(total=None, show_eta=False, id="install-bar")
            yield Static("", id="install-error", classes="dialog-text")

    def on_mount(self) -> None:
        self.query_one("#install-bar").display = False
        self.query_one("#install", Button).focus()
        self._fit(self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, screen_height: int) -> None:
        """Cap the text's height so that the dialog, its buttons below the text, fits the
        screen above the footer (the dialog's ``max-height: 94%`` alone would cut the buttons
        off)."""
        rows = -(-len(self.query(Button)) // 3)
        room = int((screen_height - 1) * 0.94) - 2 - 3 * rows  # less border and buttons
        self.query_one("#install-body").styles.max_height = max(3, room)

    @on(Button.Pressed, "#install-multilingual")
    def start_multilingual(self) -> None:
        """Install the multilingual model instead of the default."""
        if self.multilingual and not self.installing:
            self.chosen = self.multilingual
            self.start()

    @on(Button.Pressed, ".install-dial")
    def start_dial(self, event: Button.Pressed) -> None:
        """Install the fastest or the best model of the dial instead of the default."""
        name = self.dial_choices.get(event.button.id or "")
        if name and not self.installing:
            self.chosen = name
            self.start()

    @on(Button.Pressed, "#install")
    def start(self) -> None:
        """Start (or retry) the install of the chosen model in a thread worker."""
        if self.installing:
            return
        self.installing = True
        self.query_one("#install", Button).disabled = True
        for button in self.query("#install-multilingual, .install-dial").results(Button):
            button.disabled = True
        self.query_one("#cancel", Button).disabled = False
        self.query_one("#install-error", Static).update("")
        self.query_one("#install-bar").display = True
        self.query_one("#install-stage", Static).update("Starting...")
        self._install(self.chosen)

    @work(thread=True, group="install", exclusive=True, exit_on_error=False)
    def _install(self, name: str) -> None:
        worker = get_current_worker()

        def progress(stage: str, done: int, total: int | None) -> None:
            self.post_message(InstallProgressed(stage, done, total))

        try:
            install.install_model(name, progress=progress, cancel=worker.cancelled_event)
        except InstallCancelledError:
            self.post_message(InstallFinished(name, None, cancelled=True))
        except DownloadError as error:
            self.post_message(
                InstallFinished(name, f"download: {error}", urls=error.urls, route=error.route)
            )
        except ClipsearchError as error:
            self.post_message(InstallFinished(name, str(error)))
        else:
            self.post_message(InstallFinished(name, None))

    def on_install_progressed(self, message: InstallProgressed) -> None:
        stage = _STAGES.get(message.stage, message.stage)
        if message.stage == "download" and message.total:
            stage += f" {file_size(message.done)} of {file_size(message.total)}"
        elif message.stage == "download":
            stage += f" {file_size(message.done)}"
        self.query_one("#install-stage", Static).update(Text(stage))
        bar = self.query_one("#install-bar", ProgressBar)
        bar.update(total=message.total, progress=message.done)

    def on_install_finished(self, message: InstallFinished) -> None:
        self.installing = False
        self.query_one("#cancel", Button).disabled = True
        if message.error is None and not message.cancelled:
            self.dismiss(message.model_name)
            return
        self.query_one("#install-text").display = True
        install_button = self.query_one("#install", Button)
        install_button.disabled = False
        install_button.label = "Retry"
        for button in self.query("#install-multilingual, .install-dial").results(Button):
            button.disabled = False
        self.query_one("#install-bar").display = False
        if message.cancelled:
            self.query_one("#install-stage", Static).update(Text("Install cancelled."))
            return
        self.query_one("#install-stage", Static).update(Text("Install failed.", style="red"))
        self.query_one("#install-text").display = False  # room for the error and the way out
        error = message.error or ""
        offline = error.startswith("download:")
        text = Text()
        if offline:
            text.append("The model hub cannot be reached (offline?).\n", style="bold")
            error = error.removeprefix("download: ")
        text.append(inert(error) + "\n\n")
        if message.urls:
            text.append("Fetch one of these files by hand:\n")
            for url in message.urls:
                text.append(inert(url) + "\n", style="bold")
            text.append("then run:\n")
        else:
            text.append("To install from a checkpoint file downloaded elsewhere, run:\n")
        route = message.route or OFFLINE_ROUTE.format(name=message.model_name)
        text.append(inert(route), style="bold")
        self.query_one("#install-error", Static).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel_install(self) -> None:
        if self.installing:
            self.workers.cancel_group(self, "install")
            self.query_one("#install-stage", Static).update(Text("Cancelling..."))

    @on(Button.Pressed, "#quit")
    def action_close(self) -> None:
        self.workers.cancel_group(self, "install")
        self.dismiss(None)
