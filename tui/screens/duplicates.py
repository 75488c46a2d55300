"""The Duplicates view: groups of near-duplicate photos side by side, to pick what to keep.

Each group is one row of cards: the thumbnail, then the file's size, its resolution and its
date, so that the best copy can be told from the others. The user marks photos (space), then
copies their paths (``c``) or moves them to a folder they name (``m``), after confirming.
Nothing is deleted, and nothing happens without being asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Static
from textual.worker import get_current_worker

from core.errors import ClipsearchError
from core.library import Library, PhotoRecord
from core.thumbnails import load_thumbnail
from tui.messages import DuplicatesFound, DuplicateThumbnail, PhotosMoved
from tui.screens.confirm import ConfirmScreen
from tui.text import file_size, inert, taken
from tui.widgets.images import ImageWidget, cells_for, renderable_class

CARD_COLUMNS = 24
"""Width of one photo's card, borders included."""

THUMBNAIL_BOX = (CARD_COLUMNS - 2, 7)
"""Columns and rows of a card's thumbnail."""


def card_text(photo: PhotoRecord) -> Text:
    """Name, size, resolution, date and folder of a photo, each on its own line, all inert."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(inert(Path(photo.path).name) + "\n", style="bold")
    size = file_size(photo.size)
    text.append(size + "\n")
    if photo.width and photo.height:
        text.append(f"{photo.width}x{photo.height}\n")
    else:
        text.append("size unknown\n", style="dim")
    text.append(taken(photo.taken_at) + "\n", style="dim")
    text.append(inert(Path(photo.path).parent.name + "/"), style="dim")
    return text


class PhotoCard(Widget):
    """One photo of a group: its thumbnail (once loaded) above its facts."""

    def __init__(self, photo: PhotoRecord, renderable: type | None) -> None:
        super().__init__(classes="duplicate-card" + ("" if renderable else " -text-only"))
        self.photo = photo
        self._renderable_class = renderable
        self._thumbnail: RenderableType | None = None

    def render(self) -> RenderableType:
        if self._renderable_class is None:
            return card_text(self.photo)
        picture: RenderableType = self._thumbnail or Text("\n" * (THUMBNAIL_BOX[1] - 1))
        return Group(picture, card_text(self.photo))

    def set_image(self, image: object) -> None:
        if self._renderable_class is not None and image is not None:
            cells = cells_for(image, THUMBNAIL_BOX)  # type: ignore[arg-type]
            self._thumbnail = self._renderable_class(image, *cells)
            self.refresh()


class GroupRow(Vertical):
    """One group: a title line, then its photos side by side."""

    def __init__(
        self, number: int, similarity: float, photos: list[PhotoRecord], renderable: type | None
    ) -> None:
        super().__init__(classes="duplicate-group")
        self.number = number
        self.similarity = similarity
        self.photos = photos
        self._renderable = renderable

    def compose(self) -> ComposeResult:
        yield Static(self._title(), classes="duplicate-title", markup=False)
        with Horizontal(classes="duplicate-cards"):
            for photo in self.photos:
                yield PhotoCard(photo, self._renderable)

    def _title(self) -> Text:
        return Text(
            f"Group {self.number}: {len(self.photos)} photos, similarity at least "
            f"{self.similarity:.3f}"
        )

    def cards(self) -> list[PhotoCard]:
        return list(self.query(PhotoCard))


class FolderScreen(ModalScreen[Path | None]):
    """Ask for the folder to move photos to; dismissed with None on Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, count: int) -> None:
        super().__init__(classes="dialog-screen")
        self.count = count

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = "Move photos"
            yield Static(
                f"Move the {self.count} marked photos to which folder? (it is made if missing; "
                "a file already there is never replaced)",
                classes="dialog-text",
            )
            yield Input(placeholder="/path/to/folder", id="folder")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Next", variant="primary", id="next")
                yield Button("Cancel", id="cancel")
        yield Footer(compact=True)  # this dialog's keys, over the main screen's footer

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#next")
    def _next(self) -> None:
        value = self.query_one(Input).value.strip()
        if value:
            self.dismiss(Path(value).expanduser())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class DuplicatesScreen(Screen[None]):
    """Groups of near-duplicate photos of the library, found off the UI thread."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back"),
        Binding("down,j", "move(1, 0)", "Next group", show=False),
        Binding("up,k", "move(-1, 0)", "Previous group", show=False),
        Binding("right,l", "move(0, 1)", "Next photo", show=False),
        Binding("left,h", "move(0, -1)", "Previous photo", show=False),
        Binding("space", "mark", "Mark"),
        Binding("c", "copy_paths", "Copy paths"),
        Binding("m", "move_marked", "Move marked"),
    ]

    def __init__(
        self, library_path: Path, threshold: float, image_class: ImageWidget | None
    ) -> None:
        super().__init__()
        self.library_path = library_path
        self.threshold = threshold
        self.renderable = renderable_class(image_class)
        self.groups: list[GroupRow] = []
        self.cursor = (0, 0)
        self.marked: set[int] = set()

    def compose(self) -> ComposeResult:
        with Vertical(id="duplicates-pane") as pane:
            pane.border_title = "Duplicates"
            yield Static(
                Text(f"Looking for near-duplicates (similarity at least {self.threshold})..."),
                id="duplicates-hint",
            )
            yield VerticalScroll(id="duplicate-groups")
        yield Footer()

    def on_mount(self) -> None:
        self._find()

    @work(thread=True, group="duplicates", exclusive=True, exit_on_error=False)
    def _find(self) -> None:
        from core.duplicates import find_duplicates

        worker = get_current_worker()
        try:
            with Library.open(self.library_path) as library:
                groups = find_duplicates(library, self.threshold, cancel=worker.cancelled_event)
                found = []
                for group in groups:
                    records = {record.id: record for record in library.records(group.members)}
                    photos = [records[i] for i in group.members if i in records]
                    if len(photos) > 1:
                        found.append((group.similarity, photos))
        except ClipsearchError as error:
            self.post_message(DuplicatesFound([], str(error)))
            return
        self.post_message(DuplicatesFound(found))
        if self.renderable is not None:
            for _, photos in found:
                for photo in photos:
                    if worker.is_cancelled:
                        return
                    image = load_thumbnail(photo.thumbnail, 2 * THUMBNAIL_BOX[0])
                    self.post_message(DuplicateThumbnail(photo.id, image))

    async def on_duplicates_found(self, message: DuplicatesFound) -> None:
        hint = self.query_one("#duplicates-hint", Static)
        if message.error is not None:
            hint.update(Text(message.error, style="red"))
            return
        if not message.groups:
            hint.update(Text(f"No near-duplicates at similarity {self.threshold} or more."))
            return
        count = sum(len(photos) for _, photos in message.groups)
        hint.update(
            Text(
                f"{len(message.groups)} groups, {count} photos. Arrows move, space marks, "
                "c copies the marked paths (or the group's), m moves the marked photos."
            )
        )
        self.groups = [
            GroupRow(number, similarity, photos, self.renderable)
            for number, (similarity, photos) in enumerate(message.groups, 1)
        ]
        await self.query_one("#duplicate-groups").mount_all(self.groups)
        self._show_cursor()

    def on_duplicate_thumbnail(self, message: DuplicateThumbnail) -> None:
        for card in self.query(PhotoCard):
            if card.photo.id == message.photo_id:
                card.set_image(message.image)

    # -- cursor and marks ----------------------------------------------------------------------

    def _card(self) -> PhotoCard | None:
        if not self.groups:
            return None
        group, photo = self.cursor
        cards = self.groups[group].cards()
        return cards[photo] if photo < len(cards) else None

    def _show_cursor(self) -> None:
        for card in self.query(PhotoCard):
            card.set_class(card is self._card(), "-cursor")
            card.set_class(card.photo.id in self.marked, "-marked")
        if self._card() is not None:
            self.groups[self.cursor[0]].scroll_visible(animate=False)

    def action_move(self, groups: int, photos: int) -> None:
        if not self.groups:
            return
        group = min(max(self.cursor[0] + groups, 0), len(self.groups) - 1)
        count = len(self.groups[group].photos)
        photo = 0 if groups else min(max(self.cursor[1] + photos, 0), count - 1)
        self.cursor = (group, photo)
        self._show_cursor()

    def action_mark(self) -> None:
        card = self._card()
        if card is not None:
            self.marked ^= {card.photo.id}
            self._show_cursor()

    def _marked_photos(self) -> list[PhotoRecord]:
        return [card.photo for card in self.query(PhotoCard) if card.photo.id in self.marked]

    def action_copy_paths(self) -> None:
        photos = self._marked_photos()
        if not photos and self.groups:
            photos = self.groups[self.cursor[0]].photos
        if not photos:
            return
        self.app.copy_to_clipboard("\n".join(str(photo.path) for photo in photos))
        self.notify(f"{len(photos)} paths copied", title="Duplicates")

    def action_move_marked(self) -> None:
        photos = self._marked_photos()
        if not photos:
            self.notify("Mark the photos to move with space first", title="Duplicates")
            return

        def chosen(folder: Path | None) -> None:
            if folder is None:
                return
            question = Text(f"Move {len(photos)} photos to\n")
            question.append(inert(str(folder)), style="bold")
            question.append("?\n\n")
            for photo in photos[:8]:
                question.append(inert(str(photo.path)) + "\n", style="dim")
            if len(photos) > 8:
                question.append(f"and {len(photos) - 8} more\n", style="dim")

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self._move(photos, folder)

            self.app.push_screen(ConfirmScreen("Move photos", question, "Move"), confirmed)

        self.app.push_screen(FolderScreen(len(photos)), chosen)

    @work(thread=True, group="move", exclusive=True, exit_on_error=False)
    def _move(self, photos: list[PhotoRecord], folder: Path) -> None:
        from core.duplicates import move_photos

        by_path = {Path(photo.path): photo.id for photo in photos}
        moved, problems = move_photos(list(by_path), folder)
        self.post_message(PhotosMoved([by_path[old] for old, _ in moved], str(folder), problems))

    async def on_photos_moved(self, message: PhotosMoved) -> None:
        gone = set(message.moved)
        self.marked -= gone
        for card in list(self.query(PhotoCard)):
            if card.photo.id in gone:
                await card.remove()
        for row in list(self.groups):
            row.photos = [photo for photo in row.photos if photo.id not in gone]
            if len(row.photos) < 2:
                self.groups.remove(row)
                await row.remove()
        self.cursor = (min(self.cursor[0], max(0, len(self.groups) - 1)), 0)
        self._show_cursor()
        text = f"{len(message.moved)} photos moved to {inert(message.folder)}"
        if message.problems:
            text += f"; {len(message.problems)} not moved: " + inert(message.problems[0])
        self.notify(
            text, title="Duplicates", severity="warning" if message.problems else "information"
        )

    def action_close(self) -> None:
        self.workers.cancel_group(self, "duplicates")
        self.dismiss(None)
