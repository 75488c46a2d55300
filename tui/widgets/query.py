"""The query box: a text input whose first key can be one of the keys the footer offers."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

COMMAND_KEYS = {"/": "focus_query", "?": "help"}
"""Keys that act as the footer says while the box is empty, instead of being typed."""

LETTER_KEYS = {"i": "index_bucket", "I": "index_all"}
"""Letter keys that act as the footer says while the box is empty, until ``/`` is pressed."""


class QueryInput(Input):
    """The app's query box.

    The box has focus when the app starts, so that a query can be typed at once; yet the footer
    offers ``/`` (search), ``?`` (help) and ``i`` (index; ``I`` everything). While the box is
    empty ``/`` and ``?`` do what the footer says: ``/`` keeps the focus here and types nothing,
    ``?`` opens the help. ``i`` and ``I`` also act as app keys on an empty box, until ``/`` is
    pressed: ``/`` means "I am typing a query", after which a query may begin with ``i``
    ("ice on the lake"). The box leaves that typing state when it loses focus. Once a query is
    begun every key is typed like any other character.
    """

    _typing = False

    @property
    def typing(self) -> bool:
        """True after ``/``: letters are typed even into the empty box."""
        return self._typing

    @typing.setter
    def typing(self, value: bool) -> None:
        self._typing = value
        self.app.refresh_bindings()

    def _letter_keys_act(self) -> bool:
        return not self.value and not self._typing

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """``i`` and ``I`` are the app's (and the footer shows them) while they would act."""
        if character in LETTER_KEYS and self._letter_keys_act():
            return False
        return super().check_consume_key(key, character)

    async def _on_key(self, event: events.Key) -> None:
        character = event.character or ""
        action = None
        if not self.value:
            action = COMMAND_KEYS.get(character)
            if action is None and self._letter_keys_act():
                action = LETTER_KEYS.get(character)
        if action is not None:
            event.stop()
            event.prevent_default()
            if character == "/":
                self.typing = True
            await self.app.run_action(action)
            return
        was_empty = not self.value
        await super()._on_key(event)
        if was_empty != (not self.value):
            self.app.refresh_bindings()

    def _on_blur(self, event: events.Blur) -> None:
        self.typing = False
        super()._on_blur(event)
