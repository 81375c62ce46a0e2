"""The one rule for prompt identity: sha256 of the normalised text."""
from __future__ import annotations

import hashlib
import unicodedata


def normalise_text(text: str) -> str:
    """NFKC, whitespace runs collapsed, ends stripped. Case and punctuation are kept: they can change meaning."""
    return " ".join(unicodedata.normalize("NFKC", text).split())  # split() = Unicode whitespace, like \s+


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()
