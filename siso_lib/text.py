"""Small wording helpers for the lines people read (imports nothing)."""

from __future__ import annotations


def count(number: float, noun: str, plural: str | None = None) -> str:
    """'1 prompt', '2 prompts', '0 runs', '0.5 GPUs'; `plural` for an irregular noun."""
    shown = str(number) if isinstance(number, int) else f"{number:g}"
    return f"{shown} {noun if number == 1 else plural or noun + 's'}"
