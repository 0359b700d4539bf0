"""Text the database can hold as sent. PostgreSQL text refuses NUL, and UTF-8 (what the
driver sends) cannot encode a lone surrogate, which a JSON ``\\ud800`` escape produces.
Both webhook intake and the admin API refuse such text at the edge with this one rule."""

from __future__ import annotations


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored as sent, worded to follow its name, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None
