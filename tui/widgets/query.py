"""The query box: a text input whose first key can be one of the keys the footer offers."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

COMMAND_KEYS = {"/": "focus_query", "?": "help"}
"""Keys that act as the footer says while the box is empty, instead of being typed."""


class QueryInput(Input):
    """The app's query box.

    The box has focus when the app starts, so that a query can be typed at once; yet the footer
    offers ``/`` (search) and ``?`` (help). While the box is empty those two keys do what the
    footer says: ``/`` keeps the focus here and types nothing, ``?`` opens the help. Once a
    query is begun they are typed like any other character.
    """

    async def _on_key(self, event: events.Key) -> None:
        action = COMMAND_KEYS.get(event.character or "") if not self.value else None
        if action is not None:
            event.stop()
            event.prevent_default()
            await self.app.run_action(action)
            return
        await super()._on_key(event)
