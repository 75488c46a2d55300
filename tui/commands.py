"""Command palette entries (Ctrl+P) for every action of the app."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import ClipSearchApp

APP_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Search", "Move to the query box", "focus_query"),
    (
        "Index the selected period",
        "Encode the photos of the period under the cursor",
        "index_bucket",
    ),
    ("Index everything", "Encode every photo not indexed yet", "index_all"),
    ("Filter results to the selected period", "Or clear the filter if it is set", "filter_bucket"),
    ("Clear the filter", "Search every period again", "clear_filter"),
    ("Pause or resume indexing", "Indexing waits after its current batch", "pause"),
    ("Stop indexing", "Photos indexed so far are kept", "stop_indexing"),
    ("Show indexing errors", "Photos that could not be read, files skipped", "errors"),
    ("Rescan the album", "Find new, changed and deleted photos", "rescan"),
    ("Open the selected result", "Preview, path, date, camera", "open_result"),
    ("Find similar photos", "Photos like the selected result", "similar"),
    ("Describe the selected result", "Rank the configured labels for it", "describe"),
    ("Copy the selected result's path", "To the clipboard", "copy_path"),
    ("Grid or list of results", "Thumbnails side by side, or one row each (g)", "toggle_grid"),
    (
        "Find near-duplicates",
        "Groups of nearly identical photos, to pick what to keep",
        "duplicates",
    ),
    ("Open the sample gallery", "Add the bundled sample photos as an album folder", "gallery"),
    ("Help", "Keys and query syntax", "help"),
    ("Quit", "Stops indexing first, after asking", "quit"),
)
"""``(name, help, action)`` of every command; the action is an action of the app."""


class ModelCommands(Provider):
    """One "Switch model" entry per installed model other than the one in use."""

    @property
    def _clip_app(self) -> ClipSearchApp:
        """The app, as the app class that has ``switch_model`` (Textual types it as any app)."""
        return cast("ClipSearchApp", self.app)

    def _entries(self) -> list[tuple[str, str, str]]:
        from core.catalog import list_models

        current = getattr(self.app, "model_name", None)
        return [
            (
                f"Switch model to {row['name']}",
                "Re-index every photo with it (after asking)"
                + ("; reads many languages" if "multilingual" in row["description"] else ""),
                row["name"],
            )
            for row in list_models()
            if row["installed"] and row["name"] != current
        ]

    async def discover(self) -> Hits:
        for name, help_text, model in self._entries():
            yield DiscoveryHit(name, partial(self._clip_app.switch_model, model), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, model in self._entries():
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self._clip_app.switch_model, model),
                    text=name,
                    help=help_text,
                )


class ClipSearchCommands(Provider):
    """Every app action by name, fuzzy-matched as the user types."""

    async def discover(self) -> Hits:
        for name, help_text, action in APP_COMMANDS:
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in APP_COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.app.run_action, action),
                    text=name,
                    help=help_text,
                )
