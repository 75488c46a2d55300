"""Which writing systems a query uses, to tell a user when the model cannot read them.

CLIP models were trained on English captions: a query in Chinese, Japanese, Korean, Russian,
Arabic and other scripts returns noise, and nothing else would tell the user. :func:`script_hint`
gives the one line the app shows then, naming the multilingual model and how to switch to it.
"""

from __future__ import annotations

import unicodedata

from core.registry import ModelSpec, get_spec, registry_order

__all__ = ["foreign_script", "multilingual_model_name", "script_hint"]

# first word of a letter's Unicode name -> the script's name for a user
_SCRIPTS = {
    "CJK": "Chinese",
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "HANGUL": "Korean",
    "CYRILLIC": "Cyrillic",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "GREEK": "Greek",
    "DEVANAGARI": "Devanagari",
    "BENGALI": "Bengali",
    "TAMIL": "Tamil",
    "THAI": "Thai",
    "GEORGIAN": "Georgian",
    "ARMENIAN": "Armenian",
    "ETHIOPIC": "Ethiopic",
}


def foreign_script(text: str) -> str | None:
    """The first script of ``text``'s letters that is not Latin, by a user's name for it
    (``"Chinese"``, ``"Cyrillic"``...); None when every letter is Latin (accents included)."""
    for char in text:
        if not unicodedata.category(char).startswith("L"):
            continue
        first = unicodedata.name(char, "").split(" ", 1)[0]
        if first in _SCRIPTS:
            return _SCRIPTS[first]
    return None


def multilingual_model_name() -> str | None:
    """The first model in the registry that reads more than English (the cheapest is listed
    first)."""
    for name in registry_order():
        if get_spec(name).multilingual:
            return name
    return None


def script_hint(spec: ModelSpec, query: str) -> str | None:
    """One line for a query in a script that ``spec``'s model does not read, else None."""
    script = foreign_script(query)
    if script is None or spec.multilingual:
        return None
    other = multilingual_model_name()
    if other is None:
        return f"{spec.name} reads English only; {script} text is not understood."
    return (
        f"{spec.name} reads English only, not {script}. For {script}, install {other} "
        f"(clipsearch-tui model install {other}) and re-index with it "
        f"(clipsearch-tui index PATH --model {other} --reindex)."
    )
