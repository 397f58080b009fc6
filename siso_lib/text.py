"""Small wording helpers for the lines people read (imports nothing)."""

from __future__ import annotations


def count(number: float, noun: str, plural: str | None = None) -> str:
    """'1 prompt', '2 prompts', '0 runs', '0.5 GPUs'; `plural` for an irregular noun."""
    shown = str(number) if isinstance(number, int) else f"{number:g}"
    return f"{shown} {noun if number == 1 else plural or noun + 's'}"


FAMILY_TITLES = {"sdxl": "SDXL", "flux": "FLUX", "sana": "Sana", "flux2_klein": "FLUX.2 klein"}  # in messages
FAMILY_ARTICLES = {"sdxl": "an"}  # "an SDXL pipeline", "a FLUX pipeline"


def family_title(family: str, article: bool = True) -> str:
    """A family as messages name it: "an SDXL", "a FLUX.2 klein" (`article` False: "SDXL")."""
    title = FAMILY_TITLES.get(family, family)
    return f"{FAMILY_ARTICLES.get(family, 'a')} {title}" if article else title
