"""The detail view of one result: a larger preview, facts about the photo, and its actions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from PIL import ExifTags
from PIL import Image as PILImage
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from core.errors import ClipsearchError
from core.ranking import Hit, describe
from core.thumbnails import load_thumbnail
from tui.messages import DescribeFinished, PreviewLoaded
from tui.text import file_size, inert, percent, taken
from tui.widgets.images import ImageWidget

if TYPE_CHECKING:
    from core.encoder import ClipModel
    from core.library import Library

PREVIEW_PIXELS = 256
"""Longest side of the preview, in pixels: the thumbnail's own size."""

DESCRIBE_SHOWN = 5
"""Labels shown after "describe", best first."""


def read_camera(path: Path) -> str | None:
    """``"Canon PowerShot S40"`` from EXIF Make and Model, without decoding pixels; None if absent.

    The make is left out when the model already starts with it, as many cameras write both.
    """
    try:
        with PILImage.open(path) as image:
            exif = image.getexif()
    except Exception:  # noqa: BLE001 - Pillow raises many types for unreadable files
        return None

    def tag(number: int) -> str:
        value = exif.get(number)
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        return " ".join(str(value).replace("\x00", " ").split()) if value else ""

    make, model = tag(ExifTags.Base.Make), tag(ExifTags.Base.Model)
    if make and model.lower().startswith(make.split()[0].lower()):
        make = ""
    camera = " ".join(part for part in (make, model) if part)
    return camera or None


def photo_facts(hit: Hit, camera: str | None, *, loading: bool = False) -> Table:
    """Path, folder, date, size and camera of a hit, every value inert."""
    photo = hit.photo
    path = Path(photo.path)
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Name", Text(inert(path.name)))
    table.add_row("Folder", Text(inert(str(path.parent))))
    when = taken(photo.taken_at)
    if photo.time_source:
        when += f" ({photo.time_source})"
    table.add_row("Taken", Text(when))
    size = file_size(photo.size)
    if photo.width and photo.height:
        size += f", {photo.width}x{photo.height}"
    table.add_row("Size", Text(size))
    table.add_row("Camera", Text("reading..." if loading else inert(camera or "unknown")))
    table.add_row("Match", Text(f"#{hit.rank}  {percent(hit.probability)}  cos {hit.score:.3f}"))
    return table


