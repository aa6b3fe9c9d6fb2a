"""Emoji comparison: members' clients send the same emoji in different spellings."""

from __future__ import annotations

import unicodedata

VARIATION_SELECTORS = {"\ufe0f", "\ufe0e"}


def canonical(emoji: str) -> str:
    """Drop variation selectors so 👍 and 👍️ are one vote. Skin tones stay as written."""
    return "".join(ch for ch in emoji.strip() if ch not in VARIATION_SELECTORS)


def looks_like_emoji(token: str) -> bool:
    """True for a token made of pictographs (and their joiners and modifiers), not of words."""
    pictographic = 0
    for ch in token:
        category = unicodedata.category(ch)
        if category == "So" or 0x1F000 <= ord(ch) <= 0x1FAFF or ch == "\u20e3":
            pictographic += 1
        elif ch in VARIATION_SELECTORS or ch == "\u200d" or category in ("Mn", "Sk", "Cf"):
            continue
        elif not (ch.isdigit() or ch in "#*"):
            return False
    return pictographic > 0
