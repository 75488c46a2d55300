"""The first cleaning step of every tokenizer: ``ftfy.fix_text``, then ``html.unescape`` twice.

open_clip cleans a text this way before both its CLIP tokenizer and SigLIP's ``canonicalize``.
ftfy takes longer to import than the whole rest of a query's cleaning and tokenizing (it
compiles dozens of regular expressions at import), and most queries are plain ASCII that it
would hand back unchanged. :func:`repair` returns such a text as it is without loading ftfy.

Which texts ftfy leaves alone, in ftfy 6's default configuration, step by step:

- its encoding repair returns a text unchanged when the text encodes as ASCII;
- its other fixes change only non-ASCII characters, except four: HTML entities (``&``),
  terminal escapes (ESC), line breaks (CR) and the C0 control characters and DEL;
- Unicode normalisation (NFC) leaves ASCII as it is.

So a text of printable ASCII characters (space to ``~``) without ``&`` comes back unchanged from
ftfy, and ``html.unescape`` changes nothing without ``&`` either. ``tests/test_tokenizer.py``
checks the shortcut against ftfy itself on many random texts near that boundary.
"""

from __future__ import annotations

import html

__all__ = ["repair"]


def repair(text: str) -> str:
    """``html.unescape(html.unescape(ftfy.fix_text(text)))``, without importing ftfy for a text
    it would not change."""
    if text.isascii() and text.isprintable() and "&" not in text:
        return text
    import ftfy  # only here: see the module docstring

    return html.unescape(html.unescape(ftfy.fix_text(text)))