class DetailScreen(ModalScreen[Path | None]):
    """One photo; dismissed with its path when "find similar" is chosen, else with None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "similar", "Find similar"),
        Binding("d", "describe", "Describe"),
        Binding("c", "copy_path", "Copy path"),
        Binding("o", "open_photo", "Open"),
        Binding("O", "copy_folder", "Copy folder", show=False),
        Binding("n,right", "step(1)", "Next"),
        Binding("p,left", "step(-1)", "Previous"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(
        self,
        hit: Hit,
        *,
        library: Library | None,
        model: ClipModel | None,
        labels: tuple[str, ...],
        image_class: ImageWidget | None,
        describe_now: bool = False,
        step: Callable[[int], Hit | None] | None = None,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.step = step
        self.describe_now = describe_now
        self.hit = hit
        self.library = library
        self.model = model
        self.labels = labels
        self.image_class = image_class
        self.camera: str | None = None
        self.described: list[tuple[str, float]] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="detail") as dialog:
            dialog.border_title = Text(inert(Path(self.hit.photo.path).name))
            with Horizontal(id="detail-body"):
                if self.image_class is not None:
                    yield Static(Text("loading...", style="dim"), id="detail-preview")
                with Vertical(id="detail-side"):
                    yield Static(photo_facts(self.hit, None, loading=True), id="detail-facts")
                    yield Static(Text("d describes this photo", style="dim"), id="detail-describe")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Similar (s)", id="similar", variant="primary")
                yield Button("Describe (d)", id="describe")
                yield Button("Copy path (c)", id="copy")
                yield Button("Close", id="close")
        yield Footer(compact=True)  # this dialog's keys, over the main screen's footer

    def on_mount(self) -> None:
        self._load(self.hit.photo.id, self.hit.photo.path, self.hit.photo.thumbnail)
        if self.describe_now:
            self.action_describe()

    @work(thread=True, group="detail", exit_on_error=False)
    def _load(self, photo_id: int, path: Path, thumbnail: Path | None) -> None:
        image = load_thumbnail(thumbnail, PREVIEW_PIXELS) if self.image_class else None
        self.post_message(PreviewLoaded(photo_id, image, read_camera(path)))

    def on_preview_loaded(self, message: PreviewLoaded) -> None:
        if message.photo_id != self.hit.photo.id:
            return  # a photo stepped past
        self.camera = message.camera
        self.query_one("#detail-facts", Static).update(photo_facts(self.hit, message.camera))
        if self.image_class is None:
            return
        preview = self.query_one("#detail-preview", Static)
        if message.image is None:
            preview.update(Text("no preview yet", style="dim"))
        else:
            preview.update("")
            preview.mount(self.image_class(message.image))

    @on(Button.Pressed, "#describe")
    def action_describe(self) -> None:
        if self.model is None:
            self.notify("No model is loaded", severity="warning")
            return
        self.query_one("#detail-describe", Static).update(Text("describing...", style="dim"))
        self._describe(self.hit.photo.id, self.hit.photo.path)

    @work(thread=True, group="describe", exclusive=True, exit_on_error=False)
    def _describe(self, photo_id: int, path: Path) -> None:
        assert self.model is not None
        try:
            labels = describe(self.model, path, self.labels, library=self.library)
        except ClipsearchError as error:
            self.post_message(DescribeFinished(photo_id, [], str(error)))
            return
        self.post_message(DescribeFinished(photo_id, labels))

    def on_describe_finished(self, message: DescribeFinished) -> None:
        if message.photo_id != self.hit.photo.id:
            return
        target = self.query_one("#detail-describe", Static)
        if message.error is not None:
            target.update(Text(inert(message.error), style="red"))
            return
        self.described = [(label.label, label.probability) for label in message.labels]
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="bold cyan", no_wrap=True)
        table.add_column()
        table.add_column(style="dim", no_wrap=True)
        for label in message.labels[:DESCRIBE_SHOWN]:
            table.add_row(
                percent(label.probability), Text(inert(label.label)), f"cos {label.score:.3f}"
            )
        target.update(table)

    @on(Button.Pressed, "#similar")
    def action_similar(self) -> None:
        self.dismiss(Path(self.hit.photo.path))

    @on(Button.Pressed, "#copy")
    def action_copy_path(self) -> None:
        self.app.copy_to_clipboard(str(self.hit.photo.path))
        self.notify(inert(str(self.hit.photo.path)), title="Path copied", markup=False)

    def action_open_photo(self) -> None:
        """Show the photo in the system's viewer, or say why that cannot be done here."""
        from tui.opener import open_in_viewer

        problem = open_in_viewer(Path(self.hit.photo.path))
        if problem is None:
            self.notify(inert(Path(self.hit.photo.path).name), title="Opened", markup=False)
        else:
            self.notify(inert(problem), title="Cannot open", severity="warning", markup=False)

    def action_step(self, offset: int) -> None:
        """Show the next (1) or previous (-1) result in place of this one."""
        hit = self.step(offset) if self.step is not None else None
        if hit is None:
            self.notify("No more results that way", title="Results")
            return
        self.workers.cancel_group(self, "describe")
        self.hit = hit
        self.camera = None
        self.described = []
        self.query_one("#detail").border_title = Text(inert(Path(hit.photo.path).name))
        self.query_one("#detail-facts", Static).update(photo_facts(hit, None, loading=True))
        self.query_one("#detail-describe", Static).update(
            Text("d describes this photo", style="dim")
        )
        if self.image_class is not None:
            preview = self.query_one("#detail-preview", Static)
            preview.remove_children()
            preview.update(Text("loading...", style="dim"))
        self._load(hit.photo.id, hit.photo.path, hit.photo.thumbnail)

    def action_copy_folder(self) -> None:
        folder = Path(self.hit.photo.path).parent
        self.app.copy_to_clipboard(str(folder))
        self.notify(inert(str(folder)), title="Folder copied", markup=False)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
